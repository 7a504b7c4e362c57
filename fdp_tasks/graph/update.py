"""`fdp update`: move a config's unpinned reads to the newest versions on the remote.

An unpinned read takes the newest version in the local registry, so moving it is pulling
the remote's newest: the next run reads it (and so runs again). A pinned read is the user's
choice and is left alone, with a line saying so. Each change is said as
`ns:name 1.0.0 -> 1.1.0`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fdp_tasks.graph.session import SyncSession
from fdp_tasks.progress import Tally
from fdp_tasks.remotes.sync import NonCanonicalName
from fdp_tasks.store import queries
from fdp_tasks.versions import Version, latest

log = logging.getLogger(__name__)


@dataclass
class Update:
    """What `fdp update` did (or, dry, would do): one line per read, and a tally."""

    lines: list[str] = field(default_factory=list)
    tally: Tally = field(
        default_factory=lambda: Tally(["updated", "to update", "up to date", "pinned"])
    )


def update_reads(path: Path, remote_name: str | None = None, dry_run: bool = False) -> Update:
    """Pull the newest remote version of every name an unpinned read of the config takes;
    `dry_run` only says what would move, and changes nothing."""
    with SyncSession.for_config(path, remote_name=remote_name, readonly=dry_run) as session:
        plan = session.plan
        done = Update()
        if not plan.reads:
            done.lines.append(f"{plan.cfg.file} reads nothing from a remote")
            return done
        remote = session.remote()
        for read in plan.reads:
            if read.pinned:
                done.lines.append(
                    f"{read.label}: pinned ({plan.cfg.file}: {read.key}), left as it is"
                )
                done.tally.add("pinned")
                continue
            newest = dict(session.remote_newest(remote, read))
            if not newest:
                done.lines.append(f"{read.label}: nothing on remote {remote.name} matches it")
                done.tally.add("not on the remote")
                continue
            listing = session.remote_products(remote, read.namespace)
            for name, version in newest.items():
                here = latest(queries.product_versions(plan.store, read.namespace, name))
                label = f"{read.namespace}:{name}"
                if here is not None and Version.parse(here) >= Version.parse(version):
                    done.lines.append(f"{label} {here}: the newest on {remote.name}")
                    done.tally.add("up to date")
                    continue
                if not dry_run:
                    session.ensure_identity()
                    try:
                        with session.records_lock("local"):
                            session.puller(remote).pull(
                                read.product(name, version), listing[(name, version)]
                            )
                    except NonCanonicalName as exc:
                        log.warning("%s", exc)  # a glob matched it: go on with the rest
                        continue
                move = f"{label} {here or '(none)'} -> {version}"
                done.lines.append(move + (" (dry run: nothing pulled)" if dry_run else ""))
                done.tally.add("to update" if dry_run else "updated")
        return done
