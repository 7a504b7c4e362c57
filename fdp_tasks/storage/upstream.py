"""A FAIR Data Pipeline registry's file storage, reached through its `/data/` protocol.

The protocol, as the upstream registry (data-registry) defines it and our server speaks it
too: `POST <api>/data/<sha1>` (with a token) answers a presigned upload URL, or 409 when the
registry already holds that SHA-1; the client PUTs the bytes there (straight to the object
store: the registry never sees them) and records the file under the registry's storage root
`<site>/data/` with path = SHA-1; `GET <site>/data/<sha1>` serves it, or redirects to a
presigned URL of the object store. Objects are addressed by content, so keys are SHA-1s.
Our server also answers `POST <api>/data/` with many SHA-1s at once (`ask_uploads`), so a
push of many files then sends each file's bytes and nothing else per file; the upstream,
which answers that with 404, is asked file by file.

The protocol has no way to delete or list files, nor to presign a download; those raise
UnsupportedOperation. A registry without object storage answers the upload request with 500
(or 404/405/501 when it lacks the endpoint): NoFileStorage, said once, in one line.

The token goes only to the registry's own origin, never to a presigned URL or to the object
store a download is redirected to (S3 refuses a request with two credentials). Thread-safe:
each thread gets its own HTTP session (the thread that made the storage may hand in one to
share, such as its registry client's keep-alive session).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from fdp_tasks import transfer
from fdp_tasks.errors import HashMismatch
from fdp_tasks.storage.base import (
    BUNDLE_END,
    BUNDLE_TYPE,
    DEFAULT_EXPIRY,
    BadBundle,
    NoFileStorage,
    ObjectMissing,
    Progress,
    ProgressReader,
    Source,
    Storage,
    StorageError,
    Stored,
    UnsupportedOperation,
    bundle_entries,
    bundle_entry,
    check_method,
    check_range,
    check_sha1_key,
    replayable,
    sha1_of,
    source_size,
    verify_sha1,
)

# How a registry says it cannot take files: the upstream without object storage answers 500
# ('Settings' object has no attribute 'BUCKETS'), one without the endpoint 404 or 405.
NO_FILE_STORAGE = (404, 405, 500, 501)
# Resumable uploads go in pieces of this size: a killed upload loses at most one.
PIECE_SIZE = 32 * 1024 * 1024
# Files asked about in one `POST <api>/data/` (our server's; the upstream asks one by one).
UPLOADS_PER_REQUEST = 500
# A batched answer is used for this long: well within the life of the URLs it holds.
ANSWER_LIFETIME = 20 * 60


def api_root(url: str) -> str:
    """`http://h:8000`, `.../api` and `.../api/` all become `http://h:8000/api/`."""
    text = url.strip().rstrip("/")
    if not text.endswith("/api"):
        text += "/api"
    return text + "/"


def origin(url: str) -> str:
    split = urlsplit(url)
    return f"{split.scheme}://{split.netloc}"


def answer_text(resp: requests.Response, limit: int = 120) -> str:
    """The answer's message when it is one short line (not an error page), else nothing."""
    try:
        body = resp.json()
    except ValueError:
        text = resp.text.strip()
    else:
        text = str(body["detail"]) if isinstance(body, dict) and "detail" in body else str(body)
    return text if text and "\n" not in text and "<" not in text and len(text) <= limit else ""


class UpstreamDataStorage(Storage):
    """The files of a registry (upstream or ours) through the `/data/` protocol."""

    kind = "a registry's file storage"
    content_addressed = True

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: float | None = None,
        retries: int = 5,
        backoff: float = 0.2,
        breaker: transfer.CircuitBreaker | None = None,
        piece_size: int = PIECE_SIZE,
        bundles: Callable[[], bool] = lambda: False,
    ):
        """`breaker`: the circuit breaker of the remote this storage belongs to (its
        registry client's), so that a remote that stopped answering fails fast for files
        and records alike; `timeout`: seconds to wait for an answer (default: see
        `transfer.http_timeout`); `bundles`: whether the registry said it sends small files
        in bundles (`read_bundle`), which only then is asked for them."""
        self.api_url = api_root(api_url)
        self.data_root = urljoin(self.api_url, "../data/")
        self.url = self.data_root
        self._token = token
        self._origin = origin(self.api_url)
        self.timeout = transfer.http_timeout() if timeout is None else timeout
        self.retries = max(1, retries)
        self.backoff = backoff
        self.policy = transfer.RetryPolicy(attempts=self.retries, backoff=backoff)
        self.piece_size = max(1, piece_size)
        self.breaker = breaker or transfer.CircuitBreaker(f"the registry ({self.api_url})")
        self._owner = threading.get_ident()
        self._shared = session
        self._local = threading.local()
        # the sessions made for other threads, with the thread each serves now
        self._made: list[tuple[threading.Thread, requests.Session]] = []
        self._lock = threading.Lock()
        # answers of `ask_uploads`, by SHA-1, with when they came: `upload` takes them
        self._answers: dict[str, tuple[float, dict[str, Any]]] = {}
        self.asks_in_batches: bool | None = None  # unknown until asked
        self._says_bundles = bundles
        self.bundles: bool | None = None  # False once a registry refused a bundle
        self.upload_bundles: bool | None = None  # the same, for bundles sent

    # ------------------------------------------------------------------ plumbing
    def session(self) -> requests.Session:
        """This thread's session: the one handed in for the creating thread, else its own."""
        if self._shared is not None and threading.get_ident() == self._owner:
            return self._shared
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._free_session()
            self._local.session = session
        return session

    def _free_session(self) -> requests.Session:
        """A session for this thread: that of a thread which has ended, with its open
        connection, else a new one. A push or pull starts upload and download threads
        anew for each page of files; were each thread's session kept apart, every page
        would leave connections open, and a registry server that takes a hundred at a time
        (waitress's limit) would stop answering some tens of pages into a push."""
        me = threading.current_thread()
        with self._lock:
            for index, (thread, session) in enumerate(self._made):
                if not thread.is_alive():
                    self._made[index] = (me, session)
                    return session
            session = transfer.new_session()
            self._made.append((me, session))
            return session

    def auth(self, url: str) -> dict[str, str]:
        """The token header, for the registry's own origin only."""
        if self._token and origin(url) == self._origin:
            return {"Authorization": f"token {self._token}"}
        return {}

    def send(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        expected: tuple[int, ...] = (),
        body: Callable[[], Any] | None = None,
        headers: dict[str, str] | None = None,
        retry_safe: bool | None = None,
    ) -> requests.Response:
        """One request under the retry policy of `transfer.send` (asking for an upload URL
        changes nothing and a PUT of the same bytes neither, so both are safe to repeat). A
        status outside `ok` and `expected` raises StorageError."""
        path = urlsplit(url).path
        resp = transfer.send_to(
            origin(url),
            StorageError,
            self.session(),
            method,
            url,
            policy=self.policy,
            breaker=self.breaker,
            retry_safe=retry_safe,
            expected=expected,
            body=body,
            headers={**self.auth(url), **(headers or {})},
            timeout=self.timeout,
            allow_redirects=False,
        )
        if resp.status_code in ok or resp.status_code in expected:
            return resp
        status = resp.status_code
        detail = answer_text(resp, 300) or resp.reason or ""
        if status in (401, 403) and origin(url) == self._origin:
            raise StorageError(
                f"{method} {path}: the registry refused the request ({status}): the token is "
                f"missing or invalid ({detail})",
                status,
            )
        if status in (401, 403):
            raise StorageError(f"{method} {path}: refused ({status}): {detail}", status)
        raise StorageError(f"{method} {path}: {status} {detail}".rstrip(), status)

    # ------------------------------------------------------------------ the protocol
    def ask_upload(self, sha1: str) -> dict[str, Any]:
        """The registry's answer to `POST <api>/data/<sha1>`: `{url}` (a presigned PUT) or
        `{exists: True}`, with `storage_root` and `path` where the file is to be recorded.
        Our server adds those itself; for the upstream they are `<site>/data/` and the SHA-1.
        """
        where = f"{self.api_url}data/{sha1}"
        resp = self.send(
            "POST", where, ok=(200, 201), expected=(409, *NO_FILE_STORAGE), retry_safe=True
        )
        if resp.status_code in NO_FILE_STORAGE:
            reason = answer_text(resp)
            raise NoFileStorage(
                f"the registry at {self.api_url} has no file storage: it cannot take files "
                f"(POST {urlsplit(where).path[: -len(sha1)]}<sha1> answered "
                f"{resp.status_code}{': ' + reason if reason else ''}); nothing was pushed: "
                "ask its administrators to configure object storage, or push to another "
                "remote",
                resp.status_code,
            )
        info: dict[str, Any] = {"storage_root": self.data_root, "path": sha1, "exists": False}
        if resp.status_code == 409:
            info["exists"] = True
            return info
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            info.update({k: v for k, v in body.items() if v is not None})
        if not info["exists"] and not info.get("url"):
            raise StorageError(f"POST {urlsplit(where).path}: no upload URL in the answer")
        return info

    def ask_uploads(self, hashes: list[str]) -> int:
        """Ask where to upload many files at once (`POST <api>/data/` with their SHA-1s, a
        batch at a time), keeping the answers for `upload`; returns how many were answered.
        A registry without the batch endpoint (the upstream) is not asked again, and its
        files are asked about one by one, as `upload` does without an answer."""
        wanted = list(dict.fromkeys(check_sha1_key(h, self.url) for h in hashes))
        answered = 0
        for start in range(0, len(wanted), UPLOADS_PER_REQUEST):
            if self.asks_in_batches is False:
                break
            chunk = wanted[start : start + UPLOADS_PER_REQUEST]
            payload = json.dumps({"hashes": chunk}).encode("utf-8")
            resp = self.send(
                "POST",
                f"{self.api_url}data/",
                ok=(200,),
                expected=(400, 401, 403, 404, 405, 409, 413, 500, 501),
                body=functools.partial(bytes, payload),
                headers={"Content-Type": "application/json"},
                retry_safe=True,
            )
            try:
                files = resp.json().get("files") if resp.status_code == 200 else None
            except (ValueError, AttributeError):
                files = None
            if not isinstance(files, dict):
                self.asks_in_batches = False
                break
            self.asks_in_batches = True
            now = time.monotonic()
            with self._lock:
                for sha1 in chunk:
                    answer = files.get(sha1)
                    if isinstance(answer, dict) and (answer.get("exists") or answer.get("url")):
                        info = {"storage_root": self.data_root, "path": sha1, "exists": False}
                        info.update({k: v for k, v in answer.items() if v is not None})
                        self._answers[sha1] = (now, info)
                        answered += 1
        return answered

    def read_bundle(self, hashes: list[str]) -> Iterator[tuple[str, bytes]]:
        """The bytes of many small files in one request (`POST <data root>` with their
        SHA-1s, which our server answers: see `server/blobs.py`), as (SHA-1, bytes) for each
        file it sent; the caller fetches the rest one by one, and checks each file's bytes
        against its SHA-1. Asked only of a registry that said it sends bundles (the
        upstream does not), and not again once refused; an answer cut short yields what
        came whole."""
        if self.bundles is False or not hashes or not self._says_bundles():
            return
        wanted = list(dict.fromkeys(check_sha1_key(h, self.url) for h in hashes))
        payload = json.dumps({"hashes": wanted[:UPLOADS_PER_REQUEST]}).encode("utf-8")
        resp = self.send(
            "POST",
            self.data_root,
            ok=(200,),
            expected=(400, 401, 403, 404, 405, 413, 500, 501),
            body=functools.partial(bytes, payload),
            headers={"Content-Type": "application/json", "Accept": BUNDLE_TYPE},
            retry_safe=True,
        )
        if resp.status_code != 200 or not resp.headers.get("Content-Type", "").startswith(
            BUNDLE_TYPE
        ):
            if resp.status_code in (404, 405, 501) or resp.status_code == 200:
                self.bundles = False
            return
        self.bundles = True
        asked = set(wanted)
        with contextlib.suppress(BadBundle):  # what came before it is kept
            for sha1, data in bundle_entries(io.BytesIO(resp.content)):
                if sha1 not in asked:
                    return  # not the answer to this question
                yield sha1, data

    def upload_bundle(self, files: list[tuple[Path, str]]) -> dict[str, tuple[str, str]]:
        """Send many small files in one request (`PUT <data root>` with a bundle, as
        `read_bundle` reads one) where the registry said it takes them; returns (storage
        root, path) by SHA-1 of those it holds now, counting those it said it held already
        (`ask_uploads`). The rest are uploaded one by one, and say there why they fail."""
        placed: dict[str, tuple[str, str]] = {}
        if self.upload_bundles is False or not files or not self._says_bundles():
            return placed
        parts: list[bytes] = []
        sent: dict[str, dict[str, Any]] = {}
        for source, sha1 in files:
            with self._lock:
                kept = self._answers.get(sha1)
            answer = kept[1] if kept is not None else {}
            if answer.get("exists"):
                with self._lock:
                    self._answers.pop(sha1, None)
                placed[sha1] = (answer["storage_root"], answer["path"])
                continue
            try:
                data = Path(source).read_bytes()
            except OSError:
                continue  # said by its own upload
            parts.append(bundle_entry(sha1, data))
            sent[sha1] = answer
        if not sent:
            return placed
        payload = b"".join(parts) + BUNDLE_END
        resp = self.send(
            "PUT",
            self.data_root,
            ok=(200,),
            expected=(400, 401, 403, 404, 405, 413, 500, 501),
            body=functools.partial(io.BytesIO, payload),
            headers={"Content-Type": BUNDLE_TYPE},
            retry_safe=True,  # the same bytes again change nothing
        )
        try:
            body = resp.json() if resp.status_code == 200 else None
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("stored"), list):
            if resp.status_code in (404, 405, 413, 501) or resp.status_code == 200:
                self.upload_bundles = False  # one by one from now on
            return placed
        self.upload_bundles = True
        root = str(body.get("storage_root") or self.data_root)
        for sha1 in body["stored"]:
            if sha1 in sent:
                with self._lock:
                    self._answers.pop(sha1, None)
                placed[sha1] = (root, sha1)
        return placed

    def _answer(self, sha1: str) -> dict[str, Any]:
        """A batched answer for `sha1` if one is fresh (used once), else the registry's
        answer to this file alone."""
        with self._lock:
            kept = self._answers.pop(sha1, None)
        if kept is not None and time.monotonic() - kept[0] < ANSWER_LIFETIME:
            return kept[1]
        return self.ask_upload(sha1)

    def upload(self, source: Source, sha1: str, progress: Progress | None = None) -> dict[str, Any]:
        """Put a file into the registry's storage unless it holds it already: returns
        `{storage_root, path, exists, uploaded}`, where to record the file.

        Where the registry says its upload URL is `resumable` (our server, for files it
        keeps in a folder) a file larger than `piece_size` goes in pieces, from the `offset`
        the server already holds: a killed upload continues, it does not start again. A
        presigned PUT to an object store (the upstream registry's, or our server's S3) is a
        single request that no protocol lets resume: a drop sends the whole file again.
        """
        sha1 = check_sha1_key(sha1, self.url)
        info = self._answer(sha1)
        if info["exists"]:
            return info
        size = source_size(source)
        if info.get("resumable") and size is not None and size > self.piece_size:
            self._upload_pieces(info["url"], source, size, int(info.get("offset") or 0), progress)
            info["uploaded"] = True
            return info
        # An object store signs exactly what its URL allows: no content type of our own, and
        # an empty file as no bytes (an empty stream would go chunked, without a length).
        ours = origin(info["url"]) == self._origin
        resp = self.send(
            "PUT",
            info["url"],
            ok=(200, 201, 204),
            expected=(400,),
            body=_body_factory(source, size, progress),
            headers={"Content-Type": "application/octet-stream"} if ours else {},
        )
        _refused_bytes(resp, info["url"])
        info["uploaded"] = True
        return info

    def _upload_pieces(
        self, url: str, source: Source, size: int, offset: int, progress: Progress | None
    ) -> None:
        """Send `source` from `offset` on in pieces of `piece_size` (see server/blobs.py);
        the server's `Upload-Offset` says where each next piece starts."""
        sent = 0

        def moved(count: int) -> None:
            if progress is not None:
                progress(sent + count)

        while True:
            end = min(size, offset + self.piece_size)
            piece = f"bytes {offset}-{end - 1}/{size}" if offset < size else f"bytes */{size}"
            resp = self.send(
                "PUT",
                url,
                ok=(200, 201, 308, 409),
                expected=(400,),
                body=_piece_factory(source, offset, end, moved),
                headers={"Content-Type": "application/octet-stream", "Content-Range": piece},
            )
            _refused_bytes(resp, url)
            if resp.status_code in (200, 201):
                return
            held = int(resp.headers.get("Upload-Offset", "-1"))
            if not 0 <= held <= size:
                raise StorageError(f"PUT {urlsplit(url).path}: no usable Upload-Offset answered")
            if resp.status_code == 308:
                sent += max(0, held - offset)
            offset = held

    # ------------------------------------------------------------------ the interface
    def exists(self, key: str) -> bool:
        """Whether the registry holds the file: asked as an upload would ask (a token is
        needed), since the protocol has no other question to ask it."""
        return bool(self.ask_upload(check_sha1_key(key, self.url))["exists"])

    def put(
        self,
        source: Source,
        key: str,
        *,
        sha1: str | None = None,
        progress: Progress | None = None,
    ) -> Stored:
        key = check_sha1_key(key, self.url)
        if sha1 and sha1.lower() != key:
            raise HashMismatch(f"{self.url}: key {key} is the SHA-1 of the bytes, not {sha1}")
        # The key claims the bytes' SHA-1, and an object store checks none: hashed here first
        # (uploads whose bytes were just hashed anyway go through `upload`).
        with replayable(source) as replay:
            verify_sha1(sha1_of(replay), key, f"{source} for {self.url}{key}")
            size = source_size(replay)
            info = self.upload(replay, key, progress)
        return Stored(key, size if size is not None else -1, bool(info.get("uploaded")))

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        return self.read_url(self.data_root + check_sha1_key(key, self.url), start, end)

    def read_url(self, url: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream any URL the registry hands out (its data root, a redirect to its object
        store), resumed after a drop, with the token only where it belongs."""
        if end is not None and end == start:
            return iter(())
        chunks = transfer.download(
            url,
            session=self.session(),
            auth=self.auth,
            policy=self.policy,
            breaker=self.breaker,
            timeout=self.timeout,
            start=start,
            end=end,
        )
        return _mapped(chunks, url)

    def presign(self, key: str, method: str = "GET", expires: int = DEFAULT_EXPIRY) -> str:
        """PUT: the registry's upload URL (it sets the lifetime, not `expires`); refused for a
        file it already holds. GET: the protocol presigns no downloads."""
        key = check_sha1_key(key, self.url)
        if check_method(method) == "GET":
            raise UnsupportedOperation(
                f"{self.url}: {self.kind} presigns no downloads: GET {self.data_root}{key} "
                "answers with the file or a redirect to it"
            )
        info = self.ask_upload(key)
        if info["exists"]:
            raise StorageError(
                f"{self.url}: {key} is stored already; the registry hands out no upload URL for it",
                409,
            )
        return str(info["url"])

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, []
        for _, session in made:
            session.close()


def _refused_bytes(resp: requests.Response, url: str) -> None:
    """An upload answered 400: HashMismatch when the server says the bytes are not those of
    the SHA-1, else StorageError."""
    if resp.status_code != 400:
        return
    detail = answer_text(resp, 300)
    if "SHA-1" in detail:
        raise HashMismatch(f"PUT {urlsplit(url).path}: 400 {detail}")
    raise StorageError(f"PUT {urlsplit(url).path}: 400 {detail}".rstrip(), 400)


def _piece_factory(source: Source, start: int, end: int, progress: Progress) -> Callable[[], Any]:
    """A fresh request body for each attempt at one piece: bytes [start, end) of the file
    (reopened) or of the stream (sought there, never closed)."""

    def piece() -> Any:
        if end <= start:
            return b""
        if isinstance(source, (str, os.PathLike)):
            handle = open(source, "rb")  # noqa: SIM115 - closed by send()
            return _Slice(handle, start, end, progress, owned=True)
        return _Slice(source, start, end, progress, owned=False)

    return piece


class _Slice:
    """Bytes [start, end) of a seekable file as a request body with a length, reporting the
    bytes read so far to `progress`."""

    def __init__(self, handle: Any, start: int, end: int, progress: Progress, owned: bool):
        handle.seek(start)
        self._handle = handle
        self._left = end - start
        self._length = end - start
        self._progress = progress
        self._owned = owned

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        block = self._handle.read(want)
        self._left -= len(block)
        self._progress(self._length - self._left)
        return block

    def __len__(self) -> int:
        return self._length

    def close(self) -> None:
        if self._owned:
            self._handle.close()


def _body_factory(source: Source, size: int | None, progress: Progress | None) -> Callable[[], Any]:
    """A fresh request body for each attempt: the file reopened, or the stream rewound."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)

        def reopen() -> Any:
            if not size:
                return b""
            return ProgressReader(open(path, "rb"), progress, size)  # noqa: SIM115 - closed by send()

        return reopen
    stream = source
    try:
        start = stream.tell()
    except (OSError, AttributeError):
        start = None

    def rewind() -> Any:
        if start is not None:
            stream.seek(start)
        reader = ProgressReader(stream, progress, size)
        # a length goes out as Content-Length; without one, the body goes chunked
        return _Unclosed(reader) if size is not None else iter(reader)

    return rewind


class _Unclosed:
    """A caller's stream as a request body: read, never closed (the caller owns it)."""

    def __init__(self, reader: ProgressReader):
        self.reader = reader

    def read(self, size: int = -1) -> bytes:
        return self.reader.read(size)

    def __len__(self) -> int:
        return len(self.reader)


def _mapped(chunks: Iterator[bytes], url: str) -> Iterator[bytes]:
    """A download whose 404 is ObjectMissing and other refusals StorageError."""
    try:
        yield from chunks
    except transfer.HttpStatusError as exc:
        if exc.status == 404:
            raise ObjectMissing(f"{exc} (no such file)", 404) from None
        raise StorageError(str(exc), exc.status) from None
