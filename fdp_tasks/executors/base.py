"""What every executor does: take a job's script as a `JobSpec` and run it to the end.

The submitting process keeps everything else of a job (the lock, the job directory, the
working config, the job's token, keeping or dropping its records): an executor only decides
where the script's process runs. `run_command` is what runs on the far side; it is a module
function with plain arguments, so any engine can ship it to a worker by reference. It takes
the environment a code run records there, where the script ran, and stops the script when
asked to (the command was interrupted), as `stop_process` stops a local one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from fdp_tasks import environment
from fdp_tasks.errors import FdpError

# Variables a job carries to another machine: its own (FDP_*) and where its programs are
# (PATH and PYTHONPATH: the job's entries, then the worker's own); the rest of the
# environment is the worker's.
CARRIED_PREFIXES = ("FDP_",)
CARRIED_NAMES = ("PATH", "PYTHONPATH")
WORKER_ENV = "FDP_WORKER"  # set on the far side: which worker ran the job
EXECUTOR_ENV = "FDP_EXECUTOR"  # the executor's name, for the script to see where it runs
OUTPUT_LIMIT = 1 << 20  # the end of a far job's output sent back to be shown, in bytes
# How long an interrupted script has after each of SIGINT and SIGTERM before the next, harder
# signal; and how often a far job looks whether it was asked to stop.
INTERRUPT_GRACE = 5.0
STOP_POLL = 0.25
STOPPED = 128 + signal.SIGINT  # the exit status a job that was asked to stop reports
_IN_FLIGHT = threading.Condition()  # guards and announces the executors' jobs in flight


@dataclass(frozen=True)
class JobSpec:
    """One run of a script: the command, where it runs, its environment (the job's, as the
    local run would have it) and the log file it writes (in the job directory)."""

    name: str
    command: list[str]
    cwd: str
    env: dict[str, str]
    log_path: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def carried_env(self) -> dict[str, str]:
        """What crosses to another machine: the FDP_* variables, PATH and PYTHONPATH."""
        out = {
            k: v
            for k, v in self.env.items()
            if k.startswith(CARRIED_PREFIXES) or k in CARRIED_NAMES
        }
        return {**out, **self.extra_env}


@dataclass(frozen=True)
class JobResult:
    """How a job ended: its exit status, the end of its output (from a far side, to be
    shown here), where it ran, and the environment there (`environment.current()` taken
    on the worker; None for a script that ran beside this process, whose environment is
    this one)."""

    code: int
    output: str = ""
    host: str = ""
    worker: str = ""
    environment: dict[str, Any] | None = None


class ChildPipe(Protocol):
    """The finalise progress pipe of a local run (job.FinaliseProgress): the script gets
    its write end; `started` closes ours once the script has it."""

    def child_env(self) -> dict[str, str]: ...

    def child_fds(self) -> tuple[int, ...]: ...

    def started(self) -> None: ...


class Executor:
    """Where a job's script runs. `run` submits one job and waits for its exit status;
    doit's parallel runners call it from several threads or processes at once.

    `shared_registry` is None for an executor whose jobs run beside this process (they are
    given the loopback server of the local registry); else the URL of the registry every
    worker reaches, which jobs get instead, with `shared_registry_db` (a database URL for
    `fdp_tasks.api`) when one is configured."""

    name = "base"
    shared_registry: str | None = None
    shared_registry_db: str | None = None
    _in_flight = 0  # jobs of this process between `job_in_flight`'s start and end

    def run(self, spec: JobSpec, progress: ChildPipe | None = None) -> JobResult:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what the executor started (a cluster); nothing for the local one."""

    @contextlib.contextmanager
    def job_in_flight(self) -> Iterator[None]:
        """Around all a job does here, its records' keeping or dropping included: an
        executor that stops its far jobs on `close` (at exit, after Ctrl-C reached the
        main thread while other threads waited for theirs) then waits for those threads
        to finish with their jobs' records before the process ends."""
        with _IN_FLIGHT:
            self._in_flight += 1
        try:
            yield
        finally:
            with _IN_FLIGHT:
                self._in_flight -= 1
                _IN_FLIGHT.notify_all()

    def await_jobs_in_flight(self, timeout: float) -> None:
        """Wait until no job of another thread is in flight, or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with _IN_FLIGHT:
            while self._in_flight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                _IN_FLIGHT.wait(left)

    def far_spec(self, spec: JobSpec) -> JobSpec:
        """The job as it is sent to a worker: the shared registry in place of the local
        database, and the executor's name."""
        env = dict(spec.env)
        env.pop("FDP_LOCAL_DB", None)
        if self.shared_registry_db:
            env["FDP_LOCAL_DB"] = self.shared_registry_db
        if self.shared_registry:
            env["FDP_REGISTRY_URL"] = self.shared_registry
        env[EXECUTOR_ENV] = self.name
        return JobSpec(spec.name, spec.command, spec.cwd, env, spec.log_path, spec.extra_env)


def run_command(
    spec: JobSpec, worker: str = "", stop_requested: Callable[[], bool] | None = None
) -> JobResult:
    """Run a job's command on this machine (a worker's), its output into the job log, and
    take the environment it ran in (`environment.current()`, here, where the script ran).

    The script runs in a process group of its own; while it runs, `stop_requested()` is
    asked every STOP_POLL seconds, and once it says so the whole group is stopped
    (`stop_process`) and the job reports STOPPED."""
    env = worker_environment(spec)
    env[WORKER_ENV] = worker or socket.gethostname()
    log_path = Path(spec.log_path)
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                spec.command,
                cwd=spec.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise FdpError(
                f"cannot start {spec.command[0]!r} on {socket.gethostname()}: not found on PATH"
            ) from None
        try:
            code = _wait_unless_stopped(proc, stop_requested)
        except BaseException:  # the worker itself is going: its script goes first
            stop_process(proc, group=True)
            raise
    size = log_path.stat().st_size
    with open(log_path, "rb") as fh:
        if size > OUTPUT_LIMIT:
            fh.seek(size - OUTPUT_LIMIT)
        output = fh.read().decode("utf-8", "replace")
    taken = environment.current(env.get("PYTHONPATH", "").split(os.pathsep))
    return JobResult(code, output, socket.gethostname(), env[WORKER_ENV], taken)


def worker_environment(spec: JobSpec) -> dict[str, str]:
    """The environment a job's script gets on a worker: the worker's, the job's variables
    on top, and the job's PATH and PYTHONPATH entries before the worker's own (so that what
    a cluster sets up for its workers stays within reach)."""
    carried = spec.carried_env()
    env = {**os.environ, **carried}
    for name in CARRIED_NAMES:
        entries = [
            entry
            for value in (carried.get(name), os.environ.get(name))
            for entry in (value or "").split(os.pathsep)
            if entry
        ]
        if entries:
            env[name] = os.pathsep.join(dict.fromkeys(entries))
    return env


def _wait_unless_stopped(proc: subprocess.Popen, stop_requested: Callable[[], bool] | None) -> int:
    """The script's exit status, or STOPPED once `stop_requested()` said so and its process
    group was stopped."""
    while True:
        try:
            return proc.wait(timeout=STOP_POLL if stop_requested else None)
        except subprocess.TimeoutExpired:
            if stop_requested is not None and stop_requested():
                stop_process(proc, group=True)
                return STOPPED


def stop_process(proc: subprocess.Popen, group: bool = False) -> None:
    """End an interrupted script: SIGINT (as Ctrl-C), then SIGTERM, then SIGKILL, each
    after INTERRUPT_GRACE seconds in which it did not end, so that a script that lost or
    ignores the interrupt is never waited out. With `group` (a script started in a session
    of its own) the signals go to its whole process group, and what it started and left
    running is killed at the end."""
    posix = os.name == "posix"

    def to_group(signum: int) -> Callable[[], None]:
        def send() -> None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signum)

        return send

    def interrupt() -> None:
        if posix:  # elsewhere a console's Ctrl-C is the only interrupt
            proc.send_signal(signal.SIGINT)

    if group and posix:
        sends = [to_group(signal.SIGINT), to_group(signal.SIGTERM), to_group(signal.SIGKILL)]
    else:
        sends = [interrupt, proc.terminate, proc.kill]
    for send in sends:
        if proc.poll() is not None:
            break
        send()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=INTERRUPT_GRACE)
    if group and posix:
        to_group(signal.SIGKILL)()
