"""The default executor: the script as a subprocess of this process, as `fdp run` has
always run it, its output echoed and kept in the job log, its finalise progress heard
through a pipe of its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fdp_tasks.errors import FdpError
from fdp_tasks.executors.base import ChildPipe, Executor, JobResult, JobSpec, stop_process


class LocalExecutor(Executor):
    """Runs each job here, given the loopback server of the local registry."""

    name = "local"

    def run(self, spec: JobSpec, progress: ChildPipe | None = None) -> JobResult:
        code = run_script(spec.command, Path(spec.cwd), spec.env, Path(spec.log_path), progress)
        return JobResult(code)  # its environment is this process's


def run_script(
    command: list[str],
    cwd: Path,
    env: dict[str, str],
    log_path: Path,
    progress: ChildPipe | None = None,
) -> int:
    """Run the script, echoing its output and keeping it in the job log; `progress` hears
    from the script's finalise through a pipe of its own."""
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env={**env, **(progress.child_env() if progress else {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=progress.child_fds() if progress else (),
            )
        except FileNotFoundError:
            raise FdpError(f"cannot start {command[0]!r}: not found on PATH") from None
        finally:
            if progress is not None:
                progress.started()
        if proc.stdout is None:  # pragma: no cover - stdout=PIPE always gives one
            raise FdpError(f"cannot read the output of {command[0]!r}")
        try:
            for line in proc.stdout:
                log.write(line)
                sys.stdout.write(line.decode("utf-8", "replace"))
            sys.stdout.flush()
            return proc.wait()
        except KeyboardInterrupt:
            # Ctrl-C reaches the script with fdp when both are in the terminal's process
            # group, but a signal can arrive between two of a shell script's commands and
            # be lost to the next one: it is passed on, then the script stopped harder
            stop_process(proc)
            raise
