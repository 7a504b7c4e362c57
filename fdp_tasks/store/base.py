"""What every registry offers, whether it is the SQL store itself or a remote one over HTTP.

Records are plain dicts: `id` (int), scalar fields, foreign keys as int ids, many-to-many
fields and reverse relations as lists of int ids. URLs exist only on the wire, so sync code
can move records between registries by translating ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fdp_tasks.errors import FdpError

Record = dict[str, Any]


class RegistryError(FdpError):
    """A registry refused or failed a request."""


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
    """The operations sync, graph and api rely on. Implemented by Store and HttpRegistry."""

    def get(self, type_name: str, record_id: int) -> Record: ...

    def find(
        self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[Record]: ...

    def create(self, type_name: str, data: dict[str, Any]) -> Record: ...

    def patch(self, type_name: str, record_id: int, data: dict[str, Any]) -> Record: ...

    def get_or_create(self, type_name: str, data: dict[str, Any]) -> tuple[Record, bool]: ...
