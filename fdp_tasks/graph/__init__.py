"""The task graph: a config compiled into doit tasks, and doit driven from `fdp` commands."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from fdp_tasks.errors import FdpError, configure_logging, error_text
from fdp_tasks.job import ServeRegistry

DEFAULT_CONFIG = "config.yaml"


def load_namespace(
    config_path: str | Path | None,
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    jobs: int | None = None,
    executor: str | None = None,
) -> dict[str, Any]:
    """For dodo.py: the tasks of one config, or of many in one graph (`config=a.yaml,b.yaml`,
    globs, a sweep file, or without `config=` the `configs:` setting: `graph/many.py`); a
    bad config ends the process with one line. `executor` names where jobs run (default:
    the `executor` setting, else here).

    doit imports the dodo.py before any of our code runs, so this is where warnings and
    errors get the form `fdp` gives them."""
    from fdp_tasks.graph.many import configs_for, many_namespace
    from fdp_tasks.graph.tasks import dodo_namespace

    configure_logging()
    options: dict[str, Any] = dict(
        refresh=refresh, remote=remote, force=force, dirty=dirty, serve=serve, wait=wait, jobs=jobs
    )
    try:
        text = None if config_path is None else str(config_path)
        many = configs_for(text, Path.cwd())
        if many is not None:
            namespace = many_namespace(many, executor=executor, **options)
            for opened in namespace["sessions"]:
                atexit.register(opened.close)
            return namespace
        found = locate_config(text or DEFAULT_CONFIG)
        namespace = dodo_namespace(str(found), executor=executor, **options)
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
    config_path: str | Path | None,
    doit_args: list[str],
    refresh: bool = False,
    remote: str | None = None,
    force: bool = False,
    dirty: bool = False,
    serve: ServeRegistry | None = None,
    wait: bool = False,
    jobs: int | None = None,
    executor: str | None = None,
) -> int:
    """Run doit on the tasks of `config_path` (or of many configs: a sweep file, or None
    for the `configs:` setting), as `doit <doit_args>` would in its project; returns the
    exit code `fdp` ends with: that of the gravest error a task failed on (1 for any other
    failure), not doit's own, which says little more than "something failed"."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from fdp_tasks.graph.many import configs_for, many_namespace
    from fdp_tasks.graph.report import FdpReporter
    from fdp_tasks.graph.tasks import dodo_namespace, preflight_push

    options: dict[str, Any] = dict(
        refresh=refresh, remote=remote, force=force, dirty=dirty, serve=serve, wait=wait, jobs=jobs
    )
    many = configs_for(None if config_path is None else str(config_path), Path.cwd())
    if many is not None:
        namespace = many_namespace(many, executor=executor, **options)
        sessions = namespace["sessions"]
    else:
        path = Path(config_path or DEFAULT_CONFIG)
        namespace = dodo_namespace(str(path), executor=executor, **options)
        sessions = [namespace["session"]]
    with contextlib.ExitStack() as stack:
        for session in sessions:
            stack.enter_context(session)
            if "push" in doit_args:  # one line, before any item, for what would fail them all
                preflight_push(session, dirty)
        reporter = FdpReporter(sys.stdout, {})
        namespace["DOIT_CONFIG"] = {**namespace["DOIT_CONFIG"], "reporter": reporter}
        result = DoitMain(ModuleTaskLoader(namespace)).run(doit_args)
    if result == 0:
        return 0
    return reporter.exit_code or 1
