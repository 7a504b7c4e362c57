"""A remote that is a directory: a SQLite registry and a folder storage side by side.

Handy on a shared file system, for a USB disk, and in tests; the same store code as the
local registry.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from fdp_tasks.errors import OutOfSync
from fdp_tasks.remotes.base import Remote
from fdp_tasks.storage.base import Progress
from fdp_tasks.storage.local import LocalStorage
from fdp_tasks.store.sql import open_store


def directory_of(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return Path(url).expanduser()


class DirectoryRemote(Remote):
    storage: LocalStorage

    def __init__(self, name: str, url: str, readonly: bool = False):
        """`readonly`: for commands that only look; a remote that does not exist yet reads
        as an empty one and is not created."""
        self.name = name
        self.path = directory_of(url).resolve()
        self.url = self.path.as_uri()
        db = self.path / "registry.db"
        if readonly and not db.is_file():
            self.registry = open_store("sqlite://")
        else:
            self.path.mkdir(parents=True, exist_ok=True)
            self.registry = open_store(f"sqlite:///{db}")
        self.storage = LocalStorage(self.path / "data", create=False)

    def upload(
        self, source: Path, sha1: str, path_hint: str, progress: Progress | None = None
    ) -> tuple[str, str]:
        """Files keep their data-store paths here; one already there must hold these bytes
        (someone else's file under that name means the remote moved on)."""
        if self.storage.exists(path_hint):
            existing = self.storage.sha1(path_hint)
            if existing != sha1:
                raise OutOfSync.different_content(f"{self.url}: {path_hint}", existing, sha1)
        else:
            self.storage.put(source, path_hint, sha1=sha1, progress=progress)
        return self.storage.url, path_hint

    def holds(self, root: str) -> bool:
        return self.storage.data.holds(root)
