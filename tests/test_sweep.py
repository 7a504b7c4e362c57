"""Parameter sweeps and many configs in one graph, driven as a user would: `fdp sweep
expand`, `doit config=...` (in processes and in threads), `fdp status`, real git
repositories and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from support import Env, example_repo, git_commit_all
from sweeps import TEMPLATE, add_settings, run_outputs, sweep_project

RUNS = [f"a-{a}_b-{b}" for a in (1, 2) for b in ("x", "y")]


def job_names(names: list[str]) -> list[str]:
    return sorted(n for n in names if n.startswith("job@"))


def test_a_sweep_expands_to_plain_configs_each_valid(tmp_path: Path) -> None:
    env = sweep_project(tmp_path, [1, 2], ["x", "y"])
    listed = env.fdp("sweep", "expand", "sweep.yaml").stdout.split()
    assert listed == [f"runs/{run}.yaml" for run in RUNS]
    text = (env.project / "runs" / "a-2_b-y.yaml").read_text(encoding="utf-8")
    assert "SWEEP" not in text.split("\n", 1)[1]  # only the first line says where it came from
    assert "python3 ${{REPO_DIR}}/model.py 2 y" in text
    assert "data_product: runs/a-2/b-y" in text
    assert "# one run of the sweep in sweep.yaml" in text  # the template's comments stay
    env.fdp("validate", *listed)

    # unchanged configs are not rewritten; those the sweep no longer makes are removed
    before = (env.project / "runs" / "a-1_b-x.yaml").stat().st_mtime_ns
    (env.project / "runs" / "mine.yaml").write_text("run_metadata: {}\n", encoding="utf-8")
    env.file("sweep.yaml", "template: template.yaml\noutput: runs\nparameters: {a: [1], b: [x]}\n")
    assert env.fdp("sweep", "expand", "sweep.yaml").stdout.split() == ["runs/a-1_b-x.yaml"]
    assert (env.project / "runs" / "a-1_b-x.yaml").stat().st_mtime_ns == before
    assert sorted(p.name for p in (env.project / "runs").iterdir()) == ["a-1_b-x.yaml", "mine.yaml"]


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (
            {"template": "template.yaml", "parameters": {"a": [1], "b": []}, "extra": 1},
            [
                "sweep.yaml: extra: unknown key (expected one of template, output, parameters)",
                "sweep.yaml: parameters.b: expected a non-empty list of values",
            ],
        ),
        (
            {"template": "template.yaml", "parameters": {"a": 3, "b": ["x y"]}},
            [
                "sweep.yaml: parameters.a: expected a list, got the number 3",
                "sweep.yaml: parameters.b[0]: expected a number, true or false, or a word of "
                "letters, digits and _ . + -",
            ],
        ),
        (
            {"parameters": {"a": [1, 1], "b": ["x"]}},
            [
                "sweep.yaml: parameters.a: a value is listed twice",
                "sweep.yaml: template: required key missing",
            ],
        ),
        (
            {"template": "template.yaml", "parameters": {"a": [1], "b": ["x"], "c": [1]}},
            [
                "sweep.yaml: parameters.c: not used in template.yaml (write ${{SWEEP.c}} where "
                "its value goes, so that each run is its own)"
            ],
        ),
        (
            {"template": "template.yaml", "parameters": {"a": [1]}},
            [
                "sweep.yaml: template: template.yaml uses ${{SWEEP.b}}, which is not a "
                "parameter (parameters: a)"
            ],
        ),
        (
            {"template": "missing.yaml", "parameters": {"a": [1]}},
            ["sweep.yaml: template: missing.yaml: no such file"],
        ),
    ],
)
def test_a_bad_sweep_file_is_one_line_per_problem(
    tmp_path: Path, sweep: dict, expected: list[str]
) -> None:
    env = sweep_project(tmp_path, [1], ["x"])
    env.file("sweep.yaml", yaml.safe_dump(sweep))
    result = env.fdp("sweep", "expand", "sweep.yaml", check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"fdp: error: {line}" for line in expected]
    assert not (env.project / "runs").exists()


def test_configs_a_sweep_would_make_are_checked_before_any_is_written(tmp_path: Path) -> None:
    """A value that makes a config invalid (here a version) is reported against the config
    it would be, and no config is written."""
    env = sweep_project(tmp_path, [1], ["1.0.0", "x"])
    env.file("template.yaml", TEMPLATE.replace('version: "1.0.0"', 'version: "${{SWEEP.b}}"'))
    result = env.fdp("sweep", "expand", "sweep.yaml", check=False)
    assert result.returncode == 2, result.output
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith("fdp: error: runs/a-1_b-x.yaml: ") for line in lines)
    assert "register[0].version" in lines[0]
    assert not list((env.project / "runs").glob("*.yaml"))


@pytest.mark.parametrize("runner", ["process", "thread"])
def test_many_configs_run_in_one_graph_in_parallel(tmp_path: Path, runner: str) -> None:
    env = sweep_project(tmp_path, [1, 2], ["x", "y"])
    first = env.doit("-n", "4", "-P", runner, "config=sweep.yaml")
    # (the jobs' own lines may run into doit's on a shared terminal: look for the names)
    assert all(f".  job@runs/{run}.yaml" in first.stdout for run in RUNS), first.stdout
    outputs = run_outputs(env.home / "registry.db")
    assert sorted(outputs) == ["a-1/b-x", "a-1/b-y", "a-2/b-x", "a-2/b-y"]
    for name, seen in outputs.items():
        a, b = name.removeprefix("a-").split("/b-")
        assert (seen["a"], seen["b"], seen["base"]) == (a, b, "base-value")
        assert seen["inputs"] >= 1 and seen["outputs"] == 1
        assert seen["executor"] == "local" and seen["worker"] is None
    again = env.doit("-n", "4", "-P", runner, "config=sweep.yaml")
    assert job_names(again.executed) == []
    assert job_names(again.up_to_date) == [f"job@runs/{run}.yaml" for run in RUNS]


def test_configs_by_list_by_settings_and_status_of_every_job(tmp_path: Path) -> None:
    env = sweep_project(tmp_path, [1, 2, 3], ["x"])
    env.fdp("sweep", "expand", "sweep.yaml")
    listed = env.doit("-n", "2", "config=runs/a-1_b-x.yaml,runs/a-3_b-x.yaml")
    assert job_names(listed.executed) == ["job@runs/a-1_b-x.yaml", "job@runs/a-3_b-x.yaml"]

    # without config=, the settings' globs: every config of the project is one graph
    add_settings(env, {"configs": ["runs/*.yaml"]})
    status = json.loads(env.fdp("status", "--json", "--no-remote").stdout)
    jobs = {row["task"]: row["state"] for row in status if row["task"].startswith("job@")}
    assert jobs == {
        "job@runs/a-1_b-x.yaml": "up-to-date",
        "job@runs/a-2_b-x.yaml": "will-run",
        "job@runs/a-3_b-x.yaml": "up-to-date",
    }
    assert {row["config"] for row in status} == {f"runs/a-{a}_b-x.yaml" for a in (1, 2, 3)}
    text = env.fdp("status", "--no-remote").stdout
    assert "will-run     job@runs/a-2_b-x.yaml" in text
    ran = env.doit("-n", "2")
    assert job_names(ran.executed) == ["job@runs/a-2_b-x.yaml"]
    env.fdp("run")  # `fdp run` without a config: the same graph, nothing left to do
    assert json.loads(env.fdp("status", "--json", "--no-remote", "--exit-code").stdout)


def test_adding_a_value_to_a_sweep_runs_only_the_new_configs(tmp_path: Path) -> None:
    """A sweep file is not the jobs' code: a commit that adds a value runs the new jobs
    alone, and one that drops a value removes its config from the graph."""
    env = sweep_project(tmp_path, [1], ["x"])
    assert job_names(env.doit("config=sweep.yaml").executed) == ["job@runs/a-1_b-x.yaml"]
    grown = "template: template.yaml\noutput: runs\nparameters: {a: [1, 2], b: [x]}\n"
    env.file("sweep.yaml", grown)
    git_commit_all(env.project, "one more value")
    ran = env.doit("-n", "2", "config=sweep.yaml")
    assert job_names(ran.executed) == ["job@runs/a-2_b-x.yaml"]
    assert job_names(ran.up_to_date) == ["job@runs/a-1_b-x.yaml"]


def test_configs_that_are_not_there_are_one_line(tmp_path: Path) -> None:
    env = sweep_project(tmp_path, [1], ["x"])
    nothing = env.doit("config=nothing/*.yaml", check=False)
    assert nothing.returncode == 2
    assert nothing.stderr.strip().splitlines() == [
        "fdp: error: config=nothing/*.yaml: nothing/*.yaml names no config file"
    ]
    missing = env.doit("config=runs/none.yaml,sweep.yaml", check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "fdp: error: config=runs/none.yaml,sweep.yaml: runs/none.yaml: no such config file"
    ]


def test_the_sweep_example_runs_with_doit_n_4(tmp_path: Path) -> None:
    repo = example_repo(tmp_path, "sweep")
    env = Env(tmp_path, "user")
    example = repo / "examples" / "sweep"
    env.fdp("init", str(repo), "--name", "Ada", "--namespace", "ada")
    result = env.doit("-n", "4", cwd=example)
    assert job_names(result.executed) == [
        f"job@examples/sweep/runs/beta-{beta}_seed-{seed}.yaml"
        for beta in ("0.3", "0.5")
        for seed in (1, 2)
    ]
    again = env.doit("-n", "4", cwd=example)
    assert job_names(again.executed) == []
