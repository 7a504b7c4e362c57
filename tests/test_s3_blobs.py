"""Our registry server keeping its files in S3 (`fdp registry serve --blobs s3://bucket/prefix`).

The S3 API is moto's server on loopback (the `object_store` fixture). Bytes go to and come
from the object store through presigned URLs, never through the registry process, and the
server trusts no client about them: moto checks no checksum, so a test sends wrong bytes to
an upload URL and shows that no storage location may name them and they are never served.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from support import Env, reader, sha1
from support import producer as seeded_producer


def digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@pytest.fixture
def s3_env(object_store: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The S3 endpoint and credentials in the standard AWS variables, for this process and
    the `fdp` processes a test starts."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fdp-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fdp-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", object_store.endpoint)
    return object_store


def bucket_keys(object_store: Any, bucket: str) -> list[str]:
    listing = object_store.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def call(reg: Any, method: str, path: str, token: str | None = "", **kwargs: Any) -> Any:
    return requests.request(
        method, f"{reg.api_url}{path}", headers=reg.headers(token), timeout=30, **kwargs
    )


def data_root(reg: Any) -> str:
    """The URL of the server's storage root `<site>/data/` as a record (made if needed)."""
    made = call(reg, "POST", "storage_root/", json={"root": f"{reg.url}/data/"})
    assert made.status_code in (201, 409), made.text
    return made.json().get("url") or made.json()["existing"]


def locate(reg: Any, sha: str, root: str) -> Any:
    location = {"path": sha, "hash": sha, "public": True, "storage_root": root}
    return call(reg, "POST", "storage_location/", json=location)


def test_wrong_bytes_sent_to_an_upload_url_are_never_named_or_served(
    s3_env: Any, registry_server: Callable[..., Any]
) -> None:
    bucket = s3_env.create_bucket()
    reg = registry_server(blobs=f"s3://{bucket}/blobs")
    good = b"the results everyone will cite\n" * 1000
    sha = digest(good)
    root = data_root(reg)

    offer = call(reg, "POST", f"data/{sha}")
    assert offer.status_code == 201 and offer.json()["exists"] is False
    url = offer.json()["url"]
    # the upload goes to the object store itself, not through the registry
    assert urlsplit(url).netloc == urlsplit(s3_env.endpoint).netloc
    assert requests.put(url, data=b"something else entirely", timeout=30).status_code == 200

    refused = locate(reg, sha, root)
    assert refused.status_code == 400
    reason = refused.json()["detail"]
    assert "\n" not in reason and sha in reason and "upload it first" in reason
    assert reg.store.find("storage_location", {"hash": sha}) == []
    assert call(reg, "GET", "", token="")  # the server still answers
    hidden = requests.get(f"{reg.url}/data/{sha}", headers=reg.headers(), timeout=30)
    assert hidden.status_code == 404
    assert bucket_keys(s3_env, bucket) == []  # the wrong bytes are gone, not kept as the SHA-1

    # the right bytes through a fresh URL: verified once, then named and served (by S3)
    again = call(reg, "POST", f"data/{sha}").json()
    assert requests.put(again["url"], data=good, timeout=30).status_code == 200
    assert locate(reg, sha, root).status_code == 201
    assert bucket_keys(s3_env, bucket) == [f"blobs/{sha[:2]}/{sha}"]
    served = requests.get(f"{reg.url}/data/{sha}", allow_redirects=False, timeout=30)
    assert served.status_code == 302
    assert urlsplit(served.headers["Location"]).netloc == urlsplit(s3_env.endpoint).netloc
    assert requests.get(f"{reg.url}/data/{sha}", timeout=30).content == good
    part = requests.get(f"{reg.url}/data/{sha}", headers={"Range": "bytes=10-19"}, timeout=30)
    assert part.status_code == 206 and part.content == good[10:20]

    # stored and verified: no upload URL is handed out for it any more
    stored = call(reg, "POST", f"data/{sha}")
    assert stored.status_code == 200 and stored.json()["exists"] is True
    assert "url" not in stored.json()
    # and the first URL, still valid, cannot replace the verified bytes: it never named them
    assert requests.put(url, data=b"an overwrite", timeout=30).status_code == 200
    assert requests.get(f"{reg.url}/data/{sha}", timeout=30).content == good


def test_a_batch_of_locations_names_only_the_uploads_that_hash_right(
    s3_env: Any, registry_server: Callable[..., Any]
) -> None:
    """A push records its locations many to a request; their uploads are hashed together,
    and still each one only if its bytes are those of its SHA-1."""
    bucket = s3_env.create_bucket()
    reg = registry_server(blobs=f"s3://{bucket}/blobs")
    root = data_root(reg)
    files = {f"result {n}\n".encode() * 100: f"result {n}\n".encode() * 100 for n in range(5)}
    files[b"the claimed bytes\n"] = b"what was sent instead\n"
    asked = call(reg, "POST", "data/", json={"hashes": [digest(claimed) for claimed in files]})
    answers = asked.json()["files"]
    for claimed, sent in files.items():
        assert requests.put(answers[digest(claimed)]["url"], data=sent, timeout=30).ok
    batch = [
        {"path": digest(claimed), "hash": digest(claimed), "public": True, "storage_root": root}
        for claimed in files
    ]
    created = call(reg, "POST", "storage_location/", json=batch)
    assert created.status_code == 200, created.text
    statuses = [answer["status"] for answer in created.json()["results"]]
    assert statuses == [201] * 5 + [400]
    good = sorted(digest(claimed) for claimed, sent in files.items() if claimed == sent)
    assert bucket_keys(s3_env, bucket) == [f"blobs/{sha[:2]}/{sha}" for sha in good]
    for claimed, sent in files.items():
        got = requests.get(f"{reg.url}/data/{digest(claimed)}", timeout=30)
        assert got.status_code == (200 if claimed == sent else 404)
        assert got.content == sent or claimed != sent


def test_a_location_under_the_data_root_must_name_its_sha1(
    s3_env: Any, registry_server: Callable[..., Any]
) -> None:
    reg = registry_server(blobs=f"s3://{s3_env.create_bucket()}/blobs")
    root = data_root(reg)
    sha = digest(b"x")
    elsewhere = {"path": "results/x.csv", "hash": sha, "public": True, "storage_root": root}
    refused = call(reg, "POST", "storage_location/", json=elsewhere)
    assert refused.status_code == 400 and "path" in refused.json()
    never = locate(reg, sha, root)  # nothing uploaded at all
    assert never.status_code == 400 and "\n" not in never.json()["detail"]
    # files elsewhere are not this server's to check
    other = call(reg, "POST", "storage_root/", json={"root": "https://example.org/files/"})
    location = {"path": "a.csv", "hash": sha, "public": True, "storage_root": other.json()["url"]}
    assert call(reg, "POST", "storage_location/", json=location).status_code == 201


def test_push_and_pull_through_a_server_whose_blobs_are_in_s3(
    tmp_path: Path, s3_env: Any
) -> None:
    """`fdp registry start --blobs s3://...`, then a push and a colleague's pull: every byte
    goes through presigned URLs, and the bucket ends with exactly the verified files."""
    bucket = s3_env.create_bucket()
    admin = Env(tmp_path, "admin")
    db = tmp_path / "shared" / "registry.db"
    token_file = admin.fdp("registry", "token", "--db", str(db), "--user", "alice").stdout.strip()
    url = admin.fdp(
        "registry", "start", "--db", str(db), "--blobs", f"s3://{bucket}/fdp", "--port", "0"
    ).stdout.strip()
    try:
        alice = seeded_producer(tmp_path, outputs=2, name="alice")
        alice.doit()
        alice.fdp("remote", "add", "origin", url, "--token-file", token_file)
        alice.fdp("push")
        keys = bucket_keys(s3_env, bucket)
        assert keys and all(k.startswith("fdp/") and "/incoming/" not in k for k in keys)
        files = {k.rsplit("/", 1)[1] for k in keys}
        for rel in ("lab/results/part00/0.0.1.csv", "lab/results/part01/0.0.1.csv"):
            assert sha1(alice.data_store / rel) in files
        uploads = s3_env.requests(bucket)["PUT"]
        assert uploads == len(files)

        colleague = reader(tmp_path, url, ["results/*"])
        colleague.fdp("pull")
        for rel in ("lab/results/part00/0.0.1.csv", "lab/results/part01/0.0.1.csv"):
            assert sha1(colleague.data_store / rel) == sha1(alice.data_store / rel)
        assert s3_env.requests(bucket)["GET"] >= 2  # the bytes came from the bucket
    finally:
        admin.fdp("registry", "stop", "--db", str(db))
