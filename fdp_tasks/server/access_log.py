"""An access log in the common log format: one line per answered request,

    host ident user [day/Mon/year:hh:mm:ss +zone] "METHOD /path?query HTTP/1.1" status bytes

as web servers write it, so the usual tools read it. `user` is the registry user whose token
the request carried. The query of an upload URL carries its signature, which lets whoever
holds it upload: its value is logged as `-`. Tokens travel in a header and are never logged.
Several worker processes may append to one file: each line is one write to a file opened for
appending.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_SIGNATURE = re.compile(r"(^|&)(signature=)[^&]*", re.IGNORECASE)
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_QUERY_SAFE = _PATH_SAFE + "?"


def open_access_log(target: str | None) -> TextIO | None:
    """Where access lines go: None for none, "-" for stderr, else a file appended to."""
    if not target:
        return None
    if target == "-":
        return sys.stderr
    path = Path(target).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - kept open while serving


def _timestamp(now: float) -> str:
    local = time.localtime(now)
    offset = local.tm_gmtoff or 0
    sign = "+" if offset >= 0 else "-"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return (
        f"{local.tm_mday:02d}/{_MONTHS[local.tm_mon - 1]}/{local.tm_year}:"
        f"{local.tm_hour:02d}:{local.tm_min:02d}:{local.tm_sec:02d} {sign}{hours:02d}{minutes:02d}"
    )


def request_line(environ: dict[str, Any]) -> str:
    """`METHOD /path?query PROTOCOL` with quotes and control characters escaped and upload
    signatures hidden."""
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), safe=_PATH_SAFE)
    query = environ.get("QUERY_STRING", "")
    if query:
        path += "?" + quote(_SIGNATURE.sub(r"\1\2-", query), safe=_QUERY_SAFE)
    method = quote(environ.get("REQUEST_METHOD", "-"), safe="")
    protocol = quote(environ.get("SERVER_PROTOCOL", "-"), safe="/.")
    return f"{method} {path} {protocol}"


class AccessLog:
    """WSGI middleware writing a common-log-format line for each request it answers."""

    def __init__(self, app: Callable[..., Iterable[bytes]], stream: TextIO):
        self.app = app
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        def logging_start_response(status: str, headers: list, exc_info: Any = None) -> Any:
            size = next((v for k, v in headers if k.lower() == "content-length"), "-")
            self.write(environ, status.split(" ", 1)[0], size)
            return start_response(status, headers, exc_info)

        return self.app(environ, logging_start_response)

    def write(self, environ: dict[str, Any], status: str, size: str) -> None:
        host = environ.get("REMOTE_ADDR") or "-"
        user = quote(environ.get("REMOTE_USER") or "-", safe="@.+-_")
        line = (
            f'{host} - {user} [{_timestamp(time.time())}] "{request_line(environ)}" '
            f"{status} {size}\n"
        )
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):  # a full disk or a closed log: keep serving
                pass
