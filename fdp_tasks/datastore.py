"""The local data store: files under one root, written atomically and hashed while streaming.

Every path that comes from a config or a registry goes through `DataStore.path`, which
refuses anything that would resolve outside the root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from stat import S_ISLNK
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from fdp_tasks.errors import UnsafePathError
from fdp_tasks.files import read_chunks, sha1_file, write_atomically, write_resumably


def product_path(namespace: str, name: str, version: str, extension: str) -> str:
    """Where a registered or pulled data product lives: <namespace>/<name>/<version>.<ext>."""
    ext = f".{extension}" if extension else ""
    return f"{namespace}/{name}/{version}{ext}"


def safe_relative(rel: str, within: str = "the data store") -> str:
    """A normalised relative POSIX path, or UnsafePathError if it could leave its root."""
    text = str(rel).replace("\\", "/")
    parts = text.split("/")
    if text[1:2] != ":" and "\x00" not in text and all(p and p not in (".", "..") for p in parts):
        return text  # already normal: the common case, checked without pathlib
    if not text or "\x00" in text:
        raise UnsafePathError(f"empty or invalid path {rel!r}")
    pure = PurePosixPath(text)
    if pure.is_absolute() or (len(text) > 1 and text[1] == ":"):
        raise UnsafePathError(f"path {rel!r} must be relative to {within}")
    parts = [p for p in pure.parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise UnsafePathError(f"path {rel!r} would leave {within}")
    return "/".join(parts)


def local_root(root: str) -> Path | None:
    """The directory of a file:// or plain-path root; None for a network root."""
    if root.startswith("file://"):
        return Path(unquote(urlparse(root).path))
    if "://" in root:
        return None
    return Path(root).expanduser()


# Folders whose being inside the store is remembered at once: FDP gives every data product a
# folder of its own, so a check of 100,000 files would otherwise hold 100,000 of them
FOLDERS_KEPT = 4096


class DataStore:
    """A directory of data files addressed by relative POSIX paths."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        self._root_text = str(self.root)
        self._inside: dict[str, bool] = {}
        self._roots: dict[str, bool] = {}

    def __repr__(self) -> str:
        return f"DataStore({str(self.root)!r})"

    @property
    def uri(self) -> str:
        """The storage_root this store is registered under: a file:// URL ending in '/'."""
        return self.root.as_uri().rstrip("/") + "/"

    def holds(self, root: str) -> bool:
        """Whether a storage_root URI (file:// or a plain path) is this store's root
        (worked out once per root: every file of a check asks it)."""
        if root not in self._roots:
            base = local_root(root)
            self._roots[root] = base is not None and base.expanduser().resolve() == self.root
        return self._roots[root]

    def path(self, rel: str) -> Path:
        """The absolute path of `rel`, which must stay inside the store, symlinks included.

        Folders already found to lie inside are remembered, so checking a thousand files of
        one folder costs one look at each file rather than a walk up every path.
        """
        return Path(self.where(rel))

    def where(self, rel: str) -> str:
        """`path` as plain text: what a pull of thousands of files names each by, without
        a pathlib object (and its interned parts) for each."""
        target = self._target(rel)
        if os.path.islink(target) and not self._contains(Path(os.path.realpath(target))):
            raise UnsafePathError(f"path {rel!r} would leave the data store {self.root}")
        return target

    def stat(self, rel: str) -> tuple[str, os.stat_result | None]:
        """The absolute path of `rel`, checked as `path` checks it, with what `os.stat` says
        of it (None: missing or unreadable), from one `lstat` for a file that is no symlink:
        an up-to-date check asks this for every output."""
        target = self._target(rel)
        try:
            found = os.lstat(target)
        except OSError:
            return target, None
        if S_ISLNK(found.st_mode):
            if not self._contains(Path(os.path.realpath(target))):
                raise UnsafePathError(f"path {rel!r} would leave the data store {self.root}")
            try:
                found = os.stat(target)
            except OSError:
                return target, None
        return target, found

    def _target(self, rel: str) -> str:
        """The absolute path of `rel` (plain strings, not pathlib), in a folder inside the
        store; whether the file itself is a symlink leading out is the caller's to check."""
        target = os.path.join(self._root_text, safe_relative(rel))
        parent = os.path.dirname(target)
        if parent not in self._inside:
            if len(self._inside) >= FOLDERS_KEPT:
                self._inside.clear()  # a product's folder each: kept for a batch of them
            self._inside[parent] = self._folder_inside(parent)
        if not self._inside[parent]:
            raise UnsafePathError(f"path {rel!r} would leave the data store {self.root}")
        return target

    def _folder_inside(self, folder: str) -> bool:
        """Whether a folder (a path under the root, as written) lies inside the store: one
        that is no symlink, in a folder inside, is inside too. Each folder is looked at once
        (one lstat), not resolved along its whole path."""
        if folder == self._root_text:
            return True
        above = os.path.dirname(folder)
        if above not in self._inside:
            self._inside[above] = self._folder_inside(above)
        if self._inside[above] and not os.path.islink(folder):
            return True
        return self._contains(Path(os.path.realpath(folder)))

    def _contains(self, real: Path) -> bool:
        return real == self.root or self.root in real.parents

    def relative(self, path: str | Path) -> str:
        """The store-relative path of an absolute path inside the store."""
        resolved = Path(path).resolve()
        try:
            return resolved.relative_to(self.root).as_posix()
        except ValueError:
            raise UnsafePathError(f"{path} is not inside the data store {self.root}") from None

    def exists(self, rel: str) -> bool:
        return self.path(rel).is_file()

    def hash(self, rel: str) -> str:
        return sha1_file(self.path(rel))

    def put_stream(
        self,
        rel: str,
        chunks: Iterable[bytes],
        expected_sha1: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        """Write a file from chunks; returns (sha1, size). `progress` is called with the
        bytes written so far after each chunk."""
        return write_atomically(self.path(rel), chunks, expected_sha1, progress)

    def put_resumable(
        self,
        rel: str,
        fetch: Callable[[int], Iterable[bytes]],
        expected_sha1: str,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, int]:
        """Write a file from `fetch(offset)`, the bytes from `offset` on; a download killed
        before the end leaves a part file that the next call continues from
        (`files.write_resumably`). Returns (sha1, size)."""
        return write_resumably(self.path(rel), fetch, expected_sha1, progress)

    def put_file(
        self, rel: str, source: str | Path, expected_sha1: str | None = None
    ) -> tuple[str, int]:
        """Copy a file into the store, hashing as it goes."""
        with open(source, "rb") as fh:
            return self.put_stream(rel, read_chunks(fh), expected_sha1)

    def open(self, rel: str) -> BinaryIO:
        return open(self.path(rel), "rb")
