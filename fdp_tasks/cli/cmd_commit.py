"""`fdp commit [CONFIG]`: stage everything the config's last run made."""

from __future__ import annotations

import argparse

from fdp_tasks.cli.common import add_config_argument, config_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "commit",
        help="stage the code runs and outputs of the config's last run",
        description="Stage what the last run of the config made: its code run(s) and every "
        "data product they wrote, for the next `fdp push`.",
    )
    add_config_argument(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.graph.plan import Plan
    from fdp_tasks.staging import stage_last_run

    plan = Plan(config_path(args))
    new, old = stage_last_run(plan.project, plan.runs_log, plan.cfg.file)
    for entry in new:
        print(f"staged {entry}")
    if old:
        print(f"{len(old)} item(s) of the run were staged already")
    return 0
