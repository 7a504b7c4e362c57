"""A register item is one transaction, and its up-to-date check covers every record it makes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from support import WRITER_SCRIPT, Env

from fdp_tasks.store.sql import Store


@pytest.fixture
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    env.file("raw/a.csv", "x\n1\n")
    env.file("raw/b.csv", "y\n2\n")
    env.config(
        {
            "run_metadata": {"description": "register only", "default_input_namespace": "test"},
            "register": [
                {
                    "external_object": f"inputs/{name}",
                    "namespace_name": "test",
                    "root": "${{REPO_DIR}}/raw/",
                    "path": f"{name}.csv",
                    "title": f"input {name}",
                    "identifier": f"https://example.org/{name}",
                    "file_type": "csv",
                    "version": "1.0.0",
                }
                for name in ("a", "b")
            ],
        }
    )
    return env


def sql(env: Env, statement: str, *args: object) -> int:
    """Change the local registry behind fdp's back, as a crash or another tool could."""
    with sqlite3.connect(env.home / "registry.db") as conn:
        return conn.execute(statement, args).rowcount


def records(env: Env, name: str) -> dict[str, int]:
    """How many records the register of test:<name> has made."""
    store = Store(env.home / "registry.db")
    try:
        ns = store.find_one("namespace", {"name": "test"})
        products = store.find("data_product", {"namespace": ns["id"], "name": name}) if ns else []
        objects = [store.get("object", p["object"]) for p in products]
        return {
            "data_product": len(products),
            "object": len(objects),
            "external_object": sum(len(p["external_object"]) for p in products),
            "object_described": store.count("object", {"description": f"input {name[-1]}"}),
        }
    finally:
        store.close()


def status(env: Env) -> dict[str, dict]:
    return {row["task"]: row for row in json.loads(env.fdp("status", "--json").stdout)}


def test_a_missing_external_object_is_noticed_and_restored(env: Env) -> None:
    env.doit()
    assert records(env, "inputs/a")["external_object"] == 1
    assert sql(env, "DELETE FROM external_object WHERE title = 'input a'") == 1

    row = status(env)["register:test:inputs/a@1.0.0"]
    assert row["state"] == "will-run"
    assert "external_object" in row["reason"]
    assert status(env)["register:test:inputs/b@1.0.0"]["state"] == "up-to-date"

    ran = env.doit()
    assert ran.executed == ["register:test:inputs/a@1.0.0"]
    assert records(env, "inputs/a") == {
        "data_product": 1,
        "object": 1,
        "external_object": 1,
        "object_described": 1,
    }
    assert env.doit().executed == []


def test_a_register_that_fails_half_way_records_nothing_and_keeps_no_file(env: Env) -> None:
    env.home.mkdir(parents=True)
    Store(env.home / "registry.db").close()
    # the external_object of b cannot be recorded: the object and data product made before
    # it in the same item must go too
    sql(
        env,
        "CREATE TRIGGER refuse BEFORE INSERT ON external_object WHEN NEW.title = 'input b' "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    failed = env.doit(check=False)
    assert failed.returncode != 0
    assert "register:test:inputs/b@1.0.0" in failed.output
    assert records(env, "inputs/b") == {
        "data_product": 0,
        "object": 0,
        "external_object": 0,
        "object_described": 0,
    }
    assert not (env.data_store / "test/inputs/b/1.0.0.csv").exists()
    assert records(env, "inputs/a")["external_object"] == 1  # its own transaction
    assert (env.data_store / "test/inputs/a/1.0.0.csv").is_file()
    assert status(env)["register:test:inputs/b@1.0.0"]["state"] == "will-run"

    sql(env, "DROP TRIGGER refuse")
    assert env.doit().executed == ["register:test:inputs/b@1.0.0"]
    assert records(env, "inputs/b")["external_object"] == 1
    assert (env.data_store / "test/inputs/b/1.0.0.csv").is_file()


def test_a_failed_register_keeps_the_file_its_earlier_records_name(env: Env) -> None:
    env.doit()
    registered = env.data_store / "test/inputs/a/1.0.0.csv"
    assert sql(env, "DELETE FROM external_object WHERE title = 'input a'") == 1
    sql(
        env,
        "CREATE TRIGGER refuse BEFORE INSERT ON external_object "
        "BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    failed = env.doit(check=False)
    assert failed.returncode != 0 and "register:test:inputs/a@1.0.0" in failed.output
    assert registered.read_text() == "x\n1\n"  # the data product recorded before names it
    assert records(env, "inputs/a")["external_object"] == 0
    assert status(env)["register:test:inputs/a@1.0.0"]["state"] == "will-run"
    sql(env, "DROP TRIGGER refuse")
    assert env.doit().executed == ["register:test:inputs/a@1.0.0"]
    assert records(env, "inputs/a")["external_object"] == 1


def test_registering_what_a_pull_brought_as_an_input_record(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    producer = Env(tmp_path, "producer")
    producer.file("raw/a.csv", "x\n1\n")
    producer.file("model.py", WRITER_SCRIPT)
    config = {
        "run_metadata": {
            "description": "reads a",
            "default_input_namespace": "test",
            "default_output_namespace": "test",
            "script": "python3 ${{REPO_DIR}}/model.py",
        },
        "register": [
            {
                "external_object": "inputs/a",
                "namespace_name": "test",
                "root": "${{REPO_DIR}}/raw/",
                "path": "a.csv",
                "title": "input a",
                "identifier": "https://example.org/a",
                "file_type": "csv",
                "version": "1.0.0",
            }
        ],
        "write": [{"data_product": "out/summary", "description": "lines", "file_type": "csv"}],
    }
    producer.config(config)
    producer.doit()
    producer.add_remote(shared)
    producer.fdp("push")

    # a colleague pulls the output: its run's input comes along as records only ...
    colleague = Env(tmp_path, "colleague")
    colleague.read_config(["out/summary"], "test", "reader.yaml")
    colleague.add_remote(shared)
    colleague.fdp("pull", "reader.yaml")
    assert not (colleague.data_store / "test/inputs/a/1.0.0.csv").exists()
    # ... then registers the same source itself: the records are completed, once
    colleague.file("raw/a.csv", "x\n1\n")
    colleague.config({"run_metadata": {"description": "sources"}, "register": config["register"]})
    assert colleague.doit().executed == ["register:test:inputs/a@1.0.0"]
    assert (colleague.data_store / "test/inputs/a/1.0.0.csv").read_text() == "x\n1\n"
    assert records(colleague, "inputs/a")["external_object"] == 1
    assert colleague.doit().executed == []
