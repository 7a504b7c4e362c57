"""Registering what a config's `register:` block names: namespaces, authors, and files.

A registered file is fetched from root + path, hashed while it streams into the local data
store, and recorded with its original location, so the run that reads it works offline.
The records of one item are written in one transaction: all of them, or none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fdp_tasks.catalog.locations import (
    forget_roots,
    local_location,
    located_intact,
    referenced,
)
from fdp_tasks.datastore import DataStore, local_root, product_path, safe_relative
from fdp_tasks.errors import FdpError, HashMismatch, OutOfSync
from fdp_tasks.files import sha1_file
from fdp_tasks.refs import PartialRef
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record, Registry


def item_kind(item: dict[str, Any]) -> str:
    for kind in ("external_object", "data_product", "namespace", "author"):
        if kind in item:
            return kind
    raise FdpError(f"register item {item!r} names no namespace, author or object")


def item_label(item: dict[str, Any]) -> str:
    kind = item_kind(item)
    if kind in ("namespace", "author"):
        return f"{kind}:{item[kind]}"
    # the namespace is missing when neither the item nor the config names one
    return str(PartialRef(item.get("namespace_name"), item[kind], item.get("version") or None))


def register_problem(local: Registry, store: DataStore, item: dict[str, Any]) -> str | None:
    """Why the item's register task would run, or None when it is up to date."""
    kind = item_kind(item)
    if kind == "namespace":
        found_ns = queries.namespace_id(local, item["namespace"]) is not None
        return None if found_ns else "not registered"
    if kind == "author":
        return None if _find_author(local, item) else "not registered"
    product = queries.find_product(local, item["namespace_name"], item[kind], str(item["version"]))
    if product is None:
        return "not registered"
    found = queries.locate(local, product)
    missing = _missing_records(local, item, found)
    if missing:
        return f"its {missing} record is missing"
    if found.location is None or found.root is None or not store.holds(found.root["root"]):
        return "its file is not in the local data store"
    if not located_intact(store, found):
        return "its file is missing or modified in the data store"
    if not source_unchanged(item, found.hash):
        return "the source file changed: register it as a new version"
    if not source_recorded(local, item, found.hash):
        where = original_source(local, found)
        return (
            f"registered from another source ({where}): {item['root']}{item['path']} is "
            "fetched to compare"
        )
    return None


def source_recorded(local: Registry, item: dict[str, Any], sha1: str | None) -> bool:
    """Whether the item's own root + path is recorded as holding these bytes. The same name
    and version registered from elsewhere (another project's config, say) is not the item
    until its source has been fetched and found to hold the same bytes."""
    roots = local.find("storage_root", {"root": item["root"]}, limit=1)
    if not roots or not sha1:
        return False
    rows = local.find(
        "storage_location",
        {"storage_root": roots[0]["id"], "path": item["path"], "hash": sha1},
        limit=1,
    )
    return bool(rows)


def original_source(local: Registry, found: queries.Located) -> str:
    """Where a registered product was fetched from, as root + path (or 'unknown')."""
    for ext_id in found.product.get("external_object") or []:
        store_id = local.get("external_object", ext_id).get("original_store")
        if store_id:
            location = local.get("storage_location", store_id)
            root = local.get("storage_root", location["storage_root"])["root"]
            return f"{root}{location['path']}"
    return "unknown"


def _missing_records(local: Registry, item: dict[str, Any], found: queries.Located) -> str | None:
    """Which record a register of this item makes is not there (one left out by a register
    that failed half-way, or deleted since), so the register runs again instead of being
    reported done."""
    if item.get("file_type") and not found.object.get("file_type"):
        return "file_type"
    if "external_object" not in item:
        return None
    ext_ids = found.product.get("external_object") or []
    if not ext_ids:
        return "external_object"
    if not local.get("external_object", ext_ids[0]).get("original_store"):
        return "original storage_location"
    return None


def registered_product(local: Registry, store: DataStore, item: dict[str, Any]) -> bool:
    """True if the item is in the registry, its file intact in the store, its source unchanged."""
    return register_problem(local, store, item) is None


def source_unchanged(item: dict[str, Any], sha1: str | None) -> bool:
    """A local source file must still hold the registered bytes; a changed one needs a new
    version, which the register action says. Network sources are not re-read."""
    base = local_root(item["root"])
    if base is None:
        return True
    source = base / safe_relative(item["path"], "its storage root")
    return not source.is_file() or sha1_file(source) == sha1


def _find_author(local: Registry, item: dict[str, Any]) -> list:
    if item.get("identifier"):
        return local.find("author", {"identifier": item["identifier"]}, limit=1)
    return local.find("author", {"name": item.get("name") or item["author"]}, limit=1)


def _authors(local: Registry, urls: list[str] | None, fallback: int) -> list[int]:
    ids = []
    for url in urls or []:
        rows = local.find("author", {"identifier": url}, limit=1)
        ids.append(
            rows[0]["id"]
            if rows
            else local.get_or_create("author", {"name": url, "identifier": url})[0]["id"]
        )
    return ids or [fallback]


def register_item(local: Registry, store: DataStore, item: dict[str, Any], author_id: int) -> str:
    """Create the item's records (and fetch its file); returns a one-line summary."""
    kind = item_kind(item)
    if kind == "namespace":
        data = {
            k: item[v]
            for k, v in (("name", "namespace"), ("full_name", "full_name"), ("website", "website"))
            if item.get(v)
        }
        local.get_or_create("namespace", data)
        return f"namespace {item['namespace']}"
    if kind == "author":
        if not _find_author(local, item):
            data = {"name": item.get("name") or item["author"]}
            if item.get("identifier"):
                data["identifier"] = item["identifier"]
            local.get_or_create("author", data)
        return f"author {item.get('name') or item['author']}"

    name, version, namespace = item[kind], str(item["version"]), item["namespace_name"]
    extension = str(item.get("file_type") or "").lstrip(".")
    rel = product_path(namespace, name, version, extension)
    existing = queries.find_product(local, namespace, name, version)
    known = queries.locate(local, existing).hash if existing is not None else None
    # imported when a file is fetched: an up-to-date check needs no HTTP client
    from fdp_tasks.transfer import open_location

    try:
        sha1, size = store.put_stream(
            rel, open_location(item["root"], item["path"]), expected_sha1=known
        )
    except HashMismatch as exc:
        source = original_source(local, queries.locate(local, existing)) if existing else ""
        here = f"{item['root']}{item['path']}"
        if source in (here, "unknown"):
            what = f"{here} now differs"
        else:
            what = f"{here} holds other bytes than {source}, where it came from"
        raise OutOfSync(
            f"{namespace}:{name}@{version} is already registered with SHA-1 {known}, but "
            f"{what} ({exc}); register it as a new version"
        ) from None
    try:
        with _transaction(local):
            _record(local, store, item, rel, sha1, existing, author_id)
    except BaseException:
        # Nothing was recorded: the file just written goes again, unless a record that was
        # there before names it.
        forget_roots(local)
        if not referenced(local, store, rel):
            store.path(rel).unlink(missing_ok=True)
        raise
    return f"{namespace}:{name}@{version} ({size} bytes, SHA-1 {sha1[:12]})"


@contextlib.contextmanager
def _transaction(registry: Registry) -> Iterator[None]:
    """All records of one item, or none: one transaction where the registry offers them."""
    begin = getattr(registry, "transaction", None)
    if begin is None:
        yield
    else:
        with begin():
            yield


def _record(
    local: Registry,
    store: DataStore,
    item: dict[str, Any],
    rel: str,
    sha1: str,
    existing: Record | None,
    author_id: int,
) -> None:
    """Namespace, file and original locations, object, data product and external object;
    what an earlier register left out is added, so a rerun completes a partial one."""
    kind = item_kind(item)
    name, version, namespace = item[kind], str(item["version"]), item["namespace_name"]
    extension = str(item.get("file_type") or "").lstrip(".")
    ns, _ = local.get_or_create("namespace", {"name": namespace})
    location = local_location(local, store, rel, sha1)
    original_root, _ = local.get_or_create(
        "storage_root", {"root": item["root"], "local": item["root"].startswith("file://")}
    )
    original, _ = local.get_or_create(
        "storage_location",
        {"path": item["path"], "hash": sha1, "public": True, "storage_root": original_root["id"]},
    )
    file_type = queries.file_type_id(local, extension) if extension else None
    if existing is None:
        obj = local.create(
            "object",
            {
                "description": item.get("description") or item.get("title") or "",
                "storage_location": location,
                "file_type": file_type,
                "authors": _authors(local, item.get("authors"), author_id),
            },
        )
        existing, _ = local.get_or_create(
            "data_product",
            {"object": obj["id"], "namespace": ns["id"], "name": name, "version": version},
        )
    else:
        # The same bytes (put_stream checked them) with records from elsewhere: a pull's
        # copy that points at a remote's file, or one an older register left incomplete.
        found = queries.locate(local, existing)
        obj = found.object
        fix: dict[str, Any] = {}
        if found.root is None or not store.holds(found.root["root"]):
            fix["storage_location"] = location
        if file_type is not None and not obj.get("file_type"):
            fix["file_type"] = file_type
        if fix:
            local.patch("object", obj["id"], fix)
    if kind != "external_object":
        return
    ext_ids = existing.get("external_object") or []
    if ext_ids:
        if not local.get("external_object", ext_ids[0]).get("original_store"):
            local.patch("external_object", ext_ids[0], {"original_store": original["id"]})
        return
    ext: dict[str, Any] = {
        "data_product": existing["id"],
        "title": item.get("title") or name,
        "description": item.get("description"),
        "primary_not_supplement": item.get("primary", True),
        "release_date": item.get("release_date"),
        "original_store": original["id"],
    }
    if item.get("identifier"):
        ext["identifier"] = item["identifier"]
    if item.get("unique_name"):
        ext["alternate_identifier"] = item["unique_name"]
        ext["alternate_identifier_type"] = item.get("alternate_identifier_type")
    local.get_or_create("external_object", ext)
