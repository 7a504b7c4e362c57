"""Jobs on a Dask cluster (`distributed`): a `LocalCluster` of worker processes started
for the command, or the scheduler at `dask.scheduler_address`.

One cluster serves every job of a command. doit's thread runner shares the executor's one
client; its process runner sends each job task to a worker process by pickling it, and an
executor that crosses that way carries the scheduler's address (starting the cluster in the
submitting process first), so the worker process connects a client of its own to the same
cluster instead of starting another.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from fdp_tasks.errors import FdpError
from fdp_tasks.executors.base import ChildPipe, Executor, JobResult, JobSpec, run_command

CONNECT_TIMEOUT = "30s"  # how long a client waits for the scheduler to answer


@dataclass(frozen=True)
class DaskOptions:
    """`dask:` of .fdp/settings.yaml."""

    scheduler_address: str | None = None
    workers: int | None = None  # a LocalCluster's worker processes (default: the cores)


def quiet_cluster_logs() -> None:
    """The scheduler and the cluster's bookkeeping log every worker and client coming and
    going at INFO: a command says only what went wrong (the job's output is its own)."""
    import distributed  # noqa: F401 - its loggers are made (and their levels set) on import

    for name in list(logging.root.manager.loggerDict):
        if name.split(".", 1)[0] in ("distributed", "dask_jobqueue"):
            logging.getLogger(name).setLevel(logging.ERROR)


def run_on_worker(spec: JobSpec) -> JobResult:
    """The task a Dask worker runs: the job's command, named by the worker's address."""
    from distributed import get_worker

    return run_command(spec, get_worker().address)


class DaskExecutor(Executor):
    name = "dask"

    def __init__(
        self,
        options: Any,
        shared_registry: str | None,
        shared_registry_db: str | None = None,
        address: str | None = None,
    ):
        self.options = options
        self.shared_registry = shared_registry
        self.shared_registry_db = shared_registry_db
        self._address = address or getattr(options, "scheduler_address", None)
        self._lock = threading.Lock()
        self._cluster: Any = None
        self._client: Any = None
        self._client_pid = 0
        self._owner_pid = os.getpid()

    # ------------------------------------------------------------- the cluster
    def start_cluster(self) -> Any:
        """The cluster this executor starts when no scheduler address is configured."""
        from distributed import LocalCluster

        workers = self.options.workers or os.cpu_count() or 1
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_kwargs={"dashboard": False},  # nobody looks: no web server, no port
            silence_logs=logging.ERROR,
        )

    def address(self) -> str:
        """The scheduler's address, starting the cluster on first use."""
        with self._lock:
            if self._address is None:
                quiet_cluster_logs()
                self._cluster = self.start_cluster()
                self._address = str(self._cluster.scheduler_address)
                atexit.register(self.close)
            return self._address

    def client(self) -> Any:
        """This process's client of the cluster (one per process, shared by its threads)."""
        address = self.address()
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                from distributed import Client

                try:
                    self._client = Client(
                        address, set_as_default=False, timeout=CONNECT_TIMEOUT
                    )
                except OSError as exc:
                    raise FdpError(
                        f"executor {self.name}: cannot reach the Dask scheduler at {address}: "
                        f"{exc}"
                    ) from None
                self._client_pid = os.getpid()
                self.await_workers(self._client)
            return self._client

    def await_workers(self, client: Any) -> None:
        """Wait for the cluster to have workers, where they may be slow to come."""

    # ------------------------------------------------------------------- jobs
    def run(self, spec: JobSpec, progress: ChildPipe | None = None) -> int:
        if progress is not None:
            progress.started()  # no pipe reaches another machine
        future = self.client().submit(
            run_on_worker, self.far_spec(spec), key=f"fdp-job-{uuid.uuid4()}", pure=False
        )
        try:
            result: JobResult = future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise
        except FdpError:
            raise
        except Exception as exc:  # a worker lost, the scheduler gone: said in one line
            raise FdpError(
                f"executor {self.name}: the job {spec.name} did not finish on the cluster: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        sys.stdout.write(result.output)
        sys.stdout.flush()
        return result.code

    def close(self) -> None:
        """Close this process's client and, in the process that started it, the cluster."""
        with self._lock:
            client, self._client = self._client, None
            cluster = self._cluster if os.getpid() == self._owner_pid else None
            self._cluster = None
        if client is not None and self._client_pid == os.getpid():
            client.close()
        if cluster is not None:
            cluster.close()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Crossing to another process (doit's process runner): the cluster's address goes
        along, so the other process joins this cluster rather than starting its own."""
        return (
            type(self),
            (self.options, self.shared_registry, self.shared_registry_db, self.address()),
        )
