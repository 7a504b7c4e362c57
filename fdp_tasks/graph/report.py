"""How doit reports the tasks of a config: its console output, with repeated failures said once.

A remote that cannot be used, or a dirty tree, fails every push item the same way; the message
is shown for the first item and the others point to it, instead of one copy per product.
"""

from __future__ import annotations

from typing import Any

from doit.reporter import ConsoleReporter


class FdpReporter(ConsoleReporter):
    """doit's console reporter; a failure whose message an earlier one had is one short line."""

    desc = "console output, each failure message once"

    def __init__(self, outstream: Any, options: dict[str, Any]):
        super().__init__(outstream, options)
        self._first_with: dict[str, str] = {}  # failure message -> the first task it failed

    def add_failure(self, task: Any, fail: Any) -> None:
        message = fail.get_msg().strip()
        if fail.report and message and message in self._first_with:
            self.failures.append({"task": task, "exception": fail})
            self.write(f"{fail.get_name()} - taskid:{task.name}: as {self._first_with[message]}\n")
            return
        self._first_with.setdefault(message, task.name)
        super().add_failure(task, fail)
