"""The working config a job gets, its template variables, versions and globs, and commands
that must agree (`fdp status` and `fdp run`) or write nothing (the read-only ones)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import requests
import yaml
from support import Env

from fdp_tasks.files import read_secret
from fdp_tasks.server.serve import start_in_thread
from fdp_tasks.store.sql import Store

# Writes what it was given on the command line, and every write item's name listed in
# names.txt (or in the config's write items), through fdp_tasks.api.
MODEL = """\
import sys
from pathlib import Path

from fdp_tasks.api import Session

names = Path("names.txt")
with Session() as fdp:
    wanted = names.read_text().split() if names.exists() else [
        w["data_product"] for w in fdp.config["write"]
    ]
    for name in wanted:
        with open(fdp.write(name), "w") as fh:
            fh.write(name + "," + ",".join(sys.argv[1:]) + "\\n")
"""


def project(tmp_path: Path, config: dict, model: str = MODEL) -> Env:
    env = Env(tmp_path)
    env.file("model.py", model)
    env.config(config)
    return env


def one_job(env: Env) -> Path:
    (job,) = (env.data_store / "jobs").iterdir()
    return job


def test_the_job_directory_is_config_dir_and_its_config_is_complete(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {
                "description": "job",
                "default_output_namespace": "test",
                "default_read_version": "${{LATEST}}",
                "default_write_version": "${{MINOR}}",
                "script": "python3 ${{REPO_DIR}}/model.py ${{CONFIG_DIR}}",
            },
            "write": [{"data_product": "out", "file_type": "csv"}],
        },
    )
    resolved = yaml.safe_load(env.fdp("resolve").stdout)
    # before any job exists, CONFIG_DIR shows the job directory to be
    assert f"{env.data_store / 'jobs'}/" in resolved["run_metadata"]["script"]
    assert env.fdp("run").executed == ["job"]
    job = one_job(env)
    text = (job / "config.yaml").read_text()
    assert "${{" not in text  # only ${{RUN_ID}} may stay, for the language APIs
    working = yaml.safe_load(text)
    meta = working["run_metadata"]
    assert "default_read_version" not in meta and "default_write_version" not in meta
    assert meta["script_path"] == str(job / "script.sh")
    assert working["write"][0]["use"]["version"] == "0.1.0"
    # the script was given the job directory, which holds the working config it reads
    written = (env.data_store / "test" / "out" / "0.1.0.csv").read_text()
    assert written == f"out,{job}/\n"
    assert (Path(written.split(",")[1].strip()) / "config.yaml").is_file()
    # a new job directory next time is not a change: nothing to do
    assert env.fdp("run").executed == []
    assert env.doit().executed == []


def test_config_dir_outside_the_script_is_an_error_with_a_hint(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {
                "description": "x",
                "default_output_namespace": "test",
                "script": "python3 ${{REPO_DIR}}/model.py",
            },
            "register": [
                {
                    "external_object": "raw/data",
                    "root": "${{CONFIG_DIR}}/raw/",
                    "path": "data.csv",
                    "title": "data",
                    "identifier": "https://doi.org/10.0/x",
                    "file_type": "csv",
                    "version": "1.0.0",
                }
            ],
        },
    )
    hint = "register[0].root: ${{CONFIG_DIR}} is the job directory"
    for command in (("validate", "config.yaml"), ("run",), ("resolve",)):
        result = env.fdp(*command, check=False)
        assert result.returncode == 2, command
        assert hint in result.stderr and "use ${{REPO_DIR}}" in result.stderr
        assert "Traceback" not in result.output
    assert env.doit(check=False).returncode == 2


def test_local_token_is_the_jobs_own_and_revoked_when_it_ends(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {
                "description": "token",
                "default_output_namespace": "test",
                "script": "python3 ${{REPO_DIR}}/model.py ${{LOCAL_TOKEN}}",
            },
            "write": [{"data_product": "out", "file_type": "csv"}],
        },
    )
    ran = env.fdp("run")
    job = one_job(env)
    token = (env.data_store / "test" / "out" / "0.0.1.csv").read_text().split(",")[1].strip()
    assert len(token) == 40 and token not in ran.output
    # the recorded submission script holds it, and the recorded config holds no token
    assert token in (job / "script.sh").read_text()
    assert token not in (job / "config.yaml").read_text()
    store = Store(env.home / "registry.db")
    server = start_in_thread(store, tmp_path / "blobs")
    try:

        def post(with_token: str) -> int:
            return requests.post(
                server.api_url + "namespace/",
                json={"name": f"n{len(with_token)}-{with_token[:4]}"},
                headers={"Authorization": f"token {with_token}"},
                timeout=10,
            ).status_code

        assert post(token) == 403  # revoked when the job ended
        own = read_secret(Path(env.fdp("registry", "token").stdout.strip()))
        assert post(own) == 201  # the user's own token still works
    finally:
        server.stop()
        store.close()


def test_a_datetime_format_that_yields_no_date_is_an_error(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {"description": "x", "default_output_namespace": "test"},
            "register": [
                {"namespace": "test"},
                {
                    "external_object": "raw/data",
                    "root": "https://example.org/",
                    "path": "data.csv",
                    "title": "data",
                    "identifier": "https://doi.org/10.0/x",
                    "file_type": "csv",
                    "version": "1.0.0",
                    "release_date": "${{DATETIME-%Y-%m-%dT%H:%M:S}}",
                },
            ],
        },
    )
    for command in (("validate", "config.yaml"), ("resolve",)):
        result = env.fdp(*command, check=False)
        assert result.returncode == 2
        assert "config.yaml: register[1].release_date:" in result.stderr
    good = yaml.safe_load((env.project / "config.yaml").read_text())
    good["register"][1]["release_date"] = "${{DATETIME-%Y-%m-%d}}"
    env.config(good)
    resolved = yaml.safe_load(env.fdp("resolve").stdout)
    assert resolved["register"][1]["release_date"].endswith("T00:00:00")


def test_write_globs_give_matches_new_versions_and_take_new_names(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {
                "description": "globs",
                "default_output_namespace": "test",
                "script": "python3 ${{REPO_DIR}}/model.py",
            },
            "write": [{"data_product": "results/*", "description": "a result", "file_type": "csv"}],
        },
    )
    env.file("names.txt", "results/a results/b")
    assert env.fdp("validate", "config.yaml").returncode == 0
    env.fdp("run")
    env.file("names.txt", "results/a results/b results/c")
    resolved = yaml.safe_load(env.fdp("resolve").stdout)
    assert [(w["data_product"], w["use"]["version"]) for w in resolved["write"]] == [
        ("results/a", "0.0.2"),
        ("results/b", "0.0.2"),
        ("results/*", "0.0.2"),  # kept, for names the script writes under it
    ]
    env.fdp("run", "--force")
    listed = env.fdp("list").stdout.split()
    assert listed == [
        "test:results/a@0.0.1",
        "test:results/b@0.0.1",
        "test:results/a@0.0.2",
        "test:results/b@0.0.2",
        "test:results/c@0.0.2",
    ]
    info = json.loads(env.fdp("info", "test:results/c@0.0.2", "--json").stdout)
    assert info["description"] == "a result"


def test_a_pinned_read_resolves_offline_and_a_run_says_pull_it_first(tmp_path: Path) -> None:
    env = Env(tmp_path)
    (env.project / "config.yaml").write_text(
        "run_metadata:\n  description: x\n  default_input_namespace: PSU\n"
        "  script: echo run\nread:\n  - data_product: params\n    version: 0.0.1\n"
    )
    resolved = yaml.safe_load(env.fdp("resolve").stdout)
    assert resolved["read"][0]["use"]["version"] == "0.0.1"
    ran = env.fdp("run", check=False)
    assert ran.returncode != 0
    assert "config.yaml: read[0].version: PSU:params@0.0.1 is not in the local registry" in (
        ran.output
    )
    # status, and the dry run of `fdp run`, say so before anything runs
    rows = {r["task"]: r for r in json.loads(env.fdp("status", "--json").stdout)}
    pull = rows["pull:PSU:params@0.0.1"]
    assert pull["state"] == "will-fail" and "no remote to pull it from" in pull["reason"]
    assert "will-fail    pull:PSU:params@0.0.1" in env.fdp("run", "--dry-run").stdout


def test_status_and_run_agree_on_pinned_write_versions_and_changed_sources(
    tmp_path: Path,
) -> None:
    config = {
        "run_metadata": {
            "description": "pinned",
            "default_output_namespace": "test",
            "default_input_namespace": "test",
            "script": "python3 ${{REPO_DIR}}/model.py",
        },
        "register": [
            {
                "external_object": "raw/data",
                "root": "${{REPO_DIR}}/raw/",
                "path": "data.csv",
                "title": "data",
                "identifier": "https://doi.org/10.0/x",
                "file_type": "csv",
                "version": "1.0.0",
            }
        ],
        "write": [{"data_product": "out", "file_type": "csv", "use": {"version": "1.0.0"}}],
    }
    env = project(tmp_path, config)
    env.file("raw/data.csv", "a,b\n")
    env.fdp("run")

    def states() -> dict[str, str]:
        rows = json.loads(env.fdp("status", "--json").stdout)
        return {r["task"]: r["state"] for r in rows}

    # up to date for run, so up to date in status (not will-fail: 1.0.0 exists by now)
    assert states()["job"] == "up-to-date"
    assert env.fdp("run").executed == []
    config["write"][0]["use"]["version"] = "1.0.1"
    env.config(config)
    assert states()["job"] == "will-run"
    assert env.fdp("run").executed == ["job"]
    assert states()["job"] == "up-to-date"
    env.file("raw/data.csv", "a,b\nchanged\n")
    rows = json.loads(env.fdp("status", "--json").stdout)
    register = next(r for r in rows if r["task"].startswith("register:"))
    assert register["state"] == "will-fail" and "source file changed" in register["reason"]


def test_read_only_commands_create_nothing(tmp_path: Path) -> None:
    env = Env(tmp_path)
    env.config(
        {
            "run_metadata": {
                "description": "x",
                "default_output_namespace": "test",
                "remote_data_registry_url": "remote",
                "script": "echo hi",
            },
            "read": [{"data_product": "params", "use": {"namespace": "PSU", "version": "1.0.0"}}],
            "write": [{"data_product": "out", "file_type": "csv"}],
        }
    )
    before = sorted(p.name for p in env.project.iterdir())
    for command in (
        ("validate", "config.yaml"),
        ("resolve",),
        ("status", "--no-remote"),
        ("status",),  # asks the directory remote, which does not exist: nor will it
        ("list",),
        ("list", "runs"),
        ("info", "test:out@0.0.1"),
    ):
        env.fdp(*command, check=False)
    assert not env.home.exists()  # no registry, no token, no data store, no user
    assert sorted(p.name for p in env.project.iterdir()) == before


SLEEPER = """\
import sys, time
from pathlib import Path

Path("token.txt").write_text(sys.argv[1])
while Path("hold").exists():
    time.sleep(0.1)
"""


def test_the_token_of_a_killed_job_is_revoked_by_the_next_job(tmp_path: Path) -> None:
    env = project(
        tmp_path,
        {
            "run_metadata": {
                "description": "killed",
                "default_output_namespace": "test",
                "script": "python3 ${{REPO_DIR}}/model.py ${{LOCAL_TOKEN}}",
            },
        },
        model=SLEEPER,
    )
    env.file("hold", "")
    job = env.start_fdp(
        "run", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    token_file = env.project / "token.txt"
    deadline = time.monotonic() + 60
    while not token_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(job.pid, signal.SIGKILL)  # as a crash or a pulled plug would: no clean-up
    job.wait()
    first = token_file.read_text()
    store = Store(env.home / "registry.db")
    assert store.user_for_token(first) is not None  # nobody revoked it
    (env.project / "hold").unlink()
    token_file.unlink()
    env.fdp("run")
    assert store.user_for_token(first) is None  # the next job did
    assert store.user_for_token(token_file.read_text()) is None  # and its own, at its end
    store.close()
