"""The client side of our registry server's blob store (`fdp registry serve`).

Our server speaks the registry `/data/` protocol (see upstream.py) with more to say: its
upload answer carries `exists`, `storage_root` and `path`, it hashes every upload before
keeping it (a folder) or before any storage location may name it (S3), and
`HEAD/GET <site>/data/<sha1>` answers for a file whether or not a record names it yet (to a
token holder; to anyone once a public storage location names it). So `exists` is a HEAD
rather than an upload request, and works without a token for public files.
"""

from __future__ import annotations

from fdp_tasks.storage.base import check_sha1_key
from fdp_tasks.storage.upstream import UpstreamDataStorage

FOUND = (200, 206, 302, 303, 307)


class ServerBlobStorage(UpstreamDataStorage):
    """The blob store of an fdp-tasks registry server, over HTTP."""

    kind = "a registry server's blob store"

    def exists(self, key: str) -> bool:
        url = self.data_root + check_sha1_key(key, self.url)
        resp = self.send("HEAD", url, ok=FOUND, expected=(404,))
        return resp.status_code != 404
