"""Copying a whole registry from one database to another (SQLite to PostgreSQL, or back),
with its ids, uuids, links, users and token digests as they are.

Both databases are first brought to the newest revision, so their tables are the same. Rows
go over table by table in foreign-key order (the record types in the data model's order,
then the link, token and other tables), a chunk at a time, inside one transaction on the
target: a failure leaves the target as empty as it was. The source is read in one
snapshot. On PostgreSQL the id sequences are then moved past the copied ids, so new records
get new ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from fdp_tasks.store.base import RegistryError
from fdp_tasks.store.sql import Store

CHUNK = 1000


class TargetNotEmpty(RegistryError):
    """The target registry already holds records: a copy would mix two registries."""


def display_url(url: str) -> str:
    """A database URL fit for messages: the password, if any, masked."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@dataclass
class CopyReport:
    """How many rows each table received."""

    rows: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        """Rows of record types (users included), not of link or token tables."""
        return sum(n for name, n in self.rows.items() if "__" not in name and name != "auth_token")


def copy_order(store: Store) -> list[sa.Table]:
    """Every table of the store, each after the tables it refers to."""
    first = [store.tables[name] for name in store.schema.order]
    rest = [t for t in store.meta.sorted_tables if t not in first]
    return first + rest


def row_counts(store: Store) -> dict[str, int]:
    """How many rows each table holds."""
    with store.engine.connect() as conn:
        return {
            table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            for table in copy_order(store)
        }


def check_empty(store: Store, conn: sa.Connection | None = None) -> None:
    """TargetNotEmpty naming a table that holds rows, if any does."""
    tables = copy_order(store)
    with store.engine.connect() if conn is None else _same(conn) as reading:
        for table in tables:
            if reading.execute(sa.select(sa.literal(1)).select_from(table).limit(1)).first():
                raise TargetNotEmpty(
                    f"the target registry {display_url(store.url)} is not empty (its "
                    f"{table.name} table holds rows): copy only into a new database"
                )


def copy_records(source: Store, target: Store) -> CopyReport:
    """Every row of `source` into the empty `target`, in one transaction on the target."""
    report = CopyReport()
    tables = copy_order(target)
    with _snapshot(source) as reading, target.engine.begin() as writing:
        check_empty(target, writing)
        for table in tables:
            copied = 0
            for rows in _chunks(reading, source.meta.tables[table.name]):
                writing.execute(table.insert(), rows)
                copied += len(rows)
            report.rows[table.name] = copied
        if target.engine.dialect.name == "postgresql":
            _move_sequences(writing, tables)
    return report


@contextlib.contextmanager
def _same(conn: sa.Connection) -> Iterator[sa.Connection]:
    """`conn` as a context manager that leaves it open (its owner closes it)."""
    yield conn


@contextlib.contextmanager
def _snapshot(store: Store) -> Iterator[sa.Connection]:
    """A connection that sees the source as it was when the copy began, whatever writers do
    meanwhile: SQLite's read transaction, PostgreSQL's repeatable read."""
    with store.engine.connect() as conn:
        if store.is_sqlite:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
        elif store.engine.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def _chunks(conn: sa.Connection, table: sa.Table) -> Iterator[list[dict]]:
    """The table's rows in key order, CHUNK at a time, as column -> value."""
    query = sa.select(table).order_by(*table.primary_key.columns)
    result = conn.execution_options(yield_per=CHUNK).execute(query)
    for part in result.mappings().partitions(CHUNK):
        yield [dict(row) for row in part]


def _move_sequences(conn: sa.Connection, tables: list[sa.Table]) -> None:
    """Each serial id's sequence past the highest id copied (or back to 1 for none)."""
    for table in tables:
        if "id" not in table.c or not table.c.id.primary_key or not table.c.id.autoincrement:
            continue
        sequence = conn.execute(
            sa.text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": table.name}
        ).scalar()
        if sequence is None:
            continue
        highest = conn.execute(sa.select(sa.func.max(table.c.id))).scalar()
        conn.execute(
            sa.text("SELECT setval(CAST(:sequence AS regclass), :value, :called)"),
            {"sequence": sequence, "value": highest or 1, "called": highest is not None},
        )
