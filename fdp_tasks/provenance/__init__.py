"""Provenance: the one walk over a registry's records (`walk`), and its exports.

`walk.walk(registry, item, depth, downstream)` reads any `Registry` (the SQL store, our
server or an upstream registry over HTTP) and returns a `ProvGraph` of entities (data
products, their files, configs, scripts, code repositories), activities (code runs) and
agents (authors). The exports only read that graph: `prov_doc` (W3C PROV, as the upstream
registry's prov-report has it), `rocrate_export` (a Workflow Run Crate) and
`graph_picture` (dot text, svg and png through graphviz).
"""

from fdp_tasks.provenance.walk import (
    Activity,
    Agent,
    Edge,
    Entity,
    Lineage,
    ProvGraph,
    find_item,
    resolve_item,
    walk,
    walk_code_run,
    walk_product,
)

__all__ = [
    "Activity",
    "Agent",
    "Edge",
    "Entity",
    "Lineage",
    "ProvGraph",
    "find_item",
    "resolve_item",
    "walk",
    "walk_code_run",
    "walk_product",
]
