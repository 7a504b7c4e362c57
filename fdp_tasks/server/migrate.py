"""`fdp registry migrate`: a group's registry moved to another database (SQLite to
PostgreSQL, typically), with its files.

Records keep their ids and uuids, so every URL handed out before stays right once the new
database is served under the same address. The files go first, each streamed, checked
against its SHA-1 and put in place atomically (a file already there is kept); then every
record in one transaction (`store.copy`). The target must be empty: a failure leaves no
records there, and running the command again finishes the job.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fdp_tasks.errors import FdpError
from fdp_tasks.storage import Storage, storage_for
from fdp_tasks.store.copy import CopyReport, check_empty, copy_records, display_url
from fdp_tasks.store.sql import Store, database_url

# A blob's key in the server's storage: <sha1[:2]>/<sha1> (server/blobs.py); uploads still
# being hashed (incoming/...) are not blobs yet and stay behind.
BLOB_KEY = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{38})$")


class MigrationFailed(FdpError):
    """The registry could not be moved; the message says why, in one line."""


@dataclass
class Migrated:
    """What moved: rows per table, and files (those already in the target counted apart)."""

    source: str
    target: str
    report: CopyReport
    files_copied: int = 0
    files_present: int = 0
    bytes_copied: int = 0

    def summary(self) -> str:
        files = f"{self.files_copied} file(s), {self.bytes_copied} bytes"
        if self.files_present:
            files += f" ({self.files_present} already there)"
        tables = sum(1 for n in self.report.rows.values() if n)
        return (
            f"copied {self.report.records} records and their links ({tables} tables) and "
            f"{files} from {self.source} to {self.target}"
        )


def migrate_registry(
    source: str,
    target: str,
    blobs_from: str | Path | None = None,
    blobs_to: str | Path | None = None,
) -> Migrated:
    """Copy the registry at `source` (database URL or SQLite file) into the empty database
    at `target`, and the files of `blobs_from` into `blobs_to` (folders or s3:// URLs)."""
    if (blobs_from is None) != (blobs_to is None):
        raise MigrationFailed("--blobs-from and --blobs-to go together: give both or neither")
    source_url, target_url = database_url(source), database_url(target)
    if source_url == target_url:
        raise MigrationFailed("--from and --to name the same database")
    sqlite_file = source_url.removeprefix("sqlite:///")
    if source_url.startswith("sqlite:///") and not Path(sqlite_file).is_file():
        raise MigrationFailed(f"--from: no registry database at {sqlite_file}")
    if blobs_from is not None and "://" not in str(blobs_from) and not Path(blobs_from).is_dir():
        raise MigrationFailed(f"--blobs-from: no folder {blobs_from}")
    source_store = Store(source_url)
    target_store = Store(target_url)
    try:
        check_empty(target_store)
        done = Migrated(display_url(source_url), display_url(target_url), CopyReport())
        if blobs_from is not None and blobs_to is not None:
            with storage_for(str(blobs_from), create=False) as src, storage_for(
                str(blobs_to)
            ) as dst:
                _copy_blobs(src, dst, done)
        done.report = copy_records(source_store, target_store)
        return done
    finally:
        source_store.close()
        target_store.close()


def _copy_blobs(source: Storage, target: Storage, done: Migrated) -> None:
    for key in source.list():
        match = BLOB_KEY.match(key)
        if match is None:
            continue
        if target.exists(key):
            done.files_present += 1
            continue
        stored = target.put(io.BufferedReader(_Reader(source.open(key))), key, sha1=match[2])
        done.files_copied += 1
        done.bytes_copied += stored.size


class _Reader(io.RawIOBase):
    """A stream over an iterator of chunks, for storages that read what they store."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size
