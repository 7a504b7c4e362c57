"""A pull copies what was asked: the products and the code run that made them, not the run's
other outputs; counted in HTTP requests against a real registry server on loopback."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from support import SEEDED_MODEL, WRITER_SCRIPT, CountingRegistry, Env
from support import producer as seeded_producer
from support import reader as reading_project

from fdp_tasks.remotes.kept_listing import FIRST_PAGE
from fdp_tasks.remotes.sync import PULL_BATCH
from fdp_tasks.store.sql import Store


@pytest.fixture
def counting_registry(tmp_path: Path) -> Iterator[CountingRegistry]:
    registry = CountingRegistry(tmp_path / "remote")
    yield registry
    registry.stop()


def producer(
    tmp_path: Path,
    registry: CountingRegistry,
    outputs: int,
    namespace: str = "lab",
    inputs: tuple[str, ...] = ("seed",),
    doi: str | None = None,
    model: str = WRITER_SCRIPT,
) -> Env:
    """A project whose one run reads registered inputs and writes results/partNN, pushed
    (by default the same bytes in each). With `doi`, each input is registered with the
    identifier `<doi>/<name>`."""
    env = seeded_producer(
        tmp_path,
        outputs,
        name=f"producer-{namespace}",
        namespace=namespace,
        inputs={name: f"{name} value\n" for name in inputs},
        model=model,
        doi=doi,
    )
    env.doit()
    env.add_remote(registry.api_url, registry.token_file)
    env.fdp("push")
    return env


def consumer(tmp_path: Path, url: str, namespace: str, parts: range, name: str) -> Env:
    return reading_project(tmp_path, url, [f"results/part{i:02d}" for i in parts], namespace, name)


def reads(env: Env, namespace: str, parts: range) -> None:
    env.read_config([f"results/part{i:02d}" for i in parts], namespace)


def local_counts(env: Env) -> dict[str, int]:
    store = Store(env.home / "registry.db")
    try:
        return {t: store.count(t) for t in ("data_product", "object", "code_run")}
    finally:
        store.close()


def seed_info(env: Env) -> dict:
    """What `fdp info --json` says of the producer's input, in the project `env`."""
    return json.loads(env.fdp("info", "lab:inputs/seed@1.0.0", "--json").stdout)


def run_uuid(env: Env) -> str:
    return env.fdp("list", "runs").stdout.split()[0]


def pull_counted(env: Env, registry: CountingRegistry, *options: str) -> int:
    registry.requests.clear()
    env.fdp("pull", *options)
    return registry.total()


def test_pulling_a_few_products_costs_the_same_whatever_else_the_run_wrote(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    producer(tmp_path, counting_registry, outputs=6, namespace="small")
    producer(tmp_path, counting_registry, outputs=40, namespace="big")
    small = consumer(tmp_path, counting_registry.api_url, "small", range(3), "reader-small")
    big = consumer(tmp_path, counting_registry.api_url, "big", range(3), "reader-big")

    small_requests = pull_counted(small, counting_registry)
    big_requests = pull_counted(big, counting_registry)
    assert big_requests == small_requests, counting_registry.requests
    assert big_requests < 40  # a few per product and a few per run, never one per sibling

    # the 3 products, and the run with its config, script, code repo, input and environment
    # record (records)
    assert local_counts(big) == {"data_product": 4, "object": 8, "code_run": 1}
    assert local_counts(small) == local_counts(big)
    seed = big.data_store / "big/inputs/seed/1.0.0.txt"
    assert not seed.exists()  # an input comes as records; its file stays on the remote
    assert big.doit().executed == []


def test_a_later_pull_adds_outputs_to_the_local_code_run(
    tmp_path: Path, counting_registry: CountingRegistry, refused_url: str
) -> None:
    made = producer(tmp_path, counting_registry, outputs=12)
    run = run_uuid(made)
    reader = consumer(tmp_path, counting_registry.api_url, "lab", range(3), "reader")
    reader.fdp("pull")
    info = json.loads(reader.fdp("info", run, "--json").stdout)
    assert sorted(info["outputs"]) == [f"lab:results/part{i:02d}@0.0.1" for i in range(3)]
    assert info["inputs"] == ["lab:inputs/seed@1.0.0"]
    assert info["output_count"].startswith("3 here, 9 on remote origin only")

    reads(reader, "lab", range(2, 7))
    pulled = reader.fdp("pull")
    assert pulled.stdout.count("pulled lab:results/") == 4  # part02 is here already
    counting_registry.requests.clear()
    shown = reader.fdp("info", run)
    assert "7 here, 5 on remote origin only" in shown.stdout
    assert counting_registry.total() == 1  # one look-up of the run, not one per output
    info = json.loads(reader.fdp("info", run, "--json").stdout)
    assert sorted(info["outputs"]) == [f"lab:results/part{i:02d}@0.0.1" for i in range(7)]
    assert local_counts(reader)["code_run"] == 1

    # without a remote nothing is said about one; a remote that does not answer gets a note
    reader.fdp("remote", "remove", "origin")
    alone = json.loads(reader.fdp("info", run, "--json").stdout)
    assert alone["output_count"] == "7 here"
    reader.add_remote(refused_url)
    away = reader.fdp("info", run, "--json")
    assert json.loads(away.stdout)["output_count"] == "7 here"
    assert len(away.stderr.strip().splitlines()) == 1 and "origin" in away.stderr


def misname_on_remote(db: Path, namespace: str, name: str) -> None:
    """Give the remote's `lab:inputs/extra` another namespace and name behind its back, as a
    tool writing the remote's database directly could: our registries refuse such names."""
    with sqlite3.connect(db) as conn:
        ns = conn.execute("SELECT id FROM namespace WHERE name = ?", (namespace,)).fetchone()
        if ns is None:
            ns = (
                conn.execute(
                    "INSERT INTO namespace (name, last_updated) VALUES (?, '2026-01-01')",
                    (namespace,),
                ).lastrowid,
            )
        changed = conn.execute(
            "UPDATE data_product SET name = ?, namespace_id = ? WHERE name = 'inputs/extra'",
            (name, ns[0]),
        )
        assert changed.rowcount == 1


@pytest.mark.parametrize(
    ("namespace", "name"),
    [("lab", "inputs//extra"), ("lab", "inputs/./extra"), ("lab/odd", "inputs/extra")],
)
def test_an_input_with_a_non_canonical_name_is_skipped_with_one_warning(
    tmp_path: Path, counting_registry: CountingRegistry, namespace: str, name: str
) -> None:
    made = producer(tmp_path, counting_registry, outputs=3, inputs=("seed", "extra"))
    misname_on_remote(counting_registry.db, namespace, name)
    reader = consumer(tmp_path, counting_registry.api_url, "lab", range(3), "reader")
    pulled = reader.fdp("pull")
    assert pulled.output.count("skipping ") == 1
    assert f"skipping {namespace}:{name}@1.0.0 on remote origin" in pulled.output
    info = json.loads(reader.fdp("info", run_uuid(made), "--json").stdout)
    assert info["inputs"] == ["lab:inputs/seed@1.0.0"]
    assert len(info["outputs"]) == 3
    assert local_counts(reader)["data_product"] == 4


def test_an_input_of_a_pulled_run_keeps_its_external_object(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    doi = "https://doi.org/10.5281/zenodo.4242"
    made = producer(tmp_path, counting_registry, outputs=2, doi=doi)
    theirs = seed_info(made)
    reader = consumer(tmp_path, counting_registry.api_url, "lab", range(1), "reader")
    reader.fdp("pull")

    # only the output was asked for: the input came as the run's provenance, as records
    assert not (reader.data_store / "lab/inputs/seed/1.0.0.txt").exists()
    info = seed_info(reader)
    assert info["read_by"] == [run_uuid(made)]
    assert info["external_object"]["identifier"] == f"{doi}/seed"
    assert info["external_object"]["title"] == "seed"
    assert info["external_object"] == theirs["external_object"]
    shown = reader.fdp("info", "lab:inputs/seed@1.0.0").stdout
    assert f"{doi}/seed" in shown


def test_a_pulled_product_keeps_the_external_object_it_was_registered_from(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    doi = "https://doi.org/10.5281/zenodo.4343"
    made = producer(tmp_path, counting_registry, outputs=1, doi=doi)
    theirs = seed_info(made)
    # read by name, as one item of a glob: its record comes from the remote's listing
    reader = reading_project(tmp_path, counting_registry.api_url, ["inputs/*"], "lab", "reader")
    reader.fdp("pull")
    assert (reader.data_store / "lab/inputs/seed/1.0.0.txt").is_file()
    info = seed_info(reader)
    assert info["external_object"]["identifier"] == f"{doi}/seed"
    assert info["external_object"] == theirs["external_object"]


@pytest.mark.parametrize("same_bytes", [False, True], ids=["distinct", "same-bytes"])
def test_a_glob_over_several_pages_of_products_pulls_them_a_page_at_a_time(
    tmp_path: Path, counting_registry: CountingRegistry, same_bytes: bool
) -> None:
    """More products than a pull plans and records at once: the files come a page at a time
    and the records too, each page planned again, in a few requests a page. Products with
    the same bytes share one file, however the pages fall."""
    n = 2 * PULL_BATCH + 50
    producer(tmp_path, counting_registry, n, model=WRITER_SCRIPT if same_bytes else SEEDED_MODEL)
    everyone = reading_project(tmp_path, counting_registry.api_url, ["results/*"], "lab", "all")

    requests = pull_counted(everyone, counting_registry, "--jobs", "1")

    files = list(everyone.data_store.glob("lab/results/*/0.0.1.csv"))
    assert len(files) == (1 if same_bytes else n)
    # with the run's config, script, code repository and environment records
    assert local_counts(everyone) == {"data_product": n + 1, "object": n + 5, "code_run": 1}
    store = Store(everyone.home / "registry.db")
    try:
        (run,) = store.find("code_run")
        components = store.get_many("object_component", run["outputs"])
        objects = store.get_many("object", [c["object"] for c in components.values()])
        located = [o["storage_location"] for o in objects.values()]
        locations = store.get_many("storage_location", located)
        names = {p["name"] for p in store.find("data_product") if p["object"] in objects}
    finally:
        store.close()
    assert names == {f"results/part{i:02d}" for i in range(n)}
    assert {everyone.data_store / loc["path"] for loc in locations.values()} == set(files)
    pages = -(-n // PULL_BATCH)
    assert requests <= 25 + 8 * pages, counting_registry.requests.most_common(8)
    assert "nothing newer" in everyone.fdp("pull").stdout


def kept_rows(kept: Path) -> int:
    with contextlib.closing(sqlite3.connect(kept)) as db:
        return int(db.execute("SELECT count(*) FROM rows").fetchone()[0])


def product_listings(registry: CountingRegistry) -> list[dict[str, list[str]]]:
    """The query of every listing of a namespace's data products the registry answered, in
    order (not those by id, which fetch records the pull copies)."""
    prefix = "GET /api/data_product/?"
    asked = [parse_qs(q[len(prefix) :]) for q in registry.queries if q.startswith(prefix)]
    return [query for query in asked if "namespace" in query]


def test_a_pull_keeps_the_remote_listing_and_asks_only_for_what_is_newer(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    """A pull keeps the remote's listing of a namespace: the next pull asks for one short
    page of the newest records when nothing changed, and for the new records alone when
    some arrived, however many the namespace holds. A record gone from the remote, or a
    damaged kept file, has it listed whole again."""
    n = FIRST_PAGE + 10
    made = producer(tmp_path, counting_registry, n)
    everyone = reading_project(tmp_path, counting_registry.api_url, ["results/*"], "lab", "all")
    everyone.fdp("pull")
    (kept,) = (everyone.home / "listings").glob("*.db")
    assert kept.stat().st_mode & 0o777 == 0o600

    counting_registry.queries.clear()
    assert "nothing newer" in everyone.fdp("pull").stdout
    (listed,) = product_listings(counting_registry)
    assert listed["page_size"] == [str(FIRST_PAGE)] and "cursor" not in listed

    made.doit("force=1")  # a new version of every output: more than a first page holds
    made.fdp("push")
    counting_registry.queries.clear()
    pulled = everyone.fdp("pull").stdout
    assert pulled.count("pulled lab:results/") == n, pulled
    first, rest = product_listings(counting_registry)  # the new records; no old one again
    assert first["page_size"] == [str(FIRST_PAGE)] and "cursor" in rest
    assert kept_rows(kept) == 2 * n + 1  # with the input

    store = counting_registry.store
    (old,) = store.find("data_product", {"name": "results/part00", "version": "0.0.1"})
    store.delete("data_product", old["id"])
    counting_registry.queries.clear()
    assert "nothing newer" in everyone.fdp("pull").stdout
    short, whole = product_listings(counting_registry)
    assert short["page_size"] == [str(FIRST_PAGE)] and "cursor" not in whole
    assert int(whole["page_size"][0]) > n
    assert kept_rows(kept) == 2 * n

    kept.write_bytes(b"not a database")
    earlier = kept.with_suffix(".json")  # as an earlier release kept the listing
    earlier.write_text("{}", encoding="utf-8")
    counting_registry.queries.clear()
    assert "nothing newer" in everyone.fdp("pull").stdout
    (whole,) = product_listings(counting_registry)
    assert int(whole["page_size"][0]) > n
    assert kept_rows(kept) == 2 * n and not earlier.exists()
