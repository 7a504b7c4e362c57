"""The core, end to end: config -> doit tasks over the embedded registry and data store."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from support import REPO, WRITER_SCRIPT, Env, example_repo, register_only, sha1

from fdp_tasks.store.sql import Store


def pipeline_config(versions: dict[str, str] | None = None) -> dict:
    versions = {"a": "1.0.0", "b": "1.0.0", **(versions or {})}
    register = [{"namespace": "test", "full_name": "Test namespace"}]
    for name in ("a", "b"):
        register.append(
            {
                "external_object": f"inputs/{name}",
                "namespace_name": "test",
                "root": "${{REPO_DIR}}/raw/",
                "path": f"{name}.csv",
                "title": f"input {name}",
                "description": f"input {name}",
                "identifier": f"https://example.org/{name}",
                "file_type": "csv",
                "version": versions[name],
            }
        )
    return {
        "run_metadata": {
            "description": "pipeline test",
            "default_input_namespace": "test",
            "default_output_namespace": "test",
            "shell": "python",
            "script_path": "model.py",
        },
        "register": register,
        "write": [{"data_product": "out/summary", "description": "line count", "file_type": "csv"}],
    }


@pytest.fixture
def env(tmp_path: Path) -> Env:
    env = Env(tmp_path)
    env.file("raw/a.csv", "x\n1\n2\n")
    env.file("raw/b.csv", "y\n3\n")
    env.file("model.py", WRITER_SCRIPT)
    env.config(pipeline_config())
    return env


def store_of(env: Env) -> Store:
    return Store(env.home / "registry.db")


def test_first_run_registers_runs_and_second_run_does_nothing(env: Env) -> None:
    first = env.doit()
    assert sorted(first.executed) == [
        "job",
        "register:namespace:test",
        "register:test:inputs/a@1.0.0",
        "register:test:inputs/b@1.0.0",
    ]
    out = env.data_store / "test/out/summary/0.0.1.csv"
    assert out.read_text().startswith("lines,5")
    second = env.doit()
    assert second.executed == []
    assert sorted(second.up_to_date) == sorted(first.executed)
    status = json.loads(env.fdp("status", "--json").stdout)
    assert {row["state"] for row in status if not row["task"].startswith("push")} == {"up-to-date"}


def test_editing_one_read_item_reruns_only_what_depends_on_it(env: Env) -> None:
    env.doit()
    env.file("raw/b.csv", "y\n3\n4\n")
    env.config(pipeline_config({"b": "1.1.0"}))
    result = env.doit()
    assert sorted(result.executed) == ["job", "register:test:inputs/b@1.1.0"]
    assert "register:test:inputs/a@1.0.0" in result.up_to_date
    assert (env.data_store / "test/out/summary/0.0.2.csv").read_text().startswith("lines,6")
    assert env.doit().executed == []


def test_deleting_a_data_store_file_recreates_just_that(env: Env) -> None:
    env.doit()
    registered = env.data_store / "test/inputs/a/1.0.0.csv"
    before = sha1(registered)
    registered.unlink()
    result = env.doit()
    assert result.executed == ["register:test:inputs/a@1.0.0"]
    assert sha1(registered) == before


def test_deleting_a_registry_entry_recreates_just_that(env: Env) -> None:
    env.doit()
    store = store_of(env)
    ns = store.find_one("namespace", {"name": "test"})
    product = store.find_one("data_product", {"namespace": ns["id"], "name": "inputs/b"})
    for ext in product["external_object"]:
        store.delete("external_object", ext)
    store.delete("data_product", product["id"])
    store.close()
    result = env.doit()
    assert result.executed == ["register:test:inputs/b@1.0.0"]
    store = store_of(env)
    again = store.find_one("data_product", {"namespace": ns["id"], "name": "inputs/b"})
    assert again is not None and again["external_object"]


def test_code_run_provenance_is_recorded(env: Env) -> None:
    env.doit()
    runs = env.fdp("list", "runs").stdout.split()
    run_uuid = runs[0]
    info = json.loads(env.fdp("info", run_uuid, "--json").stdout)
    assert sorted(info["inputs"]) == ["test:inputs/a@1.0.0", "test:inputs/b@1.0.0"]
    assert info["outputs"] == ["test:out/summary@0.0.1"]
    product = json.loads(env.fdp("info", "test:out/summary@0.0.1", "--json").stdout)
    assert product["made_by"] == [run_uuid]
    assert product["sha1"] == sha1(env.data_store / "test/out/summary/0.0.1.csv")
    source = json.loads(env.fdp("info", "test:inputs/a", "--json").stdout)
    assert source["read_by"] == [run_uuid]
    assert source["external_object"]["identifier"] == "https://example.org/a"
    # the config, script and code repo are recorded as objects of the run
    store = store_of(env)
    run = store.find_one("code_run", {"uuid": run_uuid})
    config_obj = store.get("object", run["model_config"])
    location = store.get("storage_location", config_obj["storage_location"])
    job_config = env.data_store / location["path"]
    assert yaml.safe_load(job_config.read_text())["write"][0]["use"]["version"] == "0.0.1"
    assert location["hash"] == sha1(job_config)
    assert store.get("object", run["submission_script"])["storage_location"]


def test_failed_script_registers_nothing_and_leaves_no_output(env: Env) -> None:
    env.file(
        "model.py",
        "from fdp_tasks.api import Session\n"
        "with Session() as s:\n"
        "    open(s.write('out/summary'), 'w').write('partial')\n"
        "    raise SystemExit('model diverged')\n",
    )
    result = env.doit(check=False)
    assert result.returncode != 0
    assert "exited with status 1" in result.output
    assert env.fdp("list", "runs").stdout == ""
    assert not (env.data_store / "test/out").exists() or not any(
        p.is_file() for p in (env.data_store / "test/out").rglob("*")
    )
    env.file("model.py", WRITER_SCRIPT)
    assert env.doit().executed == ["job"]


def test_resolve_versions_and_globs(env: Env) -> None:
    env.doit()
    cfg = pipeline_config()
    cfg["read"] = [{"data_product": "inputs/*"}]
    cfg["run_metadata"]["default_write_version"] = "${{MINOR}}"
    env.config(cfg, "glob.yaml")
    working = yaml.safe_load(env.fdp("resolve", "glob.yaml").stdout)
    reads = {r["data_product"]: r["use"]["version"] for r in working["read"]}
    assert reads == {"inputs/a": "1.0.0", "inputs/b": "1.0.0"}
    assert working["write"][0]["use"]["version"] == "0.1.0"  # MINOR of 0.0.1
    assert working["run_metadata"]["write_data_store"] == str(env.data_store) + "/"
    cfg["read"] = [{"data_product": "nothing/*"}]
    env.config(cfg, "glob.yaml")
    bad = env.fdp("resolve", "glob.yaml", check=False)
    assert bad.returncode == 2
    assert "read[0]" in bad.stderr and "nothing/*" in bad.stderr


def test_push_to_directory_remote_and_pull_into_fresh_registry(env: Env, tmp_path: Path) -> None:
    env.doit()
    remote = tmp_path / "shared-remote"
    env.fdp("remote", "add", "origin", str(remote))
    pushed = env.fdp("push")
    assert sorted(pushed.executed) == ["push:test:out/summary@0.0.1"]
    assert env.fdp("push").executed == []

    other = Env(tmp_path, "colleague")
    other.config(
        {
            "run_metadata": {"description": "reuse", "default_input_namespace": "test"},
            "read": [{"data_product": "out/summary"}, {"data_product": "inputs/*"}],
        }
    )
    other.fdp("remote", "add", "origin", str(remote))
    pulled = other.fdp("pull")
    assert sorted(pulled.executed) == ["pull:test:inputs/*", "pull:test:out/summary"]
    for rel in ("test/out/summary/0.0.1.csv", "test/inputs/a/1.0.0.csv", "test/inputs/b/1.0.0.csv"):
        assert sha1(other.data_store / rel) == sha1(env.data_store / rel)
    info = json.loads(other.fdp("info", "test:out/summary@0.0.1", "--json").stdout)
    assert info["sha1"] == sha1(env.data_store / "test/out/summary/0.0.1.csv")
    # the provenance came along: the code run that made it, with its inputs
    producer_run = env.fdp("list", "runs").stdout.split()[0]
    assert info["made_by"] == [producer_run]
    run_info = json.loads(other.fdp("info", producer_run, "--json").stdout)
    assert sorted(run_info["inputs"]) == ["test:inputs/a@1.0.0", "test:inputs/b@1.0.0"]
    assert other.doit().executed == []
    # the remote holds the provenance: the run, its config and script, and its inputs
    remote_store = Store(remote / "registry.db")
    assert len(remote_store.find("code_run")) == 1
    run = remote_store.find("code_run")[0]
    # the two inputs and the run's environment record (fdp_tasks.environment)
    assert len(run["inputs"]) == 3 and len(run["outputs"]) == 1
    assert remote_store.find("external_object")


def test_pull_without_remote_is_a_clear_error(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.config(
        {
            "run_metadata": {"description": "x", "default_input_namespace": "test"},
            "read": [{"data_product": "missing/thing", "use": {"version": "1.0.0"}}],
        }
    )
    result = env.doit(check=False)
    assert result.returncode != 0
    assert "remote" in result.output and "fdp remote add" in result.output


def test_seirs_example_runs_and_second_run_is_up_to_date(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    repo = example_repo(tmp_path, "seirs")
    example = repo / "examples" / "seirs"
    env = Env(repo / "examples", "seirs")
    shutil.copyfile(REPO / "examples/seirs/dodo.py", example / "dodo.py")  # the example's own
    first = env.doit()
    assert "job" in first.executed
    second = env.doit()
    assert second.executed == []
    assert len(second.up_to_date) == len(first.executed)
    png = env.data_store / "seirs_example/SEIRS_model/results/figure/python/0.0.1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (
        (env.data_store / "seirs_example/SEIRS_model/results/model_output/python/0.0.1.csv")
        .read_text()
        .splitlines()
    )
    assert rows[0] == "time,S,E,I,R" and len(rows) == 1002
    env.doit("push")
    assert (example / "remote/registry.db").is_file()


def test_identical_outputs_share_one_file_and_a_deleted_one_heals(env: Env) -> None:
    env.doit()
    first = env.data_store / "test/out/summary/0.0.1.csv"
    content = first.read_bytes()
    first.unlink()
    assert env.doit().executed == ["job"]  # the output is gone: the job runs again
    # the rerun wrote the same bytes: they went back to the recorded file, not a copy
    assert first.read_bytes() == content
    assert not (env.data_store / "test/out/summary/0.0.2.csv").exists()
    assert env.doit().executed == []
    for version in ("0.0.1", "0.0.2"):
        info = json.loads(env.fdp("info", f"test:out/summary@{version}", "--json").stdout)
        assert info["file"].endswith("/test/out/summary/0.0.1.csv")
        assert info["sha1"] == sha1(first)


def test_a_changed_source_of_a_registered_version_is_an_error(env: Env) -> None:
    env.doit()
    env.file("raw/a.csv", "x\n1\n2\n3\n")
    result = env.doit(check=False)
    assert result.returncode != 0
    assert "test:inputs/a@1.0.0 is already registered" in result.output
    assert "register it as a new version" in result.output
    # nothing was overwritten: the registered file still has the registered bytes
    info = json.loads(env.fdp("info", "test:inputs/a@1.0.0", "--json").stdout)
    assert sha1(env.data_store / "test/inputs/a/1.0.0.csv") == info["sha1"]
    env.config(pipeline_config({"a": "1.0.1"}))
    assert sorted(env.doit().executed) == ["job", "register:test:inputs/a@1.0.1"]


def test_status_says_why_the_job_would_run(env: Env) -> None:
    env.doit()
    env.file("model.py", WRITER_SCRIPT + "# tuned\n")
    env.file("raw/b.csv", "y\n3\n4\n")
    env.config(pipeline_config({"b": "1.1.0"}))
    env.doit("register")
    rows = {r["task"]: r for r in json.loads(env.fdp("status", "--json").stdout)}
    reason = rows["job"]["reason"]
    assert rows["job"]["state"] == "will-run"
    assert "model.py changed" in reason
    assert "new input test:inputs/b@1.1.0" in reason
    assert "input test:inputs/b@1.0.0 no longer read" in reason
    assert rows["push:test:out/summary@0.0.1"]["state"] == "unknown"
    assert "not configured" in rows["push:test:out/summary@0.0.1"]["reason"]


def test_push_pushes_what_exists_and_picks_the_remote(env: Env, tmp_path: Path) -> None:
    env.doit()
    env.fdp("remote", "add", "origin", str(tmp_path / "origin"))
    env.fdp("remote", "add", "backup", str(tmp_path / "backup"))
    env.file("model.py", WRITER_SCRIPT + "# edited, not yet run\n")
    pushed = env.fdp("push", "--remote", "backup")
    assert "job" not in pushed.executed  # pushing never runs the model first
    assert pushed.executed == ["push:test:out/summary@0.0.1"]
    assert (tmp_path / "backup/registry.db").is_file()
    assert not (tmp_path / "origin/registry.db").exists()
    listed = env.fdp("remote", "list").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["origin", "backup"]
    status = json.loads(env.fdp("status", "--json", "--remote", "backup").stdout)
    assert {r["state"] for r in status if r["task"].startswith("push:")} == {"pushed"}


def pushed_elsewhere(tmp_path: Path, name: str, a: str, b: str, remote: Path) -> Env:
    """Another user's run of the same pipeline on other inputs, pushed to `remote`."""
    other = Env(tmp_path, name)
    other.file("raw/a.csv", a)
    other.file("raw/b.csv", b)
    other.file("model.py", WRITER_SCRIPT)
    other.config(pipeline_config())
    other.doit()
    other.fdp("remote", "add", "origin", str(remote))
    other.fdp("push")
    return other


def test_push_never_overwrites_a_different_remote_version(env: Env, tmp_path: Path) -> None:
    remote = tmp_path / "shared"
    env.doit()
    rival = pushed_elsewhere(tmp_path, "rival", "x\n9\n", "y\n8\n7\n6\n5\n", remote)
    before = Store(remote / "registry.db").count("data_product")

    env.fdp("remote", "add", "origin", str(remote))
    result = env.fdp("push", check=False)
    assert result.returncode != 0
    assert "already exists there with different content" in result.output
    assert "pull, then write your result as a new version" in result.output
    remote_store = Store(remote / "registry.db")
    assert remote_store.count("data_product") == before
    theirs = remote / "data/test/out/summary/0.0.1.csv"
    assert theirs.read_bytes() == (rival.data_store / "test/out/summary/0.0.1.csv").read_bytes()
    assert (env.data_store / "test/out/summary/0.0.1.csv").read_text().startswith("lines,5")


def test_register_from_an_http_root(tmp_path: Path) -> None:
    import functools
    import http.server
    import threading

    served = tmp_path / "www"
    served.mkdir()
    (served / "params.csv").write_text("param,value\nR0,3\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = Env(tmp_path)
        config = register_only_config(f"http://127.0.0.1:{httpd.server_port}/", "params.csv")
        env.config(config)
        assert env.doit().executed == ["register:test:web/params@1.0.0"]
        info = json.loads(env.fdp("info", "test:web/params@1.0.0", "--json").stdout)
        assert info["sha1"] == sha1(served / "params.csv")
        assert env.doit().executed == []
        config["register"][0]["path"] = "missing.csv"
        config["register"][0]["version"] = "2.0.0"
        env.config(config)
        failed = env.doit(check=False)
        assert failed.returncode != 0 and "404" in failed.output
    finally:
        httpd.shutdown()


def register_only_config(root: str, path: str) -> dict:
    return register_only(root, path, "web/params", identifier="https://doi.org/10.0000/example")


def test_run_force_reruns_an_up_to_date_job(env: Env) -> None:
    env.doit()
    assert env.fdp("run").executed == []
    assert env.fdp("run", "--force").executed == ["job"]
    assert env.doit("force=1").executed == ["job"]
    assert env.doit("force=0").executed == []  # as `force=no`: the job stays up to date


def test_the_pull_tasks_are_the_reads_as_resolution_resolves_them(env: Env) -> None:
    """Variables in read names and versions expand as in the working config, a read of
    what the config registers is not pulled, and a missing read is named by its key."""
    config = pipeline_config()
    config["run_metadata"]["default_read_version"] = "0.${{DATE}}.0"
    config["read"] = [
        {"data_product": "inputs/a"},
        {"data_product": "params/d${{DATE}}"},
        {"data_product": "other", "use": {"namespace": "elsewhere", "version": "2.0.${{DATE}}"}},
    ]
    env.config(config)
    today = datetime.now().strftime("%Y%m%d")
    rows = json.loads(env.fdp("status", "--json").stdout)
    pulls = {r["task"]: r["reason"] for r in rows if r["task"].startswith("pull:")}
    assert sorted(pulls) == [
        f"pull:elsewhere:other@2.0.{today}",
        f"pull:test:params/d{today}@0.{today}.0",
    ]
    assert pulls[f"pull:test:params/d{today}@0.{today}.0"].startswith(
        "read[1]: not in the local registry"
    )
    assert pulls[f"pull:elsewhere:other@2.0.{today}"].startswith(
        "read[2].use.version: not in the local registry"
    )


def test_status_shows_a_job_that_will_fail(env: Env) -> None:
    env.doit()
    cfg = pipeline_config()
    cfg["write"][0]["use"] = {"version": "0.0.1"}  # exists already
    env.config(cfg)
    rows = {r["task"]: r for r in json.loads(env.fdp("status", "--json").stdout)}
    assert rows["job"]["state"] == "will-fail"
    assert "test:out/summary@0.0.1 already exists" in rows["job"]["reason"]
    (env.data_store / "test/inputs/b/1.0.0.csv").unlink()
    rows = {r["task"]: r for r in json.loads(env.fdp("status", "--json").stdout)}
    assert rows["register:test:inputs/b@1.0.0"]["reason"] == (
        "its file is missing or modified in the data store"
    )


def test_a_download_cut_short_resumes_with_range(tmp_path: Path) -> None:
    import http.server
    import threading

    body = bytes(range(256)) * 4096  # 1 MiB
    ranges: list[str] = []

    class Flaky(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            wanted = self.headers.get("Range")
            ranges.append(wanted or "")
            if not wanted:  # promise everything, send half, hang up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.close()
                return
            start = int(wanted.split("=")[1].rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        env = Env(tmp_path)
        env.config(register_only_config(f"http://127.0.0.1:{httpd.server_port}/", "big.bin"))
        env.doit()
        registered = env.data_store / "test/web/params/1.0.0.csv"
        assert registered.read_bytes() == body
        assert ranges[0] == "" and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    finally:
        httpd.shutdown()


def test_pull_refuses_a_remote_version_that_differs_from_the_local_one(
    env: Env, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    pushed_elsewhere(tmp_path, "other", "x\n100\n", "y\n3\n", shared)

    env.doit()
    mine = env.data_store / "test/inputs/a/1.0.0.csv"
    mine.unlink()
    env.fdp("remote", "add", "origin", str(shared))
    env.config(
        {
            "run_metadata": {"description": "r", "default_input_namespace": "test"},
            "read": [{"data_product": "inputs/a", "use": {"version": "1.0.0"}}],
        },
        "reader.yaml",
    )
    result = env.fdp("pull", "reader.yaml", check=False)
    assert result.returncode != 0
    assert "is in the local registry with other content" in result.output
    assert not mine.exists()  # the remote's bytes were not put in its place
    store = Store(env.home / "registry.db")
    assert store.count("data_product") == 3  # a, b and the output: nothing added
