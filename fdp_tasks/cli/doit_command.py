"""The pull, run and push commands: thin wrappers over the same doit tasks `doit` runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fdp_tasks.cli.common import add_config_argument, config_path
from fdp_tasks.scalars import positive_int

DEFAULT_CONFIG = "config.yaml"


def doit_command(
    name: str, help_text: str, tasks: list[str], keep_going: bool, refresh: bool = False
) -> Callable[[argparse._SubParsersAction], None]:
    """An add_parser for a command that runs doit `tasks` for a config."""

    def add_parser(subparsers: argparse._SubParsersAction) -> None:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        add_config_argument(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="list what would run, run nothing"
        )
        parser.add_argument(
            "--remote", metavar="NAME", help="the remote to use (default: origin, or the only one)"
        )
        parser.add_argument(
            "--jobs",
            metavar="N",
            type=jobs_count,
            help="files to upload or download at once (default: the `jobs` setting of "
            ".fdp/settings.yaml, else 4 per core, at most 8)",
        )
        if "job" in tasks:
            parser.add_argument(
                "--force",
                action="store_true",
                help="run the job even if it looks up to date (modules a script imports are "
                "not tracked)",
            )
            parser.add_argument(
                "--wait",
                action="store_true",
                help="wait for a job of this config that another process runs, instead of "
                "refusing",
            )
        if "job" in tasks:
            parser.add_argument(
                "--executor",
                metavar="NAME",
                help="where jobs run: local (here), dask (a Dask cluster) or slurm (default: "
                "the `executor` setting of .fdp/settings.yaml, else local)",
            )
        if "job" in tasks or "push" in tasks:
            parser.add_argument(
                "--dirty",
                action="store_true",
                help="allow uncommitted changes to tracked files of the git repository "
                "(runs are then recorded as dirty: <commit>-dirty)",
            )
        parser.set_defaults(func=lambda args: handler(args, tasks, keep_going, refresh))

    return add_parser


def handler(args: argparse.Namespace, tasks: list[str], keep_going: bool, refresh: bool) -> int:
    from fdp_tasks.entry import run_doit

    path = many_configs_path(args)
    if args.dry_run:
        from fdp_tasks.cli.cmd_status import print_status

        # what a run would do first is part of its dry run: registers and pulls
        shown = [*tasks, "register", "pull"] if "job" in tasks else tasks
        print_status(path, shown, remote_name=args.remote, dirty=getattr(args, "dirty", False))
        return 0
    doit_args = ["run", *(["--continue"] if keep_going else []), *tasks]
    force = getattr(args, "force", False)
    dirty = getattr(args, "dirty", False)
    wait = getattr(args, "wait", False)
    return run_doit(
        path,
        doit_args,
        refresh=refresh,
        remote=args.remote,
        force=force,
        dirty=dirty,
        wait=wait,
        jobs=args.jobs,
        executor=getattr(args, "executor", None),
    )


def many_configs_path(args: argparse.Namespace) -> Path | None:
    """The config a command names; None, for the many configs of the project's `configs:`
    setting (or a sweep.yaml), when it names none and there is no ./config.yaml."""
    if args.config == DEFAULT_CONFIG and not Path(DEFAULT_CONFIG).is_file():
        from fdp_tasks.graph.many import configs_for

        if configs_for(None, Path.cwd()) is not None:
            return None
    return config_path(args)


def jobs_count(text: str) -> int:
    """`--jobs N`: a positive integer, else argparse's one-line error naming the flag."""
    try:
        return positive_int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
