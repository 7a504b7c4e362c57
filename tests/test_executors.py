"""Jobs through executors, for real: a sweep of 20 runs on a `distributed.LocalCluster` of
worker processes and on a one-node Slurm (tests/slurm.py), each job given the shared
registry (a server the fixture starts on the project's registry database) rather than a
loopback server of its own; the refusal without one; the sweep example on Dask; on a
cluster started apart from the command (as a cluster's scheduler is), the environment
recorded where the script ran, and Ctrl-C of the command stopping the scripts on the
workers and keeping none of their records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm import SlurmCluster, slurm_problem
from support import REPO, Env, example_repo, git_commit_all, running
from sweeps import add_settings, run_outputs, sweep_project

from fdp_tasks import environment
from fdp_tasks.store.sql import Store

A = [1, 2, 3, 4, 5]
B = ["w", "x", "y", "z"]
EXPECTED = sorted(f"a-{a}/b-{b}" for a in A for b in B)


def shared_project(tmp_path: Path, registry_server: Any, executor: str, **extra: Any) -> tuple:
    """The sweep project, its registry served by a server of the fixture's (the shared
    registry), and the executor set in its settings."""
    env = sweep_project(tmp_path, A, B)
    live = registry_server(database=str(env.home / "registry.db"))
    add_settings(
        env,
        {
            "executor": executor,
            "shared_registry": live.api_url,
            "data_store": str(env.home / "data"),
            **extra,
        },
    )
    return env, live


def check_sweep(env: Env, shared_url: str, executor: str) -> dict[str, dict[str, Any]]:
    """Every job's code run is in the registry with its input and output, and each ran on a
    worker that was told the shared registry's URL (and no database of this machine)."""
    outputs = run_outputs(env.home / "registry.db")
    assert sorted(outputs) == EXPECTED
    for name, seen in outputs.items():
        a, b = name.removeprefix("a-").split("/b-")
        assert (seen["a"], seen["b"], seen["base"]) == (a, b, "base-value")
        assert seen["inputs"] >= 1 and seen["outputs"] == 1, seen
        assert seen["registry_url"] == shared_url, seen
        assert seen["local_db"] is None, seen
        assert seen["executor"] == executor and seen["worker"], seen
    return outputs


@pytest.mark.timeout(600)
def test_a_sweep_of_20_jobs_runs_on_a_dask_local_cluster(
    tmp_path: Path, registry_server: Any
) -> None:
    env, live = shared_project(tmp_path, registry_server, "dask", dask={"workers": 3})
    env.doit("-n", "4", "-P", "thread", "config=sweep.yaml")
    outputs = check_sweep(env, live.api_url, "dask")
    workers = {seen["worker"] for seen in outputs.values()}
    assert len(workers) >= 2 and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert len({seen["pid"] for seen in outputs.values()}) == 20

    # nothing to do: no job is submitted (and no cluster started), in processes too
    again = env.doit("-n", "4", "-P", "process", "config=sweep.yaml")
    assert not [n for n in again.executed if n.startswith("job@")]
    rows = json.loads(env.fdp("status", "sweep.yaml", "--json", "--no-remote").stdout)
    jobs = [row for row in rows if row["task"].startswith("job@")]
    assert len(jobs) == 20 and {row["state"] for row in jobs} == {"up-to-date"}


def test_a_far_executor_without_a_shared_registry_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    env = sweep_project(tmp_path, [1], ["x"])
    settings = env.project / ".fdp" / "settings.yaml"
    add_settings(env, {"executor": "dask"})
    refused = env.doit("config=sweep.yaml", check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "fdp: error: executor dask runs jobs on other machines, which cannot reach this "
        "machine's loopback registry: set shared_registry (the URL of an fdp registry server "
        "of this project's registry database that every worker reaches, e.g. "
        "http://host:8000/api/) and data_store (a folder every worker mounts at the same "
        f"path) in {settings}"
    ]
    add_settings(env, {"executor": "local", "data_store": str(env.home / "data")})
    slurm = env.fdp("run", "sweep.yaml", "--executor", "slurm", check=False)
    assert slurm.returncode == 2
    assert slurm.stderr.strip().splitlines() == [
        "fdp: error: executor slurm runs jobs on other machines, which cannot reach this "
        "machine's loopback registry: set shared_registry (the URL of an fdp registry server "
        "of this project's registry database that every worker reaches, e.g. "
        f"http://host:8000/api/) in {settings}"
    ]
    unknown = env.doit("config=sweep.yaml", "executor=ray", check=False)
    assert unknown.stderr.strip() == "fdp: error: executor=ray: expected one of local, dask, slurm"
    flag = env.fdp("run", "--executor", "ray", "sweep.yaml", check=False)
    assert flag.returncode == 2
    assert flag.stderr.strip() == (
        "fdp: error: --executor: expected one of local, dask, slurm, not 'ray'"
    )
    assert run_outputs(env.home / "registry.db") == {}  # nothing ran


@pytest.mark.timeout(600)
def test_the_sweep_example_runs_on_dask_in_processes(tmp_path: Path, registry_server: Any) -> None:
    repo = example_repo(tmp_path, "sweep")
    env = Env(tmp_path, "user")
    env.fdp("init", str(repo), "--name", "Ada", "--namespace", "ada")
    live = registry_server(database=str(env.home / "registry.db"))
    env.project = repo
    add_settings(env, {"shared_registry": live.api_url, "data_store": str(env.home / "data")})
    example = repo / "examples" / "sweep"
    ran = env.doit("-n", "4", "executor=dask", cwd=example)
    jobs = sorted(n for n in ran.stdout.split() if n.startswith("job@"))
    assert jobs == [
        f"job@examples/sweep/runs/beta-{beta}_seed-{seed}.yaml"
        for beta in ("0.3", "0.5")
        for seed in (1, 2)
    ]
    rows = json.loads(env.fdp("status", "--json", "--no-remote", cwd=example).stdout)
    assert {r["state"] for r in rows if r["task"].startswith("job@")} == {"up-to-date"}


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A one-node Slurm for the module. Skipped, saying why, only outside CI (no `CI` in
    the environment) where Slurm is not installed; FDP_REQUIRE_SLURM=1, as .ci/run sets,
    makes its absence a failure."""
    problem = slurm_problem()
    if problem:
        if os.environ.get("FDP_REQUIRE_SLURM") == "1" or os.environ.get("CI"):
            pytest.fail(f"Slurm is required here (CI or FDP_REQUIRE_SLURM=1), but {problem}")
        pytest.skip(problem)
    cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.mark.timeout(600)
def test_the_same_sweep_runs_on_a_one_node_slurm(
    tmp_path: Path,
    registry_server: Any,
    slurm: SlurmCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in slurm.env.items():
        monkeypatch.setenv(name, value)
    env, live = shared_project(
        tmp_path,
        registry_server,
        "dask",  # the command line's executor=slurm wins
        slurm={"workers": 2, "memory": "500MB", "walltime": "00:10:00"},
    )
    env.doit("-n", "4", "-P", "thread", "config=sweep.yaml", "executor=slurm")
    outputs = check_sweep(env, live.api_url, "slurm")
    assert all(seen["slurm_job"] for seen in outputs.values())  # inside Slurm jobs
    assert len({seen["slurm_job"] for seen in outputs.values()}) >= 1
    logs = env.project / ".fdp" / "executor" / "slurm"
    assert logs.is_dir()  # the workers' Slurm logs, beside the settings


# -- a cluster of its own: where the script runs, and Ctrl-C ------------------------------------

MARKER = "fdp-worker-marker==1.0"  # a distribution only the cluster's workers have

CLUSTER = """\
import logging, sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                       scheduler_kwargs={"dashboard": False}, silence_logs=logging.ERROR)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the test closes it
cluster.close()
"""


@pytest.fixture(scope="module")
def far_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `LocalCluster` of two worker processes in a process of its own, as a cluster's
    scheduler runs apart from the command; its workers find a distribution (MARKER) on
    their PYTHONPATH that this machine's other processes do not. Its scheduler's address."""
    site = tmp_path_factory.mktemp("worker-site")
    name, version = MARKER.split("==")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    paths = [str(site), str(REPO), os.environ.get("PYTHONPATH", "")]
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)},
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    address = proc.stdout.readline().strip()
    assert address.startswith("tcp://127.0.0.1:"), address
    yield address
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def far_project(tmp_path: Path, registry_server: Any, address: str | None, a: list, b: list) -> Env:
    """The sweep project on the cluster at `address`, or (None) on a LocalCluster of two
    workers that the command starts."""
    env = sweep_project(tmp_path, a, b)
    live = registry_server(database=str(env.home / "registry.db"))
    add_settings(
        env,
        {
            "executor": "dask",
            "dask": {"scheduler_address": address} if address else {"workers": 2},
            "shared_registry": live.api_url,
            "data_store": str(env.home / "data"),
        },
    )
    return env


def test_a_far_job_records_the_environment_where_its_script_ran(
    tmp_path: Path, registry_server: Any, far_cluster: str
) -> None:
    env = far_project(tmp_path, registry_server, far_cluster, [1], ["x"])
    env.doit("config=sweep.yaml")
    (record_path,) = (env.home / "data").rglob(environment.FILE_NAME)
    record = json.loads(record_path.read_text(encoding="utf-8"))
    # taken on the worker, whose Python finds the marker; the submitting side has none
    assert MARKER in record["distributions"]
    assert MARKER not in environment.current()["distributions"]
    assert record["host"] and record["python"] and record["executable"]
    # where it was taken is no difference a rebuild reports
    assert environment.difference(record, {**record, "host": "elsewhere"}) == []
    (run,) = run_outputs(env.home / "registry.db").values()
    shown = json.loads(env.fdp("info", run["code_run"], "--json").stdout)["environment"]
    assert MARKER in shown["distributions"]


SLEEPER = '''\
"""Records its run, then writes its pid and its child's and sleeps, to be interrupted."""
import os
import subprocess
import sys
import time
from pathlib import Path

from fdp_tasks.api import Session

a, b = sys.argv[1:3]
with Session() as fdp:
    fdp.read("inputs/base")
    (item,) = fdp.config["write"]
    with open(fdp.write(item["data_product"]), "w", encoding="utf-8") as out:
        out.write(a + b)
child = subprocess.Popen(["sleep", "120"])
pids = Path("pids")
pids.mkdir(exist_ok=True)
(pids / f"{a}-{b}.tmp").write_text(f"{os.getpid()} {child.pid}")
(pids / f"{a}-{b}.tmp").rename(pids / f"{a}-{b}")
time.sleep(120)
'''


FDP_RUN = ["fdp_tasks.cli.main", "run", "sweep.yaml"]
DOIT_THREADS = ["doit", "-n", "2", "-P", "thread", "config=sweep.yaml"]


@pytest.mark.parametrize(
    ("command", "own_cluster", "signum"),
    [
        (FDP_RUN, False, signal.SIGINT),
        (DOIT_THREADS, True, signal.SIGINT),
        (FDP_RUN, False, signal.SIGKILL),
    ],
    ids=["fdp-run", "doit-threads-own-cluster", "fdp-killed"],
)
@pytest.mark.timeout(180)
def test_ctrl_c_stops_the_scripts_on_the_workers_and_keeps_no_code_run(
    tmp_path: Path,
    registry_server: Any,
    far_cluster: str,
    command: list[str],
    own_cluster: bool,
    signum: int,
) -> None:
    """Ctrl-C of a command whose cluster runs apart reaches the command alone; in a
    terminal, with the LocalCluster the command started, it reaches the cluster's processes
    too. Either way the command asks the workers to stop the scripts, process group and
    all, and drops the jobs' records once they have (for `-P thread`, as it exits). A
    command killed outright cannot: the workers see it gone, and stop the scripts too."""
    b = ["x", "y"] if command is DOIT_THREADS else ["x"]
    env = far_project(tmp_path, registry_server, None if own_cluster else far_cluster, [1], b)
    env.file("model.py", SLEEPER)
    git_commit_all(env.project, "a model that sleeps")
    proc = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=env.project,
        env={**env.environ, "PWD": str(env.project)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as in a terminal
        # as from a terminal: a test worker may ignore SIGINT, and its children inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    pid_files = [env.project / "pids" / f"1-{name}" for name in b]
    deadline = time.monotonic() + 120
    while not all(path.exists() for path in pid_files):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    pids = [int(pid) for path in pid_files for pid in path.read_text().split()]
    assert len(pids) == 2 * len(b) and all(running(pid) for pid in pids)
    if own_cluster:
        os.killpg(proc.pid, signum)  # as Ctrl-C in a terminal: the command and its cluster
    else:
        proc.send_signal(signum)  # the command alone
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, out + err
    if command is FDP_RUN and signum == signal.SIGINT:
        assert proc.returncode == 130 and err.splitlines()[-1] == "fdp: error: interrupted"
    deadline = time.monotonic() + 8  # the scripts, and the children they started, end
    while any(running(pid) for pid in pids):
        assert time.monotonic() < deadline, [pid for pid in pids if running(pid)]
        time.sleep(0.1)
    if signum == signal.SIGKILL:
        return  # its records are a dead job's: the next command drops them (test_crash_safety)
    # each script had recorded its run before it slept: the interrupted job kept none of it
    assert run_outputs(env.home / "registry.db") == {}
    store = Store(env.home / "registry.db")
    try:
        assert store.find("code_run", {}) == []
    finally:
        store.close()
