"""What every registry offers, whether it is the SQL store itself or a remote one over HTTP.

Records are plain dicts: `id` (int), scalar fields, foreign keys as int ids, many-to-many
fields and reverse relations as lists of int ids. URLs exist only on the wire, so sync code
can move records between registries by translating ids.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from fdp_tasks.errors import FdpError

Record = dict[str, Any]


def database_url(location: str | Path) -> str:
    """A SQLAlchemy URL for `location`: a URL is kept, a file path becomes SQLite. (Here,
    not beside the engine, so that finding the registry imports no SQL engine.)"""
    text = str(location)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().resolve()}"


class RegistryError(FdpError):
    """A registry refused or failed a request."""


class RegistryUnavailable(RegistryError):
    """The registry's database cannot be opened, read or written (a read-only or full disk,
    a file or server that is not there, a lock held too long)."""


class NotFound(RegistryError):
    def __init__(self, type_name: str, ident: object):
        super().__init__(f"no {type_name} with {ident}")
        self.type_name = type_name
        self.ident = ident


class InvalidRecord(RegistryError):
    """A record the data model does not allow: a missing field, a bad value, a dangling key.

    `type_name` and `field` say where, when the problem is one field's, so the server can
    answer per field without reading the message; the text reads 'type.field: message'.
    """

    exit_code = 2

    def __init__(self, message: str, type_name: str | None = None, field: str | None = None):
        where = ".".join(part for part in (type_name, field) if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.type_name = type_name
        self.field = field


class UniqueViolation(RegistryError):
    """A create that clashes with an existing record on one of the type's unique keys."""

    def __init__(self, type_name: str, key: tuple[str, ...], existing: Record | None):
        super().__init__(f"{type_name} with the same {', '.join(key)} already exists")
        self.type_name = type_name
        self.key = key
        self.existing = existing


def create_or_existing(create: Callable[[], Record]) -> tuple[Record, bool]:
    """(record, True) from `create`, or (the clashing record, False) on a unique violation.

    Creating first and looking up only on a clash costs one round trip for new records.
    """
    try:
        return create(), True
    except UniqueViolation as exc:
        if exc.existing is None:
            raise
        return exc.existing, False


class Registry(Protocol):
    """What every registry offers: `Store` (SQLite, PostgreSQL) and `HttpRegistry` (our server,
    the upstream FDP registry). Sync, graph, api and catalog rely on nothing else, and
    tests/test_registry_conformance.py holds every implementation to the same answers.

    `type_name` is a type of the data model (schemas/registry.schema.json); an unknown one
    raises NotFound("type", ...). Records are as the module docstring says.
    """

    def get(self, type_name: str, record_id: int) -> Record:
        """The record with this id; NotFound if there is none."""
        ...

    def find(
        self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[Record]:
        """Records whose fields equal the filters, newest (highest id) first, at most `limit`.

        Filter keys are field names; values are compared as the field's kind reads them
        (booleans, date-times, ids of foreign keys, one id of a many-to-many field: the
        records linking to it), None matching a missing value. On a field the schema names
        as a glob field, a value with `*` is a pattern anchored at both ends, each `*` any
        run of characters, case-sensitive. A filter the type does not have raises
        InvalidRecord.
        """
        ...

    def find_one(self, type_name: str, filters: dict[str, Any]) -> Record | None:
        """The newest record `find` would return, or None."""
        ...

    def count(self, type_name: str, filters: dict[str, Any] | None = None) -> int:
        """How many records `find` would return without a limit."""
        ...

    def get_many(self, type_name: str, ids: list[int]) -> dict[int, Record]:
        """Records by id (repeats asked once), batched where the registry can; NotFound
        naming a missing id if any is missing."""
        ...

    def create(self, type_name: str, data: dict[str, Any]) -> Record:
        """A new record from `data` (fields the type lacks are ignored, like the reference
        registry does; a uuid field left out gets a new uuid; an object gets its
        whole_object component). InvalidRecord for a missing or bad field or a dangling
        reference; UniqueViolation, carrying the existing record where it can be found,
        when a unique key of the type is taken."""
        ...

    def get_or_create(self, type_name: str, data: dict[str, Any]) -> tuple[Record, bool]:
        """(the record with the same unique key, False), or (a new record, True); calling it
        again with the same data gives the same record."""
        ...

    def get_or_create_many(
        self, type_name: str, rows: list[dict[str, Any]]
    ) -> list[tuple[Record, bool]]:
        """`get_or_create` for each of many records of one type, in order, in as few
        requests or statements as the registry can (a list per POST, one transaction)."""
        ...

    def patch(self, type_name: str, record_id: int, data: dict[str, Any]) -> Record:
        """Change the given fields of one record (a many-to-many field is replaced whole)
        and return it as it is now. NotFound, InvalidRecord or UniqueViolation as for
        create; a registry may refuse types it keeps immutable (RegistryError)."""
        ...

    def delete(self, type_name: str, record_id: int) -> None:
        """Remove one record; NotFound if there is none, InvalidRecord while other records
        refer to it; a registry may refuse types it keeps (RegistryError)."""
        ...

    def transaction(self) -> AbstractContextManager[Any]:
        """A block whose writes all happen or none do: leaving it with an exception undoes
        them. Blocks nest (an inner one joins the outer). `Store` gives a database
        transaction; over HTTP, where the REST API has none, `HttpRegistry` undoes what it
        can (see HttpRegistry.transaction)."""
        ...
