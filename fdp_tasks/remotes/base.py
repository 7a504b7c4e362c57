"""The remote interface: what pull, push and the task graph ask of any remote.

A remote is a registry (the records: what exists, where its bytes are) plus a storage (the
bytes, `fdp_tasks.storage`); uploads and downloads of files the storage holds go through it,
so a new kind of storage needs no new kind of remote.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.storage import Storage
from fdp_tasks.storage.base import Progress
from fdp_tasks.store.base import Registry


class Remote(ABC):
    """A registry and the storage its files live in."""

    name: str
    url: str
    registry: Registry
    storage: Storage

    @abstractmethod
    def upload(
        self, source: Path, sha1: str, path_hint: str, progress: Progress | None = None
    ) -> tuple[str, str]:
        """Put a local file into the remote's storage; returns (storage_root, path) of it,
        what the remote's storage location is to say. `progress` is told the bytes sent so
        far, as a storage's put tells it."""

    def prepare_uploads(self, hashes: list[str]) -> None:
        """Told the SHA-1s of the files about to be uploaded, before the first: a remote
        that can ask about many at once does so here (see HttpRemote)."""
        return None

    def holds(self, root: str) -> bool:
        """Whether files under storage root `root` are in this remote's storage."""
        return root == self.storage.url

    def download(self, root: str, path: str, start: int = 0) -> Iterator[bytes]:
        """The bytes of the file at storage root `root` + `path` from offset `start` on,
        streamed: from the remote's storage when it holds them, else from wherever the root
        says."""
        if self.holds(root):
            return self.storage.open(path, start)
        from fdp_tasks.transfer import open_location

        return open_location(root, path, start=start)

    def upload_small(self, files: list[tuple[Path, str]]) -> dict[str, tuple[str, str]]:
        """Many small files (path, SHA-1) at once where the remote takes them in one
        request: (storage root, path) by SHA-1 of those it holds now; the rest are uploaded
        one by one. By default, none."""
        return {}

    def download_small(self, wanted: list[tuple[str, str]]) -> Iterator[tuple[str, str, bytes]]:
        """Many small files at once where the remote can send them in one answer: (root,
        path, bytes) for each of `wanted` (storage root, path) it sent, unchecked; the rest
        are downloaded one by one. By default, none."""
        return iter(())

    def close(self) -> None:
        """Release connections and handles."""
        self.storage.close()

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
