"""A read-through cache in front of a registry, so sync asks for each record once.

Every record a `find` returns is remembered by id, so walking foreign keys after a filtered
listing costs no further round trips: the pattern that turns one listing plus N look-ups
into one listing. Records this process creates are remembered too. The cache lives as long
as one command; other writers' changes during it are not seen, which sync tolerates because
every create is idempotent. Listings are kept only until the next write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fdp_tasks.store.base import Record, Registry


class CachedRegistry:
    """Wraps any Registry (Store or HttpRegistry) and keeps what it has seen."""

    def __init__(self, inner: Registry):
        self.inner = inner
        self.records: dict[tuple[str, int], Record] = {}
        self.finds: dict[tuple, list[Record]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _keep(self, type_name: str, record: Record) -> Record:
        self.records[(type_name, record["id"])] = record
        return record

    def get(self, type_name: str, record_id: int) -> Record:
        key = (type_name, record_id)
        if key not in self.records:
            self.records[key] = self.inner.get(type_name, record_id)
        return self.records[key]

    def get_many(self, type_name: str, ids: list[int]) -> dict[int, Record]:
        """Records by id: those not seen yet in one batch of the inner registry's (a few
        hundred per query or request where it can), each kept."""
        wanted = list(dict.fromkeys(ids))
        missing = [i for i in wanted if (type_name, i) not in self.records]
        if missing:
            batched = getattr(self.inner, "get_many", None)
            found = (
                batched(type_name, missing)
                if batched is not None
                else {i: self.inner.get(type_name, i) for i in missing}
            )
            for record in found.values():
                self._keep(type_name, record)
        return {i: self.records[(type_name, i)] for i in wanted}

    def forget(self, type_names: tuple[str, ...]) -> None:
        """Drop the records kept of these types, and their listings: a sync that goes a
        page of products at a time holds one page's records, not those of every product."""
        for key in [key for key in self.records if key[0] in type_names]:
            del self.records[key]
        for key in [key for key in self.finds if key[0] in type_names]:
            del self.finds[key]

    def forget_ids(self, type_name: str, ids: Iterable[int]) -> None:
        """Drop the records kept of one type with these ids (the rest stay)."""
        for record_id in ids:
            self.records.pop((type_name, record_id), None)

    def find(
        self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[Record]:
        key = (type_name, tuple(sorted((filters or {}).items())), limit)
        if key not in self.finds:
            rows = self.inner.find(type_name, filters, limit=limit)
            self.finds[key] = [self._keep(type_name, r) for r in rows]
        return self.finds[key]

    def create(self, type_name: str, data: dict[str, Any]) -> Record:
        # A create can add records of other types too (an object's whole_object component),
        # so every remembered listing may be out of date now; records by id are not.
        self.finds.clear()
        return self._keep(type_name, self.inner.create(type_name, data))

    def patch(self, type_name: str, record_id: int, data: dict[str, Any]) -> Record:
        self.finds.clear()
        return self._keep(type_name, self.inner.patch(type_name, record_id, data))

    def get_or_create(self, type_name: str, data: dict[str, Any]) -> tuple[Record, bool]:
        # The inner registry's own get_or_create: over HTTP it may send its POST again after
        # a dropped connection or a 5xx (a repeat that clashes finds the record), which a
        # plain create must not.
        self.finds.clear()
        record, created = self.inner.get_or_create(type_name, data)
        return self._keep(type_name, record), created

    def get_or_create_many(
        self, type_name: str, rows: list[dict[str, Any]]
    ) -> list[tuple[Record, bool]]:
        """`get_or_create` for many records, in one batch of the inner registry's (a POST of
        a list, one transaction), each record kept."""
        self.finds.clear()
        made = self.inner.get_or_create_many(type_name, rows)
        return [(self._keep(type_name, record), created) for record, created in made]


def forget(registry: Registry, type_names: tuple[str, ...]) -> None:
    """`CachedRegistry.forget` where `registry` keeps records; nothing for one that does not."""
    if isinstance(registry, CachedRegistry):
        registry.forget(type_names)


def forget_ids(registry: Registry, type_name: str, ids: Iterable[int]) -> None:
    """`CachedRegistry.forget_ids` where `registry` keeps records."""
    if isinstance(registry, CachedRegistry):
        registry.forget_ids(type_name, ids)


def all_kept(registry: Registry, type_name: str, ids: Iterable[int]) -> bool:
    """Whether `registry` keeps every one of these records (one that keeps none: True, as
    there is nothing to read ahead into it)."""
    if not isinstance(registry, CachedRegistry):
        return True
    return all((type_name, record_id) in registry.records for record_id in ids)


def iter_listing(
    registry: Registry, type_name: str, filters: dict[str, Any]
) -> Iterable[Record]:
    """The records matching `filters`, past a CachedRegistry (which would keep every one),
    a page at a time where the registry answers in pages (over HTTP)."""
    inner = registry.inner if isinstance(registry, CachedRegistry) else registry
    pages = getattr(inner, "iter_find", None)
    return pages(type_name, filters) if pages is not None else inner.find(type_name, filters)
