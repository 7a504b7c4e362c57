"""Running a model script the way the FAIR Data Pipeline expects.

The script gets a job directory (`${{CONFIG_DIR}}`) holding the working config and a copy of
itself, the FDP_* environment, a token of its own that is revoked when it ends, and a local
registry it can reach over HTTP (the reference language APIs need that), which the caller
serves (`ServeRegistry`). It runs in `local_repo`, the root of the git
repository, as the reference runs it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from fdp_tasks.catalog.locations import intact
from fdp_tasks.config.resolve import dirty_files, job_dir_for, script_paths
from fdp_tasks.errors import FdpError, HashMismatch
from fdp_tasks.languages import DEFAULT, command_for, language
from fdp_tasks.project import Project
from fdp_tasks.refs import ProductRef
from fdp_tasks.store import queries

# How a job gets the local registry over HTTP, for the reference language APIs: a context
# that yields the registry's API URL (`serve.job_registry` behind the commands). Passed in,
# so that running a job does not depend on the server.
ServeRegistry = Callable[[Project], contextlib.AbstractContextManager[str]]


def refuse_dirty(repo: Path, allow_dirty: bool, script: list[Path] | None = None) -> None:
    """Uncommitted changes to tracked files, or a script git does not track, would make the
    recorded commit a lie: refuse them, unless the user accepts a run recorded as dirty."""
    if allow_dirty:
        return
    changed = dirty_files(repo, script)
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise FdpError(
            f"the git repository {repo} has uncommitted changes ({shown}): commit them, or "
            "run with --dirty (doit: dirty=1) to record the run as dirty"
        )


def check_inputs(project: Project, working: dict[str, Any]) -> None:
    """Every input file of the data store holds the bytes the registry recorded (its
    SHA-1), before the script starts: a file altered since it was registered or pulled would
    make the run's recorded inputs a lie."""
    registry, data = project.store(), project.data_store
    for item in working.get("read") or []:
        use = item.get("use") or {}
        if use.get("cache"):
            continue  # a file the config names, used as it is: no recorded hash
        ref = ProductRef.of_read_item(item)
        found = queries.locate_ref(registry, ref)
        if found is None or found.location is None or found.root is None:
            continue  # resolution made sure it is registered; the script's read says the rest
        if not data.holds(found.root["root"]):
            continue  # not a file of the data store: the script's read refuses it
        rel = found.location["path"]
        if not intact(data, rel, found.hash):
            state = "is missing" if not data.path(rel).is_file() else "was altered"
            raise HashMismatch(
                f"input {ref}: {data.path(rel)} {state}: the registry recorded SHA-1 "
                f"{found.hash}; pull or register it again (nothing was run)"
            )


def write_script(job: Path, run_metadata: dict[str, Any]) -> Path:
    """Copy the inline script or script_path into the job directory."""
    script = job / f"script{language(run_metadata.get('shell') or DEFAULT).suffix}"
    if run_metadata.get("script"):
        script.write_text(str(run_metadata["script"]).rstrip("\n") + "\n", encoding="utf-8")
    else:
        source = Path(run_metadata["script_path"])
        if not source.is_file():
            raise FdpError(f"run_metadata.script_path: {source} does not exist")
        shutil.copyfile(source, script)
    script.chmod(0o755)
    return script


def write_working_config(path: Path, working: dict[str, Any], script: Path) -> None:
    """The working config as the script reads it: like the reference's, it names the job's
    copy of the script in script_path, and register items are its reads by now."""
    meta = {k: v for k, v in working["run_metadata"].items() if k != "script"}
    meta["script_path"] = str(script)
    out = {"run_metadata": meta}
    out.update({k: working[k] for k in ("read", "write") if working.get(k)})
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(out, fh, sort_keys=False)


def run_script(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> int:
    """Run the script, echoing its output and keeping it in the job log."""
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except FileNotFoundError:
            raise FdpError(f"cannot start {command[0]!r}: not found on PATH") from None
        if proc.stdout is None:  # pragma: no cover - stdout=PIPE always gives one
            raise FdpError(f"cannot read the output of {command[0]!r}")
        try:
            for line in proc.stdout:
                log.write(line)
                sys.stdout.write(line.decode("utf-8", "replace"))
            sys.stdout.flush()
            return proc.wait()
        except KeyboardInterrupt:
            stop_script(proc)
            raise


# How long a script has to end after Ctrl-C before it is terminated, then killed.
INTERRUPT_GRACE = 5.0


def stop_script(proc: subprocess.Popen) -> None:
    """End an interrupted script. Ctrl-C reaches it with fdp when both are in the terminal's
    process group, but a signal can arrive between two of a shell script's commands and be
    lost to the next one: the interrupt is passed on, then the script terminated, then
    killed, so that fdp never waits out a script the user asked to stop."""
    def interrupt() -> None:
        if os.name == "posix":  # elsewhere a console's Ctrl-C is the only interrupt
            proc.send_signal(signal.SIGINT)

    for send in (interrupt, proc.terminate, proc.kill):
        if proc.poll() is not None:
            return
        send()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=INTERRUPT_GRACE)


WorkingFor = Callable[[str, Path, str], dict[str, Any]]


def run_job(
    project: Project,
    runs_log: Path,
    working_for: WorkingFor,
    note: dict[str, Any] | None = None,
    allow_dirty: bool = False,
    verify: Callable[[list[str]], None] | None = None,
    serve: ServeRegistry | None = None,
) -> dict[str, Any]:
    """Resolve, run the script, and report the code runs it recorded.

    `working_for(registry_url, job_dir, token)` returns the working config for the job; it
    is called once the local registry is reachable. `note` is kept in the runs log entry.
    `verify(code_runs)` may refuse what the script recorded (raising FdpError); `serve`
    serves the local registry over HTTP while the script runs.
    """
    if serve is None:
        raise FdpError("no way to serve the local registry to the script was given")
    with project.job_token() as token, serve(project) as api_url:
        job = job_dir_for(project.data_store.root, datetime.now())
        working = working_for(api_url, job, token)
        meta = working["run_metadata"]
        repo = Path(meta.get("local_repo") or project.root)
        refuse_dirty(repo, allow_dirty, list(script_paths(meta).values()))
        check_inputs(project, working)
        job.mkdir(parents=True, exist_ok=False)
        script = write_script(job, meta)
        write_working_config(job / "config.yaml", working, script)
        env = {
            **os.environ,
            "FDP_CONFIG_DIR": str(job),
            "FDP_CONFIG_NAME": "config.yaml",
            "FDP_DATA_STORE": str(project.data_store.root),
            "FDP_SCRIPT": str(script),
            "FDP_LOCAL_TOKEN": token,
            "FDP_LOCAL_REPO": str(repo),
            "FDP_LOCAL_DB": project.registry_db,
            "FDP_REGISTRY_URL": api_url,
            # `python3` in an inline script is the interpreter fdp-tasks runs under
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            # as the reference: modules of the repository import from the script
            "PYTHONPATH": os.pathsep.join(
                p for p in (os.environ.get("PYTHONPATH", ""), str(repo)) if p
            ),
        }
        code = run_script(
            command_for(meta.get("shell") or DEFAULT, script), repo, env, job / "job.log"
        )
    if code != 0:
        raise FdpError(f"the script exited with status {code}; its output is in {job / 'job.log'}")
    runs_file = job / "coderuns.txt"
    runs = runs_file.read_text().split() if runs_file.is_file() else []
    if working.get("write") and not runs:
        raise FdpError(
            "the script finished but recorded no code run: did it finalise its session? "
            f"(output in {job / 'job.log'})"
        )
    if verify is not None:
        verify(runs)  # before the runs log names them: what it names gets pushed
    record = {
        **(note or {}),
        "job": str(job),
        "code_runs": runs,
        "finished": datetime.now(timezone.utc).isoformat(),
    }
    runs_log.parent.mkdir(parents=True, exist_ok=True)
    with open(runs_log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
    return record


def past_runs(path: Path) -> list[dict[str, Any]]:
    """Every run recorded in a runs log, oldest first."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            out.append(json.loads(line))
    return out
