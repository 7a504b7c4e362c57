"""A FAIR Data Pipeline registry's file storage, reached through its `/data/` protocol.

The protocol, as the upstream registry (data-registry) defines it and our server speaks it
too: `POST <api>/data/<sha1>` (with a token) answers a presigned upload URL, or 409 when the
registry already holds that SHA-1; the client PUTs the bytes there (straight to the object
store: the registry never sees them) and records the file under the registry's storage root
`<site>/data/` with path = SHA-1; `GET <site>/data/<sha1>` serves it, or redirects to a
presigned URL of the object store. Objects are addressed by content, so keys are SHA-1s.

The protocol has no way to delete or list files, nor to presign a download; those raise
UnsupportedOperation. A registry without object storage answers the upload request with 500
(or 404/405/501 when it lacks the endpoint): NoFileStorage, said once, in one line.

The token goes only to the registry's own origin, never to a presigned URL or to the object
store a download is redirected to (S3 refuses a request with two credentials). Thread-safe:
each thread gets its own HTTP session (the thread that made the storage may hand in one to
share, such as its registry client's keep-alive session).
"""

from __future__ import annotations

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
    DEFAULT_EXPIRY,
    NoFileStorage,
    ObjectMissing,
    Progress,
    ProgressReader,
    Source,
    Storage,
    StorageError,
    Stored,
    UnsupportedOperation,
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
        timeout: float = 30,
        retries: int = 5,
        backoff: float = 0.2,
    ):
        self.api_url = api_root(api_url)
        self.data_root = urljoin(self.api_url, "../data/")
        self.url = self.data_root
        self._token = token
        self._origin = origin(self.api_url)
        self.timeout = timeout
        self.retries = max(1, retries)
        self.backoff = backoff
        self._owner = threading.get_ident()
        self._shared = session
        self._local = threading.local()
        self._made: list[requests.Session] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing
    def session(self) -> requests.Session:
        """This thread's session: the one handed in for the creating thread, else its own."""
        if self._shared is not None and threading.get_ident() == self._owner:
            return self._shared
        session = getattr(self._local, "session", None)
        if session is None:
            session = transfer.new_session()
            self._local.session = session
            with self._lock:
                self._made.append(session)
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
    ) -> requests.Response:
        """One request with retries: after a dropped connection always (asking for an upload
        URL changes nothing, a PUT of the same bytes neither), after a 5xx answer unless the
        caller expects it. A status outside `ok` and `expected` raises StorageError."""
        path = urlsplit(url).path
        resp: requests.Response | None = None
        why = "no answer"
        for attempt in range(self.retries):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            data = body() if body is not None else None
            try:
                resp = self.session().request(
                    method,
                    url,
                    data=data,
                    headers={**self.auth(url), **(headers or {})},
                    timeout=self.timeout,
                    allow_redirects=False,
                )
            except transfer.DROPPED as exc:
                resp, why = None, type(exc).__name__
                continue
            finally:
                close = getattr(data, "close", None)
                if close is not None:
                    close()
            if resp.status_code in transfer.RETRY_STATUS and resp.status_code not in expected:
                why = f"{resp.status_code}"
                if attempt + 1 < self.retries:
                    resp.close()
                    continue
            break
        if resp is None:
            raise StorageError(
                f"{method} {path}: no answer from {origin(url)} ({why} after "
                f"{self.retries} attempt(s))"
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
        resp = self.send("POST", where, ok=(200, 201), expected=(409, *NO_FILE_STORAGE))
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

    def upload(self, source: Source, sha1: str, progress: Progress | None = None) -> dict[str, Any]:
        """Put a file into the registry's storage unless it holds it already: returns
        `{storage_root, path, exists, uploaded}`, where to record the file."""
        sha1 = check_sha1_key(sha1, self.url)
        info = self.ask_upload(sha1)
        if info["exists"]:
            return info
        size = source_size(source)
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
        if resp.status_code == 400:
            detail = answer_text(resp, 300)
            if "SHA-1" in detail:
                raise HashMismatch(f"PUT {urlsplit(info['url']).path}: 400 {detail}")
            raise StorageError(f"PUT {urlsplit(info['url']).path}: 400 {detail}".rstrip(), 400)
        info["uploaded"] = True
        return info

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
            attempts=self.retries,
            backoff=self.backoff,
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
        for session in made:
            session.close()


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
