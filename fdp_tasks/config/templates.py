"""The ${{...}} template variables of a user config.

Values are computed lazily, so that git is only asked when a config uses a git variable and a
missing repository is only an error for the configs that need one.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fdp_tasks.config.versions import INCREMENTERS

TEMPLATE_RE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
VARIABLES = (
    "DATE",
    "DATETIME",
    "USER",
    "USER_ID",
    "REPO_DIR",
    "CONFIG_DIR",
    "SOURCE_CONFIG",
    "GIT_BRANCH",
    "GIT_REMOTE",
    "GIT_TAG",
    "RUN_ID",
)


class TemplateError(ValueError):
    """A variable that is unknown or has no value here; the message names the variable."""


def is_version_key(key: object) -> bool:
    """Keys holding a version: general substitution skips them, version_values handles them."""
    return isinstance(key, str) and (key == "version" or key.endswith("_version"))


def is_templated_version_key(key: object) -> bool:
    """Version keys whose value may hold template variables (api_version must be literal)."""
    return key in ("version", "default_read_version", "default_write_version")


def check_names(text: str, *, version: str | None = None) -> list[str]:
    """Problems with the variable names used in text (no values are computed).

    version is None outside version fields; inside one it is "incrementer" where a whole-value
    incrementer is allowed and "literal" where it is not (register versions).
    """
    problems = []
    for match in TEMPLATE_RE.finditer(text):
        name = match.group(1)
        if name in VARIABLES or name.startswith("DATETIME-"):
            continue
        if name in INCREMENTERS:
            if version == "incrementer":
                problems.append(
                    f"${{{{{name}}}}} is a version incrementer: it must be the whole version "
                    f"(version: ${{{{{name}}}}}), not part of one"
                )
            elif version == "literal":
                problems.append(
                    f"${{{{{name}}}}} is a version incrementer, not allowed here "
                    "(give a version such as 1.0.0)"
                )
            else:
                problems.append(
                    f"${{{{{name}}}}} is a version incrementer, only allowed in versions"
                )
        else:
            problems.append(
                f"unknown template variable ${{{{{name}}}}} (known: "
                + ", ".join(VARIABLES + ("DATETIME-<format>",))
                + ")"
            )
    rest = TEMPLATE_RE.sub("", text)
    if "${{" in rest:
        problems.append("unterminated '${{' (template variables look like ${{CONFIG_DIR}})")
    return problems


def git(repo_dir: Path, *args: str) -> str | None:
    """Output of `git -C repo_dir args...`, stripped, or None if git fails or is missing."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


class Templater:
    """Substitutes template variables with values from one run's context."""

    def __init__(
        self,
        *,
        config_path: Path,
        now: datetime,
        run_id: str,
        user_name: str | None,
        user_id: str | None,
        repo_dir: Callable[[], Path] | Path | None = None,
    ):
        self.config_path = config_path
        self.now = now
        self.run_id = run_id
        self.user_name = user_name
        self.user_id = user_id
        self._repo_dir = repo_dir
        self._cache: dict[str, str] = {}

    def repo_dir(self) -> Path:
        """Directory git commands run in: the given one, else the config's directory."""
        if callable(self._repo_dir):
            self._repo_dir = self._repo_dir()
        return Path(self._repo_dir) if self._repo_dir else self.config_path.parent

    def _git(self, name: str, *args: str) -> str:
        out = git(self.repo_dir(), *args)
        if not out:
            raise TemplateError(
                f"${{{{{name}}}}} has no value: `git {' '.join(args)}` failed in {self.repo_dir()}"
            )
        return out

    def value(self, name: str) -> str:
        """The value of one variable; raise TemplateError if it is unknown or unavailable."""
        if name in self._cache:
            return self._cache[name]
        if name == "DATE":
            out = self.now.strftime("%Y%m%d")
        elif name == "DATETIME":
            out = self.now.strftime("%Y-%m-%dT%H:%M:%S")
        elif name.startswith("DATETIME-"):
            out = self.now.strftime(name[len("DATETIME-") :])
        elif name == "USER":
            if not self.user_name:
                raise TemplateError("${{USER}} has no value: no user name is configured")
            out = str(self.user_name)
        elif name == "USER_ID":
            if not self.user_id:
                raise TemplateError("${{USER_ID}} has no value: no user identifier is configured")
            out = str(self.user_id)
        elif name == "CONFIG_DIR":
            out = str(self.config_path.parent)
        elif name == "SOURCE_CONFIG":
            out = str(self.config_path)
        elif name == "RUN_ID":
            out = self.run_id
        elif name == "REPO_DIR":
            out = git(self.repo_dir(), "rev-parse", "--show-toplevel") or str(self.repo_dir())
        elif name == "GIT_BRANCH":
            out = self._git(name, "rev-parse", "--abbrev-ref", "HEAD")
        elif name == "GIT_REMOTE":
            out = self._git(name, "remote", "get-url", "origin")
        elif name == "GIT_TAG":
            out = self._git(name, "describe", "--tags", "--abbrev=0")
        else:
            problems = check_names(f"${{{{{name}}}}}")
            raise TemplateError(problems[0] if problems else f"cannot substitute ${{{{{name}}}}}")
        self._cache[name] = out
        return out

    def substitute(self, text: str) -> str:
        """text with every ${{VAR}} replaced; raise TemplateError for the first bad one."""
        out = TEMPLATE_RE.sub(lambda m: self.value(m.group(1)), text)
        if "${{" in TEMPLATE_RE.sub("", text):
            raise TemplateError("unterminated '${{' (template variables look like ${{CONFIG_DIR}})")
        return out
