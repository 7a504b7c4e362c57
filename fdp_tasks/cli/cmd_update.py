"""`fdp update [CONFIG]`: move the config's unpinned reads to the remote's newest versions."""

from __future__ import annotations

import argparse

from fdp_tasks.cli.common import add_config_argument, config_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "update",
        help="pull the newest remote versions of the config's unpinned reads",
        description="For every read without a pinned version: pull the newest version the "
        "remote holds, so that the next run reads it, and say what moved (ns:name 1.0.0 -> "
        "1.1.0). Pinned reads are left as they are.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--remote", metavar="NAME", help="the remote to use (default: origin, or the only one)"
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would move, pull nothing")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.graph.update import update_reads

    done = update_reads(config_path(args), remote_name=args.remote, dry_run=args.dry_run)
    for line in done.lines:
        print(line)
    if done.tally.total():
        print(done.tally.line())
    return 0
