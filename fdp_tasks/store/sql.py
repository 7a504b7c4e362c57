"""The registry store: the FAIR Data Pipeline data model in SQL, through SQLAlchemy.

Tables are described from the declared schema and created or changed only by the migrations
in `store/migrations` (run when a Store opens its database). A database URL selects the
backend: SQLite (the embedded default, in WAL mode with a busy timeout so several processes
can share it) or PostgreSQL (`postgresql+psycopg://...`). Every write runs in a transaction,
so a failure leaves nothing half-written; what SQLite gets from its whole-database write
lock, PostgreSQL gets from row locks (`SELECT ... FOR UPDATE`) and unique constraints.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import operator
import os
import secrets
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Connection

from fdp_tasks.names import like_pattern, namespace_problem, product_name_problem
from fdp_tasks.store import migrations
from fdp_tasks.store.base import (
    InvalidRecord,
    NotFound,
    Record,
    RegistryError,
    RegistryUnavailable,
    UniqueViolation,
    create_or_existing,
    database_url,
)
from fdp_tasks.store.schema import RecordType, RegistrySchema, load_schema
from fdp_tasks.store.values import BadValue, coerce, parse_moment
from fdp_tasks.versions import newest_of_each_name


class UtcDateTime(sa.types.TypeDecorator):
    """A moment kept as a timestamp (`timestamptz` on PostgreSQL, UTC text on SQLite) that
    records carry, in and out, as ISO 8601 text in UTC, exactly as `values.parse_datetime`
    writes it: the wire and every record look the same whatever the database."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        moment = parse_moment(value)
        # SQLite's DATETIME drops the zone: hand it the UTC wall clock.
        return moment.replace(tzinfo=None) if dialect.name == "sqlite" else moment

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return str(value.astimezone(timezone.utc).isoformat())


SQL_TYPES: dict[str, Any] = {
    "string": sa.Text,
    "text": sa.Text,
    "boolean": sa.Boolean,
    "integer": sa.Integer,
    "datetime": UtcDateTime,
    "uuid": sa.String(36),
}


# A pooled database connection unused for this long is pinged before it is handed out.
IDLE_PING_SECONDS = 5.0


def _ping_when_idle(engine: sa.Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Ping a pooled connection before reuse only when it sat idle for `idle_seconds`: a
    server that restarted or dropped it meanwhile costs no failed request, and a busy
    server does not pay a round trip per checkout as `pool_pre_ping` would (a drop while
    busy fails one request, and the pool is then renewed)."""

    @sa.event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise sa.exc.DisconnectionError(str(exc)) from exc


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# Names become data-store folders and registry keys: every registry holds them canonical.
_NAME_RULES = {
    ("data_product", "name"): product_name_problem,
    ("namespace", "name"): namespace_problem,
}


def _check_name(rtype: RecordType, clean: dict[str, Any]) -> None:
    """Refuse a data product or namespace name that is not canonical (see names.py)."""
    for (type_name, field_name), rule in _NAME_RULES.items():
        if rtype.name == type_name and clean.get(field_name) is not None:
            problem = rule(clean[field_name])
            if problem:
                raise InvalidRecord(problem, type_name, field_name)


# Indexes for look-ups that the unique keys and the one-column indexes serve badly (see
# migration 0006): a product's versions, newest first; a data-store file by its path.
LOOKUP_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
    "data_product": {"ix_data_product_namespace_name": ("namespace_id", "name")},
    "storage_location": {"ix_storage_location_root_path": ("storage_root_id", "path")},
}


def _column(field_name: str, kind: str) -> str:
    return f"{field_name}_id" if kind == "fk" else field_name


class Store:
    """A registry held in a SQL database. Thread-safe; one instance per process is enough."""

    def __init__(
        self, url: str | Path, schema: RegistrySchema | None = None, settled_only: bool = False
    ):
        """`settled_only`: finds skip the provisional records of running or killed jobs
        (for commands that only look, such as `fdp status`)."""
        self.url = database_url(url)
        self.settled_only = settled_only
        self.schema = schema or load_schema()
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            path = sa.engine.make_url(self.url).database
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = sa.create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 60}
            )
            self._configure_sqlite()
        else:
            self.engine = sa.create_engine(self.url)
            _ping_when_idle(self.engine)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        self.meta = sa.MetaData()
        self.tables: dict[str, sa.Table] = {}
        self.links: dict[tuple[str, str], sa.Table] = {}
        self._build_tables()
        self._local = threading.local()
        # INSERT statements `_insert_rows` compiled: (SQL, its columns in order, usable)
        self._inserts: dict[tuple[str, tuple[str, ...]], tuple[str, tuple[str, ...], bool]] = {}
        with self.unavailable_as_error():
            migrations.upgrade(self.engine)

    # ----------------------------------------------------------------- set-up
    def _configure_sqlite(self) -> None:
        @sa.event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # Writers take the lock up front, so two processes never dead-end on an upgrade.
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

    def _build_tables(self) -> None:
        """The tables as the queries see them (the migrations create and change them)."""
        for name in self.schema.order:
            rtype = self.schema[name]
            cols: list[Any] = [sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)]
            for f in rtype.fields.values():
                if f.is_fk:
                    cols.append(
                        sa.Column(
                            f"{f.name}_id",
                            sa.Integer,
                            sa.ForeignKey(f"{f.to}.id"),
                            nullable=not f.required,
                            index=True,
                        )
                    )
                elif not f.is_m2m:
                    cols.append(sa.Column(f.name, SQL_TYPES[f.kind], nullable=not f.required))
            cols.append(sa.Column("last_updated", UtcDateTime))
            cols.append(sa.Column("updated_by_id", sa.Integer, nullable=True))
            for key in rtype.unique:
                cols.append(
                    sa.UniqueConstraint(
                        *[_column(k, rtype.fields[k].kind) for k in key],
                        name=f"uq_{name}_{'_'.join(key)}",
                    )
                )
            for g in rtype.glob:
                cols.append(sa.Index(f"ix_{name}_{g}", g))
            if "hash" in rtype.fields:
                cols.append(sa.Index(f"ix_{name}_hash", "hash"))
            for index_name, columns in LOOKUP_INDEXES.get(name, {}).items():
                cols.append(sa.Index(index_name, *columns))
            self.tables[name] = sa.Table(name, self.meta, *cols)
        for name in self.schema.order:
            for f in self.schema[name].m2ms:
                self.links[(name, f.name)] = sa.Table(
                    f"{name}__{f.name}",
                    self.meta,
                    sa.Column(
                        "owner_id", sa.Integer, sa.ForeignKey(f"{name}.id"), primary_key=True
                    ),
                    sa.Column(
                        "target_id", sa.Integer, sa.ForeignKey(f"{f.to}.id"), primary_key=True
                    ),
                    sa.Column("position", sa.Integer, nullable=False, default=0),
                    sa.Index(f"ix_{name}__{f.name}_target", "target_id"),
                )
        self.tokens = sa.Table(
            "auth_token",
            self.meta,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
            sa.Column("created", UtcDateTime, nullable=False),
            sa.Column("last_used", UtcDateTime, nullable=True),  # noted once a day at most
        )
        # Who may write in a namespace (not part of the FDP wire model): its creator, and
        # whom an admin or a member adds.
        self.namespace_members = sa.Table(
            "namespace_member",
            self.meta,
            sa.Column("namespace_id", sa.Integer, sa.ForeignKey("namespace.id"), primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
            sa.Column("added", UtcDateTime, nullable=False),
        )
        # Who asked to keep a file's bytes on this registry, whether they sent them
        # (`uploaded`, hash checked), and whether they asked for a public storage location
        # of them (`published`): bytes are public once someone who sent them published them.
        self.file_claims = sa.Table(
            "file_claim",
            self.meta,
            sa.Column("hash", sa.String(64), primary_key=True),
            sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
            sa.Column("uploaded", sa.Boolean, nullable=False),
            sa.Column("published", sa.Boolean, nullable=False),
            sa.Column("created", UtcDateTime, nullable=False),
        )
        # What a running job wrote, kept apart until the job ends (see store/provisional.py):
        # the job, known by its token's digest, with the process that runs it, and each
        # record written under that token, noted in the same transaction as the record.
        self.provisional_jobs = sa.Table(
            "provisional_job",
            self.meta,
            sa.Column("digest", sa.String(64), primary_key=True),
            sa.Column("pid", sa.Integer, nullable=False),
            sa.Column("host", sa.Text, nullable=False),
            sa.Column("started", UtcDateTime, nullable=False),
        )
        self.provisional_records = sa.Table(
            "provisional_record",
            self.meta,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job", sa.String(64), nullable=False, index=True),
            sa.Column("type_name", sa.Text, nullable=False),
            sa.Column("record_id", sa.Integer, nullable=False),
            sa.Index("ix_provisional_record_record", "type_name", "record_id"),
        )

    # ------------------------------------------------------------ provisional
    @contextlib.contextmanager
    def provisional_as(self, job: str | None, required: bool = False) -> Iterator[None]:
        """Records this thread creates inside are noted as provisional for `job` (a job
        token's digest), if such a job is running; with None, nothing changes. `required`:
        a job that is not running (it ended, or was killed and swept) refuses them."""
        before = getattr(self._local, "job", None), getattr(self._local, "job_required", False)
        self._local.job, self._local.job_required = job, required
        try:
            yield
        finally:
            self._local.job, self._local.job_required = before

    def _note_provisional(self, conn: Connection, type_name: str, record_id: int) -> None:
        job = getattr(self._local, "job", None)
        if job is None:
            return
        jobs = self.provisional_jobs
        if conn.execute(sa.select(jobs.c.digest).where(jobs.c.digest == job)).first() is None:
            if getattr(self._local, "job_required", False):
                raise RegistryError(
                    "the job this script belongs to is over (it ended, or was killed): "
                    "nothing is recorded"
                )
            return  # not a job's token: the record is for good
        conn.execute(
            self.provisional_records.insert().values(
                job=job, type_name=type_name, record_id=record_id
            )
        )

    # ----------------------------------------------------------- transactions
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction for everything inside; nested calls join the outer one."""
        current = getattr(self._local, "conn", None)
        if current is not None:
            with current.begin_nested():
                yield current
            return
        with self.unavailable_as_error(), self.engine.connect() as conn, conn.begin():
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextlib.contextmanager
    def unavailable_as_error(self) -> Iterator[None]:
        """A database the process cannot use, said in one line naming it, not a traceback."""
        try:
            yield
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig or exc).strip().splitlines()[0]
            where = sa.engine.make_url(self.url).render_as_string(hide_password=True)
            raise RegistryUnavailable(f"the registry {where}: {reason}") from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        current = getattr(self._local, "conn", None)
        if current is not None:
            yield current
            return
        with self.unavailable_as_error(), self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="DEFERRED")
            yield conn
            conn.rollback()

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ reads
    def _type(self, type_name: str) -> RecordType:
        if type_name not in self.schema:
            raise NotFound("type", type_name)
        return self.schema[type_name]

    def get(self, type_name: str, record_id: int, full: bool = False) -> Record:
        """One record; `full` adds the reverse relations that grow with the registry."""
        rows = self.find(type_name, {"id": record_id}, full=full)
        if not rows:
            raise NotFound(type_name, f"id {record_id}")
        return rows[0]

    def _provisional(self, type_name: str, record_id: Any) -> Any:
        """The SQL condition that a record of `type_name` (its id column) is provisional:
        written by a job still running, or killed. What `settled_only` reads leave out."""
        pending = self.provisional_records
        return sa.exists().where(pending.c.type_name == type_name, pending.c.record_id == record_id)

    def _where(self, rtype: RecordType, filters: dict[str, Any]) -> tuple[list[Any], list]:
        """SQL conditions, plus exact glob checks to apply after LIKE (which ignores case)."""
        table = self.tables[rtype.name]
        conds: list[Any] = []
        post: list = []
        if self.settled_only:
            conds.append(~self._provisional(rtype.name, table.c.id))
        for key, value in filters.items():
            if key == "id":
                if isinstance(value, (list, tuple, set, frozenset)):
                    conds.append(table.c.id.in_([int(v) for v in value]))
                else:
                    conds.append(table.c.id == int(value))
                continue
            if key in ("updated_by",):
                conds.append(table.c.updated_by_id == int(value))
                continue
            field = rtype.fields.get(key)
            if field is None:
                raise InvalidRecord(f"{rtype.name} has no field {key!r} to filter on")
            if field.is_fk:
                conds.append(
                    table.c[f"{key}_id"].is_(None)
                    if value is None
                    else table.c[f"{key}_id"] == int(value)
                )
            elif field.is_m2m:
                link = self.links[(rtype.name, key)]
                conds.append(
                    table.c.id.in_(sa.select(link.c.owner_id).where(link.c.target_id == int(value)))
                )
            elif key in rtype.glob and isinstance(value, str) and "*" in value:
                if "\x00" in value:
                    raise InvalidRecord("expected text without NUL characters", rtype.name, key)
                conds.append(table.c[key].like(like_pattern(value), escape="\\"))
                post.append((key, value))
            elif isinstance(value, (list, tuple, set, frozenset)):
                # any of several values (the SQL store only: a look-up of many at once)
                try:
                    wanted = [coerce(field, v) for v in value]
                except BadValue as exc:
                    raise InvalidRecord(str(exc), rtype.name, key) from exc
                conds.append(table.c[key].in_([v for v in wanted if v is not None]))
            else:
                try:
                    coerced = coerce(field, value)
                except BadValue as exc:
                    raise InvalidRecord(str(exc), rtype.name, key) from exc
                conds.append(table.c[key].is_(None) if coerced is None else table.c[key] == coerced)
        return conds, post

    def find(
        self,
        type_name: str,
        filters: dict[str, Any] | None = None,
        limit: int | None = None,
        before_id: int | None = None,
        newest_first: bool = True,
        full: bool = False,
    ) -> list[Record]:
        """Records matching exact filters (globs on glob fields), newest first. `full` adds
        the reverse relations that grow with the registry (a storage root's locations)."""
        rtype = self._type(type_name)
        table = self.tables[type_name]
        conds, post = self._where(rtype, filters or {})
        if before_id is not None:
            conds.append(table.c.id < before_id)
        query = sa.select(table).where(*conds)
        query = query.order_by(table.c.id.desc() if newest_first else table.c.id.asc())
        if limit is not None and not post:
            query = query.limit(limit)
        with self._reading() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            if post:
                rows = [
                    r for r in rows if all(fnmatch.fnmatchcase(r[k] or "", pat) for k, pat in post)
                ][:limit]
            return self._records(conn, rtype, rows, full)

    def get_many(self, type_name: str, ids: list[int]) -> dict[int, Record]:
        """Records by id, a few hundred per query: listings without one query per record."""
        out: dict[int, Record] = {}
        wanted = sorted(set(ids))
        for chunk in _chunks(wanted):
            for record in self.find(type_name, {"id": chunk}):
                out[record["id"]] = record
        missing = set(wanted) - set(out)
        if missing:
            raise NotFound(type_name, f"id {min(missing)}")
        return out

    def output_files(self, run_uuids: list[str]) -> list[tuple[str, str, str]] | None:
        """(path, SHA-1, storage root) of the file of every data product these code runs
        wrote, in one query rather than a record of each type per product: what the job's
        up-to-date check hashes. A product whose object has no file reads ("", "", "").
        None when a run is not here."""
        rows = self.run_outputs(run_uuids)
        return None if rows is None else [row[4:] for row in rows]

    def run_outputs(
        self, run_uuids: list[str]
    ) -> list[tuple[int, str, str, str, str, str, str]] | None:
        """(data product id, namespace, name, version, path, SHA-1, storage root) of every
        data product these code runs wrote, in one query (`output_files`, with what names
        each product): what the job's up-to-date check and `fdp status` ask. None when a
        run is not here."""
        wanted = list(dict.fromkeys(run_uuids))
        run, link = self.tables["code_run"], self.links[("code_run", "outputs")]
        component, obj = self.tables["object_component"], self.tables["object"]
        product, location = self.tables["data_product"], self.tables["storage_location"]
        root, namespace = self.tables["storage_root"], self.tables["namespace"]
        # Reading only what is settled, a run of a job still running is not here, and an
        # output of one makes the answer None, as its record would be missing.
        settled: list[Any] = []
        unsettled: Any = sa.false()
        if self.settled_only:
            settled.append(~self._provisional("code_run", run.c.id))
            unsettled = self._provisional("data_product", product.c.id)
        query = (
            sa.select(
                product.c.id,
                namespace.c.name,
                product.c.name,
                product.c.version,
                location.c.path,
                location.c.hash,
                root.c.root,
                unsettled,
            )
            .select_from(run)
            .join(link, link.c.owner_id == run.c.id)
            .join(component, component.c.id == link.c.target_id)
            .join(obj, obj.c.id == component.c.object_id)
            .join(product, product.c.object_id == obj.c.id)
            .join(namespace, namespace.c.id == product.c.namespace_id)
            .outerjoin(location, location.c.id == obj.c.storage_location_id)
            .outerjoin(root, root.c.id == location.c.storage_root_id)
            .order_by(product.c.id)
        )
        files: list[tuple[int, str, str, str, str, str, str]] = []
        found: set[str] = set()
        with self._reading() as conn:
            for chunk in _chunks(wanted):
                runs = sa.select(run.c.uuid).where(run.c.uuid.in_(chunk), *settled)
                found.update(conn.execute(runs).scalars())
                for ident, space, name, version, path, sha1, where, provisional in conn.execute(
                    query.where(run.c.uuid.in_(chunk), *settled)
                ):
                    if provisional:
                        return None
                    files.append((ident, space, name, version, path or "", sha1 or "", where or ""))
        return files if len(found) == len(wanted) else None

    def _files_of_products(self, namespace: str, columns: list[Any], conds: list[Any]) -> Any:
        """Data products of a namespace with their files: name, then `columns`, then path,
        SHA-1 and storage root (None where a product has no file)."""
        obj, product = self.tables["object"], self.tables["data_product"]
        location, root = self.tables["storage_location"], self.tables["storage_root"]
        namespace_table = self.tables["namespace"]
        return (
            sa.select(product.c.name, *columns, location.c.path, location.c.hash, root.c.root)
            .select_from(product)
            .join(namespace_table, namespace_table.c.id == product.c.namespace_id)
            .join(obj, obj.c.id == product.c.object_id)
            .outerjoin(location, location.c.id == obj.c.storage_location_id)
            .outerjoin(root, root.c.id == location.c.storage_root_id)
            .where(namespace_table.c.name == namespace, *conds)
        )

    def product_files(
        self, namespace: str, names: list[str]
    ) -> list[tuple[str, str, str, str, str]]:
        """(name, version, path, SHA-1, storage root) of every data product of these names
        in a namespace, a few hundred names per query: what a pull asks to know which of
        the remote's products are here intact. A product with no file has empty path,
        SHA-1 and root; provisional data products are left out where finds leave them."""
        product = self.tables["data_product"]
        settled = [~self._provisional("data_product", product.c.id)] if self.settled_only else []
        query = self._files_of_products(namespace, [product.c.version], settled).order_by(
            product.c.id
        )
        files: list[tuple[str, str, str, str, str]] = []
        with self._reading() as conn:
            for chunk in _chunks(sorted(set(names))):
                for name, version, path, sha1, where in conn.execute(
                    query.where(product.c.name.in_(chunk))
                ):
                    files.append((name, version, path or "", sha1 or "", where or ""))
        return files

    def newest_files(
        self, namespace: str, pattern: str, page: int = 2000
    ) -> Iterator[tuple[str, str, str, str, str]]:
        """(name, version, path, SHA-1, storage root) of the newest version of every data
        product whose name matches `pattern` (a glob, or a name) in a namespace, by name:
        what an unpinned read asks to know whether all it reads is here. Read `page` rows
        at a time in name order, so that memory holds a page, not the namespace. Versions
        that do not parse are passed over, as `queries.latest_products` passes them."""
        product = self.tables["data_product"]
        conds, post = self._where(self._type("data_product"), {"name": pattern})
        query = (
            self._files_of_products(namespace, [product.c.id, product.c.version], conds)
            .order_by(product.c.name, product.c.id)
            .limit(page)
        )
        return newest_of_each_name(self._paged_files(query, pattern, bool(post), page))

    def _paged_files(
        self, query: sa.Select, pattern: str, post: bool, page: int
    ) -> Iterator[tuple[str, str, tuple[str, str, str, str, str]]]:
        """newest_files' rows, a page at a time after the last (name, id) read."""
        product = self.tables["data_product"]
        after: tuple[str, int] | None = None
        while True:
            paged = query
            if after is not None:
                paged = query.where(
                    sa.or_(
                        product.c.name > after[0],
                        sa.and_(product.c.name == after[0], product.c.id > after[1]),
                    )
                )
            with self._reading() as conn:
                rows = conn.execute(paged).all()
            for name, record_id, version, path, sha1, where in rows:
                after = (name, record_id)
                if not post or fnmatch.fnmatchcase(name, pattern):
                    yield name, version, (name, version, path or "", sha1 or "", where or "")
            if len(rows) < page:
                return

    def count(self, type_name: str, filters: dict[str, Any] | None = None) -> int:
        rtype = self._type(type_name)
        conds, post = self._where(rtype, filters or {})
        if post:
            return len(self.find(type_name, filters))
        table = self.tables[type_name]
        with self._reading() as conn:
            return conn.execute(
                sa.select(sa.func.count()).select_from(table).where(*conds)
            ).scalar_one()

    def find_one(self, type_name: str, filters: dict[str, Any]) -> Record | None:
        rows = self.find(type_name, filters, limit=1)
        return rows[0] if rows else None

    def _records(
        self, conn: Connection, rtype: RecordType, rows: list[dict], full: bool = False
    ) -> list[Record]:
        """Attach many-to-many and reverse relations with one query per relation, not per row."""
        if not rows:
            return []
        ids = [r["id"] for r in rows]
        extra: dict[str, dict[int, list[int]]] = {}
        reverse = {k: v for k, v in rtype.reverse.items() if full or k not in rtype.lazy}
        for f in rtype.m2ms:
            link = self.links[(rtype.name, f.name)]
            got: dict[int, list[int]] = {}
            for chunk in _chunks(ids):
                q = (
                    sa.select(link.c.owner_id, link.c.target_id)
                    .where(link.c.owner_id.in_(chunk))
                    .order_by(link.c.position)
                )
                for owner, target in conn.execute(q):
                    got.setdefault(owner, []).append(target)
            extra[f.name] = got
        for rname, (other, via) in reverse.items():
            got = {}
            if self.schema[other].fields[via].is_m2m:
                link = self.links[(other, via)]
                owner_col, target_col = link.c.target_id, link.c.owner_id
                table = link
            else:
                table = self.tables[other]
                owner_col, target_col = table.c[f"{via}_id"], table.c.id
            for chunk in _chunks(ids):
                q = (
                    sa.select(owner_col, target_col)
                    .where(owner_col.in_(chunk))
                    .order_by(target_col)
                )
                for owner, target in conn.execute(q):
                    got.setdefault(owner, []).append(target)
            extra[rname] = got
        out = []
        for row in rows:
            rec: Record = {"id": row["id"]}
            for f in rtype.fields.values():
                if f.is_fk:
                    rec[f.name] = row[f"{f.name}_id"]
                elif f.is_m2m:
                    rec[f.name] = extra[f.name].get(row["id"], [])
                else:
                    rec[f.name] = row[f.name]
            for rname in reverse:
                rec[rname] = extra[rname].get(row["id"], [])
            rec["last_updated"] = row["last_updated"]
            rec["updated_by"] = row["updated_by_id"]
            out.append(rec)
        return out

    # ----------------------------------------------------------------- writes
    def _clean(self, rtype: RecordType, data: dict[str, Any], partial: bool) -> dict[str, Any]:
        """Coerced column values and m2m lists; unknown fields are ignored, like the reference."""
        clean: dict[str, Any] = {}
        for f in rtype.fields.values():
            if f.name not in data:
                if partial:
                    continue
                if f.required:
                    raise InvalidRecord("this field is required", rtype.name, f.name)
                if f.kind == "uuid":
                    clean[f.name] = str(uuidlib.uuid4())
                elif f.is_m2m:
                    clean[f.name] = []
                elif f.default is not None:
                    clean[f.name] = f.default
                continue
            value = data[f.name]
            if f.required and value is None:
                raise InvalidRecord("this field may not be null", rtype.name, f.name)
            if f.is_m2m:
                if not isinstance(value, (list, tuple)):
                    raise InvalidRecord("expected a list of ids", rtype.name, f.name)
                clean[f.name] = [_as_id(rtype, f.name, v) for v in value]
            elif f.is_fk:
                clean[f.name] = None if value is None else _as_id(rtype, f.name, value)
            else:
                try:
                    clean[f.name] = coerce(f, value)
                except BadValue as exc:
                    raise InvalidRecord(str(exc), rtype.name, f.name) from exc
                if clean[f.name] is None and f.kind == "uuid" and not partial:
                    clean[f.name] = str(uuidlib.uuid4())
        _check_name(rtype, clean)
        return clean

    def _check_refs(self, conn: Connection, rtype: RecordType, clean: dict[str, Any]) -> None:
        for f in rtype.fields.values():
            if not f.is_relation or clean.get(f.name) in (None, []):
                continue
            wanted = set(clean[f.name]) if f.is_m2m else {clean[f.name]}
            table = self.tables[f.target]
            found: set[int] = set()
            for chunk in _chunks(sorted(wanted)):  # a run may list 100,000 outputs
                query = sa.select(table.c.id).where(table.c.id.in_(chunk))
                found.update(conn.execute(query).scalars())
            missing = wanted - found
            if missing:
                ids = ", ".join(map(str, sorted(missing)))
                raise InvalidRecord(f"no {f.target} with id {ids}", rtype.name, f.name)

    @staticmethod
    def _lock_row(conn: Connection, table: sa.Table, record_id: int) -> int | None:
        """The row's id, locked until the transaction ends, so that writers of one record
        take turns on PostgreSQL as SQLite's database-wide write lock makes them; None if
        there is no such row. (SQLite, holding that lock already, ignores FOR UPDATE.)"""
        query = sa.select(table.c.id).where(table.c.id == record_id).with_for_update()
        found = conn.execute(query).scalar()
        return None if found is None else int(found)

    def _clash(
        self, conn: Connection, rtype: RecordType, clean: dict[str, Any], exclude: int | None = None
    ) -> tuple[tuple[str, ...], int] | None:
        table = self.tables[rtype.name]
        for key in rtype.natural_keys(clean):
            conds = [table.c[_column(k, rtype.fields[k].kind)] == clean[k] for k in key]
            if exclude is not None:
                conds.append(table.c.id != exclude)
            found = conn.execute(sa.select(table.c.id).where(*conds).limit(1)).scalar()
            if found is not None:
                return key, found
        return None

    def create(self, type_name: str, data: dict[str, Any], user_id: int | None = None) -> Record:
        """Insert one record; raises UniqueViolation (with the existing record) on a clash."""
        rtype = self._type(type_name)
        clean = self._clean(rtype, data, partial=False)
        with self.transaction() as conn:
            self._check_refs(conn, rtype, clean)
            clash = self._clash(conn, rtype, clean)
            if clash:
                key, existing = clash
                raise UniqueViolation(type_name, key, self.get(type_name, existing))
            values = {
                _column(f.name, f.kind): clean.get(f.name)
                for f in rtype.fields.values()
                if not f.is_m2m and f.name in clean
            }
            values["last_updated"] = _now()
            values["updated_by_id"] = user_id
            try:
                with conn.begin_nested():
                    inserted = conn.execute(
                        self.tables[type_name].insert().values(**values)
                    ).inserted_primary_key
                    if inserted is None:  # every table here has an autoincrement id
                        raise RegistryError(f"the database gave the new {type_name} no id")
                    new_id = inserted[0]
                    self._note_provisional(conn, type_name, new_id)
            except sa.exc.IntegrityError as exc:
                # Lost a race with another writer between the check and the insert, or the
                # database refused the row for a reason of its own.
                clash = self._clash(conn, rtype, clean)
                if clash is None:
                    reason = str(exc.orig).splitlines()[0] if exc.orig else str(exc)
                    raise InvalidRecord(f"the database refused it: {reason}", type_name) from None
                raise UniqueViolation(type_name, clash[0], self.get(type_name, clash[1])) from None
            for f in rtype.m2ms:
                clean[f.name] = self._set_links(conn, rtype, f.name, new_id, clean.get(f.name, []))
            # The new record as get() would show it, without reading it back.
            record: Record = {"id": new_id}
            for f in rtype.fields.values():
                record[f.name] = clean.get(f.name, [] if f.is_m2m else None)
            record.update({name: [] for name in rtype.reverse if name not in rtype.lazy})
            record["last_updated"] = values["last_updated"]
            record["updated_by"] = user_id
            if type_name == "namespace" and user_id is not None:
                self._add_member(conn, new_id, user_id)  # its creator, in the same transaction
            if rtype.whole_object_component:
                component = self.create(
                    "object_component",
                    {
                        "object": new_id,
                        "name": "whole_object",
                        "whole_object": True,
                        "description": "whole object",
                    },
                    user_id=user_id,
                )
                record["components"] = [component["id"]]
            return record

    def create_many(
        self, type_name: str, rows: list[dict[str, Any]], user_id: int | None = None
    ) -> list[Record]:
        """`create` for many records of one type, in one transaction and a few statements
        per chunk rather than some ten per record: what a script that writes thousands of
        outputs records. The records, the errors (the first clash raises UniqueViolation
        with the existing record) and what is noted as provisional are those of calling
        `create` on each in turn; anything this path does not cover (namespaces, repeats
        of a unique key within `rows`, a race lost on PostgreSQL) takes that path."""
        rtype = self._type(type_name)
        cleaned = [self._clean(rtype, data, partial=False) for data in rows]
        if not cleaned:
            return []
        m2m_names = {f.name for f in rtype.m2ms}
        keys = [rtype.natural_keys(clean) for clean in cleaned]
        one_by_one = type_name == "namespace" or self._repeats_a_key(rtype, cleaned, keys)
        with self.transaction() as conn:
            if one_by_one:
                return [self.create(type_name, data, user_id=user_id) for data in rows]
            self._check_refs_many(conn, rtype, cleaned)
            self._raise_first_clash(conn, rtype, cleaned, keys)
            now = _now()
            columns = [(f.name, _column(f.name, f.kind)) for f in rtype.fields.values()]
            columns = [(name, column) for name, column in columns if name not in m2m_names]
            values = [
                {
                    **{column: clean[name] for name, column in columns if name in clean},
                    "last_updated": now,
                    "updated_by_id": user_id,
                }
                for clean in cleaned
            ]
            table = self.tables[type_name]
            try:
                with conn.begin_nested():
                    ids = self._insert_many(conn, table, values)
                    self._note_provisional_many(conn, type_name, ids)
            except sa.exc.IntegrityError:
                # another writer got in between the checks and the insert: record by record
                return [self.create(type_name, data, user_id=user_id) for data in rows]
            for f in rtype.m2ms:
                link = self.links[(type_name, f.name)]
                links = []
                for new_id, clean in zip(ids, cleaned, strict=True):
                    clean[f.name] = list(dict.fromkeys(clean.get(f.name, [])))
                    links += [
                        {"owner_id": new_id, "target_id": t, "position": i}
                        for i, t in enumerate(clean[f.name])
                    ]
                self._insert_rows(conn, link, links)
            records = []
            names = list(rtype.fields)
            reverse = [name for name in rtype.reverse if name not in rtype.lazy]
            for new_id, clean in zip(ids, cleaned, strict=True):
                record: Record = {"id": new_id}
                for name in names:
                    record[name] = clean.get(name, [] if name in m2m_names else None)
                for name in reverse:
                    record[name] = []
                record["last_updated"] = now
                record["updated_by"] = user_id
                records.append(record)
            if rtype.whole_object_component:
                components = self.create_many(
                    "object_component",
                    [
                        {
                            "object": record["id"],
                            "name": "whole_object",
                            "whole_object": True,
                            "description": "whole object",
                        }
                        for record in records
                    ],
                    user_id=user_id,
                )
                for record, component in zip(records, components, strict=True):
                    record["components"] = [component["id"]]
            return records

    def _insert_many(self, conn: Connection, table: sa.Table, values: list[dict]) -> list[int]:
        """Insert rows, returning their new ids in the order given."""
        if self.is_sqlite:
            # SQLite gives a new row the largest id plus one (no AUTOINCREMENT here), and
            # this transaction holds the database's write lock: the ids are known before the
            # insert, which then runs as one executemany, not one statement per row (what
            # RETURNING in parameter order costs there). A writer that got in anyway makes
            # the insert clash on the id, and the caller goes record by record.
            last = conn.execute(sa.select(sa.func.max(table.c.id))).scalar()
            first = (last or 0) + 1
            ids = list(range(first, first + len(values)))
            self._insert_rows(
                conn, table, [{**row, "id": i} for row, i in zip(values, ids, strict=True)]
            )
            return ids
        ids = []
        for start in range(0, len(values), 500):
            chunk = values[start : start + 500]
            if self.is_sqlite or self.is_postgresql:
                query = table.insert().returning(table.c.id, sort_by_parameter_order=True)
                ids += [int(row[0]) for row in conn.execute(query, chunk)]
            else:  # a database without RETURNING for many rows: one insert each
                for row in chunk:
                    inserted = conn.execute(table.insert().values(**row)).inserted_primary_key
                    if inserted is None:
                        raise RegistryError(f"the database gave the new {table.name} no id")
                    ids.append(int(inserted[0]))
        return ids

    def _insert_rows(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert many rows whose new ids nobody needs back. On SQLite, rows of one shape go
        to the driver's executemany as plain tuples, each value converted by its column's
        type once here: SQLAlchemy's executemany builds and converts a parameter set per row
        in Python, which costs more than SQLite's insert itself."""
        if not rows:
            return
        if not self.is_sqlite:
            conn.execute(table.insert(), rows)
            return
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            shapes.setdefault(tuple(row), []).append(row)
        for names, same in shapes.items():
            known = self._inserts.get((table.name, names))
            if known is None:  # compiled once per table and set of columns
                statement = table.insert().compile(dialect=conn.dialect, column_keys=list(names))
                columns = tuple(statement.positiontup or ())  # in the order of the ?s
                fits = sorted(columns) == sorted(names)
                known = self._inserts[(table.name, names)] = (str(statement), columns, fits)
            sql, order, fits = known
            if not fits:
                conn.execute(table.insert(), same)
                continue
            take = operator.itemgetter(*order)
            plain = [take(row) for row in same]
            if len(order) == 1:
                plain = [(value,) for value in plain]
            converters = [
                (i, convert)
                for i, name in enumerate(order)
                if (convert := _once_each(table.c[name].type.bind_processor(conn.dialect)))
            ]
            if converters:
                plain = [_converted(values, converters) for values in plain]
            conn.exec_driver_sql(sql, plain)

    def _note_provisional_many(self, conn: Connection, type_name: str, ids: list[int]) -> None:
        """`_note_provisional` for many new records: the job is checked once."""
        if getattr(self._local, "job", None) is None or not ids:
            return
        self._note_provisional(conn, type_name, ids[0])
        if len(ids) > 1 and self._is_running_job(conn):
            job = self._local.job
            rows = [{"job": job, "type_name": type_name, "record_id": i} for i in ids[1:]]
            self._insert_rows(conn, self.provisional_records, rows)

    def _is_running_job(self, conn: Connection) -> bool:
        jobs = self.provisional_jobs
        query = sa.select(jobs.c.digest).where(jobs.c.digest == self._local.job)
        return conn.execute(query).first() is not None

    def _check_refs_many(
        self, conn: Connection, rtype: RecordType, cleaned: list[dict[str, Any]]
    ) -> None:
        """`_check_refs` for many records: one query per relation and chunk."""
        for f in rtype.fields.values():
            if not f.is_relation:
                continue
            wanted: set[int] = set()
            for clean in cleaned:
                value = clean.get(f.name)
                if value in (None, []):
                    continue
                wanted.update(value if f.is_m2m else [value])
            table = self.tables[f.target]
            found: set[int] = set()
            for chunk in _chunks(sorted(wanted)):
                query = sa.select(table.c.id).where(table.c.id.in_(chunk))
                found.update(conn.execute(query).scalars())
            if wanted - found:
                for clean in cleaned:  # the first record naming a missing one says so
                    self._check_refs(conn, rtype, {f.name: clean.get(f.name)})

    @staticmethod
    def _repeats_a_key(
        rtype: RecordType, cleaned: list[dict[str, Any]], keys: list[list[tuple[str, ...]]]
    ) -> bool:
        """Whether two of the records share a unique key (`keys`: each one's natural keys)."""
        seen: set[tuple[Any, ...]] = set()
        for clean, natural in zip(cleaned, keys, strict=True):
            for key in natural:
                value = (key, *(clean[k] for k in key))
                if value in seen:
                    return True
                seen.add(value)
        return False

    def _raise_first_clash(
        self,
        conn: Connection,
        rtype: RecordType,
        cleaned: list[dict[str, Any]],
        keys: list[list[tuple[str, ...]]],
    ) -> None:
        """UniqueViolation for the first record whose unique key another record holds,
        found with one query per unique key and chunk."""
        table = self.tables[rtype.name]
        clashing: set[int] = set()
        for key in rtype.unique:
            columns = [table.c[_column(k, rtype.fields[k].kind)] for k in key]
            keyed = [
                (i, tuple(clean[k] for k in key))
                for i, clean in enumerate(cleaned)
                if key in keys[i]
            ]
            for start in range(0, len(keyed), 300):
                chunk = keyed[start : start + 300]
                wanted = [value for _, value in chunk]
                query = sa.select(*columns).where(sa.tuple_(*columns).in_(wanted))
                taken = {tuple(row) for row in conn.execute(query)}
                clashing.update(i for i, value in chunk if value in taken)
        if clashing:
            first = cleaned[min(clashing)]
            clash = self._clash(conn, rtype, first)
            if clash is not None:
                raise UniqueViolation(rtype.name, clash[0], self.get(rtype.name, clash[1]))

    def _set_links(
        self, conn: Connection, rtype: RecordType, name: str, owner: int, targets: list[int]
    ) -> list[int]:
        """Replace a many-to-many field's links; returns the targets as stored (no repeats)."""
        link = self.links[(rtype.name, name)]
        conn.execute(link.delete().where(link.c.owner_id == owner))
        seen = list(dict.fromkeys(targets))
        self._insert_rows(
            conn,
            link,
            [{"owner_id": owner, "target_id": t, "position": i} for i, t in enumerate(seen)],
        )
        return seen

    def add_links(
        self,
        type_name: str,
        record_id: int,
        field_name: str,
        targets: list[int],
        user_id: int | None = None,
    ) -> None:
        """Append targets to a many-to-many field, keeping the links it has.

        A PATCH replaces the whole list; adding one output at a time to a run that lists a
        thousand would rewrite (and check) them all every time.
        """
        rtype = self._type(type_name)
        field = rtype.fields.get(field_name)
        if field is None or not field.is_m2m:
            raise InvalidRecord("not a list of records", type_name, field_name)
        link = self.links[(type_name, field_name)]
        table = self.tables[type_name]
        with self.transaction() as conn:
            if self._lock_row(conn, table, record_id) is None:
                raise NotFound(type_name, f"id {record_id}")
            wanted = list(dict.fromkeys(_as_id(rtype, field_name, t) for t in targets))
            mine = link.c.owner_id == record_id
            have: set[int] = set()
            for chunk in _chunks(wanted):
                have.update(
                    conn.execute(
                        sa.select(link.c.target_id).where(mine, link.c.target_id.in_(chunk))
                    ).scalars()
                )
            new = [t for t in wanted if t not in have]
            if not new:
                return
            self._check_refs(conn, rtype, {field_name: new})
            last = conn.execute(sa.select(sa.func.max(link.c.position)).where(mine)).scalar()
            start = 0 if last is None else last + 1
            conn.execute(
                link.insert(),
                [
                    {"owner_id": record_id, "target_id": t, "position": start + i}
                    for i, t in enumerate(new)
                ],
            )
            values: dict[str, Any] = {"last_updated": _now()}
            if user_id is not None:
                values["updated_by_id"] = user_id
            conn.execute(table.update().where(table.c.id == record_id).values(**values))

    def patch(
        self, type_name: str, record_id: int, data: dict[str, Any], user_id: int | None = None
    ) -> Record:
        """Update the given fields of one record (PATCH semantics)."""
        rtype = self._type(type_name)
        clean = self._clean(rtype, data, partial=True)
        with self.transaction() as conn:
            self._lock_row(conn, self.tables[type_name], record_id)
            current = self.get(type_name, record_id)
            self._check_refs(conn, rtype, clean)
            merged = {**current, **clean}
            clash = self._clash(conn, rtype, merged, exclude=record_id)
            if clash:
                raise UniqueViolation(type_name, clash[0], self.get(type_name, clash[1]))
            values = {
                _column(k, rtype.fields[k].kind): v
                for k, v in clean.items()
                if not rtype.fields[k].is_m2m
            }
            values["last_updated"] = _now()
            if user_id is not None:
                values["updated_by_id"] = user_id
            table = self.tables[type_name]
            conn.execute(table.update().where(table.c.id == record_id).values(**values))
            for f in rtype.m2ms:
                if f.name in clean:
                    self._set_links(conn, rtype, f.name, record_id, clean[f.name])
            return self.get(type_name, record_id)

    def delete(self, type_name: str, record_id: int) -> None:
        """Delete one record and its own links; refuses while other records point at it."""
        rtype = self._type(type_name)
        with self.transaction() as conn:
            self.get(type_name, record_id)
            if rtype.whole_object_component:
                comp = self.tables["object_component"]
                conn.execute(
                    comp.delete().where(
                        comp.c.object_id == record_id, comp.c.whole_object.is_(True)
                    )
                )
            for f in rtype.m2ms:
                link = self.links[(type_name, f.name)]
                conn.execute(link.delete().where(link.c.owner_id == record_id))
            table = self.tables[type_name]
            try:
                with conn.begin_nested():
                    conn.execute(table.delete().where(table.c.id == record_id))
            except sa.exc.IntegrityError as exc:
                raise InvalidRecord(
                    f"{type_name} {record_id} is still referred to by other records"
                ) from exc

    def get_or_create(
        self, type_name: str, data: dict[str, Any], user_id: int | None = None
    ) -> tuple[Record, bool]:
        """The existing record with the same unique key, or a new one."""
        return create_or_existing(lambda: self.create(type_name, data, user_id=user_id))

    def get_or_create_many(
        self, type_name: str, rows: list[dict[str, Any]], user_id: int | None = None
    ) -> list[tuple[Record, bool]]:
        """`get_or_create` for many records of one type, in one transaction: when none of
        them is there yet, in one `create_many` (a few statements per chunk, as a pull of
        thousands of products needs); otherwise record by record."""
        with self.transaction():
            try:
                return [(r, True) for r in self.create_many(type_name, rows, user_id=user_id)]
            except UniqueViolation:
                return [self.get_or_create(type_name, data, user_id=user_id) for data in rows]

    # ----------------------------------------------------------- users, tokens
    def ensure_user(self, username: str) -> Record:
        rec, _ = self.get_or_create("users", {"username": username})
        return rec

    def issue_token(self, user_id: int) -> str:
        """A new 40-character token for the user; only its SHA-256 digest is stored."""
        token = secrets.token_hex(20)
        with self.transaction() as conn:
            conn.execute(
                self.tokens.insert().values(digest=_digest(token), user_id=user_id, created=_now())
            )
        return token

    def add_token(self, user_id: int, token: str) -> None:
        """Register a token chosen elsewhere (e.g. one kept in a user's token file)."""
        with self.transaction() as conn:
            exists = conn.execute(
                sa.select(self.tokens.c.digest).where(self.tokens.c.digest == _digest(token))
            ).scalar()
            if exists is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            self.tokens.insert().values(
                                digest=_digest(token), user_id=user_id, created=_now()
                            )
                        )
                except sa.exc.IntegrityError:
                    pass  # registered meanwhile by another process (PostgreSQL's row locks)

    def revoke_token(self, token: str) -> None:
        """Forget a token: requests carrying it are refused from now on."""
        self.revoke_digest(_digest(token))

    def revoke_digest(self, digest: str) -> None:
        """Forget the token with this SHA-256 digest (the only form the store keeps)."""
        with self.transaction() as conn:
            conn.execute(self.tokens.delete().where(self.tokens.c.digest == digest))

    def user_for_token(self, token: str) -> Record | None:
        """The user a token authenticates, noting the day it was used (one write a day)."""
        digest = _digest(token)
        with self._reading() as conn:
            row = conn.execute(
                sa.select(self.tokens.c.user_id, self.tokens.c.last_used).where(
                    self.tokens.c.digest == digest
                )
            ).first()
        if row is None:
            return None
        today = _now()[:10]
        if row.last_used is None or str(row.last_used)[:10] != today:
            with self.transaction() as conn:
                conn.execute(
                    self.tokens.update()
                    .where(self.tokens.c.digest == digest)
                    .values(last_used=_now())
                )
        return self.get("users", row.user_id)

    def tokens_of(self, user_id: int | None = None) -> list[dict[str, Any]]:
        """Every token (or a user's) as `{digest, username, created, last_used}`, oldest
        first: what an operator needs to find and revoke tokens; never a token itself."""
        users = self.tables["users"]
        query = (
            sa.select(
                self.tokens.c.digest,
                users.c.username,
                self.tokens.c.created,
                self.tokens.c.last_used,
            )
            .join(users, users.c.id == self.tokens.c.user_id)
            .order_by(self.tokens.c.created, self.tokens.c.digest)
        )
        if user_id is not None:
            query = query.where(self.tokens.c.user_id == user_id)
        with self._reading() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def revoke_tokens_of(self, user_id: int, keep: str | None = None) -> int:
        """Forget every token of a user but `keep` (a token); how many were forgotten."""
        where = self.tokens.c.user_id == user_id
        if keep is not None:
            where = sa.and_(where, self.tokens.c.digest != _digest(keep))
        with self.transaction() as conn:
            return conn.execute(self.tokens.delete().where(where)).rowcount or 0

    # ------------------------------------------------------ namespace members
    def members(self, namespace_id: int) -> list[Record]:
        """The users who may write in a namespace, in the order they were added."""
        with self._reading() as conn:
            ids = conn.execute(
                sa.select(self.namespace_members.c.user_id)
                .where(self.namespace_members.c.namespace_id == namespace_id)
                .order_by(self.namespace_members.c.added, self.namespace_members.c.user_id)
            ).scalars()
            wanted = list(ids)
        users = self.get_many("users", wanted) if wanted else {}
        return [users[i] for i in wanted]

    def is_member(self, namespace_id: int, user_id: int) -> bool:
        with self._reading() as conn:
            found = conn.execute(
                sa.select(self.namespace_members.c.user_id).where(
                    self.namespace_members.c.namespace_id == namespace_id,
                    self.namespace_members.c.user_id == user_id,
                )
            ).first()
        return found is not None

    def _add_member(self, conn: Connection, namespace_id: int, user_id: int) -> bool:
        """Insert the membership unless it is there: one statement, so two requests adding
        the same member at once cannot clash on the key (PostgreSQL has no database lock)."""
        dialect = sa_postgresql if self.is_postgresql else sa_sqlite
        added = conn.execute(
            dialect.insert(self.namespace_members)
            .values(namespace_id=namespace_id, user_id=user_id, added=_now())
            .on_conflict_do_nothing()
            .returning(self.namespace_members.c.user_id)
        )
        return added.first() is not None

    def add_member(self, namespace_id: int, user_id: int) -> bool:
        """Let a user write in a namespace; False if they already could."""
        with self.transaction() as conn:
            self.get("namespace", namespace_id)
            self.get("users", user_id)
            return self._add_member(conn, namespace_id, user_id)

    def remove_member(self, namespace_id: int, user_id: int) -> bool:
        """Take a user's right to write in a namespace away; False if they had none."""
        with self.transaction() as conn:
            gone = conn.execute(
                self.namespace_members.delete().where(
                    self.namespace_members.c.namespace_id == namespace_id,
                    self.namespace_members.c.user_id == user_id,
                )
            )
            return bool(gone.rowcount)

    # ------------------------------------------------------------ file claims
    def lock_files(self, conn: Connection, hashes: Iterable[str]) -> None:
        """Serialise, until the transaction ends, what claims these bytes and what sweeps
        them: PostgreSQL takes an advisory lock per SHA-1 (in one order, so two callers never
        wait on each other); SQLite's whole-database write lock does that already."""
        if not self.is_postgresql:
            return
        for text in sorted(set(hashes)):
            digest = hashlib.sha256(text.encode("utf-8")).digest()
            key = int.from_bytes(digest[:8], "big", signed=True)
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def claim_file(
        self, sha1: str, user_id: int, uploaded: bool = False, published: bool = False
    ) -> None:
        """Note that a user asked to keep these bytes here (`uploaded`: and sent them;
        `published`: and asked for a public storage location of them). Flags only ever
        turn on."""
        self.claim_files([sha1], user_id, published=published, uploaded=uploaded)

    def claim_files(
        self, hashes: Iterable[str], user_id: int, published: bool = False, uploaded: bool = False
    ) -> None:
        """`claim_file` for many SHA-1s in one transaction: one file, what one batched
        upload request claims, a bundle of uploaded files, or a batch of storage locations."""
        claims = self.file_claims
        wanted = sorted(set(hashes))
        if not wanted:
            return
        with self.transaction() as conn:
            self.lock_files(conn, wanted)
            held: dict[str, tuple[bool, bool]] = {}
            for chunk in _chunks(wanted):
                rows = conn.execute(
                    sa.select(claims.c.hash, claims.c.uploaded, claims.c.published).where(
                        claims.c.user_id == user_id, claims.c.hash.in_(chunk)
                    )
                )
                held.update((sha1, (bool(up), bool(pub))) for sha1, up, pub in rows)
            now = _now()
            new = [
                {
                    "hash": h,
                    "user_id": user_id,
                    "uploaded": uploaded,
                    "published": published,
                    "created": now,
                }
                for h in wanted
                if h not in held
            ]
            if new:
                conn.execute(claims.insert(), new)
            for flag, wanted_on, column in ((0, uploaded, "uploaded"), (1, published, "published")):
                off = [h for h, flags in held.items() if wanted_on and not flags[flag]]
                for chunk in _chunks(off):  # flags only ever turn on
                    conn.execute(
                        claims.update()
                        .where(claims.c.user_id == user_id, claims.c.hash.in_(chunk))
                        .values({column: True})
                    )

    def files_here_for(self, hashes: Iterable[str], user_id: int) -> set[str]:
        """Of these SHA-1s, those whose bytes a user may count as here: they uploaded them,
        or they are published (`file_published`); asked in a few queries for a batch."""
        claims = self.file_claims
        wanted = sorted(set(hashes))
        found: set[str] = set()
        with self._reading() as conn:
            for chunk in _chunks(wanted):
                mine = sa.select(claims.c.hash).where(
                    claims.c.user_id == user_id,
                    claims.c.uploaded.is_(True),
                    claims.c.hash.in_(chunk),
                )
                found.update(h for (h,) in conn.execute(mine))
                found.update(h for (h,) in conn.execute(self._published(chunk)))
        return found

    def file_claimants(self, sha1: str) -> dict[int, bool]:
        """Users who claimed these bytes, each with whether they uploaded them."""
        claims = self.file_claims
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(claims.c.user_id, claims.c.uploaded).where(claims.c.hash == sha1)
            )
            return {user: bool(uploaded) for user, uploaded in rows}

    def file_published(self, sha1: str) -> bool:
        """Whether a public storage location names these bytes, asked for by a user who sent
        them (or written by the registry's operator, with no user): a public location asked
        for by anyone else publishes nothing."""
        return bool(self.files_published([sha1]))

    def files_published(self, hashes: Iterable[str]) -> set[str]:
        """`file_published` for many SHA-1s: those of them that are published."""
        found: set[str] = set()
        with self._reading() as conn:
            for chunk in _chunks(sorted(set(hashes))):
                found.update(h for (h,) in conn.execute(self._published(chunk)))
        return found

    def _published(self, hashes: list[str]) -> sa.Select:
        """The SHA-1s among `hashes` that a public location names, asked for by a user who
        sent the bytes or by the registry's operator (see `file_published`)."""
        loc, claims = self.tables["storage_location"], self.file_claims
        publisher = sa.exists().where(
            claims.c.hash == loc.c.hash,
            claims.c.uploaded.is_(True),
            claims.c.published.is_(True),
        )
        return (
            sa.select(loc.c.hash)
            .where(
                loc.c.hash.in_(hashes),
                loc.c.public.is_(True),
                sa.or_(loc.c.updated_by_id.is_(None), publisher),
            )
            .distinct()
        )

    def may_read_file(self, sha1: str, user_id: int) -> bool:
        """Whether a user may read private bytes: they uploaded them and made a storage
        location naming them."""
        if not self.file_claimants(sha1).get(user_id):
            return False
        return self.find_one("storage_location", {"hash": sha1, "updated_by": user_id}) is not None

    def ping(self) -> str | None:
        """None when the database answers a query on one of its tables, else why not (one
        line, without the URL)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(self.tokens.c.digest).limit(1)).all()
        except sa.exc.SQLAlchemyError as exc:
            text = str(getattr(exc, "orig", None) or exc).strip()
            return text.splitlines()[0] if text else type(exc).__name__
        return None


_stores: dict[str, Store] = {}
_stores_lock = threading.Lock()


def open_store(location: str | Path, settled_only: bool = False) -> Store:
    """One Store per database per process, so engines and connection pools are shared.
    `settled_only`: one that skips provisional records (see Store)."""
    url = database_url(location)
    key = f"{url} settled" if settled_only else url
    # a process forked from this one (doit's process runner) opens its own: connections
    # inherited through fork are the parent's
    key = f"{key} pid={os.getpid()}"
    with _stores_lock:
        if key not in _stores:
            _stores[key] = Store(url, settled_only=settled_only)
        return _stores[key]


def token_digest(token: str) -> str:
    """How the store keeps a token: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


_digest = token_digest


def _as_id(rtype: RecordType, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise InvalidRecord(f"expected a record id, got {value!r}", rtype.name, name)
    try:
        return int(value)
    except ValueError:
        raise InvalidRecord(f"expected a record id, got {value!r}", rtype.name, name) from None


_Item = TypeVar("_Item")


def _chunks(ids: list[_Item], size: int = 500) -> Iterator[list[_Item]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _converted(
    values: tuple[Any, ...], converters: list[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    """A row's values with those at the given positions converted (None stays None)."""
    row = list(values)
    for i, convert in converters:
        if row[i] is not None:
            row[i] = convert(row[i])
    return tuple(row)


def _once_each(convert: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A column type's conversion that works each value out once: the rows of one insert
    share their moment (`last_updated`), so it is parsed once, not once per row."""
    if convert is None:
        return None
    done: dict[Any, Any] = {}

    def converted(value: Any) -> Any:
        if value not in done:
            done[value] = convert(value)
        return done[value]

    return converted
