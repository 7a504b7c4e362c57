"""One conformance suite for every storage: the same cases, the same guarantees.

Each case runs against a local folder, an S3 bucket (moto's S3 server on loopback), our
registry server's blob store over HTTP (blobs in a folder, and blobs in S3), and the upstream
registry's `/data/` protocol (the emulation, with its bucket). What a protocol does not
offer (deleting or listing through a registry, presigning a folder) must fail with a clear
one-line UnsupportedOperation, which the suite checks too.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from fdp_tasks.errors import BadInput, HashMismatch, UnsafePathError
from fdp_tasks.storage import (
    ObjectMissing,
    Storage,
    StorageError,
    UnsupportedOperation,
    storage_for,
)

KINDS = ["local", "s3", "server", "server-s3", "upstream"]
MiB = 1024 * 1024


def digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


@dataclass
class Case:
    """A storage under test, and what its protocol offers."""

    kind: str
    storage: Storage
    presigns: frozenset[str] = frozenset()
    deletes: bool = False
    lists: bool = False
    # reads through a registry need a record naming the file (the upstream serves only those)
    publish: Callable[[str], None] | None = None

    def key(self, data: bytes, name: str) -> str:
        """Where `data` goes: its SHA-1 where keys are content addresses, else `name`."""
        return digest(data) if self.storage.content_addressed else name

    def readable(self, key: str) -> None:
        if self.publish is not None:
            self.publish(key)


def s3_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Credentials and endpoint the standard way, from the environment (moto takes any)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "conformance")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "conformance-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)


def upstream_publisher(upstream: Any) -> Callable[[str], None]:
    """Records a file under the upstream's data root, as a push does after uploading it."""
    headers = upstream.headers()
    found = requests.get(
        upstream.api_url + "storage_root/",
        params={"root": upstream.data_root},
        headers=headers,
        timeout=30,
    ).json()["results"]
    root_url = found[0]["url"]

    def publish(key: str) -> None:
        location = {"path": key, "hash": key, "public": True, "storage_root": root_url}
        resp = requests.post(
            upstream.api_url + "storage_location/", json=location, headers=headers, timeout=30
        )
        assert resp.status_code in (201, 409), resp.text

    return publish


@pytest.fixture(params=KINDS)
def case(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Case]:
    kind = request.param
    if kind == "local":
        made = Case(kind, storage_for(str(tmp_path / "folder")), deletes=True, lists=True)
    elif kind == "s3":
        objects = request.getfixturevalue("object_store")
        s3_environment(monkeypatch, objects.endpoint)
        bucket = objects.create_bucket()
        made = Case(
            kind,
            storage_for(f"s3://{bucket}/conformance/suite"),
            presigns=frozenset({"GET", "PUT"}),
            deletes=True,
            lists=True,
        )
    elif kind in ("server", "server-s3"):
        blobs = None
        if kind == "server-s3":
            objects = request.getfixturevalue("object_store")
            s3_environment(monkeypatch, objects.endpoint)
            blobs = f"s3://{objects.create_bucket()}/blobs"
        reg = request.getfixturevalue("registry_server")(blobs=blobs)
        storage = storage_for(reg.api_url, token=reg.token, server=True)
        made = Case(kind, storage, presigns=frozenset({"PUT"}))
    else:
        upstream = request.getfixturevalue("upstream_registry")()
        made = Case(
            kind,
            storage_for(upstream.api_url, token=upstream.token),
            presigns=frozenset({"PUT"}),
            publish=upstream_publisher(upstream),
        )
    yield made
    made.storage.close()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ the cases
def test_put_exists_open_round_trip_with_progress(case: Case, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    key = case.key(data, "results/run 1/out.csv")
    assert case.storage.exists(key) is False
    seen: list[int] = []
    source = write(tmp_path / "src", data)
    stored = case.storage.put(source, key, sha1=digest(data), progress=seen.append)
    assert stored.key == key and stored.size == len(data)
    assert seen and seen == sorted(seen) and seen[-1] == len(data)
    assert case.storage.exists(key) is True
    case.readable(key)
    assert b"".join(case.storage.open(key)) == data

    # a stream is a source too; a content-addressed storage sends nothing it holds already
    with open(tmp_path / "src", "rb") as stream:
        again = case.storage.put(stream, key)
    assert again.sent is not case.storage.content_addressed
    assert b"".join(case.storage.open(key)) == data


class Chunks(io.RawIOBase):
    """A stream that cannot seek (bytes arriving from elsewhere, as a migration copies)."""

    def __init__(self, blocks: list[bytes]):
        self.blocks = list(blocks)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.blocks:
            return 0
        block = self.blocks.pop(0)
        size = min(len(buffer), len(block))
        buffer[:size] = block[:size]
        if size < len(block):
            self.blocks.insert(0, block[size:])
        return size


def test_put_from_a_stream_that_cannot_seek(case: Case) -> None:
    blocks = [os.urandom(100_000) for _ in range(5)]
    data = b"".join(blocks)
    key = case.key(data, "streamed/in.bin")
    stream = io.BufferedReader(Chunks(blocks))
    assert not stream.seekable()
    stored = case.storage.put(stream, key, sha1=digest(data))
    assert stored.key == key
    case.readable(key)
    assert b"".join(case.storage.open(key)) == data
    wrong = io.BufferedReader(Chunks([b"not ", b"these"]))
    other = case.key(b"these bytes", "streamed/wrong.bin")
    with pytest.raises(HashMismatch):
        case.storage.put(wrong, other, sha1=digest(b"these bytes"))
    assert case.storage.exists(other) is False


def test_ranges(case: Case, tmp_path: Path) -> None:
    data = bytes(range(256)) * 400
    key = case.key(data, "ranged.bin")
    case.storage.put(write(tmp_path / "src", data), key)
    case.readable(key)
    size = len(data)
    for start, end in ((0, 10), (10, 20), (1000, None), (size - 5, None), (size - 1, size), (7, 7)):
        got = b"".join(case.storage.open(key, start=start, end=end))
        assert got == data[start:end], (start, end)
    assert b"".join(case.storage.open(key, start=size)) == b""


def test_a_missing_key_is_missing(case: Case) -> None:
    key = case.key(b"never stored " + case.kind.encode(), "nothing/here.csv")
    assert case.storage.exists(key) is False
    with pytest.raises(ObjectMissing):
        b"".join(case.storage.open(key))


def test_a_large_file_streams_in_bounded_chunks(case: Case, tmp_path: Path) -> None:
    """20 MiB up and down: progress arrives in many steps, and the bytes come back in
    chunks of at most a few MiB, hashed here as they arrive (never joined)."""
    source = tmp_path / "large.bin"
    expected = hashlib.sha1(usedforsecurity=False)
    with open(source, "wb") as out:
        for i in range(20):
            block = os.urandom(MiB // 2) + bytes([i]) * (MiB // 2)
            expected.update(block)
            out.write(block)
    key = case.key(b"", "large/file.bin") if not case.storage.content_addressed else None
    key = key or expected.hexdigest()
    steps: list[int] = []
    case.storage.put(source, key, sha1=expected.hexdigest(), progress=steps.append)
    assert steps[-1] == 20 * MiB
    increments = [b - a for a, b in zip([0, *steps[:-1]], steps, strict=True)]
    assert len(steps) >= 4 and max(increments) <= 16 * MiB
    case.readable(key)
    got = hashlib.sha1(usedforsecurity=False)
    largest = 0
    for block in case.storage.open(key):
        largest = max(largest, len(block))
        got.update(block)
    assert got.hexdigest() == expected.hexdigest()
    assert largest <= 8 * MiB


def test_wrong_bytes_for_a_sha1_are_refused(case: Case, tmp_path: Path) -> None:
    data = b"the real bytes\n"
    key = case.key(data, "checked.txt")
    with pytest.raises(HashMismatch):
        case.storage.put(write(tmp_path / "src", b"other bytes\n"), key, sha1=digest(data))
    assert case.storage.exists(key) is False


def test_presign(case: Case, tmp_path: Path) -> None:
    data = b"presigned bytes " + case.kind.encode()
    key = case.key(data, "signed/file.txt")
    for method in ("GET", "PUT"):
        if method not in case.presigns:
            with pytest.raises(UnsupportedOperation) as refused:
                case.storage.presign(key, method)
            assert "\n" not in str(refused.value) and case.storage.url in str(refused.value)
    if "PUT" in case.presigns:
        url = case.storage.presign(key, "PUT", expires=600)
        # no credentials of ours: the URL alone lets its holder send the bytes
        assert requests.put(url, data=data, timeout=30).status_code in (200, 201)
        assert case.storage.exists(key)
        if case.storage.content_addressed:
            with pytest.raises(StorageError) as stored:
                case.storage.presign(key, "PUT")
            assert stored.value.status == 409
    else:
        case.storage.put(write(tmp_path / "src", data), key)
    if "GET" in case.presigns:
        url = case.storage.presign(key, "GET", expires=600)
        assert requests.get(url, timeout=30).content == data
        ranged = requests.get(url, headers={"Range": "bytes=3-7"}, timeout=30)
        assert ranged.status_code == 206 and ranged.content == data[3:8]


def test_delete(case: Case, tmp_path: Path) -> None:
    data = b"to be deleted " + case.kind.encode()
    key = case.key(data, "old/file.txt")
    case.storage.put(write(tmp_path / "src", data), key)
    if not case.deletes:
        with pytest.raises(UnsupportedOperation) as refused:
            case.storage.delete(key)
        assert "\n" not in str(refused.value) and "delete" in str(refused.value)
        assert case.storage.exists(key)
        return
    case.storage.delete(key)
    assert case.storage.exists(key) is False
    case.storage.delete(key)  # deleting what is not there is no error
    with pytest.raises(ObjectMissing):
        b"".join(case.storage.open(key))


def test_list_with_prefix(case: Case, tmp_path: Path) -> None:
    if not case.lists:
        with pytest.raises(UnsupportedOperation) as refused:
            list(case.storage.list("ab"))
        assert "\n" not in str(refused.value) and "list" in str(refused.value)
        return
    names = ["a/1.csv", "a/2.csv", "ab.csv", "b/3.csv", "a/deep/4.csv"]
    for name in names:
        case.storage.put(write(tmp_path / "src", name.encode()), name)
    assert sorted(case.storage.list()) == sorted(names)
    assert sorted(case.storage.list("a/")) == ["a/1.csv", "a/2.csv", "a/deep/4.csv"]
    assert sorted(case.storage.list("a")) == ["a/1.csv", "a/2.csv", "a/deep/4.csv", "ab.csv"]
    assert list(case.storage.list("zzz")) == []


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../x", "", "C:evil"])
def test_keys_that_try_to_escape_are_refused(case: Case, tmp_path: Path, key: str) -> None:
    source = write(tmp_path / "src", b"escape")
    with pytest.raises(UnsafePathError):
        case.storage.put(source, key)
    with pytest.raises(UnsafePathError):
        case.storage.exists(key)
    with pytest.raises(UnsafePathError):
        b"".join(case.storage.open(key))
    assert not (tmp_path / "x").exists()


def test_content_addressed_keys_must_be_sha1s(case: Case, tmp_path: Path) -> None:
    if not case.storage.content_addressed:
        pytest.skip(f"{case.kind}: keys are paths")
    with pytest.raises(UnsafePathError, match="SHA-1"):
        case.storage.put(write(tmp_path / "src", b"x"), "results/out.csv")


def test_concurrent_puts_of_one_key_end_with_one_intact_object(case: Case, tmp_path: Path) -> None:
    """Eight threads put to the same key at once (the same bytes where the key is their
    SHA-1, different bytes otherwise): what is stored afterwards is one of them, whole."""
    size = 2 * MiB
    if case.storage.content_addressed:
        bodies = [os.urandom(size)] * 8
    else:
        bodies = [bytes([i]) * size for i in range(8)]
    key = case.key(bodies[0], "contended/file.bin")
    sources = [write(tmp_path / f"src{i}", body) for i, body in enumerate(bodies)]
    start = threading.Barrier(len(sources))

    def put(source: Path) -> None:
        start.wait()
        case.storage.put(source, key)

    with ThreadPoolExecutor(len(sources)) as pool:
        list(pool.map(put, sources))
    case.readable(key)
    stored = b"".join(case.storage.open(key))
    assert stored in set(bodies)
    if case.lists:
        assert list(case.storage.list("contended/")) == [key]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://example.org/files", BadInput),
        ("s3://", BadInput),
        ("s3://bucket/prefix?versionId=1", BadInput),
        ("s3://bucket/../elsewhere", UnsafePathError),
    ],
)
def test_storage_for_refuses_what_it_cannot_open(url: str, expected: type[Exception]) -> None:
    with pytest.raises(expected) as refused:
        storage_for(url)
    assert "\n" not in str(refused.value)
