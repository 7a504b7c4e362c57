"""The config compiled into doit tasks.

    register:<item>   fetch root+path, hash, register        target: the registry entry + file
    pull:<item>       copy a data product from the remote    target: the registry entry + file
    job               run the script with the FDP env        target: the code run's outputs
    push:<item>       copy an output and its provenance      target: the remote's entry

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
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit import create_after
from doit.tools import config_changed

from fdp_tasks.catalog.register import item_label, register_item, registered_product
from fdp_tasks.datastore import local_root
from fdp_tasks.errors import FdpError, OutOfSync
from fdp_tasks.graph.plan import Plan, ReadItem
from fdp_tasks.graph.report import FdpReporter, TaskFailure
from fdp_tasks.graph.session import SessionFor, SyncSession
from fdp_tasks.job import ServeRegistry, past_runs, refuse_dirty, run_job
from fdp_tasks.remotes.sync import NonCanonicalName
from fdp_tasks.store import queries

log = logging.getLogger(__name__)

Task = dict[str, Any]


def _guard(func: Any, *args: Any) -> Any:
    """Run an action; an FdpError, or an OSError such as a full disk, fails the task in one
    line with its exit code."""
    try:
        func(*args)
    except (FdpError, OSError) as exc:
        return TaskFailure(exc)
    return None


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
                lambda item=item: (
                    registered_product(plan.store, plan.data, item)
                    and not (refresh and "root" in item and local_root(item["root"]) is None)
                )
            ],
            "verbosity": 2,
        }


# ------------------------------------------------------------------------ pull
def _pull_one(plan: Plan, session: SyncSession, item: ReadItem) -> None:
    session.ensure_identity()
    try:
        remote = session.remote()
    except FdpError as exc:
        raise FdpError(
            f"{plan.cfg.file}: {item.key}: {item.label} is not in the local registry, and "
            f"there is no remote to pull it from: {exc}"
        ) from None
    listing = session.remote_products(remote, item.namespace)
    if item.pinned:
        wanted = {item.name: item.version}
    else:
        wanted = session.remote_newest(remote, item)
        if not wanted:
            raise FdpError(
                f"{plan.cfg.file}: {item.key}: {item.label} matches nothing on remote {remote.name}"
            )
    fetched = 0
    for name, version in wanted.items():
        ref = item.product(name, version)
        if plan.product_intact(ref):
            continue  # already here: asking the remote was only about newer versions
        product = listing.get((ref.name, ref.version_text))
        if product is None:
            raise FdpError(
                f"{plan.cfg.file}: {item.key}: {ref} is not on remote {remote.name} ({remote.url})"
            )
        try:
            found = session.puller(remote).pull(ref, product)
        except NonCanonicalName as exc:
            if item.pinned:
                raise
            log.warning("%s", exc)  # a glob matched it: go on with the rest
            continue
        fetched += 1
        print(f"pulled {ref} (SHA-1 {str(found.hash)[:12]})")
    if not fetched:
        print(f"{item.label}: nothing newer on {remote.name}")


def pull_tasks(plan: Plan, session: SessionFor, refresh: bool = False) -> Iterator[Task]:
    yield {
        "basename": "pull",
        "name": None,
        "task_dep": ["register"],
        "doc": "fetch the data products the config reads from the remote",
    }
    for item in plan.reads:
        yield {
            "basename": "pull",
            "name": item.label,
            "doc": f"fetch {item.label} and the records of the run that made it",
            "actions": [lambda item=item: _guard(lambda: _pull_one(plan, session(), item))],
            "uptodate": [
                lambda item=item: (not refresh or item.pinned) and plan.read_present(item)
            ],
            "verbosity": 2,
        }


# ------------------------------------------------------------------------- run
def _outputs_intact(plan: Plan) -> Any:
    def check(task: Any, values: dict[str, Any]) -> bool:
        runs = values.get("code_runs")
        return runs is not None and plan.outputs_intact(runs)

    return check


def run_task(
    plan: Plan,
    session: SessionFor,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
) -> Task:
    parts = plan.run_inputs() if plan.has_script else {}
    signature = plan.run_signature(parts) if plan.has_script else None

    def action() -> Any:
        try:
            return run_job(
                plan.project,
                plan.runs_log,
                plan.job_working,
                {"signature": signature, "depends_on": parts},
                allow_dirty=dirty,
                verify=lambda runs: session().verify_outputs(runs),
                serve=serve,
            )
        except (FdpError, OSError) as exc:
            return TaskFailure(exc)

    if not plan.has_script:
        return {
            "basename": "job",
            "actions": None,
            "task_dep": ["pull"],
            "doc": "nothing to run: the config has no script",
        }
    return {
        "basename": "job",
        "doc": "run the script with the FDP environment, if what it depends on changed",
        "actions": [action],
        "task_dep": ["pull"],
        # `force`: modules the script imports are not tracked; this reruns it anyway
        "uptodate": [config_changed(signature), _outputs_intact(plan), not force],
        "verbosity": 2,
    }


# ------------------------------------------------------------------------ push
def pushable(plan: Plan) -> list[queries.Located]:
    """The outputs of every run this project made, newest version of each name last."""
    seen: dict[str, queries.Located] = {}
    for record in past_runs(plan.runs_log):
        for found in plan.outputs_of(record.get("code_runs") or []) or []:
            seen[str(found.ref)] = found
    return list(seen.values())


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
        self.entries: dict[tuple[str, str], str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.entries[(row["remote"], row["ref"])] = row["sha1"]
                except (ValueError, KeyError):
                    continue  # a line cut short by a crash

    def pushed(self, remote: str, ref: str) -> str | None:
        return self.entries.get((remote, ref))

    def record(self, remote: str, ref: str, sha1: str) -> None:
        if self.entries.get((remote, ref)) == sha1 or self.readonly:
            return
        self.entries[(remote, ref)] = sha1
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"remote": remote, "ref": ref, "sha1": sha1}) + "\n")


def on_remote(session: SyncSession, found: queries.Located, ledger: PushLedger) -> bool:
    """The remote holds this data product, with the same SHA-1."""
    remote = session.remote()
    ref = found.ref
    theirs = session.remote_product(remote, ref)
    if theirs is None:
        return False
    if ledger.pushed(remote.url, str(ref)) == found.hash:
        return True
    if queries.locate(remote.registry, theirs).hash != found.hash:
        return False
    if found.hash is not None:
        ledger.record(remote.url, str(ref), found.hash)
    return True


def preflight_push(session: SyncSession, dirty: bool = False) -> None:
    """What would fail every item, found once before any item is sent: uncommitted changes
    (as the reference, no push from a dirty tree), a remote that cannot be reached, or one
    that cannot take files. A conflict of one item is that item's own failure."""
    if session.push_checked:
        return
    plan = session.plan
    refuse_dirty(plan.local_repo, dirty)
    ledger = PushLedger(plan.state_dir / "pushed.jsonl")
    todo = [found for found in pushable(plan) if not on_remote(session, found, ledger)]
    if todo:
        session.ensure_identity()
        with contextlib.suppress(OutOfSync):  # the push task itself reports the conflict
            session.pusher(session.remote(write=True)).preflight(todo[0].product["id"])
    session.push_checked = True


def push_tasks(plan: Plan, session: SessionFor, dirty: bool = False) -> Iterator[Task]:
    yield {
        "basename": "push",
        "name": None,
        "doc": "copy the run's outputs and their provenance to the remote",
    }
    ledger = PushLedger(plan.state_dir / "pushed.jsonl")
    broken: list[str] = []  # why the remote cannot be used: every item fails fast with it

    def pushed_already(found: queries.Located) -> bool:
        if broken:
            return False
        try:
            return on_remote(session(), found, ledger)
        except FdpError as exc:
            broken.append(str(exc))
            return False

    def push(found: queries.Located) -> None:
        if broken:
            raise FdpError(broken[0])
        doing = session()
        try:
            preflight_push(doing, dirty)
        except FdpError as exc:
            broken.append(str(exc))
            raise
        remote = doing.remote(write=True)
        ref = found.ref
        pushed = doing.pusher(remote).push_product(found.product["id"])
        doing.note_pushed(remote, pushed)
        more = len(pushed) - 1
        print(
            f"pushed {ref} to {remote.name}"
            + (f", with {more} other product(s) of the same runs" if more > 0 else "")
        )
        if found.hash is not None:
            ledger.record(remote.url, str(ref), found.hash)

    for found in pushable(plan):
        yield {
            "basename": "push",
            "name": str(found.ref),
            "doc": f"copy {found.ref} and its provenance to the remote",
            "actions": [lambda found=found: _guard(push, found)],
            "uptodate": [lambda found=found: pushed_already(found)],
            "verbosity": 2,
        }


# ----------------------------------------------------------------- the module
def dodo_namespace(
    config_path: str,
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
) -> dict[str, Any]:
    """Everything a dodo.py needs: DOIT_CONFIG and the task generators for one config.

    `dirty` lets the job run, and push send, from a repository with uncommitted changes
    (the run is then recorded as dirty). The namespace holds the command's `session` too:
    whoever runs doit on it closes it when doit is done."""
    opened = SyncSession.for_config(config_path, remote_name=remote)
    plan = opened.plan

    def session() -> SyncSession:
        """The one session every task of this command shares."""
        return opened

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
        yield from pull_tasks(plan, session, refresh)

    @create_after(executed="pull", creates=["job"])
    def task_job() -> Task:
        """run the script with the FDP environment, if what it depends on changed"""
        try:
            return run_task(plan, session, force, dirty, serve)
        except FdpError as exc:  # planned after the pulls: fail the task, not doit
            failure = TaskFailure(exc)
            return {
                "basename": "job",
                "doc": "run the script with the FDP environment, if what it depends on changed",
                "actions": [lambda: failure],
                "task_dep": ["pull"],
            }

    @create_after()  # only when asked for: pushing never runs anything first
    def task_push() -> Iterator[Task]:
        """copy the run's outputs and their provenance to the remote"""
        yield from push_tasks(plan, session, dirty)

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
        "plan": plan,
        "session": opened,
    }
