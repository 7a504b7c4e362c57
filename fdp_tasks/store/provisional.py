"""A job's records are provisional until the job ends: kept when it exits 0, deleted when
it fails or is killed.

A job is known by its token's digest. Every record created under that token (by the
loopback server a data-pipeline-api script talks to, or by `fdp_tasks.api` writing to the
database itself) is noted in `provisional_record` in the same transaction as the record
(`Store.provisional_as`). `keep` forgets the notes; `drop` deletes the records, newest
first, in one transaction, so the registry never holds half a run. A job whose process is
gone (`kill -9`) never got to either: `drop_dead` deletes its records, and every command
that opens the local registry calls it.
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone

import sqlalchemy as sa

from fdp_tasks.processes import pid_alive
from fdp_tasks.store.sql import Store


def this_host() -> str:
    return socket.gethostname()


def begin(store: Store, job: str, pid: int | None = None) -> None:
    """Note a job as running in process `pid` (default: this one) on this host."""
    with store.transaction() as conn:
        conn.execute(
            store.provisional_jobs.insert().values(
                digest=job,
                pid=os.getpid() if pid is None else pid,
                host=this_host(),
                started=datetime.now(timezone.utc).isoformat(),
            )
        )


def keep(store: Store, job: str) -> int:
    """The job succeeded: its records are for good. How many there were."""
    records, jobs = store.provisional_records, store.provisional_jobs
    with store.transaction() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(records).where(records.c.job == job)
        ).scalar_one()
        conn.execute(records.delete().where(records.c.job == job))
        conn.execute(jobs.delete().where(jobs.c.digest == job))
    return int(count)


def drop(store: Store, job: str) -> int:
    """The job failed or was killed: delete what it wrote, newest first, in one transaction,
    and revoke its token. A record that a settled record has come to point at meanwhile
    (another job found it and used it) stays. How many records were deleted."""
    records, jobs = store.provisional_records, store.provisional_jobs
    deleted = 0
    with store.transaction() as conn:
        notes = conn.execute(
            sa.select(records.c.type_name, records.c.record_id)
            .where(records.c.job == job)
            .order_by(records.c.id.desc())
        ).all()
        for type_name, record_id in notes:
            if type_name not in store.tables:
                continue
            try:
                with conn.begin_nested():
                    for field in store.schema[type_name].m2ms:
                        link = store.links[(type_name, field.name)]
                        conn.execute(link.delete().where(link.c.owner_id == record_id))
                    table = store.tables[type_name]
                    gone = conn.execute(table.delete().where(table.c.id == record_id))
                    deleted += gone.rowcount or 0
            except sa.exc.IntegrityError:
                continue  # referred to by a record that stays: it stays too
        conn.execute(records.delete().where(records.c.job == job))
        conn.execute(jobs.delete().where(jobs.c.digest == job))
        # the job's token too: a script its killed job left running records nothing more
        conn.execute(store.tokens.delete().where(store.tokens.c.digest == job))
    return deleted


def drop_dead(store: Store) -> int:
    """Delete the records of jobs of this host whose process is gone; how many."""
    jobs = store.provisional_jobs
    with store._reading() as conn:
        rows = conn.execute(
            sa.select(jobs.c.digest, jobs.c.pid).where(jobs.c.host == this_host())
        ).all()
    return sum(drop(store, digest) for digest, pid in rows if not pid_alive(pid))


def pending(store: Store) -> int:
    """How many provisional records there are (running or killed jobs')."""
    records = store.provisional_records
    with store._reading() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(records)).scalar_one())
