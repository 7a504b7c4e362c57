"""`fdp verify`: the files the local registry records, against the files in the data store.

The inventory is every storage location under a storage root that is this data store (old
runs included), read a page at a time; each file is hashed while streaming, a few at once
(`jobs`). A file is `missing` or `modified` (its SHA-1 is not the one recorded); a file of the
store that no location names is `orphaned` (`.part` files, the copies `--repair` keeps and
the job folders, which `fdp gc` looks after, are not). With a remote, each data product the
project pushed there must be on it with the same SHA-1 (one listing per namespace). With
`repair`, a missing or modified file is fetched again from the remote, checked against the
recorded SHA-1, and put in place atomically; an altered copy is kept beside it as
`<file>.corrupt-<time>`, never thrown away.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from fdp_tasks.datastore import DataStore
from fdp_tasks.errors import FdpError, UnsafePathError
from fdp_tasks.files import sha1_file
from fdp_tasks.progress import Bar
from fdp_tasks.project import Project
from fdp_tasks.remotes import Remote, open_remote
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record
from fdp_tasks.store.sql import Store

PAGE = 1000
CHUNK = 500  # paths per query
JOBS_DIR = "jobs"  # job folders: fdp gc's, not orphans
CORRUPT = ".corrupt-"  # an altered file that --repair replaced, kept for its owner
Say = Callable[[str], None]


def is_bookkeeping(rel: str) -> bool:
    """Files of the store that are not data: partial transfers, kept altered copies, and
    the job folders."""
    name = rel.rsplit("/", 1)[-1]
    return rel.split("/", 1)[0] == JOBS_DIR or name.endswith(".part") or CORRUPT in name


class Inventory:
    """The storage locations of the local registry under the data store's roots."""

    def __init__(self, store: Store, data: DataStore):
        self.store = store
        self.data = data
        self.root_ids = [r["id"] for r in store.find("storage_root") if data.holds(r["root"])]

    def count(self) -> int:
        return sum(self.store.count("storage_location", {"storage_root": r}) for r in self.root_ids)

    def files(self) -> Iterator[tuple[str, str]]:
        """(path, SHA-1) of every location, a page at a time; one path once even when two
        roots name this store (a file:// URL and a plain path)."""
        seen: set[str] | None = set() if len(self.root_ids) > 1 else None
        for root_id in self.root_ids:
            before: int | None = None
            while True:
                page = self.store.find(
                    "storage_location", {"storage_root": root_id}, limit=PAGE, before_id=before
                )
                for location in page:
                    if seen is not None:
                        if location["path"] in seen:
                            continue
                        seen.add(location["path"])
                    yield location["path"], location["hash"]
                if len(page) < PAGE:
                    break
                before = page[-1]["id"]

    def names(self, rel: str) -> bool:
        """Whether a location names this path of the store."""
        return bool(self.named_among([rel]))

    def named_among(self, paths: list[str]) -> set[str]:
        """The paths among these that a location names, a few hundred per query. Records
        a running job has not settled yet count: their files are not orphans."""
        table = self.store.tables["storage_location"]
        found: set[str] = set()
        if not self.root_ids:
            return found
        with self.store.engine.connect() as conn:
            for start in range(0, len(paths), CHUNK):
                chunk = paths[start : start + CHUNK]
                query = sa.select(table.c.path).where(
                    table.c.storage_root_id.in_(self.root_ids), table.c.path.in_(chunk)
                )
                found.update(conn.execute(query).scalars())
        return found


def store_folders(data: DataStore, skip_jobs: bool = True) -> Iterator[list[str]]:
    """The files of the data store as store-relative paths, a folder at a time."""
    for folder, dirs, files in os.walk(data.root):
        rel_folder = Path(folder).relative_to(data.root).as_posix()
        if rel_folder == "." and skip_jobs and JOBS_DIR in dirs:
            dirs.remove(JOBS_DIR)
        dirs.sort()
        yield [name if rel_folder == "." else f"{rel_folder}/{name}" for name in sorted(files)]


def file_state(data: DataStore, rel: str, sha1: str) -> tuple[str, int]:
    """`ok`, `missing` or `modified`, and the file's size."""
    try:
        path = data.path(rel)
    except UnsafePathError:
        return "missing", 0
    if not path.is_file():
        return "missing", 0
    size = path.stat().st_size
    return ("ok" if sha1_file(path) == sha1 else "modified"), size


@dataclass
class Outcome:
    """What a verify found, counted, and whether it passes (nothing missing or modified
    left, nothing the remote lacks or holds otherwise)."""

    verified: int = 0
    modified: int = 0
    missing: int = 0
    orphaned: int = 0
    repaired: int = 0
    not_on_remote: int = 0
    differs_on_remote: int = 0
    checked_remote: bool = False
    broken: list[tuple[str, str, str]] = field(default_factory=list)  # (state, path, sha1)

    @property
    def ok(self) -> bool:
        unrepaired = self.modified + self.missing - self.repaired
        return unrepaired <= 0 and not (self.not_on_remote or self.differs_on_remote)

    def line(self) -> str:
        text = (
            f"{self.verified} verified, {self.modified} modified, {self.missing} missing, "
            f"{self.orphaned} orphaned"
        )
        if self.checked_remote:
            text += (
                f", {self.not_on_remote} not on remote, {self.differs_on_remote} differ on remote"
            )
        if self.repaired:
            text += f"; {self.repaired} repaired"
        return text


def check_files(inventory: Inventory, outcome: Outcome, say: Say, bar: Bar, jobs: int) -> None:
    """Hash every recorded file (`jobs` at once, a page at a time) and say each problem."""
    data = inventory.data

    def check(item: tuple[str, str]) -> tuple[str, str, str, int]:
        state, size = file_state(data, *item)
        return state, item[0], item[1], size

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for page in _pages(inventory.files(), PAGE):
            for state, rel, sha1, size in pool.map(check, page):
                bar.add_bytes(size)
                bar.step()
                if state == "ok":
                    outcome.verified += 1
                    continue
                if state == "missing":
                    outcome.missing += 1
                    say(f"missing   {rel} (SHA-1 {sha1})")
                else:
                    outcome.modified += 1
                    say(f"modified  {rel} (recorded SHA-1 {sha1})")
                outcome.broken.append((state, rel, sha1))


def _pages(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    page: list[tuple[str, str]] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


def check_orphans(inventory: Inventory, outcome: Outcome, say: Say) -> None:
    for folder in store_folders(inventory.data):
        files = [rel for rel in folder if not is_bookkeeping(rel)]
        named = inventory.named_among(files)
        for rel in files:
            if rel not in named:
                outcome.orphaned += 1
                say(f"orphaned  {rel}")


# ---------------------------------------------------------------------------- remote
def pushed_refs(project: Project, remote_url: str) -> set[str]:
    """The data products (ns:name@version) this project's push ledgers say went to the
    remote at `remote_url`."""
    out: set[str] = set()
    configs = project.state_dir / "configs"
    if not configs.is_dir():
        return out
    for ledger in configs.rglob("pushed.jsonl"):
        for line in ledger.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(row, dict) and row.get("remote") == remote_url and row.get("ref"):
                out.add(str(row["ref"]))
    return out


def check_remote(
    store: Store, remote: Remote, pushed: set[str], outcome: Outcome, say: Say
) -> None:
    """Each local data product the remote holds must have the same SHA-1 there; each one
    pushed there must still be there."""
    outcome.checked_remote = True
    listings: dict[str, dict[tuple[str, str], Record]] = {}
    before: int | None = None
    while True:
        page = store.find("data_product", limit=PAGE, before_id=before)
        for found in queries.locate_many(store, page):
            ref = str(found.ref)
            namespace = found.namespace["name"]
            if namespace not in listings:
                ns = queries.namespace_id(remote.registry, namespace)
                rows = remote.registry.find("data_product", {"namespace": ns}) if ns else []
                listings[namespace] = {(r["name"], r["version"]): r for r in rows}
            theirs = listings[namespace].get((found.product["name"], found.product["version"]))
            if theirs is None:
                if ref in pushed:
                    outcome.not_on_remote += 1
                    say(f"not on remote {remote.name}: {ref}")
                continue
            their_hash = queries.locate(remote.registry, theirs).hash
            if their_hash != found.hash:
                outcome.differs_on_remote += 1
                say(
                    f"differs on remote {remote.name}: {ref} (SHA-1 {their_hash} there, "
                    f"{found.hash} here)"
                )
        if len(page) < PAGE:
            break
        before = page[-1]["id"]


# ---------------------------------------------------------------------------- repair
def repair(data: DataStore, remote: Remote, rel: str, sha1: str) -> str:
    """Fetch the bytes recorded for `rel` from the remote (any location of theirs holding
    that SHA-1), checked while they stream, and put them in place atomically. An altered
    file is kept as `<file>.corrupt-<UTC time>`. Returns what was done, in words."""
    target = data.path(rel)
    kept: Path | None = None
    if target.is_file():
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        kept = target.with_name(f"{target.name}{CORRUPT}{stamp}")
        try:
            os.link(target, kept)  # a second name for the bad bytes, before any change
        except OSError:
            shutil.copy2(target, kept)
    problems: list[str] = []
    for location in remote.registry.find("storage_location", {"hash": sha1}):
        root = remote.registry.get("storage_root", location["storage_root"])
        try:
            data.put_stream(rel, remote.download(root["root"], location["path"]), sha1)
        except (FdpError, OSError) as exc:
            problems.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            continue
        if kept is not None:
            return f"repaired  {rel} from {remote.name} (the altered copy is kept as {kept.name})"
        return f"repaired  {rel} from {remote.name}"
    if kept is not None:
        with contextlib.suppress(OSError):
            kept.unlink()  # nothing changed: the file itself still holds those bytes
    why = f": {problems[0]}" if problems else ": no copy of those bytes there"
    raise FdpError(f"{rel}: cannot repair from remote {remote.name}{why}")


# ---------------------------------------------------------------------------- command
def verify(
    project: Project,
    say: Say,
    *,
    remote_name: str | None = None,
    repair_files: bool = False,
    jobs: int = 4,
    remote_wanted: bool = False,
) -> Outcome:
    """Verify the data store of `project` (see the module docstring); problems are said one
    line each through `say`, and the counts returned."""
    store = project.read_store()
    data = project.data_store
    inventory = Inventory(store, data)
    outcome = Outcome()
    with Bar("verifying", total=inventory.count(), unit="file") as bar:

        def tell(line: str) -> None:
            if bar.shown:
                bar.write(line)
            else:
                say(line)

        check_files(inventory, outcome, tell, bar, jobs)
        check_orphans(inventory, outcome, tell)
    if not (remote_wanted or repair_files):
        return outcome
    spec = project.remote(remote_name)
    with open_remote(spec.name, spec.url, spec.token(), readonly=True) as remote:
        if remote_wanted:
            check_remote(store, remote, pushed_refs(project, remote.url), outcome, say)
        if repair_files:
            for _state, rel, sha1 in outcome.broken:
                try:
                    say(repair(data, remote, rel, sha1))
                    outcome.repaired += 1
                except FdpError as exc:
                    say(f"unrepaired {exc}")
    return outcome
