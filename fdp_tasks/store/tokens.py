"""Handing out a registry user's token: one rule for the local user, `fdp registry token`,
the registry servers tests and benchmarks start, and an emulated upstream; and taking
tokens back (revoking, rotating).

A user name becomes a token file's name (`<user>.token`), so it is held to characters that
are safe in a file name on every system: letters, digits and `. _ - @ +`, at most 150 (as
Django allows), not starting with `.` or `-`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdp_tasks.errors import BadInput
from fdp_tasks.files import read_secret, write_secret
from fdp_tasks.store.base import Record, RegistryError

if TYPE_CHECKING:  # the SQL engine is imported by whoever opens a store
    from fdp_tasks.store.sql import Store

_USERNAME = re.compile(r"^[A-Za-z0-9_@+][A-Za-z0-9_.@+-]{0,149}$")


def check_username(username: str, where: str = "user name") -> str:
    """`username` if it is one a token file can be named after, else a BadInput naming
    `where` (the flag or key it came from)."""
    if not _USERNAME.match(username):
        raise BadInput(
            f"{where}: {username!r} is not a user name: use letters, digits and . _ - @ + "
            "(at most 150, not starting with . or -)"
        )
    return username


def working_token(
    store: Store, username: str = "admin", *, token: str | None = None, file: Path | None = None
) -> str:
    """A token that authenticates as `username` (created if missing) on `store`.

    A given `token` is registered for the user. Else the token kept in `file` is used,
    unless it is someone else's (a token file outlives a deleted registry, so one the store
    does not know is registered again); else a new token is issued and, with `file`, written
    there readable by its owner only.
    """
    user = store.ensure_user(check_username(username))
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


def token_report(store: Store) -> list[dict[str, Any]]:
    """Every token by user, with the day it was made and last used (never its value)."""
    return [
        {
            "username": row["username"],
            "created": str(row["created"] or "")[:10] or "-",
            "last_used": str(row["last_used"] or "")[:10] or "never",
        }
        for row in store.tokens_of()
    ]


def _existing_user(store: Store, username: str) -> Record:
    user = store.find_one("users", {"username": check_username(username)})
    if user is None:
        raise BadInput(f"no user named {username!r} on this registry")
    return user


def revoke_tokens(store: Store, username: str, file: Path | None = None) -> int:
    """Make every token of `username` unusable, and remove their token `file`; how many
    tokens were revoked."""
    count = store.revoke_tokens_of(_existing_user(store, username)["id"])
    if file is not None:
        file.unlink(missing_ok=True)
    return count


def rotate_token(store: Store, username: str, file: Path) -> str:
    """A new token for `username`, written to `file` (0600), after which the user's other
    tokens no longer work. Should writing the file fail, the old tokens stay valid."""
    user = _existing_user(store, username)
    token = store.issue_token(user["id"])
    try:
        write_secret(file, token)
    except BaseException:
        store.revoke_token(token)
        raise
    store.revoke_tokens_of(user["id"], keep=token)
    return token
