"""The staging list: data products and code runs the next `fdp push` sends, besides what the
pushed config's own runs wrote (`fdp add`, `fdp unstage`, `fdp reset`, `fdp commit`).

As the reference CLI keeps one, a project keeps one list, whichever config is pushed: it
names data products as `ns:name@version` and code runs by uuid, in `.fdp/staging.json` at
the project's root. Every change reads, changes and writes the list back under a lock,
through a temp file and a rename, so that two commands at once lose neither's change and a
crash leaves the old list or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.files import replace_text
from fdp_tasks.job import runs_summary
from fdp_tasks.project import Project
from fdp_tasks.refs import PartialRef, ProductRef, RefError
from fdp_tasks.store import queries
from fdp_tasks.store.base import Registry

STAGING_FILE = "staging.json"
PRODUCT = "data_product"
RUN = "code_run"
KINDS = (PRODUCT, RUN)

_threads = threading.Lock()  # flock orders processes; this, the threads of one process


@dataclass(frozen=True, order=True)
class Staged:
    """One entry of the staging list: a data product (`ns:name@version`) or a code run."""

    kind: str
    key: str

    @property
    def ref(self) -> ProductRef:
        """The data product this entry names (only for a data product)."""
        return ProductRef.parse(self.key)

    def __str__(self) -> str:
        return self.key if self.kind == PRODUCT else f"code run {self.key}"


def staging_path(project: Project) -> Path:
    return project.state_dir / STAGING_FILE


def looks_like_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4 and ":" not in text


def _read(path: Path) -> list[Staged]:
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except ValueError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc}); `fdp reset` empties it") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected an object of data_product and code_run lists")
    found = []
    for kind in KINDS:
        keys = data.get(kind) or []
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise BadInput(f"{path}: {kind}: expected a list of strings; `fdp reset` empties it")
        found += [Staged(kind, key) for key in keys]
    return found


def _write(path: Path, items: Iterable[Staged]) -> None:
    chosen = sorted(set(items))
    data = {kind: [s.key for s in chosen if s.kind == kind] for kind in KINDS}
    replace_text(path, lambda fh: fh.write(json.dumps(data, indent=2) + "\n"), 0o644)


@contextlib.contextmanager
def _locked(project: Project) -> Iterator[Path]:
    """The staging file, held against every other change to it until the block ends."""
    path = staging_path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _threads, open(path.with_suffix(".lock"), "a") as lock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): one process at a time is the user's care
            yield path
            return
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _change(project: Project, change: Callable[[list[Staged]], list[Staged]]) -> None:
    """Read the list, let `change` make the new one, write it if it differs."""
    with _locked(project) as path:
        before = _read(path)
        after = change(list(before))
        if sorted(set(after)) != sorted(set(before)):
            _write(path, after)


def staged(project: Project) -> list[Staged]:
    """The staging list as it is now, sorted by kind and id."""
    return sorted(set(_read(staging_path(project))))


# ------------------------------------------------------------------ look-ups
def resolve_id(store: Registry, text: str) -> Staged:
    """What an id a user typed stages: a code run (uuid) of the local registry, or one of
    its data products (`ns:name@version`; `ns:name` or `@latest` for the newest)."""
    text = text.strip()
    if looks_like_uuid(text):
        if not store.find("code_run", {"uuid": text}, limit=1):
            raise BadInput(f"{text}: no code run with this uuid in the local registry")
        return Staged(RUN, text)
    try:
        typed = PartialRef.parse(text, "the data product")
    except RefError as exc:
        raise BadInput(f"{text}: {exc}; expected ns:name@version or a code run's uuid") from None
    if not typed.namespace:
        raise BadInput(f"{text}: give the namespace, as ns:name@version")
    if typed.is_glob:
        raise BadInput(f"{text}: a pattern; name one data product, as ns:name@version")
    if not typed.pinned and typed.incrementer != "LATEST":
        raise BadInput(f"{text}: give a version, or none (or latest) for the newest")
    versions = [] if typed.pinned else queries.product_versions(store, typed.namespace, typed.name)
    if not typed.pinned and not versions:
        raise BadInput(f"{text}: no version of it in the local registry")
    ref = typed.resolve(None, versions)
    if queries.find_product(store, ref.namespace, ref.name, ref.version_text) is None:
        raise BadInput(f"{text}: not in the local registry")
    return Staged(PRODUCT, str(ref))


def run_outputs(store: Registry, run_uuid: str) -> list[ProductRef] | None:
    """The data products a code run of the local registry wrote; None if it is not there."""
    rows = store.find("code_run", {"uuid": run_uuid}, limit=1)
    if not rows:
        return None
    components = queries.get_many(store, "object_component", list(rows[0]["outputs"] or []))
    objects = queries.get_many(store, "object", [c["object"] for c in components.values()])
    product_ids = [p for o in objects.values() for p in o.get("data_products") or []]
    products = queries.get_many(store, "data_product", product_ids)
    return [found.ref for found in queries.locate_many(store, list(products.values()))]


# ------------------------------------------------------------------ commands
def stage(project: Project, ids: list[str]) -> tuple[list[Staged], list[Staged]]:
    """`fdp add`: stage every id, or none if any is unknown. Returns (newly staged, staged
    already)."""
    store = project.read_store()
    wanted = list(dict.fromkeys(resolve_id(store, text) for text in ids))
    return _add(project, wanted)


def _add(project: Project, wanted: list[Staged]) -> tuple[list[Staged], list[Staged]]:
    result: dict[str, list[Staged]] = {}

    def change(current: list[Staged]) -> list[Staged]:
        have = set(current)
        result["new"] = [s for s in wanted if s not in have]
        result["old"] = [s for s in wanted if s in have]
        return current + result["new"]

    _change(project, change)
    return result["new"], result["old"]


def _matches(entry: Staged, text: str) -> bool:
    """Whether `fdp unstage TEXT` takes this entry back: its uuid or `ns:name@version`
    exactly, or `ns:name` for every staged version of that name."""
    if entry.kind == RUN:
        return entry.key == text
    if text == entry.key:
        return True
    try:
        typed = PartialRef.parse(text, "the data product")
    except RefError:
        return False
    ref = entry.ref
    if (typed.namespace, typed.name) != (ref.namespace, ref.name):
        return False
    return typed.version is None or (typed.pinned and ProductRef.parse(text) == ref)


def unstage(project: Project, ids: list[str]) -> list[Staged]:
    """`fdp unstage`: take entries back; an id that names nothing staged is an error, and
    then nothing changes. Returns the entries taken back."""
    result: list[Staged] = []

    def change(current: list[Staged]) -> list[Staged]:
        for text in ids:
            hits = [s for s in current if _matches(s, text.strip())]
            if not hits:
                raise BadInput(
                    f"{text}: not staged (`fdp status` lists what is); nothing was unstaged"
                )
            result.extend(h for h in hits if h not in result)
        return [s for s in current if s not in result]

    _change(project, change)
    return result


def reset(project: Project) -> list[Staged]:
    """`fdp reset`: unstage everything; returns what was staged. A list that cannot be
    read is emptied too: this is the way out of one."""
    with _locked(project) as path:
        try:
            before = _read(path)
        except BadInput:
            before = []
        if before or path.is_file():
            _write(path, [])
    return sorted(set(before))


def drop(project: Project, done: Callable[[Staged], bool]) -> list[Staged]:
    """Take back every entry `done` says has been pushed; returns them. Nothing is locked
    when nothing is staged (a push calls this after every item)."""
    if not staged(project):  # read without the lock: most pushes have nothing staged
        return []
    result: list[Staged] = []

    def change(current: list[Staged]) -> list[Staged]:
        result.extend(s for s in current if done(s))
        return [s for s in current if s not in result]

    _change(project, change)
    return result


def last_run(runs_log: Path, config: str) -> dict[str, Any]:
    """The newest entry of a config's runs log."""
    _, last = runs_summary(runs_log)
    if last is None:
        raise FdpError(f"{config}: no run of this config is recorded: `fdp run {config}` first")
    return last


def stage_last_run(
    project: Project, runs_log: Path, config: str
) -> tuple[list[Staged], list[Staged]]:
    """`fdp commit`: stage the code runs the config's last run recorded and every data
    product they wrote. Returns (newly staged, staged already)."""
    record = last_run(runs_log, config)
    store = project.read_store()
    wanted: list[Staged] = []
    for run_uuid in record.get("code_runs") or []:
        outputs = run_outputs(store, run_uuid)
        if outputs is None:
            raise FdpError(
                f"{config}: the last run recorded code run {run_uuid}, which the local "
                "registry no longer holds; run the config again"
            )
        wanted.append(Staged(RUN, run_uuid))
        wanted += [Staged(PRODUCT, str(ref)) for ref in outputs]
    if not wanted:
        raise FdpError(f"{config}: its last run ({record.get('finished', '?')}) made nothing")
    return _add(project, list(dict.fromkeys(wanted)))
