"""The registry REST server, spoken to over real HTTP as the reference clients speak to it,
on a SQLite and on a PostgreSQL database."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest
import requests
import yaml

from fdp_tasks.store.schema import load_schema

try:
    from data_pipeline_api import fdp_utils, link, pipeline
except ImportError:  # pragma: no cover - the test extra pins data-pipeline-api==0.9.1
    fdp_utils = link = pipeline = None

needs_dpa = pytest.mark.skipif(fdp_utils is None, reason="data-pipeline-api not installed")


@pytest.fixture
def reg(registry_server, registry_database):
    """A fresh server, on SQLite and on PostgreSQL in turn."""
    return registry_server(database=registry_database)


def post(reg, type_name, data, token="", slash=True):
    url = f"{reg.api_url}{type_name}{'/' if slash else ''}"
    return requests.post(url, json=data, headers=reg.headers(token))


def get(reg, path, token="", **params):
    return requests.get(f"{reg.api_url}{path}", params=params or None, headers=reg.headers(token))


def make(reg, type_name, data):
    resp = post(reg, type_name, data)
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_index_lists_every_schema_type(reg):
    resp = requests.get(reg.api_url)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    index = resp.json()
    assert set(index) == set(load_schema().types)
    assert index["namespace"] == f"{reg.url}/api/namespace/"
    assert requests.get(reg.api_url.rstrip("/")).json() == index


def test_create_answers_201_with_urls(reg):
    root = make(reg, "storage_root", {"root": "https://example.org/", "local": False})
    assert root["url"].startswith(f"{reg.url}/api/storage_root/")
    assert root["url"].endswith("/")
    assert root["local"] is False
    assert root["locations"] == []
    assert root["last_updated"]
    assert root["updated_by"] == f"{reg.url}/api/users/1/"
    loc = make(
        reg, "storage_location", {"path": "a/b.csv", "hash": "ab" * 20, "storage_root": root["url"]}
    )
    assert loc["storage_root"] == root["url"]
    assert loc["public"] is True
    again = requests.get(root["url"]).json()
    assert again["locations"] == [loc["url"]]


def test_duplicates_answer_409(reg):
    make(reg, "namespace", {"name": "ns", "full_name": "Name Space"})
    clash = post(reg, "namespace", {"name": "ns"})
    assert clash.status_code == 409
    assert "detail" in clash.json()
    assert post(reg, "namespace", {"name": "other", "full_name": "Name Space"}).status_code == 409
    make(reg, "storage_root", {"root": "file:///data/"})
    assert post(reg, "storage_root", {"root": "file:///data/", "local": True}).status_code == 409


def test_bad_input_answers_400_per_field(reg):
    resp = post(reg, "storage_location", {"path": "x", "hash": "1"})
    assert resp.status_code == 400
    assert "storage_root" in resp.json()
    ns = make(reg, "namespace", {"name": "ns"})
    wrong = post(reg, "storage_location", {"path": "x", "hash": "1", "storage_root": ns["url"]})
    assert wrong.status_code == 400
    assert list(wrong.json()) == ["storage_root"]
    dangling = post(reg, "storage_location", {"path": "x", "hash": "1", "storage_root": 999})
    assert dangling.status_code == 400
    bad_version = post(
        reg,
        "data_product",
        {
            "name": "d",
            "version": "one",
            "namespace": ns["url"],
            "object": make(reg, "object", {})["url"],
        },
    )
    assert bad_version.status_code == 400
    assert "version" in bad_version.json()
    not_json = requests.post(
        f"{reg.api_url}namespace/",
        data="{oops",
        headers={**reg.headers(), "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    assert not_json.headers["Content-Type"].startswith("application/json")


def test_foreign_keys_accept_urls_of_any_host_and_int_ids(reg):
    root = make(reg, "storage_root", {"root": "https://example.org/"})
    rid = root["url"].rstrip("/").rsplit("/", 1)[1]
    other_host = f"http://elsewhere.invalid:9/api/storage_root/{rid}/"
    loc = make(reg, "storage_location", {"path": "p", "hash": "h1", "storage_root": other_host})
    assert loc["storage_root"] == root["url"]
    loc2 = make(reg, "storage_location", {"path": "p", "hash": "h2", "storage_root": int(rid)})
    assert loc2["storage_root"] == root["url"]
    obj = make(reg, "object", {"storage_location": loc["url"], "unknown_field": 1})
    assert obj["storage_location"] == loc["url"]


def test_filters(reg):
    local = make(reg, "storage_root", {"root": "file:///x/", "local": True})
    remote = make(reg, "storage_root", {"root": "https://example.org/", "local": False})
    for i, root in enumerate([local, remote, local]):
        make(
            reg,
            "storage_location",
            {"path": f"p{i}", "hash": f"h{i}", "storage_root": root["url"], "public": i != 1},
        )
    for value in ("true", "True", "1", "on", "YES", "t"):
        found = get(reg, "storage_root/", local=value).json()
        assert [r["url"] for r in found["results"]] == [local["url"]]
    for value in ("false", "False", "0", "off", "n"):
        assert get(reg, "storage_root/", local=value).json()["count"] == 1
    assert get(reg, "storage_root/", root="file:///x/").json()["results"][0]["url"] == local["url"]
    lid = local["url"].rstrip("/").rsplit("/", 1)[1]
    by_fk = get(reg, "storage_location/", storage_root=lid).json()
    assert by_fk["count"] == 2
    assert get(reg, "storage_location/", storage_root=local["url"]).json()["count"] == 2
    assert get(reg, "storage_location/", storage_root=lid, public="false").json()["count"] == 0
    assert get(reg, "storage_location/", hash="h1").json()["count"] == 1
    for name in ("alpha", "alpine", "beta"):
        make(reg, "namespace", {"name": name})
    names = [r["name"] for r in get(reg, "namespace/", name="alp*").json()["results"]]
    assert names == ["alpine", "alpha"]
    assert get(reg, "namespace/", name="ALP*").json()["count"] == 0
    assert get(reg, "namespace/", name="*a").json()["count"] == 2
    assert get(reg, "storage_root/", root="file*").json()["count"] == 0  # not a glob field
    bad = get(reg, "namespace/", page=2)
    assert bad.status_code == 400
    assert "page" in bad.json()["detail"]
    assert get(reg, "storage_root/", local="maybe").status_code == 400
    assert get(reg, "storage_location/", storage_root="abc").status_code == 400
    assert get(reg, "namespace/", format="json", ordering="-id").status_code == 200


def test_m2m_filter(reg):
    a1 = make(reg, "author", {"name": "A"})
    a2 = make(reg, "author", {"name": "B"})
    both = make(reg, "object", {"authors": [a1["url"], a2["url"]]})
    make(reg, "object", {"authors": [a1["url"]]})
    a1_id = a1["url"].rstrip("/").rsplit("/", 1)[1]
    assert get(reg, "object/", authors=a1_id).json()["count"] == 2
    listed = f"['{a1['url']}', '{a2['url']}']"
    found = get(reg, "object/", authors=listed).json()
    assert [r["url"] for r in found["results"]] == [both["url"]]


def test_pagination_with_cursor(reg):
    for i in range(130):
        make(reg, "namespace", {"name": f"ns{i:03d}"})
    first = get(reg, "namespace/").json()
    assert first["count"] == 130
    assert len(first["results"]) == 100
    assert first["previous"] is None
    assert first["results"][0]["name"] == "ns129"  # newest first
    second = requests.get(first["next"], headers=reg.headers()).json()
    assert len(second["results"]) == 30
    assert second["next"] is None
    assert second["results"][-1]["name"] == "ns000"
    back = requests.get(second["previous"], headers=reg.headers()).json()
    assert [r["url"] for r in back["results"]] == [r["url"] for r in first["results"]]
    seen, url = [], f"{reg.api_url}namespace/?page_size=7&name=ns*"
    while url:
        page = requests.get(url, headers=reg.headers()).json()
        assert len(page["results"]) <= 7
        seen += [r["name"] for r in page["results"]]
        url = page["next"]
    assert seen == [f"ns{i:03d}" for i in reversed(range(130))]
    big = get(reg, "namespace/", page_size=100000).json()
    assert len(big["results"]) == 130 and big["next"] is None
    assert get(reg, "namespace/", cursor="!!!").status_code == 404


def test_writes_need_a_valid_token(reg):
    for token in (None, "0" * 40):
        resp = post(reg, "namespace", {"name": "x"}, token=token)
        assert resp.status_code == 403
        assert "detail" in resp.json()
    obj = make(reg, "object", {})
    run = make(
        reg,
        "code_run",
        {"run_date": "2024-01-01", "description": "r", "submission_script": obj["url"]},
    )
    assert (
        requests.patch(run["url"], json={"description": "y"}, headers=reg.headers(None)).status_code
        == 403
    )
    assert requests.delete(run["url"], headers=reg.headers("bad")).status_code == 403
    assert requests.get(reg.api_url + "namespace/", headers=reg.headers("bad")).status_code == 200


def test_method_permissions_follow_the_schema(reg):
    ns = make(reg, "namespace", {"name": "ns"})
    resp = requests.patch(ns["url"], json={"name": "y"}, headers=reg.headers())
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "GET"
    assert requests.delete(ns["url"], headers=reg.headers()).status_code == 405
    assert requests.put(ns["url"], json={"name": "y"}, headers=reg.headers()).status_code == 405
    assert post(reg, "users", {"username": "mallory"}).status_code == 405
    obj = make(reg, "object", {})
    run = make(
        reg,
        "code_run",
        {"run_date": "2024-01-01T10:00", "description": "r", "submission_script": obj["url"]},
    )
    put = requests.put(run["url"], json={"description": "only"}, headers=reg.headers())
    assert put.status_code == 400
    assert requests.delete(run["url"], headers=reg.headers()).status_code == 204
    assert requests.get(run["url"]).status_code == 404


def test_accept_version(reg):
    assert requests.get(reg.api_url, headers={"Accept": "application/json"}).status_code == 200
    bad = requests.get(reg.api_url, headers={"Accept": "application/json; version=2.0.0"})
    assert bad.status_code == 406
    assert bad.headers["Content-Type"].startswith("application/json")


def test_without_trailing_slash(reg):
    ns = make(reg, "namespace", {"name": "slashless"})
    created = post(reg, "namespace", {"name": "other"}, slash=False)
    assert created.status_code == 201
    one = requests.get(ns["url"].rstrip("/"), headers=reg.headers(), allow_redirects=False)
    assert one.status_code == 200
    assert one.json() == ns
    listed = requests.get(f"{reg.api_url}namespace?name=slashless", allow_redirects=False)
    assert listed.status_code == 200 and listed.json()["count"] == 1
    obj = make(reg, "object", {})
    run = make(
        reg,
        "code_run",
        {"run_date": "2024-01-01", "description": "r", "submission_script": obj["url"]},
    )
    patched = requests.patch(
        run["url"].rstrip("/"), json={"description": "s"}, headers=reg.headers()
    )
    assert patched.status_code == 200 and patched.json()["description"] == "s"


def test_not_found_is_json(reg):
    for url in (f"{reg.api_url}nothing/", f"{reg.api_url}namespace/99/", f"{reg.url}/else"):
        resp = requests.get(url)
        assert resp.status_code == 404
        assert resp.headers["Content-Type"].startswith("application/json")
        assert "detail" in resp.json()


def test_object_gets_whole_object_component(reg):
    obj = make(reg, "object", {"description": "o"})
    assert len(obj["components"]) == 1
    comp = requests.get(obj["components"][0]).json()
    assert comp["whole_object"] is True
    assert comp["name"] == "whole_object"
    assert comp["object"] == obj["url"]
    named = make(reg, "object_component", {"object": obj["url"], "name": "part"})
    assert requests.get(obj["url"]).json()["components"] == [comp["url"], named["url"]]


def test_code_run_patch_inputs_outputs(reg):
    script = make(reg, "object", {})
    data_in = make(reg, "object", {})
    data_out = make(reg, "object", {})
    run = make(
        reg,
        "code_run",
        {
            "run_date": "2024-01-01 12:00:00.5",
            "description": "r",
            "submission_script": script["url"],
            "input_urls": [],
        },
    )
    assert run["inputs"] == [] and run["outputs"] == []
    resp = requests.patch(
        run["url"],
        json={"inputs": data_in["components"], "outputs": data_out["components"]},
        headers=reg.headers(),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["inputs"] == data_in["components"]
    assert resp.json()["outputs"] == data_out["components"]
    assert resp.json()["description"] == "r"
    bad = requests.patch(run["url"], json={"inputs": script["url"]}, headers=reg.headers())
    assert bad.status_code == 400
    # another user may not rewrite or delete this provenance; its author and admin may
    mallory = reg.store.issue_token(reg.store.ensure_user("mallory")["id"])
    for method in (requests.patch, requests.delete):
        refused = method(run["url"], json={"outputs": []}, headers=reg.headers(mallory))
        assert refused.status_code == 403
    assert requests.delete(run["url"], headers=reg.headers()).status_code == 204


def test_username_and_users_need_a_token(reg):
    me = get(reg, "username/").json()
    assert me == {"username": "admin", "url": f"{reg.url}/api/users/1/"}
    assert get(reg, "username/", token=None).status_code == 403
    assert get(reg, "users/", token=None).status_code == 403
    assert get(reg, "users/1/", token=None).status_code == 403
    users = get(reg, "users/", username="admin").json()
    assert [u["username"] for u in users["results"]] == ["admin"]


def test_public_url_is_used_in_links(registry_server):
    reg = registry_server(public_url="https://registry.example.org/")
    ns = make(reg, "namespace", {"name": "ns"})
    assert ns["url"].startswith("https://registry.example.org/api/namespace/")
    assert requests.get(reg.api_url).json()["object"] == "https://registry.example.org/api/object/"


def test_tokens_are_not_logged(reg, caplog):
    caplog.set_level(logging.DEBUG)
    make(reg, "namespace", {"name": "n"})
    post(reg, "namespace", {"name": "n"})
    get(reg, "username/")
    assert reg.token not in caplog.text


# ------------------------------------------------------------------ blobs
def presign(reg, sha1, token=""):
    return requests.post(f"{reg.api_url}data/{sha1}", headers=reg.headers(token))


def test_blob_upload_download_and_range(reg):
    body = bytes(range(256)) * 1000
    sha1 = hashlib.sha1(body).hexdigest()
    assert presign(reg, sha1, token=None).status_code == 403
    first = presign(reg, sha1)
    assert first.status_code == 201
    info = first.json()
    assert info["storage_root"] == f"{reg.url}/data/"
    assert info["path"] == sha1
    assert info["exists"] is False
    put = requests.put(info["url"], data=body)  # presigned: no token needed
    assert put.status_code == 201
    assert (reg.blob_dir / sha1[:2] / sha1).read_bytes() == body
    again = presign(reg, sha1)
    assert again.status_code == 200 and again.json()["exists"] is True
    # not yet registered as a public file: only token holders may read it
    assert requests.get(info["storage_root"] + info["path"]).status_code == 403
    private = requests.get(info["storage_root"] + info["path"], headers=reg.headers())
    assert private.status_code == 200 and private.content == body
    root = reg.store.create("storage_root", {"root": info["storage_root"]})
    reg.store.create(
        "storage_location", {"path": sha1, "hash": sha1, "public": True, "storage_root": root["id"]}
    )
    whole = requests.get(info["storage_root"] + info["path"])
    assert whole.status_code == 200 and whole.content == body
    part = requests.get(f"{reg.url}/data/{sha1}", headers={"Range": "bytes=1000-"})
    assert part.status_code == 206
    assert part.content == body[1000:]
    assert requests.get(f"{reg.url}/data/{'0' * 40}").status_code == 404
    secret = reg.blob_dir / ".secret"
    assert secret.stat().st_mode & 0o777 == 0o600


def test_blob_upload_rejects_wrong_hash_and_bad_signature(reg):
    sha1 = hashlib.sha1(b"expected").hexdigest()
    info = presign(reg, sha1).json()
    wrong = requests.put(info["url"], data=b"something else")
    assert wrong.status_code == 400
    folder = reg.blob_dir / sha1[:2]
    assert not folder.exists() or list(folder.iterdir()) == []
    tampered = info["url"].replace("signature=", "signature=0")
    assert requests.put(tampered, data=b"expected").status_code == 403
    unsigned = f"{reg.url}/data/{sha1}"
    assert requests.put(unsigned, data=b"expected").status_code == 403
    assert requests.put(info["url"], data=b"expected").status_code == 201


# ------------------------------------------------------- data-pipeline-api
@needs_dpa
def test_data_pipeline_api_utils(reg, tmp_path):
    url, token = reg.api_url, reg.token
    root = fdp_utils.post_storage_root(url, {"root": str(tmp_path), "local": True}, token)
    assert root["root"] == f"file://{tmp_path}/"
    same = fdp_utils.post_storage_root(url, {"root": str(tmp_path), "local": True}, token)
    assert same["url"] == root["url"]
    web = fdp_utils.post_storage_root(url, {"root": "https://github.com", "local": False}, token)
    assert fdp_utils.post_storage_root(url, {"root": "https://github.com"}, token) == web
    loc_data = {"path": "a/b.csv", "hash": "ab" * 20, "public": True, "storage_root": root["url"]}
    loc = fdp_utils.post_entry(url, "storage_location", dict(loc_data), token)
    assert fdp_utils.post_entry(url, "storage_location", dict(loc_data), token)["url"] == loc["url"]
    ftype = fdp_utils.post_file_type(url, {"name": "CSV file", "extension": "csv"}, token)
    assert (
        fdp_utils.post_file_type(url, {"name": "CSV file", "extension": "csv"}, token)["url"]
        == ftype["url"]
    )
    assert (
        fdp_utils.post_entry(url, "file_type", {"name": "CSV file", "extension": "csv"}, token)[
            "url"
        ]
        == ftype["url"]
    )
    ns = fdp_utils.post_entry(url, "namespace", {"name": "SCRC"}, token)
    assert fdp_utils.post_entry(url, "namespace", {"name": "SCRC"}, token)["url"] == ns["url"]
    obj = fdp_utils.post_entry(
        url, "object", {"storage_location": loc["url"], "file_type": ftype["url"]}, token
    )
    comp = fdp_utils.post_entry(
        url, "object_component", {"object": obj["url"], "name": "part"}, token
    )
    again = fdp_utils.post_entry(
        url, "object_component", {"object": obj["url"], "name": "part"}, token
    )
    assert again["url"] == comp["url"]
    whole = fdp_utils.get_entry(
        url, "object_component", {"object": fdp_utils.extract_id(obj["url"]), "whole_object": True}
    )
    assert whole[0]["url"] == obj["components"][0]
    fetched = fdp_utils.get_entity(url, "object", int(fdp_utils.extract_id(obj["url"])))
    assert fetched["url"] == obj["url"]
    users = fdp_utils.get_entry(url, "users", {"username": "admin"}, token=token)
    assert users[0]["username"] == "admin"
    with pytest.raises(ValueError, match="403"):
        fdp_utils.post_entry(url, "namespace", {"name": "x"}, "bad-token")


@needs_dpa
def test_data_pipeline_api_initialise_and_finalise(reg, tmp_path):
    """A whole script run of the language API against the server."""
    store_dir = tmp_path / "store"
    (store_dir / "jobs").mkdir(parents=True)
    author = make(reg, "author", {"name": "Ada", "identifier": "https://orcid.org/0000"})
    make(reg, "user_author", {"user": f"{reg.url}/api/users/1/", "author": author["url"]})
    config = store_dir / "jobs" / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_metadata": {
                    "description": "test run",
                    "local_data_registry_url": reg.api_url,
                    "write_data_store": f"{store_dir}/",
                    "default_output_namespace": "testing",
                    "default_input_namespace": "testing",
                    "latest_commit": "0123456789abcdef0123456789abcdef01234567",
                    "remote_repo": "https://github.com/example/model",
                    "public": True,
                },
                "write": [
                    {
                        "data_product": "out/table",
                        "description": "a table",
                        "file_type": "csv",
                        "use": {"version": "0.0.1"},
                    }
                ],
            }
        )
    )
    script = store_dir / "jobs" / "script.py"
    script.write_text("print('hi')\n")
    handle = pipeline.initialise(reg.token, str(config), str(script))
    path = link.link_write(handle, "out/table")
    Path(path).write_text("a,b\n1,2\n")
    pipeline.finalise(reg.token, handle)
    run = requests.get(handle["code_run"]).json()
    assert len(run["outputs"]) == 1
    product = get(reg, "data_product/", name="out/table", version="0.0.1").json()["results"][0]
    obj = requests.get(product["object"]).json()
    assert run["outputs"] == obj["components"]
    loc = requests.get(obj["storage_location"]).json()
    assert loc["hash"] == hashlib.sha1(b"a,b\n1,2\n").hexdigest()
    assert (store_dir / loc["path"]).is_file()
    # A second run with the same config reuses the script location and file types.
    handle2 = pipeline.initialise(reg.token, str(config), str(script))
    assert handle2["submission_script"] != handle["submission_script"]


# -------------------------------------------------------------------- CLI
def test_cli_registry_commands(tmp_path, monkeypatch, capsys):
    from fdp_tasks.cli.main import main

    monkeypatch.setenv("FDP_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["registry", "status"]) == 3
    assert main(["registry", "token"]) == 0
    out = capsys.readouterr().out
    token_file = Path(out.strip().splitlines()[-1])
    token = token_file.read_text().strip()
    assert token not in out
    assert token_file.stat().st_mode & 0o777 == 0o600
    assert main(["registry", "token", "--show"]) == 0
    assert token in capsys.readouterr().out
    try:
        assert main(["registry", "start", "--port", "0"]) == 0
        api = capsys.readouterr().out.strip()
        assert api.endswith("/api/")
        me = requests.get(f"{api}username/", headers={"Authorization": f"token {token}"})
        assert me.json()["username"] == "admin"
        assert main(["registry", "status"]) == 0
        assert api in capsys.readouterr().out
    finally:
        assert main(["registry", "stop"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert main(["registry", "status"]) == 3
