"""What the script API costs per output: SQL statements that stay a handful per chunk of
outputs, not several per output, and a working config read from its JSON copy while that
copy names the YAML beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

from fdp_tasks import working_config
from fdp_tasks.api import Session
from fdp_tasks.files import sha1_file
from fdp_tasks.store.sql import Store


def job_dir(base: Path, outputs: int) -> Path:
    """A job directory as `fdp run` makes one: a working config writing results/partNNNN
    into the data store under `base`, and a script."""
    store = base / "data"
    job = store / "jobs" / "job-1"
    job.mkdir(parents=True)
    (job / "script.sh").write_text("true\n", encoding="utf-8")
    working_config.write(
        job / "config.yaml",
        {
            "run_metadata": {
                "description": "many outputs",
                "default_output_namespace": "lab",
                "write_data_store": f"{store}/",
                "local_repo": str(base),
                "remote_repo": f"file://{base}",
                "latest_commit": "0" * 40,
            },
            "write": [
                {
                    "data_product": f"results/part{i:04d}",
                    "description": f"part {i}",
                    "file_type": "csv",
                    "use": {"namespace": "lab", "version": "0.0.1"},
                }
                for i in range(outputs)
            ],
        },
    )
    return job


def test_recording_outputs_takes_a_few_statements_per_chunk_not_per_output(
    tmp_path: Path,
) -> None:
    outputs = 1100  # two chunks of the finalise
    job = job_dir(tmp_path, outputs)
    store = Store(tmp_path / "registry.db")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    session = Session(config_dir=job, script=job / "script.sh", registry=store)
    for i in range(outputs):
        text = f"{0 if i == 1050 else i},x\n"  # the last chunk repeats the first's bytes
        Path(session.write(f"results/part{i:04d}")).write_text(text, encoding="utf-8")
    sa.event.listen(store.engine, "before_cursor_execute", count)
    try:
        run_uuid = session.finalise()
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", count)

    # the run, its config and script: some 170 statements whatever the count; then a few
    # per chunk of hundreds of outputs (this once cost more than four per output)
    assert len(statements) < outputs, len(statements)
    (run,) = store.find("code_run", {"uuid": run_uuid})
    assert len(run["outputs"]) == outputs
    products = store.find("data_product", {"name": "results/*"})
    assert len(products) == outputs
    files = store.output_files([run_uuid])
    assert files is not None and len(files) == outputs
    for path, sha1, _root in files:
        name = path.split("/")[-2]
        written = tmp_path / "data" / path
        assert sha1_file(written) == sha1
        assert written.read_text(encoding="utf-8") == f"{int(name[4:])},x\n"
    assert len({path for path, _, _ in files}) == outputs - 1  # one file for those bytes
    ids = sorted(p["id"] for p in products)
    assert ids == list(range(ids[0], ids[0] + outputs))  # one id each, none skipped


def test_the_json_copy_of_a_working_config_is_read_only_while_it_names_the_yaml(
    tmp_path: Path,
) -> None:
    job = job_dir(tmp_path, 3)
    config, copy = job / "config.yaml", working_config.copy_path(job / "config.yaml")
    held = json.loads(copy.read_text(encoding="utf-8"))
    assert held["config"] == yaml.safe_load(config.read_text(encoding="utf-8"))

    # a copy that names this YAML is what the session reads (marked here to tell them apart)
    held["config"]["run_metadata"]["description"] = "read from the copy"
    copy.write_text(json.dumps(held), encoding="utf-8")
    store = Store(tmp_path / "registry.db")
    session = Session(config_dir=job, script=job / "script.sh", registry=store)
    assert session.run_metadata["description"] == "read from the copy"

    # a YAML changed since the copy was made is read itself
    config.write_text(
        config.read_text(encoding="utf-8").replace("many outputs", "edited by hand"),
        encoding="utf-8",
    )
    session = Session(config_dir=job, script=job / "script.sh", registry=store)
    assert session.run_metadata["description"] == "edited by hand"

    # and so is one whose copy is unreadable
    copy.write_text("{not json", encoding="utf-8")
    session = Session(config_dir=job, script=job / "script.sh", registry=store)
    assert session.run_metadata["description"] == "edited by hand"
