"""The remote interface: what pull, push and the task graph ask of any remote."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.store.base import Registry


class Remote(ABC):
    """A registry and the data store its files live in."""

    name: str
    url: str
    registry: Registry

    @abstractmethod
    def upload(self, source: Path, sha1: str, path_hint: str) -> tuple[str, str]:
        """Put a local file into the remote data store; returns (storage_root, path) of it."""

    def download(self, root: str, path: str) -> Iterator[bytes]:
        """The bytes of the file at storage root `root` + `path`, streamed."""
        from fdp_tasks.transfer import open_location

        return open_location(root, path)

    def close(self) -> None:  # noqa: B027 - most remotes hold nothing to release
        """Release connections and handles."""

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
