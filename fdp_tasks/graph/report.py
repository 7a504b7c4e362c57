"""How doit reports the tasks of a config: its console output, with failures said as `fdp`
says every error.

A task that fails is one `fdp: error: <task>: <why>` line on stderr, whether `fdp` or `doit`
runs it. A remote that cannot be used, or a dirty tree, fails every push item the same way;
the message is shown for the first item and the others point to it, instead of one copy per
product. A task skipped because one it needs failed adds nothing: that failure said why.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter

from fdp_tasks.errors import FdpError, error_text, os_error_text


class TaskFailure(TaskFailed):
    """What a task failed on, as doit's failure: an FdpError, or an OSError (a full disk, a
    read-only file system) said in one line; it keeps the exit code `fdp` ends with."""

    def __init__(self, exc: FdpError | OSError):
        if isinstance(exc, OSError):
            super().__init__(os_error_text(exc))
            self.exit_code = 1
        else:
            super().__init__(str(exc))
            self.exit_code = exc.exit_code


class FdpReporter(ConsoleReporter):
    """doit's console reporter; failures are `fdp: error:` lines, each message said once."""

    desc = "console output, each failure message once"

    def __init__(self, outstream: Any, options: dict[str, Any]):
        super().__init__(outstream, options)
        self._first_with: dict[str, str] = {}  # failure message -> the first task it failed
        self.exit_code = 0  # the gravest failure's, for `fdp` to exit with

    def add_failure(self, task: Any, fail: Any) -> None:
        self.exit_code = max(self.exit_code, getattr(fail, "exit_code", 1))
        if isinstance(fail, UnmetDependency):
            return
        if not isinstance(fail, TaskFailed) or not fail.report:
            super().add_failure(task, fail)  # an exception: doit shows its traceback
            return
        self.failures.append({"task": task, "exception": fail})
        message = fail.message.strip()
        first = self._first_with.setdefault(message, task.name)
        lines = (message.splitlines() or ["failed"]) if first == task.name else [f"as {first}"]
        sys.stderr.write(error_text("\n".join(f"{task.name}: {line}" for line in lines)) + "\n")
