"""Removing what pushes that did not finish left on a registry: records no data product needs.

A push writes a product's provenance first (storage locations, objects and their components,
the code run) and the data product record last. A push that loses a race for the product's
name, or whose client vanishes, leaves that provenance behind, named by nothing. `sweep`
finds it, in one transaction:

- code runs with outputs, none of which belongs to a data product;
- objects no data product, kept code run or other record (keyword, licence, issue...) refers
  to, with their components;
- storage locations no remaining object or external object refers to.

The caller narrows who and what goes: `user_id` (only records that user wrote: the push that
just lost, whose records are its own), `before` (only records older than a moment, so that a
push still under way is left alone). With `user_id`, a storage location whose bytes another
user has claimed without a location of their own for them stays: a push of theirs may be
about to name it. Storage roots, file types, authors and namespaces are shared vocabulary and
never swept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fdp_tasks.store.sql import Store

CHUNK = 500


@dataclass
class Swept:
    """What a sweep removed: records per type, and the SHA-1s of files nothing names now
    and nobody else claims (the caller's file store may drop them)."""

    records: dict[str, int] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.records.values())


def _chunks(ids: Iterable[int]) -> Iterator[list[int]]:
    items = sorted(set(ids))
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def _select_ids(conn: Connection, make: Callable[[list[int]], Any], ids: Iterable[int]) -> set[int]:
    """The first column of `make(chunk)` over `ids` a chunk at a time."""
    out: set[int] = set()
    for chunk in _chunks(ids):
        out.update(v for v in conn.execute(make(chunk)).scalars() if v is not None)
    return out


def _values_in(column: Any, spared: list[Any]) -> Callable[[list[int]], Any]:
    """A query of the values of `column` among a chunk of ids, on the rows not `spared`."""

    def query(chunk: list[int]) -> Any:
        return sa.select(column).where(column.in_(chunk), *spared)

    return query


def _linked_objects(
    comp: sa.Table, link: sa.Table, spared: list[Any]
) -> Callable[[list[int]], Any]:
    """A query of the objects, among a chunk of ids, whose components `link` names."""

    def query(chunk: list[int]) -> Any:
        return (
            sa.select(comp.c.object_id)
            .join(link, link.c.target_id == comp.c.id)
            .where(comp.c.object_id.in_(chunk), *spared)
        )

    return query


class _Sweep:
    def __init__(self, store: Store, conn: Connection, user_id: int | None, before: Any):
        self.store = store
        self.conn = conn
        self.user_id = user_id
        self.before = before
        self.t = store.tables
        self.outputs = store.links[("code_run", "outputs")]

    def eligible(self, table: sa.Table) -> list[Any]:
        """Conditions for records this sweep may take: its user's, and old enough."""
        conds: list[Any] = []
        if self.user_id is not None:
            conds.append(table.c.updated_by_id == self.user_id)
        if self.before is not None:
            conds.append(table.c.last_updated < self.before)
        return conds

    def garbage_runs(self) -> set[int]:
        """Runs with outputs, none of which belongs to a data product."""
        run, comp, out, dp = (
            self.t["code_run"],
            self.t["object_component"],
            self.outputs,
            self.t["data_product"],
        )
        with_outputs = sa.select(out.c.owner_id)
        productive = (
            sa.select(out.c.owner_id)
            .join(comp, comp.c.id == out.c.target_id)
            .join(dp, dp.c.object_id == comp.c.object_id)
        )
        query = sa.select(run.c.id).where(
            run.c.id.in_(with_outputs), ~run.c.id.in_(productive), *self.eligible(run)
        )
        return set(self.conn.execute(query).scalars())

    def candidate_objects(self) -> set[int]:
        obj, dp = self.t["object"], self.t["data_product"]
        query = sa.select(obj.c.id).where(
            ~obj.c.id.in_(sa.select(dp.c.object_id)), *self.eligible(obj)
        )
        return set(self.conn.execute(query).scalars())

    def referenced_objects(self, candidates: set[int], runs: set[int]) -> set[int]:
        """Candidate objects something other than a swept run still refers to."""
        schema = self.store.schema
        comp = self.t["object_component"]
        refs: set[int] = set()
        for type_name in schema.order:
            if type_name in ("object", "object_component"):
                continue
            table = self.t[type_name]
            for f in schema[type_name].fields.values():
                if not (f.is_fk and f.to == "object"):
                    continue
                column = table.c[f"{f.name}_id"]
                spared = [~table.c.id.in_(runs)] if type_name == "code_run" and runs else []
                refs |= _select_ids(self.conn, _values_in(column, spared), candidates)
        # components named by a run's inputs or outputs, or by an issue
        for (owner_type, link_name), link in self.store.links.items():
            if schema[owner_type].fields[link_name].to != "object_component":
                continue
            spared = [~link.c.owner_id.in_(runs)] if owner_type == "code_run" and runs else []
            refs |= _select_ids(self.conn, _linked_objects(comp, link, spared), candidates)
        return refs

    def garbage_locations(self, objects_gone: set[int]) -> set[int]:
        """Storage locations nothing left refers to."""
        loc = self.t["storage_location"]
        candidates = set(
            self.conn.execute(sa.select(loc.c.id).where(*self.eligible(loc))).scalars()
        )
        refs: set[int] = set()
        schema = self.store.schema
        for type_name in schema.order:
            table = self.t[type_name]
            for f in schema[type_name].fields.values():
                if not (f.is_fk and f.to == "storage_location"):
                    continue
                column = table.c[f"{f.name}_id"]
                going = type_name == "object" and objects_gone
                spared = [~table.c.id.in_(objects_gone)] if going else []
                refs |= _select_ids(self.conn, _values_in(column, spared), candidates)
        return candidates - refs

    def claimed_by_others(self, location_ids: set[int]) -> set[int]:
        """Locations whose bytes another user asked to keep without a location of their own
        for them: a push of theirs may be about to name one of these."""
        if self.user_id is None:
            return set()
        loc, claims = self.t["storage_location"], self.store.file_claims
        own = loc.alias("own")
        has_own = sa.exists().where(
            own.c.hash == claims.c.hash, own.c.updated_by_id == claims.c.user_id
        )
        return _select_ids(
            self.conn,
            lambda chunk: (
                sa.select(loc.c.id)
                .join(claims, claims.c.hash == loc.c.hash)
                .where(loc.c.id.in_(chunk), claims.c.user_id != self.user_id, ~has_own)
            ),
            location_ids,
        )

    def delete(self, table: sa.Table, column: Any, ids: set[int]) -> int:
        count = 0
        for chunk in _chunks(ids):
            count += self.conn.execute(table.delete().where(column.in_(chunk))).rowcount or 0
        return count


def sweep(
    store: Store,
    *,
    user_id: int | None = None,
    before: datetime | str | None = None,
    drop_files: Callable[[list[str]], None] | None = None,
) -> Swept:
    """Delete the records no data product needs (see the module docstring), in one
    transaction. `drop_files(hashes)` is called inside it, before it commits, with the
    SHA-1s nothing names or claims any more, so that no upload of those bytes can slip in
    between the decision and the deletion of the file."""
    swept = Swept()
    with store.transaction() as conn:
        work = _Sweep(store, conn, user_id, before)
        runs = work.garbage_runs()
        candidates = work.candidate_objects()
        objects_gone = candidates - work.referenced_objects(candidates, runs)
        locations = work.garbage_locations(objects_gone)
        loc = store.tables["storage_location"]
        store.lock_files(conn, _hashes(conn, loc, locations))  # no claim slips in now
        locations -= work.claimed_by_others(locations)
        hashes = _hashes(conn, loc, locations)
        run = store.tables["code_run"]
        inputs = store.links[("code_run", "inputs")]
        work.delete(work.outputs, work.outputs.c.owner_id, runs)
        work.delete(inputs, inputs.c.owner_id, runs)
        swept.records["code_run"] = work.delete(run, run.c.id, runs)
        authors, comp = store.links[("object", "authors")], store.tables["object_component"]
        work.delete(authors, authors.c.owner_id, objects_gone)
        swept.records["object_component"] = work.delete(comp, comp.c.object_id, objects_gone)
        obj = store.tables["object"]
        swept.records["object"] = work.delete(obj, obj.c.id, objects_gone)
        swept.records["storage_location"] = work.delete(loc, loc.c.id, locations)
        swept.hashes = _unclaimed(store, conn, hashes, user_id, before)
        if drop_files is not None and swept.hashes:
            drop_files(swept.hashes)
    return swept


def _hashes(conn: Connection, loc: sa.Table, location_ids: set[int]) -> set[str]:
    return {
        h
        for chunk in _chunks(location_ids)
        for h in conn.execute(sa.select(loc.c.hash).where(loc.c.id.in_(chunk))).scalars()
    }


def _unclaimed(
    store: Store, conn: Connection, hashes: set[str], user_id: int | None, before: Any
) -> list[str]:
    """Of these SHA-1s, those no storage location names any more: their claims (the
    sweeping user's, or all old enough ones) are dropped, and those nobody else claims are
    returned."""
    loc, claims = store.tables["storage_location"], store.file_claims
    out = []
    for sha1 in sorted(hashes):
        if conn.execute(sa.select(loc.c.id).where(loc.c.hash == sha1).limit(1)).first():
            continue
        mine = [claims.c.hash == sha1]
        if user_id is not None:
            mine.append(claims.c.user_id == user_id)
        if before is not None:
            mine.append(claims.c.created < before)
        conn.execute(claims.delete().where(*mine))
        if conn.execute(sa.select(claims.c.user_id).where(claims.c.hash == sha1)).first() is None:
            out.append(sha1)
    return out


def stale_claims(
    store: Store, before: datetime | str, drop_files: Callable[[list[str]], None]
) -> list[str]:
    """Drop claims older than `before` on bytes no storage location names (an upload whose
    push never recorded it), and the files nobody claims any more (returned)."""
    loc, claims = store.tables["storage_location"], store.file_claims
    with store.transaction() as conn:
        old = set(
            conn.execute(
                sa.select(claims.c.hash).where(
                    claims.c.created < before, ~claims.c.hash.in_(sa.select(loc.c.hash))
                )
            ).scalars()
        )
        store.lock_files(conn, old)
        unclaimed = _unclaimed(store, conn, old, None, before)
        if unclaimed:
            drop_files(unclaimed)
        return unclaimed


def drop_unnamed(
    store: Store, hashes: Iterable[str], drop_files: Callable[[list[str]], None]
) -> list[str]:
    """Of these SHA-1s, drop (inside one transaction, as `sweep` does) and return those no
    storage location names and nobody claims."""
    with store.transaction() as conn:
        unnamed = _unnamed(store, conn, sorted(set(hashes)))
        store.lock_files(conn, unnamed)  # then look again: a claim may have come meanwhile
        unnamed = _unnamed(store, conn, unnamed)
        if unnamed:
            drop_files(unnamed)
    return unnamed


def _unnamed(store: Store, conn: Connection, wanted: list[str]) -> list[str]:
    loc, claims = store.tables["storage_location"], store.file_claims
    found: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        found.update(conn.execute(sa.select(loc.c.hash).where(loc.c.hash.in_(chunk))).scalars())
        found.update(
            conn.execute(sa.select(claims.c.hash).where(claims.c.hash.in_(chunk))).scalars()
        )
    return [h for h in wanted if h not in found]
