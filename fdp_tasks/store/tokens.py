"""Handing out a registry user's token: one rule for the local user, `fdp registry token`,
the registry servers tests and benchmarks start, and an emulated upstream."""

from __future__ import annotations

import os
from pathlib import Path

from fdp_tasks.files import read_secret, write_secret
from fdp_tasks.store.base import Record, RegistryError
from fdp_tasks.store.sql import Store


def working_token(
    store: Store, username: str = "admin", *, token: str | None = None, file: Path | None = None
) -> str:
    """A token that authenticates as `username` (created if missing) on `store`.

    A given `token` is registered for the user. Else the token kept in `file` is used,
    unless it is someone else's (a token file outlives a deleted registry, so one the store
    does not know is registered again); else a new token is issued and, with `file`, written
    there readable by its owner only.
    """
    user = store.ensure_user(username)
    if token is not None:
        if not _claim(store, user, token):
            raise RegistryError(f"the token given for {username} is another user's")
        return token
    if file is not None and file.is_file():
        kept = read_secret(file)
        if kept and _claim(store, user, kept):
            if file.stat().st_mode & 0o077:
                os.chmod(file, 0o600)
            return kept
    token = store.issue_token(user["id"])
    if file is not None:
        write_secret(file, token)
    return token


def _claim(store: Store, user: Record, token: str) -> bool:
    """Register `token` for `user`, unless it is another user's already (then False)."""
    owner = store.user_for_token(token)
    if owner is not None:
        return owner["id"] == user["id"]
    store.add_token(user["id"], token)
    return True
