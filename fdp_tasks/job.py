"""Running a model script the way the FAIR Data Pipeline expects.

The script gets a job directory holding the working config and a copy of itself, the FDP_*
environment, and a local registry it can reach over HTTP (the reference language APIs need
that), started for the run unless `fdp registry start` already serves it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from fdp_tasks.errors import FdpError
from fdp_tasks.project import Project

SCRIPT_SUFFIX = {
    "sh": ".sh",
    "bash": ".sh",
    "python": ".py",
    "python3": ".py",
    "R": ".R",
    "julia": ".jl",
    "java": ".java",
    "powershell": ".ps1",
    "pwsh": ".ps1",
    "batch": ".bat",
}


def command_for(shell: str, script: Path) -> list[str]:
    """The command line that runs `script` under the config's `shell`."""
    commands = {
        "sh": ["sh", str(script)],
        "bash": ["bash", str(script)],
        "python": [sys.executable, str(script)],
        "python3": [sys.executable, str(script)],
        "R": ["Rscript", str(script)],
        "julia": ["julia", str(script)],
        "java": ["java", str(script)],
        "powershell": ["powershell", "-File", str(script)],
        "pwsh": ["pwsh", "-File", str(script)],
        "batch": ["cmd", "/c", str(script)],
    }
    if shell not in commands:
        raise FdpError(f"run_metadata.shell: unknown shell {shell!r}")
    return commands[shell]


@contextlib.contextmanager
def local_registry_http(project: Project) -> Iterator[str]:
    """The API URL of the local registry, serving it in this process if nothing else does."""
    from fdp_tasks.registry import serve

    status = serve.background_status(project.server_dir)
    if status and status.get("db") == project.registry_db:
        yield status["url"].rstrip("/") + "/api/"
        return
    running = serve.start_in_thread(project.store(), project.server_dir / "blobs")
    try:
        yield running.api_url
    finally:
        running.stop()


def new_job_dir(project: Project) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    job = project.data_store.path(f"jobs/{stamp}")
    job.mkdir(parents=True, exist_ok=False)
    return job


def write_script(job: Path, run_metadata: dict[str, Any]) -> Path:
    """Copy the inline script or script_path into the job directory."""
    shell = run_metadata.get("shell") or "sh"
    script = job / f"script{SCRIPT_SUFFIX.get(shell, '.sh')}"
    if run_metadata.get("script"):
        script.write_text(str(run_metadata["script"]).rstrip("\n") + "\n", encoding="utf-8")
    else:
        source = Path(run_metadata["script_path"])
        if not source.is_file():
            raise FdpError(f"run_metadata.script_path: {source} does not exist")
        shutil.copyfile(source, script)
    script.chmod(0o755)
    return script


def run_script(command: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> int:
    """Run the script, echoing its output and keeping it in the job log."""
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
        except FileNotFoundError:
            raise FdpError(f"cannot start {command[0]!r}: not found on PATH") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line.decode("utf-8", "replace"))
        sys.stdout.flush()
        return proc.wait()


def run_job(
    project: Project,
    runs_log: Path,
    working_for: Callable[[str], dict[str, Any]],
    note: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve, run the script, and report the code runs it recorded.

    `working_for(registry_url)` returns the working config for the given registry URL; it is
    called once the local registry is reachable. `note` is kept in the runs log entry.
    """
    token = project.local_token()
    with local_registry_http(project) as api_url:
        working = working_for(api_url)
        meta = working["run_metadata"]
        job = new_job_dir(project)
        config_path = job / "config.yaml"
        with open(config_path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(working, fh, sort_keys=False)
        script = write_script(job, meta)
        repo = Path(meta.get("local_repo") or project.root)
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
        }
        code = run_script(
            command_for(meta.get("shell") or "sh", script), repo, env, job / "job.log"
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
