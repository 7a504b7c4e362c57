"""Date-times become timestamps: `timestamptz` on PostgreSQL, SQLAlchemy's DATETIME text on
SQLite, instead of ISO 8601 strings in VARCHAR(40) columns.

Every value is kept: PostgreSQL casts the text in place; on SQLite each table is rebuilt with
the new column types (batch mode) and its values rewritten from ISO 8601 with a zone to the
UTC wall-clock form SQLAlchemy reads back.
"""

import re
from datetime import timezone

import sqlalchemy as sa
from alembic import op

from fdp_tasks.scalars import parse_datetime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

RECORD_TABLES = [
    "users",
    "author",
    "user_author",
    "storage_root",
    "storage_location",
    "file_type",
    "namespace",
    "object",
    "object_component",
    "issue",
    "data_product",
    "external_object",
    "code_repo_release",
    "keyword",
    "licence",
    "key_value",
    "quality_controlled",
    "code_run",
]

# table -> (its key column, [(date-time column, NOT NULL)])
MOMENTS: dict[str, tuple[str, list[tuple[str, bool]]]] = {
    name: ("id", [("last_updated", False)]) for name in RECORD_TABLES
}
MOMENTS["external_object"][1].append(("release_date", False))
MOMENTS["code_run"][1].append(("run_date", True))
MOMENTS["auth_token"] = ("digest", [("created", True)])


def upgrade() -> None:
    bind = op.get_bind()
    for table, (key, columns) in MOMENTS.items():
        if bind.dialect.name == "sqlite":
            empty = bind.exec_driver_sql(f'SELECT 1 FROM "{table}" LIMIT 1').first() is None  # noqa: S608
            _retype_sqlite(bind, table, [column for column, _ in columns], empty)
            for column, _ in columns:
                if not empty:
                    _rewrite_sqlite(bind, table, key, column)
        else:
            for column, not_null in columns:
                op.alter_column(
                    table,
                    column,
                    type_=sa.DateTime(timezone=True),
                    existing_type=sa.String(length=40),
                    existing_nullable=not not_null,
                    postgresql_using=f"{column}::timestamptz",
                )


def _retype_sqlite(bind: sa.Connection, table: str, columns: list[str], empty: bool) -> None:
    """SQLite's own procedure for a change ALTER TABLE cannot make: the table made again
    under another name with the new column types, the rows copied as they are (no CAST,
    which would keep only the year), the old table dropped, the new one renamed, its indexes
    made again. Foreign-key enforcement is off meanwhile (the caller checks them after).
    An empty table (a new registry) is simply made again in place."""
    create = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).scalar_one()
    indexes = bind.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
        (table,),
    ).scalars().all()
    for column in columns:
        create, found = re.subn(rf"(\b{column}\s+)VARCHAR\(40\)", r"\1DATETIME", create)
        if found != 1:
            raise ValueError(f"{table}.{column} is not the VARCHAR(40) column of revision 0001")
    if empty:
        bind.exec_driver_sql(f'DROP TABLE "{table}"')
        bind.exec_driver_sql(create)
        for index in indexes:
            bind.exec_driver_sql(index)
        return
    create, found = re.subn(
        rf'^CREATE TABLE\s+"?{table}"?', f'CREATE TABLE "_new_{table}"', create.strip()
    )
    if found != 1:
        raise ValueError(f"unexpected definition of table {table}")
    bind.exec_driver_sql(create)
    bind.exec_driver_sql(f'INSERT INTO "_new_{table}" SELECT * FROM "{table}"')  # noqa: S608
    bind.exec_driver_sql(f'DROP TABLE "{table}"')
    bind.exec_driver_sql(f'ALTER TABLE "_new_{table}" RENAME TO "{table}"')
    for index in indexes:
        bind.exec_driver_sql(index)


def _rewrite_sqlite(bind: sa.Connection, table: str, key: str, column: str) -> None:
    """ISO 8601 text with a zone -> the UTC moment, as SQLAlchemy's DATETIME stores it."""
    text = sa.table(table, sa.column(key), sa.column(column, sa.String()))
    moment = sa.table(table, sa.column(key), sa.column(column, sa.DateTime()))
    rows = bind.execute(sa.select(text.c[key], text.c[column]).where(text.c[column].is_not(None)))
    changes = []
    for row_key, value in rows:
        try:
            parsed = parse_datetime(value)
        except ValueError as exc:
            raise ValueError(f"{table}.{column} of {key} {row_key!r}: {exc}") from None
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        changes.append({"row_key": row_key, "moment": parsed})
    if changes:
        bind.execute(
            moment.update()
            .where(moment.c[key] == sa.bindparam("row_key"))
            .values({column: sa.bindparam("moment")}),
            changes,
        )


def downgrade() -> None:
    bind = op.get_bind()
    for table, (_key, columns) in MOMENTS.items():
        if bind.dialect.name == "sqlite":
            raise NotImplementedError("0002 is not undone on SQLite: copy the registry instead")
        for column, not_null in columns:
            op.alter_column(
                table,
                column,
                type_=sa.String(length=40),
                existing_type=sa.DateTime(timezone=True),
                existing_nullable=not not_null,
                postgresql_using=(
                    f"to_char({column} AT TIME ZONE 'UTC', "
                    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
                ),
            )
