"""A remote that is a FAIR Data Pipeline registry reached over its REST API.

Its storage is the registry's `/data/` protocol (`fdp_tasks.storage.upstream`): files go up
by SHA-1 to the presigned URL the registry hands out, and come back from wherever the
registry says they are stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fdp_tasks.remotes.base import Remote
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.storage.base import Progress, is_sha1
from fdp_tasks.storage.upstream import UpstreamDataStorage
from fdp_tasks.transfer import location_url


class HttpRemote(Remote):
    registry: HttpRegistry
    storage: UpstreamDataStorage

    def __init__(self, name: str, url: str, token: str | None = None):
        self.name = name
        self.registry = HttpRegistry(url, token=token, label=f"remote {name}")
        self.url = self.registry.api_url
        self.storage = self.registry.blobs

    def upload(
        self, source: Path, sha1: str, path_hint: str, progress: Progress | None = None
    ) -> tuple[str, str]:
        """By content: the registry says where the file is to be recorded (its data root and
        the SHA-1 as path); `path_hint` has no say."""
        info = self.storage.upload(source, sha1, progress)
        return info["storage_root"], info["path"]

    def prepare_uploads(self, hashes: list[str]) -> None:
        """Where to upload all of them, asked a few hundred at a time where the registry
        can answer that (our server), so each upload is then one request: its bytes."""
        self.storage.ask_uploads(hashes)

    def download(self, root: str, path: str, start: int = 0) -> Iterator[bytes]:
        """Any http(s) root goes through the storage's session (the token only to the
        registry itself); other roots as the base class reads them."""
        if root.startswith(("http://", "https://")):
            return self.storage.read_url(location_url(root, path), start)
        return super().download(root, path, start)

    def upload_small(self, files: list[tuple[Path, str]]) -> dict[str, tuple[str, str]]:
        """In bundles, where the registry takes them (our server)."""
        return self.storage.upload_bundle(files)

    def download_small(self, wanted: list[tuple[str, str]]) -> Iterator[tuple[str, str, bytes]]:
        """Files under the registry's own data root, by SHA-1, in bundles where it sends
        them (our server); files elsewhere, and any it leaves out, one by one."""
        ours = {
            path.lower(): (root, path)
            for root, path in wanted
            if self.holds(root) and is_sha1(path)
        }
        for sha1, data in self.storage.read_bundle(list(ours)):
            root, path = ours[sha1]
            yield root, path, data

    def close(self) -> None:
        self.storage.close()
        self.registry.close()
