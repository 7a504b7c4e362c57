"""Look-ups every layer needs, written once against the Registry protocol.

They work the same on the local SQL store and on a remote HTTP registry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from fdp_tasks.refs import ProductRef
from fdp_tasks.store.base import Record, Registry


@dataclass
class Located:
    """A data product with the object, file location and storage root behind it."""

    product: Record
    namespace: Record
    object: Record
    location: Record | None
    root: Record | None

    @property
    def hash(self) -> str | None:
        return self.location["hash"] if self.location else None

    @property
    def product_id(self) -> int:
        return int(self.product["id"])

    @property
    def ref(self) -> ProductRef:
        return ProductRef.of(self.namespace["name"], self.product["name"], self.product["version"])


# What a listing of data products keeps of each: enough to name it and find its file. A
# listing of a remote namespace may hold tens of thousands; their whole records are read a
# page at a time by whoever copies them.
LISTED_FIELDS = ("id", "name", "version", "object", "namespace")
# In a listing, the SHA-1 of a product's file when it is known without asking (what this
# process pushed): the rest are looked up (`locate`) when asked.
LISTED_SHA1 = "sha1"


def listed(product: Record, sha1: str | None = None) -> Record:
    """A data product record cut down to `LISTED_FIELDS`, with its file's SHA-1 if given."""
    kept = {key: product.get(key) for key in LISTED_FIELDS}
    if sha1 is not None:
        kept[LISTED_SHA1] = sha1
    return kept


def listed_hash(registry: Registry, product: Record) -> str | None:
    """The SHA-1 of a listed product's file: the one it was listed with, else looked up."""
    return product.get(LISTED_SHA1) or locate(registry, product).hash


def namespace_id(registry: Registry, name: str) -> int | None:
    rows = registry.find("namespace", {"name": name}, limit=1)
    return rows[0]["id"] if rows else None


def find_product(registry: Registry, namespace: str, name: str, version: str) -> Record | None:
    ns = namespace_id(registry, namespace)
    if ns is None:
        return None
    rows = registry.find(
        "data_product", {"namespace": ns, "name": name, "version": version}, limit=1
    )
    return rows[0] if rows else None


NAMES_PER_QUERY = 500  # product names looked up in one query (SQL's lists stay short)
ProductKey = tuple[str, str, str]  # namespace, name, version as recorded


def find_products(registry: Registry, refs: list[ProductRef]) -> dict[ProductKey, Record | None]:
    """`find_product` for many products, keyed by (namespace, name, version text), None
    where there is none: a query per namespace and few hundred names, not one per
    product. For a registry that takes a list of names as a filter (the SQL store)."""
    by_namespace: dict[str, list[ProductRef]] = {}
    for ref in refs:
        by_namespace.setdefault(ref.namespace, []).append(ref)
    out: dict[ProductKey, Record | None] = {}
    for namespace, group in by_namespace.items():
        ns = namespace_id(registry, namespace)
        names = sorted({ref.name for ref in group}) if ns is not None else []
        rows: list[Record] = []
        for start in range(0, len(names), NAMES_PER_QUERY):
            chunk = names[start : start + NAMES_PER_QUERY]
            rows += registry.find("data_product", {"namespace": ns, "name": chunk})
        found = {(r["name"], r["version"]): r for r in rows}
        for ref in group:
            out[(namespace, ref.name, ref.version_text)] = found.get((ref.name, ref.version_text))
    return out


def product_versions(registry: Registry, namespace: str, name: str) -> list[str]:
    ns = namespace_id(registry, namespace)
    if ns is None:
        return []
    return [r["version"] for r in registry.find("data_product", {"namespace": ns, "name": name})]


def product_names(registry: Registry, namespace: str, pattern: str) -> list[str]:
    ns = namespace_id(registry, namespace)
    if ns is None:
        return []
    rows = registry.find("data_product", {"namespace": ns, "name": pattern})
    return sorted({r["name"] for r in rows})


def latest_products(registry: Registry, namespace: str, pattern: str) -> list[Record]:
    """The highest version of every product name matching `pattern`, in one query."""
    from fdp_tasks.versions import newest_of_each_name

    ns = namespace_id(registry, namespace)
    if ns is None:
        return []
    rows = registry.find("data_product", {"namespace": ns, "name": pattern})
    rows.sort(key=lambda row: row["name"])  # stable: a name's rows stay in their order
    return list(newest_of_each_name((row["name"], row["version"], row) for row in rows))


def locate(registry: Registry, product: Record) -> Located:
    obj = registry.get("object", product["object"])
    location = root = None
    if obj.get("storage_location"):
        location = registry.get("storage_location", obj["storage_location"])
        root = registry.get("storage_root", location["storage_root"])
    return Located(product, registry.get("namespace", product["namespace"]), obj, location, root)


def get_many(registry: Registry, type_name: str, ids: list[int]) -> dict[int, Record]:
    """Records by id: batched where the registry can (the SQL store), one by one otherwise."""
    batched = getattr(registry, "get_many", None)
    if batched is not None:
        return batched(type_name, ids)
    return {i: registry.get(type_name, i) for i in set(ids)}


def locate_many(registry: Registry, products: list[Record]) -> list[Located]:
    """locate() for many products, with one batched look-up per record type."""
    objects = get_many(registry, "object", [p["object"] for p in products])
    namespaces = get_many(registry, "namespace", [p["namespace"] for p in products])
    locations = get_many(
        registry,
        "storage_location",
        [o["storage_location"] for o in objects.values() if o.get("storage_location")],
    )
    roots = get_many(registry, "storage_root", [loc["storage_root"] for loc in locations.values()])
    out = []
    for product in products:
        obj = objects[product["object"]]
        location_id = obj.get("storage_location")
        location = locations.get(location_id) if location_id is not None else None
        root = roots.get(location["storage_root"]) if location else None
        out.append(Located(product, namespaces[product["namespace"]], obj, location, root))
    return out


def locate_ref(registry: Registry, ref: ProductRef) -> Located | None:
    product = find_product(registry, ref.namespace, ref.name, ref.version_text)
    return locate(registry, product) if product else None


def whole_object_component(registry: Registry, object_record: Record) -> int:
    """The id of the object's whole_object component (every object has one)."""
    rows = registry.find(
        "object_component", {"object": object_record["id"], "whole_object": True}, limit=1
    )
    if rows:
        return rows[0]["id"]
    return registry.get_or_create(
        "object_component",
        {"object": object_record["id"], "name": "whole_object", "whole_object": True},
    )[0]["id"]


@lru_cache(maxsize=1)
def reference_file_types() -> dict[str, str]:
    """Extension -> name of the file types the reference CLI seeds into a new registry."""
    text = resources.files("fdp_tasks").joinpath("data/file_formats.json").read_text("utf-8")
    return dict(json.loads(text))


def file_type_name(extension: str) -> str:
    """The name the reference gives a file type: from its list, else the extension itself."""
    return reference_file_types().get(extension, extension)


def file_type_id(registry: Registry, extension: str, name: str | None = None) -> int:
    """The file_type for an extension: an existing one of that extension, else a new one.

    A registry shared with the reference CLI then holds one file type per extension, whoever
    made it. Of several existing ones, the one named `name` (default: the reference name)
    wins, then the oldest. A new one takes `name`, else the reference name.
    """
    wanted = name or file_type_name(extension)
    rows = registry.find("file_type", {"extension": extension})
    if rows:
        named = [r for r in rows if r["name"] == wanted]
        return min(named or rows, key=lambda r: r["id"])["id"]
    return registry.get_or_create("file_type", {"name": wanted, "extension": extension})[0]["id"]
