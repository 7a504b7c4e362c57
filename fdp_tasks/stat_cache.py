"""SHA-1s of files remembered by what `stat` says of them, so an unchanged file is read once.

An up-to-date check that hashes every output reads every byte of them on each no-op. As
git's index and DVC do, a file's SHA-1 is kept with its size, mtime, ctime, inode and device:
while all five are the same, the bytes are taken to be. Writing to a file changes its mtime
and ctime; setting its mtime back (`touch -r`, `os.utime`) changes its ctime, which no user
can set; a file replaced by another is another inode. So a stat that matches is trusted, and
anything else is hashed again.

One case needs care (git calls it "racily clean"): a write in the same clock tick as the
hash that remembered the file would leave every timestamp as it was. An entry is therefore
remembered only for a file whose mtime and ctime are a safe margin older than the moment it
was hashed; a file younger than that is hashed again next time, until it is old enough.

The cache is a SQLite file (as DVC keeps its state), looked up a file at a time, so that a
check of 100,000 outputs holds none of their entries: new ones are written in batches, and
entries of files gone or changed are dropped once the cache holds far more than one check
looks up. A cache that is missing, unreadable or locked by another writer is an empty one,
or one not written this time: only a slower next check.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

from fdp_tasks.files import sha1_file
from fdp_tasks.kept_db import open_kept

# How much older than the moment it was hashed a file's timestamps must be to be remembered:
# far more than any file system's timestamp granularity (at most 2 s, FAT's).
RACY_MARGIN_NS = 3_000_000_000
FORMAT = 2  # the SQLite file's user_version
# Entries written at a time, and checked at a time when the cache is pruned
BATCH = 1000
# Entries added since the cache was last pruned, beyond as many as it then held, before
# the entries of files gone or changed are dropped: an output's new version is another
# file, so a cache grows by what is replaced, and is pruned as it doubles
PRUNE_SLACK = 1000

Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def signature(found: os.stat_result) -> Signature:
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev)


class StatCache:
    """File -> SHA-1, trusted while the file's stat is unchanged (see the module docstring).

    Thread-safe. `path`: where the cache is kept (None: in memory only); `writable`: whether
    `save` (and a full batch) may write it (commands that only look leave it as it is).
    """

    def __init__(self, path: Path | None, writable: bool = True, margin_ns: int = RACY_MARGIN_NS):
        self.path = path
        self.margin_ns = margin_ns
        self.writable = writable and path is not None
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._opened = path is None  # opened on first need; nothing to open in memory
        self._new: dict[str, tuple[Signature, str]] = {}  # hashed, not yet written
        self._grew = False  # entries written since the cache was last checked for pruning
        # files this process wrote, with the SHA-1 of the bytes it wrote: trusted by this
        # process while their stat is unchanged, never kept (a write in the same clock
        # tick could follow, as for any file hashed too soon after it changed). In SQLite's
        # temporary database, which goes with the process: a pull of 100,000 files holds
        # none of them
        self._written: sqlite3.Connection | None = None

    def sha1(self, path: str | Path, found: os.stat_result | None = None) -> str | None:
        """The file's SHA-1, from the cache when its stat is unchanged; None when it is not
        a regular file (missing, a folder, unreadable). `found`: what `os.stat` said of it
        just now, when the caller has asked already."""
        key = os.fspath(path)
        try:
            before = os.stat(key) if found is None else found
        except OSError:
            return None
        if not _is_regular(before):
            return None
        sig = signature(before)
        with self._lock:
            known = self._new.get(key) or self._kept(key)
            if known is not None and known[0] == sig:
                return known[1]
            written = self._written_entry(key)
            if written is not None and written[0] == sig:
                return written[1]
        hashed_at = time.time_ns()
        try:
            digest = sha1_file(key)
            after = os.stat(key)
        except OSError:
            return None
        if signature(after) == sig and _settled(after, hashed_at - self.margin_ns):
            with self._lock:
                # kept for this process: all of them in memory only, or to be written a
                # batch at a time; a cache that is only read keeps a batch
                if self.writable or self.path is None or len(self._new) < BATCH:
                    self._new[key] = (sig, digest)
                if len(self._new) >= BATCH and self.writable:
                    self._write()  # a batch at a time: memory holds a batch, not every file
        return digest

    def wrote(self, path: str | Path, digest: str) -> None:
        """This process has just written the file (renamed it into place) with bytes of this
        SHA-1, hashed as they were written: a check later in the process need not read it
        again. Nothing is remembered when the file cannot be looked at."""
        key = os.fspath(path)
        try:
            found = os.stat(key)
        except OSError:
            return
        if _is_regular(found):
            with self._lock:
                if self._written is None:
                    self._written = sqlite3.connect("", check_same_thread=False)
                    self._written.execute(_TABLE.replace("files", "written"))
                self._written.execute(
                    "INSERT OR REPLACE INTO written VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, *signature(found), digest),
                )

    def settled(self, path: str | Path) -> None:
        """A file `wrote` told of is recorded: no check of this process reads it again, so
        it is no longer held (a pull of many pages holds a page of them)."""
        with self._lock:
            if self._written is not None:
                self._written.execute("DELETE FROM written WHERE path = ?", (os.fspath(path),))

    def save(self) -> None:
        """Keep what this process hashed for the next one, and drop the entries of files
        gone or changed once the cache has doubled since it was last pruned; a cache that
        cannot be written is only a slower next check."""
        with self._lock:
            if not self.writable:
                return
            self._write()
            db = self._connection() if self._grew else None
            self._grew = False
            if db is None:
                return  # nothing new: no larger than when last checked
            try:
                (rows,) = db.execute("SELECT count(*) FROM files").fetchone()
                (pruned,) = db.execute("SELECT max(rows) FROM pruned").fetchone()
                if rows > 2 * (pruned or 0) + PRUNE_SLACK:
                    self._prune(db)
                    with db:
                        db.execute("DELETE FROM pruned")
                        db.execute("INSERT INTO pruned SELECT count(*) FROM files")
            except sqlite3.Error:
                return

    # ------------------------------------------------------------------ the file
    def _connection(self) -> sqlite3.Connection | None:
        """The cache's database, opened (and made, when writable) on first need; None when
        there is none to read or it cannot be opened."""
        if self._opened:
            return self._db
        self._opened = True
        if self.path is None:
            return None
        # the JSON file of earlier releases, which this one replaces
        earlier = self.path.with_suffix(".json")
        self._db = open_kept(self.path, _TABLES, FORMAT, self.writable, earlier)
        return self._db

    def _kept(self, key: str) -> tuple[Signature, str] | None:
        return _entry(self._connection(), _KEPT, key)

    def _written_entry(self, key: str) -> tuple[Signature, str] | None:
        return _entry(self._written, _WRITTEN, key)

    def _write(self) -> None:
        """The entries hashed since the last write, in one transaction; dropped either way:
        the next process hashes again what could not be written."""
        new, self._new = self._new, {}
        db = self._connection() if new else None
        if db is None:
            return
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(key, *sig, digest) for key, (sig, digest) in new.items()],
                )
            self._grew = True
        except sqlite3.Error:
            return

    def _prune(self, db: sqlite3.Connection) -> None:
        """Drop the entries of files that are gone or changed, a batch at a time."""
        after = ""
        while True:
            rows = db.execute(
                "SELECT path, size, mtime, ctime, inode, device FROM files WHERE path > ? "
                "ORDER BY path LIMIT ?",
                (after, BATCH),
            ).fetchall()
            stale = []
            for key, *sig in rows:
                try:
                    if list(signature(os.stat(key))) == sig:
                        continue
                except OSError:
                    pass
                stale.append((key,))
            with db:
                db.executemany("DELETE FROM files WHERE path = ?", stale)
            if len(rows) < BATCH:
                return
            after = rows[-1][0]


_KEPT = "SELECT size, mtime, ctime, inode, device, sha1 FROM files WHERE path = ?"
_WRITTEN = "SELECT size, mtime, ctime, inode, device, sha1 FROM written WHERE path = ?"


def _entry(db: sqlite3.Connection | None, query: str, key: str) -> tuple[Signature, str] | None:
    if db is None:
        return None
    try:
        row = db.execute(query, (key,)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else ((row[0], row[1], row[2], row[3], row[4]), row[5])


_TABLE = (
    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, "
    "ctime INTEGER, inode INTEGER, device INTEGER, sha1 TEXT) WITHOUT ROWID"
)
_TABLES = f"{_TABLE}; CREATE TABLE IF NOT EXISTS pruned (rows INTEGER)"


def _is_regular(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)


def _settled(found: os.stat_result, before: int) -> bool:
    """Whether no later write could leave the file's timestamps as they are: both are
    older than `before`."""
    return max(found.st_mtime_ns, found.st_ctime_ns) < before
