"""Running the registry server: in a thread, in the foreground, or as a background process.

waitress is the WSGI server: production-grade, pure Python, and it runs on Windows too. A
background server records itself in `<state_dir>/server.json` (pid, url, db), so `stop`
only ever signals the process it started itself.

In front of the app: request bodies bounded by the listener (limits.py), the forwarded
scheme and host of `trusted_proxies` reverse proxies taken as the request's own (werkzeug's
ProxyFix; without that setting waitress drops such headers), and an access log
(access_log.py). `workers` > 1 runs that many processes on one port (workers.py).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from waitress import wasyncore
from waitress.server import create_server
from werkzeug.middleware.proxy_fix import ProxyFix

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.files import replace_text
from fdp_tasks.processes import pid_alive
from fdp_tasks.server.access_log import AccessLog, open_access_log
from fdp_tasks.server.app import create_app
from fdp_tasks.server.blobs import blobs_location
from fdp_tasks.server.limits import (
    CONNECTION_LIMIT,
    MAX_BODY_BYTES,
    MAX_UPLOAD_BYTES,
    LargeBodyCheck,
    bounded_channel,
    parse_size,
)
from fdp_tasks.server.workers import (
    Supervisor,
    check_workers,
    listening_socket,
    stop_with_parent,
)
from fdp_tasks.storage import Storage
from fdp_tasks.store.base import RegistryError
from fdp_tasks.store.sql import Store, database_url
from fdp_tasks.transfer import new_session

log = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
STATE_FILE = "server.json"
LOG_FILE = "server.log"
START_TIMEOUT = 20.0
MODULE = "fdp_tasks.server.serve"

# Background servers started by this process, so they can be reaped (no zombies).
_children: dict[int, subprocess.Popen] = {}


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard address, to be reached on loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _warn_if_exposed(host: str, trusted_proxies: int = 0) -> None:
    """Warn when other machines can reach the server; and, unless a TLS-terminating proxy
    is said to be in front, that tokens would reach it in clear text."""
    if _is_loopback(host):
        return
    log.warning(
        "the registry is listening on %s, reachable from other machines; reads are "
        "public and writes only need a token",
        host,
    )
    if not trusted_proxies:
        log.warning(
            "no HTTPS here: tokens travel in clear text to %s. Put a reverse proxy with "
            "HTTPS in front and say so with --trusted-proxies 1",
            host,
        )


def _make_server(
    app: Any,
    host: str,
    port: int,
    threads: int,
    *,
    max_body: int = MAX_BODY_BYTES,
    large_body: LargeBodyCheck | None = None,
    trusted_proxies: int = 0,
    sock: socket.socket | None = None,
    connections: int = CONNECTION_LIMIT,
) -> Any:
    """A waitress server for `app` on host:port (or on the listening socket `sock`).

    Request bodies are limited to `max_body` bytes, except those of requests `large_body`
    admits by their head (see limits.py). Forwarded-by-proxy headers reach the app only
    when `trusted_proxies` says a proxy sets them (the app then applies ProxyFix). At most
    `connections` are open at once; more wait to be accepted.
    """
    # "Task queue depth" warnings only mean a burst of parallel requests; not for users.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    where: dict[str, Any] = {"host": host, "port": port}
    if sock is not None:
        where = {"sockets": [sock]}
    try:
        server = create_server(
            app,
            threads=threads,
            ident="fdp-registry",
            clear_untrusted_proxy_headers=not trusted_proxies,
            channel_timeout=300,
            max_request_body_size=max_body,
            **where,
        )
    except ValueError as exc:  # waitress: a host name it cannot resolve
        raise BadInput(f"cannot listen on {host}:{port}: {exc}") from None
    except OSError as exc:  # the port is taken, or the address is not this machine's
        raise RegistryError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    listener: Any = server  # one socket: a TcpWSGIServer, whose connections are made so
    listener.channel_class = bounded_channel(large_body, max(max_body, MAX_UPLOAD_BYTES))
    # waitress counts its own listening socket and wake-up pipe among the connections
    listener.adj.connection_limit = connections + len(listener._map)
    return server


def _wsgi(
    store: Store,
    blob_dir: Path | str | Storage,
    public_url: str | None = None,
    literal_names: bool = False,
    trusted_proxies: int = 0,
    access_log: Any = None,
) -> tuple[Any, LargeBodyCheck]:
    """The registry app as served, and the check that admits large bodies: with
    `trusted_proxies`, the scheme, host, port and client address the nearest that many
    proxies forwarded; with `access_log` (a stream), a line per request."""
    app = create_app(store, blobs_location(blob_dir), public_url, literal_names)
    large_body: LargeBodyCheck = app.config["fdp_signed_upload"]
    wsgi: Any = app
    if trusted_proxies:
        n = trusted_proxies
        wsgi = ProxyFix(wsgi, x_for=n, x_proto=n, x_host=n, x_port=n)
    if access_log is not None:
        wsgi = AccessLog(wsgi, access_log)
    return wsgi, large_body


def _serve_until(server: Any, stop: threading.Event, grace: float = 5.0) -> None:
    """Run waitress's loop until `stop` is set, then finish running requests and close.

    Driving the loop here (instead of server.run()) lets another thread or a signal
    handler stop it without racing on waitress's socket map.
    """
    smap = server._map
    while not stop.is_set() and smap:
        wasyncore.loop(timeout=0.2, map=smap, use_poll=True, count=1)
    wasyncore.dispatcher.close(server)  # stop accepting; keep the trigger for replies
    dispatcher = server.task_dispatcher
    deadline = time.monotonic() + grace
    while (dispatcher.active_count or dispatcher.queue) and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, map=smap, use_poll=True, count=1)
    dispatcher.shutdown(timeout=1)
    wasyncore.close_all(smap)


def _wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class RunningServer:
    """A server running in a thread of this process."""

    url: str
    store: Store
    _stop: threading.Event = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def stop(self) -> None:
        """Stop accepting, let running requests finish, and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(
    store: Store,
    blob_dir: Path | str | Storage,
    host: str = "127.0.0.1",
    port: int = 0,
    public_url: str | None = None,
    threads: int = 8,
    literal_names: bool = False,
    *,
    trusted_proxies: int = 0,
    max_body: int = MAX_BODY_BYTES,
    access_log: Any = None,
    on_created: Callable[[], None] | None = None,
) -> RunningServer:
    """Serve `store` from a daemon thread; returns once the port accepts connections.

    Port 0 picks a free port. Used by tests and by `fdp run` for the script's registry
    (with `literal_names`: see RegistryApp). `access_log`: a stream for access lines;
    `on_created`: called for each record a request creates.
    """
    _warn_if_exposed(host, trusted_proxies)
    app, large_body = _wsgi(
        store, blobs_location(blob_dir), public_url, literal_names, trusted_proxies, access_log
    )
    if on_created is not None:
        app = CreatedCounter(app, on_created)
    server = _make_server(
        app,
        host,
        port,
        threads,
        max_body=max_body,
        large_body=large_body,
        trusted_proxies=trusted_proxies,
    )
    stop = threading.Event()
    thread = threading.Thread(
        target=_serve_until, args=(server, stop), name="fdp-registry", daemon=True
    )
    thread.start()
    real_port = server.effective_port
    url_host = _url_host(host)
    _wait_for_port(url_host.strip("[]"), real_port)
    return RunningServer(f"http://{url_host}:{real_port}", store, stop, thread)


class CreatedCounter:
    """WSGI middleware calling `on_created` for each record a POST creates (a 201): how a
    job shows the finalise of a script it only knows through HTTP."""

    def __init__(self, app: Any, on_created: Callable[[], None]):
        self.app = app
        self.on_created = on_created

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)

        def starting(status: str, headers: Any, *rest: Any) -> Any:
            if status.startswith("201"):
                with contextlib.suppress(Exception):  # progress never fails a request
                    self.on_created()
            return start_response(status, headers, *rest)

        return self.app(environ, starting)


@contextlib.contextmanager
def job_registry(
    store: Store,
    server_dir: Path,
    db_url: str,
    on_record: Callable[[], None] | None = None,
) -> Iterator[str]:
    """The API URL of a local registry for a job's script: the background server of that
    database if `fdp registry start` runs one, else one in a thread of this process for as
    long as the job runs. A `*` in a name filter is literal there (see RegistryApp).

    What the script creates there under the job's token is provisional (see
    store/provisional.py) on either server; `on_record` hears of each record created on
    the server in this process."""
    status = background_status(server_dir)
    if status and status.get("db") == db_url:
        yield str(status["url"]).rstrip("/") + "/api/"
        return
    running = start_in_thread(store, server_dir / "blobs", literal_names=True, on_created=on_record)
    try:
        yield running.api_url
    finally:
        running.stop()


def serve_forever(
    db_url: str,
    blob_dir: Path | str | Storage,
    host: str = "127.0.0.1",
    port: int = 8000,
    state_dir: Path | None = None,
    public_url: str | None = None,
    threads: int = 8,
    on_ready: Callable[[str], None] | None = None,
    *,
    trusted_proxies: int = 0,
    max_body: int = MAX_BODY_BYTES,
    access_log: str | None = None,
    workers: int = 1,
    listen_fd: int | None = None,
    connections: int = CONNECTION_LIMIT,
) -> None:
    """Serve in the foreground until SIGTERM or Ctrl-C, then shut down gracefully.

    With `state_dir`, records pid and url in server.json once listening (so port 0
    works for background servers) and removes it again on the way out. `access_log`: a
    file to append access lines to, or "-" for stderr. With `workers` > 1 this process
    supervises that many worker processes (see workers.py); a worker is given the
    supervisor's listening socket as `listen_fd`.
    """
    check_workers(workers, database_url(db_url))
    if listen_fd is None:
        _warn_if_exposed(host, trusted_proxies)
    store = Store(db_url)
    stream = open_access_log(access_log) if workers == 1 else None
    sock = socket.socket(fileno=listen_fd) if listen_fd is not None else None
    try:
        # Built by a supervisor too: the database is set up and the signing key made once,
        # before any worker starts.
        blobs = blobs_location(blob_dir)
        app, large_body = _wsgi(store, blobs, public_url, False, trusted_proxies, stream)
        if workers > 1:
            sock = listening_socket(host, port)
        else:
            server = _make_server(
                app,
                host,
                port,
                threads,
                max_body=max_body,
                large_body=large_body,
                trusted_proxies=trusted_proxies,
                sock=sock,
                connections=connections,
            )
        bound = sock.getsockname()[1] if sock is not None else server.effective_port
        url = f"http://{_url_host(host)}:{bound}"
        stop = threading.Event()

        def _on_signal(_signum: int, _frame: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        if listen_fd is not None:
            stop_with_parent(stop)
        state_file = Path(state_dir) / STATE_FILE if state_dir else None
        if state_file:
            _write_state(state_file, {"pid": os.getpid(), "url": url, "db": store.url})
        if on_ready:
            on_ready(url)
        try:
            if sock is not None and workers > 1:
                command = _worker_command(
                    db_url,
                    blob_dir,
                    public_url,
                    threads,
                    trusted_proxies,
                    max_body,
                    access_log,
                    connections,
                )
                store.close()
                Supervisor(sock, workers, command).run(stop)
            else:
                _serve_until(server, stop)
        finally:
            if state_file:
                info = _read_state(state_file)
                if info and info.get("pid") == os.getpid():
                    state_file.unlink(missing_ok=True)
    finally:
        store.close()
        if sock is not None:
            sock.close()
        if stream is not None and stream is not sys.stderr:
            stream.close()


def _worker_command(
    db_url: str,
    blob_dir: Path | str | Storage,
    public_url: str | None,
    threads: int,
    trusted_proxies: int,
    max_body: int,
    access_log: str | None,
    connections: int,
) -> Callable[[int], list[str]]:
    """How a supervisor starts a worker on its listening socket (a file descriptor)."""

    def command(fd: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            MODULE,
            "--db",
            database_url(db_url),
            "--blobs",
            str(blobs_location(blob_dir)),
            "--listen-fd",
            str(fd),
            "--threads",
            str(threads),
            "--trusted-proxies",
            str(trusted_proxies),
            "--max-body-size",
            str(max_body),
            "--connections",
            str(connections),
        ]
        if public_url:
            cmd += ["--public-url", public_url]
        if access_log:
            cmd += ["--access-log", access_log]
        return cmd

    return command


# ------------------------------------------------------------------ background
def _write_state(path: Path, info: dict) -> None:
    replace_text(path, lambda fh: json.dump(info, fh), 0o600)


def _read_state(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return None
    return info


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    return pid_alive(pid)


def _cmdline(pid: int) -> str | None:
    """The process's command line, or None when this platform cannot tell."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        pass
    if os.name == "nt":
        return None
    try:
        out = subprocess.run(
            ["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with new_session({"Accept": "application/json; version=1.0.0"}) as session:
            resp = session.get(f"{url}/api/", timeout=timeout)
    except requests.RequestException:
        return False
    return resp.status_code == 200 and "storage_root" in resp.text


def _is_ours(info: dict) -> bool:
    """Whether the recorded pid is still our server (not a recycled pid)."""
    pid = info["pid"]
    if not _pid_alive(pid):
        return False
    cmd = _cmdline(pid)
    if cmd is not None:
        return MODULE in cmd
    return _answers(str(info.get("url", "")))


def _last_log_line(path: Path) -> str:
    """What a server that would not start said last: its error, or its traceback's end."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    lines = text.strip().splitlines()
    return lines[-1] if lines else "(the log is empty)"


def background_status(state_dir: Path) -> dict | None:
    """{pid, url, db} of the background server recorded in `state_dir`, if it runs."""
    info = _read_state(Path(state_dir) / STATE_FILE)
    if info is None or not _is_ours(info):
        return None
    return info


def start_background(
    db_url: str,
    blob_dir: Path | str | Storage,
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    public_url: str | None = None,
    timeout: float = START_TIMEOUT,
    *,
    threads: int = 8,
    trusted_proxies: int = 0,
    max_body: int = MAX_BODY_BYTES,
    access_log: str | None = None,
    workers: int = 1,
    connections: int = CONNECTION_LIMIT,
) -> str:
    """Start a detached server process and return its URL once `GET /api/` answers.

    If a server recorded in `state_dir` is already running, its URL is returned. The
    keyword settings are serve_forever's; an access log "-" goes to the server's log.
    """
    state_dir = Path(state_dir)
    running = background_status(state_dir)
    if running:
        return str(running["url"])
    check_workers(workers, database_url(db_url))
    _warn_if_exposed(host, trusted_proxies)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / STATE_FILE
    state_file.unlink(missing_ok=True)
    log_path = state_dir / LOG_FILE
    db = database_url(db_url)
    cmd = [
        sys.executable,
        "-m",
        MODULE,
        "--db",
        db,
        "--blobs",
        str(blobs_location(blob_dir)),
        "--host",
        host,
        "--port",
        str(port),
        "--state-dir",
        str(state_dir.resolve()),
    ]
    cmd += ["--threads", str(threads), "--workers", str(workers)]
    cmd += ["--trusted-proxies", str(trusted_proxies), "--max-body-size", str(max_body)]
    cmd += ["--connections", str(connections)]
    if public_url:
        cmd += ["--public-url", public_url]
    if access_log:
        target = access_log if access_log == "-" else str(Path(access_log).resolve())
        cmd += ["--access-log", target]
    kwargs: dict[str, Any] = {}
    if os.name == "nt":
        kwargs["creationflags"] = (
            subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        )
    else:
        kwargs["start_new_session"] = True
    with open(log_path, "ab") as logfh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=logfh,
            stderr=subprocess.STDOUT,
            close_fds=True,
            **kwargs,
        )
    _children[proc.pid] = proc
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _children.pop(proc.pid, None)
            raise RegistryError(
                f"the registry server exited with code {proc.returncode} while starting: "
                f"{_last_log_line(log_path)} (the whole log: {log_path})"
            )
        info = _read_state(state_file)
        if info and info.get("pid") == proc.pid and _answers(str(info["url"]), timeout=1):
            return str(info["url"])
        time.sleep(0.1)
    _terminate(proc.pid)
    raise RegistryError(
        f"the registry server did not answer within {timeout:.0f} s: "
        f"{_last_log_line(log_path)} (the whole log: {log_path})"
    )


def _terminate(pid: int, wait: float = 10.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + wait
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid) and os.name != "nt":
        os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=5)


def stop_background(state_dir: Path) -> bool:
    """Stop the server recorded in `state_dir` if it is still ours; True if one was stopped.

    A stale record (process gone, or the pid now belongs to something else) is removed
    without signalling anything.
    """
    state_file = Path(state_dir) / STATE_FILE
    info = _read_state(state_file)
    if info is None:
        state_file.unlink(missing_ok=True)
        return False
    stopped = False
    if _is_ours(info):
        _terminate(info["pid"])
        stopped = True
    state_file.unlink(missing_ok=True)
    return stopped


# ------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    """`python -m fdp_tasks.server.serve`: waitress in the foreground."""
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=main.__doc__)
    parser.add_argument("--db", required=True, help="SQLAlchemy URL or SQLite file path")
    parser.add_argument(
        "--blobs",
        required=True,
        type=blobs_location,
        help="where uploaded files go: a directory, or s3://bucket/prefix",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--public-url", default=None, help="base URL used in links")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--trusted-proxies", type=int, default=0)
    parser.add_argument("--max-body-size", default=str(MAX_BODY_BYTES))
    parser.add_argument("--connections", type=int, default=CONNECTION_LIMIT)
    parser.add_argument("--access-log", default=None, help='a file, or "-" for stderr')
    parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    worker = args.listen_fd is not None
    try:
        serve_forever(
            args.db,
            args.blobs,
            args.host,
            args.port,
            args.state_dir,
            args.public_url,
            args.threads,
            on_ready=None if worker else lambda url: log.info("registry serving on %s/api/", url),
            trusted_proxies=args.trusted_proxies,
            max_body=parse_size(args.max_body_size),
            access_log=args.access_log,
            workers=args.workers,
            listen_fd=args.listen_fd,
            connections=args.connections,
        )
    except FdpError as exc:  # one line in the log, which `start_background` reports
        log.error("%s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
