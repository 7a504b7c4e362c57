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
import contextlib
import logging
import os
import signal
import sys
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from fdp_tasks.errors import FdpError
from fdp_tasks.executors.base import (
    INTERRUPT_GRACE,
    STOP_POLL,
    ChildPipe,
    Executor,
    JobResult,
    JobSpec,
    run_command,
)

CONNECT_TIMEOUT = "30s"  # how long a client waits for the scheduler to answer
# How long an interrupted command waits for the workers to say its scripts have ended (the
# three signals of `stop_process`, and the polls that hear the request), then for its other
# threads to drop their jobs' records, in seconds.
STOP_WAIT = 3 * INTERRUPT_GRACE + 4 * STOP_POLL + 5
RECORDS_WAIT = 30.0


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


def dask_setup(worker: Any) -> None:
    """Run in each worker process of a `LocalCluster` this executor starts (its preload).
    Ctrl-C in a terminal reaches the cluster's processes with the command's, but it is the
    command that stops the jobs in order (their scripts, then their records, then the
    cluster): a worker that died of it first would leave its script running, unseen. So a
    worker hears SIGINT and does nothing; a handler, not SIG_IGN, so that its scripts,
    which do not inherit a handler, still stop on theirs."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _ignore_interrupt)


def _ignore_interrupt(signum: int, frame: Any) -> None:
    """SIGINT in a worker process of the command's own cluster: see `dask_setup`."""


def stop_event_name(key: str) -> str:
    """The `distributed.Event` that asks the worker running task `key` to stop its script."""
    return f"{key}-stop"


def run_on_worker(spec: JobSpec, stop_event: str) -> JobResult:
    """The task a Dask worker runs: the job's command, named by the worker's address. Its
    script is stopped, process group and all, when the submitting side sets the Event
    `stop_event` (Ctrl-C there), or when the task is let go of (cancelled, or its client
    gone) while it runs: a thread of a worker cannot be killed, but its script can."""
    from distributed import Event, get_worker

    worker = get_worker()
    key = worker.get_current_task()
    event = Event(stop_event)

    def stop_requested() -> bool:
        try:
            task = worker.state.tasks.get(key)
            if task is None or task.state != "executing":  # released: nobody waits for it
                return True
            return bool(event.is_set())
        except Exception:  # the scheduler did not answer this time: ask again next time
            return False

    return run_command(spec, worker.address, stop_requested)


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
        self._running: dict[str, Any] = {}  # this process's jobs on the cluster, by key
        self._closes_at_exit = 0  # the process that registered `close` to run at its exit

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
            preload=[__name__],  # `dask_setup`: Ctrl-C is the command's to handle
        )

    def address(self) -> str:
        """The scheduler's address, starting the cluster on first use."""
        with self._lock:
            if self._address is None:
                quiet_cluster_logs()
                self._cluster = self.start_cluster()
                self._address = str(self._cluster.scheduler_address)
                self._close_at_exit()
            return self._address

    def _close_at_exit(self) -> None:
        """Once per process: `close` at its exit, which stops what still runs (after Ctrl-C
        reached the main thread while other threads waited for their jobs)."""
        if self._closes_at_exit != os.getpid():
            self._closes_at_exit = os.getpid()
            atexit.register(self.close)

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
                self._close_at_exit()
                self.await_workers(self._client)
            return self._client

    def await_workers(self, client: Any) -> None:
        """Wait for the cluster to have workers, where they may be slow to come."""

    # ------------------------------------------------------------------- jobs
    def run(self, spec: JobSpec, progress: ChildPipe | None = None) -> JobResult:
        """Submit the job and wait for it. Ctrl-C here stops its script on the worker (and
        waits, a bounded time, for the worker to say so) before it is passed on, so that
        the job's records are dropped only once nothing can add to them."""
        if progress is not None:
            progress.started()  # no pipe reaches another machine
        client = self.client()
        key = f"fdp-job-{uuid.uuid4()}"
        future = client.submit(
            run_on_worker, self.far_spec(spec), stop_event_name(key), key=key, pure=False
        )
        with self._lock:
            self._running[key] = future
        try:
            result: JobResult = future.result()
        except KeyboardInterrupt:
            self.stop([future])
            raise
        except FdpError:
            raise
        except Exception as exc:  # a worker lost, the scheduler gone: said in one line
            raise FdpError(
                f"executor {self.name}: the job {spec.name} did not finish on the cluster: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        finally:
            with self._lock:
                self._running.pop(key, None)
        sys.stdout.write(result.output)
        sys.stdout.flush()
        return result

    def stop(self, futures: list[Any]) -> None:
        """Stop these jobs' scripts: ask their workers (an Event each), wait up to STOP_WAIT
        seconds for them to report the scripts ended, then let the tasks go (which also
        stops, on its next poll, a script whose worker did not hear the Event)."""
        from distributed import Event, wait

        client = self._client
        if client is None or self._client_pid != os.getpid():
            return
        events = [Event(stop_event_name(f.key), client=client) for f in futures]
        try:
            with contextlib.suppress(Exception):  # the cluster is going or gone
                for event in events:
                    event.set()
                wait(futures, timeout=STOP_WAIT)
        finally:
            with contextlib.suppress(Exception):
                client.cancel(futures)
            for event in events:
                with contextlib.suppress(Exception):
                    event.clear()  # a long-lived scheduler keeps no Event per interrupt

    def close(self) -> None:
        """Stop this process's jobs still running (their threads then drop their records,
        which is waited for), close its client and, in the process that started it, the
        cluster."""
        with self._lock:
            running = list(self._running.values())
        if running:
            self.stop(running)
            self.await_jobs_in_flight(RECORDS_WAIT)
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
