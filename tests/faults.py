"""A TCP proxy on 127.0.0.1 that stands between the fdp client and a registry server and
misbehaves on purpose, as networks and overloaded servers do: it drops connections before a
request reaches the server or before or in the middle of the answer, answers 500 (with or
without the server having done the work), stalls answers (mostly for less than the
client's timeout, a few times for longer), and resets connections.

Every fault is drawn from a seed. The draw for a request depends only on the seed, the
request line (method, path and query) and how many times that request line came before,
so two runs with the same seed inject the same faults into the same requests even when
threads interleave them differently. `injected` counts what was done.

The proxy speaks just enough HTTP/1.1 to find where each request and answer ends
(Content-Length, chunked, or the end of the connection), so it can act on one request of a
keep-alive connection; it never changes the bytes it lets through. It holds each message
whole in memory before passing it on, so it is meant for tests' small files.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The kinds of fault, in the order a draw tries them.
FAULTS = (
    "drop_before_request",  # the connection closes before the request reaches the server
    "drop_mid_request",  # half the request reaches the server, then the connection closes
    "drop_before_answer",  # the server did the work; its answer is lost with the connection
    "drop_mid_answer",  # the answer stops halfway and the connection closes
    "error_before",  # 500, the server never saw the request
    "error_after",  # 500, although the server did the work
    "reset",  # a TCP reset (RST) after the server did the work
    "stall",  # the answer comes late, but before the client gives up
    "long_stall",  # the answer comes later than the client waits
)

# Each fault's share of requests when a test asks for the usual mix (about 1 in 8 has one).
USUAL_RATES: dict[str, float] = {
    "drop_before_request": 0.015,
    "drop_mid_request": 0.01,
    "drop_before_answer": 0.02,
    "drop_mid_answer": 0.015,
    "error_before": 0.015,
    "error_after": 0.015,
    "reset": 0.015,
    "stall": 0.02,
    "long_stall": 0.002,
}

ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: 37\r\n"
    b"\r\n"
    b'{"detail": "injected fault (proxy)"}\n'
)
SOCKET_TIMEOUT = 120.0  # a side that says nothing for this long is gone


def seeded_fraction(seed: int, *parts: object) -> float:
    """A number in [0, 1) that depends only on the seed and the parts: the same every run,
    whatever order threads ask in."""
    key = "\0".join(str(p) for p in (seed, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64


class Closed(Exception):
    """The other side closed its connection (or it broke) before a message ended."""


@dataclass
class Message:
    """One HTTP request or answer as it came over the wire, and what the proxy needs of it."""

    head: bytes
    body: bytes
    first_line: str
    headers: dict[str, str]
    keep_alive: bool

    @property
    def raw(self) -> bytes:
        return self.head + self.body


class Wire:
    """A socket read as a stream of lines and exact byte counts."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        try:
            data = self.sock.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        self.buffer += data
        return True

    def at_end(self) -> bool:
        """Whether the peer closed the connection with nothing more to read."""
        return not self.buffer and not self._more()

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._more():
                raise Closed(f"closed before {marker!r}")
        cut = self.buffer.index(marker) + len(marker)
        out, self.buffer = self.buffer[:cut], self.buffer[cut:]
        return out

    def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            if not self._more():
                raise Closed(f"closed {count - len(self.buffer)} bytes early")
        out, self.buffer = self.buffer[:count], self.buffer[count:]
        return out

    def rest(self) -> bytes:
        while self._more():
            pass
        out, self.buffer = self.buffer, b""
        return out


def read_message(wire: Wire, *, request: bool, method: str = "") -> Message:
    """The next request (or the answer to a `method` request) from `wire`, head and body."""
    head = wire.until(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    first = lines[0]
    version = first.split(" ", 1)[0] if not request else first.rsplit(" ", 1)[-1]
    connection = headers.get("connection", "").lower()
    keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
    status = 0 if request else int(first.split(" ", 2)[1])
    if not request and (method == "HEAD" or status in (204, 304) or 100 <= status < 200):
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = _chunked(wire)
    elif "content-length" in headers:
        body = wire.exactly(int(headers["content-length"]))
    elif request:
        body = b""
    else:  # an answer that ends with its connection
        body = wire.rest()
        keep_alive = False
    return Message(head, body, first, headers, keep_alive)


def _chunked(wire: Wire) -> bytes:
    out = []
    while True:
        size_line = wire.until(b"\r\n")
        out.append(size_line)
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, up to an empty line
                line = wire.until(b"\r\n")
                out.append(line)
                if line == b"\r\n":
                    return b"".join(out)
        out.append(wire.exactly(size + 2))


@dataclass
class FaultProxy:
    """A fault-injecting TCP proxy to `target` (an http://127.0.0.1:PORT/... URL).

    `rates` gives each fault of FAULTS its share of requests; `short_stall` is the range of
    a stall's seconds, `long_stall` the seconds of a long one (make it longer than the
    client's timeout), of which at most `max_long_stalls` are injected, and only into
    requests under `/api/` (downloads wait longer). `url` is the proxied URL of `target`.
    """

    target: str
    seed: int
    rates: dict[str, float] = field(default_factory=lambda: dict(USUAL_RATES))
    short_stall: tuple[float, float] = (0.05, 0.5)
    long_stall: float = 35.0
    max_long_stalls: int = 1

    def __post_init__(self) -> None:
        unknown = set(self.rates) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)}; known: {FAULTS}")
        parts = urlsplit(self.target)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.injected: Counter[str] = Counter()
        self.requests = 0
        self.enabled = True
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        port = self._listener.getsockname()[1]
        self.url = parts._replace(netloc=f"127.0.0.1:{port}").geturl()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the draw
    def draw(self, request_line: str) -> str | None:
        """The fault for this request (None: let it through), from the seed, the request
        line and how many times it came before; counted in `injected`."""
        with self._lock:
            self.requests += 1
            occurrence = self._seen[request_line]
            self._seen[request_line] += 1
            if not self.enabled:
                return None
            roll = seeded_fraction(self.seed, request_line, occurrence)
            chosen = None
            for fault in FAULTS:
                share = self.rates.get(fault, 0.0)
                if roll < share:
                    chosen = fault
                    break
                roll -= share
            if chosen == "long_stall" and (
                self.injected["long_stall"] >= self.max_long_stalls or " /api/" not in request_line
            ):
                chosen = "stall"
            if chosen:
                self.injected[chosen] += 1
            return chosen

    @property
    def seen(self) -> Counter[str]:
        """How many times each request line came through."""
        with self._lock:
            return Counter(self._seen)

    def stall_seconds(self, request_line: str) -> float:
        low, high = self.short_stall
        return low + (high - low) * seeded_fraction(self.seed, "stall", request_line)

    @contextlib.contextmanager
    def calm(self) -> Iterator[None]:
        """No faults inside the block (requests are still counted)."""
        with self._lock:
            before, self.enabled = self.enabled, False
        try:
            yield
        finally:
            with self._lock:
                self.enabled = before

    def summary(self) -> str:
        faults = ", ".join(f"{k}={v}" for k, v in sorted(self.injected.items())) or "none"
        return f"seed={self.seed}: {self.requests} requests, faults: {faults}"

    # ------------------------------------------------------------------ serving
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(
                target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True
            ).start()

    def _track(self, sock: socket.socket) -> socket.socket:
        sock.settimeout(SOCKET_TIMEOUT)
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _close(self, sock: socket.socket | None, reset: bool = False) -> None:
        if sock is None:
            return
        with self._lock:
            self._sockets.discard(sock)
        with contextlib.suppress(OSError):
            if reset:  # linger 0: the close sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        server: socket.socket | None = None
        answers: Wire | None = None
        try:
            wire = Wire(client)
            while not self._stop.is_set() and not wire.at_end():
                request = read_message(wire, request=True)
                line = request.first_line.rsplit(" ", 1)[0]  # method and target
                method = line.split(" ", 1)[0]
                fault = self.draw(line)
                if fault == "drop_before_request":
                    return
                if fault == "error_before":
                    client.sendall(ERROR_500)
                    continue
                if server is None or answers is None:
                    server = self._track(socket.create_connection(self.upstream))
                    answers = Wire(server)
                if fault == "drop_mid_request":
                    server.sendall(request.raw[: max(1, len(request.raw) // 2)])
                    return
                server.sendall(request.raw)
                answer = read_message(answers, request=False, method=method)
                if fault == "drop_before_answer":
                    return
                if fault == "reset":
                    self._close(client, reset=True)
                    return
                if fault == "error_after":
                    client.sendall(ERROR_500)
                    if not answer.keep_alive:
                        return
                    continue
                if fault == "drop_mid_answer":
                    client.sendall(answer.head + answer.body[: len(answer.body) // 2])
                    return
                if fault == "stall":
                    self._stop.wait(self.stall_seconds(line))
                elif fault == "long_stall":
                    self._stop.wait(self.long_stall)
                client.sendall(answer.raw)
                if not (request.keep_alive and answer.keep_alive):
                    return
        except (Closed, OSError, ValueError, IndexError):
            return
        finally:
            self._close(server)
            self._close(client)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            self._close(sock)
