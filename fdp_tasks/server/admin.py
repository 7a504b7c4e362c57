"""What a registry's operator does from the command line, on its database: namespace members
(`fdp registry members`) and the sweep of what vanished pushes left (`fdp registry sweep`).

The operator holds the database, so acts as admin: adds and removes anyone.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.server.blobs import blobs_location
from fdp_tasks.server.leftovers import StaleSwept, sweep_stale
from fdp_tasks.store.sql import Store

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str, flag: str = "--older-than") -> timedelta:
    """`90s`, `30m`, `12h`, `2d`, `1w` (a bare number is seconds) as a duration."""
    match = _AGE.match(str(text).lower())
    if not match:
        raise BadInput(
            f"{flag}: expected a duration such as 30m, 12h or 2d (s, m, h, d, w), got {text!r}"
        )
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


def namespace_members(
    db: str, namespace: str, add: str | None = None, remove: str | None = None
) -> list[str]:
    """The members of `namespace` in the registry `db`, after adding or removing a user."""
    store = Store(db)
    try:
        found = store.find_one("namespace", {"name": namespace})
        if found is None:
            raise FdpError(f"namespace {namespace!r} is not in the registry {db}")
        for name, change in ((add, store.add_member), (remove, store.remove_member)):
            if name is None:
                continue
            user = store.find_one("users", {"username": name})
            if user is None:
                raise FdpError(
                    f"no user {name!r} in the registry {db} (`fdp registry token --db DB "
                    f"--user {name}` makes one, with a token to hand them)"
                )
            change(found["id"], user["id"])
        return [user["username"] for user in store.members(found["id"])]
    finally:
        store.close()


def sweep_leftovers(db: str, blobs: Path | str, older_than: timedelta) -> StaleSwept:
    """Sweep the registry `db` (files in `blobs`: a folder or an s3:// URL) of what pushes
    left more than `older_than` ago that no data product needs."""
    store = Store(db)
    try:
        return sweep_stale(store, blobs_location(blobs), older_than)
    finally:
        store.close()
