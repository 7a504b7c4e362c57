"""Security of a shared registry: what one token holder cannot do to another's data.

Each section is one point of the shared-registry contract, exercised over HTTP against a real
served registry with two users, each with their own token.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import select
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from support import REPO, CountingRegistry, Env, producer, sha1

from fdp_tasks.store.tokens import working_token


def call(reg: Any, method: str, path: str, token: str | None, **kwargs: Any) -> requests.Response:
    """One request to the registry's API as the holder of `token` (None: anonymous)."""
    headers = {"Accept": "application/json; version=1.0.0"}
    if token:
        headers["Authorization"] = f"token {token}"
    return requests.request(method, f"{reg.api_url}{path}", headers=headers, timeout=30, **kwargs)


def made(reg: Any, type_name: str, data: dict[str, Any], token: str) -> dict[str, Any]:
    resp = call(reg, "POST", f"{type_name}/", token, json=data)
    assert resp.status_code == 201, resp.text
    return resp.json()


def upload(reg: Any, body: bytes, token: str) -> dict[str, Any]:
    """Presign and PUT `body` as the holder of `token`; the presign answer."""
    digest = hashlib.sha1(body).hexdigest()
    info = call(reg, "POST", f"data/{digest}", token).json()
    if not info["exists"]:
        assert requests.put(info["url"], data=body, timeout=30).status_code == 201
    return info


def published(
    reg: Any, token: str, namespace: str, name: str, version: str, body: bytes, public: bool = True
) -> dict[str, Any]:
    """A data product `namespace:name@version` holding `body`, uploaded and recorded as the
    holder of `token` (the namespace is made if it is not there)."""
    info = upload(reg, body, token)
    root = call(reg, "POST", "storage_root/", token, json={"root": info["storage_root"]})
    root_url = root.json().get("url") or root.json().get("existing")
    location = made(
        reg,
        "storage_location",
        {"path": info["path"], "hash": info["path"], "public": public, "storage_root": root_url},
        token,
    )
    obj = made(reg, "object", {"storage_location": location["url"]}, token)
    found = call(reg, "GET", "namespace/", token, params={"name": namespace}).json()["results"]
    ns = found[0] if found else made(reg, "namespace", {"name": namespace}, token)
    product = {"object": obj["url"], "namespace": ns["url"], "name": name, "version": version}
    return made(reg, "data_product", product, token)


def detail_line(resp: requests.Response) -> str:
    """The one-line reason of a refusal."""
    body = resp.json()
    text = body.get("detail") if "detail" in body else next(iter(body.values()))[0]
    assert isinstance(text, str) and "\n" not in text, body
    return text


@pytest.fixture
def shared(registry_server, registry_database: str):
    """A served registry with two users besides admin, alice and bob, each with a token; on
    each database backend in turn."""
    reg = registry_server(database=registry_database)
    reg.alice = working_token(reg.store, "alice")
    reg.bob = working_token(reg.store, "bob")
    return reg


# --- 5. Namespaces have owners ------------------------------------------------------------
def test_only_members_publish_in_a_namespace(shared, tmp_path: Path) -> None:
    reg = shared
    first = published(reg, reg.alice, "lab", "in/q", "1.0.0", b"alice's bytes\n")
    ns_url = first["namespace"]
    ns_id = ns_url.rstrip("/").rsplit("/", 1)[1]
    # bob may not publish the next version of alice's product, nor describe it
    obj = made(reg, "object", {}, reg.bob)
    next_version = {"object": obj["url"], "namespace": ns_url, "name": "in/q", "version": "1.0.1"}
    refused = call(reg, "POST", "data_product/", reg.bob, json=next_version)
    assert refused.status_code == 403
    assert "not a member of namespace lab" in detail_line(refused)
    external = {"data_product": first["url"], "title": "q", "identifier": "https://x.org/q"}
    assert call(reg, "POST", "external_object/", reg.bob, json=external).status_code == 403
    assert call(reg, "GET", "data_product/", None, params={"version": "1.0.1"}).json()["count"] == 0
    # nor make himself a member
    members = f"namespace/{ns_id}/members/"
    assert call(reg, "POST", members, reg.bob, json={"username": "bob"}).status_code == 403
    assert call(reg, "GET", members, reg.bob).json()["members"] == ["alice"]
    # a member adds him; then he may
    added = call(reg, "POST", members, reg.alice, json={"username": "bob"})
    assert added.status_code == 201 and added.json()["members"] == ["alice", "bob"]
    assert call(reg, "POST", "data_product/", reg.bob, json=next_version).status_code == 201
    assert call(reg, "POST", "external_object/", reg.bob, json=external).status_code == 201
    # the operator takes it away again from the command line
    env = Env(tmp_path, "operator")
    db = str(reg.store.url)
    listed = env.fdp("registry", "members", "lab", "--db", db)
    assert listed.stdout.split() == ["alice", "bob"]
    assert env.fdp("registry", "members", "lab", "--db", db, "--remove", "bob").stdout.split() == [
        "alice"
    ]
    again = {**next_version, "version": "1.0.2", "object": made(reg, "object", {}, reg.bob)["url"]}
    assert call(reg, "POST", "data_product/", reg.bob, json=again).status_code == 403
    unknown = env.fdp("registry", "members", "lab", "--db", db, "--add", "carol", check=False)
    assert unknown.returncode != 0 and "no user 'carol'" in unknown.stderr
    # a namespace of his own is his, and admin may write anywhere
    made(reg, "namespace", {"name": "bobs"}, reg.bob)
    assert published(reg, reg.bob, "bobs", "out/r", "0.1.0", b"bob's bytes\n")
    assert published(reg, reg.token, "lab", "in/q", "2.0.0", b"admin's bytes\n")


def test_a_registry_made_before_keeps_each_namespace_and_file_for_its_maker(
    registry_server, tmp_path: Path
) -> None:
    """Namespaces and private files recorded before owners existed stay their makers'."""
    secret = b"recorded privately, long ago\n"
    digest = hashlib.sha1(secret).hexdigest()
    base = tmp_path / "registry"
    (base / "blobs" / digest[:2]).mkdir(parents=True)
    (base / "blobs" / digest[:2] / digest).write_bytes(secret)
    old_schema = REPO / "tests" / "data" / "registry" / "schema-0001.sqlite.sql"
    with sqlite3.connect(base / "registry.db") as conn:
        conn.executescript(old_schema.read_text(encoding="utf-8"))
        conn.executescript(
            """
            INSERT INTO users (id, username) VALUES (1, 'admin'), (2, 'alice'), (3, 'bob');
            INSERT INTO namespace (id, name, last_updated, updated_by_id)
                VALUES (1, 'lab', '2021-09-20T12:00:00+00:00', 2);
            INSERT INTO storage_root (id, root, local, last_updated, updated_by_id)
                VALUES (1, 'https://old.example.org/data/', 0, '2021-09-20T12:00:00+00:00', 2);
            """
        )
        conn.execute(
            "INSERT INTO storage_location (id, path, hash, public, storage_root_id, "
            "last_updated, updated_by_id) VALUES (1, ?, ?, 0, 1, '2021-09-20T12:00:01Z', 2)",
            (digest, digest),
        )
    reg = registry_server()  # the same folder: the server upgrades this registry
    alice, bob = (working_token(reg.store, user) for user in ("alice", "bob"))
    assert published(reg, alice, "lab", "in/q", "1.0.0", b"alice's\n")
    obj = made(reg, "object", {}, bob)
    lab = call(reg, "GET", "namespace/", None, params={"name": "lab"}).json()["results"][0]
    product = {"object": obj["url"], "namespace": lab["url"], "name": "in/q", "version": "9.0.0"}
    assert call(reg, "POST", "data_product/", bob, json=product).status_code == 403
    file_url = f"{reg.url}/data/{digest}"
    assert requests.get(file_url, headers=reg.headers(alice), timeout=30).content == secret
    assert requests.get(file_url, headers=reg.headers(bob), timeout=30).status_code == 404


TAMPER_TASK = """

def task_tamper():
    \"\"\"change the registered input in the data store, after its checks and before the job\"\"\"
    import os
    from pathlib import Path

    def alter():
        for path in Path(os.environ["FDP_HOME"], "data", "lab", "inputs", "seed").glob("*"):
            path.write_text("seed-value, quietly changed\\n", encoding="utf-8")

    return {"actions": [alter], "verbosity": 2}
"""


def test_a_job_checks_every_input_file_before_the_script_starts(tmp_path: Path) -> None:
    env = producer(tmp_path, outputs=1)
    # the project's own dodo.py gets a task that alters the input once register and pull
    # have found it intact: only the job's own check stands between it and the script
    with open(env.project / "dodo.py", "a", encoding="utf-8") as dodo:
        dodo.write(TAMPER_TASK)
    result = env.doit("register", "pull", "tamper", "job", check=False)
    assert result.executed[-2:] == ["tamper", "job"], result.output
    [seed] = env.data_store.glob("lab/inputs/seed/*")
    recorded = hashlib.sha1(b"seed-value\n").hexdigest()
    assert sha1(seed) != recorded
    assert result.returncode != 0
    [line] = [x for x in result.output.splitlines() if x.startswith("fdp: error: ")]
    assert str(seed) in line and recorded in line and "altered" in line
    assert not list(env.data_store.glob("lab/results/*")), "the script ran"


# --- 6. Published data is immutable through the API --------------------------------------
def test_published_data_is_never_repointed_or_renumbered(shared) -> None:
    reg = shared
    product = published(reg, reg.alice, "lab", "in/q", "1.0.0", b"the published bytes\n")
    other = published(reg, reg.alice, "lab", "in/other", "1.0.0", b"some other bytes\n")
    url = product["url"].removeprefix(reg.api_url)
    for change in (
        {"object": other["object"]},
        {"version": "1.0.1"},
        {"version": "2.0.0"},
        {"name": "in/renamed"},
        {"namespace": made(reg, "namespace", {"name": "elsewhere"}, reg.alice)["url"]},
    ):
        for token in (reg.alice, reg.token):  # its writer and admin alike
            refused = call(reg, "PATCH", url, token, json=change)
            assert refused.status_code == 400, (change, refused.text)
            assert "never changes" in detail_line(refused)
            whole = {**product, **change}
            assert call(reg, "PUT", url, token, json=whole).status_code == 400
    assert call(reg, "GET", url, None).json() == product
    # the same values again change nothing, and are no error (clients PUT whole records)
    same = {k: product[k] for k in ("object", "namespace", "name", "version")}
    assert call(reg, "PUT", url, reg.alice, json=same).status_code == 200
    # an object or a storage location is not rewritten over the API at all
    obj_url = product["object"].removeprefix(reg.api_url)
    location = call(reg, "GET", obj_url, None).json()["storage_location"]
    elsewhere = call(reg, "GET", other["object"].removeprefix(reg.api_url), None).json()
    repoint = {"storage_location": elsewhere["storage_location"]}
    assert call(reg, "PATCH", obj_url, reg.alice, json=repoint).status_code in (400, 403, 405)
    assert call(reg, "GET", obj_url, None).json()["storage_location"] == location
    loc_url = location.removeprefix(reg.api_url)
    rehash = {"hash": "0" * 40, "path": "elsewhere"}
    assert call(reg, "PATCH", loc_url, reg.alice, json=rehash).status_code in (400, 403, 405)
    recorded = call(reg, "GET", loc_url, None).json()["hash"]
    assert recorded == hashlib.sha1(b"the published bytes\n").hexdigest()


# --- 7. Private files stay private ---------------------------------------------------------
def test_private_files_are_served_only_to_the_users_who_own_them(shared) -> None:
    reg = shared
    secret = b"alice's unpublished results\n"
    digest = hashlib.sha1(secret).hexdigest()
    published(reg, reg.alice, "lab", "in/secret", "1.0.0", secret, public=False)
    file_url = f"{reg.url}/data/{digest}"
    assert requests.get(file_url, timeout=30).status_code == 403  # anonymous
    assert requests.get(file_url, headers=reg.headers(reg.bob), timeout=30).status_code == 404
    mine = requests.get(file_url, headers=reg.headers(reg.alice), timeout=30)
    assert mine.status_code == 200 and mine.content == secret
    # bob knows the SHA-1 (token holders list private locations): recording a location of
    # his own for it, private or public, opens nothing
    listed = call(reg, "GET", "storage_location/", reg.bob, params={"public": "false"})
    assert [loc["hash"] for loc in listed.json()["results"]] == [digest]
    root = listed.json()["results"][0]["storage_root"]
    his_root = made(reg, "storage_root", {"root": "https://bob.example.org/"}, reg.bob)["url"]
    for public, where in ((False, his_root), (True, root)):
        location = {"path": digest, "hash": digest, "public": public, "storage_root": where}
        assert call(reg, "POST", "storage_location/", reg.bob, json=location).status_code == 201
        assert requests.get(file_url, timeout=30).status_code == 403
        assert requests.get(file_url, headers=reg.headers(reg.bob), timeout=30).status_code == 404
    # nor does asking to upload them: he is told to send the bytes, which he does not hold
    assert call(reg, "POST", f"data/{digest}", reg.bob).json()["exists"] is False
    # listing private locations needs a token; anonymous listings show public ones only
    anonymous = call(reg, "GET", "storage_location/", None, params={"public": "false"})
    assert anonymous.status_code == 403 and "token" in detail_line(anonymous)
    everything = call(reg, "GET", "storage_location/", None).json()["results"]
    assert [loc["public"] for loc in everything] == [True]  # bob's public record only
    # someone who does hold the same bytes sends them, and may publish them (bob's public
    # record, there first, is theirs as well: recording it again answers 409)
    carol = working_token(reg.store, "carol")
    assert upload(reg, secret, carol)["exists"] is False
    location = {"path": digest, "hash": digest, "public": True, "storage_root": root}
    assert call(reg, "POST", "storage_location/", carol, json=location).status_code == 409
    assert requests.get(file_url, timeout=30).content == secret


def bundle(reg: Any, hashes: list[str], token: str | None) -> tuple[int, dict[str, bytes], bool]:
    """`POST /data/` for these files as the holder of `token`: the status, the files sent
    (SHA-1 -> bytes) and whether the answer says it ended."""
    headers = reg.headers(token) if token else {}
    resp = requests.post(f"{reg.url}/data/", json={"hashes": hashes}, headers=headers, timeout=30)
    body, sent, at = resp.content, {}, 0
    while resp.status_code == 200 and at < len(body):
        line_end = body.index(b"\n", at)
        words = body[at:line_end].decode().split()
        if words == ["end"]:
            return resp.status_code, sent, line_end + 1 == len(body)
        sha, size = words[0], int(words[1])
        sent[sha] = body[line_end + 1 : line_end + 1 + size]
        at = line_end + 1 + size
    return resp.status_code, sent, False


def test_a_bundle_of_files_holds_only_what_each_reader_may_read(shared) -> None:
    reg = shared
    secret, shared_text = b"alice's unpublished results\n", b"a published table\n"
    private, public = (hashlib.sha1(b).hexdigest() for b in (secret, shared_text))
    published(reg, reg.alice, "lab", "in/secret", "1.0.0", secret, public=False)
    published(reg, reg.alice, "lab", "out/table", "1.0.0", shared_text)
    unknown = hashlib.sha1(b"nobody sent this").hexdigest()
    asked = [private, public, unknown]
    for token in (None, reg.bob):  # as GET /data/<sha1> answers them: the public file only
        assert bundle(reg, asked, token) == (200, {public: shared_text}, True)
    assert bundle(reg, asked, reg.alice) == (200, {private: secret, public: shared_text}, True)
    # the server says it sends bundles, and refuses a request that is not a list of SHA-1s
    answer = requests.get(f"{reg.api_url}namespace/", timeout=30)
    assert answer.headers.get("FDP-Data-Bundles") == "1"
    for bad in ({"hashes": "x"}, {"hashes": ["../etc/passwd"]}, {"hashes": []}, [public]):
        refused = requests.post(f"{reg.url}/data/", json=bad, timeout=30)
        assert refused.status_code == 400, refused.text


def test_a_bundle_sent_keeps_only_files_that_hash_right_and_needs_a_token(shared) -> None:
    reg = shared
    good, lie = b"a good table\n", b"bytes that are not what they claim\n"
    good_sha = hashlib.sha1(good).hexdigest()
    claimed = hashlib.sha1(b"something else").hexdigest()
    body = (
        f"{claimed} {len(lie)}\n".encode() + lie + f"{good_sha} {len(good)}\n".encode() + good
    )
    body += b"end\n"
    kind = {"Content-Type": "application/x-fdp-bundle"}
    url = f"{reg.url}/data/"
    anonymous = requests.put(url, data=body, headers=kind, timeout=30)
    assert anonymous.status_code in (401, 403)
    assert not (reg.blob_dir / good_sha[:2] / good_sha).exists()

    sent = requests.put(url, data=body, headers={**reg.headers(reg.alice), **kind}, timeout=30)

    assert sent.status_code == 200, sent.text
    answer = sent.json()
    assert answer["stored"] == [good_sha] and list(answer["refused"]) == [claimed]
    assert (reg.blob_dir / good_sha[:2] / good_sha).read_bytes() == good
    assert not (reg.blob_dir / claimed[:2] / claimed).exists()
    # alice sent the bytes: she may count them as there; bob, who did not, may not
    assert call(reg, "POST", f"data/{good_sha}", reg.alice).json()["exists"] is True
    assert call(reg, "POST", f"data/{good_sha}", reg.bob).json()["exists"] is False
    too_big = f"{good_sha} {10**9}\n".encode()
    as_alice = {**reg.headers(reg.alice), **kind}
    refused = requests.put(url, data=too_big, headers=as_alice, timeout=30)
    assert refused.status_code == 400 and "at most" in detail_line(refused)


def test_a_pull_takes_no_file_from_a_bundle_that_does_not_hash_right(
    tmp_path: Path, registry_server: Any
) -> None:
    live = registry_server()
    env = producer(tmp_path, outputs=3)
    env.doit()
    env.add_remote(live.api_url, live.token_file)
    env.fdp("push")
    good = env.data_store / "lab/results/part01/0.0.1.csv"
    digest = sha1(good)
    blob = live.blob_dir / digest[:2] / digest
    blob.write_bytes(b"not what was sent\n")  # the server's disk went bad
    colleague = Env(tmp_path, "colleague")
    colleague.read_config(["results/*"], "lab")
    colleague.add_remote(live.api_url, None)

    pulled = colleague.fdp("pull", check=False)

    assert pulled.returncode != 0
    assert "part01" in pulled.output and "SHA-1" in pulled.output, pulled.output
    assert not (colleague.data_store / "lab/results/part01/0.0.1.csv").exists()
    for other in ("part00", "part02"):
        mine = env.data_store / f"lab/results/{other}/0.0.1.csv"
        assert sha1(colleague.data_store / f"lab/results/{other}/0.0.1.csv") == sha1(mine)


# --- 10. A loser leaves nothing -----------------------------------------------------------
class HoldProductCreates:
    """WSGI middleware: each POST of a data product waits for the other pusher's, so both
    pushes pass their checks before either creates one: a real race, every time."""

    def __init__(self, app: Any):
        self.app = app
        self.barrier = threading.Barrier(2, timeout=60)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ.get("PATH_INFO", "").rstrip("/")
        if environ["REQUEST_METHOD"] == "POST" and path == "/api/data_product":
            # once broken (the other push is over) there is nothing left to race with
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait()
        return self.app(environ, start_response)


def leftovers(store: Any, blob_dir: Path, by: int | None = None) -> list[str]:
    """What no data product needs: code runs none of whose outputs is a data product's,
    objects nothing refers to, storage locations no object or external object names (those
    written by the user with id `by`, if given), and files no storage location names."""
    products = {p["object"] for p in store.find("data_product")}
    component_object = {c["id"]: c["object"] for c in store.find("object_component")}
    needed = set(products)
    found = []
    for run in store.find("code_run"):
        outputs = {component_object[c] for c in run["outputs"]}
        if outputs and not outputs & products:
            found.append(f"code_run {run['uuid']}")
            continue
        needed |= outputs | {component_object[c] for c in run["inputs"]}
        needed |= {run[k] for k in ("code_repo", "model_config", "submission_script") if run[k]}
    objects = store.find("object")
    found += [f"object {o['id']}" for o in objects if o["id"] not in needed]
    named = {o["storage_location"] for o in objects if o["id"] in needed} | {
        e["original_store"] for e in store.find("external_object")
    }
    locations = store.find("storage_location")
    found += [f"storage_location {loc['id']}" for loc in locations if loc["id"] not in named]
    hashes = {loc["hash"] for loc in locations if loc["id"] in named}
    if by is not None:
        writers = {
            f"{t} {r['uuid' if t == 'code_run' else 'id']}": r["updated_by"]
            for t in ("code_run", "object", "storage_location")
            for r in store.find(t)
        }
        found = [what for what in found if writers[what] == by]
    found += [
        f"file {f.name}" for f in blob_dir.glob("??/*") if f.is_file() and f.name not in hashes
    ]
    return found


def test_a_push_that_loses_a_race_leaves_nothing_behind(tmp_path: Path) -> None:
    server = CountingRegistry(tmp_path / "server", wrap=HoldProductCreates)
    try:
        tokens = {}
        for user in ("alice", "bob"):
            tokens[user] = tmp_path / f"{user}.token"
            working_token(server.store, user, file=tokens[user])
        lab = made(server, "namespace", {"name": "lab"}, server.token)
        members = lab["url"].removeprefix(server.api_url) + "members/"
        for user in tokens:
            assert call(server, "POST", members, server.token, json={"username": user}).ok
        # two results under one name, with other bytes: both pushed at once
        envs = {
            user: producer(tmp_path, outputs=1, name=user, args=repeat)
            for user, repeat in (("alice", "1"), ("bob", "2"))
        }
        results: dict[str, Any] = {}
        for user, env in envs.items():
            env.fdp("run")
            env.add_remote(server.api_url, tokens[user])

        def push(user: str) -> None:
            results[user] = envs[user].fdp("push", check=False)

        threads = [threading.Thread(target=push, args=(user,)) for user in envs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
        codes = {user: result.returncode for user, result in results.items()}
        assert sorted(codes.values()) == [0, 3], {u: r.output for u, r in results.items()}
        loser = next(user for user, code in codes.items() if code == 3)
        assert "different content" in results[loser].stderr
        [lost_file] = envs[loser].data_store.glob("lab/results/part00/*")
        lost = sha1(lost_file)
        assert server.store.find("storage_location", {"hash": lost}) == []
        assert not (server.db.parent / "blobs" / lost[:2] / lost).exists()
        # nothing of the loser's: (the winner's push may leave the source location of an
        # external object another push recorded first: `fdp registry sweep` takes that)
        loser_id = server.store.find_one("users", {"username": loser})["id"]
        assert leftovers(server.store, server.db.parent / "blobs", by=loser_id) == []
        assert server.store.count("code_run") == 1
        [product] = server.store.find("data_product", {"name": "results/part00"})
        winner = next(user for user in envs if user != loser)
        [kept] = envs[winner].data_store.glob("lab/results/part00/*")
        served = requests.get(f"{server.api_url[: -len('api/')]}data/{sha1(kept)}", timeout=30)
        assert served.status_code == 200 and served.content == kept.read_bytes()
    finally:
        server.stop()


def test_a_sweep_removes_what_a_vanished_push_left(shared, tmp_path: Path) -> None:
    reg = shared
    kept = published(reg, reg.alice, "lab", "in/q", "1.0.0", b"alice's finished push\n")
    # bob's push died after its records, before its data product
    info = upload(reg, b"bob's half-pushed result\n", reg.bob)
    script = upload(reg, b"bob's script\n", reg.bob)
    root = call(reg, "POST", "storage_root/", reg.bob, json={"root": info["storage_root"]})
    assert root.status_code == 409
    objects = []
    for what in (info, script):
        location = {"path": what["path"], "hash": what["path"], "storage_root": 1}
        loc = made(reg, "storage_location", location, reg.bob)
        objects.append(made(reg, "object", {"storage_location": loc["url"]}, reg.bob))
    run = {
        "run_date": "2026-01-01T00:00:00Z",
        "description": "a push that never finished",
        "submission_script": objects[1]["url"],
        "outputs": objects[0]["components"],
    }
    made(reg, "code_run", run, reg.bob)
    left = leftovers(reg.store, reg.blob_dir)
    assert len(left) == 7, left  # a run, 2 objects, their 2 locations and 2 files
    env = Env(tmp_path, "operator")
    where = ["--db", str(reg.store.url), "--blobs", str(reg.blob_dir)]
    fresh = env.fdp("registry", "sweep", "--older-than", "1h", *where)
    assert "swept no records and 0 file(s)" in fresh.stdout  # it may still be under way
    assert leftovers(reg.store, reg.blob_dir) == left
    swept = env.fdp("registry", "sweep", "--older-than", "0s", *where)
    assert "1 code_run" in swept.stdout and "2 object" in swept.stdout
    assert leftovers(reg.store, reg.blob_dir) == []
    for what in (info, script):
        assert not (reg.blob_dir / what["path"][:2] / what["path"]).exists()
    assert call(reg, "GET", kept["url"].removeprefix(reg.api_url), None).json() == kept
    digest = hashlib.sha1(b"alice's finished push\n").hexdigest()
    assert requests.get(f"{reg.url}/data/{digest}", timeout=30).status_code == 200
    bad = env.fdp("registry", "sweep", "--older-than", "soon", *where, check=False)
    assert bad.returncode == 2 and "--older-than" in bad.stderr


def test_a_sweep_removes_resumable_uploads_nobody_continued(
    registry_server, tmp_path: Path
) -> None:
    reg = registry_server()
    bob = working_token(reg.store, "bob")
    size = 64
    parts, urls = {}, {}
    for name in ("abandoned", "under way"):
        body = os.urandom(size)
        sha = hashlib.sha1(body).hexdigest()
        info = call(reg, "POST", f"data/{sha}", bob).json()
        assert info["resumable"] and info["offset"] == 0
        first = requests.put(
            info["url"], data=body[:10], headers={"Content-Range": f"bytes 0-9/{size}"}, timeout=30
        )
        assert first.status_code == 308 and first.headers["Upload-Offset"] == "10"
        [parts[name]] = (reg.blob_dir / ".uploads").glob(f"*-{sha}.part")
        urls[name] = info["url"]
    two_hours_ago = time.time() - 7200
    os.utime(parts["abandoned"], (two_hours_ago, two_hours_ago))
    env = Env(tmp_path, "operator")
    where = ["--db", str(reg.store.url), "--blobs", str(reg.blob_dir)]
    swept = env.fdp("registry", "sweep", "--older-than", "1h", *where)
    assert "1 unfinished upload(s)" in swept.stdout, swept.stdout
    assert not parts["abandoned"].exists() and parts["under way"].is_file()
    assert [p.name for p in (reg.blob_dir / ".uploads").glob("*.lock")] == [
        parts["under way"].with_suffix(".lock").name
    ]
    # the client that comes back after all starts again from zero; the other continues
    for name, held in (("abandoned", "0"), ("under way", "10")):
        asked = requests.put(urls[name], headers={"Content-Range": f"bytes */{size}"}, timeout=30)
        assert asked.headers["Upload-Offset"] == held, name
    again = env.fdp("registry", "sweep", "--older-than", "1h", *where)
    assert "unfinished" not in again.stdout


# --- 8. Bounded requests ------------------------------------------------------------------
API_LIMIT = 4 << 20  # the server's default limit for API request bodies
STREAMED = 400 << 20


def start_registry(env: Env, db: Path, *options: str, tmpdir: Path | None = None) -> str:
    """`fdp registry start` on port 0 for the database `db`, its temporary files (waitress
    spools request bodies there) in `tmpdir`; the API URL."""
    extra = {"TMPDIR": str(tmpdir)} if tmpdir else {}
    proc = subprocess.run(
        [sys.executable, "-m", "fdp_tasks.cli.main", "registry", "start", "--db", str(db)]
        + ["--port", "0", *options],
        cwd=env.project,
        env={**env.environ, **extra},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()[0]


def used_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def stream_post(api_url: str, path: str, spool: Path, chunked: bool) -> tuple[bytes, int, int]:
    """POST a 400 MB body to `path` anonymously, as a chunked stream or with its length
    declared, as fast as the server reads it, watching the file system `spool`: the answer's
    head, the bytes sent, and the most of `spool` in use meanwhile."""
    parts = urlsplit(api_url)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {STREAMED}"
    head = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    piece = b"[" * 65536
    frame = b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece
    answer, sent, peak, pending = b"", 0, 0, b""
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(f"{head}{framing}\r\n\r\n".encode("ascii"))
        sock.setblocking(False)
        while sent < STREAMED and b"\r\n\r\n" not in answer:
            # a loaded machine may answer late: silence for 30 s is a server that stopped
            readable, writable, _ = select.select([sock], [sock], [], 30)
            peak = max(peak, used_bytes(spool))
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
            elif writable:
                pending = pending or frame
                try:
                    count = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += count
                pending = pending[count:]
            else:
                break  # the server neither reads nor answers
    return answer, sent, peak


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_huge_anonymous_body_is_refused_before_it_fills_a_disk(
    tmp_path: Path, mounts: Any, chunked: bool
) -> None:
    """waitress spools request bodies to its temporary folder before the app sees them: here
    an 8 MiB tmpfs, which a 400 MB body would fill. It is refused with 413, with at most the
    API limit (and the last read's few KiB) ever written there."""
    spool = mounts.tmpfs(tmp_path / "spool", "8m")
    env = Env(tmp_path)
    db = tmp_path / "registry" / "registry.db"
    api = start_registry(env, db, tmpdir=spool)
    try:
        answer, sent, peak = stream_post(api, "/api/namespace/", spool, chunked)
    finally:
        env.fdp("registry", "stop", "--db", str(db))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert sent < 64 << 20
    assert peak <= API_LIMIT + (64 << 10), f"{peak} bytes of the body written to disk"


def test_only_a_signed_upload_may_be_larger_than_the_api_limit(registry_server: Any) -> None:
    reg = registry_server()
    big = b"x" * (API_LIMIT + (1 << 20))
    too_big = call(reg, "POST", "namespace/", reg.token, data=b"[" + b" " * len(big) + b"]")
    assert too_big.status_code == 413
    digest = hashlib.sha1(big).hexdigest()
    info = call(reg, "POST", f"data/{digest}/", reg.token).json()
    assert requests.put(info["url"], data=big, timeout=60).status_code == 201
    assert (
        requests.get(f"{reg.url}/data/{digest}", headers=reg.headers(), timeout=60).content == big
    )
    # a bad signature does not open the large limit
    forged = info["url"].replace("signature=", "signature=0")
    assert requests.put(forged, data=big, timeout=60).status_code == 413


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")


HUGE = "99999999999999999999999"
BAD_REQUESTS = {
    "huge id": ("GET", f"object/{HUGE}/", None, 404),
    "id past 64 bits": ("GET", f"users/{2**63}/", None, 404),
    "huge id in a filter": ("GET", f"data_product/?namespace={HUGE}", None, 400),
    "huge id in a reference": (
        "POST",
        "data_product/",
        f'{{"name": "a/b", "version": "1.0.0", "namespace": {HUGE}, "object": {HUGE}}}',
        400,
    ),
    "huge integer": ("POST", "storage_location/", f'{{"path": "p", "size": {HUGE}}}', 400),
    "deep JSON": ("POST", "namespace/", "[" * 100_000 + "]" * 100_000, 400),
    "deep JSON in a field": (
        "POST",
        "namespace/",
        '{"name": ' + "[" * 100_000 + "]" * 100_000 + "}",
        400,
    ),
    "lone surrogate": ("POST", "namespace/", '{"name": "\\ud800"}', 400),
    "cursor past 64 bits": ("GET", f"object/?cursor={cursor('b' + HUGE)}", None, 404),
    "newer-than cursor past 64 bits": ("GET", f"object/?cursor={cursor('a' + HUGE)}", None, 404),
    "negative cursor": ("GET", f"object/?cursor={cursor('b-5')}", None, 404),
    "cursor not base64": ("GET", "object/?cursor=%25%ff%00", None, 404),
    "cursor without a number": ("GET", f"object/?cursor={cursor('b')}", None, 404),
}


@pytest.mark.parametrize("request_", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_requests_are_refused_never_a_server_error(registry_server: Any, request_) -> None:
    reg = registry_server()
    method, path, body, expected = request_
    headers = {**reg.headers(), "Content-Type": "application/json"}
    resp = requests.request(
        method,
        f"{reg.api_url}{path}",
        data=body and body.encode("utf-8"),
        headers=headers,
        timeout=60,
    )
    assert resp.status_code == expected, resp.text[:300]
    assert detail_line(resp)


# --- 9. Secrets and tokens ----------------------------------------------------------------
def forged_uploads(api_url: str, key: bytes, body: bytes) -> list[int]:
    """PUT `body` with upload URLs signed with `key`, as upload URLs were signed before they
    named their uploader and as they are now (for admin, user 1); the statuses."""
    digest = hashlib.sha1(body).hexdigest()
    expires = int(time.time()) + 600
    statuses = []
    for message, user in [(f"PUT\n{digest}\n{expires}", ""), (f"PUT\n{digest}\n{expires}\n1", "1")]:
        signature = hmac.new(key, message.encode(), hashlib.sha256).hexdigest()
        query = f"expires={expires}&signature={signature}" + (f"&user={user}" if user else "")
        url = api_url.replace("/api/", f"/data/{digest}?{query}")
        statuses.append(requests.put(url, data=body, timeout=30).status_code)
    return statuses


def test_a_failed_first_start_leaves_no_empty_signing_key(tmp_path: Path, mounts: Any) -> None:
    """The first start writes the upload signing key; on a full disk it fails, and must not
    leave an empty key behind, which a later start would sign (and check) uploads with."""
    blobs = mounts.tmpfs(tmp_path / "blobs", "64k")
    filler = blobs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    with contextlib.suppress(OSError):
        while os.write(fd, b"\0" * 4096):
            pass
    os.close(fd)
    env = Env(tmp_path)
    db = tmp_path / "registry" / "registry.db"
    failed = env.fdp(
        "registry", "start", "--db", str(db), "--blobs", str(blobs), "--port", "0", check=False
    )
    if failed.returncode == 0:
        env.fdp("registry", "stop", "--db", str(db))
    assert failed.returncode != 0
    assert sorted(p.name for p in blobs.iterdir()) == ["filler"]
    filler.unlink()
    api = start_registry(env, db, "--blobs", str(blobs))
    try:
        assert forged_uploads(api, b"", b"forged\n") == [403, 403]
    finally:
        env.fdp("registry", "stop", "--db", str(db))
    key = blobs / ".secret"
    assert key.stat().st_mode & 0o777 == 0o600
    assert len(key.read_bytes().strip()) >= 32


@pytest.mark.parametrize("key", [b"", b"short\n"], ids=["empty", "short"])
def test_the_server_refuses_to_start_with_a_weak_signing_key(tmp_path: Path, key: bytes) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / ".secret").write_bytes(key)
    env = Env(tmp_path)
    db = tmp_path / "registry" / "registry.db"
    proc = env.start_fdp(
        "registry", "serve", "--db", str(db), "--blobs", str(blobs), "--port", "0",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the server started with a weak signing key")
    assert proc.returncode != 0
    [line] = [x for x in stderr.splitlines() if x.startswith("fdp: error:")]
    assert str(blobs / ".secret") in line and "signing key" in line


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", ".hidden"])
def test_user_names_cannot_name_files_outside_the_token_folder(tmp_path: Path, name: str) -> None:
    env = Env(tmp_path)
    db = tmp_path / "a" / "b" / "registry.db"
    before = sorted(tmp_path.rglob("*"))
    result = env.fdp("registry", "token", "--db", str(db), "--user", name, check=False)
    assert result.returncode == 2
    [line] = [x for x in result.stderr.splitlines() if x.startswith("fdp: error:")]
    assert "--user" in line and "letters, digits" in line
    assert not [p for p in sorted(tmp_path.rglob("*")) if p not in before and p.suffix == ".token"]


def test_tokens_are_listed_revoked_and_rotated(registry_server: Any, tmp_path: Path) -> None:
    reg = registry_server()
    env = Env(tmp_path, "operator")
    db = reg.store.url
    alice_file = tmp_path / "alice.token"
    env.fdp("registry", "token", "--db", db, "--user", "alice", "--file", str(alice_file))
    first = alice_file.read_text().strip()

    def whoami(token: str) -> int:
        return call(reg, "GET", "username/", token).status_code

    assert whoami(first) == 200
    listed = env.fdp("registry", "token", "--db", db, "--list").stdout
    today = time.strftime("%Y-%m-%d", time.gmtime())
    rows = [line.split() for line in listed.splitlines()[1:]]
    assert ["alice", today, today] in rows
    assert any(row[0] == "admin" for row in rows)
    assert first not in listed and reg.token not in listed

    rotated = env.fdp(
        "registry", "token", "--db", db, "--rotate", "alice", "--file", str(alice_file)
    )
    assert rotated.stdout.strip() == str(alice_file)
    second = alice_file.read_text().strip()
    assert second != first and alice_file.stat().st_mode & 0o777 == 0o600
    assert second not in rotated.output
    assert whoami(first) == 403 and whoami(second) == 200

    revoked = env.fdp(
        "registry", "token", "--db", db, "--revoke", "alice", "--file", str(alice_file)
    )
    assert "revoked 1 token" in revoked.stdout
    assert whoami(second) == 403 and not alice_file.exists()
    assert whoami(reg.token) == 200
    assert not [
        r
        for r in env.fdp("registry", "token", "--db", db, "--list").stdout.split("\n")
        if r.startswith("alice")
    ]


def test_serving_beyond_loopback_without_https_warns_of_clear_text(tmp_path: Path) -> None:
    env = Env(tmp_path)
    db = tmp_path / "registry" / "registry.db"
    every_address = "0.0.0.0"  # noqa: S104 - the point of the test
    for options, warned in [((), True), (("--trusted-proxies", "1"), False)]:
        started = env.fdp(
            "registry", "start", "--db", str(db), "--host", every_address, "--port", "0", *options
        )
        env.fdp("registry", "stop", "--db", str(db))
        assert ("tokens travel in clear text" in started.stderr) is warned, started.stderr
