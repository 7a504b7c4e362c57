"""`doit prov`: the provenance documents of a config's outputs, in the config's state folder.

    prov:<ns:name@version>   writes <state>/prov/<ns>/<name>@<version>.json (PROV-JSON), and
                             .svg beside it where graphviz's `dot` is installed

Each task walks the local registry when it is created and is up to date while the walk's
digest (and whether a picture can be drawn) is what it was when the files were written, so
a rerun writes nothing until the provenance changes: a new run reading or making the
product, a changed record. Not a default task: `doit prov` asks for it, and it never runs
the job first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from fdp_tasks.errors import FdpError
from fdp_tasks.files import write_atomically
from fdp_tasks.graph.plan import Plan
from fdp_tasks.graph.report import TaskFailure
from fdp_tasks.job import iter_runs
from fdp_tasks.provenance import ProvGraph, walk_product

Task = dict[str, Any]


def prov_folder(plan: Plan) -> Path:
    """Where a config's provenance documents go."""
    return plan.state_dir / "prov"


def config_outputs(plan: Plan) -> dict[str, int]:
    """The data products the config's runs made, by ns:name@version: their local ids."""
    made: dict[str, int] = {}
    for record in iter_runs(plan.runs_log):
        for found in plan.outputs_of(record.get("code_runs") or []) or []:
            made[str(found.ref)] = found.product["id"]
    return made


def prov_tasks(plan: Plan, depth: int = 1) -> Iterator[Task]:
    """One task per output of the config's runs."""
    # imported when asked for (`doit prov`): the PROV library costs every other command
    from fdp_tasks.provenance import graph_picture, prov_doc

    folder = prov_folder(plan)
    drawing = graph_picture.dot_available()
    for ref, product_id in sorted(config_outputs(plan).items()):
        namespace, _, rest = ref.partition(":")
        stem = folder / namespace / rest
        targets = [stem.with_name(stem.name + ".json")]
        if drawing:
            targets.append(stem.with_name(stem.name + ".svg"))
        try:
            graph = walk_product(plan.store, product_id, depth)
        except FdpError as exc:
            failure = TaskFailure(exc)
            yield {"name": ref, "actions": [lambda failure=failure: failure], "uptodate": [False]}
            continue

        def write(graph: ProvGraph = graph, files: list[Path] = targets) -> Any:
            try:
                document = prov_doc.build_document(graph)
                write_atomically(files[0], [prov_doc.serialize(document, "prov-json")])
                if len(files) > 1:
                    write_atomically(files[1], [graph_picture.render(graph, "svg")])
            except (FdpError, OSError) as exc:
                return TaskFailure(exc)
            return {"digest": graph.digest(), "files": [str(f) for f in files]}

        yield {
            "name": ref,
            "doc": f"the provenance of {ref} as PROV-JSON (and svg)",
            "actions": [write],
            "targets": targets,
            "uptodate": [config_changed({"digest": graph.digest(), "svg": drawing})],
            "clean": True,
            "verbosity": 2,
        }
