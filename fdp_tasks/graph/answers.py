"""The local registry's answers to the up-to-date checks' look-ups, kept while it is unchanged.

A no-op asks the local registry the same few questions every time (is this register item
recorded, where is each read, which files did the last run write), and opening a SQL
engine to ask them costs more than the answers. `Answers` stands in front of the store:
it answers the read-only look-ups the checks make (`find`, `get`, `get_many`,
`run_outputs`) from a SQLite file in the config's state while the registry's database
files are exactly as they were when those answers were read, and opens the store (and
the SQL engine) only for anything else, or once anything changed. Answers are looked up
one at a time, so a command holds those it asks for, not every one kept (a pull of
100,000 products keeps as many).

"Unchanged" is the stat of the SQLite database and of its write-ahead log (size, mtime,
ctime, inode), as the stat cache trusts a data file: any write to the registry changes
one of them. A write in the same clock tick as the answers were read could leave them
as they were (git's "racily clean" case), so answers are kept only when both files are
older than a safe margin at the moment they were read; and only from a registry holding
no provisional records (a running job's), so that a reader that skips those (`fdp
status`) and one that does not get the same answers. A registry on a database server
has no such files: its look-ups always go to the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdp_tasks.kept_db import open_kept
from fdp_tasks.scalars import parse_datetime
from fdp_tasks.stat_cache import RACY_MARGIN_NS, signature

if TYPE_CHECKING:
    from fdp_tasks.store.sql import Store

FORMAT = 3  # the SQLite file's user_version; each answer kept as its JSON text
# Rows of one streamed answer (`newest_files`) kept at most: an answer is read whole, so a
# longer one is read again from the store, a page at a time
KEPT_ROWS = 10_000
# the registry and its files' stat the answers were read from, and the answers by question
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS read_from (registry TEXT NOT NULL, fingerprint TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS answers (question TEXT PRIMARY KEY, answer TEXT NOT NULL) "
    "WITHOUT ROWID"
)
_DATETIME = "$datetime"
_UNKNOWN = object()  # no answer kept for a look-up (None is an answer)
# doit's worker threads may all need the store at once: it is opened by one at a time, as
# it was when every command opened it before running any task
_OPENING = threading.Lock()
Fingerprint = list[list[int] | None]


def database_files(url: str) -> list[Path] | None:
    """The files a SQLite registry keeps its state in (the database and its write-ahead
    log), or None for a database that is not a file."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url == prefix:
        return None
    database = Path(url[len(prefix) :])
    return [database, Path(f"{database}-wal")]


def fingerprint(files: list[Path]) -> Fingerprint | None:
    """What `stat` says of the registry's files; an empty write-ahead log counts as none
    (opening the database makes one, and closing it removes it). None when the database
    is missing or unreadable."""
    out: Fingerprint = []
    for index, path in enumerate(files):
        try:
            found = os.stat(path)
        except FileNotFoundError:
            if index == 0:
                return None
            out.append(None)
            continue
        except OSError:
            return None
        out.append(None if index and found.st_size == 0 else list(signature(found)))
    return out


def _settled(printed: Fingerprint, before_ns: int) -> bool:
    """No later write could leave these files' timestamps as they are."""
    return all(sig is None or max(sig[1], sig[2]) < before_ns for sig in printed)


def _datetime_text(value: Any) -> Any:
    """For `json.dumps`: a datetime as its ISO text, marked so that `_decode` restores it;
    any other value JSON cannot hold is refused, as without this hook."""
    if isinstance(value, datetime):
        return {_DATETIME: value.isoformat()}
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _encode(value: Any, sort_keys: bool = False) -> str:
    return json.dumps(value, default=_datetime_text, sort_keys=sort_keys, separators=(",", ":"))


def _datetimes(value: dict[str, Any]) -> Any:
    if len(value) == 1 and _DATETIME in value:
        return parse_datetime(value[_DATETIME])
    return value


def _decode(text: str) -> Any:
    """An answer from its kept text. Answers are held as text, not as the records they
    decode to: several times smaller, so a command that reads thousands of them (a push)
    holds a few hundred bytes for each rather than a few kilobytes."""
    return json.loads(text, object_hook=_datetimes)


def store_behind(registry: Any) -> Any:
    """The store itself behind a plan's local registry: what an action reads records in
    bulk from (a push's closures, a pull's pages). Those look-ups are not a no-op's, so
    encoding and keeping them would only hold memory; a write made through it changes the
    database files' stat, which the answers then see."""
    return registry.store if isinstance(registry, Answers) else registry


class Answers:
    """The local registry for a plan: the up-to-date checks' look-ups answered from the
    answers file while the registry is unchanged, everything else by the store, which
    `open_store` opens on first need. `writable`: whether new answers may be kept (commands
    that only look leave the file as it is)."""

    def __init__(
        self, url: str, open_store: Callable[[], Store], path: Path, writable: bool = True
    ):
        self.url = url
        self.path = path
        self.writable = writable
        self._open_store = open_store
        self._store: Store | None = None
        self._lock = threading.RLock()
        self._files = database_files(url)
        self._print = fingerprint(self._files) if self._files else None
        self._read_at = time.time_ns()
        self._db: sqlite3.Connection | None = None
        self._opened = self._print is None  # the file is opened on the first look-up
        self._current: bool | None = None  # whether it holds answers from the registry now
        self._new: dict[str, str] = {}  # answers the store gave this command, not yet kept
        self._passing = self._print is None  # every look-up goes to the store

    # --------------------------------------------------------------- the store
    @property
    def store(self) -> Store:
        """The store itself, opened now if it was not."""
        with self._lock:
            if self._store is None:
                with _OPENING:
                    self._store = self._open_store()
            return self._store

    def __getattr__(self, name: str) -> Any:
        # anything but the look-ups below (a write, a transaction, ...) is the store's, and
        # what it changes is no longer what the answers say
        if name.startswith("__"):
            raise AttributeError(name)
        self._pass_through()
        return getattr(self.store, name)

    def _pass_through(self) -> None:
        with self._lock:
            self._passing = True
            self._new.clear()

    # ---------------------------------------------------------------- look-ups
    def find(
        self,
        type_name: str,
        filters: dict[str, Any] | None = None,
        limit: int | None = None,
        before_id: int | None = None,
        newest_first: bool = True,
        full: bool = False,
    ) -> list[Any]:
        key = ["find", type_name, filters, limit, before_id, newest_first, full]
        return self._answer(
            key, lambda: self.store.find(type_name, filters, limit, before_id, newest_first, full)
        )

    def find_one(self, type_name: str, filters: dict[str, Any]) -> Any:
        rows = self.find(type_name, filters, limit=1)
        return rows[0] if rows else None

    def get(self, type_name: str, record_id: int, full: bool = False) -> Any:
        return self._answer(
            ["get", type_name, record_id, full], lambda: self.store.get(type_name, record_id, full)
        )

    def get_many(self, type_name: str, ids: list[int]) -> dict[int, Any]:
        wanted = sorted(set(ids))
        found = self._answer(
            ["get_many", type_name, wanted],
            lambda: [[i, r] for i, r in self.store.get_many(type_name, wanted).items()],
        )
        return {i: r for i, r in found}

    def output_files(self, run_uuids: list[str]) -> Any:
        found = self.run_outputs(run_uuids)
        return None if found is None else [row[4:] for row in found]

    def run_outputs(self, run_uuids: list[str]) -> Any:
        found = self._answer(["run_outputs", run_uuids], lambda: self.store.run_outputs(run_uuids))
        return None if found is None else [tuple(row) for row in found]

    def product_files(self, namespace: str, names: list[str]) -> Any:
        wanted = sorted(set(names))
        found = self._answer(
            ["product_files", namespace, wanted],
            lambda: self.store.product_files(namespace, wanted),
        )
        return [tuple(row) for row in found]

    def newest_files(self, namespace: str, pattern: str) -> Iterator[tuple[Any, ...]]:
        """The store's `newest_files`, kept as an answer only while it is short: a read
        of thousands of products is streamed from the store, a page at a time, rather
        than held (and kept, and read back whole) as one answer."""
        text = _encode(["newest_files", namespace, pattern], sort_keys=True)
        known = self._known_answer(text)
        if known is not _UNKNOWN:
            yield from (tuple(row) for row in known)
            return
        kept: list[tuple[Any, ...]] | None = [] if self.writable else None
        for row in self.store.newest_files(namespace, pattern):
            if kept is not None:
                kept.append(row)
                if len(kept) > KEPT_ROWS:
                    kept = None
            yield row
        if kept is not None:
            self._keep(text, kept)

    def _answer(self, key: list[Any], ask: Callable[[], Any]) -> Any:
        """The answer kept for `key` while the registry is unchanged, else the store's (kept
        for next time when the registry did not change while it was read)."""
        try:
            text = _encode(key, sort_keys=True)
        except (TypeError, ValueError):
            return ask()
        known = self._known_answer(text)
        if known is not _UNKNOWN:
            return known
        answer = ask()  # may raise, as the store does (NotFound, say): nothing is kept
        if self.writable:  # else kept by no one: not worth encoding
            self._keep(text, answer)
        return answer

    def _known_answer(self, text: str) -> Any:
        """The answer kept for a key's text while the registry is unchanged (which may be
        None), else `_UNKNOWN`: none is kept, or it is damaged, and the store is asked."""
        with self._lock:
            if self._passing or not self._unchanged():
                self._pass_through()
                return _UNKNOWN
            kept = self._new.get(text)
            if kept is None:
                kept = self._kept(text)
            if kept is not None:
                with contextlib.suppress(ValueError):
                    return _decode(kept)
        return _UNKNOWN

    def _keep(self, text: str, answer: Any) -> None:
        """Keep an answer the store just gave, if the registry did not change meanwhile."""
        with self._lock:
            if not self._passing and self._unchanged():
                self._new[text] = _encode(answer)
            else:
                self._pass_through()

    def _unchanged(self) -> bool:
        return self._files is not None and fingerprint(self._files) == self._print

    # ------------------------------------------------------------------ the file
    def _connection(self) -> sqlite3.Connection | None:
        if not self._opened:
            self._opened = True
            earlier = self.path.with_suffix(".json")  # earlier releases' answers
            self._db = open_kept(self.path, _SCHEMA, FORMAT, self.writable, earlier)
        return self._db

    def _read_from(self, db: sqlite3.Connection) -> bool:
        """Whether the kept answers were read from this registry as it is now (asked once:
        another command keeps answers only from the registry as it is, which this one
        checks before each look-up)."""
        if self._current is None:
            row = db.execute("SELECT registry, fingerprint FROM read_from").fetchone()
            self._current = row == (self.url, json.dumps(self._print))
        return self._current

    def _kept(self, text: str) -> str | None:
        db = self._connection()
        if db is None:
            return None
        try:
            if not self._read_from(db):
                return None
            row = db.execute("SELECT answer FROM answers WHERE question = ?", (text,)).fetchone()
        except sqlite3.Error:
            return None
        return None if row is None else row[0]

    def save(self) -> None:
        """Keep the new answers for the next command, if the registry was settled and held
        no provisional records when they were read (answers kept from another state of
        the registry are dropped first); a file that cannot be written is only a slower
        next check."""
        with self._lock:
            if not self.writable or self._passing or not self._new or self._print is None:
                return
            if not _settled(self._print, self._read_at - RACY_MARGIN_NS) or not self._unchanged():
                return
            if self._store is not None:
                from fdp_tasks.store import provisional

                if provisional.pending(self._store):
                    return
            new, self._new = self._new, {}
            db = self._connection()
            if db is None:
                return
            try:
                with db:
                    self._current = None  # asked again, in the transaction
                    if not self._read_from(db):
                        db.execute("DELETE FROM answers")
                        db.execute("DELETE FROM read_from")
                        db.execute(
                            "INSERT INTO read_from VALUES (?, ?)",
                            (self.url, json.dumps(self._print)),
                        )
                    db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?)", new.items())
            except sqlite3.Error:
                return
            self._current = True
