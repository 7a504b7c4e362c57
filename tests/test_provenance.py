"""Provenance through its public entry points: `fdp prov` (W3C PROV, RO-Crate, pictures),
the server's prov-report and RO-Crate endpoints, and `doit prov`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import urllib.parse
import zipfile
from pathlib import Path
from typing import Any

import pytest
import rdflib
import requests
from prov.model import ProvDocument
from support import Env, producer, sha1

from fdp_tasks.provenance import walk
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.store.sql import Store

PRODUCT = "lab:results/part00@0.0.1"
SIBLING = "lab:results/part01@0.0.1"
SEED = "lab:inputs/seed@1.0.0"
# What a registry says of its own copy of a record, and so differs between two registries
# holding the same provenance: where the file lies, and when the record was written.
REGISTRY_OWN = ("prov:atLocation", "dcterms:modified")


def run_producer(base: Path) -> Env:
    """A project whose one run read the registered seed and wrote two results."""
    env = producer(base)
    env.doit()
    return env


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The producer's project, shared by the tests that only read it."""
    return run_producer(tmp_path_factory.mktemp("made"))


@pytest.fixture
def fresh(tmp_path: Path) -> Env:
    """The producer's project, for a test that changes it (a remote, a registry record)."""
    return run_producer(tmp_path)


def run_uuid(env: Env) -> str:
    store = Store(env.home / "registry.db")
    try:
        return store.find("code_run", limit=1)[0]["uuid"]
    finally:
        store.close()


def normalised(data: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """A PROV-JSON document without its prefixes' URLs, the registry's own attributes and
    the blank ids of relations: what two registries holding the same provenance share."""
    out: dict[str, list[tuple[str, str]]] = {}
    for section, records in data.items():
        if section == "prefix":
            continue
        rows = []
        for key, attributes in records.items():
            kept = {k: v for k, v in attributes.items() if k not in REGISTRY_OWN}
            rows.append(("" if key.startswith("_:") else key, json.dumps(kept, sort_keys=True)))
        out[section] = sorted(rows)
    return out


def relations(data: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return list((data.get(section) or {}).values())


# ---------------------------------------------------------------------------- W3C PROV
def test_prov_json_reads_back_into_an_equal_document(made: Env, tmp_path: Path) -> None:
    out = tmp_path / "prov.json"
    made.fdp("prov", PRODUCT, "--format", "prov-json", "-o", str(out))
    data = json.loads(out.read_text(encoding="utf-8"))
    document = ProvDocument.deserialize(content=out.read_text(encoding="utf-8"), format="json")
    again = ProvDocument.deserialize(content=document.serialize(format="json"), format="json")
    assert again == document

    # the upstream prov-report's prefixes and shape
    assert {"lreg", "fair", "dcat", "dcmitype", "dcterms", "foaf", "rdf"} <= set(data["prefix"])
    product = data["entity"][f"lreg:data_product/{PRODUCT}"]
    assert product["dcterms:title"] == "results/part00"
    assert product["dcat:hasVersion"] == "0.0.1"
    assert product["fair:namespace"] == "lab"
    part00 = made.data_store / "lab/results/part00/0.0.1.csv"
    assert product["fair:hash"] == sha1(part00)
    (run_key,) = data["activity"]
    assert data["activity"][run_key]["rdf:type"]["$"] == "fair:Run"
    generated = relations(data, "wasGeneratedBy")
    assert [(g["prov:entity"], g["prov:activity"]) for g in generated] == [
        (f"lreg:data_product/{PRODUCT}", run_key)
    ]
    roles = sorted(u["prov:role"]["$"] for u in relations(data, "used"))
    assert roles == [
        "fair:input_data",
        "fair:input_data",  # the run's environment record (fdp_tasks.environment)
        "fair:model_configuration",
        "fair:software",
        "fair:submission_script",
    ]
    assert any(u["prov:entity"] == f"lreg:data_product/{SEED}" for u in relations(data, "used"))
    assert relations(data, "wasAssociatedWith") and relations(data, "wasAttributedTo")
    derived = relations(data, "wasDerivedFrom")
    assert [d["prov:usedEntity"] for d in derived] == [f"lreg:data_product/{SEED}"]
    # depth 1 stops at the run that made it: the sibling output is not part of it
    assert f"lreg:data_product/{SIBLING}" not in data["entity"]


def test_prov_n_xml_and_turtle(made: Env) -> None:
    provn = made.fdp("prov", PRODUCT, "--format", "prov-n").stdout
    assert provn.startswith("document") and "wasGeneratedBy(lreg:data_product/" in provn

    xml = made.fdp("prov", PRODUCT, "--format", "prov-xml").stdout
    from_xml = ProvDocument.deserialize(content=xml.encode("utf-8"), format="xml")
    from_json = ProvDocument.deserialize(content=made.fdp("prov", PRODUCT).stdout, format="json")
    assert from_xml == from_json

    turtle = made.fdp("prov", PRODUCT, "--format", "turtle").stdout
    graph = rdflib.Graph().parse(data=turtle, format="turtle")
    prov = rdflib.Namespace("http://www.w3.org/ns/prov#")
    product = rdflib.URIRef("http://localhost/" + f"data_product/{PRODUCT}")
    assert len(list(graph.objects(product, prov.wasGeneratedBy))) == 1


def test_depth_downstream_and_code_runs(made: Env) -> None:
    uuid = run_uuid(made)
    as_run = json.loads(made.fdp("prov", uuid).stdout)
    # a code run: its inputs and all its outputs
    for ref in (PRODUCT, SIBLING, SEED):
        assert f"lreg:data_product/{ref}" in as_run["entity"]
    assert list(as_run["activity"]) == [f"lreg:code_run/{uuid}"]

    downstream = json.loads(made.fdp("prov", SEED, "--downstream").stdout)
    assert {f"lreg:data_product/{PRODUCT}", f"lreg:data_product/{SIBLING}"} <= set(
        downstream["entity"]
    )
    upstream_of_seed = json.loads(made.fdp("prov", SEED).stdout)
    assert "activity" not in upstream_of_seed  # registered, made by no run

    deep = json.loads(made.fdp("prov", PRODUCT, "--depth", "3").stdout)
    assert list(deep["activity"]) == [f"lreg:code_run/{uuid}"]  # nothing made the seed


def test_bad_input_is_one_line_and_exit_2(made: Env) -> None:
    for args, words in (
        (["not a product"], "namespace"),
        ([PRODUCT, "--depth", "0"], "depth"),
        ([PRODUCT, "--format", "ro-crate"], "-o PATH"),
        ([PRODUCT, "--format", "pdf"], "invalid choice"),
    ):
        result = made.fdp("prov", *args, check=False)
        assert result.returncode == 2, (args, result.output)
        assert words in result.stderr
        assert "Traceback" not in result.stderr
    missing = made.fdp("prov", "lab:results/nothing@1.0.0", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0 and "lab:results/nothing" in missing.stderr


# ----------------------------------------------------------------------------- pictures
def test_dot_svg_and_png(made: Env, tmp_path: Path) -> None:
    dot = made.fdp("prov", PRODUCT, "--format", "dot").stdout
    assert dot.startswith("digraph provenance {")
    assert 'shape=ellipse, style=filled, fillcolor="#FFFC87"' in dot  # entities
    assert 'shape=box, style=filled, fillcolor="#9FB1FC"' in dot  # activities
    assert 'shape=house, style=filled, fillcolor="#FED37F"' in dot  # agents
    for relation in ("used", "wasGeneratedBy", "wasAttributedTo", "wasAssociatedWith"):
        assert f'[label="{relation}"]' in dot

    svg = made.fdp("prov", PRODUCT, "--format", "svg").stdout
    assert "<svg" in svg and "results/part00" in svg
    png = tmp_path / "prov.png"
    made.fdp("prov", PRODUCT, "--format", "png", "--attributes", "-o", str(png))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    # without graphviz: dot text still, and one line saying what is missing for svg
    no_dot = tmp_path / "empty-path"
    no_dot.mkdir()
    made_env = {**made.environ, "PATH": str(no_dot)}
    done = subprocess.run(
        [sys.executable, "-m", "fdp_tasks.cli.main", "prov", PRODUCT, "--format", "svg"],
        cwd=made.project,
        env=made_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("fdp: error:") and "graphviz" in done.stderr
    assert done.stderr.strip().count("\n") == 0


# ----------------------------------------------------------------------------- RO-Crate
def validate_crate(crate: Path, cache: Path) -> list[str]:
    """roc-validator's REQUIRED issues for the Workflow Run Crate profile (empty: valid).

    The validator fetches the RO-Crate 1.1 JSON-LD context from the network, which tests do
    not have. Its HTTP cache is filled first with the context the `rocrate` package ships
    (RO-Crate 1.3's terms, a superset; bioschemas terms at their 1.1 addresses)."""
    import requests_cache
    import rocrate
    import urllib3
    from rocrate_validator import models, services

    context = (Path(rocrate.__file__).parent / "data" / "ro-crate.jsonld").read_bytes()
    context = context.replace(b"https://bioschemas.org/terms/", b"https://bioschemas.org/")
    url = "https://w3id.org/ro/crate/1.1/context"
    session = requests_cache.CachedSession(cache_name=str(cache), backend="sqlite")
    for accept in ("application/ld+json, application/json", "application/ld+json"):
        answer = requests.Response()
        answer.status_code = 200
        answer._content = context
        answer.url = url
        answer.encoding = "utf-8"
        answer.headers["Content-Type"] = "application/ld+json"
        answer.raw = urllib3.HTTPResponse(
            body=io.BytesIO(b""), status=200, preload_content=False, request_url=url
        )
        answer.request = requests.Request("GET", url, headers={"Accept": accept}).prepare()
        session.cache.save_response(answer)
    session.close()
    settings = models.ValidationSettings(
        rocrate_uri=str(crate),
        profile_identifier="workflow-run-crate-0.5",
        requirement_severity=models.Severity.REQUIRED,
        offline=True,
        skip_availability_check=True,
        cache_path=cache,
    )
    result = services.validate(settings)
    return [f"{issue.check.identifier}: {issue.message}" for issue in result.get_issues()]


def test_ro_crate_is_valid_and_its_checksums_match_the_store(made: Env, tmp_path: Path) -> None:
    crate = tmp_path / "crate"
    made.fdp("prov", PRODUCT, "--format", "ro-crate", "--depth", "2", "-o", str(crate))
    metadata = json.loads((crate / "ro-crate-metadata.json").read_text(encoding="utf-8"))
    entities = {e["@id"]: e for e in metadata["@graph"]}
    root = entities["./"]
    assert {c["@id"] for c in root["conformsTo"]} >= {
        "https://w3id.org/ro/wfrun/process/0.5",
        "https://w3id.org/ro/wfrun/workflow/0.5",
    }
    script = entities[root["mainEntity"]["@id"]]
    assert "ComputationalWorkflow" in script["@type"]
    (action,) = [e for e in entities.values() if e.get("@type") == "CreateAction"]
    assert action["instrument"]["@id"] == script["@id"]
    results = [r["@id"] for r in action["result"]]
    assert results == ["data/lab/results/part00/0.0.1.csv"]
    objects = {o["@id"] for o in action["object"]}
    assert "data/lab/inputs/seed/1.0.0.txt" in objects
    assert any(entities[o].get("description") == "working config.yaml of the run" for o in objects)

    # every file in the crate holds the bytes the data store holds, with the registry's sha1
    store = Store(made.home / "registry.db")
    try:
        recorded = {loc["hash"] for loc in store.find("storage_location")}
    finally:
        store.close()
    shipped = [
        e
        for e in entities.values()
        if e.get("@type") in ("File", ["File"])
        or (isinstance(e.get("@type"), list) and "File" in e["@type"])
    ]
    # the product, the seed, the config, the script and the run's environment record
    assert len(shipped) == 5
    for entity in shipped:
        path = crate / urllib.parse.unquote(entity["@id"])
        assert sha1(path) == entity["sha1"]
        assert entity["sha1"] in recorded
    for rel in ("lab/results/part00/0.0.1.csv", "lab/inputs/seed/1.0.0.txt"):
        copy = crate / "data" / rel
        assert sha1(copy) == sha1(made.data_store / rel)

    assert validate_crate(crate, tmp_path / "validator-cache") == []

    as_zip = tmp_path / "crate.zip"
    made.fdp("prov", made_run := run_uuid(made), "--format", "ro-crate", "-o", str(as_zip))
    with zipfile.ZipFile(as_zip) as archive:
        names = set(archive.namelist())
        meta = json.loads(archive.read("ro-crate-metadata.json"))
    assert {"data/lab/results/part00/0.0.1.csv", "data/lab/results/part01/0.0.1.csv"} <= names
    assert any(e["@id"] == f"#{made_run}" for e in meta["@graph"])


# ------------------------------------------------------------------------------- server
def test_server_serves_the_same_prov_document_as_made_locally(
    fresh: Env, registry_server: Any, tmp_path: Path
) -> None:
    live = registry_server()
    fresh.add_remote(live.api_url, live.token_file)
    fresh.fdp("push")
    local = json.loads(fresh.fdp("prov", PRODUCT, "--depth", "2").stdout)

    remote_id = live.store.find("data_product", {"name": "results/part00"}, limit=1)[0]["id"]
    report = f"{live.url}/api/prov-report/{remote_id}/"
    served = requests.get(report, params={"depth": "2"}, timeout=30)  # anonymous
    assert served.status_code == 200, served.text
    assert served.headers["Content-Type"].startswith("application/json")
    remote = served.json()
    assert remote["prefix"]["lreg"] == f"{live.url}/"
    assert normalised(remote) == normalised(local)
    # what the normalising drops is there on both sides, each saying its own
    key = f"lreg:data_product/{PRODUCT}"
    assert remote["entity"][key]["prov:atLocation"] != local["entity"][key]["prov:atLocation"]

    # the same walk over the REST API (as a client of any registry would) as in the server
    with HttpRegistry(live.api_url) as http:
        over_http = walk(http, PRODUCT, depth=2)
    assert over_http.digest() == walk(live.store, PRODUCT, depth=2).digest()
    # 6 and the run's environment record
    assert len(over_http.entities) == 7 and len(over_http.activities) == 1

    for fmt, expected in (
        ("provn", "text/provenance-notation"),
        ("xml", "text/xml"),
        ("json-ld", "application/ld+json"),
        ("svg", "image/svg+xml"),
        ("jpg", "image/jpeg"),
    ):
        answer = requests.get(report, params={"format": fmt}, timeout=60)
        assert answer.status_code == 200, (fmt, answer.text)
        assert answer.headers["Content-Type"].startswith(expected), fmt
    assert requests.get(report, params={"format": "pdf"}, timeout=30).status_code == 400
    missing = f"{live.url}/api/prov-report/999999/"
    assert requests.get(missing, timeout=30).status_code == 404
    assert requests.post(report, timeout=30).status_code == 405  # read-only


def test_server_ro_crates_never_ship_private_bytes(
    fresh: Env, registry_server: Any, tmp_path: Path
) -> None:
    live = registry_server()
    fresh.add_remote(live.api_url, live.token_file)
    fresh.fdp("push")
    store = live.store
    product = store.find("data_product", {"name": "results/part00"}, limit=1)[0]
    crate_url = f"{live.url}/api/ro-crate/data-product/{product['id']}/"
    metadata = requests.get(crate_url, timeout=60).json()
    assert any(e["@id"] == "data/lab/results/part00/0.0.1.csv" for e in metadata["@graph"])
    archive = requests.get(crate_url, params={"format": "zip"}, timeout=60)
    assert archive.status_code == 200 and archive.headers["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as crate:
        part00 = crate.read("data/lab/results/part00/0.0.1.csv")
    assert part00 == (fresh.data_store / "lab/results/part00/0.0.1.csv").read_bytes()

    # bytes the server holds but nobody published: named in the crate, never in it
    secret = b"private,bytes\n"
    secret_sha1 = hashlib.sha1(secret).hexdigest()
    blob = live.blob_dir / secret_sha1[:2] / secret_sha1
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(secret)
    obj = store.get("object", product["object"])
    root = store.get(
        "storage_root", store.get("storage_location", obj["storage_location"])["storage_root"]
    )
    private = store.create(
        "storage_location",
        {"path": secret_sha1, "hash": secret_sha1, "public": False, "storage_root": root["id"]},
    )
    hidden_obj = store.create(
        "object", {"storage_location": private["id"], "description": "private"}
    )
    namespace = product["namespace"]
    hidden = store.create(
        "data_product",
        {
            "object": hidden_obj["id"],
            "namespace": namespace,
            "name": "results/private",
            "version": "0.0.1",
        },
    )
    url = f"{live.url}/api/ro-crate/data-product/{hidden['id']}/"
    for token in (None, live.token):
        headers = {"Authorization": f"token {token}"} if token else {}
        answer = requests.get(url, params={"format": "zip"}, headers=headers, timeout=60)
        assert answer.status_code == 200
        with zipfile.ZipFile(io.BytesIO(answer.content)) as crate:
            assert all(crate.read(name) != secret for name in crate.namelist())
            meta = json.loads(crate.read("ro-crate-metadata.json"))
        named = [e for e in meta["@graph"] if e.get("sha1") == secret_sha1]
        if token:  # named, by its URL on this server
            assert len(named) == 1 and named[0]["@id"].startswith(f"{live.url}/")
        else:  # anonymous: not even its hash
            assert named == [] and secret_sha1 not in json.dumps(meta)
    anonymous_report = requests.get(f"{live.url}/api/prov-report/{hidden['id']}/", timeout=30)
    assert secret_sha1 not in anonymous_report.text

    run = store.find("code_run", limit=1)[0]
    run_crate = requests.get(f"{live.url}/api/ro-crate/code-run/{run['id']}/", timeout=60)
    assert run_crate.status_code == 200
    assert any(e["@id"] == f"#{run['uuid']}" for e in run_crate.json()["@graph"])


# --------------------------------------------------------------------------------- doit
def test_doit_prov_writes_once_and_again_only_when_provenance_changes(fresh: Env) -> None:
    first = fresh.doit("prov")
    assert sorted(first.executed) == [f"prov:{PRODUCT}", f"prov:{SIBLING}"]
    folder = fresh.project / ".fdp" / "configs" / "config.yaml" / "prov" / "lab" / "results"
    document = folder / "part00@0.0.1.json"
    picture = folder / "part00@0.0.1.svg"
    written = ProvDocument.deserialize(content=document.read_text(encoding="utf-8"))
    assert any(True for _ in written.get_records())
    assert "<svg" in picture.read_text(encoding="utf-8")

    second = fresh.doit("prov")
    assert second.executed == []
    assert sorted(second.up_to_date) == [f"prov:{PRODUCT}", f"prov:{SIBLING}"]
    assert fresh.doit().executed == []  # not a default task, and the job stays up to date

    # a deleted file is written again, and only that task runs
    picture.unlink()
    third = fresh.doit("prov")
    assert third.executed == [f"prov:{PRODUCT}"]
    assert picture.is_file()

    store = Store(fresh.home / "registry.db")
    try:
        (part00,) = store.find("data_product", {"name": "results/part00"})
        component = store.get("object", part00["object"])["components"][0]
        store.create(
            "issue", {"severity": 1, "description": "bad rows", "component_issues": [component]}
        )
    finally:
        store.close()
    fourth = fresh.doit("prov")
    assert fourth.executed == [f"prov:{PRODUCT}"]  # its issue is part of its provenance
    assert "bad rows" in document.read_text(encoding="utf-8")
    assert os.path.getsize(document) > 0
