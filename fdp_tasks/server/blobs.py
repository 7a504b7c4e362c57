"""The registry server as a file store: presigned uploads in, streamed downloads out.

`POST /api/data/<sha1>` hands out a presigned upload URL, `PUT /data/<sha1>?expires=..&
user=..&signature=..` streams the bytes in (hash checked), and `GET /data/<sha1>` streams them
out with Range support.

Who may read a file follows who sent it. The uploader of each file is noted (the URL is signed
for the token's user). Bytes are public once a user who uploaded them records (or, answered
409, reuses) a public storage location naming them; until then only the users who uploaded
them and recorded a storage location naming them (and admin) may read them. A public location
recorded by anyone else, for bytes someone else sent privately, is kept as a record but
publishes nothing: the bytes stay private. Knowing a SHA-1 is not holding the bytes.

Large uploads to a folder resume: the upload URL also takes the file in pieces, each a `PUT`
with `Content-Range: bytes <first>-<last>/<size>`, appended to a part file of the uploader's
(`.uploads/<user>-<sha1>.part` in the blob folder) and answered `308` with `Upload-Offset`,
the bytes held so far; `Content-Range: bytes */<size>` with no body asks for that offset, and
a piece that does not start there is answered `409` with it. The piece that completes the
file has it hashed and renamed into place (201), or deleted when it does not hash to its
SHA-1 (400), as a whole upload is. `POST /api/data/<sha1>` says `resumable` and the `offset`
already held, so a client killed mid-upload continues where the server stopped, not from
zero. A presigned PUT to an object store is one request and cannot resume.

The bytes live in a `Storage` (`--blobs DIR` or `--blobs s3://bucket/prefix`), under
`<sha1[:2]>/<sha1>`. A folder takes uploads through this server, hashed on the way in. A
storage that presigns (S3) takes them directly: the upload URL is the object store's, for a
key of the uploader's own under `incoming/`, so bytes never pass through this process. Those
bytes are trusted only once hashed: before a storage location under this server's data root
may name them, or when they are first read, the server streams them once, and only if they
hash to their SHA-1 does the object store copy them to their final key (wrong bytes are
deleted). Nothing is ever served, or named, from `incoming/`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import flask

from fdp_tasks.errors import HashMismatch
from fdp_tasks.server.common import ADMIN, ApiError, json_response
from fdp_tasks.server.signing import KEY_FILE, signing_key
from fdp_tasks.storage import Storage, storage_for
from fdp_tasks.storage.base import (
    BUNDLE_END,
    BUNDLE_FILE_BYTES,
    BUNDLE_TYPE,
    BadBundle,
    bundle_entries,
    bundle_entry,
    is_sha1,
)
from fdp_tasks.storage.local import LocalStorage
from fdp_tasks.store.base import NotFound

UPLOAD_URL_LIFETIME = 3600
# Files one `POST /api/data/` asks about: a body of a few tens of kilobytes.
UPLOADS_PER_REQUEST = 500
# where the pieces of resumable uploads gather (a dot folder: not a blob, never listed)
PARTS = ".uploads"
PIECE_BLOCK = 1 << 20
CONTENT_RANGE = re.compile(r"^bytes (?:(\d+)-(\d+)|\*)/(\d+)$")
# Direct uploads of one batch of storage locations hashed at once (each waits on the store).
VERIFY_THREADS = 8
# `POST /data/` (BlobViews.bundle): small files (BUNDLE_FILE_BYTES) are sent many to an
# answer, up to this much in all
BUNDLE_ANSWER_BYTES = 8 * 1024 * 1024


def blob_path(blob_dir: Path, sha1: str) -> Path:
    """Where a blob lives: <blob_dir>/<sha1[:2]>/<sha1>, so no directory grows huge."""
    return Path(blob_dir) / blob_key(sha1)


def blob_key(sha1: str) -> str:
    """The key of a blob (verified bytes) in the server's storage."""
    sha1 = sha1.lower()
    return f"{sha1[:2]}/{sha1}"


def staged_key(sha1: str, user_id: int) -> str:
    """Where a user's direct upload lands, to be hashed before it becomes a blob."""
    return f"incoming/{int(user_id)}/{sha1.lower()}"


def blob_storage(blobs: Path | str | Storage) -> Storage:
    """The server's blob storage: a Storage as it is, an s3:// URL, or a folder."""
    if isinstance(blobs, Storage):
        return blobs
    if str(blobs).startswith("s3://"):
        return storage_for(str(blobs))
    return LocalStorage(Path(blobs))


def blobs_location(value: str | Path | Storage) -> Path | str | Storage:
    """What `--blobs` names: an s3:// URL (or a Storage) as it is, else a folder (made
    absolute, so that a background server started elsewhere finds the same one)."""
    if isinstance(value, Storage):
        return value
    text = str(value)
    if text.startswith("s3://"):
        return text
    return Path(text).expanduser().resolve()


def presigns(storage: Storage) -> bool:
    """Whether the storage hands out its own upload URLs (then uploads bypass the server)."""
    return type(storage).presign is not Storage.presign


class BlobViews:
    """The file endpoints of one registry server, beside its record views (`views`), whose
    store says which files are public and whose users may upload."""

    def __init__(self, views: Any, blobs: Path | str | Storage):
        self.views = views
        self.store = views.store
        self.storage = blob_storage(blobs)
        self.direct = presigns(self.storage)
        if isinstance(self.storage, LocalStorage):
            self.blob_dir = self.storage.root
            self.secret = signing_key(self.blob_dir / KEY_FILE)
        else:
            self.blob_dir = Path(str(blobs))
            # a storage that presigns signs its own URLs; this key then signs nothing
            self.secret = secrets.token_bytes(32)

    def base(self) -> str:
        return self.views.base()

    def require_user(self) -> Any:
        return self.views.require_user()

    def signature(self, sha1: str, expires: int, uploader: str = "") -> str:
        """Signs an upload of `sha1` until `expires`, by the user with id `uploader` (who
        then holds the bytes: see `presign`)."""
        msg = f"PUT\n{sha1}\n{expires}\n{uploader}".encode("ascii")
        return hmac.new(self.secret, msg, hashlib.sha256).hexdigest()

    def valid_signature(self, sha1: str, expires: int, signature: str, uploader: str = "") -> bool:
        """Whether `signature` signs an upload of `sha1` that has not expired yet."""
        good = hmac.compare_digest(signature, self.signature(sha1, expires, uploader))
        return good and expires >= time.time()

    def signed_upload(self, method: str, path: str, query: str) -> bool:
        """Whether a request, known by its head only, is an upload with a valid signature:
        the one kind of request whose body may be large (see server/limits.py)."""
        parts = path.split("/")
        if self.direct or method != "PUT" or len(parts) != 3 or parts[:2] != ["", "data"]:
            return False
        if not is_sha1(parts[2]):
            return False
        args = parse_qs(query)
        try:
            expires = int(args["expires"][-1])
            signature = args["signature"][-1]
        except (KeyError, IndexError, ValueError):
            return False
        uploader = (args.get("user") or [""])[-1]
        return self.valid_signature(parts[2].lower(), expires, signature, uploader)

    def blob_sha1(self, sha1: str) -> str:
        if not is_sha1(sha1):
            raise ApiError(404, {"detail": "Not found."})
        return sha1.lower()

    def presign(self, sha1: str) -> flask.Response:
        """An upload URL for the token's user. The bytes count as there already only when
        they are public, or this user sent them before: anyone else proves they hold private
        bytes by sending them (hash checked), so knowing a SHA-1 opens nothing. The request
        is noted as a claim on the bytes, which keeps a sweep from dropping them meanwhile."""
        user = self.require_user()
        body = self.upload_answer(self.blob_sha1(sha1), user)
        return json_response(body, 200 if body["exists"] else 201)

    def hash_list(self) -> list[str]:
        """The SHA-1s of a batched request's `{"hashes": [...]}`, lower-cased; 400 unless
        it lists 1 to UPLOADS_PER_REQUEST of them."""
        body = self.views.body()
        hashes = body.get("hashes") if isinstance(body, dict) else None
        if (
            not isinstance(hashes, list)
            or not 0 < len(hashes) <= UPLOADS_PER_REQUEST
            or not all(isinstance(h, str) and is_sha1(h) for h in hashes)
        ):
            raise ApiError(
                400, {"hashes": [f"expected a list of 1 to {UPLOADS_PER_REQUEST} SHA-1s"]}
            )
        return list(dict.fromkeys(h.lower() for h in hashes))

    def presign_many(self) -> flask.Response:
        """`POST /api/data/` with `{"hashes": [sha1, ...]}`: the answers `presign` gives,
        by SHA-1, for up to UPLOADS_PER_REQUEST files in one request, so a push of many
        files asks once per batch rather than once per file (a registry without it, the
        upstream, answers 404, and clients ask file by file)."""
        user = self.require_user()
        wanted = self.hash_list()
        self.store.claim_files(wanted, user["id"])  # one transaction for the whole batch
        here = self.store.files_here_for(wanted, user["id"])
        answers = {h: self.upload_answer(h, user, claimed=True, counted=h in here) for h in wanted}
        return json_response({"files": answers}, 200)

    def upload_answer(
        self,
        sha1: str,
        user: dict[str, Any],
        *,
        claimed: bool = False,
        counted: bool | None = None,
    ) -> dict[str, Any]:
        """Where `user` uploads `sha1`, or that the bytes are here (`exists`); `claimed`:
        the caller noted the claim already; `counted`: the caller asked the records whether
        the user may count the bytes as here (`Store.files_here_for`), for a whole batch."""
        if not claimed:
            self.store.claim_file(sha1, user["id"])
        if counted is None:
            counted = sha1 in self.store.files_here_for([sha1], user["id"])
        expires = int(time.time()) + UPLOAD_URL_LIFETIME
        uploader = str(user["id"])
        signature = self.signature(sha1, expires, uploader)
        query = urlencode({"expires": expires, "user": uploader, "signature": signature})
        # the records first: the storage (a request to S3) is asked only about bytes this
        # user may count as there, so a push of new files asks the object store nothing here
        exists = counted and self.storage.exists(blob_key(sha1))
        body = {
            "url": f"{self.base()}/data/{sha1}?{query}",
            "storage_root": f"{self.base()}/data/",
            "path": sha1,
            "exists": exists,
        }
        if not self.direct and not exists:
            part = self.part_path(sha1, uploader)
            body["resumable"] = True
            body["offset"] = part.stat().st_size if part is not None and part.is_file() else 0
        if self.direct:
            # straight to the object store, under a key of this user's: never the blob itself
            body["url"] = self.storage.presign(
                staged_key(sha1, user["id"]), "PUT", UPLOAD_URL_LIFETIME
            )
            if exists:
                del body["url"]  # stored and verified: no upload URL for it
        return body

    def blob(self, sha1: str) -> flask.Response:
        sha1 = self.blob_sha1(sha1)
        if flask.request.method == "PUT":
            if self.direct:
                raise ApiError(405, {"detail": "uploads go to the URL POST /api/data/<sha1> gives"})
            return self.receive(sha1)
        if not self.holds(sha1):
            raise ApiError(404, {"detail": "Not found."})
        # private bytes: for the users who sent them and recorded a location naming them
        if not self.store.file_published(sha1) and not self.may_read_private(
            sha1, self.require_user()
        ):
            raise ApiError(404, {"detail": "Not found."})
        if self.direct:
            # the bytes come from the object store, not through this process
            url = self.storage.presign(blob_key(sha1), "GET", UPLOAD_URL_LIFETIME)
            return flask.Response(status=302, headers={"Location": url})
        return flask.send_file(
            blob_path(self.blob_dir, sha1),
            mimetype="application/octet-stream",
            conditional=True,
            etag=sha1,
            max_age=31536000,
        )

    def may_read_private(self, sha1: str, user: dict[str, Any] | None) -> bool:
        """Whether a user may read bytes no public location publishes: admin, or one who
        sent them and recorded a location naming them."""
        if user is None:
            return False
        return user["username"] == ADMIN or self.store.may_read_file(sha1, user["id"])

    def bundle(self) -> flask.Response:
        """`POST /data/` with `{"hashes": [sha1, ...]}`: the bytes of many small files in one
        answer, so a pull of thousands of small files costs a request per few hundred
        rather than one each. The body is, for each file sent, a line `<sha1> <size>` and
        then its bytes, and a last line `end` once all are sent. Files this reader may not
        read, that are not here, or larger than BUNDLE_FILE_BYTES (or past BUNDLE_ANSWER_BYTES in
        all) are left out: the client asks for those one by one, and hears why there. A
        server whose files are in an object store answers 404: its files come from there."""
        if self.direct:
            raise ApiError(404, {"detail": "files are read one by one: GET /data/<sha1>"})
        wanted = self.hash_list()
        user = self.views.user()
        published = self.store.files_published(wanted)
        chosen: list[tuple[str, Path, int]] = []
        total = 0
        for sha1 in wanted:
            if sha1 not in published and not self.may_read_private(sha1, user):
                continue
            path = blob_path(self.blob_dir, sha1)
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size > BUNDLE_FILE_BYTES or total + size > BUNDLE_ANSWER_BYTES:
                continue
            total += size
            chosen.append((sha1, path, size))

        def sent() -> Iterator[bytes]:
            for sha1, path, size in chosen:
                try:
                    with open(path, "rb") as fh:
                        data = fh.read(size + 1)
                except OSError:
                    return  # no `end`: the client asks for the rest one by one
                if len(data) != size:
                    return
                yield bundle_entry(sha1, data)
            yield BUNDLE_END

        return flask.Response(sent(), mimetype=BUNDLE_TYPE)

    def receive_bundle(self) -> flask.Response:
        """`PUT /data/` with a bundle of small files (as `bundle` sends them: `<sha1> <size>`
        and the bytes of each, up to the API's body limit): each is hashed and kept if its
        bytes match its SHA-1, and claimed by the token's user as sent, in one transaction
        for them all. Answers which were stored and why others were not; a push of
        thousands of small files costs a request per few hundred rather than one each."""
        if self.direct:
            raise ApiError(405, {"detail": "uploads go to the URL POST /api/data/<sha1> gives"})
        user = self.require_user()
        if not (flask.request.content_type or "").startswith(BUNDLE_TYPE):
            raise ApiError(400, {"detail": f"expected a body of type {BUNDLE_TYPE}"})
        stored: list[str] = []
        refused: dict[str, str] = {}
        try:
            for sha1, data in bundle_entries(flask.request.stream, BUNDLE_FILE_BYTES):
                try:
                    self.storage.put(io.BytesIO(data), blob_key(sha1), sha1=sha1)
                except HashMismatch as exc:
                    refused[sha1] = str(exc)
                    continue
                stored.append(sha1)
        except BadBundle as exc:
            raise ApiError(400, {"detail": str(exc)}) from None
        if stored:
            self.store.claim_files(stored, user["id"], uploaded=True)
        body = {"storage_root": f"{self.base()}/data/", "stored": stored, "refused": refused}
        return json_response(body, 200)

    def receive(self, sha1: str) -> flask.Response:
        args = flask.request.args
        try:
            expires = int(args.get("expires", ""))
        except ValueError:
            raise ApiError(403, {"detail": "missing or malformed upload signature"}) from None
        uploader = args.get("user", "")
        good = hmac.compare_digest(
            args.get("signature", ""), self.signature(sha1, expires, uploader)
        )
        if not good:
            raise ApiError(403, {"detail": "bad upload signature"})
        if expires < time.time():
            raise ApiError(403, {"detail": "upload URL has expired"})
        if flask.request.headers.get("Content-Range"):
            return self.receive_piece(sha1, uploader, flask.request.headers["Content-Range"])
        try:
            # hashed as it streams to a temporary file, renamed into place only if it matches
            size = self.storage.put(flask.request.stream, blob_key(sha1), sha1=sha1).size
        except HashMismatch as exc:
            raise ApiError(400, {"detail": str(exc)}) from None
        if uploader.isdigit():
            self.store.claim_file(sha1, int(uploader), uploaded=True)
        return json_response({"path": sha1, "size": size}, 201)

    # ---------------------------------------------------------------- resumable uploads
    def part_path(self, sha1: str, uploader: str) -> Path | None:
        """The part file of `uploader`'s resumable upload of `sha1` (None: the storage is
        not a folder, so uploads do not resume here)."""
        if not isinstance(self.storage, LocalStorage) or not uploader.isdigit():
            return None
        return self.storage.path(f"{PARTS}/{int(uploader)}-{sha1}.part")

    def receive_piece(self, sha1: str, uploader: str, content_range: str) -> flask.Response:
        """A piece of a resumable upload (or, `bytes */<size>`, the question how much of it
        is here): appended if it starts where the part file ends; the file is verified and
        kept once the last piece is in. One writer at a time per part file (a lock file)."""
        match = CONTENT_RANGE.match(content_range.strip())
        part = self.part_path(sha1, uploader)
        if part is None:
            raise ApiError(400, {"detail": "this server takes uploads in one piece only"})
        if match is None:
            raise ApiError(
                400, {"detail": "Content-Range: expected bytes <first>-<last>/<size> or */<size>"}
            )
        size = int(match[3])
        first, last = (None, None) if match[1] is None else (int(match[1]), int(match[2]))
        if first is not None and last is not None and not first <= last < size:
            raise ApiError(400, {"detail": f"Content-Range: {content_range} is not a range"})
        part.parent.mkdir(parents=True, exist_ok=True)
        with upload_lock(part.with_suffix(".lock")):
            held = part.stat().st_size if part.is_file() else 0
            if held > size:  # pieces of something else: start again
                part.unlink()
                held = 0
            if first is not None and first != held:
                return _offset_answer(409, held)
            if first is not None and last is not None:
                held += _append(part, flask.request.stream, last - first + 1)
            if held < size:
                return _offset_answer(308, held)
            key = f"{PARTS}/{part.name}"
            with open(part, "rb+") as whole:
                os.fsync(whole.fileno())
            if not self.storage.promote(key, blob_key(sha1), sha1):
                raise ApiError(
                    400, {"detail": f"the {size} bytes received do not have SHA-1 {sha1}"}
                )
        self.store.claim_file(sha1, int(uploader), uploaded=True)
        return json_response({"path": sha1, "size": size}, 201)

    # ---------------------------------------------------------------- verification
    def holds(self, sha1: str) -> bool:
        """Whether verified bytes of `sha1` are stored; with direct uploads, the requesting
        user's upload of them is verified first if there is one."""
        if self.storage.exists(blob_key(sha1)):
            return True
        user = self.views.user()
        return user is not None and self.adopt(sha1, user["id"])

    def adopt(self, sha1: str, user_id: int) -> bool:
        """Hash a user's direct upload of `sha1` (streamed from the object store once) and
        make it the blob if it hashes right; wrong bytes are deleted, never named or served.
        Returns whether it was adopted."""
        if not self.direct:
            return False
        if not self.storage.promote(staged_key(sha1, user_id), blob_key(sha1), sha1):
            return False
        self.store.claim_file(sha1, user_id, uploaded=True)
        return True

    def prepare_locations(self, items: list[Any], user: dict[str, Any]) -> None:
        """Before a batch of storage locations is created one by one: hash the user's
        direct uploads they name under this server's data root, VERIFY_THREADS at a time,
        so that the batch waits on the object store once rather than once per file;
        `check_location` then takes each outcome (noted for this request only)."""
        if not self.direct:
            return
        ours: dict[Any, bool] = {}
        wanted: set[str] = set()
        for item in items:
            if not isinstance(item, dict):
                continue
            digest, root = str(item.get("hash") or "").lower(), item.get("storage_root")
            if not is_sha1(digest) or str(item.get("path") or "").lower() != digest:
                continue
            key = repr(root)
            if key not in ours:
                ours[key] = self._is_data_root(root)
            if ours[key]:
                wanted.add(digest)
        if not wanted:
            return

        def verify(sha1: str) -> tuple[str, bool]:
            return sha1, self.adopt(sha1, user["id"])

        with ThreadPoolExecutor(max_workers=min(VERIFY_THREADS, len(wanted))) as pool:
            flask.g.fdp_adopted = dict(pool.map(verify, sorted(wanted)))

    def _is_data_root(self, reference: Any) -> bool:
        """Whether a storage location's `storage_root` (an id or a URL) is this server's
        data root."""
        text = str(reference or "").strip()
        parts = [p for p in urlsplit(text).path.split("/") if p]
        found = text if text.isdigit() else (parts[-1] if parts and parts[-1].isdigit() else "")
        if not found or int(found) >= 2**63:
            return False
        try:
            root = self.store.get("storage_root", int(found))
        except (NotFound, ValueError):
            return False
        return str(root.get("root")) == f"{self.base()}/data/"

    def _root(self, root_id: Any) -> dict[str, Any] | None:
        """The storage root of that id, looked up once per request (a batch of locations
        names one or two roots)."""
        roots: dict[Any, dict[str, Any] | None] = flask.g.setdefault("fdp_roots", {})
        if root_id not in roots:
            try:
                roots[root_id] = dict(self.store.get("storage_root", int(root_id)))
            except (NotFound, TypeError, ValueError):
                roots[root_id] = None
        return roots[root_id]

    def check_location(self, data: dict[str, Any], record_id: int | None) -> None:
        """Refuse (400, one line) a storage location under this server's own data root that
        would name bytes the server has not verified: it must have path = hash = a SHA-1 of
        stored, hashed bytes. `data` is the request's, over the record `record_id` for a
        PATCH/PUT. Locations elsewhere are not this server's to check."""
        merged = dict(self.store.get("storage_location", record_id)) if record_id else {}
        merged.update(data)
        root_id = merged.get("storage_root")
        if root_id is None:
            return
        root = self._root(root_id)
        if root is None:
            return  # the store refuses it with its own words
        if str(root.get("root")) != f"{self.base()}/data/":
            return
        digest = str(merged.get("hash") or "")
        if not is_sha1(digest):
            raise ApiError(
                400,
                {"hash": [f"a file under {root['root']} needs its SHA-1 as hash, got {digest!r}"]},
            )
        sha1 = digest.lower()
        if str(merged.get("path") or "").lower() != sha1:
            raise ApiError(
                400, {"path": [f"a file under {root['root']} has its SHA-1 ({sha1}) as path"]}
            )
        user = self.views.user()
        adopted = flask.g.get("fdp_adopted", {}).get(sha1)  # see prepare_locations
        if adopted:
            return
        if user is not None and adopted is None and self.adopt(sha1, user["id"]):
            return
        if not self.storage.exists(blob_key(sha1)):
            raise ApiError(
                400,
                {
                    "detail": f"no verified file with SHA-1 {sha1} in this registry's storage: "
                    "upload it first (POST /api/data/<sha1>), with bytes that hash to it"
                },
            )


def _offset_answer(status: int, held: int) -> flask.Response:
    """How much of a resumable upload the server holds: `Upload-Offset`, and `Range` as
    resumable-upload clients of object stores read it."""
    headers = {"Upload-Offset": str(held)}
    if held:
        headers["Range"] = f"bytes=0-{held - 1}"
    return json_response({"offset": held}, status, headers=headers)


def _append(part: Path, stream: Any, length: int) -> int:
    """Append up to `length` bytes of `stream` to `part`; returns how many arrived (a piece
    cut short keeps what came, to be continued from)."""
    written = 0
    with open(part, "ab") as out:
        while written < length:
            block = stream.read(min(PIECE_BLOCK, length - written))
            if not block:
                break
            out.write(block)
            written += len(block)
    # not synced piece by piece: the offset a client resumes from is the file's size, and
    # the whole file is synced and hashed before it becomes a blob
    return written


@contextlib.contextmanager
def upload_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (made if missing), across threads and processes: what
    one resumable upload's writers, and the sweep of abandoned ones, take in turn."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
