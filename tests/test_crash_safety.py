"""Crash safety of `fdp run`: one job per config at a time, a run that is all or nothing in
the registry whatever kills it, and no file of the data store overwritten after the
registry was lost. Both script APIs: `fdp_tasks.api` and data-pipeline-api.

Kill points are seeded: set CRASH_SEED to replay one; a failure names its seed.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Env, git_commit_all, sha1

from fdp_tasks.store.sql import Store

OUTPUTS = 15
KILLS = 3

API_MODEL = """\
import sys
import time
from fdp_tasks.api import Session

count = int(sys.argv[1])
with Session() as fdp:
    for i in range(count):
        with open(fdp.write(f"results/part{i:02d}"), "w") as fh:
            fh.write(f"part {i} made at {time.time_ns()}\\n")
    print("finalising", flush=True)
"""

DPA_MODEL = """\
import os
import sys
import time

import data_pipeline_api as pipeline

job = os.environ["FDP_CONFIG_DIR"]
token = os.environ["FDP_LOCAL_TOKEN"]
handle = pipeline.initialise(
    token, os.path.join(job, "config.yaml"), os.path.join(job, "script.sh")
)
for i in range(int(sys.argv[1])):
    with open(pipeline.link_write(handle, f"results/part{i:02d}"), "w") as fh:
        fh.write(f"part {i} made at {time.time_ns()}\\n")
print("finalising", flush=True)
pipeline.finalise(token, handle)
"""

# Announces itself with a file in $MARKS, then waits for its release there: `b` is released
# by `a` starting (so the two must run at the same time), any other by the test.
SLEEPER = """\
import os
import pathlib
import sys
import time
from fdp_tasks.api import Session

name, marks = sys.argv[1], pathlib.Path(os.environ["MARKS"])
release = marks / ("a.started" if name == "b" else f"{name}.release")
with Session() as fdp:
    (marks / f"{name}.started").write_text("started")
    print("started", flush=True)
    deadline = time.monotonic() + 60
    while not release.exists():
        if time.monotonic() > deadline:
            sys.exit("never released")
        time.sleep(0.05)
    with open(fdp.write(f"{name}/out"), "w") as fh:
        fh.write(f"{time.time_ns()}\\n")
"""


def model_project(base: Path, api: str, outputs: int = OUTPUTS) -> Env:
    """A committed project whose script writes `outputs` results/partNN, through `api`."""
    env = Env(base, f"{api}-model")
    env.file("model.py", API_MODEL if api == "api" else DPA_MODEL)
    write_config(env, api, outputs, "first")
    env.file(".gitignore", "*-home/\n")
    git_commit_all(env.project)
    env.fdp("init", "--name", "Ada", "--namespace", "lab")
    git_commit_all(env.project, "init")
    return env


def write_config(env: Env, api: str, outputs: int, description: str) -> None:
    env.config(
        {
            "run_metadata": {
                "description": description,
                "default_output_namespace": "lab",
                "script": f"python3 model.py {outputs}",
            },
            "write": [
                {
                    "data_product": f"results/part{i:02d}",
                    "description": f"part {i}",
                    "file_type": "csv",
                }
                for i in range(outputs)
            ],
        }
    )


def registry_db(env: Env) -> Path:
    return env.home / "registry.db"


def whole_runs_problems(db: Path, settled_only: bool) -> list[str]:
    """What breaks "a run is all or nothing": a product no code run made, a code run with
    no outputs (or fewer than the config writes)."""
    store = Store(db, settled_only=settled_only)
    try:
        problems = []
        made: set[int] = set()
        for run in store.find("code_run"):
            if len(run["outputs"]) != OUTPUTS:
                problems.append(f"code run {run['uuid']} has {len(run['outputs'])} outputs")
            made.update(run["outputs"])
        for product in store.find("data_product"):
            components = store.get("object", product["object"])["components"]
            if not set(components) & made:
                problems.append(f"{product['name']}@{product['version']} has no code run")
        return problems
    finally:
        store.close()


def provisional_rows(db: Path) -> int:
    store = Store(db)
    try:
        with store.engine.connect() as conn:
            return int(
                conn.exec_driver_sql("SELECT count(*) FROM provisional_record").scalar_one()
            )
    finally:
        store.close()


def runs_logged(env: Env) -> list[str]:
    log = env.project / ".fdp" / "configs" / "config.yaml" / "runs.jsonl"
    return log.read_text(encoding="utf-8").splitlines() if log.is_file() else []


def job_state(env: Env) -> str:
    rows = json.loads(env.fdp("status", "--json", "--no-remote", check=False).stdout or "[]")
    return next((r["state"] for r in rows if r["task"] == "job"), "missing")


def start_run(env: Env, *args: str, **extra_env: str) -> subprocess.Popen:
    """`fdp run` in a process group of its own (the script joins it), output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "fdp_tasks.cli.main", "run", *args],
        cwd=env.project,
        env={**env.environ, "PWD": str(env.project), **extra_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_line(proc: subprocess.Popen, word: str, timeout: float = 120) -> None:
    """Read the process's output up to a line holding `word`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if word in line:
            return
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise AssertionError(f"no {word!r} from fdp run; it said:\n{''.join(seen)}")


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def timed_finalise(env: Env) -> tuple[float, str, str]:
    """One successful run: how long its finalise took (from the script's word to the end
    of `fdp run`), and what it said."""
    proc = start_run(env, "--dirty", FDP_PROGRESS="always")
    wait_for_line(proc, "finalising")
    began = time.monotonic()
    code, out, err = finish(proc)
    assert code == 0, out + err
    return time.monotonic() - began, out, err


# --------------------------------------------------------------------- the lock
def sleeper_project(base: Path, configs: list[str]) -> Env:
    env = Env(base, "sleepers")
    env.file("model.py", SLEEPER)
    env.file(".gitignore", "*-home/\n")
    (base / "marks").mkdir()  # outside the repository, named by $MARKS
    for name in configs:
        env.config(
            {
                "run_metadata": {
                    "description": name,
                    "default_output_namespace": "lab",
                    "script": f"python3 model.py {name}",
                },
                "write": [{"data_product": f"{name}/out", "file_type": "csv"}],
            },
            name=f"{name}/config.yaml",
        )
    git_commit_all(env.project)
    env.fdp("init", "--namespace", "lab")
    git_commit_all(env.project, "init")
    return env


def start_sleeper(env: Env, *args: str) -> subprocess.Popen:
    return start_run(env, *args, MARKS=str(env.base / "marks"))


def test_a_second_run_of_one_config_refuses_at_once_naming_the_first(tmp_path: Path) -> None:
    env = sleeper_project(tmp_path, ["a"])
    first = start_sleeper(env, "a/config.yaml")
    try:
        wait_for_line(first, "started")
        second = env.fdp("run", "a/config.yaml", check=False)
        assert first.poll() is None  # refused while the first still runs
        assert second.returncode == 1, second.output
        assert f"pid {first.pid}" in second.stderr
        assert "started 20" in second.stderr and "--wait" in second.stderr
        assert [line for line in second.stderr.splitlines() if "error" in line] == [
            second.stderr.splitlines()[-1]
        ]
        waiting = start_sleeper(env, "a/config.yaml", "--wait")
        wait_for_line(waiting, f"waiting for the job of a/config.yaml: pid {first.pid}")
    finally:
        (tmp_path / "marks" / "a.release").write_text("go")
    code, out, err = finish(first)
    assert code == 0, out + err
    code, out, err = finish(waiting)
    assert code == 0, out + err
    assert "another process ran it meanwhile" in out
    store = Store(registry_db(env))
    try:
        assert store.count("code_run") == 1  # the job ran once
    finally:
        store.close()
    code, out, err = finish(start_sleeper(env, "a/config.yaml"))
    assert code == 0 and "-- job" in out, out + err


def test_jobs_of_different_configs_run_at_once(tmp_path: Path) -> None:
    # b's script ends only once a's has started, and a's only once b's has: one at a time,
    # neither would end (each gives up after a minute)
    env = sleeper_project(tmp_path, ["a", "b"])
    first = start_sleeper(env, "a/config.yaml")
    second = start_sleeper(env, "b/config.yaml")
    try:
        wait_for_line(second, "started")
        (tmp_path / "marks" / "a.release").write_text("go")
    finally:
        (tmp_path / "marks" / "a.release").touch()
    for proc in (first, second):
        code, out, err = finish(proc)
        assert code == 0, out + err


def test_a_killed_holder_leaves_no_lock_behind(tmp_path: Path) -> None:
    env = sleeper_project(tmp_path, ["a"])
    first = start_sleeper(env, "a/config.yaml")
    wait_for_line(first, "started")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    (tmp_path / "marks" / "a.release").write_text("go")
    code, out, err = finish(start_sleeper(env, "a/config.yaml"))
    assert code == 0 and ".  job" in out, out + err


# ------------------------------------------------------------ all or nothing
@pytest.mark.parametrize("api", ["api", "dpa"])
def test_kill_during_finalise_leaves_whole_runs_only(tmp_path: Path, api: str) -> None:
    if api == "dpa":
        pytest.importorskip("data_pipeline_api")
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(1_000_000))  # noqa: S311
    rng = random.Random(seed)  # noqa: S311 - kill points to replay, not secrets
    env = model_project(tmp_path, api)
    db = registry_db(env)
    took, out, err = timed_finalise(env)
    assert "finalise: " in out and " records" in out
    # the bar, drawn since FDP_PROGRESS=always: outputs the script reported, or records
    # that reached the loopback server
    assert (f"{OUTPUTS}/{OUTPUTS}" if api == "api" else " records") in err, err
    assert whole_runs_problems(db, settled_only=False) == []

    for attempt in range(KILLS):
        delay = rng.uniform(0, took)
        where = f"(seed {seed}, kill {attempt} at {delay:.3f} s of a {took:.3f} s finalise)"
        write_config(env, api, OUTPUTS, f"attempt {attempt}")
        git_commit_all(env.project, f"attempt {attempt}")
        logged = len(runs_logged(env))
        proc = start_run(env)
        wait_for_line(proc, "finalising")
        time.sleep(delay)
        with contextlib.suppress(ProcessLookupError):  # it may have finished just now
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        # what status sees is whole runs only, and it says the job will run, unless the
        # run was over (in the runs log) before the kill
        assert whole_runs_problems(db, settled_only=True) == [], where
        expected = "up-to-date" if len(runs_logged(env)) > logged else "will-run"
        assert job_state(env) == expected, where

    rerun = env.fdp("run")
    assert rerun.executed == ([] if expected == "up-to-date" else ["job"]), rerun.output
    # the records of killed jobs are gone from the registry itself
    assert provisional_rows(db) == 0
    assert whole_runs_problems(db, settled_only=False) == [], f"(seed {seed})"
    assert job_state(env) == "up-to-date"


# ------------------------------------------------------- a registry that was lost
@pytest.mark.parametrize("api", ["api", "dpa"])
def test_a_run_after_the_registry_was_lost_overwrites_no_file(tmp_path: Path, api: str) -> None:
    if api == "dpa":
        pytest.importorskip("data_pipeline_api")
    env = model_project(tmp_path, api, outputs=3)
    env.fdp("run")
    store_files = {
        p: sha1(p) for p in env.data_store.rglob("*") if p.is_file() and "jobs" not in p.parts
    }
    assert len(store_files) >= 3
    for suffix in ("", "-wal", "-shm"):
        Path(f"{registry_db(env)}{suffix}").unlink(missing_ok=True)

    again = env.fdp("run")
    assert again.executed == ["job"], again.output
    changed = [str(p) for p, digest in store_files.items() if sha1(p) != digest]
    assert changed == []
    # the new outputs are recorded, under versions whose files hold their bytes
    store = Store(registry_db(env))
    try:
        products = store.find("data_product")
        assert len(products) == 3
        for product in products:
            location = store.get(
                "storage_location",
                store.get("object", product["object"])["storage_location"],
            )
            assert sha1(env.data_store / location["path"]) == location["hash"]
        if api == "api":  # version 0.0.1 holds the lost run's bytes: the next one is taken
            assert {p["version"] for p in products} == {"0.0.2"}
            assert "keeping them and writing" in again.output
    finally:
        store.close()


@pytest.mark.parametrize("api", ["api", "dpa"])
def test_a_script_that_fails_after_finalising_leaves_no_records(tmp_path: Path, api: str) -> None:
    if api == "dpa":
        pytest.importorskip("data_pipeline_api")
    env = model_project(tmp_path, api, outputs=2)
    env.file("model.py", (API_MODEL if api == "api" else DPA_MODEL) + "sys.exit(3)\n")
    git_commit_all(env.project, "fails at the end")
    failed = env.fdp("run", check=False)
    assert failed.returncode == 1 and "status 3" in failed.stderr
    store = Store(registry_db(env))
    try:
        assert store.count("data_product") == 0 and store.count("code_run") == 0
    finally:
        store.close()
    assert provisional_rows(registry_db(env)) == 0
    assert job_state(env) == "will-run"
