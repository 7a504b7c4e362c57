"""How doit reports the tasks of a config: its console output, with failures said as `fdp`
says every error.

A task that fails is one `fdp: error: <task>: <why>` line on stderr, whether `fdp` or `doit`
runs it. A remote that cannot be used, or a dirty tree, fails every push item the same way;
the message is shown for the first item and the others point to it, instead of one copy per
product. A task skipped because one it needs failed adds nothing: that failure said why.

Tasks never print: what a push or pull item did comes back as the task's values (`REPORT`
lines, the `PUSHED` or `PULLED` count), which reach this reporter from doit's worker threads
and processes alike. The reporter writes them, draws a bar over the items (on a terminal),
and ends the run with one summary line: `998 pushed, 2 failed, 10 up to date`.
"""

from __future__ import annotations

import sys
from typing import Any

from doit.exceptions import TaskFailed, UnmetDependency
from doit.reporter import ConsoleReporter

from fdp_tasks.errors import FdpError, error_text, os_error_text
from fdp_tasks.progress import Bar, Tally

# Keys of the values a push or pull item returns
REPORT = "report"  # lines to show
PUSHED = "pushed"  # data products pushed
PULLED = "pulled"  # data products pulled
CARRIED = "carried"  # other data products a push item sent (the same runs' outputs)
# A task's `meta` key: the data products one item stands for (a page of push items), if not 1
PRODUCTS = "products"

# Items of these task groups are counted in the summary line, and stepped through on a bar
TRANSFER_GROUPS = {"push": "pushing", "pull": "pulling"}


class TaskFailure(TaskFailed):
    """What a task failed on, as doit's failure: an FdpError, or an OSError (a full disk, a
    read-only file system) said in one line; it keeps the exit code `fdp` ends with."""

    def __init__(self, exc: FdpError | OSError):
        # what a page of items did before some of them failed (outcome -> data products)
        self.counts: dict[str, int] | None = getattr(exc, "counts", None)
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
        self.tally = Tally(order=(PUSHED, PULLED, "failed", "up to date"))
        self._tasks: dict[str, Any] = {}  # doit's tasks, created-later ones included
        self._bars: dict[str, Bar] = {}  # group -> the bar over its items
        self._carried: set[str] = set()  # push items another item of this run sent
        # transfer items found up to date, counted at the end, with the products each is
        self._skipped: list[tuple[str, int]] = []

    def initialize(self, tasks: dict[str, Any], selected_tasks: list[str]) -> None:
        super().initialize(tasks, selected_tasks)
        self._tasks = tasks

    def _item_of(self, task: Any) -> str | None:
        """The transfer group a task is an item of (`push:lab:x@1.0.0` -> push), if any;
        the bar over the group's items moves one step."""
        group, colon, _ = task.name.partition(":")
        if not colon or group not in TRANSFER_GROUPS:
            return None
        if group not in self._bars:
            total = sum(1 for name in self._tasks if name.startswith(f"{group}:"))
            self._bars[group] = Bar(TRANSFER_GROUPS[group], total=total or None, unit="item")
        self._bars[group].step()
        return group

    def add_success(self, task: Any) -> None:
        super().add_success(task)
        values = getattr(task, "values", None) or {}
        for line in values.get(REPORT) or []:
            self.write(f"{line}\n")
        if self._item_of(task) is None:
            return
        self._carried.update(f"push:{ref}" for ref in values.get(CARRIED) or [])
        moved = values.get(PUSHED, 0) + values.get(PULLED, 0)
        if values.get(PUSHED):
            self.tally.add(PUSHED, values[PUSHED])
        elif values.get(PULLED):
            self.tally.add(PULLED, values[PULLED])
        if not moved:
            self.tally.add("up to date")

    def skip_uptodate(self, task: Any) -> None:
        super().skip_uptodate(task)
        if self._item_of(task) is not None:
            # counted at the end: an item another item of this run sent along may be found
            # on the remote (by a worker thread) before that item's success is reported
            self._skipped.append((task.name, _products(task)))

    def complete_run(self) -> None:
        for bar in self._bars.values():
            bar.close()
        for name, products in self._skipped:
            self.tally.add(PUSHED if name in self._carried else "up to date", products)
        self._skipped.clear()
        super().complete_run()
        if self.tally.total():
            self.write(self.tally.line() + "\n")

    def add_failure(self, task: Any, fail: Any) -> None:
        self.exit_code = max(self.exit_code, getattr(fail, "exit_code", 1))
        if self._item_of(task) is not None:
            counts = getattr(fail, "counts", None) or {"failed": _products(task)}
            for outcome, products in counts.items():
                if products:
                    self.tally.add(outcome, products)
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


def _products(task: Any) -> int:
    """The data products a transfer item stands for: 1, or a page's (its `meta`)."""
    return int((getattr(task, "meta", None) or {}).get(PRODUCTS, 1))
