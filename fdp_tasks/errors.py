"""Exceptions shared by every layer; the CLI turns them into one-line messages and exit codes."""

from __future__ import annotations


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


class IntegrityError(FdpError):
    """A file whose SHA-1 does not match what the registry says."""


class OutOfSync(FdpError):
    """A remote holds different content under a name we are about to create: pull first."""

    @classmethod
    def different_content(cls, what: str, theirs: str | None, ours: str | None) -> OutOfSync:
        return cls(
            f"{what} already exists there with different content (SHA-1 {theirs}, ours "
            f"{ours}): the remote changed since you last pulled. Nothing was overwritten; "
            "pull, then write your result as a new version"
        )
