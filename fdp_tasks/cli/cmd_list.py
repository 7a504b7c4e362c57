"""`fdp list [products|runs]`: what the local registry holds."""

from __future__ import annotations

import argparse


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
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project
    from fdp_tasks.registry import queries

    store = Project.find().read_store()
    if args.what == "runs":
        for run in store.find("code_run", newest_first=False):
            print(
                f"{run['uuid']}  {run['run_date'][:19]}  in:{len(run['inputs'])} "
                f"out:{len(run['outputs'])}  {run['description']}"
            )
        return 0
    namespaces = {ns["id"]: ns["name"] for ns in store.find("namespace")}
    filters = {}
    if args.namespace:
        ns_id = queries.namespace_id(store, args.namespace)
        if ns_id is None:
            return 0
        filters["namespace"] = ns_id
    for product in store.find("data_product", filters, newest_first=False):
        print(f"{namespaces[product['namespace']]}:{product['name']}@{product['version']}")
    return 0
