"""Several server processes on one port: a supervisor binds the listening socket once and
starts worker processes that inherit it, each accepting connections from it (the kernel
hands each new connection to one of them).

This works wherever a socket can be inherited by a child process (every POSIX system), needs
no SO_REUSEPORT, and leaves no window in which the port is free for another program. A
worker that dies is replaced; one that dies right after starting, over and over, stops the
supervisor with the reason instead of looping. SIGTERM or SIGINT to the supervisor stops
the workers gracefully (each finishes its running requests), then the supervisor.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable

from fdp_tasks.errors import BadInput, FdpError

log = logging.getLogger(__name__)

QUICK_DEATH = 5.0  # a worker that exits sooner than this after starting failed to start
MAX_QUICK_DEATHS = 5
GRACE = 8.0  # within the 10 s `fdp registry stop` waits before it kills the supervisor


def check_workers(workers: int, db_url: str) -> None:
    """Refuse a worker count the platform or the database cannot serve."""
    if workers < 1:
        raise BadInput(f"--workers: expected a number of processes of at least 1, got {workers}")
    if workers == 1:
        return
    if os.name == "nt":
        raise BadInput("--workers: several worker processes need a POSIX system; use 1 here")
    if db_url.startswith("sqlite") and (":memory:" in db_url or db_url.rstrip("/") == "sqlite:"):
        raise BadInput(
            "--workers: an in-memory SQLite database cannot be shared by several processes; "
            "use a database file or PostgreSQL"
        )


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, which child processes may inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def stop_with_parent(stop: threading.Event, interval: float = 1.0) -> None:
    """In a worker: set `stop` once the supervisor is gone (killed outright, it could not
    stop its workers), so that no orphan keeps serving the port."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(interval):
            if os.getppid() != parent:
                log.warning("the registry supervisor is gone; this worker stops")
                stop.set()

    threading.Thread(target=watch, name="fdp-supervisor-watch", daemon=True).start()


class Supervisor:
    """Keeps `count` workers running, each started by `command(fd)` with the listening
    socket's file descriptor `fd`, until `stop` is set."""

    def __init__(self, sock: socket.socket, count: int, command: Callable[[int], list[str]]):
        self.sock = sock
        self.count = count
        self.command = command
        self.workers: dict[int, tuple[subprocess.Popen, float]] = {}
        self.quick_deaths = 0

    def _start_one(self) -> None:
        fd = self.sock.fileno()
        proc = subprocess.Popen(self.command(fd), pass_fds=(fd,), stdin=subprocess.DEVNULL)
        self.workers[proc.pid] = (proc, time.monotonic())

    def run(self, stop: threading.Event) -> None:
        try:
            for _ in range(self.count):
                self._start_one()
            while not stop.wait(0.2):
                self._replace_dead()
        finally:
            self._stop_all()

    def _replace_dead(self) -> None:
        for pid, (proc, started) in list(self.workers.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.workers[pid]
            if time.monotonic() - started < QUICK_DEATH:
                self.quick_deaths += 1
            else:
                self.quick_deaths = 0
            if self.quick_deaths >= MAX_QUICK_DEATHS:
                raise FdpError(
                    f"registry workers keep exiting right after starting (the last with code "
                    f"{code}); see their messages above"
                )
            log.warning("registry worker %d exited with code %s; starting another", pid, code)
            self._start_one()

    def _stop_all(self) -> None:
        for proc, _ in self.workers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE
        for proc, _ in self.workers.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()
