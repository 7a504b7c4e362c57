"""What every executor does: take a job's script as a `JobSpec` and run it to the end.

The submitting process keeps everything else of a job (the lock, the job directory, the
working config, the job's token, keeping or dropping its records): an executor only decides
where the script's process runs. `run_command` is what runs on the far side; it is a module
function with plain arguments, so any engine can ship it to a worker by reference.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from fdp_tasks.errors import FdpError

# Variables a job carries to another machine: its own (FDP_*) and where its programs are;
# the rest of the environment is the worker's.
CARRIED_PREFIXES = ("FDP_",)
CARRIED_NAMES = ("PATH", "PYTHONPATH")
WORKER_ENV = "FDP_WORKER"  # set on the far side: which worker ran the job
EXECUTOR_ENV = "FDP_EXECUTOR"  # the executor's name, for the script to see where it runs
OUTPUT_LIMIT = 1 << 20  # the end of a far job's output sent back to be shown, in bytes


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
    """How a job ended on the far side: its exit status, the end of its output, and where
    it ran."""

    code: int
    output: str
    host: str
    worker: str


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

    def run(self, spec: JobSpec, progress: ChildPipe | None = None) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Stop what the executor started (a cluster); nothing for the local one."""

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


def run_command(spec: JobSpec, worker: str = "") -> JobResult:
    """Run a job's command on this machine (a worker's), its output into the job log; the
    environment is this machine's with the job's variables on top."""
    env = {**os.environ, **spec.carried_env()}
    env[WORKER_ENV] = worker or socket.gethostname()
    log_path = Path(spec.log_path)
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.run(
                spec.command,
                cwd=spec.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=False,
            )
        except FileNotFoundError:
            raise FdpError(
                f"cannot start {spec.command[0]!r} on {socket.gethostname()}: not found on PATH"
            ) from None
    size = log_path.stat().st_size
    with open(log_path, "rb") as fh:
        if size > OUTPUT_LIMIT:
            fh.seek(size - OUTPUT_LIMIT)
        output = fh.read().decode("utf-8", "replace")
    return JobResult(proc.returncode, output, socket.gethostname(), env[WORKER_ENV])
