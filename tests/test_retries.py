"""The one retry policy of every HTTP request, the circuit breaker per remote, and transfers
that resume after a kill: uploads to our server's blob store and to S3, downloads into the
data store.

Faults come from real servers on 127.0.0.1: a small HTTP server of this module that answers
from a script (429 and 503 with Retry-After, connections reset before any answer), our
registry server behind a WSGI middleware that counts what it receives, moto for S3. A kill is
a real SIGKILL of a client process, sent by that process to itself once its progress callback
has seen enough bytes, so it always dies at the same point of the transfer.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import REPO, CountingRegistry, hold_port, producer, reader, sha1

from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.store.base import RegistryError
from fdp_tasks.transfer import CircuitBreaker, RemoteUnavailable

MiB = 1024 * 1024


# ------------------------------------------------------------- a server that misbehaves
class ScriptedServer:
    """An HTTP server whose answers follow a script, one step per request: `("reset",)`
    cuts the connection (TCP RST) once the request is read, `(status, headers)` answers
    that status with those headers; once the script is spent every request gets 200 and a
    JSON body. It notes each request as (method, path, step)."""

    def __init__(self, script: list[tuple[Any, ...]]):
        self.script = list(script)
        self.seen: list[tuple[str, str, tuple[Any, ...]]] = []
        lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with lock:
                    step = owner.script.pop(0) if owner.script else (200, {})
                    owner.seen.append((self.command, self.path, step))
                if step[0] == "reset":
                    linger = struct.pack("ii", 1, 0)
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    self.close_connection = True
                    self.connection.close()
                    return
                status, headers = step
                body = (
                    json.dumps(
                        {
                            "username": "admin",
                            "url": f"http://{self.headers['Host']}/api/namespace/7/",
                            "name": "n",
                        }
                    ).encode()
                    if status < 300
                    else b"{}"
                )
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = answer  # noqa: N815

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a reset connection is the point, not an error

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def steps(self) -> list[Any]:
        return [step[0] for _, _, step in self.seen]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[[list[tuple[Any, ...]]], ScriptedServer]]:
    made: list[ScriptedServer] = []

    def start(script: list[tuple[Any, ...]]) -> ScriptedServer:
        made.append(ScriptedServer(script))
        return made[-1]

    yield start
    for server in made:
        server.close()


def waits_logged(caplog: pytest.LogCaptureFixture) -> list[tuple[float, bool]]:
    """The waits the retry policy chose, as it logs them: (seconds, whether Retry-After
    asked for them)."""
    found = []
    for record in caplog.records:
        if record.name == "fdp_tasks.transfer" and "waiting" in record.getMessage():
            message = record.getMessage()
            seconds = float(message.split("waiting ")[1].split(" s")[0])
            found.append((seconds, "Retry-After" in message))
    return found


# ------------------------------------------------------------------------- the policy
def test_retry_after_is_obeyed_in_seconds_and_as_a_date(
    scripted: Callable[..., ScriptedServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fdp_tasks.transfer")
    in_three_seconds = email.utils.formatdate(time.time() + 3, usegmt=True)
    server = scripted([(429, {"Retry-After": "1"}), (503, {"Retry-After": in_three_seconds})])
    client = HttpRegistry(server.url, token="t", backoff=0.01)
    assert client.whoami() == "admin"
    assert server.steps() == [429, 503, 200]
    waits = waits_logged(caplog)
    assert [asked for _, asked in waits] == [True, True]
    assert waits[0][0] == 1.0  # what the server asked, not the 0.01 s backoff
    # the date (to the second), less the time it took to get here: not the 0.01 s backoff
    assert 0.9 <= waits[1][0] <= 3.0


def test_a_retry_after_beyond_the_budget_is_not_waited_for(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted([(503, {"Retry-After": "3600"})])
    client = HttpRegistry(server.url, token="t", backoff=0.01)
    with pytest.raises(RegistryError, match="server error 503"):
        client.whoami()
    assert server.steps() == [503]  # asked to wait an hour: one request, then the error


def test_reset_connections_are_retried_when_a_repeat_is_safe(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted([("reset",), ("reset",)])
    client = HttpRegistry(server.url, token="t", backoff=0.01)
    assert client.whoami() == "admin"
    assert server.steps() == ["reset", "reset", 200]

    # a plain create may have happened before the reset: it is not sent twice
    server.script[:] = [("reset",)]
    server.seen.clear()
    with pytest.raises(RegistryError, match="connection reset after 1 attempt"):
        client.create("namespace", {"name": "n"})
    assert server.steps() == ["reset"]
    # get_or_create takes a clash on the repeat as its record: safe, so retried
    server.script[:] = [("reset",), (500, {})]
    server.seen.clear()
    record, created = client.get_or_create("namespace", {"name": "n"})
    assert record["id"] == 7 and created
    assert server.steps() == ["reset", 500, 200]
    # a 5xx to a plain create is an answer, not retried: the create may have happened
    server.script[:] = [(502, {})]
    server.seen.clear()
    with pytest.raises(RegistryError, match="502"):
        client.create("namespace", {"name": "n"})
    assert server.steps() == [502]


def test_the_breaker_fails_every_request_at_once_after_a_run_of_failures(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted([("reset",)] * 100)
    breaker = CircuitBreaker("remote origin (test)", threshold=4, cooldown=3600)
    client = HttpRegistry(server.url, token="t", backoff=0.01, retries=3, breaker=breaker)
    with pytest.raises(RegistryError, match="no answer"):
        client.whoami()
    assert len(server.seen) == 3
    failures = []
    for _ in range(20):
        with pytest.raises(RemoteUnavailable) as err:
            client.find("namespace")
        failures.append(str(err.value))
    assert len(server.seen) == 4  # one attempt opened it; the other 19 sent nothing
    where = server.url.removesuffix("/api/")
    assert set(failures) == {
        f"remote origin (test) does not answer: no answer from the registry at {where} "
        "(GET /api/namespace/: connection reset)"
    }  # it never answered: it did not "stop"
    assert breaker.refused == 20

    # a success closes it: after the cool-down one probe goes through
    breaker.cooldown = 0
    server.script[:] = []
    assert client.whoami() == "admin"
    assert not breaker.is_open

    # once it has answered, a remote whose breaker opens again "stopped answering"
    breaker.cooldown = 3600
    server.script[:] = [("reset",)] * 100
    with pytest.raises(RegistryError, match="no answer"):
        client.whoami()
    with pytest.raises(RemoteUnavailable, match=r"^remote origin \(test\) stopped answering: "):
        client.find("namespace")


# ------------------------------------------------------------------ a remote that dies
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(base: Path, port: int) -> subprocess.Popen[bytes]:
    """Our registry server in a process of its own on `port` (its database and blobs under
    `base`), once it answers."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fdp_tasks.server.serve",
            "--db",
            str(base / "registry.db"),
            "--blobs",
            str(base / "blobs"),
            "--port",
            str(port),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/api/", timeout=1)
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the registry server did not start")


class ResettingListener:
    """What a dead remote looks like to a client that still reaches its port: every
    connection is accepted and reset at once. Counts the connections."""

    def __init__(self, port: int):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.connections = 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def product_count(port: int) -> int:
    try:
        answer = requests.get(
            f"http://127.0.0.1:{port}/api/data_product/", params={"page_size": 1}, timeout=2
        )
        return int(answer.json()["count"])
    except (requests.RequestException, ValueError, KeyError):
        return -1


def blob_count(base: Path) -> int:
    """Files the server has taken in: the push's bytes phase, before any record is sent."""
    blobs = base / "blobs"
    return sum(1 for p in blobs.rglob("*") if p.is_file()) if blobs.is_dir() else 0


@pytest.mark.timeout(600)
def test_a_remote_killed_mid_push_fails_the_rest_fast_and_a_rerun_completes(
    tmp_path: Path,
) -> None:
    from fdp_tasks.store.sql import Store
    from fdp_tasks.store.tokens import working_token

    products = 100
    # files too large for bundles (about 300 KiB each): each goes up in a request of its own
    alice = producer(tmp_path, outputs=products, args="12000")
    alice.doit()
    base = tmp_path / "server"
    base.mkdir()
    store = Store(base / "registry.db")
    token_file = base / "token"
    working_token(store, file=token_file)
    store.close()
    port = free_port()
    server = start_server(base, port)
    alice.add_remote(f"http://127.0.0.1:{port}/api/", token_file)
    push = alice.start_fdp("push", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    listener = None
    try:
        deadline = time.monotonic() + 120
        while blob_count(base) < 3 and push.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert push.poll() is None, "the push ended before the server could be killed"
        server.send_signal(signal.SIGKILL)
        server.wait()
        listener = ResettingListener(port)  # the port answers no more: every try counted
        killed_at = time.monotonic()
        out, err = push.communicate(timeout=120)
        print(f"the push ended {time.monotonic() - killed_at:.1f} s after the kill")
    finally:
        if push.poll() is None:
            push.kill()
            push.wait()
    assert listener is not None
    attempts_after_kill = listener.connections
    listener.close()
    held = hold_port(port)  # kept for the server's return, given to no other test meanwhile
    output = out + err
    assert push.returncode != 0, output
    assert "Traceback" not in output, output[-6000:]
    assert "stopped answering" in output
    # without a breaker: 5 attempts for each of the items left (hundreds); with it, a few
    assert attempts_after_kill <= 30, (attempts_after_kill, output[-3000:])
    # every item is either pushed or failed with a reason (or points to the item that said it)
    failed = {
        line.split(": ")[2]: line.split(": ", 3)[3]
        for line in err.splitlines()
        if line.startswith("fdp: error: push:")
    }
    pushed = [line for line in out.splitlines() if line.startswith("pushed ")]
    assert failed and len(failed) + len(pushed) == products
    reasons = {why for why in failed.values() if not why.startswith("as push:")}
    assert any("stopped answering" in why for why in reasons), reasons
    assert all("no answer" in why or "stopped answering" in why for why in reasons), reasons

    server = start_server(base, port)
    held.close()
    try:
        again = alice.fdp("push")
        assert again.returncode == 0
        assert product_count(port) >= products
    finally:
        server.terminate()
        server.wait()


# -------------------------------------------------------------------- resumable uploads
KILLING_UPLOAD = """
import os, signal, sys
from fdp_tasks.storage.upstream import UpstreamDataStorage
api, token, path, sha, piece, kill_at = sys.argv[1:7]

def progress(done):
    if done >= int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)

UpstreamDataStorage(api, token, piece_size=int(piece)).upload(path, sha, progress)
"""


class BodyCounter:
    """WSGI middleware noting, for each PUT to /data/, its Content-Range and body size."""

    def __init__(self, app: Any):
        self.app = app
        self.puts: list[tuple[str, int]] = []
        self.ranges: list[str] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/data/") and environ["REQUEST_METHOD"] == "PUT":
            size = int(environ.get("CONTENT_LENGTH") or 0)
            self.puts.append((environ.get("HTTP_CONTENT_RANGE", ""), size))
        if path.startswith("/data/") and environ["REQUEST_METHOD"] == "GET":
            self.ranges.append(environ.get("HTTP_RANGE", ""))
        return self.app(environ, start_response)


def random_file(path: Path, size: int) -> str:
    data = os.urandom(size)
    path.write_bytes(data)
    return hashlib.sha1(data).hexdigest()


def run_killed(script: str, *args: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]


def test_a_killed_upload_to_our_server_sends_only_the_missing_bytes(tmp_path: Path) -> None:
    from fdp_tasks.storage.upstream import UpstreamDataStorage

    counter: list[BodyCounter] = []
    server = CountingRegistry(
        tmp_path / "server", wrap=lambda app: counter.append(BodyCounter(app)) or counter[-1]
    )
    try:
        size, piece = 12 * MiB + 4321, MiB
        source = tmp_path / "large.bin"
        sha = random_file(source, size)
        run_killed(
            KILLING_UPLOAD,
            server.api_url,
            server.token,
            str(source),
            sha,
            str(piece),
            str(5 * MiB + MiB // 2),
        )
        before = sum(n for _, n in counter[0].puts)
        assert 5 * MiB <= before < size  # five pieces arrived whole; the sixth died with it
        counter[0].puts.clear()

        steps: list[int] = []
        storage = UpstreamDataStorage(server.api_url, server.token, piece_size=piece)
        info = storage.upload(source, sha, steps.append)
        assert info["uploaded"] and info["offset"] == 5 * MiB
        sent_again = sum(n for _, n in counter[0].puts)
        assert sent_again == size - 5 * MiB  # only what the server did not hold
        assert counter[0].puts[0][0] == f"bytes {5 * MiB}-{6 * MiB - 1}/{size}"
        assert steps[-1] == size - 5 * MiB
        blob = tmp_path / "server" / "blobs" / sha[:2] / sha
        assert sha1(blob) == sha
        assert not list((tmp_path / "server" / "blobs" / ".uploads").glob("*.part"))
        assert b"".join(storage.open(sha)) == blob.read_bytes()
        storage.close()
    finally:
        server.stop()


def test_pieces_that_do_not_hash_to_the_sha1_are_dropped(tmp_path: Path) -> None:
    from fdp_tasks.errors import HashMismatch
    from fdp_tasks.storage.upstream import UpstreamDataStorage

    server = CountingRegistry(tmp_path / "server")
    try:
        source = tmp_path / "large.bin"
        random_file(source, 3 * MiB)
        claimed = hashlib.sha1(b"something else").hexdigest()
        storage = UpstreamDataStorage(server.api_url, server.token, piece_size=MiB)
        with pytest.raises(HashMismatch, match="SHA-1"):
            storage.upload(source, claimed)
        blobs = tmp_path / "server" / "blobs"
        assert not (blobs / claimed[:2] / claimed).exists()
        assert not list((blobs / ".uploads").glob("*.part"))
        storage.close()
    finally:
        server.stop()


KILLING_S3_PUT = """
import os, signal, sys
from fdp_tasks.storage.s3 import S3Storage
url, path, part, kill_at = sys.argv[1:5]
state = {"done": 0}

def progress(done):
    if done >= int(kill_at):
        os.kill(os.getpid(), signal.SIGKILL)

S3Storage(url, part_size=int(part), concurrency=1).put(path, "big/file.bin", progress=progress)
"""


def test_a_killed_multipart_upload_to_s3_resumes_with_the_parts_it_lacks(
    tmp_path: Path, object_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fdp_tasks.storage.s3 import S3Storage

    for key, value in {
        "AWS_ACCESS_KEY_ID": "fdp-test",
        "AWS_SECRET_ACCESS_KEY": "fdp-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": object_store.endpoint,
    }.items():
        monkeypatch.setenv(key, value)
    url = f"s3://{object_store.create_bucket()}/resume"
    part = 5 * MiB  # S3's smallest part
    source = tmp_path / "big.bin"
    sha = random_file(source, 3 * part + 1234)
    run_killed(KILLING_S3_PUT, url, str(source), str(part), str(2 * part + MiB))

    storage = S3Storage(url, part_size=part, concurrency=1)
    assert not storage.exists("big/file.bin")  # nothing half-written is an object
    sent: list[tuple[int, int]] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        body = params["Body"]
        sent.append((params["PartNumber"], len(body) if hasattr(body, "__len__") else -1))

    storage.client.meta.events.register("provide-client-params.s3.UploadPart", note)
    steps: list[int] = []
    storage.put(source, "big/file.bin", sha1=sha, progress=steps.append)
    assert [number for number, _ in sent] == [3, 4]  # parts 1 and 2 were kept
    assert steps[-1] == part + 1234
    digest = hashlib.sha1()
    for block in storage.open("big/file.bin"):
        digest.update(block)
    assert digest.hexdigest() == sha
    storage.close()


# ------------------------------------------------------------------- resumable downloads
class SlowFirstDownload:
    """WSGI middleware: the first download of a large file trickles (so a test can kill
    the client midway); later ones go at full speed. Notes every Range asked for."""

    def __init__(self, app: Any):
        self.app = app
        self.ranges: list[str] = []
        self.slow = True

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("PATH_INFO", "").startswith("/data/"):
            return self.app(environ, start_response)
        if environ["REQUEST_METHOD"] != "GET":
            return self.app(environ, start_response)
        self.ranges.append(environ.get("HTTP_RANGE", ""))
        slow, self.slow = self.slow, False
        body = self.app(environ, start_response)
        return self.trickle(body) if slow else body

    @staticmethod
    def trickle(body: Any) -> Iterator[bytes]:
        try:
            for block in body:
                for start in range(0, len(block), 64 * 1024):
                    time.sleep(0.02)
                    yield block[start : start + 64 * 1024]
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


@pytest.mark.timeout(600)
def test_a_pull_killed_midway_continues_from_its_part_file(tmp_path: Path) -> None:
    wrapped: list[SlowFirstDownload] = []
    server = CountingRegistry(
        tmp_path / "server", wrap=lambda app: wrapped.append(SlowFirstDownload(app)) or wrapped[-1]
    )
    try:
        alice = producer(tmp_path, outputs=1, args="400000")  # ~8 MiB of output
        alice.doit()
        alice.add_remote(server.api_url, server.token_file)
        alice.fdp("push")
        rel = "lab/results/part00/0.0.1.csv"
        size = (alice.data_store / rel).stat().st_size
        assert size > 4 * MiB

        colleague = reader(tmp_path, server.api_url, ["results/part00"])
        pull = colleague.start_fdp("pull", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        folder = colleague.data_store / "lab/results/part00"
        deadline = time.monotonic() + 120
        part = None
        while time.monotonic() < deadline and pull.poll() is None:
            parts = list(folder.glob(".*.part")) if folder.is_dir() else []
            if parts and parts[0].stat().st_size >= MiB:
                part = parts[0]
                break
            time.sleep(0.02)
        pull.send_signal(signal.SIGKILL)
        pull.wait()
        assert part is not None, "the pull ended before it could be killed"
        held = part.stat().st_size
        assert 0 < held < size

        colleague.fdp("pull")
        assert sha1(colleague.data_store / rel) == sha1(alice.data_store / rel)
        resumed = wrapped[0].ranges[-1]
        assert resumed.startswith("bytes=") and int(resumed[6:].split("-")[0]) >= held
        assert not list(folder.glob(".*.part"))
    finally:
        server.stop()
