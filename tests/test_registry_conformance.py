"""One contract, every implementation: the `Registry` protocol (fdp_tasks/store/base.py) gives
the same answers from the SQL store on SQLite and on PostgreSQL, and from `HttpRegistry`
talking to our server (on either database) and to the emulated upstream registry.

Every test runs once per implementation with the same assertions; where the upstream API
cannot do something (it deletes and changes only code runs, and has no transactions) the
tests use what every registry allows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.store.base import InvalidRecord, NotFound, Registry, UniqueViolation
from fdp_tasks.store.sql import Store

IMPLEMENTATIONS = [
    "store-sqlite",
    "store-postgresql",
    "http-ours-sqlite",
    "http-ours-postgresql",
    "http-upstream",
]


def _database(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> tuple[str, Any]:
    """A fresh database URL of `backend`, and the cluster to drop it from (or None)."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}", None
    cluster = request.getfixturevalue("postgres")
    return cluster.new_database(), cluster


@pytest.fixture(params=IMPLEMENTATIONS)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    kind: str = request.param
    if kind == "http-upstream":
        upstream = request.getfixturevalue("upstream_registry")(object_storage=False)
        with HttpRegistry(upstream.api_url, token=upstream.token, retries=1) as client:
            yield client
        return
    url, cluster = _database(request, tmp_path, kind.rsplit("-", 1)[1])
    try:
        if kind.startswith("store-"):
            store = Store(url)
            yield store
            store.close()
        else:
            live = request.getfixturevalue("registry_server")(database=url)
            with HttpRegistry(live.api_url, token=live.token, retries=1) as client:
                yield client
            live.stop()
            live.store.close()
    finally:
        if cluster is not None:
            cluster.drop_database(url)


def _script(registry: Registry) -> int:
    """An object to name as a code run's submission script."""
    return registry.create("object", {"description": "a script"})["id"]


def _run(registry: Registry, script: int, description: str = "a run") -> dict[str, Any]:
    run = {"run_date": "2024-01-02T03:04:05Z", "description": description}
    return registry.create("code_run", {**run, "submission_script": script})


def test_create_then_get_gives_the_same_record(registry: Registry) -> None:
    made = registry.create("namespace", {"name": "lab", "full_name": "The Lab"})
    assert made["name"] == "lab" and made["full_name"] == "The Lab"
    assert isinstance(made["id"], int)
    assert registry.get("namespace", made["id"]) == made
    run = _run(registry, _script(registry))
    assert run["run_date"] == "2024-01-02T03:04:05+00:00"
    assert registry.get("code_run", run["id"]) == run
    assert run["uuid"]  # given one when left out


def test_a_unique_clash_carries_the_existing_record(registry: Registry) -> None:
    made = registry.create("namespace", {"name": "lab"})
    with pytest.raises(UniqueViolation) as clash:
        registry.create("namespace", {"name": "lab"})
    assert clash.value.existing is not None
    assert clash.value.existing["id"] == made["id"]
    assert clash.value.existing["name"] == "lab"
    assert registry.count("namespace") == 1


def test_get_or_create_is_idempotent(registry: Registry) -> None:
    root = {"root": "https://example.org/data/", "local": False}
    first, created = registry.get_or_create("storage_root", root)
    again, created_again = registry.get_or_create("storage_root", root)
    assert (created, created_again) == (True, False)
    assert again["id"] == first["id"]
    assert again["root"] == first["root"]


def test_find_filters_and_globs(registry: Registry) -> None:
    for name in ("alpha", "alpine", "beta"):
        registry.create("namespace", {"name": name})
    assert [r["name"] for r in registry.find("namespace", {"name": "alp*"})] == ["alpine", "alpha"]
    assert [r["name"] for r in registry.find("namespace", {"name": "*a"})] == ["beta", "alpha"]
    assert registry.find("namespace", {"name": "ALP*"}) == []  # case counts
    assert [r["name"] for r in registry.find("namespace", {"name": "alpha"})] == ["alpha"]
    assert [r["name"] for r in registry.find("namespace", limit=2)] == ["beta", "alpine"]
    one = registry.find_one("namespace", {"name": "alp*"})
    assert one is not None and one["name"] == "alpine"
    assert registry.find_one("namespace", {"name": "gamma"}) is None

    local = registry.create("storage_root", {"root": "file:///x/", "local": True})
    remote = registry.create("storage_root", {"root": "https://example.org/", "local": False})
    for i, root in enumerate([local, remote, local]):
        registry.create(
            "storage_location",
            {"path": f"p{i}", "hash": f"h{i}", "storage_root": root["id"], "public": i != 1},
        )
    assert [r["id"] for r in registry.find("storage_root", {"local": True})] == [local["id"]]
    by_root = registry.find("storage_location", {"storage_root": local["id"]})
    assert [r["path"] for r in by_root] == ["p2", "p0"]
    assert registry.find("storage_location", {"storage_root": local["id"], "public": False}) == []
    run = _run(registry, _script(registry))
    same_moment = registry.find("code_run", {"run_date": "2024-01-02T04:04:05+01:00"})
    assert [r["id"] for r in same_moment] == [run["id"]]
    with pytest.raises(InvalidRecord):
        registry.find("namespace", {"no_such_field": "x"})


def test_count(registry: Registry) -> None:
    assert registry.count("namespace") == 0
    for name in ("alpha", "alpine", "beta"):
        registry.create("namespace", {"name": name})
    assert registry.count("namespace") == 3
    assert registry.count("namespace", {"name": "alp*"}) == 2
    assert registry.count("namespace", {"name": "beta"}) == 1
    assert registry.count("namespace", {"full_name": None}) == 3


def test_get_many(registry: Registry) -> None:
    made = [registry.create("namespace", {"name": f"ns{i}"}) for i in range(3)]
    ids = [r["id"] for r in made]
    got = registry.get_many("namespace", [*ids, ids[0]])
    assert got == {r["id"]: registry.get("namespace", r["id"]) for r in made}
    with pytest.raises(NotFound):
        registry.get_many("namespace", [ids[0], max(ids) + 1000])


def test_patch_changes_the_given_fields(registry: Registry) -> None:
    script = _script(registry)
    run = _run(registry, script)
    patched = registry.patch("code_run", run["id"], {"description": "described again"})
    assert patched["description"] == "described again"
    assert patched["submission_script"] == script
    assert patched["run_date"] == run["run_date"]
    assert registry.get("code_run", run["id"])["description"] == "described again"


def test_delete_removes_the_record(registry: Registry) -> None:
    run = _run(registry, _script(registry))
    registry.delete("code_run", run["id"])
    with pytest.raises(NotFound):
        registry.get("code_run", run["id"])
    assert registry.count("code_run") == 0


def test_missing_ids_are_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound):
        registry.get("namespace", 999999)
    with pytest.raises(NotFound):
        registry.patch("code_run", 999999, {"description": "x"})
    with pytest.raises(NotFound):
        registry.delete("code_run", 999999)


def test_bad_records_are_refused(registry: Registry) -> None:
    with pytest.raises(InvalidRecord):
        registry.create("namespace", {"full_name": "no name"})
    with pytest.raises(InvalidRecord):
        registry.create("storage_location", {"path": "p", "hash": "h", "storage_root": 999999})
    assert registry.count("storage_location") == 0


def test_a_failed_transaction_leaves_nothing(registry: Registry) -> None:
    script = _script(registry)
    with pytest.raises(RuntimeError, match="stop"), registry.transaction():
        _run(registry, script, "first")
        _run(registry, script, "second")
        raise RuntimeError("stop")
    assert registry.count("code_run") == 0
    with registry.transaction():
        kept = _run(registry, script, "kept")
    assert [r["id"] for r in registry.find("code_run")] == [kept["id"]]
