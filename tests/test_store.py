"""The registry store, for every type of the data model and on SQLite and PostgreSQL alike:
what create returns is what get reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from fdp_tasks.files import read_secret
from fdp_tasks.store.base import RegistryError, UniqueViolation
from fdp_tasks.store.schema import load_schema
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

SAMPLE = {
    "string": "s",
    "text": "t",
    "boolean": True,
    "integer": 3,
    "datetime": "2026-01-02T03:04:05+00:00",
    "uuid": None,
}


def test_created_records_read_back_identically(registry_database: str) -> None:
    schema = load_schema()
    store = Store(registry_database)
    made: dict[str, int] = {}
    for name in schema.order:
        rtype = schema[name]
        data = {}
        for field in rtype.fields.values():
            if field.is_fk:
                data[field.name] = made[field.to]
            elif field.is_m2m:
                data[field.name] = [made[field.to], made[field.to]]  # a repeat is kept once
            elif field.format == "semver":
                data[field.name] = "1.0.0"
            elif SAMPLE[field.kind] is not None:
                data[field.name] = SAMPLE[field.kind]
        created = store.create(name, data)
        assert created == store.get(name, created["id"]), name
        made[name] = created["id"]
        for field in rtype.m2ms:
            assert created[field.name] == [made[field.to]]
        if rtype.unique and all(f in data for f in rtype.unique[0]):
            with pytest.raises(UniqueViolation) as clash:
                store.create(name, data)
            assert clash.value.existing == store.get(name, created["id"])


def test_working_token_keeps_the_users_token_file(tmp_path: Path, databases) -> None:
    store = Store(databases.new())
    file = tmp_path / "alice.token"
    token = working_token(store, "alice", file=file)
    assert file.stat().st_mode & 0o777 == 0o600
    assert store.user_for_token(token)["username"] == "alice"
    assert working_token(store, "alice", file=file) == token  # kept, not replaced
    # a file holding someone else's token is not theirs to use: bob gets his own
    bob = working_token(store, "bob", file=file)
    assert bob != token and read_secret(file) == bob
    assert store.user_for_token(bob)["username"] == "bob"
    # a registry made anew takes the token its user still keeps
    again = Store(databases.new("again"))
    assert working_token(again, "bob", file=file) == bob
    assert again.user_for_token(bob)["username"] == "bob"
    with pytest.raises(RegistryError, match="another user's"):
        working_token(store, "alice", token=bob)
    assert working_token(store, "carol", token="chosen") == "chosen"
    assert store.user_for_token("chosen")["username"] == "carol"


def test_concurrent_writers_agree(databases) -> None:
    """Writers racing for one unique key, or appending to one record's links, end with one
    record and every link, on PostgreSQL's row locks as under SQLite's database lock."""
    from concurrent.futures import ThreadPoolExecutor

    store = Store(databases.new())
    try:
        with ThreadPoolExecutor(8) as pool:
            got = list(
                pool.map(lambda _: store.get_or_create("namespace", {"name": "shared"}), range(16))
            )
        assert len({record["id"] for record, _ in got}) == 1
        assert sum(created for _, created in got) == 1
        assert store.count("namespace") == 1

        script = store.create("object", {})
        run = store.create(
            "code_run",
            {"run_date": "2024-01-01", "description": "r", "submission_script": script["id"]},
        )
        outputs = [store.create("object", {})["components"][0] for _ in range(12)]

        def add(component: int) -> None:
            store.add_links("code_run", run["id"], "outputs", [component])

        with ThreadPoolExecutor(6) as pool:
            list(pool.map(add, outputs))
        assert sorted(store.get("code_run", run["id"])["outputs"]) == sorted(outputs)

        # the same member added by several requests at once: one membership, no key clash
        bob = store.ensure_user("bob")["id"]
        namespace = got[0][0]["id"]
        with ThreadPoolExecutor(8) as pool:
            added = list(pool.map(lambda _: store.add_member(namespace, bob), range(16)))
        assert sum(added) == 1
    finally:
        store.close()
