"""`fdp verify`, `fdp gc`, `doit clean` and `fdp delete`, driven as a user would: `fdp` and
`doit` in subprocesses, real files, our server and the upstream emulation on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from conftest import LiveRegistry
from support import Env, producer, sha1

from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

DAY = 86400


def age(path: Path, days: float) -> None:
    """Set a file's (or a folder's, and everything in it) modification time `days` back."""
    when = time.time() - days * DAY
    targets = [path] if path.is_file() else [p for p in path.rglob("*")] + [path]
    for target in targets:
        os.utime(target, (when, when))


def two_runs(tmp_path: Path) -> Env:
    """A project that ran twice with different outputs: results/partNN@0.0.1 from the older
    run, @0.0.2 from the newer one."""
    env = producer(tmp_path, 2)
    env.fdp("run")
    model = env.project / "model.py"
    env.file("model.py", model.read_text().replace("* repeat)", "* repeat + 'v2')"))
    env.fdp("run", "--force")
    return env


def product_count(env: Env) -> int:
    return len(env.fdp("list").stdout.splitlines())


# ------------------------------------------------------------------------------ verify
def test_verify_finds_a_corrupted_file_of_an_older_run_and_repair_restores_it(
    tmp_path: Path, registry_server: Callable[..., LiveRegistry]
) -> None:
    env = two_runs(tmp_path)
    old = env.data_store / "lab/results/part00/0.0.1.csv"
    new = env.data_store / "lab/results/part00/0.0.2.csv"
    assert old.is_file() and new.is_file() and sha1(old) != sha1(new)
    live = registry_server()
    env.add_remote(live.api_url, live.token_file)
    env.fdp("push")
    clean = env.fdp("verify")
    # with the runs' environment record (one file: the two runs ran in the same one)
    assert clean.stdout.strip().splitlines()[-1].startswith("9 verified, 0 modified, 0 missing")

    good = old.read_bytes()
    old.write_bytes(b"not what the run wrote\n")
    (env.data_store / "lab/results/part01/0.0.1.csv").unlink()
    orphan = env.data_store / "lab/results/part01/stray.csv"
    orphan.write_text("nobody recorded me\n")
    (env.data_store / "lab/results/part01/.0.0.3.csv.abc.part").write_text("half")

    found = env.fdp("verify", check=False)
    assert found.returncode == 1
    lines = found.stdout.splitlines()
    assert any(
        line.startswith("modified") and "lab/results/part00/0.0.1.csv" in line for line in lines
    )
    assert any(
        line.startswith("missing") and "lab/results/part01/0.0.1.csv" in line for line in lines
    )
    assert any(line.startswith("orphaned") and "part01/stray.csv" in line for line in lines)
    assert not any(".part" in line for line in lines)
    assert lines[-1] == "7 verified, 1 modified, 1 missing, 1 orphaned"

    # the remote holds every pushed product with the same bytes: only the local files differ
    remote_check = env.fdp("verify", "--remote", "origin", check=False)
    assert remote_check.returncode == 1
    assert remote_check.stdout.splitlines()[-1].endswith("0 not on remote, 0 differ on remote")

    repaired = env.fdp("verify", "--repair", check=False)
    assert repaired.returncode == 0, repaired.output
    assert old.read_bytes() == good
    kept = [p for p in old.parent.iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == b"not what the run wrote\n"
    assert (env.data_store / "lab/results/part01/0.0.1.csv").is_file()
    assert env.fdp("verify").stdout.splitlines()[-1] == (
        "9 verified, 0 modified, 0 missing, 1 orphaned"
    )


def test_verify_with_a_remote_reports_what_it_lost_or_holds_otherwise(
    tmp_path: Path, registry_server: Callable[..., LiveRegistry]
) -> None:
    env = producer(tmp_path, 2)
    env.fdp("run")
    live = registry_server()
    env.add_remote(live.api_url, live.token_file)
    env.fdp("push")
    ns = live.store.find_one("namespace", {"name": "lab"})
    lost = live.store.find_one("data_product", {"namespace": ns["id"], "name": "results/part00"})
    live.store.delete("data_product", lost["id"])
    other = live.store.find_one("data_product", {"namespace": ns["id"], "name": "results/part01"})
    obj = live.store.get("object", other["object"])
    location = live.store.get("storage_location", obj["storage_location"])
    root = live.store.get("storage_root", location["storage_root"])
    swapped = live.store.create(
        "storage_location",
        {"path": "elsewhere", "hash": "0" * 40, "public": True, "storage_root": root["id"]},
    )
    live.store.patch("object", obj["id"], {"storage_location": swapped["id"]})

    result = env.fdp("verify", "--remote", "origin", check=False)
    assert result.returncode == 1
    assert "not on remote origin: lab:results/part00@0.0.1" in result.stdout
    assert "differs on remote origin: lab:results/part01@0.0.1" in result.stdout
    assert result.stdout.splitlines()[-1].endswith("1 not on remote, 1 differ on remote")


# ---------------------------------------------------------------------------------- gc
def test_gc_lists_then_deletes_old_leftovers_and_keeps_young_ones(tmp_path: Path) -> None:
    env = producer(tmp_path, 1)
    env.fdp("run")
    data = env.data_store
    stray = data / "lab/results/part00/stray.csv"
    stray.write_text("unrecorded\n")
    partial = data / "lab/results/part00/.0.0.2.csv.x1.part"
    partial.write_text("half a file")
    young = data / "lab/results/part00/.0.0.3.csv.x2.part"
    young.write_text("being written now")
    age(stray, 10)
    age(partial, 10)

    listed = env.fdp("gc")
    assert "partial file" in listed.stdout and "unnamed file" in listed.stdout
    assert str(young.name) not in listed.stdout
    assert listed.stdout.splitlines()[-1] == (
        "2 unreferenced (1 partial file, 1 unnamed file; 22 B); 1 younger than 7 days kept; "
        "--yes deletes them"
    )
    assert stray.is_file() and partial.is_file()

    deleted = env.fdp("gc", "--yes")
    assert deleted.stdout.splitlines()[-1] == "2 deleted (22 B); 1 younger than 7 days kept"
    assert not stray.exists() and not partial.exists() and young.is_file()
    # 4 and the run's environment record
    assert env.fdp("verify").stdout.splitlines()[-1].startswith("5 verified, 0 modified")

    (env.project / ".fdp").mkdir(exist_ok=True)
    settings = env.project / ".fdp/settings.yaml"
    current = yaml.safe_load(settings.read_text()) if settings.is_file() else {}
    settings.write_text(yaml.safe_dump({**(current or {}), "gc_retention_days": "soon"}))
    bad = env.fdp("gc", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip() == (
        f"fdp: error: {settings}: gc_retention_days: expected a number of days, 0 or more, "
        "not 'soon'"
    )


SLOW_MODEL = '''\
"""Writes its outputs, then, while the repository holds a file `hold`, waits to be killed
before its session finalises."""
import time
from pathlib import Path
from fdp_tasks.api import Session

with Session() as fdp:
    for item in fdp.config["write"]:
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write(item["data_product"])
    Path(fdp.config_dir, "written").write_text("yes")
    if Path("hold").exists():
        time.sleep(600)
'''


def test_gc_and_doit_clean_remove_what_a_killed_job_left(tmp_path: Path) -> None:
    env = producer(tmp_path, 2, model=SLOW_MODEL)
    hold = env.file("hold", "")
    job = env.start_fdp(
        "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    jobs = env.data_store / "jobs"
    deadline = time.monotonic() + 120
    while not list(jobs.glob("*/written")) and time.monotonic() < deadline:
        assert job.poll() is None, "the job ended before it could be killed"
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    temporaries = sorted((env.data_store / "lab/results").glob("*/dat-*.csv"))
    assert len(temporaries) == 2
    (killed,) = [p for p in jobs.iterdir() if (p / "written").is_file()]

    fresh = env.fdp("gc")
    assert fresh.stdout.splitlines()[-1] == "nothing to delete; 3 younger than 7 days kept"
    for path in [*temporaries, killed]:
        age(path, 8)
    listed = env.fdp("gc").stdout
    assert f"jobs/{killed.name}/" in listed
    assert all(str(p.relative_to(env.data_store)) in listed for p in temporaries)

    # doit clean: the same for the config's outputs (the killed job is in no runs log)
    cleaned = env.doit("clean")
    assert "2 deleted" in cleaned.stdout
    assert not any(p.exists() for p in temporaries) and killed.is_dir()
    env.fdp("gc", "--yes")
    assert not killed.exists()
    hold.unlink()
    ran = env.fdp("run")  # nothing of the killed job is in the way of the next
    assert "job" in ran.executed


# ------------------------------------------------------------------------------ delete
def test_delete_refuses_a_version_a_run_read_and_deletes_one_nothing_uses(
    tmp_path: Path,
) -> None:
    env = producer(tmp_path, 2)
    env.fdp("run")
    run_uuid = env.fdp("list", "runs").stdout.split()[0]
    before = product_count(env)

    refused = env.fdp("delete", "lab:inputs/seed@1.0.0", "--yes", check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"fdp: error: the local registry: lab:inputs/seed@1.0.0 is used by code run "
        f"{run_uuid}: nothing was deleted"
    ]
    assert product_count(env) == before

    trial = env.fdp("delete", "lab:results/part00@0.0.1")
    assert trial.stdout.startswith("would delete lab:results/part00@0.0.1")
    assert product_count(env) == before

    output = env.data_store / "lab/results/part00/0.0.1.csv"
    env.fdp("delete", "lab:results/part00@0.0.1", "--yes")
    assert not output.exists()
    assert "lab:results/part00@0.0.1" not in env.fdp("list").stdout
    assert env.fdp("list", "runs").stdout.split()[0] == run_uuid  # its other output stays

    gone = env.fdp("delete", "lab:results/part01@0.0.1", "--yes")
    assert run_uuid in gone.stdout  # the run left without outputs went with it
    assert env.fdp("list", "runs").stdout.strip() == ""
    assert env.fdp("verify").stdout.splitlines()[-1].endswith("0 missing, 0 orphaned")
    assert "job" in env.fdp("run").executed  # its outputs are gone, so the job runs again


def test_server_deletes_only_its_users_own_versions_that_nothing_uses(
    tmp_path: Path, registry_server: Callable[..., LiveRegistry]
) -> None:
    live = registry_server()
    alice_file, bob_file = tmp_path / "alice.token", tmp_path / "bob.token"
    working_token(live.store, "alice", file=alice_file)
    working_token(live.store, "bob", file=bob_file)
    env = producer(tmp_path, 2)
    env.fdp("run")
    env.add_remote(live.api_url, alice_file)
    env.fdp("push")
    blobs_before = sorted(p.name for p in live.blob_dir.rglob("*") if p.is_file())

    colleague = Env(tmp_path, "colleague")
    colleague.add_remote(live.api_url, bob_file)
    refused = colleague.fdp("delete", "lab:results/part00@0.0.1", "--remote", "--yes", check=False)
    assert refused.returncode == 1
    assert "403" in refused.stderr and "another user" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    in_use = env.fdp("delete", "lab:inputs/seed@1.0.0", "--remote", "origin", "--yes", check=False)
    assert in_use.returncode == 1
    run_uuid = env.fdp("list", "runs").stdout.split()[0]
    assert "409" in in_use.stderr and run_uuid in in_use.stderr

    env.fdp("delete", "lab:results/part00@0.0.1", "--remote", "origin", "--yes")
    ns = live.store.find_one("namespace", {"name": "lab"})
    names = {p["name"] for p in live.store.find("data_product", {"namespace": ns["id"]})}
    assert names == {"inputs/seed", "results/part01"}
    blobs_after = sorted(p.name for p in live.blob_dir.rglob("*") if p.is_file())
    assert len(blobs_after) == len(blobs_before) - 1
    assert sha1(env.data_store / "lab/results/part00/0.0.1.csv") not in blobs_after
    assert "lab:results/part00@0.0.1" in env.fdp("list").stdout  # the local copy stays


def test_an_upstream_registry_is_told_apart_before_anything_is_deleted(
    tmp_path: Path, upstream_registry: Callable[..., object]
) -> None:
    upstream = upstream_registry(object_storage=False)
    store: Store = upstream.store  # type: ignore[attr-defined]
    user = store.ensure_user("admin")
    ns = store.create("namespace", {"name": "lab"}, user_id=user["id"])
    obj = store.create("object", {"description": "a result"}, user_id=user["id"])
    store.create(
        "data_product",
        {"object": obj["id"], "namespace": ns["id"], "name": "results/a", "version": "1.0.0"},
        user_id=user["id"],
    )
    env = Env(tmp_path, "user")
    env.add_remote(upstream.api_url, upstream.token_file)  # type: ignore[attr-defined]
    result = env.fdp("delete", "lab:results/a@1.0.0", "--remote", "--yes", check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not delete data products" in lines[0], result.stderr
    counts = upstream.app.counts  # type: ignore[attr-defined]
    assert not [request for request in counts if request.startswith("DELETE")], counts
    assert store.count("data_product") == 1
