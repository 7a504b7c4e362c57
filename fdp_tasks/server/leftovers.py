"""What a push that did not finish leaves on our server, swept: records and uploaded files.

Two sweeps, both safe while other pushes run:

- `sweep_lost_push`, on the request that loses a race for a data product's name (another push
  created it first, with other bytes): the records that user wrote (code runs, objects,
  components, storage locations) that no data product needs, and the uploaded files nothing
  names any more, unless another user has asked to keep the same bytes (a push of theirs may
  be about to name them). Records of other users are never touched; a user's own pushes
  running at once count as one push.
- `sweep_stale` (`fdp registry sweep --older-than`), for pushes whose client vanished: the same
  rule over the whole registry, for records and uploads older than a cut-off, so that a push
  still building is never touched; with the part files of resumable uploads (a blob folder's
  `.uploads/`) that no piece reached since the cut-off.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fdp_tasks.server.blobs import PARTS, blob_key, blob_storage, upload_lock
from fdp_tasks.storage import Storage
from fdp_tasks.storage.base import is_sha1
from fdp_tasks.storage.local import LocalStorage
from fdp_tasks.store.sql import Store
from fdp_tasks.store.sweep import Swept, drop_unnamed, stale_claims, sweep

_BLOB_KEY = re.compile(r"^[0-9a-f]{2}/([0-9a-f]{40})$")
_STAGED_KEY = re.compile(r"^incoming/(\d+)/([0-9a-f]{40})$")


@dataclass
class StaleSwept(Swept):
    """What `sweep_stale` removed: a sweep's records and files, and abandoned uploads."""

    unfinished_uploads: int = 0


def _dropper(storage: Storage) -> Callable[[list[str]], None]:
    """Deletes the files of these SHA-1s from the server's storage, if there."""

    def drop(hashes: list[str]) -> None:
        for sha1 in hashes:
            if is_sha1(sha1):
                storage.delete(blob_key(sha1))

    return drop


def sweep_lost_push(store: Store, storage: Storage, user_id: int) -> Swept:
    """Sweep what `user_id` wrote that no data product needs: its push just lost a race."""
    return sweep(store, user_id=user_id, drop_files=_dropper(storage))


def sweep_stale(store: Store, blobs: Path | str | Storage, older_than: timedelta) -> StaleSwept:
    """Sweep records and claims older than `older_than` that no data product needs, with
    their files, and files nothing names or claims (every upload is claimed when its URL is
    handed out, so one under way is never among them), and resumable uploads abandoned
    for longer than `older_than`."""
    storage = blob_storage(blobs)
    cutoff = datetime.now(timezone.utc) - older_than
    drop = _dropper(storage)
    swept = sweep(store, before=cutoff, drop_files=drop)
    unclaimed = stale_claims(store, cutoff, drop)
    stored, staged = [], []
    for key in storage.list():
        if match := _BLOB_KEY.match(key):
            stored.append(match[1])
        elif match := _STAGED_KEY.match(key):
            staged.append((key, int(match[1]), match[2]))
    orphans = drop_unnamed(store, stored, drop)
    for key, user_id, sha1 in staged:  # direct uploads never hashed, whose claim is gone
        if user_id not in store.file_claimants(sha1):
            storage.delete(key)
    swept.hashes = sorted(set(swept.hashes) | set(unclaimed) | set(orphans))
    return StaleSwept(
        records=swept.records,
        hashes=swept.hashes,
        unfinished_uploads=sweep_unfinished_uploads(storage, cutoff),
    )


def sweep_unfinished_uploads(storage: Storage, cutoff: datetime) -> int:
    """Delete the part files of resumable uploads (server/blobs.py) that no piece reached
    since `cutoff`: their clients gave up, and a resumed upload would start again from
    zero. Each goes under its upload's lock, looked at again there, so a piece arriving
    meanwhile keeps it; its lock file goes with it, as do those of older finished uploads.
    Returns how many parts went. Only a blob folder holds parts (an object store's uploads
    are single requests)."""
    if not isinstance(storage, LocalStorage):
        return 0
    folder = storage.root / PARTS
    if not folder.is_dir():
        return 0
    limit = cutoff.timestamp()
    removed = 0
    for part in sorted(folder.glob("*.part")):
        lock = part.with_suffix(".lock")
        with upload_lock(lock):
            try:
                if part.stat().st_mtime >= limit:
                    continue
                part.unlink()
            except FileNotFoundError:
                continue
            lock.unlink(missing_ok=True)
            removed += 1
    for lock in sorted(folder.glob("*.lock")):
        with upload_lock(lock):
            if not lock.with_suffix(".part").exists() and lock.stat().st_mtime < limit:
                lock.unlink(missing_ok=True)
    return removed
