"""Staging (`fdp add`, `fdp unstage`, `fdp reset`, `fdp commit`), `fdp update`, and what a
push says about a remote that changed: through the CLI, against real registry servers on
127.0.0.1.

A project here has three configs: `config.yaml` (the producer: registers a seed, writes
results/partNN), `other.yaml` (reads the seed, writes extra/out) and `reader.yaml` (reads
the seed, writes nothing: its code run has no outputs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from support import WRITER_SCRIPT, Env, record_counts
from support import producer as seeded_producer

READER_SCRIPT = '''\
"""Reads the seed and writes nothing."""
from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.read("inputs/seed")) as fh:
        fh.read()
'''


def project(tmp_path: Path, name: str = "producer", args: str = "") -> Env:
    """The producer, with the two other configs beside it; nothing run yet."""
    env = seeded_producer(tmp_path, outputs=2, name=name, args=args)
    env.file("reader.py", READER_SCRIPT)
    for config, script, writes in (
        ("other.yaml", "model.py", [{"data_product": "extra/out", "file_type": "csv"}]),
        ("reader.yaml", "reader.py", []),
    ):
        env.config(
            {
                "run_metadata": {
                    "description": f"{config} of the project",
                    "default_input_namespace": "lab",
                    "default_output_namespace": "lab",
                    "script": f"python3 ${{{{REPO_DIR}}}}/{script}",
                },
                "read": [{"data_product": "inputs/seed"}],
                **({"write": writes} if writes else {}),
            },
            config,
        )
    return env


def ran(tmp_path: Path) -> Env:
    """The project with all three configs run."""
    env = project(tmp_path)
    for config in ("config.yaml", "other.yaml", "reader.yaml"):
        env.fdp("run", config)
    return env


def made_by(env: Env, product: str) -> str:
    return json.loads(env.fdp("info", product, "--json").stdout)["made_by"][0]


def last_run(env: Env, config: str) -> str:
    """The uuid of the code run the config's last run recorded (from its runs log)."""
    log = env.project / ".fdp" / "configs" / config / "runs.jsonl"
    return json.loads(log.read_text().splitlines()[-1])["code_runs"][0]


def status(env: Env, *args: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(env.fdp("status", *args, "--json").stdout)
    return {row["task"]: row for row in rows}


def staged_rows(rows: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {task: row["state"] for task, row in rows.items() if row.get("staged")}


def staging_file(env: Env) -> dict[str, list[str]]:
    path = env.project / ".fdp" / "staging.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def one_error(result: Any, code: int) -> str:
    assert result.returncode == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdp: error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


# -- add, unstage, reset ----------------------------------------------------------------------
def test_add_unstage_reset_round_trip_shows_in_status(tmp_path: Path) -> None:
    env = ran(tmp_path)
    other_run = made_by(env, "lab:extra/out@0.0.1")
    reader_run = last_run(env, "reader.yaml")
    assert staged_rows(status(env, "--no-remote")) == {}

    # one unknown id: an error naming it, and nothing of the others is staged
    for bad in ("lab:no/such@1.0.0", "00000000-0000-0000-0000-000000000000", "no-namespace"):
        error = one_error(env.fdp("add", other_run, bad, check=False), 2)
        assert bad in error
    assert staging_file(env).get("code_run", []) == []

    added = env.fdp("add", "lab:extra/out", reader_run)  # newest version without @
    assert "staged lab:extra/out@0.0.1" in added.stdout
    assert f"staged code run {reader_run}" in added.stdout
    assert "staged already" in env.fdp("add", "lab:extra/out@0.0.1").stdout
    assert staging_file(env) == {"data_product": ["lab:extra/out@0.0.1"], "code_run": [reader_run]}

    rows = status(env, "--no-remote")  # of config.yaml, which does not write extra/out
    assert staged_rows(rows) == {
        "push:lab:extra/out@0.0.1": "staged",
        f"push:run:{reader_run}": "staged",
    }
    assert rows["push:lab:results/part00@0.0.1"]["state"] == "unknown"  # the config's own
    text = env.fdp("status", "--no-remote").stdout
    assert "staged       push:lab:extra/out@0.0.1" in text

    assert "unstaged lab:extra/out@0.0.1" in env.fdp("unstage", "lab:extra/out").stdout
    assert "lab:extra/out" in one_error(env.fdp("unstage", "lab:extra/out", check=False), 2)
    env.fdp("add", other_run)  # a code run stages its outputs
    assert staged_rows(status(env, "--no-remote")) == {
        "push:lab:extra/out@0.0.1": "staged",
        f"push:run:{reader_run}": "staged",
    }

    assert "unstaged 2 item(s)" in env.fdp("reset").stdout
    rows = status(env, "--no-remote")
    assert staged_rows(rows) == {} and "push:lab:extra/out@0.0.1" not in rows
    assert staging_file(env) == {"data_product": [], "code_run": []}
    assert "nothing was staged" in env.fdp("reset").stdout
    leftovers = [p.name for p in (env.project / ".fdp").iterdir() if p.name.startswith(".staging")]
    assert leftovers == []  # written through a temp file and a rename

    (env.project / ".fdp" / "staging.json").write_text("{not json")
    assert "staging.json: not valid JSON" in one_error(env.fdp("add", reader_run, check=False), 2)
    env.fdp("reset")  # the way out of a broken list
    assert staging_file(env) == {"data_product": [], "code_run": []}


def test_push_sends_a_staged_product_of_another_config_with_its_provenance(
    tmp_path: Path, registry_server: Any
) -> None:
    server = registry_server()
    env = ran(tmp_path)
    env.add_remote(server.api_url, server.token_file)
    other_run = made_by(env, "lab:extra/out@0.0.1")
    reader_run = last_run(env, "reader.yaml")
    env.fdp("add", "lab:extra/out@0.0.1", reader_run)

    assert staged_rows(status(env)) == {
        "push:lab:extra/out@0.0.1": "staged",
        f"push:run:{reader_run}": "staged",
    }
    env.fdp("push")

    remote = server.store
    names = {p["name"] for p in remote.find("data_product")}
    assert {"extra/out", "results/part00", "results/part01", "inputs/seed"} <= names
    for run in (other_run, reader_run):  # the run that made it, and the one with no outputs
        assert remote.find("code_run", {"uuid": run}, limit=1), run
    pushed_reader = remote.find("code_run", {"uuid": reader_run}, limit=1)[0]
    # its one input, and its environment record (fdp_tasks.environment)
    assert pushed_reader["outputs"] == [] and len(pushed_reader["inputs"]) == 2
    # what was pushed leaves the staging list
    assert staging_file(env) == {"data_product": [], "code_run": []}
    rows = status(env)
    assert staged_rows(rows) == {}
    assert {row["state"] for task, row in rows.items() if task.startswith("push:")} == {"pushed"}
    before = record_counts(remote)
    assert env.fdp("push").executed == []
    assert record_counts(remote) == before


def test_commit_stages_the_last_run_of_a_config(tmp_path: Path, registry_server: Any) -> None:
    env = project(tmp_path)
    env.fdp("run")
    never = one_error(env.fdp("commit", "other.yaml", check=False), 1)
    assert "other.yaml" in never and "fdp run" in never

    env.fdp("run", "other.yaml")
    first = last_run(env, "other.yaml")
    env.fdp("run", "other.yaml", "--force")  # a second run: its run and outputs are the last
    second = last_run(env, "other.yaml")
    assert second != first
    committed = env.fdp("commit", "other.yaml")
    assert f"staged code run {second}" in committed.stdout
    assert "staged lab:extra/out@0.0.2" in committed.stdout
    assert first not in committed.stdout
    assert staging_file(env) == {"data_product": ["lab:extra/out@0.0.2"], "code_run": [second]}
    assert "staged already" in env.fdp("commit", "other.yaml").stdout

    server = registry_server()
    env.add_remote(server.api_url, server.token_file)
    env.fdp("push")
    assert server.store.find("code_run", {"uuid": second}, limit=1)
    assert not server.store.find("code_run", {"uuid": first}, limit=1)
    assert staging_file(env) == {"data_product": [], "code_run": []}


# -- a remote that changed --------------------------------------------------------------------
def consumer(tmp_path: Path, server: Any) -> Env:
    """A project that reads lab:results/part00 (unpinned) and the seed (pinned) from the
    remote and writes lab:summary."""
    env = Env(tmp_path, "consumer")
    env.file("model.py", WRITER_SCRIPT)
    env.config(
        {
            "run_metadata": {
                "description": "sums up",
                "default_input_namespace": "lab",
                "default_output_namespace": "lab",
                "script": "python3 ${{REPO_DIR}}/model.py",
            },
            "read": [
                {"data_product": "results/part00"},
                {"data_product": "inputs/seed", "use": {"version": "1.0.0"}},
            ],
            "write": [{"data_product": "summary", "file_type": "csv"}],
        }
    )
    env.add_remote(server.api_url, server.token_file)
    return env


@pytest.fixture
def moved_on(tmp_path: Path, registry_server: Any) -> tuple[Env, Env, Any]:
    """The producer pushed part00@0.0.1; the consumer pulled it and ran; then the producer
    ran again and pushed part00@0.0.2."""
    server = registry_server()
    made = project(tmp_path)
    made.fdp("run")
    made.add_remote(server.api_url, server.token_file)
    made.fdp("push")
    reader = consumer(tmp_path, server)
    reader.fdp("run")
    made.fdp("run", "--force")
    made.fdp("push")
    return made, reader, server


def test_status_and_push_say_the_remote_is_newer_and_push_still_sends(
    moved_on: tuple[Env, Env, Any],
) -> None:
    _, reader, server = moved_on
    rows = status(reader)
    assert rows["pull:lab:results/part00"]["state"] == "remote-newer"
    assert "lab:results/part00@0.0.2" in rows["pull:lab:results/part00"]["reason"]
    assert rows["push:lab:summary@0.0.1"]["state"] == "local-only"  # not a conflict

    pushed = reader.fdp("push")
    warnings = [line for line in pushed.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: remote origin has lab:results/part00@0.0.2, newer than the 0.0.1 this run "
        "read; fdp update moves to it"
    ], pushed.stderr
    assert server.store.find("data_product", {"name": "summary"}, limit=1)


def test_update_moves_unpinned_reads_and_leaves_pinned_ones(
    moved_on: tuple[Env, Env, Any],
) -> None:
    _, reader, _ = moved_on
    dry = reader.fdp("update", "--dry-run")
    assert "lab:results/part00 0.0.1 -> 0.0.2 (dry run: nothing pulled)" in dry.stdout
    assert "lab:results/part00@0.0.2" not in reader.fdp("list").stdout

    updated = reader.fdp("update")
    lines = updated.stdout.splitlines()
    assert "lab:results/part00 0.0.1 -> 0.0.2" in lines
    pinned = [line for line in lines if line.startswith("lab:inputs/seed@1.0.0")]
    assert len(pinned) == 1 and "pinned" in pinned[0] and "left as it is" in pinned[0]
    assert lines[-1] == "1 updated, 1 pinned"
    assert "lab:results/part00@0.0.2" in reader.fdp("list").stdout

    rows = status(reader)
    assert rows["pull:lab:results/part00"]["state"] == "up-to-date"
    assert rows["job"]["state"] == "will-run"  # the next run reads the new version
    assert "lab:results/part00 0.0.2: the newest on origin" in reader.fdp("update").stdout


def test_a_conflicting_push_is_refused_before_anything_is_written(
    tmp_path: Path, registry_server: Any
) -> None:
    server = registry_server()
    ours, theirs = project(tmp_path, "ours", args="1"), project(tmp_path, "theirs", args="2")
    for env in (ours, theirs):
        env.fdp("run")
        env.add_remote(server.api_url, server.token_file)
    theirs.fdp("push")
    before = record_counts(server.store)
    blobs_before = sorted(p.name for p in server.blob_dir.rglob("*") if p.is_file())

    def hashes(product: str) -> tuple[str, str]:
        ours_, theirs_ = (
            json.loads(env.fdp("info", product, "--json").stdout)["sha1"] for env in (ours, theirs)
        )
        assert ours_ != theirs_
        return ours_, theirs_

    our_hash, _ = hashes("lab:results/part00@0.0.1")
    rows = status(ours)
    assert rows["push:lab:results/part00@0.0.1"]["state"] == "conflict"
    assert our_hash in rows["push:lab:results/part00@0.0.1"]["reason"]

    refused = ours.fdp("push", check=False)
    assert refused.returncode == 3, refused.output
    errors = [line for line in refused.stderr.splitlines() if line.startswith("fdp: error:")]
    assert errors, refused.stderr
    said = errors[0]
    named = re.search(r"(lab:results/part0\d@0\.0\.1) already exists", said)
    assert named and "different content" in said, said
    our_hash, their_hash = hashes(named.group(1))
    assert f"SHA-1 {their_hash}, ours {our_hash}" in said
    assert "`fdp pull`" in said and "new version" in said and "`fdp push`" in said
    assert record_counts(server.store) == before  # not one record of it, nor of its run
    # nor its bytes: the files of a refused item are not uploaded either
    assert sorted(p.name for p in server.blob_dir.rglob("*") if p.is_file()) == blobs_before
