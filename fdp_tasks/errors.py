"""Exceptions shared by every layer, and how they and warnings reach the user.

Each exception class carries the exit code `fdp` ends with (the table is in README.md and
`fdp --help`); every error is shown as `fdp: error: ...` lines and every warning with one
`warning: ` prefix, whichever of `fdp` and `doit` runs the code.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class FdpError(Exception):
    """An error the user can act on. Its message is shown as is, without a traceback."""

    exit_code = 1


class ConfigError(FdpError):
    """A config.yaml that cannot be used: one problem per line, each naming file and key path."""

    exit_code = 2

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class UnsafePathError(FdpError):
    """A path from a config or a registry that would leave the data store."""

    exit_code = 2


class BadInput(FdpError):
    """Input other than a config that cannot be used: a malformed argument, a file that is
    not there, a settings or token file that is broken."""

    exit_code = 2


class HashMismatch(FdpError):
    """A file whose SHA-1 is not the one expected (the registry's, or the one asked for)."""


class OutOfSync(FdpError):
    """A remote holds different content under a name we are about to create: pull first."""

    exit_code = 3

    @classmethod
    def different_content(cls, what: str, theirs: str | None, ours: str | None) -> OutOfSync:
        return cls(
            f"{what} already exists there with different content (SHA-1 {theirs}, ours "
            f"{ours}): the remote changed since you last pulled. Nothing was overwritten; "
            "pull, then write your result as a new version, then push it (`fdp pull`, a run "
            "that writes a new version, `fdp push`)"
        )


def os_error_text(exc: OSError) -> str:
    """An OSError as one line: the file it is about and what the system said (a full disk,
    a read-only file system), without the errno."""
    what = exc.strerror or str(exc)
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return f"{' -> '.join(names)}: {what}" if names else what


def error_text(message: str) -> str:
    """An error as `fdp` shows it: `fdp: error: ` before each line, so that every problem of
    a config is a line of its own that says what it is."""
    return "\n".join(f"fdp: error: {line}" for line in message.splitlines() or [""])


class _Prefixed(logging.Formatter):
    """Log records as `fdp` writes them: a warning says so once, an error as errors do."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.ERROR:
            return f"fdp: error: {text}"  # a traceback that follows keeps its own lines
        if record.levelno >= logging.WARNING:
            return f"warning: {text}"
        if record.levelno < logging.INFO:
            return f"debug: {record.name}: {text}"
        return text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (doit and tests replace it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(verbose: bool = False) -> None:
    """Show fdp-tasks' log records on stderr, prefixed by level (debug ones with -v).

    Called by both entry points, `fdp` and the dodo.py module doit imports; calling it again
    replaces the handler rather than adding one."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_Prefixed("%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
