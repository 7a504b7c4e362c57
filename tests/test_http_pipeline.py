"""Pull, run and push over the FAIR Data Pipeline REST API, against real servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from support import (
    SEEDED_MODEL,
    CountingRegistry,
    Env,
    example_repo,
    hold_port,
    reader,
    record_counts,
    sha1,
)
from support import producer as seeded_producer

from fdp_tasks.datastore import DataStore
from fdp_tasks.remotes.http import HttpRemote
from fdp_tasks.remotes.sync import PUSH_BATCH, Pusher
from fdp_tasks.server import serve
from fdp_tasks.store.base import RegistryError
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token


class RemoteServer:
    """A registry server in its own process, which a test can kill and start again.

    The first start binds port 0, and the server records the port it got in its state file;
    a start after a kill binds that port again, which `kill` holds (see support.hold_port)
    from the moment the process is gone, so the push under test reconnects to the same URL.
    """

    def __init__(self, base: Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.db = base / "registry.db"
        store = Store(self.db)
        self.token_file = base / "token"
        self.token = working_token(store, file=self.token_file)
        store.close()
        self.port = 0  # none yet: the first start takes the one the system gives
        self.state = base / "state"
        self._held: socket.socket | None = None

    @property
    def api_url(self) -> str:
        assert self.port, "the server has not started yet"
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server, on its port again if it had one, and let go of that port."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                url = serve.start_background(
                    str(self.db), self.base / "blobs", self.state, port=self.port
                )
                break
            except RegistryError:  # the port is still taken: its old connections closing
                if not self.port or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        port = urlsplit(url).port
        assert port and self.port in (0, port), url
        self.port = port
        self.release()

    def kill(self) -> None:
        """kill -9, as a crash or a pulled plug would; the port stays held for a restart."""
        info = serve.background_status(self.state)
        if info:
            os.kill(info["pid"], signal.SIGKILL)
            while serve.background_status(self.state):
                time.sleep(0.05)
            self._held = hold_port(self.port)

    def release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None

    def store(self) -> Store:
        return Store(self.db)

    def counts(self) -> dict[str, int]:
        return record_counts(self.db)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[RemoteServer]:
    server = RemoteServer(tmp_path / "remote-server")
    server.start()
    yield server
    server.kill()
    server.release()


def producer(tmp_path: Path, outputs: int | list[int] = 2, **kwargs: Any) -> Env:
    """A project that registers a seed file and writes results/partNN, one per output, each
    200 times its name and the seed: enough bytes for a push to take a while."""
    return seeded_producer(tmp_path, outputs, args="200", **kwargs)


def test_round_trip_over_http_with_identical_hashes(tmp_path: Path, remote: RemoteServer) -> None:
    env = producer(tmp_path)
    # the local registry is served by a background server while the job runs
    started = env.fdp("registry", "start", "--port", "0")
    assert "http://127.0.0.1:" in started.stdout
    try:
        assert env.fdp("registry", "status").returncode == 0
        env.doit()
    finally:
        env.fdp("registry", "stop")
    assert env.fdp("registry", "status", check=False).returncode == 3

    env.add_remote(remote.api_url, remote.token_file)
    pushed = env.fdp("push")
    # the first output's push carries its code run and so its sibling output too
    assert pushed.executed == ["push:lab:results/part00@0.0.1"]
    assert "push:lab:results/part01@0.0.1" in pushed.up_to_date
    assert remote.token not in pushed.output
    after_first = remote.counts()
    assert after_first["code_run"] == 1 and after_first["data_product"] == 3

    # Pushing again does nothing; pushing every record again, past the up-to-date checks,
    # meets 409s and creates nothing new.
    assert env.fdp("push").executed == []
    local = Store(env.home / "registry.db")
    with HttpRemote("origin", remote.api_url, remote.token) as again:
        pusher = Pusher(local, DataStore(env.data_store), again)
        for product in local.find("data_product"):
            pusher.push_product(product["id"])
    assert remote.counts() == after_first

    colleague = reader(tmp_path, remote.api_url, ["results/*", "inputs/seed"])
    colleague.fdp("pull")
    for rel in (
        "lab/results/part00/0.0.1.csv",
        "lab/results/part01/0.0.1.csv",
        "lab/inputs/seed/1.0.0.txt",
    ):
        assert sha1(colleague.data_store / rel) == sha1(env.data_store / rel)
    assert colleague.doit().executed == []


def test_push_without_a_token_stops_early_and_a_wrong_token_gets_403(
    tmp_path: Path, remote: RemoteServer
) -> None:
    env = producer(tmp_path, outputs=1)
    env.doit()
    env.fdp("remote", "add", "origin", remote.api_url)
    result = env.fdp("push", check=False)
    assert result.returncode != 0
    assert "FDP_REMOTE_TOKEN_ORIGIN" in result.output, result.output
    assert remote.counts()["data_product"] == 0
    wrong = tmp_path / "wrong-token"
    wrong.write_text("badc0ffee" * 4 + "0123")
    wrong.chmod(0o600)
    env.add_remote(remote.api_url, wrong, name="wrong")
    result = env.fdp("push", "--remote", "wrong", check=False)
    assert result.returncode != 0
    assert "403" in result.output and "badc0ffee" not in result.output, result.output
    assert remote.counts()["data_product"] == 0
    body = {"name": "intruder"}
    assert requests.post(remote.api_url + "namespace/", json=body).status_code == 403
    assert (
        requests.post(
            remote.api_url + "namespace/", json=body, headers={"Authorization": "token " + "0" * 40}
        ).status_code
        == 403
    )


def test_server_restart_in_the_middle_of_a_push(tmp_path: Path, remote: RemoteServer) -> None:
    # records go a batch at a time: with three batches of data products, the server is
    # killed once the first has landed, while the others are still to come
    n = 3 * PUSH_BATCH
    env = producer(tmp_path, outputs=n)
    env.doit()
    env.add_remote(remote.api_url, remote.token_file)
    push = env.start_fdp("push", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while remote.counts()["data_product"] < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert push.poll() is None, "the push finished before the server could be restarted"
    remote.kill()
    time.sleep(1.0)
    remote.start()
    first_output, _ = push.communicate(timeout=300)
    print(first_output)
    env.fdp("push")  # a rerun finishes whatever the first push could not
    store = remote.store()
    local = Store(env.home / "registry.db")
    for i in range(n):
        name = f"results/part{i:02d}"
        ns = store.find_one("namespace", {"name": "lab"})
        product = store.find_one("data_product", {"namespace": ns["id"], "name": name})
        assert product is not None, name
        obj = store.get("object", product["object"])
        theirs = store.get("storage_location", obj["storage_location"])["hash"]
        assert theirs == sha1(env.data_store / f"lab/{name}/0.0.1.csv")
    counts = remote.counts()
    assert counts["code_run"] == 1
    assert counts["data_product"] == n + 1
    objects = store.find("object")
    assert len({o["uuid"] for o in objects}) == len(objects)
    assert counts["object"] == local.count("object")


def test_data_pipeline_api_script_runs_unchanged(tmp_path: Path, remote: RemoteServer) -> None:
    pytest.importorskip("data_pipeline_api")
    pytest.importorskip("matplotlib")
    repo = example_repo(tmp_path, "seirs", "seirs-dpa")
    env = Env(repo / "examples", "seirs-dpa")
    ran = env.fdp("run")
    assert ran.executed == [
        "register:namespace:PSU",
        "register:PSU:SEIRS_model/parameters@1.0.0",
        "job",
    ]
    runs = env.fdp("list", "runs").stdout.splitlines()
    assert len(runs) == 1 and "data-pipeline-api" in runs[0]
    run_uuid = runs[0].split()[0]
    info = json.loads(env.fdp("info", run_uuid, "--json").stdout)
    assert info["inputs"] == ["PSU:SEIRS_model/parameters@1.0.0"]
    assert sorted(info["outputs"]) == [
        "seirs_dpa:SEIRS_model/results/figure/python@0.0.1",
        "seirs_dpa:SEIRS_model/results/model_output/python@0.0.1",
    ]
    csv = json.loads(
        env.fdp("info", "seirs_dpa:SEIRS_model/results/model_output/python", "--json").stdout
    )
    # data-pipeline-api names its outputs by hash, as the reference does
    assert csv["file"].endswith(f"/{csv['sha1']}.csv")
    assert env.fdp("run").executed == []

    env.add_remote(remote.api_url, remote.token_file)
    env.fdp("push")
    store = remote.store()
    assert [r["uuid"] for r in store.find("code_run")] == [run_uuid]
    colleague = reader(tmp_path, remote.api_url, ["SEIRS_model/results/*/python"], "seirs_dpa")
    colleague.fdp("pull")
    pulled = colleague.data_store / "seirs_dpa/SEIRS_model/results/model_output/python/0.0.1.csv"
    assert sha1(pulled) == csv["sha1"]


def reference_like(app):
    """WSGI middleware that ignores `outputs` filters on code_run lists, as the reference
    registry ignores reverse-relation filters: the defect a client must survive."""

    def wrapped(environ, start_response):
        if environ.get("PATH_INFO", "").startswith("/api/code_run"):
            query = [
                p
                for p in environ.get("QUERY_STRING", "").split("&")
                if not p.startswith("outputs=")
            ]
            environ = {**environ, "QUERY_STRING": "&".join(query)}
        return app(environ, start_response)

    return wrapped


def test_pull_from_a_registry_that_ignores_filters(tmp_path: Path) -> None:
    registry = CountingRegistry(tmp_path / "ref", wrap=reference_like)
    store, api = registry.store, registry.api_url
    try:
        env = producer(tmp_path, outputs=3)
        env.doit()
        env.add_remote(api, registry.token_file)
        env.fdp("push")
        # another run on the registry, which the ignored filter lets through
        script = store.create("object", {"description": "someone else's script"})
        store.create(
            "code_run",
            {
                "run_date": "2026-01-01",
                "description": "unrelated",
                "submission_script": script["id"],
            },
        )
        colleague = reader(tmp_path, api, ["results/*"])
        pulled = colleague.fdp("pull")
        assert "ignores code_run filters" in pulled.output
        for i in range(3):
            rel = f"lab/results/part{i:02d}/0.0.1.csv"
            assert sha1(colleague.data_store / rel) == sha1(env.data_store / rel)
    finally:
        registry.stop()


def test_a_dedicated_shared_registry_with_a_token_per_user(tmp_path: Path) -> None:
    admin = Env(tmp_path, "admin")
    db = tmp_path / "shared" / "registry.db"
    token_file = Path(
        admin.fdp("registry", "token", "--db", str(db), "--user", "alice").stdout.strip()
    )
    assert token_file == tmp_path / "shared" / "alice.token"
    assert oct(token_file.stat().st_mode & 0o777) == "0o600"
    again = admin.fdp("registry", "token", "--db", str(db), "--user", "alice", "--show")
    assert again.stdout.strip() == token_file.read_text().strip()  # kept, not replaced
    url = admin.fdp(
        "registry",
        "start",
        "--db",
        str(db),
        "--blobs",
        str(tmp_path / "shared" / "blobs"),
        "--port",
        "0",
    ).stdout.strip()
    try:
        assert admin.fdp("registry", "status", "--db", str(db)).returncode == 0
        assert admin.fdp("registry", "status", check=False).returncode == 3  # not the local one
        alice = producer(tmp_path, outputs=1)
        alice.doit()
        alice.fdp("remote", "add", "origin", url, "--token-file", str(token_file))
        alice.fdp("push")
        store = Store(db)
        run = store.find("code_run")[0]
        assert store.get("users", run["updated_by"])["username"] == "alice"
    finally:
        admin.fdp("registry", "stop", "--db", str(db))
    assert admin.fdp("registry", "status", "--db", str(db), check=False).returncode == 3


def test_push_to_an_unreachable_remote_fails_in_one_line(tmp_path: Path, refused_url: str) -> None:
    env = producer(tmp_path, outputs=3)
    env.doit()
    env.add_remote(refused_url)
    result = env.fdp("push", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.output
    assert result.output.count("no answer from the registry") == 1
    assert result.executed == []  # found before any item ran
    # through doit, every item still fails, and the message is said once
    kept_going = env.doit("run", "--continue", "push", check=False)
    assert kept_going.returncode != 0 and len(kept_going.executed) == 3
    assert kept_going.output.count("no answer from the registry") == 1
    unknown = env.fdp("push", "--remote", "nosuch", check=False)
    assert unknown.returncode != 0 and "Traceback" not in unknown.output
    assert "remote 'nosuch' is not configured" in unknown.output


def test_status_compares_with_the_remote(tmp_path: Path, remote: RemoteServer) -> None:
    env = producer(tmp_path, outputs=1)
    env.doit()
    env.add_remote(remote.api_url, remote.token_file)
    env.fdp("push")
    colleague = reader(tmp_path, remote.api_url, ["results/*"])
    colleague.fdp("pull")
    env.file("model.py", SEEDED_MODEL + "# v2\n")
    env.fdp("run")
    env.fdp("push")  # results/part00@0.0.2
    rows = {r["task"]: r for r in json.loads(colleague.fdp("status", "--json").stdout)}
    assert rows["pull:lab:results/*"]["state"] == "remote-newer"
    assert "results/part00@0.0.2" in rows["pull:lab:results/*"]["reason"]
    dry = colleague.fdp("pull", "--dry-run").stdout
    assert "remote-newer" in dry
    pulled = colleague.fdp("pull")
    assert "pulled lab:results/part00@0.0.2" in pulled.stdout
    again = colleague.fdp("pull")
    assert "nothing newer" in again.stdout and "pulled" not in again.stdout


def test_token_files_must_exist_and_be_private(tmp_path: Path, remote: RemoteServer) -> None:
    env = producer(tmp_path, outputs=1)
    env.doit()
    missing = env.fdp(
        "remote",
        "add",
        "origin",
        remote.api_url,
        "--token-file",
        str(tmp_path / "nope"),
        check=False,
    )
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    loose = tmp_path / "loose.token"
    loose.write_text(remote.token + "\n")
    loose.chmod(0o644)
    refused = env.fdp(
        "remote", "add", "origin", remote.api_url, "--token-file", str(loose), check=False
    )
    assert refused.returncode == 2, refused.output
    assert refused.stderr.strip() == (
        f"fdp: error: --token-file: {loose} is readable by other users (mode 644); run "
        f"`chmod 600 {loose}`"
    )
    loose.chmod(0o600)
    env.fdp("remote", "add", "origin", remote.api_url, "--token-file", str(loose))
    loose.chmod(0o640)  # loosened after it was added: refused when read
    result = env.fdp("push", check=False)
    assert result.returncode != 0
    assert "readable by other users" in result.output and "chmod 600" in result.output
    assert remote.token not in result.output


def test_non_public_outputs_are_not_uploaded(tmp_path: Path, remote: RemoteServer) -> None:
    env = producer(tmp_path, outputs=2)
    config = yaml.safe_load((env.project / "config.yaml").read_text())
    config["write"][1]["public"] = False
    env.config(config)
    env.doit()
    env.add_remote(remote.api_url, remote.token_file)
    env.fdp("push")
    store = remote.store()
    secret = sha1(env.data_store / "lab/results/part01/0.0.1.csv")
    shared = sha1(env.data_store / "lab/results/part00/0.0.1.csv")
    assert (remote.base / "blobs" / shared[:2] / shared).is_file()
    assert not (remote.base / "blobs" / secret[:2] / secret).exists()
    location = store.find_one("storage_location", {"hash": secret})
    assert location["public"] is False  # the record is there; the bytes stayed home
    assert store.get("storage_root", location["storage_root"])["root"].startswith("file://")


def test_a_conflicting_sibling_stops_the_push_before_anything_is_sent(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    rival = producer(
        tmp_path, outputs=[1], name="rival", inputs={"seed": "another seed\n"}, version="2.0.0"
    )
    rival.doit()
    rival.fdp("remote", "add", "origin", str(shared))
    rival.fdp("push")
    before = record_counts(shared / "registry.db")

    env = producer(tmp_path, outputs=2)
    env.doit()
    env.fdp("remote", "add", "origin", str(shared))
    result = env.fdp("push", check=False)
    assert result.returncode != 0
    assert "lab:results/part01@0.0.1 already exists there with different content" in (result.output)
    assert record_counts(shared / "registry.db") == before
