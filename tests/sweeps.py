"""A project holding a parameter sweep, for the sweep and executor tests: a template config
that registers one input and writes one output per run, a sweep file, and a tiny model that
writes, as its output, its parameters and the environment it ran in (the registry it was
given, the executor, the worker)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from support import Env, git_commit_all

MODEL = '''\
"""One run of the sweep: its parameters and where it ran, as JSON."""
import json
import os
import socket
import sys

from fdp_tasks.api import Session

a, b = sys.argv[1:3]
with Session() as fdp:
    with open(fdp.read("inputs/base"), encoding="utf-8") as fh:
        base = fh.read().strip()
    (item,) = fdp.config["write"]
    with open(fdp.write(item["data_product"]), "w", encoding="utf-8") as out:
        json.dump(
            {
                "a": a,
                "b": b,
                "base": base,
                "registry_url": os.environ.get("FDP_REGISTRY_URL"),
                "local_db": os.environ.get("FDP_LOCAL_DB"),
                "executor": os.environ.get("FDP_EXECUTOR", "local"),
                "worker": os.environ.get("FDP_WORKER"),
                "slurm_job": os.environ.get("SLURM_JOB_ID"),
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
            out,
        )
'''

TEMPLATE = """\
# one run of the sweep in sweep.yaml
run_metadata:
  description: sweep run a=${{SWEEP.a}} b=${{SWEEP.b}}
  default_input_namespace: lab
  default_output_namespace: lab
  script: python3 ${{REPO_DIR}}/model.py ${{SWEEP.a}} ${{SWEEP.b}}
register:
  - external_object: inputs/base
    namespace_name: lab
    root: ${{REPO_DIR}}/raw/
    path: base.txt
    file_type: txt
    version: "1.0.0"
    title: base
    unique_name: lab-base-1.0.0
    alternate_identifier_type: local
write:
  - data_product: runs/a-${{SWEEP.a}}/b-${{SWEEP.b}}
    description: one run of the sweep
    file_type: json
"""


def sweep_project(base: Path, a: list[Any], b: list[Any], name: str = "project") -> Env:
    """A committed git repository with model.py, template.yaml, sweep.yaml (a x b runs,
    written to runs/) and raw/base.txt, and `fdp init` done."""
    env = Env(base, name)
    env.file("model.py", MODEL)
    env.file("template.yaml", TEMPLATE)
    env.file("raw/base.txt", "base-value\n")
    env.file(
        "sweep.yaml",
        yaml.safe_dump(
            {"template": "template.yaml", "parameters": {"a": a, "b": b}, "output": "runs"},
            sort_keys=False,
        ),
    )
    env.file(".gitignore", "runs/\n")
    git_commit_all(env.project)
    env.fdp("init", "--name", "Ada", "--identifier", "https://orcid.org/0000-0002-1825-0097",
            "--namespace", "lab")
    return env


def add_settings(env: Env, settings: dict[str, Any]) -> None:
    """Add keys to the project's .fdp/settings.yaml."""
    path = env.project / ".fdp" / "settings.yaml"
    current = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    current.update(settings)
    path.write_text(yaml.safe_dump(current, sort_keys=False), encoding="utf-8")


def run_outputs(db: Path | str) -> dict[str, dict[str, Any]]:
    """Every code run of the registry, by the output it wrote (`a-1/b-2`): what the model
    wrote there, with the run's inputs and outputs as the registry records them."""
    from fdp_tasks.store import queries
    from fdp_tasks.store.sql import Store

    store = Store(db)
    try:
        out: dict[str, dict[str, Any]] = {}
        for run in store.find("code_run", {}):
            outputs = queries.get_many(store, "object_component", run["outputs"])
            inputs = queries.get_many(store, "object_component", run["inputs"])
            for component in outputs.values():
                obj = store.get("object", component["object"])
                for product_id in obj["data_products"]:
                    found = queries.locate(store, store.get("data_product", product_id))
                    name = found.product["name"].removeprefix("runs/")
                    root = found.root["root"] if found.root else ""
                    path = Path(root.removeprefix("file://")) / found.location["path"]
                    out[name] = {
                        **json.loads(path.read_text(encoding="utf-8")),
                        "inputs": len(inputs),
                        "outputs": len(outputs),
                        "code_run": run["uuid"],
                    }
        return out
    finally:
        store.close()
