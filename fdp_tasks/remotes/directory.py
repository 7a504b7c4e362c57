"""A remote that is a directory: a SQLite registry and a data store side by side.

Handy on a shared file system, for a USB disk, and in tests; the same store code as the
local registry.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from fdp_tasks.datastore import DataStore
from fdp_tasks.errors import OutOfSync
from fdp_tasks.files import sha1_file
from fdp_tasks.remotes.base import Remote
from fdp_tasks.store.sql import open_store


def directory_of(url: str) -> Path:
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    return Path(url).expanduser()


class DirectoryRemote(Remote):
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
        self.data = DataStore(self.path / "data")

    def upload(self, source: Path, sha1: str, path_hint: str) -> tuple[str, str]:
        target = self.data.path(path_hint)
        if target.is_file():
            existing = sha1_file(target)
            if existing != sha1:
                raise OutOfSync.different_content(f"{self.url}: {path_hint}", existing, sha1)
        else:
            self.data.put_file(path_hint, source, expected_sha1=sha1)
        return self.data.uri, path_hint
