"""Reading a file wherever a storage root says it is: a local directory, file:// or http(s)://.

Every HTTP session fdp-tasks opens, and every download, comes from here (`new_session`,
`download`), so the registry client and the storage roots retry, resume and keep tokens
to themselves the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urljoin

import requests

from fdp_tasks.datastore import local_root, safe_relative
from fdp_tasks.errors import FdpError
from fdp_tasks.files import read_chunks

_session: requests.Session | None = None
USER_AGENT = "fdp-tasks"
# Small enough that a dropped connection loses little of what it had already brought.
NETWORK_CHUNK = 64 * 1024
# A connection that fails, stalls, or ends before the body does: worth another try.
DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Answers worth another try: the server may be back a moment later.
RETRY_STATUS = (500, 502, 503, 504)
REDIRECTS = (301, 302, 303, 307, 308)
MAX_HOPS = 10


def new_session(headers: Mapping[str, str] | None = None) -> requests.Session:
    """A keep-alive HTTP session that names fdp-tasks, with these default headers."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers.update(headers or {})
    return session


def http_session() -> requests.Session:
    """The process's session for files at http(s):// storage roots."""
    global _session
    if _session is None:
        _session = new_session()
    return _session


def download(
    url: str,
    *,
    session: requests.Session | None = None,
    auth: Callable[[str], Mapping[str, str]] | None = None,
    attempts: int = 5,
    backoff: float = 0.2,
    timeout: float | tuple[float, float] = (10, 60),
    start: int = 0,
    end: int | None = None,
) -> Iterator[bytes]:
    """Stream the bytes at `url` (from offset `start` up to, not including, `end` when
    given); a dropped connection or a 5xx answer is tried again, and what already arrived
    is not asked for again (Range, checked against Content-Range).

    Redirects are followed here, each hop getting only the headers `auth` gives for its
    URL, so a registry's token never reaches the object store it redirects to; a refused
    redirect target (an expired presigned URL) sends the request to `url` again.
    """
    session = session or http_session()
    received = failures = hops = 0
    target = url

    def again(why: str) -> None:
        nonlocal failures
        failures += 1
        if failures >= attempts:
            raise FdpError(
                f"GET {_safe(url)}: failed {failures} times, the last after {received} bytes "
                f"({why})"
            )
        time.sleep(backoff * 2 ** (failures - 1))

    while True:
        headers = {"Accept": "*/*", **(auth(target) if auth else {})}
        offset = start + received
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        try:
            resp = session.get(
                target, headers=headers, stream=True, timeout=timeout, allow_redirects=False
            )
        except DROPPED as exc:
            again(type(exc).__name__)
            continue
        with resp:
            status = resp.status_code
            moved = status in REDIRECTS
            if moved or (status in (401, 403) and target != url):
                hops += 1
                if hops > MAX_HOPS:
                    raise FdpError(f"GET {_safe(url)}: redirected or refused too often")
                location = resp.headers.get("Location") if moved else None
                target = urljoin(target, location) if location else url
                continue
            if status == 416 and offset:
                return  # nothing is left after what arrived
            if status in RETRY_STATUS:
                again(f"the server answered {status}")
                continue
            wanted = None if end is None else end - start
            try:
                for block in _resumed_body(resp, target, offset):
                    if wanted is not None:
                        block = block[: wanted - received]
                    received += len(block)
                    if block:
                        yield block
                    if wanted is not None and received >= wanted:
                        return
                return
            except DROPPED as exc:
                again(type(exc).__name__)


def _resumed_body(resp: requests.Response, target: str, received: int) -> Iterator[bytes]:
    """The bytes of an answer that follow the `received` already had: a 206 must start
    exactly there, and of a 200 (a server that ignores Range) the first bytes are dropped."""
    status = resp.status_code
    if status not in (200, 206):
        raise HttpStatusError(f"GET {_safe(target)}: {status} {resp.reason or ''}".rstrip(), status)
    if status == 206 and not resp.headers.get("Content-Range", "").startswith(
        f"bytes {received}-"
    ):
        raise FdpError(f"GET {_safe(target)}: the server cannot resume at byte {received}")
    skip = received if status == 200 else 0
    for block in resp.iter_content(NETWORK_CHUNK):
        if skip:
            cut = min(skip, len(block))
            block, skip = block[cut:], skip - cut
        if block:
            yield block


class HttpStatusError(FdpError):
    """A download answered with a status that no retry changes (404, 403, ...)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def location_url(root: str, path: str) -> str:
    """root + path, as the FAIR Data Pipeline joins them (the path never escapes the root)."""
    rel = safe_relative(path, f"its storage root {root}")
    return root if not rel else (root if root.endswith("/") else root + "/") + rel


def open_location(root: str, path: str, attempts: int = 5) -> Iterator[bytes]:
    """Stream the bytes at root + path; HTTP downloads resume with Range after a drop."""
    base = local_root(root)
    if base is not None:
        file = base.resolve() / safe_relative(path, f"its storage root {root}")
        if not file.is_file():
            raise FdpError(f"{file} does not exist (storage root {root}, path {path})")
        return _file_chunks(file)
    if root.startswith(("http://", "https://")):
        return download(location_url(root, path), attempts=attempts)
    raise FdpError(f"storage root {root!r}: only file://, http:// and https:// are supported")


def _file_chunks(file: Path) -> Iterator[bytes]:
    with open(file, "rb") as fh:
        yield from read_chunks(fh)


def _safe(url: str) -> str:
    """A URL without its query string, which may hold a signature."""
    return url.split("?", 1)[0]
