"""Project set-up, safety of paths from configs and registries, and concurrent registry use."""

from __future__ import annotations

import hashlib
import stat
import subprocess
import sys
from pathlib import Path

from support import REPO, Env

from fdp_tasks.datastore import DataStore
from fdp_tasks.store.sql import Store


def test_init_makes_a_project_that_runs(tmp_path: Path) -> None:
    env = Env(tmp_path)
    (env.project / "dodo.py").unlink()
    out = env.fdp(
        "init",
        ".",
        "--name",
        "Ada Lovelace",
        "--namespace",
        "ada",
        "--identifier",
        "https://orcid.org/0000-0002-1825-0097",
    )
    assert "token file" in out.stdout
    for name in ("config.yaml", "dodo.py", "model.py", ".fdp/settings.yaml"):
        assert (env.project / name).is_file(), name
    token = env.home / "token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert token.read_text().strip() not in out.output
    assert env.doit().executed == ["job"]
    assert env.doit().executed == []
    info = env.fdp("info", "ada:results/output@0.0.1").stdout
    assert "Ada Lovelace" in info
    # init again keeps the user's files
    (env.project / "model.py").write_text("# mine\n")
    env.fdp("init", ".")
    assert (env.project / "model.py").read_text() == "# mine\n"


ONE_OUTPUT = {
    "run_metadata": {
        "description": "x",
        "default_output_namespace": "x",
        "script": "python3 ${{REPO_DIR}}/model.py",
    },
    "write": [{"data_product": "out", "file_type": "txt"}],
}


def register_config(path: str) -> dict:
    return {
        "run_metadata": {
            "description": "escape",
            "default_input_namespace": "x",
            "default_output_namespace": "x",
        },
        "register": [
            {
                "external_object": "sneaky",
                "namespace_name": "x",
                "root": "${{REPO_DIR}}/raw/",
                "path": path,
                "file_type": "txt",
                "version": "1.0.0",
                "title": "t",
                "unique_name": "u",
                "alternate_identifier_type": "local",
            }
        ],
    }


def test_register_path_cannot_leave_its_root(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.file("secret.txt", "do not read\n")
    env.file("raw/ok.txt", "fine\n")
    env.config(register_config("../secret.txt"))
    result = env.doit(check=False)
    assert result.returncode != 0
    assert "would leave" in result.output
    assert not (env.data_store / "x").exists()


def test_pulled_registry_path_cannot_escape_the_store(tmp_path: Path) -> None:
    remote = tmp_path / "evil-remote"
    store = Store(remote / "registry.db")
    root = store.create("storage_root", {"root": DataStore(remote / "data").uri})
    loc = store.create(
        "storage_location",
        {"path": "../../../outside.txt", "hash": "a" * 40, "storage_root": root["id"]},
    )
    obj = store.create("object", {"storage_location": loc["id"]})
    ns = store.create("namespace", {"name": "x"})
    store.create(
        "data_product",
        {"object": obj["id"], "namespace": ns["id"], "name": "thing", "version": "1.0.0"},
    )
    store.close()
    (tmp_path / "outside.txt").write_text("outside\n")
    env = Env(tmp_path)
    env.config(
        {
            "run_metadata": {"description": "x", "default_input_namespace": "x"},
            "read": [{"data_product": "thing", "use": {"version": "1.0.0"}}],
        }
    )
    env.fdp("remote", "add", "origin", str(remote))
    result = env.fdp("pull", check=False)
    assert result.returncode != 0
    assert "would leave" in result.output
    assert not (env.data_store / "x").exists()


WRITER = """
import sys
from fdp_tasks.store.sql import Store
store = Store(sys.argv[1])
for i in range(150):
    ns = store.create("namespace", {"name": f"{sys.argv[2]}-{i}"})
    obj = store.create("object", {"description": "x"})
    store.create("data_product", {"object": obj["id"], "namespace": ns["id"],
                                  "name": "p", "version": "1.0.0"})
"""


def test_two_processes_share_one_registry(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    Store(db).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), name],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    store = Store(db)
    assert store.count("data_product") == 300
    assert store.count("object_component") == 300


def test_failure_while_recording_leaves_nothing_half_written(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.file(
        "model.py",
        "from fdp_tasks.api import Session\n"
        "with Session() as fdp:\n"
        "    open(fdp.write('out'), 'w').write('data')\n"
        "    fdp.raise_issue('bad', 3, data_product='not-in-this-run')\n",
    )
    env.config(ONE_OUTPUT)
    result = env.doit(check=False)
    assert result.returncode != 0
    assert "not-in-this-run" in result.output
    store = Store(env.home / "registry.db")
    assert store.count("code_run") == 0
    assert store.count("data_product") == 0
    assert store.count("object") == 0
    assert not [p for p in (env.data_store / "x").rglob("*") if p.is_file()]


def test_small_commands_print_what_scripts_need(tmp_path: Path) -> None:
    env = Env(tmp_path)
    token = env.fdp("registry", "token", "--show").stdout
    assert token.strip() == (env.home / "token").read_text().strip()
    assert len(token.strip()) == 40 and token.count("\n") == 1
    env.config(
        {
            "run_metadata": {
                "description": "x",
                "default_input_namespace": "x",
                "remote_data_registry_url": "../shared",
            },
            "read": [{"data_product": "a", "use": {"version": "1.0.0"}}],
        }
    )
    listed = env.fdp("remote", "list").stdout
    assert listed.startswith("origin\t../shared\t(run_metadata.remote_data_registry_url")
    env.file(
        "model.py",
        "from fdp_tasks.api import Session\n"
        "with Session() as fdp:\n"
        "    open(fdp.write('out'), 'w').write('1')\n",
    )
    env.config(ONE_OUTPUT)
    env.doit()
    store = Store(env.home / "registry.db")
    product = store.find_one("data_product", {"name": "out"})
    object_uuid = store.get("object", product["object"])["uuid"]
    info = env.fdp("info", object_uuid).stdout
    assert "x:out@0.0.1" in info


def test_symlinks_cannot_lead_out_of_the_data_store(tmp_path: Path) -> None:
    import pytest

    from fdp_tasks.errors import UnsafePathError

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("x")
    root = tmp_path / "store"
    (root / "ns").mkdir(parents=True)
    (root / "ns" / "link").symlink_to(outside)
    (root / "ns" / "file.csv").symlink_to(outside / "secret.csv")
    store = DataStore(root)
    assert store.path("ns/name/1.0.0.csv") == root / "ns/name/1.0.0.csv"
    for rel in ("ns/link/secret.csv", "ns/file.csv", "../outside/secret.csv", "/etc/passwd"):
        with pytest.raises(UnsafePathError):
            store.path(rel)


CRASHING_MODEL = """
import os
from fdp_tasks.api import Session

with Session() as fdp:
    open(fdp.write("out"), "w").write("{content}")
    if {crash}:
        os.fsync = lambda fd: os._exit(9)  # dies after the files moved, before the commit
"""


def test_a_crash_while_finalising_leaves_no_records_and_a_rerun_completes(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.config(ONE_OUTPUT)
    env.file("model.py", CRASHING_MODEL.format(content="first", crash=True))
    crashed = env.doit(check=False)
    assert crashed.returncode != 0 and "status 9" in crashed.output
    store = Store(env.home / "registry.db")
    assert store.count("data_product") == 0 and store.count("code_run") == 0
    assert (env.data_store / "x/out/0.0.1.txt").read_text() == "first"  # unreferenced
    env.file("model.py", CRASHING_MODEL.format(content="second", crash=False))
    rerun = env.doit()
    assert rerun.executed == ["job"]
    # the file nothing refers to is never overwritten: the rerun takes the next version
    assert (env.data_store / "x/out/0.0.1.txt").read_text() == "first"
    assert "keeping them and writing out@0.0.2" in rerun.output
    info = env.fdp("info", "x:out@0.0.2").stdout
    assert (env.data_store / "x/out/0.0.2.txt").read_text() == "second"
    assert hashlib.sha1(b"second").hexdigest() in info
    assert env.doit().executed == []
