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

The cache is a JSON file, written whole by an atomic rename, holding only the files looked up
by the process that wrote it: it never grows past what one check needs. A cache that is
missing or unreadable is an empty one.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

from fdp_tasks.files import sha1_file, write_atomically

# How much older than the moment it was hashed a file's timestamps must be to be remembered:
# far more than any file system's timestamp granularity (at most 2 s, FAT's).
RACY_MARGIN_NS = 3_000_000_000
FORMAT = 1

Signature = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, inode, device


def signature(found: os.stat_result) -> Signature:
    return (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev)


class StatCache:
    """File -> SHA-1, trusted while the file's stat is unchanged (see the module docstring).

    Thread-safe. `path`: where the cache is kept (None: in memory only); `writable`: whether
    `save` may write it (commands that only look leave it as it is).
    """

    def __init__(self, path: Path | None, writable: bool = True, margin_ns: int = RACY_MARGIN_NS):
        self.path = path
        self.margin_ns = margin_ns
        self.writable = writable and path is not None
        self._lock = threading.Lock()
        self._known: dict[str, tuple[Signature, str]] = {}
        self._used: dict[str, tuple[Signature, str]] = {}
        # files this process wrote, with the SHA-1 of the bytes it wrote: trusted by this
        # process while their stat is unchanged, never kept (a write in the same clock
        # tick could follow, as for any file hashed too soon after it changed)
        self._written: dict[str, tuple[Signature, str]] = {}
        self._changed = False
        if path is not None:
            self._known = _read(path)

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
            known = self._known.get(key)
            if known is not None and known[0] == sig:
                self._used[key] = known
                return known[1]
            written = self._written.get(key)
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
                self._used[key] = (sig, digest)
                self._known[key] = (sig, digest)
                self._changed = True
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
                self._written[key] = (signature(found), digest)

    def save(self) -> None:
        """Keep what this process looked up (and nothing else) for the next one; a cache
        that cannot be written is only a slower next check."""
        with self._lock:
            if not self.writable or self.path is None:
                return
            if not self._changed and set(self._used) == set(self._known):
                return
            entries = {key: [*sig, digest] for key, (sig, digest) in self._used.items()}
            self._changed = False
        body = json.dumps({"format": FORMAT, "files": entries}, separators=(",", ":"))
        try:
            write_atomically(self.path, [body.encode("utf-8")])
        except OSError:
            return


def _is_regular(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)


def _settled(found: os.stat_result, before: int) -> bool:
    """Whether no later write could leave the file's timestamps as they are: both are
    older than `before`."""
    return max(found.st_mtime_ns, found.st_ctime_ns) < before


def _read(path: Path) -> dict[str, tuple[Signature, str]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    out: dict[str, tuple[Signature, str]] = {}
    files = document.get("files")
    for key, entry in files.items() if isinstance(files, dict) else []:
        if (
            isinstance(entry, list)
            and len(entry) == 6
            and all(isinstance(v, int) for v in entry[:5])
            and isinstance(entry[5], str)
        ):
            out[key] = ((entry[0], entry[1], entry[2], entry[3], entry[4]), entry[5])
    return out
