"""Push to and pull from the upstream FAIR Data Pipeline registry, as a user does with `fdp`.

The registry is the emulation in tests/emulation/upstream.py (data-registry v1.2.1 as observed,
with an S3 object store behind it), on loopback. The last tests check the emulation's own
quirks over plain HTTP, since other tests and the benchmarks rely on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from emulation.upstream import Upstream, author_uuid
from support import Env, reader, record_counts, sha1
from support import producer as seeded_producer

from fdp_tasks.remotes.client import HttpRegistry, NoFileStorage

StartUpstream = Callable[..., Upstream]


def producer(tmp_path: Path, outputs: int = 2, name: str = "producer") -> Env:
    """A project that registers a seed file from a file:// root (with the release date the
    upstream requires) and writes results/partNN from it, one per output, in one run."""
    raw = (tmp_path / name / "raw").as_uri() + "/"
    return seeded_producer(tmp_path, outputs, name=name, root=raw, release_date="2026-01-05T12:00")


def add_upstream(env: Env, upstream: Upstream, name: str = "upstream") -> None:
    env.add_remote(upstream.api_url, upstream.token_file, name)


def writes(upstream: Upstream) -> list[str]:
    """The requests that could change the registry, by shape."""
    return [shape for shape in upstream.requests if not shape.startswith(("GET ", "OPTIONS "))]


# -------------------------------------------------------------------------- push and pull
def test_push_and_pull_through_an_upstream_registry_and_its_object_store(
    tmp_path: Path, upstream_registry: StartUpstream
) -> None:
    upstream = upstream_registry()
    env = producer(tmp_path)
    env.doit()
    add_upstream(env, upstream)
    pushed = env.fdp("push", "--remote", "upstream")
    assert upstream.token not in pushed.output

    store = upstream.store
    names = {
        f"{store.get('namespace', p['namespace'])['name']}:{p['name']}@{p['version']}"
        for p in store.find("data_product")
    }
    assert names == {
        "lab:results/part00@0.0.1",
        "lab:results/part01@0.0.1",
        "lab:inputs/seed@1.0.0",
    }
    [run] = store.find("code_run")
    assert run["model_config"] and run["submission_script"] and len(run["outputs"]) == 2

    # Every file went to the bucket under its SHA-1 and is recorded under the registry's own
    # storage root <base>/data/ with path = hash = SHA-1, as the reference CLI records it.
    [root] = store.find("storage_root", {"root": upstream.data_root})
    located = store.find("storage_location", {"storage_root": root["id"]})
    assert all(loc["path"] == loc["hash"] for loc in located)
    local = {
        sha1(env.data_store / rel): rel
        for rel in ("lab/results/part00/0.0.1.csv", "lab/results/part01/0.0.1.csv")
    }
    local[sha1(env.data_store / "lab/inputs/seed/1.0.0.txt")] = "seed"
    for key in ("model_config", "submission_script"):
        location = store.get("storage_location", store.get("object", run[key])["storage_location"])
        assert location["storage_root"] == root["id"]
        local[location["hash"]] = key
    # the environment the run recorded travels as an input object that names no product
    for component in run["inputs"]:
        obj = store.get("object", store.get("object_component", component)["object"])
        if not obj.get("data_products"):
            location = store.get("storage_location", obj["storage_location"])
            local[location["hash"]] = "environment"
    assert "environment" in local.values()
    assert {loc["hash"] for loc in located} == set(local)
    assert sorted(upstream.bucket_keys()) == sorted(local)
    for key in local:
        assert hashlib.sha1(upstream.object_bytes(key)).hexdigest() == key
    assert upstream.object_store_requests["PUT"] == len(local)

    # Pushing again sends nothing: no write reaches the registry, no byte the bucket.
    upstream.reset_counts()
    again = env.fdp("push", "--remote", "upstream")
    assert again.executed == []
    assert writes(upstream) == [] and not upstream.object_store_requests

    # A colleague pulls with a token: it goes to the registry only (the object store would
    # refuse a presigned request carrying it), and every file arrives with its SHA-1.
    colleague = reader(tmp_path, upstream.api_url, ["results/*"], token_file=upstream.token_file)
    upstream.reset_counts()
    pulled = colleague.fdp("pull")
    assert upstream.token not in pulled.output
    for rel in ("lab/results/part00/0.0.1.csv", "lab/results/part01/0.0.1.csv"):
        assert sha1(colleague.data_store / rel) == sha1(env.data_store / rel)
    assert upstream.object_store_requests["GET"] == 2
    assert upstream.requests["GET /data/{sha1}"] == 2
    assert writes(upstream) == []
    upstream.reset_counts()
    assert "pulled" not in colleague.fdp("pull").stdout  # nothing newer: nothing fetched
    assert not upstream.object_store_requests and writes(upstream) == []


def test_push_creates_the_data_root_a_registry_lacks(
    tmp_path: Path, upstream_registry: StartUpstream
) -> None:
    upstream = upstream_registry(storage_root=False)
    assert upstream.store.find("storage_root") == []
    env = producer(tmp_path, outputs=1)
    env.doit()
    add_upstream(env, upstream)
    env.fdp("push", "--remote", "upstream")
    [root] = upstream.store.find("storage_root", {"root": upstream.data_root})
    output = sha1(env.data_store / "lab/results/part00/0.0.1.csv")
    location = upstream.store.find_one("storage_location", {"hash": output})
    assert location["storage_root"] == root["id"] and location["path"] == output
    assert output in upstream.bucket_keys()


def test_push_to_a_registry_without_file_storage_fails_once_before_any_record(
    tmp_path: Path, upstream_registry: StartUpstream
) -> None:
    upstream = upstream_registry(object_storage=False)
    before = record_counts(upstream.store)
    env = producer(tmp_path, outputs=3)
    env.doit()
    add_upstream(env, upstream)
    result = env.fdp("push", "--remote", "upstream", check=False)
    assert result.returncode != 0
    said = {line for line in result.output.splitlines() if "has no file storage" in line}
    assert len(said) == 1, result.output
    [line] = said
    assert upstream.api_url in line and "BUCKETS" in line
    assert "Traceback" not in result.output and upstream.token not in result.output
    assert record_counts(upstream.store) == before
    # asked once, for the first file, and nothing written
    assert writes(upstream) == ["POST /api/data/{sha1}"]
    assert upstream.requests["POST /api/data/{sha1}"] == 1


def test_the_client_reads_both_upload_answers(
    tmp_path: Path, upstream_registry: StartUpstream, registry_server: Callable[..., Any]
) -> None:
    body = tmp_path / "file.csv"
    body.write_bytes(b"a,b\n1,2\n")
    digest = sha1(body)
    upstream = upstream_registry()
    ours = registry_server()
    for api_url, token, root in (
        (upstream.api_url, upstream.token, upstream.data_root),
        (ours.api_url, ours.token, f"{ours.url}/data/"),
    ):
        with HttpRegistry(api_url, token=token) as client:
            first = client.upload_blob(body, digest)
            assert (first["storage_root"], first["path"], first["exists"]) == (root, digest, False)
            second = client.upload_blob(body, digest)
            assert (second["storage_root"], second["path"], second["exists"]) == (
                root,
                digest,
                True,
            )
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with HttpRegistry(upstream.api_url, token=upstream.token) as client:
        client.upload_blob(empty, sha1(empty))
    assert upstream.object_bytes(sha1(empty)) == b""
    bare = upstream_registry(object_storage=False, name="bare")
    with HttpRegistry(bare.api_url, token=bare.token) as client:
        try:
            client.upload_blob(body, digest)
        except NoFileStorage as exc:
            assert str(exc).count("\n") == 0 and bare.token not in str(exc)
        else:
            raise AssertionError("a registry without object storage took a file")


# -------------------------------------------------------------------------- the emulation
def test_emulation_tokens(upstream_registry: StartUpstream) -> None:
    up = upstream_registry(object_storage=False)
    assert oct(up.token_file.stat().st_mode & 0o777) == "0o600"
    wrong = up.headers("0" * 40)
    assert requests.post(up.api_url + "namespace/", json={"name": "x"}).status_code == 403
    assert (
        requests.post(up.api_url + "namespace/", json={"name": "x"}, headers=wrong).status_code
        == 403
    )
    assert requests.get(up.api_url + "namespace/", headers=wrong).status_code == 403
    assert requests.get(up.api_url + "namespace/").status_code == 200  # reads are public
    for private in ("users/", "groups/", "username/"):
        assert requests.get(up.api_url + private).status_code == 403
    assert requests.get(up.api_url + "username/", headers=up.headers()).json()["username"]
    assert requests.get(up.api_url + "user_author/").json()["count"] == 0
    assert requests.post(up.api_url + f"data/{'a' * 40}").status_code == 403
    no_buckets = requests.post(up.api_url + f"data/{'a' * 40}", headers=up.headers())
    assert (
        no_buckets.status_code == 500
        and no_buckets.text == "'Settings' object has no attribute 'BUCKETS'"
    )


def test_emulation_conflicts_and_references(upstream_registry: StartUpstream) -> None:
    up = upstream_registry(object_storage=False)
    h = up.headers()

    def post(type_name: str, body: dict[str, Any]) -> requests.Response:
        return requests.post(f"{up.api_url}{type_name}/", json=body, headers=h)

    clash = post("storage_root", {"root": up.data_root})
    assert clash.status_code == 409 and clash.json() == {"detail": "Field root must be unique"}
    assert post("file_type", {"name": "csv", "extension": "csv"}).status_code == 201
    clash = post("file_type", {"name": "csv", "extension": "csv"})
    assert clash.json() == {"detail": "Field non_field_errors must be unique"}
    # no uniqueness on objects but the uuid, and a uuid clash is raw database text
    first, second = post("object", {}), post("object", {})
    assert first.status_code == second.status_code == 201
    assert first.json()["components"] and first.json()["components"] != second.json()["components"]
    clash = post("object", {"uuid": first.json()["uuid"]})
    assert clash.status_code == 409 and "UNIQUE constraint failed" in clash.json()["detail"]
    orcid = "https://orcid.org/0000-0002-1825-0097"
    assert post("author", {"name": "A", "identifier": orcid}).json()["uuid"] == author_uuid(orcid)
    assert [post("author", {"name": "Anon"}).status_code for _ in range(2)] == [201, 201]
    # references: URLs whose path alone counts; integers are refused
    ns = post("namespace", {"name": "lab"}).json()
    elsewhere = ns["url"].replace("127.0.0.1", "registry.example.org")
    obj = first.json()["url"]
    body = {"name": "x", "version": "1.0.0", "object": obj, "namespace": elsewhere}
    made = post("data_product", body)
    assert made.status_code == 201 and made.json()["namespace"] == ns["url"]
    assert post("data_product", {**body, "namespace": 1}).status_code == 400
    assert post("data_product", {**body, "version": "one"}).status_code == 400
    assert post("data_product", {**body, "name": "x?"}).status_code == 400
    assert post("namespace", {"name": "other", "unknown": 1}).status_code == 201
    # only issue, data_product and code_run change; only code_run goes
    assert requests.patch(ns["url"], json={"full_name": "Lab"}, headers=h).status_code == 405
    product = made.json()["url"]
    assert requests.patch(product, json={"version": "1.0.1"}, headers=h).status_code == 200
    assert requests.delete(product, headers=h).status_code == 405


def test_emulation_urls_versions_and_filters(upstream_registry: StartUpstream) -> None:
    up = upstream_registry(object_storage=False)
    h = up.headers()
    assert requests.post(up.api_url + "namespace", json={"name": "a"}, headers=h).status_code == 500
    moved = requests.get(up.api_url + "namespace?name=a", headers=h, allow_redirects=False)
    assert moved.status_code == 301 and moved.headers["Location"] == "/api/namespace/?name=a"
    v2 = {**h, "Accept": "application/json; version=2.0.0"}
    assert requests.get(up.api_url + "namespace/", headers=v2).status_code == 406
    ns = requests.post(up.api_url + "namespace/", json={"name": "lab"}, headers=h).json()
    obj = requests.post(up.api_url + "object/", json={}, headers=h).json()
    for name in ("results/a/b", "results/c", "other"):
        body = {"name": name, "version": "1.0.0", "object": obj["url"], "namespace": ns["url"]}
        assert requests.post(up.api_url + "data_product/", json=body, headers=h).status_code == 201

    def listing(type_name: str, **params: str) -> requests.Response:
        return requests.get(f"{up.api_url}{type_name}/", params=params, headers=h)

    names = [r["name"] for r in listing("data_product", name="results/*").json()["results"]]
    assert names == ["results/c", "results/a/b"]  # anchored globs across '/', newest first
    assert listing("data_product", name="results/?").json()["count"] == 1
    assert listing("data_product", name="result").json()["count"] == 0
    ns_id = ns["url"].rstrip("/").rsplit("/", 1)[1]
    assert listing("data_product", namespace=ns_id).json()["count"] == 3
    assert listing("data_product", namespace=ns["url"]).status_code == 400
    assert listing("data_product", page=2).status_code == 400
    assert listing("object", data_products="999999").json()["count"] == 1  # ignored
    assert listing("storage_root", root=up.data_root).json()["count"] == 1
    assert listing("storage_root", root=up.data_root[:-3] + "*").json()["count"] == 0
    assert listing("storage_root", local="0").json()["count"] == 1
    assert listing("storage_root", local="true").json()["count"] == 0
    options = requests.options(up.api_url + "object/", headers=h).json()
    assert "data_products" in options["filter_fields"] and "POST" in options["actions"]
    assert "actions" not in requests.options(up.api_url + "object/").json()


def test_emulation_pages(upstream_registry: StartUpstream) -> None:
    up = upstream_registry(object_storage=False)
    h = up.headers()
    made = [
        requests.post(up.api_url + "namespace/", json={"name": f"ns{i:03d}"}, headers=h).json()
        for i in range(230)
    ]
    page = requests.get(up.api_url + "namespace/", headers=h).json()
    seen = []
    while True:
        assert page["count"] == 230 and len(page["results"]) <= 100
        seen += [r["url"] for r in page["results"]]
        if not page["next"]:
            break
        page = requests.get(page["next"], headers=h).json()
    assert seen == [r["url"] for r in reversed(made)]
    back = requests.get(page["previous"], headers=h).json()
    assert [r["url"] for r in back["results"]] == seen[100:200]
    whole = requests.get(up.api_url + "namespace/?page_size=1000", headers=h).json()
    assert len(whole["results"]) == 230 and whole["next"] is None


def test_emulation_files(tmp_path: Path, upstream_registry: StartUpstream) -> None:
    up = upstream_registry()
    h = up.headers()
    data = b"x,y\n1,2\n"
    digest = hashlib.sha1(data).hexdigest()
    answer = requests.post(up.api_url + f"data/{digest}", headers=h)
    assert answer.status_code == 200 and list(answer.json()) == ["url"]
    assert not answer.json()["url"].startswith(up.base_url)
    refused = requests.put(answer.json()["url"], data=data, headers={"Authorization": "token x"})
    assert refused.status_code == 400  # like S3: one credential per request
    assert requests.put(answer.json()["url"], data=data).status_code == 200
    assert requests.post(up.api_url + f"data/{digest}", headers=h).status_code == 409
    assert requests.get(f"{up.base_url}/data/{digest}").status_code == 404  # not registered
    root = requests.get(up.api_url + "storage_root/", headers=h).json()["results"][0]["url"]
    location = {"path": digest, "hash": digest, "storage_root": root}
    assert requests.post(up.api_url + "storage_location/", json=location, headers=h).ok
    moved = requests.get(f"{up.base_url}/data/{digest}", allow_redirects=False)
    assert moved.status_code == 302 and not moved.headers["Location"].startswith(up.base_url)
    assert requests.get(f"{up.base_url}/data/{digest}").content == data
    part = requests.get(f"{up.base_url}/data/{digest}", headers={"Range": "bytes=4-"})
    assert part.status_code == 206 and part.content == data[4:]
