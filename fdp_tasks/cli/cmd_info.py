"""`fdp info ns:name@version | uuid`: one data product or code run, with its provenance."""

from __future__ import annotations

import argparse
import json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "info", help="show a data product (ns:name@version), or a code run or object (uuid)"
    )
    parser.add_argument(
        "item",
        help="namespace:name@version (latest version without @), or a code run or object uuid",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.environment import summary
    from fdp_tasks.inventory import describe
    from fdp_tasks.project import Project

    info = describe(Project.find(), args.item)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            if key == "environment" and isinstance(value, dict):
                value = summary(value)  # `--json` gives every distribution
            elif isinstance(value, list):
                value = ", ".join(value) if value else "-"
            elif isinstance(value, dict):
                value = json.dumps(value)
            print(f"{key:<16} {value}")
    return 0
