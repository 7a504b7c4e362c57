"""Reading a file wherever a storage root says it is: a local directory, file:// or http(s)://."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import requests

from fdp_tasks.datastore import local_root, safe_relative
from fdp_tasks.errors import FdpError
from fdp_tasks.files import read_chunks

_session: requests.Session | None = None
# Small enough that a dropped connection loses little of what it had already brought.
NETWORK_CHUNK = 64 * 1024
# A connection that fails, stalls, or ends before the body does: worth another try.
DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def http_session() -> requests.Session:
    global _session
    if _session is None:
        _session = requests.Session()
        _session.headers["User-Agent"] = "fdp-tasks"
    return _session


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
        return _http_chunks(location_url(root, path), attempts)
    raise FdpError(f"storage root {root!r}: only file://, http:// and https:// are supported")


def _file_chunks(file: Path) -> Iterator[bytes]:
    with open(file, "rb") as fh:
        yield from read_chunks(fh)


def _http_chunks(url: str, attempts: int) -> Iterator[bytes]:
    received = 0
    delay = 0.2
    for attempt in range(1, attempts + 1):
        headers = {"Range": f"bytes={received}-"} if received else {}
        try:
            with http_session().get(url, stream=True, timeout=(10, 60), headers=headers) as resp:
                if resp.status_code == 404:
                    raise FdpError(f"GET {_safe(url)}: 404 not found")
                if resp.status_code >= 500 and attempt < attempts:
                    raise requests.ConnectionError(f"server answered {resp.status_code}")
                resp.raise_for_status()
                if received and (
                    resp.status_code != 206
                    or not resp.headers.get("Content-Range", "").startswith(f"bytes {received}-")
                ):
                    raise FdpError(f"GET {_safe(url)}: server cannot resume a download")
                for block in resp.iter_content(NETWORK_CHUNK):
                    received += len(block)
                    yield block
                return
        except DROPPED as exc:
            if attempt == attempts:
                raise FdpError(
                    f"GET {_safe(url)} failed after {attempts} attempts: {exc}"
                ) from None
            time.sleep(delay)
            delay *= 2
        except requests.HTTPError as exc:
            raise FdpError(f"GET {_safe(url)}: {exc.response.status_code}") from None


def _safe(url: str) -> str:
    """A URL without its query string, which may hold a signature."""
    return url.split("?", 1)[0]
