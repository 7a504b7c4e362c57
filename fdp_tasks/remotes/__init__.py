"""Remotes: somewhere else to pull from and push to, each a registry plus a data store.

Every kind of remote (a directory, an HTTP registry, later object storage) implements
`Remote`, so pull, push and the task graph never ask which kind they hold.
"""

from __future__ import annotations

from fdp_tasks.remotes.base import Remote, open_remote

__all__ = ["Remote", "open_remote"]
