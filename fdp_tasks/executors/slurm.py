"""Jobs on a Slurm cluster, through `dask-jobqueue`'s `SLURMCluster`.

Why dask-jobqueue rather than submitit: a sweep is many short jobs, and with
dask-jobqueue a few Slurm allocations each hold a Dask worker that runs job after job, so a
job waits for the scheduler's queue once per worker rather than once per job; and the
submission, the waiting and the failures are the Dask executor's own code, one path for
both engines. The workers' Slurm jobs are submitted with `sbatch` when the first job is,
and cancelled when the command ends.
"""

from __future__ import annotations

import signal
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from fdp_tasks.errors import FdpError
from fdp_tasks.executors.dask import DaskExecutor


@dataclass(frozen=True)
class SlurmOptions:
    """`slurm:` of .fdp/settings.yaml: what each worker's Slurm job asks for."""

    partition: str | None = None
    account: str | None = None
    cores: int = 1
    memory: str = "1GB"
    walltime: str = "01:00:00"
    workers: int = 2  # Slurm jobs, one Dask worker each
    interface: str | None = None  # the network interface workers reach the scheduler on
    directives: list[str] = field(default_factory=list)  # more `#SBATCH` lines
    log_directory: str | None = None
    start_timeout: float = 120.0  # seconds the first worker's Slurm job may take to start


def _slurm_cluster_class() -> Any:
    """dask-jobqueue's SLURMCluster. Importing it sets a SIGINT handler (so only the main
    thread may import it first) that exits at once: Ctrl-C is given back to the command,
    which stops its jobs in order."""
    previous = signal.getsignal(signal.SIGINT)
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise FdpError(
            "executor slurm needs dask-jobqueue: pip install 'fdp-tasks[dask]'"
        ) from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    return SLURMCluster


class SlurmExecutor(DaskExecutor):
    name = "slurm"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if threading.current_thread() is threading.main_thread():
            _slurm_cluster_class()  # imported here, where it may be: see above

    def start_cluster(self) -> Any:
        SLURMCluster = _slurm_cluster_class()  # noqa: N806 - a class
        options: SlurmOptions = self.options
        cluster = SLURMCluster(
            queue=options.partition,
            account=options.account,
            cores=options.cores,
            processes=1,
            memory=options.memory,
            walltime=options.walltime,
            interface=options.interface,
            python=sys.executable,
            job_extra_directives=list(options.directives),
            log_directory=options.log_directory,
            job_name="fdp-worker",
        )
        cluster.scale(jobs=options.workers)
        return cluster

    def await_workers(self, client: Any) -> None:
        """The first worker's Slurm job must start, or the command stops saying why."""
        timeout = self.options.start_timeout
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise FdpError(
                f"executor slurm: no worker started within {timeout:g} s of submitting "
                f"{self.options.workers} Slurm job(s); see `squeue` and `sinfo`"
            ) from None
