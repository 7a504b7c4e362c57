"""What `doit` would do for each task of a config, and why, without doing any of it.

The rows use exactly the tasks' own up-to-date checks, so `fdp status` and `fdp run` always
agree; nothing is created or remembered (a remote that is not there reads as empty). The plan
says what is here; a read-only session asks the remote what it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fdp_tasks.catalog.register import item_label, register_problem
from fdp_tasks.config.resolve import script_paths
from fdp_tasks.errors import ConfigError, FdpError
from fdp_tasks.graph.plan import Output, Plan, ReadItem, explain_change
from fdp_tasks.graph.session import SyncSession
from fdp_tasks.graph.tasks import PushLedger, on_remote, pushable_outputs, staged_for_push
from fdp_tasks.job import refuse_dirty, runs_summary
from fdp_tasks.store import queries
from fdp_tasks.versions import Version


def _row(task: str, up_to_date: bool, reason: str = "", **extra: Any) -> dict[str, Any]:
    row = {"task": task, "state": "up-to-date" if up_to_date else "will-run", **extra}
    if reason:
        row["reason"] = reason
    return row


def job_row(plan: Plan, reads_ok: bool, dirty: bool = False) -> dict[str, Any]:
    """The job as `fdp run` sees it: first whether it would run at all (exactly the task's
    up-to-date check), and only then whether it would fail."""
    if not reads_ok:
        return _row("job", False, "inputs missing locally")
    try:
        _, last = runs_summary(plan.runs_log)
        reason = "never run" if last is None else None
        if last is not None:
            parts = plan.run_inputs()
            if last.get("signature") != plan.run_signature(parts):
                reason = explain_change(last.get("depends_on") or {}, parts)
            elif not plan.outputs_intact(last.get("code_runs") or []):
                reason = "an output of the last run is missing or modified"
        if reason is None:
            return _row("job", True)
        # e.g. a pinned write version that exists already, or an input not pulled
        working = plan.working(resolve_writes=True, require_inputs=True)
        refuse_dirty(plan.local_repo, dirty, list(script_paths(working["run_metadata"]).values()))
    except FdpError as exc:
        problems = exc.problems if isinstance(exc, ConfigError) else [str(exc)]
        return {"task": "job", "state": "will-fail", "reason": problems[0]}
    return _row("job", False, reason)


def newer_on_remote(session: SyncSession, read: ReadItem) -> str | None:
    """For an unpinned read: what the remote has that is newer than the local copy."""
    local = {
        p["name"]: Version.parse(p["version"])
        for p in queries.latest_products(session.plan.store, read.namespace, read.name)
    }
    newer = [
        f"{read.namespace}:{name}@{version}"
        for name, version in session.remote_newest(session.remote(), read)
        if name not in local or local[name] < Version.parse(version)
    ]
    return f"the remote has {', '.join(newer)}" if newer else None


def missing_read(
    session: SyncSession,
    read: ReadItem,
    row: dict[str, Any],
    ask: bool,
    remote_error: str | None,
) -> str | None:
    """A read that is not here: will it fail (no remote, or a pinned version the remote
    lacks)? Returns the remote's error, once it has one, so it is not asked again."""
    try:
        remote = session.remote()
    except FdpError as exc:
        row.update(
            state="will-fail",
            reason=f"{read.key}: not in the local registry, and no remote to pull it from: {exc}",
        )
        return remote_error
    if not (ask and read.pinned and remote_error is None):
        return remote_error
    try:
        listed = session.remote_products(remote, read.namespace)
    except FdpError as exc:
        return str(exc).splitlines()[0]
    if (read.name, read.version) not in listed:
        row.update(
            state="will-fail",
            reason=f"{read.key}: not in the local registry, nor on remote {remote.name}",
        )
    return remote_error


def collect(
    path: Path, remote: bool = True, remote_name: str | None = None, dirty: bool = False
) -> list[dict[str, Any]]:
    """One row per task of the config; reads only (nothing is created or remembered)."""
    with SyncSession.for_config(path, remote_name=remote_name, readonly=True) as session:
        return task_rows(session, remote, dirty)


def task_rows(session: SyncSession, remote: bool, dirty: bool) -> list[dict[str, Any]]:
    """The rows of `collect`, from the plan and, if `remote`, what the remote holds."""
    plan = session.plan
    rows = []
    for item in plan.registers:
        problem = register_problem(plan.store, plan.data, item)
        row = _row(f"register:{item_label(item)}", problem is None, problem or "")
        if problem and "source file changed" in problem:
            row["state"] = "will-fail"  # the register action refuses it: a new version is due
        rows.append(row)
    reads_ok = True
    remote_error = None
    for read in plan.reads:
        ok = plan.read_present(read)
        reads_ok &= ok
        row = _row(f"pull:{read.label}", ok, "" if ok else "not in the local registry")
        if not ok:
            remote_error = missing_read(session, read, row, remote, remote_error)
        elif remote and not read.pinned and remote_error is None:
            try:
                newer = newer_on_remote(session, read)
            except FdpError as exc:
                remote_error = str(exc).splitlines()[0]
                newer = None
            if newer:
                row.update(state="remote-newer", reason=f"{newer}: `fdp update` moves to it")
        rows.append(row)
    if plan.has_script:
        rows.append(job_row(plan, reads_ok, dirty))
    rows += push_rows(session, remote, remote_error)
    return rows


def push_rows(session: SyncSession, remote: bool, remote_error: str | None) -> list[dict[str, Any]]:
    """One row per item a push sends: the config's outputs and what is staged (marked
    `staged`), each pushed, local-only or in conflict with the remote."""
    plan = session.plan
    ledger = PushLedger(plan.state_dir / "pushed.jsonl", readonly=True)
    staged = staged_for_push(plan)
    rows = []
    for found in pushable_outputs(plan):
        row: dict[str, Any] = {"task": f"push:{found.ref}", "hash": found.hash}
        if str(found.ref) in staged.staged:
            row["staged"] = True
        if not remote:
            row["state"] = "unknown"
        elif remote_error:
            row["state"], row["reason"] = "unknown", remote_error
        else:
            try:
                row.update(push_state(session, found, ledger))
            except FdpError as exc:  # no remote, or one that cannot be reached
                remote_error = str(exc).splitlines()[0]
                row["state"], row["reason"] = "unknown", remote_error
        rows.append(staged_state(row))
    for run_uuid in staged.runs:
        row = {"task": f"push:run:{run_uuid}", "staged": True, "state": "unknown"}
        if remote and not remote_error:
            try:
                there = session.remote().registry.find("code_run", {"uuid": run_uuid}, limit=1)
                row["state"] = "pushed" if there else "local-only"
            except FdpError as exc:
                remote_error = str(exc).splitlines()[0]
                row["reason"] = remote_error
        rows.append(staged_state(row))
    return rows


def push_state(
    session: SyncSession, found: queries.Located | Output, ledger: PushLedger
) -> dict[str, str]:
    """Whether the remote holds this product: with our content (pushed), with other
    content (conflict: the push refuses it), or not at all (local-only)."""
    if on_remote(session, found, ledger):
        return {"state": "pushed"}
    theirs = session.remote_product(session.remote(), found.ref)
    if theirs is None:
        return {"state": "local-only"}
    their_hash = queries.locate(session.remote().registry, theirs).hash
    return {
        "state": "conflict",
        "reason": f"the remote holds other content (SHA-1 {their_hash}, ours {found.hash}): "
        "`fdp pull`, write a new version, then push",
    }


def staged_state(row: dict[str, Any]) -> dict[str, Any]:
    """A staged item the next push sends (not on the remote, or not asked) reads `staged`."""
    if row.get("staged") and row["state"] in ("local-only", "unknown"):
        row["state"] = "staged"
        row.setdefault("reason", "staged: `fdp push` sends it, `fdp unstage` takes it back")
    return row
