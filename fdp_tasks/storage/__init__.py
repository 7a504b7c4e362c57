"""Where the bytes of data files live: one `Storage` interface, several kinds behind it.

- `LocalStorage`: a folder (a path or file:// URL);
- `S3Storage`: an S3 bucket under a prefix (`s3://bucket/prefix`), through boto3;
- `UpstreamDataStorage`: a FAIR Data Pipeline registry's `/data/` protocol (an http(s)://
  registry API URL), which our server also speaks;
- `ServerBlobStorage`: the same for a registry known to be our own server, which also
  answers whether it holds a file without being asked for an upload.

A remote is a registry plus one of these; the server keeps its blobs in one. This package
knows no registry, server or remote: it sits below all of them.
"""

from __future__ import annotations

from typing import Any

from fdp_tasks.storage.base import (
    NoFileStorage,
    ObjectMissing,
    Progress,
    Storage,
    StorageError,
    Stored,
    UnsupportedOperation,
)

__all__ = [
    "NoFileStorage",
    "ObjectMissing",
    "Progress",
    "Storage",
    "StorageError",
    "Stored",
    "UnsupportedOperation",
    "storage_for",
]


def storage_for(
    url: str,
    *,
    token: str | None = None,
    server: bool = False,
    create: bool = True,
    **options: Any,
) -> Storage:
    """The storage a URL names: `s3://bucket/prefix` (options: endpoint_url, region_name,
    profile, part_size, concurrency), an http(s):// registry API URL (`token` for uploads;
    `server=True` when it is an fdp-tasks server), else a folder (a path or file:// URL,
    made unless `create` is False)."""
    text = str(url)
    if text.startswith("s3://"):
        from fdp_tasks.storage.s3 import S3Storage

        return S3Storage(text, **options)
    if text.startswith(("http://", "https://")):
        if server:
            from fdp_tasks.storage.server_blobs import ServerBlobStorage

            return ServerBlobStorage(text, token, **options)
        from fdp_tasks.storage.upstream import UpstreamDataStorage

        return UpstreamDataStorage(text, token, **options)
    from fdp_tasks.datastore import local_root
    from fdp_tasks.storage.local import LocalStorage

    folder = local_root(text)
    if folder is None:
        from fdp_tasks.errors import BadInput

        raise BadInput(
            f"storage {text!r}: expected a folder, file://, s3://bucket/prefix or an "
            "http(s):// registry URL"
        )
    return LocalStorage(folder, create=create)
