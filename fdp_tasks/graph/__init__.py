"""The task graph: a config compiled into doit tasks, and doit driven from `fdp` commands."""

from __future__ import annotations

import atexit
import os
import sys
from pathlib import Path
from typing import Any

from fdp_tasks.errors import FdpError, configure_logging, error_text
from fdp_tasks.job import ServeRegistry


def load_namespace(
    config_path: str | Path,
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    jobs: int | None = None,
) -> dict[str, Any]:
    """For dodo.py: the tasks of one config; a bad config ends the process with one line.

    doit imports the dodo.py before any of our code runs, so this is where warnings and
    errors get the form `fdp` gives them."""
    from fdp_tasks.graph.tasks import dodo_namespace

    configure_logging()
    try:
        found = locate_config(str(config_path))
        namespace = dodo_namespace(
            str(found),
            refresh=refresh,
            remote=remote,
            force=force,
            dirty=dirty,
            serve=serve,
            wait=wait,
            jobs=jobs,
        )
    except FdpError as exc:
        print(error_text(str(exc)), file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
    # doit runs the tasks after this returns, and says nothing when it is done: the
    # session's connections are closed as the process ends.
    atexit.register(namespace["session"].close)
    return namespace


def locate_config(text: str) -> Path:
    """A `config=` path from doit's command line. doit runs in the dodo.py's folder; with
    `doit -k` from a subfolder, the path is the user's, from where they typed it ($PWD)."""
    from fdp_tasks.project import config_not_found

    path = Path(text).expanduser()
    if path.is_absolute():
        if path.is_file():
            return path
        raise config_not_found(text, path.parent, "doit config={}")
    here = Path.cwd().resolve()
    bases = [here]
    invoked = Path(os.environ.get("PWD") or here).resolve()
    if invoked != here and invoked.is_relative_to(here):
        bases.insert(0, invoked)  # typed below the dodo.py, with doit -k
    for base in bases:
        if (base / path).is_file():
            return base / path
    raise config_not_found(text, here, "doit config={}")


def run_doit(
    config_path: str | Path,
    doit_args: list[str],
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    jobs: int | None = None,
) -> int:
    """Run doit on the tasks of `config_path`, as `doit <doit_args>` would in its project;
    returns the exit code `fdp` ends with: that of the gravest error a task failed on (1 for
    any other failure), not doit's own, which says little more than "something failed"."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from fdp_tasks.graph.report import FdpReporter
    from fdp_tasks.graph.tasks import dodo_namespace, preflight_push

    namespace = dodo_namespace(
        str(config_path),
        refresh=refresh,
        remote=remote,
        force=force,
        dirty=dirty,
        serve=serve,
        wait=wait,
        jobs=jobs,
    )
    with namespace["session"] as session:
        if "push" in doit_args:  # one line, before any item, for what would fail them all
            preflight_push(session, dirty)
        reporter = FdpReporter(sys.stdout, {})
        namespace["DOIT_CONFIG"] = {**namespace["DOIT_CONFIG"], "reporter": reporter}
        result = DoitMain(ModuleTaskLoader(namespace)).run(doit_args)
    if result == 0:
        return 0
    return reporter.exit_code or 1
