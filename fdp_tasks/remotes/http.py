"""A remote that is a FAIR Data Pipeline registry reached over its REST API.

Files go to the registry's data endpoint (upload by SHA-1 to a presigned URL) and come back
from wherever the registry says they are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.remotes.base import Remote
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.transfer import location_url


class HttpRemote(Remote):
    def __init__(self, name: str, url: str, token: str | None = None):
        self.name = name
        self.registry = HttpRegistry(url, token=token)
        self.url = self.registry.api_url

    def upload(self, source: Path, sha1: str, path_hint: str) -> tuple[str, str]:
        info = self.registry.upload_blob(source, sha1)
        return info["storage_root"], info["path"]

    def download(self, root: str, path: str) -> Iterator[bytes]:
        if root.startswith(("http://", "https://")):
            return self.registry.download(location_url(root, path))
        return super().download(root, path)

    def close(self) -> None:
        self.registry.close()
