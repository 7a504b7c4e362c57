"""How large a request body the registry server takes: small for the API, large only for a
signed upload, decided before the body is read.

waitress reads a whole request body (spooling it to a temporary file) before the app sees
the request, so the app cannot refuse an oversized body in time: by then it is on disk. The
limit therefore has to be applied by the listener, while the request's head is parsed. One
listener serves both kinds of request: its limit is the small API one, and a request whose
head already proves it a signed upload (`PUT /data/<sha1>?expires=..&signature=..` with a
valid, unexpired signature) gets the upload limit instead. Anything else is answered 413
once it passes the small limit; a Content-Length over it is refused before one body byte is
read. So an anonymous client can never make the server write more than the small limit, and
a reverse proxy needs one upstream, and the URLs the server hands out one port.

The hook is waitress's parser class, which its connection class names (`parser_class`) and
whose limit is read from the parser's `adj` after the head is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser

from fdp_tasks.errors import BadInput

MAX_BODY_BYTES = 4 << 20  # API requests carry JSON records of a few KiB each
MAX_UPLOAD_BYTES = 1 << 40  # a data file through a signed upload URL: 1 TiB
# Open connections a server process holds at once (waitress's default); more wait in the
# listening socket's backlog until one closes. A cluster's jobs each hold a few
CONNECTION_LIMIT = 100

# (method, path, query string) of a request whose head was read -> may it send a large body?
LargeBodyCheck = Callable[[str, str, str], bool]

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, flag: str = "--max-body-size") -> int:
    """A byte count such as `4M`, `512k` or `1048576` (units are powers of 1024)."""
    match = _SIZE.match(str(text))
    if not match or int(match[1]) == 0:
        raise BadInput(f"{flag}: expected a size such as 4M, 512K or 1048576 (bytes), got {text!r}")
    return int(match[1]) * _UNITS[match[2].lower()]


def bounded_channel(large_body: LargeBodyCheck | None, upload_limit: int) -> type[HTTPChannel]:
    """A waitress connection class whose requests get `upload_limit` as their body limit when
    `large_body` admits their head, and the server's own limit otherwise."""

    class Parser(HTTPRequestParser):
        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            if large_body is None:
                return
            head = (getattr(self, name, "") or "" for name in ("command", "path", "query"))
            method, path, query = (str(part) for part in head)
            if large_body(method, path, query):
                self.adj = _with_body_limit(self.adj, upload_limit)

    class Channel(HTTPChannel):
        parser_class = Parser

    return Channel


_raised: dict[tuple[int, int], Any] = {}


def _with_body_limit(adj: Any, limit: int) -> Any:
    """A copy of waitress's settings `adj` with another body limit (made once per pair)."""
    key = (id(adj), limit)
    if key not in _raised:
        copy = Adjustments.__new__(Adjustments)
        copy.__dict__.update(adj.__dict__)
        copy.max_request_body_size = limit
        _raised[key] = (adj, copy)  # holding adj keeps its id from being reused
    return _raised[key][1]
