"""Files written so that a crash never leaves half of one, and hashed while they stream.

Shared by the data store, the registry server's file store and the settings: no layer owns
them, so none has to import another's internals for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from fdp_tasks.errors import HashMismatch

CHUNK = 1024 * 1024


def sha1_file(path: str | Path) -> str:
    """SHA-1 of a file's bytes, read in chunks so memory stays flat."""
    digest = hashlib.sha1(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(
    dest: Path,
    chunks: Iterable[bytes],
    expected_sha1: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Stream chunks to a temp file beside `dest`, check the hash, fsync, then rename.

    A crash at any point leaves either the old file or the complete new one, never a
    partial file under the final name. `progress`, if given, is called after each chunk with
    the bytes written so far, so that a long transfer can show how far it got.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(usedforsecurity=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            size = _stream_durably(out, chunks, digest, progress)
        got = _place_if_intact(Path(tmp), dest, digest, expected_sha1)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:
            # a full disk names no file: say which one could not be written
            raise OSError(exc.errno, exc.strerror, str(dest)) from exc
        raise
    return got, size


def write_resumably(
    dest: Path,
    fetch: Callable[[int], Iterable[bytes]],
    expected_sha1: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Like `write_atomically`, for bytes fetched from the network that may stop midway:
    they gather in `.<name>.<sha1>.part` beside `dest`, which a later call (after a dropped
    connection, a kill) continues with `fetch(offset)` instead of fetching it all again.
    What is there is hashed first; bytes that do not end up hashing to `expected_sha1` are
    deleted, so the next try starts afresh. One writer at a time per part (a lock on it);
    `progress` gets the bytes written by this call so far."""
    made = [d for d in (dest.parent, *dest.parent.parents) if not d.exists()]
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.parent / f".{dest.name}.{expected_sha1.lower()}.part"
    try:
        return _fill_part(part, dest, fetch, expected_sha1, progress)
    except BaseException:
        # a fetch refused before its first byte leaves nothing behind, not even folders
        with contextlib.suppress(OSError):
            if part.stat().st_size == 0:
                part.unlink()
                for folder in made:  # deepest first
                    folder.rmdir()
        raise


def _fill_part(
    part: Path,
    dest: Path,
    fetch: Callable[[int], Iterable[bytes]],
    expected_sha1: str,
    progress: Callable[[int], None] | None,
) -> tuple[str, int]:
    with _locked_part(part) as out:
        digest = hashlib.sha1(usedforsecurity=False)
        out.seek(0)
        held = 0
        while block := out.read(CHUNK):
            digest.update(block)
            held += len(block)
        written = _stream_durably(out, fetch(held), digest, progress)
        got = _place_if_intact(part, dest, digest, expected_sha1)
    return got, held + written


def _stream_durably(
    out: IO[bytes],
    chunks: Iterable[bytes],
    digest: hashlib._Hash,
    progress: Callable[[int], None] | None,
) -> int:
    """The one write loop of this module: each chunk written and hashed as it passes,
    `progress` told the bytes written so far, then everything flushed and fsynced, so that
    a rename that follows never publishes bytes still in a cache. Returns the bytes written."""
    written = 0
    for block in chunks:
        if not block:
            continue
        out.write(block)
        digest.update(block)
        written += len(block)
        if progress:
            progress(written)
    out.flush()
    os.fsync(out.fileno())
    return written


def _place_if_intact(
    written: Path, dest: Path, digest: hashlib._Hash, expected_sha1: str | None
) -> str:
    """Rename the finished file over `dest` if its bytes hash to `expected_sha1` (any bytes
    when None); else delete it, so a retry starts afresh, and refuse. Returns the SHA-1."""
    got = digest.hexdigest()
    if expected_sha1 and got != expected_sha1.lower():
        written.unlink(missing_ok=True)
        raise HashMismatch(f"{dest}: SHA-1 {got} does not match the expected {expected_sha1}")
    os.chmod(written, 0o644)
    os.replace(written, dest)
    return got


@contextlib.contextmanager
def _locked_part(part: Path) -> Iterator[IO[bytes]]:
    """The part file opened for reading and appending, locked for this writer alone; if
    another writer renamed it into place meanwhile, a new one is opened."""
    import fcntl

    while True:
        handle = open(part, "a+b")  # noqa: SIM115 - closed below
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(part).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield handle
                return
        finally:
            handle.close()


def replace_text(path: Path, write: Callable[[IO[str]], object], mode: int) -> None:
    """Write through a fresh temp file (mkstemp: O_EXCL, 0600), then rename over `path`.

    A crash never leaves half a file, and nothing planted at a guessable temp name is
    followed or reused.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_secret(path: Path, text: str) -> None:
    """A token file readable by its owner only (0600 from the start, never wider)."""
    replace_text(path, lambda fh: fh.write(text + "\n"), 0o600)


def read_secret(path: Path) -> str:
    return path.read_text(encoding="utf-8").strip()


def read_chunks(stream: IO[bytes], size: int = CHUNK) -> Iterable[bytes]:
    while block := stream.read(size):
        yield block
