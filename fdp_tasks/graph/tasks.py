"""The config compiled into doit tasks.

    register:<item>   fetch root+path, hash, register        target: the registry entry + file
    pull:<item>       copy a data product from the remote    target: the registry entry + file
    job               run the script with the FDP env        target: the code run's outputs
    push:<item>       copy an output and its provenance      target: the remote's entry
    prov:<item>       an output's PROV-JSON and svg          target: files under the state folder

Targets are registry entries and data-store files, checked by hash through `uptodate`
callables, so a second `doit` does nothing and deleting an entry or a file redoes just that.
`job` is created after the pulls have executed, so it is planned against the registry as it
is by then; `push` tasks are created only when asked for and depend on nothing: pushing sends
what earlier runs made, and never runs anything first. (doit keeps the name `run` for its own
command, hence `job`.)

Tasks are made of two things: the `Plan` (facts: what the config asks for, what is here) and
the command's `SyncSession` (remotes, pullers, pushers, identity), which they reach through
the `session` callable `dodo_namespace` makes, so every task of a command shares one.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from doit import create_after
from doit.tools import config_changed

from fdp_tasks import staging
from fdp_tasks.catalog.register import item_label, register_item, registered_product
from fdp_tasks.config.resolve import warn_once
from fdp_tasks.datastore import local_root
from fdp_tasks.errors import FdpError, OutOfSync, os_error_text
from fdp_tasks.executors import Executor, executor_for
from fdp_tasks.graph.plan import Output, Plan, ReadItem
from fdp_tasks.graph.report import (
    CARRIED,
    PRODUCTS,
    PULLED,
    PUSHED,
    REPORT,
    FdpReporter,
    TaskFailure,
)
from fdp_tasks.graph.session import SessionFor, SyncSession
from fdp_tasks.job import ServeRegistry, iter_run_uuids, refuse_dirty, run_job, runs_summary
from fdp_tasks.progress import Bar
from fdp_tasks.project import ignore_state
from fdp_tasks.provenance.walk import Lineage
from fdp_tasks.refs import ProductRef
from fdp_tasks.remotes import Remote
from fdp_tasks.remotes.sync import PULL_BATCH, NonCanonicalName
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record
from fdp_tasks.versions import Version, latest

log = logging.getLogger(__name__)

Task = dict[str, Any]

# The bytes phase of a pull and of a push: one task each, which the items depend on. Hidden
# (doit lists and reports no task whose name starts with `_`): an item is what a user asked
# for, and the summary line counts items.
PULL_FILES = "_pull_files"
PUSH_FILES = "_push_files"


def _guard(func: Any, *args: Any) -> Any:
    """Run an action; an FdpError, or an OSError such as a full disk, fails the task in one
    line with its exit code. What it returns (a dict: what the reporter says and counts)
    is the task's values."""
    try:
        return func(*args)
    except (FdpError, OSError) as exc:
        return TaskFailure(exc)


def _unless_unknown(check: Any, *args: Any) -> bool:
    """An up-to-date check that cannot look (the registry will not open, a disk refuses)
    answers "not up to date": the task's action then meets the same error and fails in one
    line, where an error raised from the check itself would end doit with a traceback."""
    try:
        return bool(check(*args))
    except (FdpError, OSError):
        return False


# -------------------------------------------------------------------- register
def register_tasks(plan: Plan, session: SessionFor, refresh: bool = False) -> Iterator[Task]:
    """One task per register item. `refresh` (`fdp pull`, `doit refresh=1`) fetches network
    sources again to compare, as the reference's pull does; local sources are always
    compared."""
    yield {
        "basename": "register",
        "name": None,
        "doc": "register the config's namespaces, authors and files locally",
    }
    for item in plan.registers:

        def action(item: dict[str, Any] = item) -> Any:
            def work() -> None:
                doing = session()
                author = doing.author_id()
                print(f"registered {register_item(doing.store, plan.data, item, author)}")

            return _guard(work)

        yield {
            "basename": "register",
            "name": item_label(item),
            "doc": f"fetch, hash and record {item_label(item)} in the local registry",
            "actions": [action],
            "uptodate": [
                lambda item=item: _unless_unknown(
                    lambda: registered_product(plan.store, plan.data, item)
                    and not (refresh and "root" in item and local_root(item["root"]) is None)
                )
            ],
            "verbosity": 2,
        }


# ------------------------------------------------------------------------ pull
def _pull_remote(plan: Plan, session: SyncSession, item: ReadItem) -> Remote:
    try:
        return session.remote()
    except FdpError as exc:
        raise FdpError(
            f"{plan.cfg.file}: {item.key}: {item.label} is not in the local registry, and "
            f"there is no remote to pull it from: {exc}"
        ) from None


def _to_pull(
    plan: Plan, session: SyncSession, remote: Remote, item: ReadItem
) -> Iterator[tuple[ProductRef, Record]]:
    """The remote's products a read item fetches: those not here intact, found a page of
    names at a time (a glob over 100,000 products holds a page of them)."""
    listing = session.remote_products(remote, item.namespace)
    if item.pinned:
        wanted: Iterator[tuple[str, str]] = iter([(item.name, item.version)])
    else:
        wanted = session.remote_newest(remote, item)
    matched = False
    while page := list(itertools.islice(wanted, PULL_BATCH)):
        matched = True
        refs = [item.product(name, version) for name, version in page]
        here = plan.intact_products(refs, remember=False)
        for ref in refs:
            if ref in here:
                continue  # already here: asking the remote was only about newer versions
            product = listing.get((ref.name, ref.version_text))
            if product is None:
                raise FdpError(
                    f"{plan.cfg.file}: {item.key}: {ref} is not on remote {remote.name} "
                    f"({remote.url})"
                )
            yield ref, product
    plan.remember_answers()  # what was hashed and asked, kept once
    if not matched:
        raise FdpError(
            f"{plan.cfg.file}: {item.key}: {item.label} matches nothing on remote {remote.name}"
        )


def _pull_one(session: SyncSession, item: ReadItem) -> dict[str, Any]:
    """Copy the records of one read item's products (their files are in place already when
    `_pull_files` fetched them); what the reporter says and counts."""
    plan = session.plan
    remote = _pull_remote(plan, session, item)
    report: list[str] = []
    kept = session.to_pull.pop((remote.url, item.index), None)
    # with no bytes phase before it in this process, or more than it kept: found again
    wanted = iter(kept) if kept is not None else _to_pull(plan, session, remote, item)
    head = next(wanted, None)
    if head is None:
        return {REPORT: [f"{item.label}: nothing newer on {remote.name}"], PULLED: 0}
    session.ensure_identity()
    pulled, first, last = 0, "", ""
    with session.records_lock("local"):
        for ref, sha1 in session.puller(remote).pull_many(itertools.chain([head], wanted)):
            if isinstance(sha1, NonCanonicalName):
                if item.pinned:
                    raise sha1
                log.warning("%s", sha1)  # a glob matched it: go on with the rest
                continue
            pulled += 1
            first, last = first or str(ref), str(ref)
            if pulled <= PULL_BATCH:
                report.append(f"pulled {ref} (SHA-1 {sha1[:12]})")
            else:
                report.clear()  # doit keeps a task's values: a line each is too many
    if pulled > PULL_BATCH:
        report.append(f"pulled {pulled} data products ({first} .. {last}) from {remote.name}")
    if not pulled:
        report.append(f"{item.label}: nothing newer on {remote.name}")
    return {REPORT: report, PULLED: pulled}


def _read_fresh(plan: Plan, item: ReadItem, refresh: bool) -> bool:
    """A read item's up-to-date check: here, and (when refreshing) pinned."""
    return (not refresh or item.pinned) and plan.read_present(item)


def _pull_files(session: SyncSession, refresh: bool, jobs: int) -> dict[str, Any]:
    """The bytes phase of a pull: every file the read items will fetch, downloaded on `jobs`
    threads into the data store (each checked against its SHA-1, renamed into place whole)
    before any record is copied. What fails here is said by the item that needs it.

    Items of up to a page of products are planned together, and each keeps its plan and
    its list of products for its own pull, which then asks the remote nothing more; a
    larger item is planned and fetched a page at a time and keeps nothing, so that memory
    holds a page of it, not all of its products."""
    plan = session.plan
    small: list[tuple[ProductRef, Record]] = []  # products of the items that keep plans
    large: list[Iterator[tuple[ProductRef, Record]]] = []  # found as they are fetched
    try:
        for item in plan.reads:
            if _read_fresh(plan, item, refresh):
                continue
            remote = _pull_remote(plan, session, item)
            with contextlib.suppress(FdpError):  # the item's own task says why
                found = _to_pull(plan, session, remote, item)
                head = list(itertools.islice(found, PULL_BATCH + 1))
                if len(head) > PULL_BATCH:
                    large.append(itertools.chain(head, found))
                else:
                    session.to_pull[(remote.url, item.index)] = head
                    small += head
        if not small and not large:
            return {}  # nothing new: the registry is not even opened for writing
        session.ensure_identity()
        puller = session.puller(remote)
    except (FdpError, OSError) as exc:
        log.debug("pull_files: %s", exc)  # every item fails with it, in its own words
        return {}
    with Bar("downloading", total=len(small)) as bar:  # a product's file, or its being in place
        items: list[tuple[Iterable[tuple[ProductRef, Record]], bool]] = [(small, True)]
        items += [(products, False) for products in large]
        for products, keep in items:  # `keep`: the items that keep their plans
            shown = bar.done + (len(small) if keep else 0)
            counted = _counted(products, bar, bar.done, shown)
            try:
                failed = puller.download(counted, jobs, keep, bar.bytes_callback(), bar.step)
            except (FdpError, OSError) as exc:
                log.debug("pull_files: %s", exc)  # the item's own task says why
                continue
            finally:  # products that share a file, or need none, step no bar
                bar.set_total(bar.done)
            for file, why in failed.items():
                log.debug("download of %s failed: %s", file.product, why)
    return {}


def _counted(found: Iterable[Any], bar: Bar, base: int, shown: int) -> Iterator[Any]:
    """Products counted into the bar's total as they are found: a large read item's are
    not known before its last page is. `base`: the bar's count before the first of them;
    `shown`: its total then."""
    for met, product in enumerate(found, 1):
        if base + met > shown:
            shown = base + met
            bar.set_total(shown)
        yield product


def pull_tasks(
    plan: Plan, session: SessionFor, refresh: bool = False, jobs: int = 1
) -> Iterator[Task]:
    yield {
        "basename": "pull",
        "name": None,
        "task_dep": ["register", *([PULL_FILES] if plan.reads else [])],
        "doc": "fetch the data products the config reads from the remote",
    }

    def fresh(item: ReadItem) -> bool:
        return _read_fresh(plan, item, refresh)

    if plan.reads:
        yield {
            "basename": PULL_FILES,
            "doc": "download the files of what the config reads, in parallel",
            "actions": [lambda: _guard(_pull_files, session(), refresh, jobs)],
            "task_dep": ["register"],
            "uptodate": [
                lambda: _unless_unknown(lambda: all(fresh(item) for item in plan.reads))
            ],
            "verbosity": 2,
        }
    for item in plan.reads:
        yield {
            "basename": "pull",
            "name": item.label,
            "doc": f"fetch {item.label} and the records of the run that made it",
            "actions": [lambda item=item: _guard(_pull_one, session(), item)],
            "task_dep": [PULL_FILES],
            "uptodate": [lambda item=item: _unless_unknown(fresh, item)],
            "verbosity": 2,
        }


# ------------------------------------------------------------------------- run
class OutputsIntact:
    """The job's up-to-date check on what the last run made: every output of the code runs
    doit remembers is intact. A plain object naming the config, so that doit's process
    runner can send the job task, which is created after the pulls, to a worker."""

    def __init__(self, config: str, remote: str | None):
        self.config, self.remote = config, remote

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        runs = values.get("code_runs")
        if runs is None:
            return False
        plan = SyncSession.for_process(self.config, self.remote).plan
        return _unless_unknown(plan.outputs_intact, runs)


def job_action(
    config: str,
    remote: str | None,
    note: dict[str, Any],
    dirty: bool,
    serve: ServeRegistry | None,
    wait: bool,
    runs_seen: int,
    executor: Executor | None,
) -> Any:
    """The job task's action, a module function with plain arguments (and the executor,
    which crosses to a worker process as its cluster's address): the script run through
    the executor, in this process's session of the config."""
    try:
        doing = SyncSession.for_process(config, remote)
        plan = doing.plan
        return run_job(
            plan.project,
            plan.runs_log,
            plan.job_working,
            note,
            allow_dirty=dirty,
            verify=doing.verify_outputs,
            serve=serve,
            wait=wait,
            runs_seen=runs_seen,
            executor=executor,
        )
    except (FdpError, OSError) as exc:
        return TaskFailure(exc)


def run_task(
    plan: Plan,
    session: SessionFor,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    executor: Executor | None = None,
) -> Task:
    """The job task; `wait`: wait for another job of the config to end, not refuse;
    `executor`: where the script runs (default: here)."""
    if not plan.has_script:
        return {
            "basename": "job",
            "actions": None,
            "task_dep": ["pull"],
            "doc": "nothing to run: the config has no script",
        }
    parts = plan.run_inputs()
    signature = plan.run_signature(parts)
    runs_seen = runs_summary(plan.runs_log)[0]  # as the up-to-date check finds them
    config, remote = str(plan.cfg.path), session().remote_name
    note = {"signature": signature, "depends_on": parts}
    return {
        "basename": "job",
        "doc": "run the script with the FDP environment, if what it depends on changed",
        "actions": [
            (job_action, [config, remote, note, dirty, serve, wait, runs_seen, executor])
        ],
        "task_dep": ["pull"],
        # `force`: modules the script imports are not tracked; this reruns it anyway
        "uptodate": [config_changed(signature), OutputsIntact(config, remote), not force],
        "clean": [(clean_job, [config, remote])],
        "verbosity": 2,
    }


def clean_job(config: str, remote: str | None, dryrun: bool = False) -> None:
    """`doit clean`: `fdp gc` for this config (its output folders, the job folders of its
    runs); `doit clean -n` only lists."""
    plan = SyncSession.for_process(config, remote).plan
    working = plan.working(resolve_writes=False, symbolic=True)
    outputs = [
        (str((item.get("use") or {}).get("namespace")), str(item["data_product"]))
        for item in working.get("write") or []
    ]
    from fdp_tasks.upkeep.gc import clean_config  # `doit clean` only

    clean_config(plan.project, outputs, plan.runs_log, dryrun)


# ------------------------------------------------------------------------ push
def pushable_outputs(plan: Plan) -> list[Output | queries.Located]:
    """The outputs of every run of this config, newest version of each name last, then what
    the project has staged (`fdp add`, `fdp commit`): data products, and the outputs of
    staged code runs. A run's outputs come by name and SHA-1 (one query per run, which is
    all `fdp status` needs), what is staged with its records."""
    seen: dict[str, Output | queries.Located] = {}
    for run_uuids in iter_run_uuids(plan.runs_log):
        for output in plan.output_refs(run_uuids) or []:
            seen[str(output.ref)] = output
    for ref, found in staged_for_push(plan).products.items():
        seen.setdefault(ref, found)
    return list(seen.values())


def session_pushable(session: SyncSession) -> list[Output | queries.Located]:
    """`pushable_outputs` of the session's plan, listed once per command: the graph, the
    preflight and the bytes phase of a push of 10,000 products share one list."""
    if session.pushable is None:
        session.pushable = pushable_outputs(session.plan)
    return session.pushable


# Data products whose records a push reads at a time; a push of more than this has a task
# per page of them rather than one per product (`_page_tasks`)
PAGE = 500


def located_pages(
    session: SyncSession, items: list[Output | queries.Located]
) -> Iterator[list[queries.Located]]:
    """`pushable_outputs` with the records of each data product, as a push sends them, a
    page at a time (one query per record type and page): a push never holds the records
    of all it pushes."""
    store = session.records
    for start in range(0, len(items), PAGE):
        page = items[start : start + PAGE]
        ids = [found.product_id for found in page if isinstance(found, Output)]
        products = store.get_many("data_product", ids)
        located = iter(queries.locate_many(store, [products[i] for i in ids]))
        yield [next(located) if isinstance(found, Output) else found for found in page]


@dataclass
class StagedPush:
    """What the staging list adds to a push, found in the local registry."""

    products: dict[str, queries.Located] = field(default_factory=dict)  # by ns:name@version
    runs: list[str] = field(default_factory=list)  # code runs that wrote no data product
    staged: set[str] = field(default_factory=set)  # every data product pushed for an entry


def staged_for_push(plan: Plan) -> StagedPush:
    """The staged data products, and the outputs of staged code runs; a staged code run
    that wrote nothing is pushed as a record of its own."""
    out = StagedPush()
    for entry in staging.staged(plan.project):
        if entry.kind == staging.PRODUCT:
            found = queries.locate_ref(plan.store, entry.ref)
            outputs = None if found is None else [found]
        else:
            outputs = plan.outputs_of([entry.key])
            if outputs == []:
                out.runs.append(entry.key)
        if outputs is None:
            warn_once(
                f"{entry} is staged, but it (or an output of it) is no longer in the local "
                f"registry; `fdp unstage {entry.key}` takes it back"
            )
            continue
        for found in outputs:
            out.products.setdefault(str(found.ref), found)
            out.staged.add(str(found.ref))
    return out


def unstage_pushed(
    plan: Plan, remote_url: str, ledger: PushLedger, refs: list[ProductRef]
) -> None:
    """After a push item: the staged data products the remote now holds (`refs`, found or
    created with this content), and staged code runs all of whose outputs it holds, leave
    the staging list. Costs one stat when nothing is staged."""
    now = {str(ref) for ref in refs}

    def done(entry: staging.Staged) -> bool:
        if entry.kind == staging.PRODUCT:
            return entry.key in now
        outputs = plan.outputs_of([entry.key])
        return bool(outputs) and all(
            str(o.ref) in now or (o.hash and ledger.pushed(remote_url, str(o.ref)) == o.hash)
            for o in outputs or []
        )

    staging.drop(plan.project, done)


def staged_run_tasks(
    plan: Plan, remote_name: str | None, dirty: bool = False
) -> Iterator[Task]:
    """One task per staged code run that wrote no data product: its record (with its
    config, script, code repository and inputs) is pushed on its own, since no product's
    push carries it."""
    config = str(plan.cfg.path)
    for run_uuid in staged_for_push(plan).runs:
        yield {
            "basename": "push",
            "name": f"run:{run_uuid}",
            "doc": f"copy the staged code run {run_uuid} and its provenance to the remote",
            "actions": [(push_staged_run, [config, remote_name, dirty, run_uuid])],
            "task_dep": [PUSH_FILES],
            "verbosity": 2,
        }


def push_staged_run(config: str, remote_name: str | None, dirty: bool, run_uuid: str) -> Any:
    """A staged code run's push item (a module function with plain arguments, as doit's
    process runner needs): the run's record after its inputs, then off the staging list."""
    return _guard(_push_run, SyncSession.for_process(config, remote_name), dirty, run_uuid)


def _push_run(doing: SyncSession, dirty: bool, run_uuid: str) -> dict[str, Any]:
    remote = _push_checked(doing, dirty)
    mine = doing.store.find("code_run", {"uuid": run_uuid}, limit=1)
    if not mine:
        raise FdpError(f"code run {run_uuid} is staged but not in the local registry")
    said: dict[str, Any] = {REPORT: [f"code run {run_uuid} is on {remote.name} already"]}
    if not remote.registry.find("code_run", {"uuid": run_uuid}, limit=1):
        with doing.records_lock(remote.url):
            pushed = doing.pusher(remote).push_run(mine[0]["id"])
        doing.note_pushed(remote, pushed)
        said = {REPORT: [f"pushed code run {run_uuid} to {remote.name}"], PUSHED: 1}
    staging.drop(doing.plan.project, lambda entry: entry.key == run_uuid)
    return said


def warn_newer_reads(session: SyncSession, todo: list[Output | queries.Located]) -> None:
    """A warning line per input of the runs about to be pushed that the remote holds in a
    newer version: the push goes on. A remote that does not answer is the items' to say."""
    if not todo:
        return
    with contextlib.suppress(FdpError):
        for line in newer_than_read(session, todo):
            log.warning("%s", line)


def newer_than_read(session: SyncSession, todo: list[Output | queries.Located]) -> list[str]:
    """One line per data product that the runs about to be pushed read, of which the remote
    holds a newer version than the newest they read: not a conflict, but worth knowing."""
    plan, store = session.plan, session.records
    remote = session.remote()
    staged_products = staged_for_push(plan).staged
    wanted: set[int] = set()
    staged_components: list[int] = []
    for page in located_pages(session, todo):
        for found in page:
            components = found.object.get("components") or []
            wanted.update(components)
            if str(found.ref) in staged_products:  # made by a run of another config, maybe
                staged_components += components
    runs: dict[int, Any] = {}
    uuids = [u for run_uuids in iter_run_uuids(plan.runs_log) for u in run_uuids]
    uuids += [e.key for e in staging.staged(plan.project) if e.kind == staging.RUN]
    for run_uuid in dict.fromkeys(uuids):
        for run in store.find("code_run", {"uuid": run_uuid}, limit=1):
            runs[run["id"]] = run
    if staged_components:
        runs.update((r["id"], r) for r in Lineage(store).runs_that_made(staged_components))
    inputs = [c for run in runs.values() if wanted & set(run["outputs"]) for c in run["inputs"]]
    components = queries.get_many(store, "object_component", inputs)
    objects = queries.get_many(store, "object", [c["object"] for c in components.values()])
    products = queries.get_many(
        store, "data_product", [p for o in objects.values() for p in o["data_products"]]
    )
    read: dict[tuple[str, str], Version] = {}
    for found in queries.locate_many(store, list(products.values())):
        ref = found.ref
        key = (ref.namespace, ref.name)
        read[key] = max(read.get(key, ref.version), ref.version)
    pinned = {(r.namespace, r.name): r for r in plan.reads if r.pinned}
    lines = []
    for (namespace, name), version in sorted(read.items()):
        there = session.remote_products(remote, namespace).versions(name)
        top = latest(there)
        newest = Version.parse(top) if top else None
        if newest is None or newest <= version:
            continue
        if (namespace, name) in pinned:
            then = f"it is pinned in {plan.cfg.file} ({pinned[(namespace, name)].key})"
        else:
            then = "fdp update moves to it"
        lines.append(
            f"remote {remote.name} has {namespace}:{name}@{newest}, newer than the {version} "
            f"this run read; {then}"
        )
    return lines


class PushLedger:
    """What this project pushed where, with the SHA-1: an append-only JSON-lines file.

    It spares the per-item hash look-ups on the remote when nothing changed; presence on the
    remote is still checked (one listing per namespace), so a remote that lost an entry is
    noticed.
    """

    def __init__(self, path: Path, readonly: bool = False):
        """`readonly`: remember nothing new (for commands that only look)."""
        self.path = path
        self.readonly = readonly
        # by remote, then by product, each remote's entries read when it is first asked
        # about (a project that pushed to many remotes holds those of the one in use), and
        # each SHA-1 as its 20 bytes: a third of what a (remote, ref) -> text entry holds
        self._entries: dict[str, dict[str, bytes | str]] = {}
        self._lock = threading.Lock()  # push items record from doit's worker threads

    def _of(self, remote: str) -> dict[str, bytes | str]:
        if remote in self._entries:
            return self._entries[remote]
        self._entries[remote] = {}
        named = f'"remote": {json.dumps(remote)},'  # as `record` writes it, else decoded
        with contextlib.suppress(FileNotFoundError), open(self.path, encoding="utf-8") as fh:
            for line in fh:
                if named not in line and line.startswith('{"remote": '):
                    continue  # another remote's
                try:
                    row = json.loads(line)
                    if row["remote"] == remote:
                        self._remember(remote, row["ref"], row["sha1"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a crash
        return self._entries[remote]

    def _remember(self, remote: str, ref: str, sha1: str) -> None:
        packed: bytes | str = sha1
        with contextlib.suppress(ValueError):
            raw = bytes.fromhex(sha1)
            packed = raw if raw.hex() == sha1 else sha1  # kept as written, whatever it is
        self._entries[remote][ref] = packed

    def pushed(self, remote: str, ref: str) -> str | None:
        with self._lock:
            found = self._of(remote).get(ref)
        return found.hex() if isinstance(found, bytes) else found

    def record(self, remote: str, ref: str, sha1: str) -> None:
        """One whole line per entry, appended (O_APPEND), so the lines of doit's worker
        processes never mix."""
        if self.pushed(remote, ref) == sha1 or self.readonly:
            return
        with self._lock:
            self._remember(remote, ref, sha1)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"remote": remote, "ref": ref, "sha1": sha1}) + "\n")


_LEDGERS: dict[tuple[int, Path], PushLedger] = {}
_LEDGERS_LOCK = threading.Lock()


def push_ledger(plan: Plan) -> PushLedger:
    """The push ledger of a config, read once per process."""
    key = (os.getpid(), plan.state_dir / "pushed.jsonl")
    with _LEDGERS_LOCK:
        if key not in _LEDGERS:
            _LEDGERS[key] = PushLedger(key[1])
        return _LEDGERS[key]


def on_remote(
    session: SyncSession, found: queries.Located | Output, ledger: PushLedger
) -> bool:
    """The remote holds this data product, with the same SHA-1."""
    remote = session.remote()
    ref = found.ref
    theirs = session.remote_product(remote, ref)
    if theirs is None:
        return False
    if ledger.pushed(remote.url, str(ref)) == found.hash:
        return True
    if queries.listed_hash(remote.registry, theirs) != found.hash:
        return False
    if found.hash is not None:
        ledger.record(remote.url, str(ref), found.hash)
    return True


def preflight_push(
    session: SyncSession, dirty: bool = False, items: list[Output | queries.Located] | None = None
) -> None:
    """What would fail every item, found once before any item is sent: uncommitted changes
    (as the reference, no push from a dirty tree), a remote that cannot be reached, or one
    that cannot take files. A conflict of one item is that item's own failure."""
    if session.push_checked:
        return
    plan = session.plan
    refuse_dirty(plan.local_repo, dirty)
    ledger = push_ledger(plan)
    items = session_pushable(session) if items is None else items
    first = next((found for found in items if not on_remote(session, found, ledger)), None)
    if first is not None:
        session.ensure_identity()
        with contextlib.suppress(OutOfSync):  # the push task itself reports the conflict
            session.pusher(session.remote(write=True)).preflight(first.product_id)
    session.push_checked = True


def _push_checked(
    session: SyncSession, dirty: bool, items: list[Output | queries.Located] | None = None
) -> Remote:
    """The remote to push to, once what would fail every item is ruled out; a remote that
    cannot be used fails every later item of this process at once, with the same words.
    `items`: `pushable_outputs`, when the caller has them already."""
    if session.push_broken:
        raise FdpError(session.push_broken)
    try:
        preflight_push(session, dirty, items)
        return session.remote(write=True)
    except FdpError as exc:
        session.push_broken = str(exc)
        raise


def push_files(config: str, remote_name: str | None, dirty: bool, jobs: int) -> Any:
    """The bytes phase of a push (the `_push_files` task's action): every file the items
    that are not on the remote need, uploaded on `jobs` threads before any record is
    written. Content addressing makes a second upload of the same bytes harmless. A file
    that fails here fails the items that need it, each in its own task."""
    doing = SyncSession.for_process(config, remote_name)
    try:
        items = session_pushable(doing)  # as the graph listed them
        remote = _push_checked(doing, dirty, items)
        ledger = push_ledger(doing.plan)
        waiting = [f for f in items if not on_remote(doing, f, ledger)]
        warn_newer_reads(doing, waiting)  # here: the one task of a push that runs once
        pusher = doing.pusher(remote)
    except (FdpError, OSError) as exc:
        log.debug("push_files: %s", exc)  # every item fails with it, in its own words
        return None
    found = 0  # files found so far; the bar counts one for each product not yet looked at
    with Bar("uploading", total=len(waiting)) as bar:
        for start in range(0, len(waiting), PAGE):
            page = [f.product_id for f in waiting[start : start + PAGE]]
            try:
                files = pusher.files(pusher.without_conflicts(page))
            except (FdpError, OSError) as exc:
                log.debug("push_files: %s", exc)  # the page's items say it themselves
                continue
            found += len(files)
            bar.set_total(found + max(0, len(waiting) - start - PAGE))
            # a page's closures may hold every file of a run: uploaded a page at a time too
            for first in range(0, len(files), PAGE):
                failed = pusher.upload_files(
                    files[first : first + PAGE], jobs, bar.bytes_callback(), bar.step
                )
                for location_id, why in failed.items():
                    log.debug("upload of storage location %s failed: %s", location_id, why)
    return None


def push_item(
    config: str, remote_name: str | None, dirty: bool, product_id: int, sha1: str | None
) -> Any:
    """A push item's action: the records of one data product's closure, in foreign-key
    order with the data product last, while holding the remote's records lock. A module
    function with plain arguments, so doit's process runner can hand it to a worker."""
    return _guard(_push_one, SyncSession.for_process(config, remote_name), dirty, product_id, sha1)


def _send(
    doing: SyncSession, remote: Remote, product_id: int, ref: ProductRef, sha1: str | None
) -> list[tuple[ProductRef, Record]]:
    """One data product's closure to the remote, while holding its records lock, then
    listed and in the push ledger: what a push item and each product of a page do."""
    with doing.records_lock(remote.url):
        pushed = doing.pusher(remote).push_product(product_id)
    doing.note_pushed(remote, pushed)
    if sha1 is not None:
        push_ledger(doing.plan).record(remote.url, str(ref), sha1)
    return pushed


def _push_one(
    doing: SyncSession, dirty: bool, product_id: int, sha1: str | None
) -> dict[str, Any]:
    remote = _push_checked(doing, dirty)
    plan = doing.plan
    ref = queries.locate(doing.records, doing.records.get("data_product", product_id)).ref
    pushed = _send(doing, remote, product_id, ref, sha1)
    others = [str(other) for other, _ in pushed if other != ref]
    more = len(others)
    unstage_pushed(plan, remote.url, push_ledger(plan), [ref, *(other for other, _ in pushed)])
    line = f"pushed {ref} to {remote.name}" + (
        f", with {more} other product(s) of its provenance" if more > 0 else ""
    )
    return {REPORT: [line], PUSHED: 1, CARRIED: others}


class PageFailed(FdpError):
    """Some products of a page of push items failed; the rest were pushed. Says each one's
    reason, and ends the command with the gravest of their exit codes."""

    def __init__(self, pushed: int, failures: list[tuple[str, FdpError | OSError]]):
        # one line per reason: the products of one run fail together, on the same one
        refs: dict[str, list[str]] = {}
        for ref, exc in failures:
            why = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
            refs.setdefault(why, []).append(ref)
        super().__init__(
            "\n".join(
                f"{names[0]}{f' and {len(names) - 1} more' if len(names) > 1 else ''}: {why}"
                for why, names in refs.items()
            )
        )
        self.exit_code = max(getattr(exc, "exit_code", 1) for _, exc in failures)
        self.counts = {PUSHED: pushed, "failed": len(failures)}


def push_page(
    config: str, remote_name: str | None, dirty: bool, products: list[tuple[int, str | None]]
) -> Any:
    """The action of a page of push items (a push of more than `PAGE` data products): each
    product's closure as `push_item` sends it, one after another, a failure failing that
    product alone. `products`: (data product id, SHA-1) of each."""
    return _guard(_push_page, SyncSession.for_process(config, remote_name), dirty, products)


def _push_page(
    doing: SyncSession, dirty: bool, products: list[tuple[int, str | None]]
) -> dict[str, Any]:
    remote = _push_checked(doing, dirty)
    plan, records = doing.plan, doing.records
    found = records.get_many("data_product", [pid for pid, _ in products])
    refs = {f.product["id"]: f.ref for f in queries.locate_many(records, list(found.values()))}
    done: list[ProductRef] = []
    failures: list[tuple[str, FdpError | OSError]] = []
    for product_id, sha1 in products:
        ref = refs[product_id]
        try:
            _send(doing, remote, product_id, ref, sha1)
        except (FdpError, OSError) as exc:
            failures.append((str(ref), exc))
            continue
        done.append(ref)
    unstage_pushed(plan, remote.url, push_ledger(plan), done)
    if failures:
        raise PageFailed(len(done), failures)
    return {
        REPORT: [f"pushed {len(done)} data products ({done[0]} .. {done[-1]}) to {remote.name}"],
        PUSHED: len(done),
    }


def push_tasks(
    plan: Plan, session: SessionFor, dirty: bool = False, jobs: int = 1
) -> Iterator[Task]:
    yield {
        "basename": "push",
        "name": None,
        "doc": "copy the run's outputs and their provenance to the remote",
        "task_dep": [PUSH_FILES],  # first, so the items then run in the order listed
    }
    ledger = push_ledger(plan)
    doing = session()
    config, remote_name = str(plan.cfg.path), doing.remote_name

    def pushed_already(found: Output | queries.Located) -> bool:
        if doing.push_broken:
            return False
        try:
            there = on_remote(doing, found, ledger)
        except FdpError as exc:
            doing.push_broken = str(exc)
            return False
        if there:  # staged, and on the remote already: it leaves the staging list
            unstage_pushed(plan, doing.remote().url, ledger, [found.ref])
        return there

    items = session_pushable(doing)
    yield {
        "basename": PUSH_FILES,
        "doc": "upload the files of what is to be pushed, in parallel, before any record",
        "actions": [(push_files, [config, remote_name, dirty, jobs])],
        "uptodate": [
            lambda: _unless_unknown(lambda: all(pushed_already(found) for found in items))
        ],
        "verbosity": 2,
    }
    yield from staged_run_tasks(plan, remote_name, dirty)
    if len(items) > PAGE:
        yield from _page_tasks(items, pushed_already, [config, remote_name, dirty])
        return
    for found in items:
        yield {
            "basename": "push",
            "name": str(found.ref),
            "doc": f"copy {found.ref} and its provenance to the remote",
            "actions": [
                (push_item, [config, remote_name, dirty, found.product_id, found.hash])
            ],
            "task_dep": [PUSH_FILES],
            "uptodate": [lambda found=found: _unless_unknown(pushed_already, found)],
            "verbosity": 2,
        }


def _page_tasks(
    items: list[Output | queries.Located],
    pushed_already: Callable[[Output | queries.Located], bool],
    args: list[Any],
) -> Iterator[Task]:
    """A push of more than `PAGE` data products: a task per page of them, named by its
    first product and how many follow (`push:lab:results/part0000@0.0.1+499`), since doit
    keeps every task it is given, some kilobytes each. A page is up to date if every one of
    its products was on the remote when the push began: a page whose products an earlier
    page's runs carried still runs, finds them there, and counts them as pushed."""
    pages = [items[start : start + PAGE] for start in range(0, len(items), PAGE)]
    lock = threading.Lock()
    before: list[bool] = []

    def page_pushed(index: int) -> bool:
        with lock:
            if not before:  # asked once, of every page, before any page's action runs
                states = [all(pushed_already(found) for found in page) for page in pages]
                before.extend(states)
            return before[index]

    for index, page in enumerate(pages):
        first, last = page[0].ref, page[-1].ref
        yield {
            "basename": "push",
            "name": f"{first}+{len(page) - 1}",
            "doc": f"copy {len(page)} data products ({first} .. {last}) and their provenance",
            "actions": [(push_page, [*args, [(f.product_id, f.hash) for f in page]])],
            "task_dep": [PUSH_FILES],
            "uptodate": [lambda index=index: _unless_unknown(page_pushed, index)],
            "meta": {PRODUCTS: len(page)},
            "verbosity": 2,
        }


# ----------------------------------------------------------------- the module
def default_jobs() -> int:
    """Files a push or pull moves at once when nothing says: transfers wait on the
    network, not the processor, so a few per core, and at most 8."""
    return min(8, 4 * (os.cpu_count() or 1))


def transfer_jobs(plan: Plan, jobs: int | None = None) -> int:
    """`--jobs` (or `doit jobs=N`) if given, else the project's `jobs` setting (checked
    when the settings were read), else `default_jobs()`."""
    if jobs is not None:
        return jobs
    setting = plan.project.settings.get("jobs")
    return int(setting) if setting else default_jobs()


def dodo_namespace(
    config_path: str,
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    jobs: int | None = None,
    executor: Executor | str | None = None,
) -> dict[str, Any]:
    """Everything a dodo.py needs: DOIT_CONFIG and the task generators for one config.

    `dirty` lets the job run, and push send, from a repository with uncommitted changes
    (the run is then recorded as dirty). `jobs`: files moved at once by a push or pull
    (default: the `jobs` setting, else `default_jobs()`). The namespace holds the
    command's `session` too: whoever runs doit on it closes it when doit is done.
    `executor`: where jobs run, an `Executor` (shared by the configs of one graph) or its
    name (default: the project's `executor` setting, else here)."""
    opened = SyncSession.for_config(config_path, remote_name=remote)
    plan = opened.plan
    runner = executor if isinstance(executor, Executor) else executor_for(plan.project, executor)
    opened.share(plan.cfg.path)
    transfers = transfer_jobs(plan, jobs)

    def session() -> SyncSession:
        """The one session every task of this command shares (in each worker of doit's
        process runner, the worker's own)."""
        if opened.pid == os.getpid():
            return opened
        return SyncSession.for_process(plan.cfg.path, remote)

    # Resolved now, so that a config problem ends the command with one line, not in a
    # task generator's traceback.
    plan.registers  # noqa: B018
    plan.reads  # noqa: B018

    # The docstrings are what `doit list` shows for tasks created later (create_after).
    def task_register() -> Iterator[Task]:
        """register the config's namespaces, authors and files locally"""
        yield from register_tasks(plan, session, refresh)

    def task_pull() -> Iterator[Task]:
        """fetch the data products the config reads from the remote"""
        yield from pull_tasks(plan, session, refresh, transfers)

    # No `creates`: `doit run` still makes the job after the pulls, while `doit clean` and
    # `doit list` make it at once, so that its `clean` runs (a placeholder has none).
    @create_after(executed="pull")
    def task_job() -> Task:
        """run the script with the FDP environment, if what it depends on changed"""
        try:
            return run_task(plan, session, force, dirty, serve, wait, runner)
        except FdpError as exc:  # planned after the pulls: fail the task, not doit
            failure = TaskFailure(exc)
            return {
                "basename": "job",
                "doc": "run the script with the FDP environment, if what it depends on changed",
                "actions": [lambda: failure],
                "task_dep": ["pull"],
            }

    # only when asked for: pushing never runs anything first
    @create_after()
    def task_push() -> Iterator[Task]:
        """copy the run's outputs and their provenance to the remote"""
        yield from push_tasks(plan, session, dirty, transfers)

    @create_after(creates=["prov"])  # only when asked for, as push
    def task_prov() -> Iterator[Task]:
        """write the provenance of the config's outputs (PROV-JSON, svg) under .fdp"""
        from fdp_tasks.graph.prov_tasks import prov_tasks  # only when asked for

        yield from prov_tasks(plan)

    @create_after(creates=["reproduce"])  # only when asked for, as prov
    def task_reproduce() -> Iterator[Task]:
        """rebuild outputs from their recorded code runs in a scratch registry, bit for bit"""
        from fdp_tasks.graph.reproduce_tasks import reproduce_tasks  # only when asked for

        yield from reproduce_tasks(plan, serve, remote)

    ignore_state(plan.project.state_dir)  # however the project began: no `fdp init` needed
    plan.state_dir.mkdir(parents=True, exist_ok=True)
    return {
        "DOIT_CONFIG": {
            "default_tasks": ["register", "pull", "job"],
            "dep_file": str(plan.state_dir / "doit.db"),
            "backend": "sqlite3",
            "verbosity": 2,
            "reporter": FdpReporter,
        },
        "task_register": task_register,
        "task_pull": task_pull,
        "task_job": task_job,
        "task_push": task_push,
        "task_prov": task_prov,
        "task_reproduce": task_reproduce,
        "plan": plan,
        "session": opened,
    }
