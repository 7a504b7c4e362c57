"""`fdp prov ITEM`: the provenance of a data product or code run, as W3C PROV, an RO-Crate
or a picture."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from fdp_tasks.files import write_atomically

if TYPE_CHECKING:
    from fdp_tasks.provenance.walk import Entity, ProvGraph

FORMATS = ("prov-json", "prov-n", "prov-xml", "turtle", "ro-crate", "dot", "svg", "png")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prov",
        help="the provenance of a data product or code run: W3C PROV, RO-Crate or a picture",
        description="Walks the local registry from ITEM upstream (what made it) or "
        "downstream (what was made from it), DEPTH code runs deep, and writes it in FORMAT.",
    )
    parser.add_argument(
        "item", help="namespace:name@version (newest without @), or a code run uuid"
    )
    parser.add_argument(
        "--format", "-f", default="prov-json", choices=FORMATS, help="default: prov-json"
    )
    parser.add_argument(
        "--depth", type=int, default=1, help="how many code runs deep to walk (default 1)"
    )
    parser.add_argument(
        "--downstream", action="store_true", help="what was made from ITEM, not what made it"
    )
    parser.add_argument(
        "-o",
        "--output",
        help="where to write (default: standard output; for ro-crate a folder, or a .zip file)",
    )
    parser.add_argument(
        "--attributes",
        action="store_true",
        help="dot/svg/png: show hashes, formats and dates on the picture",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.errors import BadInput
    from fdp_tasks.project import Project
    from fdp_tasks.provenance import walk

    if args.format == "ro-crate" and not args.output:
        raise BadInput("--format ro-crate: give -o PATH (a folder, or a file ending in .zip)")
    if args.format == "png" and not args.output and sys.stdout.isatty():
        raise BadInput("--format png: give -o PATH, or redirect standard output to a file")
    store = Project.find().read_store()
    try:
        graph = walk(store, args.item, depth=args.depth, downstream=args.downstream)
        if args.format == "ro-crate":
            from fdp_tasks.provenance.rocrate_export import build_crate, write_crate

            destination = Path(args.output)
            write_crate(build_crate(graph, local_file), destination, destination.suffix == ".zip")
            print(f"wrote {destination}", file=sys.stderr)
            return 0
        data = render(graph, args.format, args.attributes)
    finally:
        store.close()
    if args.output:
        write_atomically(Path(args.output), [data])
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


def render(graph: ProvGraph, fmt: str, attributes: bool) -> bytes:
    """`graph` as one of the single-file formats."""
    from fdp_tasks.provenance import graph_picture, prov_doc

    if fmt == "dot":
        return graph_picture.to_dot(graph, attributes).encode("utf-8")
    if fmt in graph_picture.PICTURE_FORMATS:
        return graph_picture.render(graph, fmt, attributes)
    document = prov_doc.build_document(graph)
    return prov_doc.serialize(document, fmt)


def local_file(entity: Entity) -> Path | None:
    """The bytes of a file of the local data store (a file:// location), if they are here."""
    location = entity.location or ""
    if not location.startswith("file://"):
        return None
    path = Path(unquote(urlsplit(location).path))
    return path if path.is_file() else None
