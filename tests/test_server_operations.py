"""Running the registry for a group: behind an HTTPS reverse proxy, with a health endpoint,
an access log in the common log format, and several worker processes on one port.

Servers run on 127.0.0.1, port 0: in a thread of the test process where a setting is
enough, or as `fdp registry start` processes where the command line is what is tested.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import io
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from support import Env

from fdp_tasks.server.serve import RunningServer, start_in_thread
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

PUBLIC = "https://registry.example.org"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.org"}
# host ident user [day/Mon/year:hh:mm:ss zone] "request" status bytes
COMMON_LOG = re.compile(
    r"^(?P<host>\S+) - (?P<user>\S+) \[\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
    r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/1\.[01]" (?P<status>\d{3}) (?P<size>\d+|-)$'
)


class Served:
    """A registry server in a thread, with the admin's token."""

    def __init__(self, running: RunningServer, store: Store, token: str):
        self.running = running
        self.store = store
        self.token = token

    @property
    def url(self) -> str:
        return self.running.url

    def headers(self, extra: dict[str, str] | None = None, token: bool = True) -> dict[str, str]:
        headers = {"Accept": "application/json; version=1.0.0", **(extra or {})}
        if token:
            headers["Authorization"] = f"token {self.token}"
        return headers


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Factory: `serve(**settings)` starts a server with start_in_thread's settings."""
    started: list[Served] = []

    def start(name: str = "registry", **settings) -> Served:
        base = tmp_path / name
        base.mkdir(parents=True, exist_ok=True)
        store = Store(base / "registry.db")
        token = working_token(store, file=base / "token")
        served = Served(start_in_thread(store, base / "blobs", **settings), store, token)
        started.append(served)
        return served

    yield start
    for served in started:
        served.running.stop()
        served.store.close()


def every_url(served: Served, extra: dict[str, str]) -> list[str]:
    """The URLs the server answers with: the index's links, a new record's `url`, a list's
    `next` page and a presigned upload URL, each asked for with headers `extra`."""
    api = f"{served.url}/api/"
    urls = list(requests.get(api, headers=served.headers(extra)).json().values())
    for name in ("alpha", "beta", "gamma"):
        made = requests.post(f"{api}namespace/", json={"name": name}, headers=served.headers(extra))
        assert made.status_code == 201, made.text
        urls.append(made.json()["url"])
    page = requests.get(f"{api}namespace/?page_size=1", headers=served.headers(extra)).json()
    urls.append(page["next"])
    nxt = requests.get(page["next"].replace(PUBLIC, served.url), headers=served.headers(extra))
    urls.append(nxt.json()["previous"])
    sha1 = hashlib.sha1(b"some data").hexdigest()
    presigned = requests.post(f"{api}data/{sha1}/", headers=served.headers(extra)).json()
    urls += [presigned["url"], presigned["storage_root"]]
    return urls


# --- behind a reverse proxy with HTTPS ------------------------------------------------------


def test_forwarded_scheme_and_host_of_a_trusted_proxy_are_in_every_url(serve):
    served = serve(trusted_proxies=1)
    urls = every_url(served, FORWARDED)
    assert len(urls) > 20
    assert all(url.startswith(f"{PUBLIC}/") for url in urls), [
        u for u in urls if not u.startswith(PUBLIC)
    ]
    # Without forwarded headers (a client on the server's machine) its own address is used.
    assert requests.get(f"{served.url}/api/").json()["namespace"] == (
        f"{served.url}/api/namespace/"
    )


def test_forwarded_headers_are_ignored_without_a_trusted_proxy(serve):
    served = serve()
    urls = every_url(served, FORWARDED)
    assert all(url.startswith(f"{served.url}/") for url in urls), [
        u for u in urls if not u.startswith(served.url)
    ]
    assert not any("example.org" in url for url in urls)


def test_a_presigned_upload_through_the_proxy_path_works(serve):
    """The presigned URL handed out behind the proxy names the public host; the proxy sends
    the same path and query on to the server, which takes the upload."""
    served = serve(trusted_proxies=1)
    body = b"x" * 1000
    sha1 = hashlib.sha1(body).hexdigest()
    info = requests.post(f"{served.url}/api/data/{sha1}/", headers=served.headers(FORWARDED)).json()
    assert info["url"].startswith(f"{PUBLIC}/data/{sha1}?")
    put = requests.put(info["url"].replace(PUBLIC, served.url), data=body, headers=FORWARDED)
    assert put.status_code == 201, put.text


# --- health -----------------------------------------------------------------------------------


def test_health_is_ok_while_the_database_answers(serve):
    served = serve()
    resp = requests.get(f"{served.url}/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


def test_health_is_503_when_the_database_is_gone(postgres, tmp_path):
    url = postgres.new_database()
    store = Store(url)
    running = start_in_thread(store, tmp_path / "blobs")
    try:
        assert requests.get(f"{running.url}/health").status_code == 200
        postgres.drop_database(url)
        resp = requests.get(f"{running.url}/health")
        assert resp.status_code == 503
        assert resp.json() == {"status": "unavailable"}
        assert "postgres" not in resp.text  # nothing about the database's whereabouts
    finally:
        running.stop()
        store.close()


# --- access log -------------------------------------------------------------------------------


def test_access_log_has_a_common_format_line_per_request(serve):
    log = io.StringIO()
    served = serve(access_log=log)
    api = f"{served.url}/api/"
    requests.get(api)
    requests.post(f"{api}namespace/", json={"name": "lab"}, headers=served.headers())
    requests.get(f"{api}namespace/999/")
    body = b"data"
    sha1 = hashlib.sha1(body).hexdigest()
    info = requests.post(f"{api}data/{sha1}/", headers=served.headers()).json()
    assert requests.put(info["url"], data=body).status_code == 201
    signature = re.search(r"signature=([0-9a-f]+)", info["url"])[1]

    lines = log.getvalue().splitlines()
    parsed = [COMMON_LOG.match(line) for line in lines]
    assert all(parsed), lines
    seen = [(m["user"], m["method"], m["target"].split("?")[0], m["status"]) for m in parsed]
    assert seen == [
        ("-", "GET", "/api/", "200"),
        ("admin", "POST", "/api/namespace/", "201"),
        ("-", "GET", "/api/namespace/999/", "404"),
        ("admin", "POST", f"/api/data/{sha1}/", "201"),
        ("-", "PUT", f"/data/{sha1}", "201"),
    ]
    assert all(m["host"] == "127.0.0.1" for m in parsed)
    assert parsed[0]["size"] == str(len(requests.get(api).content))
    text = log.getvalue()
    assert served.token not in text
    assert signature not in text
    assert "signature=-" in text


def test_access_log_names_the_client_a_trusted_proxy_forwards(serve):
    log = io.StringIO()
    served = serve(access_log=log, trusted_proxies=1)
    requests.get(f"{served.url}/api/", headers={**FORWARDED, "X-Forwarded-For": "203.0.113.7"})
    assert log.getvalue().startswith("203.0.113.7 - - [")


# --- open connections ----------------------------------------------------------------------


def test_a_server_holds_as_many_connections_as_it_is_told_and_queues_the_rest(tmp_path):
    """`fdp registry start --connections 2`: two idle clients hold the server's two
    connections, a third client waits unanswered until one of them leaves."""
    env = Env(tmp_path)
    db = str(tmp_path / "registry.db")
    refused = env.fdp(
        "registry", "start", "--db", db, "--port", "0", "--connections", "0", check=False
    )
    assert refused.returncode != 0
    assert (
        refused.stderr.strip().splitlines()[-1].endswith("--connections: expected 1 or more, got 0")
    )
    start = env.fdp("registry", "start", "--db", db, "--port", "0", "--connections", "2")
    url = start.stdout.strip().split()[0]
    host, port = re.match(r"http://([^:/]+):(\d+)/", url).groups()
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(2)]
    try:
        time.sleep(0.5)  # both accepted
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(url, timeout=(5, 1.5))
        idle.pop().close()
        assert requests.get(url, timeout=30).status_code == 200
    finally:
        for sock in idle:
            sock.close()
        env.fdp("registry", "stop", "--db", db)


# --- several worker processes ---------------------------------------------------------------


def children(pid: int) -> set[int]:
    """The process ids of `pid`'s children (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return check()


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_serve_one_port_together(tmp_path, registry_database):
    """`fdp registry start --workers 3`: three processes answer on one port, all write to
    the one database (PostgreSQL, or SQLite in WAL mode whose writers take turns), a worker
    that dies is replaced, and `stop` ends them all."""
    env = Env(tmp_path)
    db = registry_database
    token_file = tmp_path / "alice.token"
    token = env.fdp("registry", "token", "--db", db, "--user", "alice", "--file", str(token_file))
    assert token.returncode == 0
    secret = token_file.read_text().strip()
    access = tmp_path / "access.log"
    start = env.fdp(
        "registry", "start", "--db", db, "--port", "0", "--workers", "3",
        "--access-log", str(access), "--blobs", str(tmp_path / "blobs"),
    )  # fmt: skip
    url = start.stdout.strip().split()[0]
    try:
        status = env.fdp("registry", "status", "--db", db).stdout
        supervisor = int(re.search(r"pid (\d+)", status)[1])
        assert wait_for(lambda: len(children(supervisor)) == 3)
        workers = children(supervisor)

        headers = {"Authorization": f"token {secret}"}

        def create(i: int) -> int:
            return requests.post(
                f"{url}namespace/", json={"name": f"ns{i}"}, headers=headers
            ).status_code

        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            codes = list(pool.map(create, range(60)))
        assert codes == [201] * 60
        assert requests.get(f"{url}namespace/").json()["count"] == 60
        health = requests.get(url.replace("/api/", "/health"))
        assert health.json() == {"status": "ok"}

        lines = access.read_text().splitlines()
        assert sum('"POST /api/namespace/ HTTP/1.1" 201' in line for line in lines) == 60
        assert all(COMMON_LOG.match(line) for line in lines)

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(
            lambda: victim not in children(supervisor) and len(children(supervisor)) == 3
        )
        assert requests.get(f"{url}namespace/").status_code == 200
    finally:
        env.fdp("registry", "stop", "--db", db)
    assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 20)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_workers_stop_when_their_supervisor_is_killed(tmp_path):
    env = Env(tmp_path)
    db = str(tmp_path / "registry" / "registry.db")
    url = env.fdp("registry", "start", "--db", db, "--port", "0", "--workers", "2").stdout.split()[
        0
    ]
    status = env.fdp("registry", "status", "--db", db).stdout
    supervisor = int(re.search(r"pid (\d+)", status)[1])
    assert wait_for(lambda: len(children(supervisor)) == 2)
    workers = children(supervisor)
    os.kill(supervisor, signal.SIGKILL)
    try:
        assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers), 20)
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        env.fdp("registry", "stop", "--db", db)
