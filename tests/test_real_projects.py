"""Existing FDP model repositories, run as their authors wrote them.

A git repository with the config in a subfolder, a script called by a path from the
repository root, a data-pipeline-api model that opens `<CONFIG_DIR>/config.yaml` itself,
settings at the repository root, and the user's own namespace.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support import WRITER_SCRIPT, Env, git, git_commit_all

CONFIG = """\
run_metadata:
  description: SEIRS model of another group
  default_input_namespace: PSU
  script: |
    python3 simpleModel/ext/run.py ${{CONFIG_DIR}}
register:
  - namespace: PSU
    full_name: Pennsylvania State University
    website: https://ror.org/04p491231
  - external_object: SEIRS_model/parameters
    namespace_name: PSU
    root: ${{REPO_DIR}}/data/
    path: static_params_SEIRS.csv
    title: Static parameters of the model
    description: Static parameters of the SEIRS model
    identifier: https://doi.org/10.1038/s41592-020-0856-2
    file_type: csv
    release_date: 2021-09-20T12:00
    version: "1.0.0"
    primary: "false"
write:
  - data_product: model/output
    description: SEIRS results
    file_type: csv
"""

# As the FDP simple models do: the job directory comes as an argument, and the model opens
# the working config and the script in it itself.
MODEL = """\
import os
import sys

import data_pipeline_api as pipeline

job = sys.argv[1]
config = os.path.join(job, "config.yaml")
token = os.environ["FDP_LOCAL_TOKEN"]
handle = pipeline.initialise(token, config, os.path.join(job, "script.sh"))
params = pipeline.link_read(handle, "SEIRS_model/parameters")
out = pipeline.link_write(handle, "model/output")
with open(params) as src, open(out, "w") as dst:
    dst.write(f"rows,{sum(1 for _ in src)}\\ncwd,{os.path.basename(os.getcwd())}\\n")
pipeline.finalise(token, handle)
"""


def model_repository(env: Env) -> Path:
    """A model repository as they are found: the config in simpleModel/ext/, committed."""
    repo = env.project
    (repo / "dodo.py").unlink()
    env.file("simpleModel/ext/config.yaml", CONFIG)
    env.file("simpleModel/ext/run.py", MODEL)
    env.file("data/static_params_SEIRS.csv", "param,value\nbeta,0.21\ngamma,0.14\n")
    env.file("README.md", "# simpleModel\n")
    git_commit_all(repo)
    return repo


@pytest.fixture
def remote(registry_server: Callable) -> tuple[str, Path]:
    live = registry_server("remote")
    return live.api_url, live.token_file


def test_a_model_repository_runs_as_its_authors_wrote_it(
    tmp_path: Path, remote: tuple[str, Path]
) -> None:
    pytest.importorskip("data_pipeline_api")
    env = Env(tmp_path, "model-repo")
    repo = model_repository(env)
    ext = repo / "simpleModel" / "ext"
    # set up from the config's folder: the settings go to the repository root, and nothing
    # is written into someone's model but .fdp/ and a one-line dodo.py
    env.fdp("init", "--name", "Alice", "--namespace", "alice", cwd=ext)
    assert (repo / ".fdp" / "settings.yaml").is_file()
    assert not (ext / ".fdp").exists()
    assert not (repo / "config.yaml").exists() and not (repo / "model.py").exists()
    assert (repo / "dodo.py").is_file()
    assert status_porcelain(repo) == ""  # no tracked file changed
    url, token_file = remote
    env.fdp("remote", "add", "origin", url, "--token-file", str(token_file), cwd=ext)
    assert "origin" in yaml.safe_load((repo / ".fdp/settings.yaml").read_text())["remotes"]
    assert not (ext / ".fdp").exists()

    # pull from the repository root, run from the config's folder
    pulled = env.fdp("pull", "simpleModel/ext/config.yaml")
    assert "register:PSU:SEIRS_model/parameters@1.0.0" in pulled.executed
    ran = env.fdp("run", "config.yaml", cwd=ext)
    assert ran.executed == ["job"]
    # the output is in the user's namespace, not the group's whose model it is
    out = env.data_store / "alice" / "model" / "output"
    (written,) = list(out.glob("*.csv"))
    assert written.read_text() == "rows,3\ncwd,model-repo\n"  # the script ran at the root
    info = json.loads(env.fdp("info", "alice:model/output@0.0.1", "--json").stdout)
    assert info["sha1"] in written.name

    # doit from the config's folder finds the dodo.py upward (-k) and the config from there
    here = env.doit("-k", "config=config.yaml", cwd=ext)
    assert here.executed == [] and "job" in here.up_to_date
    # the same config through doit from the root: nothing to do
    again = env.doit("config=simpleModel/ext/config.yaml")
    assert again.executed == []
    assert "job" in again.up_to_date
    assert not (ext / ".fdp").exists()

    # push from the root; the remote has it, in the user's namespace
    pushed = env.fdp("push", "simpleModel/ext/config.yaml")
    assert pushed.executed == ["push:alice:model/output@0.0.1"]
    assert env.fdp("push", cwd=ext).executed == []
    rows = {
        r["task"]: r["state"]
        for r in json.loads(env.fdp("status", "simpleModel/ext/config.yaml", "--json").stdout)
    }
    assert rows["job"] == "up-to-date"
    assert rows["push:alice:model/output@0.0.1"] == "pushed"


def test_configs_of_the_same_name_in_two_folders_never_share_state(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.file("model.py", WRITER_SCRIPT)
    for folder in ("a", "b"):
        env.config(
            {
                "run_metadata": {
                    "description": folder,
                    "default_output_namespace": "test",
                    "script": "python3 model.py",
                },
                "write": [{"data_product": f"{folder}/out", "file_type": "csv"}],
            },
            name=f"{folder}/config.yaml",
        )
    git_commit_all(env.project)
    env.fdp("init", "--namespace", "test")
    git_commit_all(env.project, "dodo")
    assert env.fdp("run", "a/config.yaml").executed == ["job"]
    assert env.fdp("run", "b/config.yaml").executed == ["job"]
    assert env.fdp("run", "a/config.yaml").executed == []
    assert env.fdp("run", cwd=env.project / "b").executed == []
    state = env.project / ".fdp" / "configs"
    assert (state / "a" / "config.yaml" / "runs.jsonl").is_file()
    assert (state / "b" / "config.yaml" / "runs.jsonl").is_file()


def test_init_in_a_model_repository_writes_no_starter_files(tmp_path: Path) -> None:
    env = Env(tmp_path, "someone-elses-model")
    repo = model_repository(env)
    (repo / "inst" / "extdata").mkdir(parents=True)
    init = env.fdp("init", "inst/extdata", "--namespace", "me")
    assert "simpleModel/ext/config.yaml" in init.stdout
    assert sorted(p.name for p in repo.iterdir()) == [
        ".fdp",
        ".git",
        "README.md",
        "data",
        "dodo.py",
        "inst",
        "simpleModel",
    ]
    assert status_porcelain(repo) == ""
    # a new project, outside any repository, gets the starter files
    fresh = tmp_path / "fresh"
    env.fdp("init", str(fresh), "--namespace", "me")
    assert {"config.yaml", "model.py", "dodo.py", ".gitignore"} <= {p.name for p in fresh.iterdir()}


def committed_writer(tmp_path: Path) -> Env:
    """A committed project whose script writes test:out."""
    env = Env(tmp_path)
    env.file("model.py", WRITER_SCRIPT)
    env.config(
        {
            "run_metadata": {
                "description": "writes test:out",
                "default_output_namespace": "test",
                "script": "python3 model.py",
            },
            "write": [{"data_product": "out", "file_type": "csv"}],
        }
    )
    git_commit_all(env.project)
    return env


def test_a_dirty_tree_is_refused_unless_asked_and_recorded_as_dirty(tmp_path: Path) -> None:
    env = committed_writer(tmp_path)
    head = git(env.project, "rev-parse", "HEAD")
    env.file("model.py", WRITER_SCRIPT + "# an uncommitted change\n")
    refused = env.fdp("run", check=False)
    assert refused.returncode != 0
    assert "uncommitted changes (model.py)" in refused.output and "--dirty" in refused.output
    rows = json.loads(env.fdp("status", "--json").stdout)
    assert [r["state"] for r in rows if r["task"] == "job"] == ["will-fail"]
    assert env.fdp("run", "--dirty").executed == ["job"]
    (job,) = (env.data_store / "jobs").iterdir()
    working = yaml.safe_load((job / "config.yaml").read_text())
    assert working["run_metadata"]["latest_commit"] == head + "-dirty"
    product = json.loads(env.fdp("info", "test:out@0.0.1", "--json").stdout)
    run = json.loads(env.fdp("info", product["made_by"][0], "--json").stdout)
    assert f"/{head}-dirty " in run["code_repo"]  # the code repository names it
    push = env.fdp("push", check=False)
    assert push.returncode != 0 and "uncommitted changes" in push.output
    assert push.output.count("uncommitted changes") == 1


def test_fdp_state_never_makes_the_tree_dirty_even_when_committed(tmp_path: Path) -> None:
    """A project begun without `fdp init` keeps `.fdp/` out of git; one whose author
    committed `.fdp/` anyway (doit's database changes with every run) still runs clean."""
    env = committed_writer(tmp_path)
    assert env.fdp("run").executed == ["job"]
    assert (env.project / ".fdp" / ".gitignore").is_file()
    assert status_porcelain(env.project) == ""

    git(env.project, "add", "-f", ".fdp")  # committed all the same
    env.file("model.py", WRITER_SCRIPT + "# the next version\n")
    git_commit_all(env.project, "next")
    head = git(env.project, "rev-parse", "HEAD")
    assert env.fdp("run").executed == ["job"]
    assert ".fdp/" in status_porcelain(env.project)  # its state changed, as it does
    assert env.fdp("push", check=False).output.count("uncommitted changes") == 0
    newest = max((env.data_store / "jobs").iterdir())
    working = yaml.safe_load((newest / "config.yaml").read_text())
    assert working["run_metadata"]["latest_commit"] == head


def status_porcelain(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--untracked-files=no")


def test_a_name_registered_from_elsewhere_is_compared_not_taken(tmp_path: Path) -> None:
    # Every SimpleModel repository registers PSU:SEIRS_model/parameters@1.0.0; two of them
    # on one machine share the local registry.
    first = Env(tmp_path, "first")
    second = Env(tmp_path, "second")
    second.home = first.home  # one user, one local registry
    for env, content in ((first, "beta,0.21\n"), (second, "beta,0.21\n")):
        env.file("data/params.csv", content)
        env.config(register_only("${{REPO_DIR}}/data/"))
    assert first.fdp("pull").executed == [
        "register:namespace:PSU",
        "register:PSU:SEIRS_model/parameters@1.0.0",
    ]
    status = json.loads(second.fdp("status", "--json").stdout)
    row = next(r for r in status if r["task"] == "register:PSU:SEIRS_model/parameters@1.0.0")
    assert row["state"] == "will-run" and "registered from another source" in row["reason"]
    assert "register:PSU:SEIRS_model/parameters@1.0.0" in second.fdp("pull").executed
    assert second.fdp("pull").executed == []  # the same bytes: now recorded from here too
    second.file("data/params.csv", "beta,0.99\n")
    second.config(register_only("${{REPO_DIR}}/data/"))
    # another source with other bytes under the same name and version: refused
    other = Env(tmp_path, "third")
    other.home = first.home
    other.file("data/params.csv", "beta,0.5\n")
    other.config(register_only("${{REPO_DIR}}/data/"))
    refused = other.fdp("pull", check=False)
    assert refused.returncode != 0
    assert f"holds other bytes than file://{first.project}/data/params.csv" in refused.output


def register_only(root: str) -> dict:
    return {
        "run_metadata": {"description": "parameters", "default_input_namespace": "PSU"},
        "register": [
            {"namespace": "PSU", "full_name": "Pennsylvania State University"},
            {
                "external_object": "SEIRS_model/parameters",
                "namespace_name": "PSU",
                "root": root,
                "path": "params.csv",
                "title": "Static parameters of the model",
                "identifier": "https://doi.org/10.1038/s41592-020-0856-2",
                "file_type": "csv",
                "release_date": "2021-09-20T12:00",
                "version": "1.0.0",
            },
        ],
    }


IMPORTING = """\
from fdp_tasks.api import Session
from simpleModel.common import result

with Session() as fdp:
    with open(fdp.write("model/output"), "w") as fh:
        fh.write(result())
"""


def test_the_code_a_script_imports_is_part_of_what_a_job_depends_on(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.file("simpleModel/__init__.py", "")
    env.file("simpleModel/common.py", "def result():\n    return 'one\\n'\n")
    env.file("simpleModel/ext/run.py", IMPORTING)
    env.file("simpleModel/ext/config.yaml", yaml.safe_dump(ONE_OUTPUT))
    git_commit_all(env.project)
    config = "simpleModel/ext/config.yaml"
    assert env.fdp("run", config).executed == ["job"]
    assert env.fdp("run", config).executed == []
    # an uncommitted change to the imported module: the job would run, and refuses
    env.file("simpleModel/common.py", "def result():\n    return 'two\\n'\n")
    rows = {r["task"]: r for r in json.loads(env.fdp("status", config, "--json").stdout)}
    assert rows["job"]["state"] == "will-fail" and "common.py" in rows["job"]["reason"]
    assert env.fdp("run", config, check=False).returncode != 0
    # committed, it is a new commit: the job runs, and records that commit
    git_commit_all(env.project, "two")
    reason = {r["task"]: r for r in json.loads(env.fdp("status", config, "--json").stdout)}
    assert reason["job"]["reason"].startswith("the code is at commit ")
    assert env.fdp("run", config).executed == ["job"]
    assert (env.data_store / "test/model/output/0.0.2.csv").read_text() == "two\n"
    # a script that git does not track is not what the commit holds
    env.file("simpleModel/ext/new_run.py", IMPORTING)
    other = {**ONE_OUTPUT, "run_metadata": {**ONE_OUTPUT["run_metadata"]}}
    other["run_metadata"]["script"] = "python3 simpleModel/ext/new_run.py"
    env.file("simpleModel/ext/config.yaml", yaml.safe_dump(other))
    git(env.project, "add", "simpleModel/ext/config.yaml")
    git(env.project, "commit", "-qm", "cfg")
    refused = env.fdp("run", config, check=False)
    assert refused.returncode != 0 and "new_run.py (untracked)" in refused.output


ONE_OUTPUT = {
    "run_metadata": {
        "description": "imports its model",
        "default_output_namespace": "test",
        "script": "python3 simpleModel/ext/run.py",
    },
    "write": [{"data_product": "model/output", "file_type": "csv"}],
}

DPA_GLOB_MODEL = """\
import os

import data_pipeline_api as pipeline

job = os.environ["FDP_CONFIG_DIR"]
token = os.environ["FDP_LOCAL_TOKEN"]
handle = pipeline.initialise(
    token, os.path.join(job, "config.yaml"), os.path.join(job, "script.sh")
)
with open(pipeline.link_write(handle, "results/new"), "w") as fh:
    fh.write("new\\n")
pipeline.finalise(token, handle)
"""


def test_a_data_pipeline_api_script_under_a_write_pattern_fails_rather_than_lie(
    tmp_path: Path,
) -> None:
    pytest.importorskip("data_pipeline_api")
    env = Env(tmp_path)
    env.file("model.py", WRITER_SCRIPT)
    env.config(
        {
            "run_metadata": {
                "description": "an earlier run",
                "default_output_namespace": "test",
                "script": "python3 model.py",
            },
            "write": [{"data_product": "results/new/a", "file_type": "csv"}],
        },
        name="earlier.yaml",
    )
    # test:results/new/a@0.0.1: the registry's glob results/* matches it (across a /), the
    # config's does not (one segment); its folder is where the script's file goes
    env.fdp("run", "earlier.yaml")
    env.file("dpa.py", DPA_GLOB_MODEL)
    env.config(
        {
            "run_metadata": {
                "description": "a pattern and data-pipeline-api",
                "default_output_namespace": "test",
                "script": "python3 dpa.py",
            },
            "write": [{"data_product": "results/*", "file_type": "csv"}],
        }
    )
    ran = env.fdp("run", check=False)
    assert ran.returncode != 0
    # no run of this config claims results/new/a as its output
    old = json.loads(env.fdp("info", "test:results/new/a@0.0.1", "--json").stdout)
    assert len(old["made_by"]) == 1
    # and the failed run left no code run behind: a run is all or nothing
    runs = env.fdp("list", "runs").stdout.splitlines()
    assert [r for r in runs if " out:0 " in r] == []
    assert "an earlier run" in runs[-1]


def test_a_repository_without_a_remote_records_itself_as_the_code_repository(
    tmp_path: Path,
) -> None:
    env = Env(tmp_path)
    env.config({"run_metadata": {"description": "x", "script": "echo hi"}})
    git_commit_all(env.project)
    resolved = yaml.safe_load(env.fdp("resolve").stdout)
    assert resolved["run_metadata"]["remote_repo"] == env.project.resolve().as_uri()


def test_init_refuses_a_remote_token_file_that_is_not_there(tmp_path: Path) -> None:
    env = Env(tmp_path)
    missing = tmp_path / "remote-token"
    refused = env.fdp(
        "init",
        "--remote",
        "http://127.0.0.1:9/api/",
        "--remote-token-file",
        str(missing),
        check=False,
    )
    assert refused.returncode != 0
    assert f"--remote-token-file: {missing} does not exist" in refused.output
