"""`Store.create_many`, what the script API records a run's outputs with: the same records,
clashes and provisional notes as `create` one record at a time, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fdp_tasks.remotes import kept_listing
from fdp_tasks.store import provisional
from fdp_tasks.store.base import InvalidRecord, UniqueViolation
from fdp_tasks.store.sql import Store


def _base(store: Store) -> tuple[int, int, int, int]:
    """A namespace, author, file type and storage root to hang products on."""
    namespace = store.create("namespace", {"name": "bulk"})["id"]
    author = store.create("author", {"name": "Ada"})["id"]
    file_type = store.create("file_type", {"name": "csv", "extension": "csv"})["id"]
    root = store.create("storage_root", {"root": "file:///data/", "local": True})["id"]
    return namespace, author, file_type, root


def test_many_records_read_back_as_one_by_one_creates_would(registry_database: str) -> None:
    store = Store(registry_database)
    namespace, author, file_type, root = _base(store)
    with store.transaction():
        locations = store.create_many(
            "storage_location",
            [
                {"path": f"bulk/p{i}/0.0.1.csv", "hash": f"{i:040x}", "storage_root": root}
                for i in range(700)  # more than one chunk
            ],
        )
        objects = store.create_many(
            "object",
            [
                {"storage_location": loc["id"], "file_type": file_type, "authors": [author]}
                for loc in locations
            ],
        )
        products = store.create_many(
            "data_product",
            [
                {"object": obj["id"], "namespace": namespace, "name": f"p{i}", "version": "0.0.1"}
                for i, obj in enumerate(objects)
            ],
        )
    assert [loc["path"] for loc in locations] == [f"bulk/p{i}/0.0.1.csv" for i in range(700)]
    for made, kind in ((locations, "storage_location"), (products, "data_product")):
        assert made == [store.get(kind, record["id"]) for record in made]
    for obj in objects:
        stored = store.get("object", obj["id"])
        assert stored["authors"] == [author] and stored["components"] == obj["components"]
        whole = store.get("object_component", obj["components"][0])
        assert whole["whole_object"] and whole["name"] == "whole_object"
        assert stored["data_products"] and obj["uuid"] == stored["uuid"]


def test_a_clash_raises_what_create_raises_and_records_nothing(registry_database: str) -> None:
    store = Store(registry_database)
    namespace, author, file_type, root = _base(store)
    obj = store.create("object", {"file_type": file_type, "authors": [author]})
    taken = store.create(
        "data_product",
        {"object": obj["id"], "namespace": namespace, "name": "a", "version": "1.0.0"},
    )
    rows = [
        {"object": obj["id"], "namespace": namespace, "name": name, "version": "1.0.0"}
        for name in ("b", "a", "c")
    ]
    with pytest.raises(UniqueViolation) as clash, store.transaction():
        store.create_many("data_product", rows)
    assert clash.value.existing == taken
    assert [p["name"] for p in store.find("data_product")] == ["a"]
    # a unique key repeated within the batch: the second one clashes with the first
    twice = [rows[0], {**rows[0]}]
    with pytest.raises(UniqueViolation), store.transaction():
        store.create_many("data_product", twice)
    assert store.count("data_product") == 1
    # a record pointing at one that is not there is refused, naming the field
    with pytest.raises(InvalidRecord, match="storage_location"), store.transaction():
        store.create_many("object", [{"storage_location": 999_999, "authors": [author]}])


def test_records_made_under_a_job_are_noted_as_provisional(registry_database: str) -> None:
    store = Store(registry_database)
    namespace, author, file_type, root = _base(store)
    job = "digest-of-a-job-token"
    provisional.begin(store, job)
    with store.provisional_as(job, required=True), store.transaction():
        made = store.create_many("object", [{"authors": [author]} for _ in range(3)])
    ids = {m["id"] for m in made}
    components = {c for m in made for c in m["components"]}
    reader = Store(registry_database, settled_only=True)
    assert not ids & {r["id"] for r in reader.find("object")}
    assert not components & {r["id"] for r in reader.find("object_component")}
    assert provisional.keep(store, job) == 6  # the objects and their whole_object components
    assert ids <= {r["id"] for r in reader.find("object")}


def test_newest_files_gives_each_names_newest_version_a_page_at_a_time(
    registry_database: str,
) -> None:
    """What an unpinned read checks: one row per matching name, its highest version (not
    its newest record), read in pages that may cut a name's versions in two; a glob
    matches names case-sensitively."""
    store = Store(registry_database)
    namespace, author, file_type, root = _base(store)
    versions = {"p1": ["0.0.2", "0.0.10", "0.0.3"], "p2": ["1.0.0"], "P3": ["2.0.0"]}
    versions["p4"] = ["0.1.0", "0.0.9"]
    versions["q5"] = ["1.0.0"]
    for name, listed in versions.items():
        for version in listed:
            path = f"bulk/{name}/{version}"
            sha1 = hashlib.sha1(path.encode()).hexdigest()
            location = store.create(
                "storage_location", {"path": path, "hash": sha1, "storage_root": root}
            )
            obj = store.create(
                "object",
                {"storage_location": location["id"], "file_type": file_type, "authors": [author]},
            )
            store.create(
                "data_product",
                {"object": obj["id"], "namespace": namespace, "name": name, "version": version},
            )
    for page in (1, 2, 3, 100):
        rows = list(store.newest_files("bulk", "p*", page=page))
        assert [(name, version, path) for name, version, path, _, _ in rows] == [
            ("p1", "0.0.10", "bulk/p1/0.0.10"),
            ("p2", "1.0.0", "bulk/p2/1.0.0"),
            ("p4", "0.1.0", "bulk/p4/0.1.0"),
        ], page
        assert all(where == "file:///data/" for *_, where in rows)
    assert [row[:2] for row in store.newest_files("bulk", "q5")] == [("q5", "1.0.0")]
    assert list(store.newest_files("bulk", "nothing*")) == []
    assert list(store.newest_files("elsewhere", "p*")) == []


def test_a_remote_listing_is_read_a_page_of_names_at_a_time(
    registry_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote's listing (here of a registry that gives no count, so listed into a file
    of its own): each matching name's highest version, by name, whatever the page size,
    as the reference CLI matches a config's glob ('*' never crosses '/'); what a push
    noted joins it without entering the kept rows."""
    store = Store(registry_database)
    namespace, author, file_type, _ = _base(store)
    obj = store.create("object", {"file_type": file_type, "authors": [author]})["id"]
    names = {"a/p1": ["0.0.2", "0.0.10"], "a/p2": ["1.0.0"], "a/P3": ["1.1.0"], "a/p/4": ["1.0.0"]}
    names["b/p5"] = ["2.0.0"]
    for name, versions in names.items():
        for version in versions:
            product = {"object": obj, "namespace": namespace, "name": name, "version": version}
            store.create("data_product", product)
    for page in (1, 2, 100):
        monkeypatch.setattr(kept_listing, "PAGE", page)
        listing = kept_listing.product_listing(store, namespace, tmp_path / "kept.db")
        assert list(listing.newest("a/*")) == [
            ("a/P3", "1.1.0"),
            ("a/p1", "0.0.10"),
            ("a/p2", "1.0.0"),
        ]
        assert list(listing.newest("a/p*")) == [("a/p1", "0.0.10"), ("a/p2", "1.0.0")]
        assert list(listing.newest("b/p5")) == [("b/p5", "2.0.0")]
        assert ("a/p1", "0.0.2") in listing and ("a/p1", "9.9.9") not in listing
        assert listing["a/P3", "1.1.0"]["name"] == "a/P3"
        listing.note(
            {"id": 99, "name": "a/p1", "version": "0.1.0", "object": obj, "sha1": "f" * 40}
        )
        listing.note({"id": 98, "name": "a/p0", "version": "1.0.0", "object": obj})
        assert list(listing.newest("a/p*")) == [
            ("a/p0", "1.0.0"),
            ("a/p1", "0.1.0"),
            ("a/p2", "1.0.0"),
        ]
        assert listing.get(("a/p1", "0.1.0"))["sha1"] == "f" * 40
        assert sorted(listing.versions("a/p1")) == ["0.0.10", "0.0.2", "0.1.0"]
        listing.close()
    assert not (tmp_path / "kept.db").exists()  # a registry that gives no count keeps none
