"""HttpRegistry against a real server: same records as the Store, few requests, clean errors."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests

from fdp_tasks.errors import FdpError
from fdp_tasks.remotes.client import HttpRegistry, id_from_url, normalise_api_url
from fdp_tasks.server.serve import background_status, start_background, stop_background
from fdp_tasks.store.base import InvalidRecord, NotFound, RegistryError, UniqueViolation
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token


@pytest.fixture
def reg(registry_server):
    return registry_server()


@pytest.fixture
def client(reg) -> Iterator[HttpRegistry]:
    with HttpRegistry(reg.api_url, token=reg.token, page_size=50) as http:
        yield http


def count_requests(client: HttpRegistry) -> list[str]:
    """Record every request the client's session makes (a requests hook, nothing replaced)."""
    seen: list[str] = []
    client.session.hooks["response"].append(
        lambda resp, *a, **k: seen.append(f"{resp.request.method} {resp.request.path_url}")
    )
    return seen


def test_normalise_api_url():
    for url in ("http://h:8000", "http://h:8000/", "http://h:8000/api", "http://h:8000/api/"):
        assert normalise_api_url(url) == "http://h:8000/api/"
    assert id_from_url("http://h/api/object/12/") == 12
    with pytest.raises(InvalidRecord):
        id_from_url("http://h/api/object/")


def test_round_trip_with_int_ids(client, reg):
    root = client.create("storage_root", {"root": "file:///data/", "local": True})
    assert isinstance(root["id"], int)
    assert root["local"] is True and root["locations"] == []
    loc = client.create(
        "storage_location", {"path": "a.csv", "hash": "h1", "storage_root": root["id"]}
    )
    assert loc["storage_root"] == root["id"]
    author = client.create("author", {"name": "Ada"})
    obj = client.create("object", {"storage_location": loc["id"], "authors": [author["id"]]})
    assert obj["authors"] == [author["id"]]
    assert len(obj["components"]) == 1 and isinstance(obj["components"][0], int)
    assert obj["updated_by"] == 1
    # Same shape as the store's own record.
    local = reg.store.get("object", obj["id"])
    assert {k: obj[k] for k in local} == local
    assert client.get("storage_root", root["id"])["locations"] == [loc["id"]]
    ns = client.create("namespace", {"name": "ns"})
    product = client.create(
        "data_product",
        {"object": obj["id"], "namespace": ns["id"], "name": "d", "version": "1.0.0"},
    )
    # published data never changes (a new version does): the same values are no change
    patched = client.patch("data_product", product["id"], {"version": "1.0.0"})
    assert patched["version"] == "1.0.0" and patched["namespace"] == ns["id"]
    with pytest.raises(InvalidRecord, match="never changes"):
        client.patch("data_product", product["id"], {"version": "1.0.1"})
    found = client.find("data_product", {"namespace": ns["id"], "name": "d*"})
    assert [p["id"] for p in found] == [product["id"]]
    assert client.find("storage_location", {"storage_root": root["id"], "public": True})
    assert client.find("storage_location", {"public": False}) == []


def test_unique_clash_returns_the_existing_record(client):
    ns = client.create("namespace", {"name": "ns", "full_name": "Name Space"})
    with pytest.raises(UniqueViolation) as err:
        client.create("namespace", {"name": "ns"})
    assert err.value.existing["id"] == ns["id"]
    assert err.value.key == ("name",)
    with pytest.raises(UniqueViolation) as err:
        client.create("namespace", {"name": "new", "full_name": "Name Space"})
    assert err.value.existing["id"] == ns["id"]
    root = client.create("storage_root", {"root": "https://example.org/"})
    loc = client.create("storage_location", {"path": "p", "hash": "h", "storage_root": root["id"]})
    again, created = client.get_or_create(
        "storage_location", {"path": "p", "hash": "h", "storage_root": root["id"]}
    )
    assert created is False and again["id"] == loc["id"]
    fresh, created = client.get_or_create("namespace", {"name": "fresh"})
    assert created is True and fresh["name"] == "fresh"


def test_find_pages_without_n_plus_one(client):
    for i in range(120):
        client.create("namespace", {"name": f"ns{i:03d}"})
    seen = count_requests(client)
    found = client.find("namespace")
    assert [n["name"] for n in found] == [f"ns{i:03d}" for i in reversed(range(120))]
    assert len(seen) == 3  # 50 + 50 + 20, one request per page
    assert all("page_size=50" in s or "cursor=" in s for s in seen)
    seen.clear()
    assert len(client.find("namespace", {"name": "ns1*"}, limit=5)) == 5
    assert len(seen) == 1 and "page_size=5" in seen[0]


def test_a_listing_asks_for_its_next_page_while_the_caller_reads_this_one(client):
    for i in range(120):
        client.create("namespace", {"name": f"ns{i:03d}"})
    seen = count_requests(client)
    listing = client.iter_find("namespace")
    assert next(listing)["name"] == "ns119"  # the first record of the first page
    for _ in range(500):  # the second page is on its way, asked for by another thread
        if len(seen) == 2:
            break
        threading.Event().wait(0.01)
    assert len(seen) == 2 and "cursor=" in seen[1]
    rest = [n["name"] for n in listing]
    assert rest == [f"ns{i:03d}" for i in reversed(range(119))] and len(seen) == 3

    seen.clear()
    listing = client.iter_find("namespace")
    next(listing)
    listing.close()  # a listing given up: the page asked for ahead is not waited for
    assert len(client.find("namespace", limit=60)) == 60  # pages asked one after another


def test_find_follows_cursor_when_server_names_another_host(registry_server):
    reg = registry_server(public_url="http://public.invalid:1")
    with HttpRegistry(reg.url, token=reg.token, page_size=3) as http:
        for i in range(8):
            http.create("namespace", {"name": f"n{i}"})
        assert len(http.find("namespace")) == 8
        one = http.create("object", {})
        assert http.get("object", one["id"])["id"] == one["id"]


def test_null_filter_is_checked_locally(client):
    client.create("object", {"description": "bare"})
    ftype = client.create("file_type", {"name": "csv", "extension": "csv"})
    typed = client.create("object", {"file_type": ftype["id"]})
    bare = client.find("object", {"file_type": None})
    assert [o["description"] for o in bare] == ["bare"]
    assert [o["id"] for o in client.find("object", {"file_type": ftype["id"]})] == [typed["id"]]


def test_code_run_patch_and_delete(client):
    script = client.create("object", {})
    out = client.create("object", {})
    run = client.create(
        "code_run",
        {
            "run_date": "2024-01-01",
            "description": "r",
            "submission_script": script["id"],
            "uuid": "0b675213-7206-43f3-9924-b31a60a3751b",
        },
    )
    patched = client.patch("code_run", run["id"], {"outputs": out["components"]})
    assert patched["outputs"] == out["components"]
    with pytest.raises(UniqueViolation) as err:
        client.create(
            "code_run",
            {
                "run_date": "2024-01-01",
                "description": "r",
                "submission_script": script["id"],
                "uuid": "0b675213-7206-43f3-9924-b31a60a3751b",
            },
        )
    assert err.value.existing["id"] == run["id"]
    client.delete("code_run", run["id"])
    with pytest.raises(NotFound):
        client.get("code_run", run["id"])


def test_errors(client, reg):
    with pytest.raises(InvalidRecord, match="POST /api/storage_location/"):
        client.create("storage_location", {"path": "p"})
    with pytest.raises(NotFound):
        client.get("namespace", 999)
    with pytest.raises(InvalidRecord, match="local"):
        client.find("storage_root", {"local": "maybe"})
    ns = client.create("namespace", {"name": "n"})
    with pytest.raises(RegistryError, match="405"):
        client.patch("namespace", ns["id"], {"name": "x"})
    anonymous = HttpRegistry(reg.api_url)
    with pytest.raises(RegistryError, match="token is missing or invalid") as err:
        anonymous.create("namespace", {"name": "x"})
    wrong = HttpRegistry(reg.api_url, token="secret-wrong-token")
    with pytest.raises(RegistryError) as err:
        wrong.whoami()
    assert "secret-wrong-token" not in str(err.value)
    assert client.whoami() == "admin"


def test_unreachable_server_fails_cleanly(registry_server):
    reg = registry_server()
    url = reg.api_url
    reg.stop()
    http = HttpRegistry(url, token=reg.token, retries=2, backoff=0.01, timeout=2)
    with pytest.raises(RegistryError, match="no answer from the registry") as err:
        http.find("namespace")
    assert "GET /api/namespace/" in str(err.value)
    assert reg.token not in str(err.value)
    with pytest.raises(RegistryError, match="POST /api/namespace/"):
        http.create("namespace", {"name": "x"})


def test_blob_upload_and_download(client, reg, tmp_path):
    body = b"0123456789" * 300_000
    src = tmp_path / "blob.bin"
    src.write_bytes(body)
    sha1 = hashlib.sha1(body).hexdigest()
    info = client.upload_blob(src, sha1)
    assert info.get("uploaded") is True
    assert (reg.blob_dir / sha1[:2] / sha1).read_bytes() == body
    assert client.upload_blob(src, sha1)["exists"] is True
    got = b"".join(client.download(info["storage_root"] + info["path"]))
    assert got == body
    with pytest.raises(InvalidRecord, match="400"):
        client.upload_blob(src, hashlib.sha1(b"other").hexdigest())


# ----------------------------------------------- a deliberately unreliable file server
@contextmanager
def flaky_server(payload: bytes, mode: str) -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that misbehaves once: 'drop' cuts the first download short, 'skew'
    too and then resumes one byte early, '503' answers the first request with 503. Records
    the Range headers it got."""
    ranges: list[str] = []
    state = {"first": True}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            ranges.append(self.headers.get("Range", ""))
            first, state["first"] = state["first"], False
            if mode == "503" and first:
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if mode == "503":
                data = json.dumps({"username": "admin"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            start = 0
            if self.headers.get("Range"):
                start = int(self.headers["Range"].split("=")[1].rstrip("-"))
                start -= mode == "skew"
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/*")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(payload) - start))
            self.end_headers()
            if first:
                self.wfile.write(payload[: len(payload) // 3])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload[start:])

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ranges
    finally:
        server.shutdown()
        server.server_close()


def test_download_resumes_with_range():
    payload = bytes(range(256)) * 4000
    with flaky_server(payload, "drop") as (url, ranges):
        http = HttpRegistry(url, backoff=0.01)
        assert b"".join(http.download(f"{url}/data/x")) == payload
    assert ranges[0] == ""
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(payload) // 3


def test_download_refuses_a_resume_at_another_byte():
    payload = bytes(range(256)) * 4000
    with flaky_server(payload, "skew") as (url, _):
        http = HttpRegistry(url, backoff=0.01)
        with pytest.raises(FdpError, match="cannot resume at byte"):
            b"".join(http.download(f"{url}/data/x"))


def test_retries_on_503():
    with flaky_server(b"", "503") as (url, ranges):
        http = HttpRegistry(url, token="t", backoff=0.01)
        assert http.whoami() == "admin"
    assert len(ranges) == 2


# ------------------------------------------------------------ background process
def test_background_server_start_status_stop(tmp_path):
    state = tmp_path / "server"
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    store = Store(db)
    token = working_token(store)
    url = start_background(db, tmp_path / "blobs", state, port=0)
    try:
        info = background_status(state)
        assert info is not None and info["url"] == url and info["db"] == db
        assert (state / "server.json").stat().st_mode & 0o777 == 0o600
        assert start_background(db, tmp_path / "blobs", state, port=0) == url
        http = HttpRegistry(url, token=token)
        assert http.whoami() == "admin"
        ns = http.create("namespace", {"name": "bg"})
        assert store.get("namespace", ns["id"])["name"] == "bg"
    finally:
        assert stop_background(state) is True
    assert background_status(state) is None
    assert not (state / "server.json").exists()
    assert stop_background(state) is False
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/", timeout=2)
    assert token not in (state / "server.log").read_text()
    store.close()


def test_stale_state_file_is_not_signalled(tmp_path):
    state = tmp_path / "server"
    state.mkdir()
    (state / "server.json").write_text(json.dumps({"pid": 1, "url": "http://127.0.0.1:9"}))
    assert background_status(state) is None
    assert stop_background(state) is False
    assert not (state / "server.json").exists()
