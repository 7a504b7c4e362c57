"""The registry data model, read once from schemas/registry.schema.json.

Store, server, client and sync all take their types, fields, keys and order from here,
so the data model has exactly one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from fdp_tasks.resources import read_schema


@dataclass(frozen=True)
class Field:
    name: str
    kind: str
    required: bool = False
    default: object = None
    to: str | None = None
    format: str | None = None

    @property
    def is_fk(self) -> bool:
        return self.kind == "fk"

    @property
    def is_m2m(self) -> bool:
        return self.kind == "m2m"

    @property
    def is_relation(self) -> bool:
        return self.kind in ("fk", "m2m")

    @property
    def target(self) -> str:
        """The record type a relation points to (a schema without one is refused here)."""
        if self.to is None:
            raise ValueError(f"registry schema: relation {self.name} names no target type")
        return self.to


@dataclass(frozen=True)
class RecordType:
    name: str
    fields: dict[str, Field]
    unique: tuple[tuple[str, ...], ...] = ()
    glob: frozenset[str] = frozenset()
    reverse: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Reverse relations that grow with the registry (every file of a storage root): the
    # store lists them only when asked (the server's answers), never for its own look-ups.
    lazy: frozenset[str] = frozenset()
    writable: frozenset[str] = frozenset()
    private: bool = False
    whole_object_component: bool = False

    @property
    def m2ms(self) -> list[Field]:
        return [f for f in self.fields.values() if f.is_m2m]

    def natural_keys(self, record: dict) -> list[tuple[str, ...]]:
        """Unique keys whose fields are all set in `record`, in declaration order."""
        return [key for key in self.unique if all(record.get(name) is not None for name in key)]


class RegistrySchema:
    """All record types, in an order where every type comes after the types it points to."""

    def __init__(self, document: dict):
        self.version: str = document.get("version", "1.0.0")
        self.types: dict[str, RecordType] = {}
        for name, spec in document["types"].items():
            fields = {
                fname: Field(
                    name=fname,
                    kind=f["kind"],
                    required=f.get("required", False),
                    default=f.get("default"),
                    to=f.get("to"),
                    format=f.get("format"),
                )
                for fname, f in spec["fields"].items()
            }
            self.types[name] = RecordType(
                name=name,
                fields=fields,
                unique=tuple(tuple(k) for k in spec.get("unique", [])),
                glob=frozenset(spec.get("glob", [])),
                reverse={k: (v[0], v[1]) for k, v in spec.get("reverse", {}).items()},
                lazy=frozenset(spec.get("lazy_reverse", [])),
                writable=frozenset(spec.get("writable", [])),
                private=spec.get("private", False),
                whole_object_component=spec.get("whole_object_component", False),
            )
        self.order: list[str] = self._dependency_order()

    def __getitem__(self, name: str) -> RecordType:
        return self.types[name]

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def _dependency_order(self) -> list[str]:
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name in visiting:
                raise ValueError(f"registry schema has a reference cycle through {name}")
            visiting.add(name)
            for f in self.types[name].fields.values():
                if f.is_relation and f.target != name:
                    visit(f.target)
            visiting.discard(name)
            order.append(name)

        for name in self.types:
            visit(name)
        return order


@lru_cache(maxsize=1)
def load_schema() -> RegistrySchema:
    """The registry schema shipped with fdp-tasks."""
    return RegistrySchema(read_schema("registry.schema.json"))
