"""The storage interface: where the bytes of data files live, whatever holds them.

A registry says which files exist and where (storage roots and locations); a `Storage` holds
the bytes. Every kind (a local folder, an S3 bucket, our server's blob store, an upstream
registry's `/data/` protocol) implements the same methods with the same guarantees, checked
by one conformance suite (tests/test_storage_conformance.py), so transfers, remotes and the
server never ask which kind they hold.

Guarantees every implementation keeps:

- **Keys** are content addresses (a SHA-1) or relative POSIX paths. A key that could leave
  the storage's root (`../x`, `/etc/passwd`, `C:x`, empty) is refused with `UnsafePathError`
  before anything is read or written.
- **put is atomic**: a reader sees the previous object or the complete new one, never part
  of one; concurrent puts of one key end with one of them, whole.
- **Bounded memory**: put and open stream in chunks, whatever the file's size.
- **Thread safety**: one instance may be used from several threads at once (the transfers
  of `--jobs N`); each implementation says how (per-thread sessions, thread-safe clients).
- An operation a kind cannot offer (presigned URLs of a local folder, listing an upstream
  registry's bucket) raises `UnsupportedOperation`, one line naming the storage and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from fdp_tasks.datastore import safe_relative
from fdp_tasks.errors import FdpError, HashMismatch, UnsafePathError
from fdp_tasks.files import read_chunks, sha1_file

# Called with the number of bytes moved so far (not the increment), from the thread that
# moves them; a progress bar shared by several transfers must lock on its own.
Progress = Callable[[int], None]
Source = Path | IO[bytes]
METHODS = ("GET", "PUT")
DEFAULT_EXPIRY = 3600
# The bundles of small files a registry's `/data/` root takes and sends (our server: see
# server/blobs.py and storage/upstream.py): the body's type, the header a registry's answers
# carry when it has them, and how large a file may travel in one
BUNDLE_TYPE = "application/x-fdp-bundle"
BUNDLES_HEADER = "FDP-Data-Bundles"
BUNDLE_FILE_BYTES = 256 * 1024
SHA1_HEX = frozenset("0123456789abcdef")


class StorageError(FdpError):
    """A storage refused or failed an operation. `status` is the HTTP status when there was
    one (so a caller can tell a refusal from an outage)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ObjectMissing(StorageError):
    """No object under that key."""


class UnsupportedOperation(StorageError):
    """The storage's protocol does not offer this operation."""


class NoFileStorage(StorageError):
    """The registry cannot take files: pushing anything public to it is pointless."""


@dataclass(frozen=True)
class Stored:
    """What a put did: the key, the object's size, and whether bytes were sent (False when
    a content-addressed storage already held them)."""

    key: str
    size: int
    sent: bool = True


def check_key(key: str, storage: str = "the storage") -> str:
    """`key` normalised, or UnsafePathError if it is empty, absolute or climbs out."""
    if not isinstance(key, str):
        raise UnsafePathError(f"key {key!r} of {storage} must be a string")
    return safe_relative(key, storage)


def is_sha1(text: str) -> bool:
    return len(text) == 40 and set(text.lower()) <= SHA1_HEX


# A bundle (`BUNDLE_TYPE`) is its files one after the other, each a line `<sha1> <size>` and
# then its bytes, and last a line `end`.
BUNDLE_END = b"end\n"


class BadBundle(ValueError):
    """A file of a bundle whose size line makes no sense, or is larger than allowed."""


def bundle_entry(sha1: str, data: bytes) -> bytes:
    """One file of a bundle: its `<sha1> <size>` line and its bytes."""
    return f"{sha1} {len(data)}\n".encode("ascii") + data


def bundle_entries(stream: IO[bytes], max_size: int | None = None) -> Iterator[tuple[str, bytes]]:
    """The files of a bundle as (SHA-1, bytes), read from `stream` up to its `end` line, or
    to where it stops making sense (a line that names no SHA-1, bytes cut short). A SHA-1
    with a size that is not a number, or above `max_size`, raises BadBundle before any of
    its bytes are read."""
    while True:
        words = stream.readline(100).split()
        if len(words) != 2 or not is_sha1(words[0].decode("ascii", "replace")):
            return  # `end`, or nothing more that makes sense
        sha1 = words[0].decode("ascii").lower()
        if not words[1].isdigit() or (max_size is not None and int(words[1]) > max_size):
            limit = f"at most {max_size} bytes" if max_size is not None else "a number of bytes"
            raise BadBundle(f"{sha1}: expected a size of {limit}")
        size = int(words[1])
        data = stream.read(size)
        if len(data) != size:
            return  # cut short: what came whole was yielded
        yield sha1, data


def check_sha1_key(key: str, storage: str) -> str:
    """A content address: the key must be a SHA-1 (40 hex digits), lower-cased here."""
    check_key(key, storage)
    if not is_sha1(key):
        raise UnsafePathError(
            f"key {key!r} of {storage}: expected a SHA-1 (40 hex digits): its objects are "
            "addressed by content"
        )
    return key.lower()


def check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"byte range [{start}, {end}) is not a range")


def check_method(method: str) -> str:
    upper = method.upper()
    if upper not in METHODS:
        raise ValueError(f"presign: method {method!r}; expected one of {', '.join(METHODS)}")
    return upper


def source_size(source: Source) -> int | None:
    """The bytes a put will send: a file's size, or what is left of a seekable stream."""
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stat().st_size
    try:
        here = source.tell()
        end = source.seek(0, os.SEEK_END)
        source.seek(here)
    except (OSError, AttributeError, ValueError):
        return None
    return end - here


def sha1_of(source: Source, chunk: int = 1 << 20) -> str:
    """SHA-1 of a file, or of a seekable stream from where it stands (then rewound there)."""
    if isinstance(source, (str, os.PathLike)):
        return sha1_file(source)
    digest = hashlib.sha1(usedforsecurity=False)
    here = source.tell()
    for block in read_chunks(source, chunk):
        digest.update(block)
    source.seek(here)
    return digest.hexdigest()


def seekable(source: Source) -> bool:
    if isinstance(source, (str, os.PathLike)):
        return True
    try:
        return bool(source.seekable()) and source.tell() >= 0
    except (OSError, AttributeError, ValueError):
        return False


@contextlib.contextmanager
def replayable(source: Source) -> Iterator[Source]:
    """`source` as something that can be read twice (hashed, then sent): a path or a
    seekable stream as it is, any other stream spooled to a temporary file first (on disk,
    so memory stays bounded)."""
    if seekable(source):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="fdp-spool-") as tmp:
        spooled = Path(tmp) / "object"
        with open(spooled, "wb") as out:
            while block := source.read(1 << 20):  # type: ignore[union-attr]
                out.write(block)
        yield spooled


class ProgressReader:
    """A binary file read by someone else (an HTTP client, an S3 transfer) that reports the
    bytes read so far to `progress` after each read; thread-safe, since a transfer may read
    from several threads."""

    def __init__(self, fh: IO[bytes], progress: Progress | None, size: int | None = None):
        self._fh = fh
        self._progress = progress
        self._size = size
        self._done = 0
        self._lock = threading.Lock()

    def read(self, size: int = -1) -> bytes:
        block = self._fh.read(size)
        if block and self._progress is not None:
            with self._lock:
                self._done += len(block)
                done = self._done
            self._progress(done)
        return block

    def __len__(self) -> int:  # what HTTP clients send as Content-Length
        if self._size is None:
            raise TypeError("a stream of unknown length")
        return self._size

    def close(self) -> None:
        self._fh.close()

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(1 << 16):
            yield block


class Storage(ABC):
    """Bytes under keys. See the module docstring for what every implementation guarantees."""

    #: the storage's address, as `storage_for` takes it and messages show it (no secrets)
    url: str
    #: True when keys are SHA-1s of the bytes (a put of a known key sends nothing)
    content_addressed: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a whole object is stored under `key` (a put in flight does not count)."""

    @abstractmethod
    def put(
        self,
        source: Source,
        key: str,
        *,
        sha1: str | None = None,
        progress: Progress | None = None,
    ) -> Stored:
        """Store the bytes of `source` (a file path, or a binary stream read to its end)
        under `key`, atomically, streaming with bounded memory.

        `sha1`, when given, is what the bytes must hash to: a mismatch raises HashMismatch
        and stores nothing (checked by this client, or by the server behind the storage).
        `progress` is called with the bytes sent so far. A content-addressed storage that
        already holds the key sends nothing (`Stored.sent` is False).
        """

    @abstractmethod
    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """The object's bytes from offset `start` up to, not including, `end` (the end of the
        object when None), as an iterator of chunks of bounded size. ObjectMissing when the
        key holds nothing. Errors may surface while iterating (a dropped connection that
        could not be resumed)."""

    def presign(self, key: str, method: str = "GET", expires: int = DEFAULT_EXPIRY) -> str:
        """A URL that lets anyone holding it GET (or PUT) this one key for `expires` seconds,
        without credentials; the bytes then move between that party and the storage
        directly. UnsupportedOperation where the storage has no such URLs."""
        check_method(method)
        raise UnsupportedOperation(f"{self.url}: {self.kind} has no presigned URLs")

    def delete(self, key: str) -> None:
        """Remove the object; deleting a key that holds nothing is not an error."""
        raise UnsupportedOperation(f"{self.url}: {self.kind} offers no way to delete a file")

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys that start with `prefix` (a string prefix, not only a folder), in no promised
        order, fetched a page at a time as the iterator advances."""
        raise UnsupportedOperation(f"{self.url}: {self.kind} offers no way to list its files")

    def promote(self, staged: str, key: str, sha1: str) -> bool:
        """Move the object at `staged` to `key` if its bytes hash to `sha1`, else delete it;
        returns whether it moved. The bytes hashed are the bytes that land under `key` (a
        rewrite of `staged` meanwhile cannot slip through).

        This generic version copies through a temporary file of this process; storages
        that can copy by themselves do better.
        """
        with tempfile.TemporaryDirectory(prefix="fdp-promote-") as tmp:
            copy = Path(tmp) / "object"
            digest = hashlib.sha1(usedforsecurity=False)
            try:
                with open(copy, "wb") as out:
                    for block in self.open(staged):
                        digest.update(block)
                        out.write(block)
            except ObjectMissing:
                return False
            if digest.hexdigest() != sha1.lower():
                self.delete(staged)
                return False
            self.put(copy, key, sha1=sha1)
        self.delete(staged)
        return True

    def close(self) -> None:  # noqa: B027 - most storages hold nothing to release
        """Release connections."""

    @property
    def kind(self) -> str:
        """What the storage is, in words, for messages."""
        return type(self).__name__

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunks_of(
    stream: BinaryIO, chunk: int, start: int = 0, end: int | None = None
) -> Iterable[bytes]:
    """Read `stream` from its position in chunks of `chunk` bytes, `end - start` at most."""
    left = None if end is None else end - start
    while left is None or left > 0:
        block = stream.read(chunk if left is None else min(chunk, left))
        if not block:
            return
        if left is not None:
            left -= len(block)
        yield block


def verify_sha1(got: str, expected: str | None, what: str) -> None:
    if expected and got != expected.lower():
        raise HashMismatch(f"{what}: SHA-1 {got} does not match the expected {expected}")
