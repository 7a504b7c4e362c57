"""`fdp gc` and `doit clean`: what nothing references in the data store, listed, then deleted.

Garbage is

- a job folder (`jobs/<time>/`) none of whose files a storage location names: a run that
  failed or was killed, or whose code run was deleted (a finished run's folder holds its
  recorded config and script, so it stays);
- a temporary output (`dat-<hex>.<ext>`, what a script writes before its session
  finalises) that no location names: a run killed before or during its finalise;
- a partial file (`*.part`): a transfer cut short;
- any other file of the store that no location names.

Nothing younger than the retention period (`gc_retention_days` in `.fdp/settings.yaml`,
default 7, or `--older-than`) is ever deleted, and deleting holds the project lock, which
running jobs hold shared, so it never runs beside a job. Just before each deletion the item
is looked at again. A registry that names no file of the data store at all (a lost or
another registry) gets no file of the store deleted as unnamed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fdp_tasks.datastore import DataStore
from fdp_tasks.errors import FdpError
from fdp_tasks.locks import project_lock
from fdp_tasks.names import glob_matches
from fdp_tasks.progress import human_bytes
from fdp_tasks.project import Project
from fdp_tasks.store.sql import Store
from fdp_tasks.upkeep.verify import CORRUPT, JOBS_DIR, Inventory, store_folders

DAY = 86400.0
TEMPORARY = re.compile(r"^dat-[0-9a-f]{16}(\.[^/]*)?$")  # fdp_tasks.api's unfinished outputs
JOB_FOLDER, TEMP_OUTPUT, PARTIAL, UNNAMED = (
    "job folder",
    "temporary output",
    "partial file",
    "unnamed file",
)
Say = Callable[[str], None]


@dataclass
class Garbage:
    kind: str
    rel: str  # store-relative; a job folder ends in "/"
    size: int
    modified: float  # newest modification time (a folder: of anything in it)

    def age_days(self, now: float) -> float:
        return max(0.0, (now - self.modified) / DAY)


@dataclass
class Scope:
    """What one config's `doit clean` looks at: its output folders (namespace, name
    pattern) and the job folders its runs log names. None: the whole store."""

    outputs: list[tuple[str, str]]
    jobs: set[str]

    def holds_file(self, rel: str) -> bool:
        parts = rel.split("/")
        if len(parts) < 3:
            return False
        namespace, name = parts[0], "/".join(parts[1:-1])
        return any(ns == namespace and glob_matches(pat, name) for ns, pat in self.outputs)


@dataclass
class Collected:
    found: list[Garbage] = field(default_factory=list)  # old enough
    young: int = 0
    deleted: int = 0
    freed: int = 0
    kept_unnamed: int = 0  # files left because the registry names none of the store's

    def line(self, retention: float, deleting: bool, hint: str = "--yes deletes them") -> str:
        size = human_bytes(sum(g.size for g in self.found))
        kinds: dict[str, int] = {}
        for item in self.found:
            kinds[item.kind] = kinds.get(item.kind, 0) + 1
        what = ", ".join(f"{n} {k}{'s' if n != 1 else ''}" for k, n in kinds.items())
        young = f"; {self.young} younger than {retention:g} days kept" if self.young else ""
        if deleting:
            return f"{self.deleted} deleted ({human_bytes(self.freed)}){young}"
        if not self.found:
            return f"nothing to delete{young}"
        return f"{len(self.found)} unreferenced ({what}; {size}){young}; {hint}"


def _tree(path: Path) -> tuple[int, float]:
    """Size and newest modification time of everything under a folder (and itself)."""
    size, newest = 0, path.stat().st_mtime
    for folder, _dirs, files in os.walk(path):
        newest = max(newest, os.stat(folder).st_mtime)
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a run finishing meanwhile
                stat = os.stat(os.path.join(folder, name))
                size += stat.st_size
                newest = max(newest, stat.st_mtime)
    return size, newest


def job_folders(data: DataStore, inventory: Inventory, only: set[str] | None) -> Iterator[Garbage]:
    base = data.root / JOBS_DIR
    if not base.is_dir():
        return
    for folder in sorted(base.iterdir()):
        if not folder.is_dir() or (only is not None and folder.name not in only):
            continue
        rel = f"{JOBS_DIR}/{folder.name}"
        if _any_named(inventory, folder, rel):
            continue
        with contextlib.suppress(FileNotFoundError):  # a run finishing meanwhile
            size, newest = _tree(folder)
            yield Garbage(JOB_FOLDER, rel + "/", size, newest)


def _files_under(folder: Path) -> Iterator[str]:
    for sub, _dirs, files in os.walk(folder):
        for name in files:
            yield os.path.join(sub, name)


def _any_named(inventory: Inventory, folder: Path, rel: str) -> bool:
    """Whether a location names a file under `folder` (store path `rel`)."""
    paths = [f"{rel}/{Path(f).relative_to(folder).as_posix()}" for f in _files_under(folder)]
    return bool(inventory.named_among(paths))


def kind_of(rel: str) -> str:
    name = rel.rsplit("/", 1)[-1]
    if name.endswith(".part"):
        return PARTIAL
    if TEMPORARY.match(name):
        return TEMP_OUTPUT
    return UNNAMED


def loose_files(
    data: DataStore, inventory: Inventory, scope: Scope | None, any_named: bool
) -> Iterator[Garbage]:
    """Files outside the job folders that nothing names (partial files always count)."""
    for folder in store_folders(data):
        files = [
            rel
            for rel in folder
            # an altered file verify --repair replaced is its owner's to remove
            if CORRUPT not in rel.rsplit("/", 1)[-1] and (scope is None or scope.holds_file(rel))
        ]
        named = inventory.named_among(files)
        for rel in files:
            kind = kind_of(rel)
            if (kind != PARTIAL and rel in named) or (kind == UNNAMED and not any_named):
                continue
            with contextlib.suppress(FileNotFoundError):  # a run finishing meanwhile
                stat = data.path(rel).stat()
                yield Garbage(kind, rel, stat.st_size, stat.st_mtime)


def still_garbage(data: DataStore, inventory: Inventory, item: Garbage, cutoff: float) -> bool:
    """Looked at again just before deleting: still unnamed, and still old enough."""
    path = data.root / item.rel.rstrip("/")
    if not path.exists():
        return False
    if item.kind == JOB_FOLDER:
        if _any_named(inventory, path, item.rel.rstrip("/")):
            return False
        return _tree(path)[1] <= cutoff
    if item.kind != PARTIAL and inventory.names(item.rel):
        return False
    return path.stat().st_mtime <= cutoff


def remove(data: DataStore, item: Garbage) -> None:
    """Delete one item, then the folders it leaves empty (never the store's root)."""
    path = data.root / item.rel.rstrip("/")
    if item.kind == JOB_FOLDER:
        shutil.rmtree(path)
    else:
        path.unlink()
    parent = path.parent
    while parent != data.root and data.root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def collect(
    project: Project,
    say: Say,
    *,
    delete: bool = False,
    older_than: float | None = None,
    scope: Scope | None = None,
    store: Store | None = None,
) -> Collected:
    """List (and with `delete`, delete) what nothing references; see the module docstring.
    `older_than` (days) stands in for the retention setting."""
    retention = project.gc_retention_days if older_than is None else older_than
    if retention < 0:
        raise FdpError(f"--older-than {retention:g}: expected a number of days, 0 or more")
    data = project.data_store
    store = store if store is not None else project.read_store()
    inventory = Inventory(store, data)
    any_named = next(inventory.files(), None) is not None
    now = time.time()
    cutoff = now - retention * DAY
    out = Collected()
    items: Iterable[Garbage] = itertools.chain(
        job_folders(data, inventory, scope.jobs if scope is not None else None),
        loose_files(data, inventory, scope, any_named),
    )
    for item in items:
        if item.modified > cutoff:
            out.young += 1
            continue
        out.found.append(item)
        if not delete:
            age = item.age_days(now)
            say(f"{item.kind:<16}  {item.rel}  ({human_bytes(item.size)}, {age:.1f} days old)")
    if delete and out.found:
        with project_lock(project.state_dir):
            for item in out.found:
                if not still_garbage(data, inventory, item, cutoff):
                    continue
                remove(data, item)
                out.deleted += 1
                out.freed += item.size
                say(f"deleted {item.kind}  {item.rel}")
    return out


def clean_config(
    project: Project,
    outputs: list[tuple[str, str]],
    runs_log: Path,
    dryrun: bool = False,
    say: Say = print,
) -> None:
    """`doit clean` of one config's job: `fdp gc` over that config's output folders and the
    job folders its runs log names (with `doit clean -n`, only listed)."""
    import json

    jobs: set[str] = set()
    if runs_log.is_file():
        for line in runs_log.read_text(encoding="utf-8").splitlines():
            try:
                job = json.loads(line).get("job")
            except (ValueError, AttributeError):
                continue
            if job:
                jobs.add(Path(job).name)
    done = collect(project, say, delete=not dryrun, scope=Scope(outputs, jobs))
    say(done.line(project.gc_retention_days, not dryrun, "`doit clean` deletes them"))
