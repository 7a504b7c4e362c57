"""`fdp registry migrate`: a registry built on SQLite through the server's HTTP API moves to
PostgreSQL with every record, id, uuid, link, token and file as it was, and the moved
registry, served, answers as the old one did."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from support import Env

from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.server.serve import start_in_thread
from fdp_tasks.store.copy import copy_order
from fdp_tasks.store.sql import Store

FILES = {"results/a": b"a,b\n1,2\n", "results/b": bytes(range(256)) * 4000, "results/empty": b""}


def build_registry(client: HttpRegistry, folder: Path) -> dict[str, str]:
    """Products with files, authors, a code run and its links, made as a push makes them;
    returns each product's SHA-1 by name."""
    root = client.get_or_create("storage_root", {"root": client.data_root()})[0]["id"]
    namespace = client.create("namespace", {"name": "lab", "full_name": "The Lab"})["id"]
    csv = client.create("file_type", {"name": "CSV file", "extension": "csv"})["id"]
    ada = client.create("author", {"name": "Ada", "identifier": "https://orcid.org/0000-0001"})
    bob = client.create("author", {"name": "Bob"})
    repo = client.create("storage_root", {"root": "https://github.com/example/model/"})
    script_location = client.create(
        "storage_location", {"path": "run.sh", "hash": "5" * 40, "storage_root": repo["id"]}
    )
    script = client.create("object", {"storage_location": script_location["id"]})
    hashes, components = {}, []
    for name, body in FILES.items():
        sha1 = hashlib.sha1(body).hexdigest()
        hashes[name] = sha1
        file = folder / sha1
        file.write_bytes(body)
        client.upload_blob(file, sha1)
        location = client.create(
            "storage_location", {"path": sha1, "hash": sha1, "public": True, "storage_root": root}
        )
        obj = client.create(
            "object",
            {
                "description": name,
                "storage_location": location["id"],
                "file_type": csv,
                "authors": [bob["id"], ada["id"]],
            },
        )
        components += obj["components"]
        client.create(
            "data_product",
            {"name": name, "version": "1.0.0", "namespace": namespace, "object": obj["id"]},
        )
        client.create("keyword", {"object": obj["id"], "keyphrase": f"about {name}"})
    run = client.create(
        "code_run",
        {
            "run_date": "2024-05-06T07:08:09.123456+02:00",
            "description": "made them",
            "submission_script": script["id"],
        },
    )
    client.patch("code_run", run["id"], {"outputs": components})
    return hashes


def table_rows(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in key order, as the store reads it."""
    out = {}
    with store.engine.connect() as conn:
        for table in copy_order(store):
            query = sa.select(table).order_by(*table.primary_key.columns)
            out[table.name] = [dict(r) for r in conn.execute(query).mappings()]
    return out


@pytest.mark.timeout(300)
def test_a_registry_moves_to_postgresql_with_its_files(
    tmp_path: Path, registry_server: Any, postgres: Any
) -> None:
    live = registry_server()
    with HttpRegistry(live.api_url, token=live.token) as client:
        hashes = build_registry(client, tmp_path)
    env = Env(tmp_path)
    bob_file = tmp_path / "bob.token"
    env.fdp("registry", "token", "--db", live.store.url, "--user", "bob", "--file", str(bob_file))
    live.stop()
    source_url = live.store.url
    target_url = postgres.new_empty_database("moved")
    blobs_to = tmp_path / "moved-blobs"

    moved = env.fdp(
        "registry", "migrate", "--from", source_url, "--to", target_url,
        "--blobs-from", str(live.blob_dir), "--blobs-to", str(blobs_to),
    )  # fmt: skip
    assert f"{len(FILES)} file(s)" in moved.stdout, moved.output
    assert moved.stderr == ""

    source, target = Store(source_url), Store(target_url)
    try:
        before, after = table_rows(source), table_rows(target)
        assert after == before
        assert before["data_product"] and before["object__authors"] and before["auth_token"]
        assert len(before["code_run__outputs"]) == len(FILES)
        for type_name in source.schema.order:
            assert target.find(type_name) == source.find(type_name), type_name
        copied = sorted(p.relative_to(blobs_to) for p in blobs_to.rglob("*") if p.is_file())
        originals = sorted(
            p.relative_to(live.blob_dir)
            for p in live.blob_dir.rglob("*")
            if p.is_file() and not p.name.startswith(".") and "incoming" not in p.parts
        )
        assert copied == originals and len(copied) == len(FILES)
        for rel in copied:
            assert (blobs_to / rel).read_bytes() == (live.blob_dir / rel).read_bytes()

        # Served, the moved registry answers for the old one: same ids, same tokens, files.
        served = start_in_thread(target, blobs_to)
        try:
            with HttpRegistry(served.api_url, token=live.token) as client:
                assert client.whoami() == "admin"
                product = client.find_one("data_product", {"name": "results/b"})
                assert product is not None
                assert product == source.find_one("data_product", {"name": "results/b"}) | {
                    k: product[k] for k in product if k not in source.schema["data_product"].fields
                }
                sha1 = hashes["results/b"]
                body = requests.get(f"{served.url}/data/{sha1}", timeout=30)
                assert body.status_code == 200 and body.content == FILES["results/b"]
                # New records continue after the copied ids (the sequences moved on).
                newest = max(r["id"] for r in before["namespace"])
                assert client.create("namespace", {"name": "later"})["id"] == newest + 1
            with HttpRegistry(served.api_url, token=bob_file.read_text().strip()) as client:
                assert client.whoami() == "bob"
        finally:
            served.stop()
    finally:
        source.close()
        target.close()

    again = env.fdp("registry", "migrate", "--from", source_url, "--to", target_url, check=False)
    assert again.returncode != 0
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1 and "is not empty" in lines[0], again.stderr
    postgres.drop_database(target_url)


def test_migrate_refuses_half_given_blobs_and_missing_sources(tmp_path: Path) -> None:
    env = Env(tmp_path)
    target = f"sqlite:///{tmp_path / 'new.db'}"
    missing = env.fdp(
        "registry", "migrate", "--from", str(tmp_path / "nothing.db"), "--to", target, check=False
    )
    assert missing.returncode != 0 and "no registry database" in missing.stderr
    source = tmp_path / "old.db"
    Store(source).close()
    half = env.fdp(
        "registry", "migrate", "--from", str(source), "--to", target,
        "--blobs-from", str(tmp_path), check=False,
    )  # fmt: skip
    assert half.returncode != 0 and "--blobs-to" in half.stderr
    assert not (tmp_path / "new.db").exists()
