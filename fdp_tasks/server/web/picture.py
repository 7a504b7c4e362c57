"""A product page's provenance picture: the provenance module's drawing, as inline SVG.

The drawing is graphviz's SVG, and its labels are names users chose, so the page takes it
only after it has been rebuilt from an allow-list: SVG drawing elements and presentation
attributes, no script, no foreign content, no event handlers, no links out of the picture.
Without graphviz's `dot` there is no picture, and the page lists the run, inputs and outputs
as text instead.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET  # noqa: S405 - parses graphviz's own output, see below
from functools import lru_cache

from fdp_tasks.errors import FdpError
from fdp_tasks.provenance.graph_picture import dot_available, render, to_dot
from fdp_tasks.provenance.walk import walk_product
from fdp_tasks.store.sql import Store

log = logging.getLogger(__name__)

# A larger graph (a run writing hundreds of products) is unreadable as a picture, and slow
# to draw on every view: the page lists it instead.
MAX_PICTURE_NODES = 60

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ALLOWED_ELEMENTS = {
    "svg", "g", "title", "desc", "path", "polygon", "polyline", "ellipse", "circle", "rect",
    "line", "text", "tspan", "defs", "linearGradient", "radialGradient", "stop", "a",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "id", "class", "width", "height", "viewBox", "preserveAspectRatio", "transform", "d",
    "points", "cx", "cy", "r", "rx", "ry", "x", "y", "x1", "y1", "x2", "y2", "dx", "dy",
    "fill", "fill-opacity", "stroke", "stroke-width", "stroke-dasharray", "stroke-opacity",
    "opacity", "font-family", "font-size", "font-weight", "font-style", "text-anchor",
    "offset", "stop-color", "stop-opacity", "gradientUnits", "role", "aria-label",
}  # fmt: skip


def product_picture(store: Store, product_id: int) -> str | None:
    """The provenance picture of a data product (the run that made it, its inputs, config,
    script and outputs: one level) as safe inline SVG, or None without graphviz, or when
    the graph is too large to read as a picture (the page lists it as text instead)."""
    if not dot_available():
        return None
    try:
        graph = walk_product(store, product_id, depth=1)
    except FdpError as exc:  # records the walk cannot follow: the page lists what it can
        log.warning("no provenance picture of data product %s: %s", product_id, exc)
        return None
    nodes = len(graph.entities) + len(graph.activities) + len(graph.agents)
    if nodes > MAX_PICTURE_NODES:
        return None
    return _drawn(to_dot(graph))


@lru_cache(maxsize=256)
def _drawn(dot_text: str) -> str | None:
    """The cleaned SVG of a dot text: drawn once, as pages are opened again and again."""
    try:
        svg = render(dot_text, "svg").decode("utf-8", "replace")
    except FdpError as exc:
        log.warning("no provenance picture: %s", exc)
        return None
    return clean_svg(svg)


def clean_svg(text: str) -> str | None:
    """The SVG rebuilt from allowed elements and attributes only (text the page may hold
    as markup: its text nodes are escaped again on the way out), or None if it does not
    parse as one SVG element.

    ElementTree does not fetch external entities, and the expat it runs on refuses
    exponential entity expansion; the text comes from graphviz on this host, not the
    request."""
    try:
        root = ET.fromstring(text)  # noqa: S314 - see the docstring
    except ET.ParseError:
        log.warning("the provenance picture is not well-formed SVG; left out")
        return None
    if _local(root.tag) != "svg":
        return None
    clean = _copy(root)
    if clean is None:
        return None
    ET.register_namespace("", SVG_NS)
    return ET.tostring(clean, encoding="unicode", short_empty_elements=True)


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _copy(element: ET.Element) -> ET.Element | None:
    tag = _local(element.tag)
    if tag not in ALLOWED_ELEMENTS:
        return None
    if tag == "a":  # graphviz wraps labels in links only when asked: keep the content alone
        tag = "g"
    out = ET.Element(f"{{{SVG_NS}}}{tag}")
    for key, value in element.attrib.items():
        name = _local(key)
        if name in ALLOWED_ATTRIBUTES and not key.startswith(f"{{{XLINK_NS}}}"):
            out.set(name, value)
    out.text = element.text
    for child in element:
        copied = _copy(child)
        if copied is not None:
            copied.tail = child.tail
            out.append(copied)
    return out
