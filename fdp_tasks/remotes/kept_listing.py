"""A remote's data products in one namespace, kept between commands and brought up to date
from the newest records alone.

A pull that finds nothing newer, and a push of what the remote holds already, both need the
remote's listing of a namespace: the name and version of every data product in it. Listing
it all costs a page per thousand products however little changed, as a fetch that sent the
whole history would. Listings come newest first, and the fields a listing keeps (`id`,
`name`, `version`, `object`, `namespace`) never change once a data product is made, so the
listing is kept in FDP_HOME, as DVC keeps an index of a remote, and a later command asks
for the newest few records only. When they lead back to the newest kept record, unchanged,
and the listing's `count` is the kept count plus the records before it, the remote holds
exactly those records and the kept ones. Anything else (a record removed or replaced, a
registry that gives no count, a damaged file) lists the namespace again from the start.

The listing is a SQLite file, read a name or a page of names at a time: a pull of a glob
over 100,000 products holds a page of the listing, not all of it. A listing that is not
kept (a registry that gives no count, a command that only looks) is listed into a SQLite
file of its own that goes when it is closed. What this command pushed is noted beside the
kept rows, never among them, so that the kept rows stay a copy of the remote's newest.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any

from fdp_tasks.kept_db import connect
from fdp_tasks.names import glob_matches, like_pattern
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record
from fdp_tasks.store.cache import CachedRegistry, iter_listing
from fdp_tasks.versions import newest_of_each_name

log = logging.getLogger(__name__)

FORMAT = 2  # the SQLite file's user_version
# Records asked for first: a pull after a colleague's few new products gets them in one page.
FIRST_PAGE = 50
# Names read from the listing at a time
PAGE = 1000
ROW = queries.LISTED_FIELDS  # a kept record is a row of these, in this order
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (url TEXT, namespace INTEGER);"
    "CREATE TABLE IF NOT EXISTS rows (id INTEGER PRIMARY KEY, name TEXT NOT NULL, "
    "version TEXT NOT NULL, object INTEGER, namespace INTEGER);"
    "CREATE INDEX IF NOT EXISTS rows_by_name ON rows (name, version);"
)
# what this command pushed: noted beside the kept rows (with the SHA-1 pushed), gone with
# the connection
_NOTED = (
    "CREATE TEMP TABLE noted (name TEXT NOT NULL, version TEXT NOT NULL, id INTEGER, "
    "object INTEGER, namespace INTEGER, sha1 TEXT, PRIMARY KEY (name, version))"
)


def kept_file(home: Path, api_url: str, namespace_id: int) -> Path:
    """Where the listing of one namespace of one remote is kept."""
    key = hashlib.sha1(f"{api_url} {namespace_id}".encode(), usedforsecurity=False).hexdigest()
    return home / "listings" / f"{key}.db"


class ProductListing:
    """A remote's data products in one namespace as `queries.listed` records, by (name,
    version), in a SQLite file: looked up one at a time, walked a page of names at a time.
    Thread-safe; `close` ends it (and removes a listing that was not kept)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db
        self._lock = threading.Lock()
        db.execute(_NOTED)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def get(self, key: tuple[str, str], default: Record | None = None) -> Record | None:
        name, version = key
        with self._lock:
            noted = self._db.execute(
                "SELECT id, name, version, object, namespace, sha1 FROM noted "
                "WHERE name = ? AND version = ?",
                (name, version),
            ).fetchone()
            if noted is not None:
                record = dict(zip(ROW, noted[:5], strict=True))
                if noted[5] is not None:
                    record[queries.LISTED_SHA1] = noted[5]
                return record
            row = self._db.execute(
                "SELECT id, name, version, object, namespace FROM rows "
                "WHERE name = ? AND version = ? ORDER BY id DESC LIMIT 1",
                (name, version),
            ).fetchone()
        return default if row is None else dict(zip(ROW, row, strict=True))

    def __getitem__(self, key: tuple[str, str]) -> Record:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found

    def __contains__(self, key: object) -> bool:
        return isinstance(key, tuple) and len(key) == 2 and self.get(key) is not None

    def note(self, record: Record) -> None:
        """A product this command pushed (a listed record, with the SHA-1 pushed)."""
        values = [record.get(key) for key in ("name", "version", "id", "object", "namespace")]
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO noted VALUES (?, ?, ?, ?, ?, ?)",
                (*values, record.get(queries.LISTED_SHA1)),
            )

    def versions(self, name: str) -> list[str]:
        """Every version of one product name."""
        with self._lock:
            rows = self._db.execute(
                "SELECT version FROM rows WHERE name = ? UNION SELECT version FROM noted "
                "WHERE name = ?",
                (name, name),
            ).fetchall()
        return [version for (version,) in rows]

    def newest(self, pattern: str) -> Iterator[tuple[str, str]]:
        """(name, newest version) of every product name matching `pattern` (a glob, or a
        name), by name, a page of names at a time."""
        like = like_pattern(pattern)
        after = ""  # names are never empty
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT name, version FROM rows WHERE name IN (SELECT DISTINCT name FROM "
                    "rows WHERE name > ? AND name LIKE ? ESCAPE '\\' ORDER BY name LIMIT ?)",
                    (after, like, PAGE),
                ).fetchall()
                names = {name for name, _ in rows}
                last = max(names) if len(names) >= PAGE else None
                rows += self._db.execute(  # what this command pushed, in the same names
                    "SELECT name, version FROM noted WHERE name > ? AND name LIKE ? "
                    "ESCAPE '\\' AND (? IS NULL OR name <= ?)",
                    (after, like, last, last),
                ).fetchall()
            rows.sort(key=lambda row: row[0])
            yield from newest_of_each_name(
                (name, version, (name, version))
                for name, version in rows
                if _matches(pattern, name)
            )
            if last is None:
                return
            after = last


def _matches(pattern: str, name: str) -> bool:
    """A config's pattern, as the reference CLI matches it (SQL's LIKE, which ignores case
    and lets '*' cross '/', only narrows the rows read)."""
    return name == pattern or glob_matches(pattern, name)


def empty_listing() -> ProductListing:
    """The listing of a namespace the remote does not have."""
    return ProductListing(_scratch())


def product_listing(
    registry: Any, namespace_id: int, kept: Path, save: bool = True
) -> ProductListing:
    """The remote's data products in a namespace: from the kept listing and the records
    newer than it where that is the remote's listing, else listed whole (and kept for next
    time, unless `save` is false: a command that only looks). `kept`: where it is kept
    (`kept_file`); only registries that give a listing's count (over HTTP) keep one."""
    inner = registry.inner if isinstance(registry, CachedRegistry) else registry
    filters = {"namespace": namespace_id}
    listing = getattr(inner, "listing", None)
    if listing is None:
        scratch = _scratch()
        _fill(scratch, (queries.listed(r) for r in iter_listing(registry, "data_product", filters)))
        return ProductListing(scratch)
    url = str(getattr(inner, "api_url", ""))
    db = _open_kept(kept, url, namespace_id, save)
    if db is not None:
        head = listing("data_product", filters, first_page=FIRST_PAGE)
        if _brought_up_to_date(db, head.count, head.records, save):
            return ProductListing(db)
        db.close()
        log.debug("the kept listing of namespace %s on %s is out of date", namespace_id, url)
    whole = listing("data_product", filters)
    scratch = _scratch()
    listed = _fill(scratch, (queries.listed(r) for r in whole.records))
    if save and whole.count == listed:  # only a listing the registry vouches for is kept
        _keep(scratch, kept, url, namespace_id)
    return ProductListing(scratch)


def _scratch() -> sqlite3.Connection:
    """A listing of this command alone: SQLite's temporary database, a file that goes when
    it is closed."""
    db = sqlite3.connect("", check_same_thread=False)
    db.executescript(_SCHEMA)
    return db


def _fill(db: sqlite3.Connection, records: Iterable[Record]) -> int:
    """Listed records into a listing, a page at a time; how many."""
    count = 0
    page: list[tuple[Any, ...]] = []
    with db:
        for record in records:
            page.append(tuple(record.get(key) for key in ROW))
            if len(page) >= PAGE:
                count += _insert(db, page)
                page = []
        count += _insert(db, page)
    return count


def _insert(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?, ?, ?)", rows)
    return len(rows)


def _open_kept(path: Path, url: str, namespace_id: int, save: bool) -> sqlite3.Connection | None:
    """The kept listing of this remote's namespace, or None (missing, damaged, another's)."""
    if not path.is_file():
        return None
    try:
        db = connect(path, writable=save, timeout=10)
        (version,) = db.execute("PRAGMA user_version").fetchone()
        meta = db.execute("SELECT url, namespace FROM meta").fetchall()
        if version != FORMAT or meta != [(url, namespace_id)]:
            db.close()
            return None
        return db
    except sqlite3.Error:
        return None


def _brought_up_to_date(
    db: sqlite3.Connection,
    count: int | None,
    records: Generator[Record, None, None],
    save: bool,
) -> bool:
    """Whether the kept listing, with the records newer than its newest (added to it), is
    the remote's whole listing (see the module's docstring)."""
    with contextlib.closing(records):  # a listing given up early asks for no more pages
        if count is None:
            return False
        try:
            (kept_count,) = db.execute("SELECT count(*) FROM rows").fetchone()
            newest = db.execute(
                "SELECT id, name, version, object, namespace FROM rows ORDER BY id DESC LIMIT 1"
            ).fetchone()
        except sqlite3.Error:
            return False
        newest_row = None if newest is None else dict(zip(ROW, newest, strict=True))
        new: list[tuple[Any, ...]] = []
        for record in records:
            row = queries.listed(record)
            if newest_row is not None and row["id"] <= newest_row["id"]:
                if row != newest_row or len(new) + kept_count != count:
                    return False
                break
            new.append(tuple(row[key] for key in ROW))
            if len(new) > count:
                return False
        else:
            if newest_row is not None or len(new) != count:
                return False
    if new:
        if not save:
            return False  # read-only: listed again, into a listing of its own
        try:
            with db:
                _insert(db, new)
        except sqlite3.Error:
            return False
    return True


def _keep(scratch: sqlite3.Connection, path: Path, url: str, namespace_id: int) -> None:
    """A listing the registry vouched for, kept whole or not at all (a copy renamed into
    place, readable by its owner alone); a listing that cannot be kept is only not kept."""
    try:
        with scratch:
            scratch.execute("DELETE FROM meta")
            scratch.execute("INSERT INTO meta VALUES (?, ?)", (url, namespace_id))
            scratch.execute(f"PRAGMA user_version = {FORMAT}")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            os.chmod(name, 0o600)
            copy = sqlite3.connect(name)
            try:
                scratch.backup(copy)
            finally:
                copy.close()
            os.replace(name, path)
            path.with_suffix(".json").unlink(missing_ok=True)  # earlier releases' listing
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    except (OSError, sqlite3.Error) as exc:
        log.debug("could not keep the listing in %s: %s", path, exc)
