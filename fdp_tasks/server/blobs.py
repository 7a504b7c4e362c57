"""The registry server as a file store: presigned uploads in, streamed downloads out.

`POST /api/data/<sha1>` hands out a presigned upload URL, `PUT /data/<sha1>?expires=..&
signature=..` streams the bytes in (hash checked), and `GET /data/<sha1>` streams them out
with Range support, to anyone once a public storage location names them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import flask

from fdp_tasks.errors import HashMismatch
from fdp_tasks.files import read_chunks, write_atomically
from fdp_tasks.server.common import ApiError, json_response

UPLOAD_URL_LIFETIME = 3600
SHA1_RE = re.compile(r"^[0-9a-fA-F]{40}$")


def blob_path(blob_dir: Path, sha1: str) -> Path:
    """Where a blob lives: <blob_dir>/<sha1[:2]>/<sha1>, so no directory grows huge."""
    sha1 = sha1.lower()
    return Path(blob_dir) / sha1[:2] / sha1


def _load_secret(blob_dir: Path) -> bytes:
    """The per-server HMAC key for presigned URLs, created once with mode 0600."""
    blob_dir.mkdir(parents=True, exist_ok=True)
    path = blob_dir / ".secret"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        key = secrets.token_hex(32).encode("ascii")
        fh.write(key)
    return key


class BlobViews:
    """The file endpoints of one registry server, beside its record views (`views`), whose
    store says which files are public and whose users may upload."""

    def __init__(self, views: Any, blob_dir: Path):
        self.views = views
        self.store = views.store
        self.blob_dir = Path(blob_dir)
        self.secret = _load_secret(self.blob_dir)

    def base(self) -> str:
        return self.views.base()

    def require_user(self) -> Any:
        return self.views.require_user()

    def signature(self, sha1: str, expires: int) -> str:
        msg = f"PUT\n{sha1}\n{expires}".encode("ascii")
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def blob_sha1(self, sha1: str) -> str:
        if not SHA1_RE.match(sha1):
            raise ApiError(404, {"detail": "Not found."})
        return sha1.lower()

    def presign(self, sha1: str) -> flask.Response:
        self.require_user()
        sha1 = self.blob_sha1(sha1)
        expires = int(time.time()) + UPLOAD_URL_LIFETIME
        query = urlencode({"expires": expires, "signature": self.signature(sha1, expires)})
        exists = blob_path(self.blob_dir, sha1).is_file()
        body = {
            "url": f"{self.base()}/data/{sha1}?{query}",
            "storage_root": f"{self.base()}/data/",
            "path": sha1,
            "exists": exists,
        }
        return json_response(body, 200 if exists else 201)

    def blob(self, sha1: str) -> flask.Response:
        sha1 = self.blob_sha1(sha1)
        path = blob_path(self.blob_dir, sha1)
        if flask.request.method == "PUT":
            return self.receive(sha1, path)
        if not path.is_file():
            raise ApiError(404, {"detail": "Not found."})
        if not self.store.find_one("storage_location", {"hash": sha1, "public": True}):
            self.require_user()  # not (yet) a public file: only for token holders
        return flask.send_file(
            path,
            mimetype="application/octet-stream",
            conditional=True,
            etag=sha1,
            max_age=31536000,
        )

    def receive(self, sha1: str, path: Path) -> flask.Response:
        args = flask.request.args
        try:
            expires = int(args.get("expires", ""))
        except ValueError:
            raise ApiError(403, {"detail": "missing or malformed upload signature"}) from None
        good = hmac.compare_digest(args.get("signature", ""), self.signature(sha1, expires))
        if not good:
            raise ApiError(403, {"detail": "bad upload signature"})
        if expires < time.time():
            raise ApiError(403, {"detail": "upload URL has expired"})
        try:
            _, size = write_atomically(path, read_chunks(flask.request.stream), expected_sha1=sha1)
        except HashMismatch as exc:
            raise ApiError(400, {"detail": str(exc)}) from None
        return json_response({"path": sha1, "size": size}, 201)
