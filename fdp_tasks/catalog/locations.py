"""Recording files of the local data store in the registry, one location per content.

The registry keeps a single storage_location per (storage root, SHA-1, public), as the FAIR
Data Pipeline data model says. So when a file arrives whose bytes are already recorded under
another path, that path stays the file's home: the new copy is dropped if the recorded one is
intact, or moved into place if the recorded one went missing. Deleting a file therefore never
strands the products that share its bytes: whatever writes those bytes again heals it.
"""

from __future__ import annotations

import os
import stat
import weakref
from collections.abc import Iterable, Mapping

from fdp_tasks.datastore import DataStore
from fdp_tasks.files import sha1_file
from fdp_tasks.stat_cache import StatCache
from fdp_tasks.store.base import Record, Registry
from fdp_tasks.store.queries import Located

_root_ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store_root_id(registry: Registry, store: DataStore) -> int:
    """The storage_root of the local store, looked up once per registry and process."""
    known = _root_ids.setdefault(registry, {})
    if store.uri not in known:
        root, _ = registry.get_or_create("storage_root", {"root": store.uri, "local": True})
        known[store.uri] = root["id"]
    return known[store.uri]


def forget_roots(registry: Registry) -> None:
    """Drop remembered root ids, after a rollback may have undone the record behind one."""
    _root_ids.pop(registry, None)


def recorded(registry: Registry, store: DataStore, sha1: str, public: bool = True) -> Record | None:
    """The storage_location already holding these bytes in the local store, if any."""
    rows = registry.find(
        "storage_location",
        {"storage_root": store_root_id(registry, store), "hash": sha1, "public": public},
        limit=1,
    )
    return rows[0] if rows else None


def recorded_many(
    registry: Registry, store: DataStore, sha1s: Iterable[str]
) -> dict[str, dict[bool, Record]]:
    """`recorded` for many files at once: for each SHA-1 asked, its locations by `public`
    (none: an empty mapping). A few queries for a page of files rather than one each."""
    root = store_root_id(registry, store)
    found: dict[str, dict[bool, Record]] = {}
    wanted = sorted(set(sha1s))
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        for sha1 in chunk:
            found[sha1] = {}
        for row in registry.find("storage_location", {"storage_root": root, "hash": chunk}):
            found[row["hash"]].setdefault(bool(row["public"]), row)  # newest first, as `recorded`
    return found


def referenced(registry: Registry, store: DataStore, rel: str) -> bool:
    """Whether a storage_location names this file of the local store (else nothing needs it).

    Only reads: after a rolled-back write this must not record the store's root again.
    """
    roots = registry.find("storage_root", {"root": store.uri}, limit=1)
    if not roots:
        return False
    found = registry.find(
        "storage_location", {"storage_root": roots[0]["id"], "path": rel}, limit=1
    )
    return bool(found)


def intact(
    store: DataStore,
    rel: str,
    sha1: str | None,
    *,
    root: str | None = None,
    hashes: StatCache | None = None,
) -> bool:
    """Whether a recorded file is intact: a file of this data store holding the bytes the
    registry recorded (its SHA-1). Every up-to-date check, and every copy that may be
    skipped, asks this one question.

    `root` is the storage root the registry records the file under, which must then be
    the store's; callers naming a path of the store itself leave it out. `hashes`: a stat
    cache that spares reading a file whose stat has not changed since it was hashed.
    """
    if not sha1 or (root is not None and not store.holds(root)):
        return False
    target, found = store.stat(rel)
    if found is None or not stat.S_ISREG(found.st_mode):
        return False
    return (sha1_file(target) if hashes is None else hashes.sha1(target, found)) == sha1


def located_intact(
    store: DataStore, found: Located | None, hashes: StatCache | None = None
) -> bool:
    """Whether a located data product's file is intact (see `intact`)."""
    if found is None or found.location is None or found.root is None:
        return False
    return intact(store, found.location["path"], found.hash, root=found.root["root"], hashes=hashes)


def settle(store: DataStore, new_rel: str, kept_rel: str, sha1: str, keep_new: bool) -> None:
    """Make `kept_rel` hold the bytes that just arrived at `new_rel`."""
    if new_rel == kept_rel:
        return
    new, kept = store.path(new_rel), store.path(kept_rel)
    if intact(store, kept_rel, sha1):
        if not keep_new and new.is_file():
            new.unlink()
    elif new.is_file():
        kept.parent.mkdir(parents=True, exist_ok=True)
        if keep_new:
            store.put_file(kept_rel, new, expected_sha1=sha1)
        else:
            os.replace(new, kept)


def local_location(
    registry: Registry,
    store: DataStore,
    rel: str,
    sha1: str,
    public: bool = True,
    keep_new: bool = False,
) -> int:
    """The storage_location id for a file just written at `rel` in the local store.

    With `keep_new`, a duplicate stays where it was written too (a job's own copy of its
    config and script, say).
    """
    existing = recorded(registry, store, sha1, public)
    if existing is not None:
        settle(store, rel, existing["path"], sha1, keep_new)
        return existing["id"]
    loc, _ = registry.get_or_create(
        "storage_location",
        {
            "path": rel,
            "hash": sha1,
            "public": public,
            "storage_root": store_root_id(registry, store),
        },
    )
    if loc["path"] != rel:  # another process recorded the same bytes a moment ago
        settle(store, rel, loc["path"], sha1, keep_new)
    return loc["id"]


def placement(
    registry: Registry,
    store: DataStore,
    rel: str,
    sha1: str,
    public: bool = True,
    known: Mapping[bool, Record] | None = None,
) -> tuple[str, bool]:
    """Where bytes about to be written to `rel` belong, and whether they still need writing.

    For callers that must record first and move files after committing. `known`: what
    `recorded_many` found for this SHA-1, instead of asking again.
    """
    existing = recorded(registry, store, sha1, public) if known is None else known.get(public)
    if existing is None:
        return rel, True
    return existing["path"], not intact(store, existing["path"], sha1)
