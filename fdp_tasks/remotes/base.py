"""The remote interface and the factory that picks an implementation from a URL."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.registry.base import Registry


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


def open_remote(name: str, url: str, token: str | None = None) -> Remote:
    """A Remote for `url`: http(s):// is a registry server, anything else a directory."""
    if url.startswith(("http://", "https://")):
        from fdp_tasks.remotes.http import HttpRemote

        return HttpRemote(name, url, token)
    from fdp_tasks.remotes.directory import DirectoryRemote

    return DirectoryRemote(name, url)
