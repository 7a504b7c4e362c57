"""A SQLite file a command keeps for the next one (the stat cache, the registry's kept
answers): only ever a shortcut, so one that is missing, damaged or of another format is
begun anew by a command that may write it, and is no file at all to one that only reads.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

TIMEOUT = 5.0  # seconds to wait for another process's write


def open_kept(
    path: Path, schema: str, fmt: int, writable: bool, earlier: Path | None = None
) -> sqlite3.Connection | None:
    """The kept file at `path` with the tables of `schema` (CREATE ... IF NOT EXISTS
    statements) in format `fmt` (its user_version), usable from any thread; None when
    there is none to read or it cannot be opened. Opened writable, it is made when missing
    and the file of an earlier release it replaces (`earlier`) is removed."""
    try:
        if writable:
            path.parent.mkdir(parents=True, exist_ok=True)
            if earlier is not None:
                earlier.unlink(missing_ok=True)
            db = connect(path, writable=True)
            db.executescript(schema)
        elif path.is_file():
            db = connect(path, writable=False)
        else:
            return None
        (version,) = db.execute("PRAGMA user_version").fetchone()
        if version != fmt:
            if not writable:
                db.close()
                return None
            _begun_anew(db, schema, fmt)  # another format's (or a new file)
        return db
    except sqlite3.Error:
        if not writable:
            return None
    try:  # damaged, or not SQLite: made anew where this process may write it
        path.unlink(missing_ok=True)
        db = connect(path, writable=True)
        _begun_anew(db, schema, fmt)
        return db
    except (OSError, sqlite3.Error):
        return None


def connect(path: Path, writable: bool, timeout: float = TIMEOUT) -> sqlite3.Connection:
    """A connection to a kept file, usable from any thread; read-only unless `writable`
    (so a command that only looks can never change it, nor make it)."""
    if writable:
        return sqlite3.connect(path, timeout=timeout, check_same_thread=False)
    uri = f"{path.resolve().as_uri()}?mode=ro"
    return sqlite3.connect(uri, uri=True, timeout=timeout, check_same_thread=False)


def _begun_anew(db: sqlite3.Connection, schema: str, fmt: int) -> None:
    """Every table dropped, the schema's made, in format `fmt`: one transaction."""
    with contextlib.closing(db.cursor()) as cursor:
        tables = [
            name
            for (name,) in cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
    db.execute("BEGIN IMMEDIATE")
    try:
        for name in tables:
            db.execute(f'DROP TABLE "{name}"')
        for statement in schema.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(f"PRAGMA user_version = {int(fmt)}")
    except BaseException:
        db.rollback()
        raise
    db.commit()
