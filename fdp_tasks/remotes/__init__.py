"""Remotes: somewhere else to pull from and push to, each a registry plus a storage.

Every kind of remote (a directory, an HTTP registry) implements `Remote`, pairing a registry
with a `fdp_tasks.storage.Storage` for the bytes, so pull, push and the task graph never ask
which kind they hold.
"""

from __future__ import annotations

from fdp_tasks.remotes.base import Remote

__all__ = ["Remote", "open_remote"]


def open_remote(name: str, url: str, token: str | None = None, readonly: bool = False) -> Remote:
    """A Remote for `url`: http(s):// is a registry server, anything else a directory.
    `readonly` remotes create nothing (a directory that is not there reads as empty)."""
    if url.startswith(("http://", "https://")):
        from fdp_tasks.remotes.http import HttpRemote

        return HttpRemote(name, url, token)
    from fdp_tasks.remotes.directory import DirectoryRemote

    return DirectoryRemote(name, url, readonly=readonly)
