"""`fdp sweep expand SWEEP`: write the plain FDP configs of a parameter sweep."""

from __future__ import annotations

import argparse
import os


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="parameter sweeps: a template config times lists of values",
        description="A sweep file names a template config and lists of parameter values; "
        "every combination becomes a plain FDP config (`doit config=SWEEP` expands it and "
        "runs them all in one graph).",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    expand = sub.add_parser(
        "expand",
        help="write the configs of a sweep, checked as `fdp validate` checks one",
        description="Write one config per combination of the sweep's values (unchanged "
        "ones are left alone; ones the sweep no longer makes are removed) and list them.",
    )
    expand.add_argument("sweep", help="the sweep file (template: and parameters:)")
    expand.set_defaults(func=handle_expand)


def handle_expand(args: argparse.Namespace) -> int:
    from fdp_tasks.config.sweep import expand

    for path in expand(args.sweep):
        print(os.path.relpath(path))
    return 0
