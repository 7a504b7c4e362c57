"""Locks that keep two processes from doing one thing at once: the job of one config, and
work on a whole project (`fdp gc --yes`).

A lock is `flock` on a file, which the operating system releases when the holding process
ends however it ends (`kill -9` included), so a stale lock never blocks anyone. The file
holds who has the lock (pid, start time, command), so that whoever finds it taken can say
so in one line. Different files never wait on each other: jobs of different configs run at
once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fdp_tasks.errors import FdpError

JOB_LOCK = "job.lock"  # in a config's state folder
PROJECT_LOCK = "project.lock"  # in the project's .fdp folder
POLL_SECONDS = 0.2


class LockBusy(FdpError):
    """Another process holds the lock (exit status 1: the command could not do its work)."""


def _holder_file(path: Path) -> Path:
    """Who holds the lock `path`: a file beside it, there only while someone does (the lock
    file itself never changes, so a repository that tracks `.fdp/` never sees it change)."""
    return path.with_name(path.name + ".holder")


def _holder(path: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        found = json.loads(_holder_file(path).read_text(encoding="utf-8") or "{}")
        if isinstance(found, dict):
            return found
    return {}


def _program() -> str:
    name = Path(sys.argv[0]).name
    return "fdp" if name == "main.py" else name  # `python -m fdp_tasks.cli.main` is fdp


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return "held by another process"
    pid = holder["pid"]
    started = str(holder.get("started") or "?")[:19].replace("T", " ")
    command = holder.get("command")
    return f"pid {pid}, started {started} UTC" + (f" ({command})" if command else "")


@contextlib.contextmanager
def hold(
    path: Path,
    what: str,
    wait: bool = False,
    how_to_wait: str = "",
    shared: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[bool]:
    """Hold the lock file `path` for `what` (e.g. "the job of config.yaml"); yields whether
    it had to wait for another holder first. Without `wait`, a lock taken by another
    process is a LockBusy naming that process (and `how_to_wait`, the flag that waits);
    with it, `on_wait` hears once whom it waits for. `shared`: many shared holders at
    once, none while someone holds it alone."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, as before locks existed
        yield False
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    waited = False
    try:
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    hint = f"; wait for it, or use {how_to_wait} to wait" if how_to_wait else ""
                    raise LockBusy(
                        f"{what} is already running: {_describe(_holder(path))}{hint}"
                    ) from None
                if not waited and on_wait is not None:
                    on_wait(f"waiting for {what}: {_describe(_holder(path))}")
                waited = True
                time.sleep(POLL_SECONDS)
        if shared:  # the holder file names the one exclusive holder only
            yield waited
            return
        holder = _holder_file(path)
        holder.write_text(  # read while being written, it reads as "another process"
            json.dumps(
                {
                    "pid": os.getpid(),
                    "started": datetime.now(timezone.utc).isoformat(),
                    "command": " ".join([_program(), *sys.argv[1:]])[:200],
                }
            ),
            encoding="utf-8",
        )
        try:
            yield waited
        finally:
            holder.unlink(missing_ok=True)  # before the lock goes: it names a live holder
    finally:
        os.close(fd)  # closing the file releases the lock


def job_lock(
    state_dir: Path,
    config_name: str,
    wait: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Any:
    """The lock of one config's job (its state folder keys it): one run at a time."""
    return hold(
        state_dir / JOB_LOCK,
        f"the job of {config_name}",
        wait,
        "--wait (doit: wait=1)",
        on_wait=on_wait,
    )


def project_lock(
    state_dir: Path,
    wait: bool = False,
    shared: bool = False,
    on_wait: Callable[[str], None] | None = None,
) -> Any:
    """The lock of a whole project (its `.fdp` folder), held alone by work that must not
    overlap any other on the project's files, such as deleting what nothing references
    (`fdp gc --yes`); jobs hold it `shared`, so they run side by side but never during
    such work."""
    return hold(
        state_dir / PROJECT_LOCK,
        f"a job, or other work, on the project {state_dir.parent}",
        wait,
        shared=shared,
        on_wait=on_wait,
    )
