"""`fdp resolve CONFIG`: print the working config a run would get, without running it."""

from __future__ import annotations

import argparse
import sys

import yaml

from fdp_tasks.cli.common import add_config_argument, config_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "resolve",
        help="print the fully resolved working config",
        description="Resolve template variables, globs, namespaces and versions against the "
        "local registry and print the working config. Needs no network; writes nothing. "
        "${{CONFIG_DIR}} shows the job directory a run started now would get.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--no-writes", action="store_true", help="leave write versions as incrementers"
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.graph.plan import Plan

    plan = Plan(config_path(args))  # reads the local registry as it is: creates nothing
    working = plan.working(registry_url="(local registry)", resolve_writes=not args.no_writes)
    yaml.safe_dump(working, sys.stdout, sort_keys=False)
    return 0
