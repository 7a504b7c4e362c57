"""Files written so that a crash never leaves half of one, and hashed while they stream.

Shared by the data store, the registry server's file store and the settings: no layer owns
them, so none has to import another's internals for them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable
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
    size = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            for block in chunks:
                if not block:
                    continue
                out.write(block)
                digest.update(block)
                size += len(block)
                if progress:
                    progress(size)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if expected_sha1 and got != expected_sha1.lower():
            raise HashMismatch(
                f"{dest.name}: SHA-1 {got} does not match the expected {expected_sha1}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:
            # a full disk names no file: say which one could not be written
            raise OSError(exc.errno, exc.strerror, str(dest)) from exc
        raise
    return got, size


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
