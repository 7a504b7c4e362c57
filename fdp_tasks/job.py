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
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from fdp_tasks import environment, working_config
from fdp_tasks.catalog.locations import intact, local_location
from fdp_tasks.config.resolve import REBUILD_KEY, dirty_files, job_dir_for, script_paths
from fdp_tasks.errors import FdpError, HashMismatch
from fdp_tasks.executors.base import Executor, JobResult, JobSpec
from fdp_tasks.executors.local import LocalExecutor
from fdp_tasks.files import replace_text, sha1_file
from fdp_tasks.languages import DEFAULT, command_for, language
from fdp_tasks.locks import job_lock, project_lock
from fdp_tasks.progress import Bar
from fdp_tasks.project import ENV_REMOTE_TOKEN, Project
from fdp_tasks.refs import ProductRef
from fdp_tasks.store import queries

PROGRESS_FD_ENV = "FDP_PROGRESS_FD"  # the pipe `fdp_tasks.api` reports a finalise through


class ServeRegistry(Protocol):
    """How a job gets the local registry over HTTP, for the reference language APIs: a
    context that yields the registry's API URL (`serve.job_registry` behind the commands),
    calling `on_record` for each record the job's script creates there. Passed in, so that
    running a job does not depend on the server."""

    def __call__(
        self, project: Project, on_record: Callable[[], None] | None = None
    ) -> contextlib.AbstractContextManager[str]: ...


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
    working_config.write(path, out)  # and the JSON copy fdp_tasks.api reads


# The script runs through an executor: a subprocess here (`executors/local.py`, where
# `run_script` lives), or a worker of a Dask or Slurm cluster (`executors/base.py`'s
# `run_command`, which also takes the environment there; `stop_process` for both).


class FinaliseProgress:
    """How far the script's finalise is, drawn as a `Bar` (on a terminal only): what
    `fdp_tasks.api` says through a pipe named by FDP_PROGRESS_FD (`outputs N`, then `done 1`
    per output registered), and each record reaching the loopback server (`on_record`,
    which travels to the server through the `ServeRegistry` callable)."""

    def __init__(self) -> None:
        self._bar: Bar | None = None
        self._lock = threading.Lock()
        self._read_fd: int | None = None
        self._write_fd: int | None = None
        self._reader: threading.Thread | None = None
        if os.name == "posix":  # a pipe passed to the script by its number
            self._read_fd, self._write_fd = os.pipe()
            self._reader = threading.Thread(target=self._read, name="fdp-progress", daemon=True)
            self._reader.start()

    def _open(self, unit: str, total: int | None = None) -> Bar:
        with self._lock:
            if self._bar is None:
                self._bar = Bar("finalise", total=total, unit=unit)
            return self._bar

    def on_record(self) -> None:
        """A record of the job reached the local registry."""
        self._open("record").step()

    def _read(self) -> None:
        if self._read_fd is None:  # pragma: no cover - started only with a pipe
            return
        with os.fdopen(self._read_fd, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                word, _, number = line.strip().partition(" ")
                if not number.isdigit():
                    continue
                if word == "outputs":
                    self._open("output", int(number)).set_total(int(number))
                elif word == "done":
                    self._open("output").step(int(number))

    def child_env(self) -> dict[str, str]:
        return {PROGRESS_FD_ENV: str(self._write_fd)} if self._write_fd is not None else {}

    def child_fds(self) -> tuple[int, ...]:
        return (self._write_fd,) if self._write_fd is not None else ()

    def started(self) -> None:
        """The script has its end of the pipe (or never started): ours is closed, so the
        reader ends when the script does."""
        if self._write_fd is not None:
            os.close(self._write_fd)
            self._write_fd = None

    def close(self) -> None:
        self.started()
        if self._reader is not None:
            self._reader.join(timeout=2)  # a child the script left running may hold the pipe
        with self._lock:
            if self._bar is not None:
                self._bar.close()

    def __enter__(self) -> FinaliseProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ran_meanwhile(runs_log: Path, seen: int, note: dict[str, Any] | None) -> dict | None:
    """The run another process finished while this one waited for the lock, if it ran
    what this one would (the same signature): running it again would change nothing."""
    count, last = runs_summary(runs_log)
    if count <= seen or last is None or not note or not note.get("signature"):
        return None
    return last if last.get("signature") == note["signature"] else None


WorkingFor = Callable[[str, Path, str], dict[str, Any]]


def run_job(
    project: Project,
    runs_log: Path,
    working_for: WorkingFor,
    note: dict[str, Any] | None = None,
    allow_dirty: bool = False,
    verify: Callable[[list[str]], None] | None = None,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    runs_seen: int | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Resolve, run the script, and report the code runs it recorded.

    `working_for(registry_url, job_dir, token)` returns the working config for the job; it
    is called once the local registry is reachable. `note` is kept in the runs log entry.
    `verify(code_runs)` may refuse what the script recorded (raising FdpError); `serve`
    serves the local registry over HTTP while the script runs.

    One job of a config runs at a time (the lock in its state folder, beside `runs_log`):
    another is refused at once, naming the process that runs it, or with `wait` waits for
    it. A run that another process logged since the caller found the job out of date (when
    the runs log held `runs_seen` runs), with what this one would run, makes this one
    nothing to do. What the script records stays provisional until it exits 0, and is
    deleted if it does not. `executor` says where the script runs (default: here); one
    that runs it on another machine gives it the shared registry, not the loopback one.
    """
    if serve is None:
        raise FdpError("no way to serve the local registry to the script was given")
    state = runs_log.parent
    configs = project.state_dir / "configs"
    name = state.relative_to(configs).as_posix() if state.is_relative_to(configs) else state.name
    seen = runs_summary(runs_log)[0] if runs_seen is None else runs_seen
    def say(line: str) -> None:
        print(line, flush=True)

    with (
        job_lock(state, name, wait, on_wait=say),
        project_lock(project.state_dir, wait=True, shared=True, on_wait=say),
    ):
        done = _ran_meanwhile(runs_log, seen, note)
        if done is not None:
            print(f"job: up to date (another process ran it meanwhile: {done.get('job')})")
            return done
        return _run_locked(
            project, runs_log, working_for, note, allow_dirty, verify, serve, executor
        )


def _run_locked(
    project: Project,
    runs_log: Path,
    working_for: WorkingFor,
    note: dict[str, Any] | None,
    allow_dirty: bool,
    verify: Callable[[list[str]], None] | None,
    serve: ServeRegistry,
    executor: Executor | None = None,
) -> dict[str, Any]:
    runner = executor or LocalExecutor()
    with runner.job_in_flight(), project.job_token() as token:
        with (
            FinaliseProgress() as progress,
            _job_registry(runner, serve, project, progress) as url,
        ):
            job, working, ran = _start(
                project, working_for, allow_dirty, token, url, progress, runner
            )
        if ran.code != 0:
            raise FdpError(
                f"the script exited with status {ran.code}; its output is in {job / 'job.log'}"
            )
        runs_file = job / "coderuns.txt"
        runs = runs_file.read_text().split() if runs_file.is_file() else []
        if working.get("write") and not runs:
            raise FdpError(
                "the script finished but recorded no code run: did it finalise its session? "
                f"(output in {job / 'job.log'})"
            )
        if verify is not None:
            verify(runs)  # before the runs log names them: what it names gets pushed
        record_environment(project, job, working, runs, token, ran.environment)
        kept = project.keep_job_records(token)
    if kept:
        print(f"finalise: {kept} records")
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


def record_environment(
    project: Project,
    job: Path,
    working: dict[str, Any],
    runs: list[str],
    token: str,
    taken: dict[str, Any] | None = None,
) -> None:
    """Record what a rebuild of the job's code runs needs (`fdp_tasks.environment`): a JSON
    file in the job directory, beside the config and script, as an object among each run's
    inputs, so that push, pull and any FDP registry carry it. Whatever the script used to
    record its runs (our API, or a reference one over HTTP), the job records this alike;
    provisional with the job's other records. `taken`: the environment where the script
    ran, as the executor took it there (None: here, this process's)."""
    if not runs:
        return
    rebuild = working.get(REBUILD_KEY) or {}
    record = environment.capture(
        rebuild.get("source_config"),
        rebuild.get("source_text"),
        rebuild.get("local_repo"),
        rebuild.get("substitutions") or {},
        taken,
    )
    path = job / environment.FILE_NAME
    replace_text(path, lambda fh: json.dump(record, fh, indent=1, sort_keys=True), 0o644)
    from fdp_tasks.store.sql import token_digest  # here: a no-op needs no SQL engine

    store, data = project.store(), project.data_store
    author = project.author_id()
    with store.transaction(), store.provisional_as(token_digest(token), required=True):
        location = local_location(store, data, data.relative(path), sha1_file(path), keep_new=True)
        obj = store.create(
            "object",
            {
                "description": environment.DESCRIPTION,
                "storage_location": location,
                "file_type": queries.file_type_id(store, "json"),
                "authors": [author],
            },
        )
        component = queries.whole_object_component(store, obj)
        for run_uuid in runs:
            found = store.find("code_run", {"uuid": run_uuid}, limit=1)
            if found and component not in (found[0].get("inputs") or []):
                store.add_links("code_run", found[0]["id"], "inputs", [component])


def _job_registry(
    executor: Executor, serve: ServeRegistry, project: Project, progress: FinaliseProgress
) -> contextlib.AbstractContextManager[str]:
    """The registry URL a job is given: the shared registry for an executor that runs it
    elsewhere, else the local registry served on loopback for the length of the job."""
    if executor.shared_registry is not None:
        return contextlib.nullcontext(executor.shared_registry)
    return serve(project, on_record=progress.on_record)


def _start(
    project: Project,
    working_for: WorkingFor,
    allow_dirty: bool,
    token: str,
    api_url: str,
    progress: FinaliseProgress,
    executor: Executor,
) -> tuple[Path, dict[str, Any], JobResult]:
    """Make the job directory and run the script in it: the directory, the working config
    and how the script ended (its exit status, and where a far one ran)."""
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
        # a remote's token from the environment is fdp's, never the script's
        **{k: v for k, v in os.environ.items() if not k.startswith(ENV_REMOTE_TOKEN)},
        "FDP_CONFIG_DIR": str(job),
        "FDP_CONFIG_NAME": "config.yaml",
        "FDP_DATA_STORE": str(project.data_store.root),
        "FDP_SCRIPT": str(script),
        "FDP_LOCAL_TOKEN": token,
        "FDP_LOCAL_REPO": str(repo),
        "FDP_LOCAL_DB": project.registry_db,
        "FDP_REGISTRY_URL": api_url,
        "FDP_JOB": "1",  # what the script records is provisional, for a job that runs
        # `python3` in an inline script is the interpreter fdp-tasks runs under
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        # as the reference: modules of the repository import from the script
        "PYTHONPATH": os.pathsep.join(
            p for p in (os.environ.get("PYTHONPATH", ""), str(repo)) if p
        ),
    }
    spec = JobSpec(
        name=job.name,
        command=command_for(meta.get("shell") or DEFAULT, script),
        cwd=str(repo),
        env=env,
        log_path=str(job / "job.log"),
    )
    return job, working, executor.run(spec, progress)


def _log_lines(path: Path) -> Iterator[str]:
    """The lines of a runs log, read one at a time (none if there is no log yet)."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as lines:
        yield from lines


def iter_runs(path: Path) -> Iterator[dict[str, Any]]:
    """The runs recorded in a runs log, oldest first, read one at a time: each holds what
    its job depended on, the whole write list of its config included (megabytes for a
    config of 10,000 outputs), so a log of many runs is never held at once. A line a crash
    cut short is left out."""
    for line in _log_lines(path):
        with contextlib.suppress(json.JSONDecodeError):
            yield json.loads(line)


_DECODER = json.JSONDecoder()
_CODE_RUNS = '"code_runs": '


def iter_run_uuids(path: Path) -> Iterator[list[str]]:
    """The code runs each run of a runs log recorded (its `code_runs`), oldest first, as
    `iter_runs` finds them, but without decoding the rest of a line: a push needs no more,
    and the rest (what the job depended on) decodes to megabytes for a config of 10,000
    outputs. In a whole line (one that ends its record) the key is the last `"code_runs": `
    (it comes after what the job depended on, and a string holding those characters shows
    them escaped); any other line is decoded whole, so one a crash cut short is left out."""
    for line in _log_lines(path):
        at = line.rfind(_CODE_RUNS) if line.rstrip().endswith("}") else -1
        try:
            found = _DECODER.raw_decode(line, at + len(_CODE_RUNS))[0] if at > 0 else None
            if not isinstance(found, list) or not all(isinstance(u, str) for u in found):
                found = json.loads(line).get("code_runs") or []
        except (ValueError, AttributeError):
            continue  # a line a crash cut short, or no record
        yield found


def runs_summary(path: Path) -> tuple[int, dict[str, Any] | None]:
    """How many runs a runs log records, and the newest (None if none)."""
    count, last = 0, None
    for run in iter_runs(path):
        count, last = count + 1, run
    return count, last
