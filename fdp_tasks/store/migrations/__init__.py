"""Schema migrations of the registry store (Alembic), applied when a `Store` opens a database.

The revisions in `versions/` are the only place tables are created or changed: `Store` builds
its SQLAlchemy tables from the data model for its queries, and `tests/test_migrations.py`
checks that a database upgraded to the newest revision has exactly those tables, on SQLite
and on PostgreSQL. A database made before migrations existed (its tables, no
`alembic_version`) is recognised as revision 0001 and upgraded from there.

Opening a database at the newest revision costs one query and no import of Alembic. An
upgrade runs in one transaction, holding SQLite's write lock (foreign-key enforcement off for
the table rebuilds SQLite needs, checked before commit) or a PostgreSQL advisory lock, so
processes opening the same new database at once upgrade it once.

Adding a revision (say, namespace membership):

1. Change the data model (`schemas/registry.schema.json`) or `Store._build_tables`.
2. Add `versions/NNNN_what_it_does.py`, NNNN the next number, with `revision = "NNNN"` and
   `down_revision` the previous number. Write the change out with `op.create_table`,
   `op.add_column`, `op.create_index` ... as it is on that day: never import the live
   schema or call `create_all`, since a revision is a fixed snapshot that older databases
   replay later. On SQLite, Alembic rebuilds a table for changes SQLite cannot make in place;
   wrap those in `with op.batch_alter_table(name) as batch:` (`op.add_column` of a nullable
   column needs no batch). Move existing data in the same revision when its form changes.
3. Run `pytest tests/test_migrations.py`: it fails while the newest revision and the store's
   tables differ, and shows the difference.

Revision ids are the four-digit numbers of the file names, one after the other, so the
newest revision is known from the file names alone.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from fdp_tasks.store.base import RegistryError

HERE = Path(__file__).resolve().parent
VERSIONS = HERE / "versions"
FIRST = "0001"
# Tables of revision 0001: a database holding them without `alembic_version` predates
# migrations.
LEGACY_MARKERS = ("users", "namespace", "data_product", "auth_token")
_REVISION_FILE = re.compile(r"^(\d{4})_\w+\.py$")
_ADVISORY_LOCK = 0x46445052  # any constant shared by every process of fdp-tasks ("FDPR")


class MigrationError(RegistryError):
    """The database cannot be brought to the newest revision."""


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest revision: the highest number among the files of `versions/`."""
    numbers = [m[1] for p in VERSIONS.iterdir() if (m := _REVISION_FILE.match(p.name))]
    if not numbers:
        raise MigrationError(f"no revisions in {VERSIONS}")
    return max(numbers)


def current_revision(conn: sa.Connection) -> str | None:
    """The revision `conn`'s database is at; None when it has no `alembic_version`."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: sa.Engine) -> None:
    """Bring the database of `engine` to the newest revision (nothing to do: one query)."""
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_begin="DEFERRED")
        at = current_revision(conn)
        conn.rollback()
    if at == head_revision():
        return
    if at is not None and at > head_revision():
        where = engine.url.render_as_string(hide_password=True)
        raise MigrationError(
            f"the registry database {where} is at schema revision {at}, newer than this "
            f"fdp-tasks knows ({head_revision()}): use the fdp-tasks release that made it"
        )
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        _upgrade_sqlite(engine.url)
    else:  # PostgreSQL; or SQLite in memory, which only the engine's own connection sees
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            _upgrade_locked(conn)


def _upgrade_sqlite(url: sa.URL) -> None:
    """The upgrade on a connection of its own: foreign keys off (SQLite allows that only
    outside a transaction) so tables can be rebuilt, then the write lock for the whole run."""
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            _upgrade_locked(conn)
            broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise MigrationError(f"the upgrade would break references: {broken[:3]}")
    finally:
        engine.dispose()


def _upgrade_locked(conn: sa.Connection) -> None:
    """Upgrade inside the caller's transaction, which holds the lock: another process may
    have upgraded meanwhile, so the revision is read again first."""
    at = current_revision(conn)
    if at == head_revision():
        return
    with _quiet_alembic():
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(HERE))
        config.attributes["connection"] = conn
        if at is None:
            inspector = sa.inspect(conn)
            present = [name for name in LEGACY_MARKERS if inspector.has_table(name)]
            if present and len(present) < len(LEGACY_MARKERS):
                raise MigrationError(
                    f"the database holds some registry tables ({', '.join(present)}) but "
                    "not all, and no alembic_version: it is not a registry fdp-tasks made"
                )
            if present:
                command.stamp(config, FIRST)
        command.upgrade(config, "head")


@contextlib.contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic's progress lines stay out of fdp's output, unless its logger is configured."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)
