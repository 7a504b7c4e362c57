"""File types: one per extension in a registry, named as the reference CLI names them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from support import WRITER_SCRIPT, Env

from fdp_tasks.store.sql import Store


def project(tmp_path: Path, name: str = "project", namespace: str = "lab") -> Env:
    """Registers a txt and an unlisted `.fasta` file, and runs a script writing a csv."""
    env = Env(tmp_path, name)
    env.file("raw/seed.txt", "seed\n")
    env.file("raw/genome.fasta", ">x\nACGT\n")
    env.file("model.py", WRITER_SCRIPT)
    env.config(
        {
            "run_metadata": {
                "description": "file types",
                "default_input_namespace": namespace,
                "default_output_namespace": namespace,
                "script": "python3 ${{REPO_DIR}}/model.py",
            },
            "register": [
                {
                    "external_object": f"inputs/{stem}",
                    "namespace_name": namespace,
                    "root": "${{REPO_DIR}}/raw/",
                    "path": f"{stem}.{ext}",
                    "file_type": ext,
                    "version": "1.0.0",
                    "title": stem,
                    "unique_name": f"{namespace}-{stem}",
                    "alternate_identifier_type": "local",
                }
                for stem, ext in (("seed", "txt"), ("genome", "fasta"))
            ],
            "write": [{"data_product": "results/table", "description": "t", "file_type": "csv"}],
        }
    )
    return env


def file_types(db: Path) -> dict[str, list[str]]:
    """extension -> the names of its file_type records."""
    store = Store(db)
    try:
        out: dict[str, list[str]] = {}
        for row in store.find("file_type", newest_first=False):
            out.setdefault(row["extension"], []).append(row["name"])
        return out
    finally:
        store.close()


def product_file_type(db: Path, namespace: str, name: str) -> dict[str, str]:
    store = Store(db)
    try:
        ns = store.find_one("namespace", {"name": namespace})
        product = store.find_one("data_product", {"namespace": ns["id"], "name": name})
        obj = store.get("object", product["object"])
        row = store.get("file_type", obj["file_type"])
        return {"name": row["name"], "extension": row["extension"]}
    finally:
        store.close()


def test_new_file_types_take_the_reference_names(tmp_path: Path) -> None:
    env = project(tmp_path)
    env.doit()
    types = file_types(env.home / "registry.db")
    assert types["csv"] == ["Comma-Separated Values File"]  # written by the script API
    assert types["txt"] == ["Plain Text File"]  # a register item
    assert types["yaml"] == ["YAML Document"]  # the run's working config
    assert types["fasta"] == ["fasta"]  # not in the reference list: named by its extension
    assert all(len(names) == 1 for names in types.values())
    assert product_file_type(env.home / "registry.db", "lab", "results/table") == {
        "name": "Comma-Separated Values File",
        "extension": "csv",
    }


def test_an_existing_file_type_of_the_extension_is_reused(tmp_path: Path) -> None:
    env = project(tmp_path)
    env.home.mkdir(parents=True)
    # a registry where another tool recorded csv under a name of its own, and txt twice
    store = Store(env.home / "registry.db")
    store.create("file_type", {"name": "CSV table", "extension": "csv"})
    store.create("file_type", {"name": "txt", "extension": "txt"})
    store.create("file_type", {"name": "Plain Text File", "extension": "txt"})
    store.close()
    env.doit()
    types = file_types(env.home / "registry.db")
    assert types["csv"] == ["CSV table"]
    assert types["txt"] == ["txt", "Plain Text File"]
    db = env.home / "registry.db"
    assert product_file_type(db, "lab", "results/table")["name"] == "CSV table"
    assert product_file_type(db, "lab", "inputs/seed")["name"] == "Plain Text File"


def test_pull_maps_remote_file_types_to_local_ones_of_the_same_extension(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    producer = project(tmp_path, "producer")
    producer.doit()
    producer.add_remote(shared)
    producer.fdp("push")
    # the remote holds csv under the name older releases gave it
    with sqlite3.connect(shared / "registry.db") as conn:
        conn.execute("UPDATE file_type SET name = 'csv' WHERE extension = 'csv'")

    reader = project(tmp_path, "reader", namespace="mine")  # makes its own csv file type
    reader.doit()
    reader.read_config(["results/table"], "lab", "reader.yaml")
    reader.add_remote(shared)
    reader.fdp("pull", "reader.yaml")
    db = reader.home / "registry.db"
    assert file_types(db)["csv"] == ["Comma-Separated Values File"]
    assert product_file_type(db, "lab", "results/table")["name"] == "Comma-Separated Values File"
    assert all(len(names) == 1 for names in file_types(db).values())
