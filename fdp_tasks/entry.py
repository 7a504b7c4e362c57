"""Where the commands meet the task graph: doit for a config, with the local registry served
to the job's script by the registry server. (The graph and the job know the server only as
the callable passed in here.)"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fdp_tasks import graph
from fdp_tasks.project import Project


@contextlib.contextmanager
def loopback_registry(
    project: Project, on_record: Callable[[], None] | None = None
) -> Iterator[str]:
    """The local registry's API URL for the length of a job; `on_record` hears of each
    record the job's script creates there."""
    # imported only when a job runs: a no-op or `fdp status` needs no web server
    from fdp_tasks.server import serve

    with serve.job_registry(
        project.store(), project.server_dir, project.registry_db, on_record=on_record
    ) as url:
        yield url


def load_namespace(config_path: str | Path | None, **options: Any) -> dict[str, Any]:
    """For dodo.py: the tasks of one config, or of many (options: refresh, remote, force,
    dirty, wait, jobs, executor)."""
    return graph.load_namespace(config_path, serve=loopback_registry, **options)


def run_doit(config_path: str | Path | None, doit_args: list[str], **options: Any) -> int:
    """Run doit on the tasks of `config_path`, as `doit <doit_args>` would in its project."""
    return graph.run_doit(config_path, doit_args, serve=loopback_registry, **options)
