"""`fdp reproduce` and `doit reproduce`: a recorded code run rebuilt from its commit, config,
script, environment record and inputs, in a scratch registry and data store, its outputs
compared bit for bit.

Model repositories are real git repositories (the config in a subfolder, a bare repository
as origin), remotes real servers on 127.0.0.1, and installed distributions real ones: a
`.dist-info` folder on PYTHONPATH is a distribution to `importlib.metadata`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from support import Env, git, git_commit_all

DETERMINISTIC = """\
from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.read("inputs/params")) as fh:
        rows = [line.strip().split(",") for line in fh if line.strip()]
    for item in fdp.config["write"]:
        factor = ord(item["data_product"][-1]) - 96  # results/a: 1, results/b: 2, ...
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write("name,value\\n")
            for name, value in rows[1:]:
                out.write(f"{name},{float(value) * factor:.4f}\\n")
"""

# The output says when it was made: never the same bytes twice.
STAMPED = """\
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from fdp_tasks.api import Session

try:
    tiny = version("tinydist")
except PackageNotFoundError:
    tiny = "none"
with Session() as fdp:
    with open(fdp.write("results/stamped"), "w") as out:
        out.write("key,value\\n")
        out.write(f"made,{datetime.now().isoformat(timespec='microseconds')}\\n")
        out.write(f"tinydist,{tiny}\\n")
"""

DPA_MODEL = """\
import os

import data_pipeline_api as pipeline

job = os.environ["FDP_CONFIG_DIR"]
token = os.environ["FDP_LOCAL_TOKEN"]
handle = pipeline.initialise(token, os.path.join(job, "config.yaml"), os.environ["FDP_SCRIPT"])
params = pipeline.link_read(handle, "inputs/params")
out = pipeline.link_write(handle, "results/dpa")
with open(params) as src, open(out, "w") as dst:
    dst.write("rows," + str(sum(1 for _ in src)) + "\\n")
pipeline.finalise(token, handle)
"""

PARAMS = "name,value\nbeta,0.21\ngamma,0.14\n"


def config(script: str, writes: list[str]) -> dict:
    return {
        "run_metadata": {
            "description": "a model",
            "script": script,
        },
        "register": [
            {
                "external_object": "inputs/params",
                "namespace_name": "ada",
                "root": "${{REPO_DIR}}/data/",
                "path": "params.csv",
                "title": "parameters",
                "unique_name": "ada-params",
                "alternate_identifier_type": "local",
                "file_type": "csv",
                "version": "1.0.0",
            }
        ],
        "write": [{"data_product": name, "file_type": "csv"} for name in writes],
    }


def model_repo(
    tmp_path: Path, model: str, writes: list[str], name: str = "author", origin: bool = True
) -> Env:
    """A model repository with its config in model/, committed, pushed to a bare origin,
    and `fdp init` done for Ada (namespace ada)."""
    env = Env(tmp_path, name)
    (env.project / "dodo.py").unlink()
    env.file("model/model.py", model)
    env.file("data/params.csv", PARAMS)
    env.file(
        "model/config.yaml",
        yaml.safe_dump(config("python3 ${{REPO_DIR}}/model/model.py", writes), sort_keys=False),
    )
    env.file(".gitignore", "*-home/\n")
    git_commit_all(env.project)
    if origin:
        bare = tmp_path / f"{name}-origin.git"
        subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
        git(env.project, "remote", "add", "origin", str(bare))
        git(env.project, "push", "-q", "origin", "main")
    env.fdp("init", "--name", "Ada", "--namespace", "ada")
    return env


def reproduce(env: Env, *args: str, cwd: Path | None = None) -> tuple[int, dict]:
    ran = env.fdp("reproduce", *args, "--json", check=False, cwd=cwd)
    assert ran.stdout.strip(), ran.stderr
    return ran.returncode, json.loads(ran.stdout)


@pytest.fixture
def remote(registry_server: Callable) -> tuple[str, Path]:
    live = registry_server("remote")
    return live.api_url, live.token_file


def test_a_model_reproduces_bit_for_bit_from_a_fresh_clone_with_inputs_from_the_remote(
    tmp_path: Path, remote: tuple[str, Path]
) -> None:
    url, token_file = remote
    author = model_repo(tmp_path, DETERMINISTIC, ["results/a", "results/b", "results/c"])
    author.add_remote(url, token_file)
    author.fdp("run", "model/config.yaml")
    author.fdp("push", "model/config.yaml")
    run_uuid = author.fdp("list", "runs").stdout.split()[0]

    # the run says what it ran in, in a line and in full
    info = author.fdp("info", run_uuid).stdout
    assert "Python 3." in info and " distributions" in info
    recorded = json.loads(author.fdp("info", run_uuid, "--json").stdout)["environment"]
    assert any(d.startswith("doit==") for d in recorded["distributions"])
    assert recorded["source_config"] == "model/config.yaml"
    assert "LOCAL_TOKEN" not in recorded["substitutions"]

    # a colleague: a fresh clone of the code, an empty registry and data store
    colleague = Env(tmp_path, "colleague")
    colleague.project.joinpath("dodo.py").unlink()
    colleague.project.rmdir()
    subprocess.run(
        ["git", "clone", "-q", str(tmp_path / "author-origin.git"), str(colleague.project)],
        check=True,
    )
    colleague.fdp("init", "--name", "Bob", "--namespace", "bob")
    colleague.add_remote(url)
    code, outcome = reproduce(colleague, "ada:results/b@0.0.1")
    assert code == 0, outcome
    assert outcome["summary"] == "reproduced 3/3 outputs bit for bit"
    assert outcome["records_from"] == "remote origin"
    assert outcome["code_run"] == run_uuid
    assert {o["product"] for o in outcome["outputs"]} == {
        "ada:results/a@0.0.1",
        "ada:results/b@0.0.1",
        "ada:results/c@0.0.1",
    }
    # nothing was registered or stored for the colleague, and no worktree is left
    assert colleague.fdp("list", "runs").stdout.strip() == ""
    assert colleague.fdp("list", "products").stdout.strip() == ""
    assert not any(colleague.data_store.rglob("*.csv"))
    assert len(git(colleague.project, "worktree", "list").splitlines()) == 1

    # the text form, by the run's uuid, from the author's own registry
    text = author.fdp("reproduce", run_uuid)
    assert text.stdout.strip().splitlines()[-1] == "reproduced 3/3 outputs bit for bit"
    assert author.fdp("list", "runs").stdout.count("\n") == 1  # still the one run


def test_doit_reproduce_checks_the_outputs_and_is_never_a_default_task(
    tmp_path: Path,
) -> None:
    author = model_repo(tmp_path, DETERMINISTIC, ["results/a", "results/b"], origin=False)
    (author.project / "dodo.py").write_text(
        "from fdp_tasks.dodo import *  # noqa: F403\n", encoding="utf-8"
    )
    built = author.doit("config=model/config.yaml")
    assert "job" in built.executed
    assert not [t for t in built.executed if t.startswith("reproduce")]
    checked = author.doit("config=model/config.yaml", "reproduce")
    assert sorted(checked.executed) == [
        "reproduce:ada:results/a@0.0.1",
        "reproduce:ada:results/b@0.0.1",
    ]
    assert checked.stdout.count("reproduced 2/2 outputs bit for bit") == 2
    # the settings choose what a CI job checks
    settings = author.project / ".fdp" / "settings.yaml"
    data = yaml.safe_load(settings.read_text()) or {}
    settings.write_text(yaml.safe_dump({**data, "reproduce": ["ada:results/b"]}))
    again = author.doit("config=model/config.yaml", "reproduce")
    assert again.executed == ["reproduce:ada:results/b"]
    settings.write_text(yaml.safe_dump({**data, "reproduce": "ada:results/b"}))
    bad = author.doit("config=model/config.yaml", "reproduce", check=False)
    assert bad.returncode != 0
    assert "settings.yaml: reproduce: expected a list of data products" in bad.stderr


def test_a_model_that_writes_the_time_is_not_reproduced_and_says_where(
    tmp_path: Path,
) -> None:
    author = model_repo(tmp_path, STAMPED, ["results/stamped"], origin=False)
    author.fdp("run", "model/config.yaml")
    ran = author.fdp("reproduce", "ada:results/stamped@0.0.1", "--keep", check=False)
    assert ran.returncode == 1
    lines = ran.stdout.strip().splitlines()
    assert lines[-1] == "not reproduced: 1 of 1 outputs differ"
    named = "ada:results/stamped@0.0.1: differs (recorded SHA-1 "
    assert any(line.startswith(named) for line in lines)
    (where,) = [line for line in lines if line.strip().startswith("line ")]
    assert where.strip().startswith("line 2: recorded 'made,")
    assert ", new 'made," in where
    assert "environment: the same Python, platform and distributions as recorded" in lines
    (kept,) = [line.split()[-1] for line in lines if line.startswith("kept the scratch folder ")]
    assert (Path(kept) / "repo" / "model" / "model.py").is_file()
    git(author.project, "worktree", "remove", "--force", str(Path(kept) / "repo"))
    shutil.rmtree(kept)

    doit_dodo = author.project / "dodo.py"
    doit_dodo.write_text("from fdp_tasks.dodo import *  # noqa: F403\n", encoding="utf-8")
    failed = author.doit("config=model/config.yaml", "reproduce", check=False)
    assert failed.returncode == 1
    assert "reproduce:ada:results/stamped@0.0.1: not reproduced: 1 of 1 outputs differ" in (
        failed.stderr
    )


def fake_distribution(folder: Path, name: str, version: str) -> Path:
    """A distribution `importlib.metadata` finds on sys.path: a .dist-info folder."""
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    return folder


def test_when_outputs_differ_the_environment_difference_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    then = fake_distribution(tmp_path / "site-then", "tinydist", "1.0")
    fake_distribution(then, "gonedist", "0.3")
    now = fake_distribution(tmp_path / "site-now", "tinydist", "2.0")
    fake_distribution(now, "newdist", "0.1")
    author = model_repo(tmp_path, STAMPED, ["results/stamped"], origin=False)
    monkeypatch.setenv("PYTHONPATH", str(then))
    author.fdp("run", "model/config.yaml")
    monkeypatch.setenv("PYTHONPATH", str(now))
    code, outcome = reproduce(author, "ada:results/stamped@0.0.1")
    assert code == 1 and not outcome["reproduced"]
    changes = outcome["environment_changes"]
    assert "changed: tinydist==1.0 -> 2.0" in changes
    assert "added: newdist==0.1" in changes
    assert "removed: gonedist==0.3" in changes
    assert not [c for c in changes if "doit" in c]  # only what differs
    text = author.fdp("reproduce", "ada:results/stamped@0.0.1", check=False).stdout
    assert "environment, recorded and now:\n  added: newdist==0.1\n" in text


def test_a_run_from_a_commit_that_is_gone_or_a_dirty_run_is_refused_clearly(
    tmp_path: Path,
) -> None:
    author = model_repo(tmp_path, DETERMINISTIC, ["results/a"], origin=False)
    author.fdp("run", "model/config.yaml")
    commit = git(author.project, "rev-parse", "HEAD")
    # the history is rewritten and the old commit collected
    git(author.project, "commit", "-q", "--amend", "-m", "rewritten")
    git(author.project, "reflog", "expire", "--expire=now", "--all")
    git(author.project, "gc", "-q", "--prune=now")
    assert subprocess.run(
        ["git", "-C", str(author.project), "cat-file", "-e", commit], capture_output=True
    ).returncode != 0
    gone = author.fdp("reproduce", "ada:results/a@0.0.1", check=False)
    assert gone.returncode == 1
    assert gone.stderr.strip().splitlines() == [
        f"fdp: error: code run {author.fdp('list', 'runs').stdout.split()[0]} was made from "
        f"commit {commit}, which the git repository {author.project} does not hold (history "
        "rewritten, or its branch deleted?): it cannot be rebuilt"
    ]

    # a run with uncommitted changes to the model
    model = author.project / "model" / "model.py"
    model.write_text(model.read_text() + "# tuned by hand\n")
    author.fdp("run", "model/config.yaml", "--dirty")
    dirty = author.fdp("reproduce", "ada:results/a@0.0.2", check=False)
    assert dirty.returncode == 1
    (line,) = dirty.stderr.strip().splitlines()
    assert "was recorded as dirty (commit " in line and "-dirty)" in line
    assert "cannot be rebuilt" in line


def test_a_data_pipeline_api_script_reproduces(tmp_path: Path) -> None:
    pytest.importorskip("data_pipeline_api")
    author = model_repo(tmp_path, DPA_MODEL, ["results/dpa"], origin=False)
    author.fdp("run", "model/config.yaml")
    code, outcome = reproduce(author, "ada:results/dpa@0.0.1")
    assert code == 0, outcome
    assert outcome["summary"] == "reproduced 1/1 outputs bit for bit"
    assert outcome["outputs"][0]["same"] is True


def test_an_unknown_item_or_a_registered_source_is_one_line(tmp_path: Path) -> None:
    author = model_repo(tmp_path, DETERMINISTIC, ["results/a"], origin=False)
    author.fdp("run", "model/config.yaml")
    missing = author.fdp("reproduce", "ada:results/zzz@0.0.1", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "fdp: error: ada:results/zzz@0.0.1 is not in the local registry, and no remote is "
        "configured"
    )
    source = author.fdp("reproduce", "ada:inputs/params@1.0.0", check=False)
    assert source.returncode == 1
    assert "was registered from a source, not made by a code run" in source.stderr
    assert len(source.stderr.strip().splitlines()) == 1
