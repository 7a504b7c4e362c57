"""A folder as a storage: a directory remote's data, our server's blob directory.

Writes go to a temporary file beside the target and are renamed into place (atomic on one
file system); keys are checked to stay inside the folder, symlinks included (the data
store's own check). Thread-safe: every call works on its own file handles.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.datastore import DataStore
from fdp_tasks.files import CHUNK, read_chunks, sha1_file
from fdp_tasks.storage.base import (
    ObjectMissing,
    Progress,
    Source,
    Storage,
    Stored,
    check_key,
    check_range,
    chunks_of,
)


class LocalStorage(Storage):
    """Files under one folder, keyed by their relative POSIX paths."""

    kind = "a local folder"

    def __init__(self, root: str | Path, create: bool = True):
        self.data = DataStore(root)
        self.root = self.data.root
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.data.uri

    def path(self, key: str) -> Path:
        """The file of `key`, checked to stay inside the folder."""
        return self.data.path(check_key(key, f"the folder {self.root}"))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def sha1(self, key: str) -> str:
        """The SHA-1 of the stored bytes (a local read; remote storages have no such call)."""
        return sha1_file(self.path(key))

    def put(
        self,
        source: Source,
        key: str,
        *,
        sha1: str | None = None,
        progress: Progress | None = None,
    ) -> Stored:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                _, size = self.data.put_stream(key, read_chunks(fh), sha1, progress)
        else:
            _, size = self.data.put_stream(key, read_chunks(source), sha1, progress)
        return Stored(check_key(key), size)

    def open(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        check_range(start, end)
        path = self.path(key)
        if not path.is_file():
            raise ObjectMissing(f"{self.url}: no file {key}")
        return _read_range(path, start, end)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Files under the folder whose key starts with `prefix`; dot-files (temporary files
        of a put in flight, the server's signing key) are not objects."""
        if prefix:
            check_key(prefix, f"the folder {self.root}")
        folder = prefix.rpartition("/")[0]
        base = self.root / folder if folder else self.root
        if not base.is_dir():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def promote(self, staged: str, key: str, sha1: str) -> bool:
        """Hash the staged file, then rename it into place: one read, no copy."""
        source, target = self.path(staged), self.path(key)
        if not source.is_file():
            return False
        if sha1_file(source) != sha1.lower():
            source.unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return True


def _read_range(path: Path, start: int, end: int | None) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        if start:
            stream.seek(start)
        yield from chunks_of(stream, CHUNK, start, end)
