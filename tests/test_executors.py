"""Jobs through executors, for real: a sweep of 20 runs on a `distributed.LocalCluster` of
worker processes and on a one-node Slurm (tests/slurm.py), each job given the shared
registry (a server the fixture starts on the project's registry database) rather than a
loopback server of its own; the refusal without one; the sweep example on Dask."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slurm import SlurmCluster, slurm_problem
from support import Env, example_repo
from sweeps import add_settings, run_outputs, sweep_project

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
