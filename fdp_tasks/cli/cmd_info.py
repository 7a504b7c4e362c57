"""`fdp info ns:name@version | uuid`: one data product or code run, with its provenance."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fdp_tasks.errors import FdpError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a data product (ns:name@version) or code run (uuid)"
    )
    parser.add_argument("item")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=handler)


def product_info(store: Any, ref_text: str) -> dict[str, Any]:
    from fdp_tasks.registry import queries

    ref = queries.ProductRef.parse(ref_text)
    if not ref.namespace:
        raise FdpError(f"{ref_text}: give the namespace, as namespace:name@version")
    if not ref.version:
        versions = queries.product_versions(store, ref.namespace, ref.name)
        if not versions:
            raise FdpError(f"{ref_text} is not in the local registry")
        from fdp_tasks.config.versions import latest

        ref = queries.ProductRef(ref.namespace, ref.name, str(latest(versions)))
    found = queries.locate_ref(store, ref)
    if found is None:
        raise FdpError(f"{ref} is not in the local registry")
    info: dict[str, Any] = {
        "data_product": str(ref),
        "object_uuid": found.object["uuid"],
        "description": found.object.get("description"),
        "file": (found.root["root"] + found.location["path"]) if found.location else None,
        "sha1": found.hash,
        "authors": [store.get("author", a)["name"] for a in found.object["authors"]],
    }
    for ext_id in found.product.get("external_object") or []:
        ext = store.get("external_object", ext_id)
        info["external_object"] = {
            k: ext[k]
            for k in (
                "title",
                "identifier",
                "alternate_identifier",
                "release_date",
                "primary_not_supplement",
            )
            if ext.get(k) is not None
        }
    made_by = []
    for component in found.object["components"]:
        made_by += [run["uuid"] for run in store.find("code_run", {"outputs": component})]
    info["made_by"] = made_by
    info["read_by"] = sorted(
        {
            run["uuid"]
            for component in found.object["components"]
            for run in store.find("code_run", {"inputs": component})
        }
    )
    return info


def run_info(store: Any, run_uuid: str) -> dict[str, Any]:
    rows = store.find("code_run", {"uuid": run_uuid}, limit=1)
    if not rows:
        raise FdpError(f"no code run {run_uuid} in the local registry")
    run = rows[0]

    def products(components: list[int]) -> list[str]:
        out = []
        for cid in components:
            obj = store.get("object", store.get("object_component", cid)["object"])
            for pid in obj["data_products"]:
                p = store.get("data_product", pid)
                ns = store.get("namespace", p["namespace"])["name"]
                out.append(f"{ns}:{p['name']}@{p['version']}")
        return out

    return {
        "code_run": run["uuid"],
        "run_date": run["run_date"],
        "description": run["description"],
        "inputs": products(run["inputs"]),
        "outputs": products(run["outputs"]),
    }


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project

    store = Project.load().store()
    is_uuid = len(args.item) == 36 and args.item.count("-") == 4 and ":" not in args.item
    info = run_info(store, args.item) if is_uuid else product_info(store, args.item)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if isinstance(value, list):
                value = ", ".join(value) if value else "-"
            elif isinstance(value, dict):
                value = json.dumps(value)
            print(f"{key:<16} {value}")
    return 0
