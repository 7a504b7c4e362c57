"""Push and pull cost a constant number of requests per product, counted at a real registry
server on loopback; the batched look-ups behind that (records by id, upload URLs for many
files) answer as their one-at-a-time forms do, and the upstream registry, which has
neither, is still served one at a time."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import LiveRegistry
from emulation.upstream import Upstream
from support import CountingRegistry, Env, producer, reader

from fdp_tasks.graph.tasks import PAGE
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.stat_cache import RACY_MARGIN_NS
from fdp_tasks.store.base import InvalidRecord

N = 50
# What a command sends once whatever N is: listings, file types, roots, the namespace, the
# author, the seed, the code run and the files and records of its config, script and code
# repository, and a list of records of each kind (about 40 for a push, 20 for a pull).
FIXED = 45


@pytest.fixture
def counting_registry(tmp_path: Path) -> Iterator[CountingRegistry]:
    registry = CountingRegistry(tmp_path / "remote")
    yield registry
    registry.stop()


def made(tmp_path: Path, outputs: int) -> Env:
    env = producer(tmp_path, outputs)  # `<name>,<seed>` in each: N different files
    env.doit()
    return env


def shapes(registry: CountingRegistry) -> str:
    return ", ".join(f"{k} x{v}" for k, v in registry.requests.most_common(8))


def test_push_and_pull_cost_a_few_requests_per_product(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    env = made(tmp_path, N)
    env.add_remote(counting_registry.api_url, counting_registry.token_file)

    counting_registry.requests.clear()
    env.fdp("push")
    pushed = counting_registry.total()
    # nothing per product: small files go in bundles (PUT /data/), and the storage
    # location, object and data product records in lists of a few hundred (one POST of
    # each kind here), not one request each
    assert pushed <= FIXED, shapes(counting_registry)
    assert counting_registry.requests["PUT /data/"] == 1, shapes(counting_registry)
    for kind in ("storage_location", "object", "data_product"):
        assert counting_registry.requests[f"POST /api/{kind}/"] <= 8, shapes(counting_registry)
    # where to upload was asked for all files at once (after one file alone: the probe
    # that the remote takes files at all), not once per file
    one_by_one = [
        k
        for k in counting_registry.requests
        if k.startswith("POST /api/data/") and k != "POST /api/data/"
    ]
    assert len(one_by_one) <= 1, shapes(counting_registry)
    assert counting_registry.requests["POST /api/data/"] == 1, shapes(counting_registry)
    assert counting_registry.store.count("data_product") == N + 1

    colleague = reader(
        tmp_path, counting_registry.api_url, [f"results/part{i:02d}" for i in range(N)]
    )
    counting_registry.requests.clear()
    colleague.fdp("pull")
    pulled = counting_registry.total()
    # records come in listings and small files in bundles, a few hundred at a time: nothing
    # per product (the server sends the bytes of many files in one answer)
    assert pulled <= FIXED, shapes(counting_registry)
    assert counting_registry.requests["POST /data/"] == 1, shapes(counting_registry)
    for i in range(N):
        assert (colleague.data_store / f"lab/results/part{i:02d}/0.0.1.csv").is_file()

    counting_registry.requests.clear()
    colleague.fdp("pull")
    assert counting_registry.total() <= FIXED  # nothing new: nothing per product

    # one item over all of them: their records a page at a time, as few requests in all
    everyone = reader(tmp_path, counting_registry.api_url, ["results/*"], name="glob")
    counting_registry.requests.clear()
    everyone.fdp("pull")
    assert counting_registry.total() <= FIXED, shapes(counting_registry)
    assert len(list(everyone.data_store.rglob("*.csv"))) == N


def test_records_by_id_in_one_listing_answer_as_one_get_each(
    registry_server: Callable[..., LiveRegistry],
) -> None:
    live = registry_server()
    client = HttpRegistry(live.api_url, token=live.token)
    made_ids = [client.create("namespace", {"name": f"group{i}"})["id"] for i in range(5)]
    one_by_one = {i: client.get("namespace", i) for i in made_ids}

    assert client.get_many("namespace", [*reversed(made_ids), made_ids[0]]) == one_by_one
    assert client.lists_by_id is True
    assert list(client.get_many("namespace", made_ids)) == made_ids  # in the order asked

    headers = live.headers()
    url = f"{live.api_url}namespace/"
    for bad in ("1,x", "", "-1", "99999999999999999999", ",".join(["1"] * 10001)):
        answer = requests.get(url, params={"id": bad or ","}, headers=headers, timeout=10)
        assert answer.status_code == 400, (bad, answer.text)
        assert "id" in answer.json()


def test_records_posted_as_a_list_answer_as_one_post_each(
    registry_server: Callable[..., LiveRegistry],
) -> None:
    live = registry_server()
    client = HttpRegistry(live.api_url, token=live.token)
    there = client.create("namespace", {"name": "group0"})

    made = client.get_or_create_many("namespace", [{"name": f"group{i}"} for i in range(4)])

    assert client.creates_in_batches is True
    assert [created for _, created in made] == [False, True, True, True]
    assert made[0][0] == there
    assert made[1:] == [(client.get("namespace", r["id"]), True) for r, _ in made[1:]]
    # a repeat finds them all, as a POST of each would (409)
    assert client.get_or_create_many("namespace", [{"name": "group2"}, {"name": "group3"}]) == [
        (made[2][0], False),
        (made[3][0], False),
    ]
    with pytest.raises(InvalidRecord, match="name"):
        client.get_or_create_many("namespace", [{"name": "group9"}, {"name": ""}])

    url, headers = f"{live.api_url}namespace/", live.headers()
    for bad in ([], [{"name": f"n{i}"} for i in range(501)]):
        answer = requests.post(url, json=bad, headers=headers, timeout=10)
        assert answer.status_code == 400, answer.text
    anonymous = requests.post(url, json=[{"name": "x"}], headers=live.headers(None), timeout=10)
    assert anonymous.status_code in (401, 403)


def test_the_upstream_registry_is_sent_records_one_by_one(
    upstream_registry: Callable[..., Upstream],
) -> None:
    upstream = upstream_registry()
    client = HttpRegistry(upstream.api_url, token=upstream.token)

    made = client.get_or_create_many("namespace", [{"name": f"group{i}"} for i in range(3)])

    assert client.creates_in_batches is False  # a 400 to a list: not sent one again
    assert [r["name"] for r, created in made if created] == ["group0", "group1", "group2"]
    assert client.get_or_create_many("namespace", [{"name": "group1"}]) == [(made[1][0], False)]


def test_the_upstream_registry_is_asked_for_records_one_by_one(
    upstream_registry: Callable[..., Upstream],
) -> None:
    upstream = upstream_registry()
    client = HttpRegistry(upstream.api_url, token=upstream.token)
    made_ids = [client.create("namespace", {"name": f"group{i}"})["id"] for i in range(3)]

    found = client.get_many("namespace", made_ids)

    assert [r["name"] for r in found.values()] == ["group0", "group1", "group2"]
    assert client.lists_by_id is False  # a 400 to `?id=`: not asked again


def test_upload_urls_for_many_files_come_in_one_request(
    registry_server: Callable[..., LiveRegistry], tmp_path: Path
) -> None:
    live = registry_server()
    client = HttpRegistry(live.api_url, token=live.token)
    files = []
    for i in range(3):
        path = tmp_path / f"f{i}.txt"
        path.write_text(f"file {i}\n")
        files.append((path, hashlib.sha1(path.read_bytes()).hexdigest()))
    client.upload_blob(*files[0])  # the server holds this one already

    storage = client.blobs
    assert storage.ask_uploads([sha1 for _, sha1 in files]) == 3
    assert storage.asks_in_batches is True
    answers = {sha1: storage._answers[sha1][1] for _, sha1 in files}
    assert answers[files[0][1]]["exists"] is True
    assert all(not answers[sha1]["exists"] and answers[sha1]["url"] for _, sha1 in files[1:])
    for path, sha1 in files[1:]:
        assert storage.upload(path, sha1)["uploaded"] is True
        assert storage.ask_upload(sha1)["exists"] is True  # sent and verified

    headers = live.headers()
    for body in ({"hashes": ["not a sha1"]}, {"hashes": []}, {"hashes": "x"}, []):
        answer = requests.post(f"{live.api_url}data/", json=body, headers=headers, timeout=10)
        assert answer.status_code == 400, answer.text
    anonymous = requests.post(
        f"{live.api_url}data/",
        json={"hashes": [files[0][1]]},
        headers=live.headers(None),
        timeout=10,
    )
    assert anonymous.status_code in (401, 403)


def test_the_upstream_registry_is_asked_for_upload_urls_one_by_one(
    upstream_registry: Callable[..., Upstream], tmp_path: Path
) -> None:
    upstream = upstream_registry()
    client = HttpRegistry(upstream.api_url, token=upstream.token)
    path = tmp_path / "f.txt"
    path.write_text("some bytes\n")
    sha1 = hashlib.sha1(path.read_bytes()).hexdigest()

    assert client.blobs.ask_uploads([sha1]) == 0
    assert client.blobs.asks_in_batches is False
    assert client.upload_blob(path, sha1)["uploaded"] is True


IMPORTS_AFTER = """
import runpy, sys
sys.argv = ["fdp", *sys.argv[1:]]
try:
    runpy.run_module("fdp_tasks.cli.main", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("imported: " + ",".join(m for m in ("sqlalchemy",) if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


def test_a_pull_with_nothing_new_leaves_the_local_registry_closed(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    env = made(tmp_path, N)
    env.add_remote(counting_registry.api_url, counting_registry.token_file)
    env.fdp("push")
    colleague = reader(tmp_path, counting_registry.api_url, ["results/*"])
    colleague.fdp("pull")
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.5)  # the registry settles, as before a user's next pull

    again = [colleague.run(sys.executable, "-c", IMPORTS_AFTER, "pull") for _ in range(2)]

    for result in again:
        assert "nothing newer" in result.stdout + result.stderr, result.stdout + result.stderr
    # the first asked the local registry (its files had just changed) and kept the answers;
    # the second is answered by them: no SQL engine is loaded, for a glob over N products
    [line] = [x for x in again[1].stderr.splitlines() if x.startswith("imported: ")]
    assert line == "imported: ", again[1].stderr


class RefuseBundles:
    """WSGI middleware: the server's bundle endpoints fail (500), as a proxy in front of
    them might make them; everything else passes."""

    def __init__(self, app: Any):
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/data/" and environ["REQUEST_METHOD"] in ("PUT", "POST"):
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [b"no bundles here"]
        return self.app(environ, start_response)


def test_files_a_bundle_does_not_carry_go_one_by_one(tmp_path: Path) -> None:
    registry = CountingRegistry(tmp_path / "remote", wrap=RefuseBundles)
    try:
        env = made(tmp_path, N)
        env.add_remote(registry.api_url, registry.token_file)
        env.fdp("push")
        one_by_one = [k for k in registry.requests if k.startswith("PUT /data/") and k[10:]]
        assert registry.requests["PUT /data/"] >= 1 and len(one_by_one) >= N, shapes(registry)
        assert registry.store.count("data_product") == N + 1

        colleague = reader(tmp_path, registry.api_url, ["results/*"])
        registry.requests.clear()
        colleague.fdp("pull")
        fetched = [k for k in registry.requests if k.startswith("GET /data/")]
        assert registry.requests["POST /data/"] >= 1 and len(fetched) >= N, shapes(registry)
        for i in range(N):
            mine = env.data_store / f"lab/results/part{i:02d}/0.0.1.csv"
            theirs = colleague.data_store / f"lab/results/part{i:02d}/0.0.1.csv"
            assert theirs.read_bytes() == mine.read_bytes()
    finally:
        registry.stop()


def test_a_push_of_more_than_a_page_of_products_has_an_item_per_page(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    """doit keeps every task it is given, so a push of more data products than a page has
    an item per page of them, named by its first product and how many follow. The summary
    still counts products, every one reaches the remote, `fdp status` still has a row for
    each, and the next push finds every page up to date."""
    n = 2 * PAGE + 1
    env = made(tmp_path, n)
    env.add_remote(counting_registry.api_url, counting_registry.token_file)

    first = env.fdp("push", "--jobs", "2")

    items = [task for task in first.executed if task.startswith("push:")]
    assert items == [
        f"push:lab:results/part{start:02d}@0.0.1+{min(PAGE, n - start) - 1}"
        for start in range(0, n, PAGE)
    ]
    assert first.stdout.strip().splitlines()[-1] == f"{n} pushed"
    assert counting_registry.store.count("data_product") == n + 1  # with the input
    # each page's files go on new upload threads, which take up the connections of the
    # threads before them: as many as move files at once (2) and the registry client's,
    # not as many per page (a server that takes 100 at a time stalled at 30,000 products)
    assert len(counting_registry.connections) <= 2 + 2, sorted(counting_registry.connections)
    rows = json.loads(env.fdp("status", "--json").stdout)
    pushes = [row for row in rows if row["task"].startswith("push:")]
    assert len(pushes) == n and {row["state"] for row in pushes} == {"pushed"}

    again = env.fdp("push")
    assert again.stdout.strip().splitlines()[-1] == f"{n} up to date"
    assert not [task for task in again.executed if task.startswith("push:")]


def test_a_conflict_fails_the_products_of_a_page_in_one_line(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    """In a push of more than a page, a product whose name and version the remote holds
    with other content fails its run's products (a run is pushed whole), with the
    conflict's exit code: each page says so in one line naming the conflict, not a line
    per product, and the summary counts the products."""
    theirs = producer(tmp_path, [7], name="theirs", args="2")  # part07, other bytes
    theirs.doit()
    theirs.add_remote(counting_registry.api_url, counting_registry.token_file)
    theirs.fdp("push")
    env = made(tmp_path, PAGE + 1)
    env.add_remote(counting_registry.api_url, counting_registry.token_file)

    pushed = env.fdp("push", check=False)

    assert pushed.returncode == 3
    assert pushed.stdout.strip().splitlines()[-1] == f"{PAGE + 1} failed"
    errors = [line for line in pushed.stderr.splitlines() if line.startswith("fdp: error:")]
    assert len(errors) == 2, errors
    assert errors[0].startswith(
        f"fdp: error: push:lab:results/part00@0.0.1+{PAGE - 1}: lab:results/part00@0.0.1 "
        f"and {PAGE - 1} more: lab:results/part07@0.0.1 already exists there"
    )
    assert "lab:results/part07@0.0.1 already exists there" in errors[1]
    assert counting_registry.store.count("data_product") == 2  # theirs: the seed and part07


def test_a_push_again_asks_nothing_per_product_after_pushes_elsewhere(
    tmp_path: Path, counting_registry: CountingRegistry
) -> None:
    """What was pushed where is remembered for each remote: pushes to another remote, and a
    line a crash cut short, leave a push with nothing new to the first one asking for no
    product's file."""
    env = made(tmp_path, N)
    env.add_remote(counting_registry.api_url, counting_registry.token_file)
    other = CountingRegistry(tmp_path / "other")
    try:
        env.add_remote(other.api_url, other.token_file, name="other")
        env.fdp("push")
        env.fdp("push", "--remote", "other")
        ledger = next(env.project.glob(".fdp/configs/*/pushed.jsonl"))
        with open(ledger, "a", encoding="utf-8") as fh:
            fh.write('{"remote": "' + counting_registry.api_url + '", "ref": "lab:res')
        counting_registry.requests.clear()
        result = env.fdp("push")
    finally:
        other.stop()
    assert "nothing to push" in result.stdout or "up to date" in result.stdout, result.stdout
    asked = [k for k in counting_registry.requests if "/data_product/" in k or "/object/" in k]
    assert sum(counting_registry.requests[k] for k in asked) <= 2, shapes(counting_registry)
