"""A `ProvGraph` as a picture, drawn in the W3C PROV convention: entities are yellow
ellipses, activities blue rectangles, agents orange houses, and each edge is labelled with
its relation.

    to_dot(graph, attributes=False) -> str          graphviz's dot language
    render(graph, fmt) -> bytes                     fmt: "svg", "png" or "jpg"
    dot_available() -> bool

Rendering runs graphviz's `dot` program (the distribution's `graphviz` package); without
it, `render` raises `GraphvizMissing`, one line saying so.
"""

from __future__ import annotations

import shutil
import subprocess

from fdp_tasks.errors import FdpError
from fdp_tasks.provenance.walk import (
    CODE_REPO,
    CONFIG,
    EXTERNAL,
    OBJECT,
    PRODUCT,
    SCRIPT,
    Activity,
    Agent,
    Entity,
    ProvGraph,
)

PICTURE_FORMATS = ("svg", "png", "jpg")
ENTITY_STYLE = 'shape=ellipse, style=filled, fillcolor="#FFFC87", color="#808080"'
ACTIVITY_STYLE = 'shape=box, style=filled, fillcolor="#9FB1FC", color="#0000FF"'
AGENT_STYLE = 'shape=house, style=filled, fillcolor="#FED37F"'
KIND_WORDS = {
    PRODUCT: "data product",
    EXTERNAL: "external object",
    CONFIG: "config",
    SCRIPT: "script",
    CODE_REPO: "code repository",
    OBJECT: "file",
}
RENDER_TIMEOUT = 120  # seconds: a picture of thousands of nodes takes a few


class GraphvizMissing(FdpError):
    """svg/png/jpg asked for where graphviz's `dot` is not installed."""

    def __init__(self) -> None:
        super().__init__(
            "graphviz's `dot` program is not installed, so no svg/png/jpg can be drawn "
            "(install the distribution's graphviz package, or ask for --format dot)"
        )


def dot_available() -> bool:
    """Whether graphviz's `dot` is on the PATH."""
    return shutil.which("dot") is not None


def _quote(text: str) -> str:
    """A dot string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _entity_label(entity: Entity, attributes: bool) -> str:
    lines = [entity.label]
    if entity.kind != PRODUCT:
        lines.append(f"({KIND_WORDS.get(entity.kind, entity.kind)})")
    if attributes:
        if entity.hash:
            lines.append(f"{'commit' if entity.kind == CODE_REPO else 'sha1'} {entity.hash[:12]}")
        if entity.file_type:
            lines.append(entity.file_type)
        lines += [f"issue: {issue}" for issue in entity.issues]
    return "\n".join(lines)


def _activity_label(activity: Activity, attributes: bool) -> str:
    lines = [activity.label, f"code run {activity.uuid[:8]}"]
    if attributes and activity.run_date:
        lines.append(activity.run_date)
    return "\n".join(lines)


def _agent_label(agent: Agent, attributes: bool) -> str:
    if attributes and agent.identifier:
        return f"{agent.name}\n{agent.identifier}"
    return agent.name


def to_dot(graph: ProvGraph, attributes: bool = False) -> str:
    """The graph in the dot language; `attributes` adds hashes, formats and dates."""
    names: dict[str, str] = {}
    lines = [
        "digraph provenance {",
        "  rankdir=BT;",
        '  node [fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]

    def node(key: str, label: str, style: str, extra: str = "") -> None:
        names[key] = f"n{len(names)}"
        lines.append(f"  {names[key]} [label={_quote(label)}, {style}{extra}];")

    for entity in sorted(graph.entities.values(), key=lambda e: e.key):
        bold = ", penwidth=2" if entity.key == graph.root else ""
        node(entity.key, _entity_label(entity, attributes), ENTITY_STYLE, bold)
    for activity in sorted(graph.activities.values(), key=lambda a: a.key):
        bold = ", penwidth=2" if activity.key == graph.root else ""
        node(activity.key, _activity_label(activity, attributes), ACTIVITY_STYLE, bold)
    for agent in sorted(graph.agents.values(), key=lambda a: a.key):
        node(agent.key, _agent_label(agent, attributes), AGENT_STYLE)
    for edge in graph.edges:
        if edge.source in names and edge.target in names:
            lines.append(
                f"  {names[edge.source]} -> {names[edge.target]} [label={_quote(edge.relation)}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: ProvGraph | str, fmt: str, attributes: bool = False) -> bytes:
    """The graph (or dot text) drawn by graphviz as `fmt` ("svg", "png" or "jpg")."""
    if fmt not in PICTURE_FORMATS:
        raise FdpError(f"format: expected one of {', '.join(PICTURE_FORMATS)}, got {fmt!r}")
    program = shutil.which("dot")
    if program is None:
        raise GraphvizMissing()
    text = graph if isinstance(graph, str) else to_dot(graph, attributes)
    try:
        done = subprocess.run(
            [program, f"-T{fmt}"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=RENDER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FdpError(f"graphviz's dot took over {RENDER_TIMEOUT} s to draw the graph") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise FdpError(f"graphviz's dot failed: {reason[0] if reason else done.returncode}")
    return done.stdout
