"""`fdp list [products|runs]`: what the local registry holds."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "list", help="list data products or code runs in the local registry"
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=["products", "runs"],
        default="products",
        help="data products (default) or code runs",
    )
    parser.add_argument("--namespace", help="only this namespace (products)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks import inventory
    from fdp_tasks.project import Project

    project = Project.find()
    if args.json:
        if args.what == "runs":
            rows = inventory.code_runs(project)
        else:
            rows = [_product_row(ref) for ref in inventory.products(project, args.namespace)]
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if args.what == "runs":
        for run in inventory.code_runs(project):
            print(
                f"{run['uuid']}  {run['run_date'][:19]}  in:{run['inputs']} "
                f"out:{run['outputs']}  {run['description']}"
            )
        return 0
    for product in inventory.products(project, args.namespace):
        print(product)
    return 0


def _product_row(ref: str) -> dict[str, Any]:
    """`ns:name@version` as the JSON object a script reads."""
    namespace, _, rest = ref.partition(":")
    name, _, version = rest.rpartition("@")
    return {"data_product": ref, "namespace": namespace, "name": name, "version": version}
