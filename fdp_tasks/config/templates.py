"""The ${{...}} template variables of a user config.

Values are computed lazily, so that git is only asked when a config uses a git variable and a
missing repository is only an error for the configs that need one.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from fdp_tasks.versions import INCREMENTERS

TEMPLATE_RE = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
VARIABLES = (
    "DATE",
    "DATETIME",
    "USER",
    "USER_ID",
    "REPO_DIR",
    "CONFIG_DIR",
    "SOURCE_CONFIG",
    "LOCAL_TOKEN",
    "GIT_BRANCH",
    "GIT_REMOTE",
    "GIT_TAG",
    "RUN_ID",
)


# Variables whose value exists only while a job runs: the job directory and the job's token.
# Only the script may use them; everything else in a config must mean the same in every run.
JOB_VARIABLES = ("CONFIG_DIR", "LOCAL_TOKEN")
JOB_VARIABLE_RE = re.compile(r"\$\{\{\s*(" + "|".join(JOB_VARIABLES) + r")\s*\}\}")


def symbol(name: str) -> str:
    """A variable written as itself: what a value stands for when it must not vary."""
    return "${{" + name + "}}"


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
        config_dir: str | None = None,
        local_token: str | None = None,
        symbols: frozenset[str] = frozenset(),
    ):
        """`config_dir` is the job directory (the reference ends it with a separator) and
        `local_token` the job's token; `symbols` are variables left as written, for an
        up-to-date check that must not see a new job directory or token as a change."""
        self.config_path = config_path
        self.now = now
        self.run_id = run_id
        self.user_name = user_name
        self.user_id = user_id
        self._repo_dir = repo_dir
        self.config_dir = config_dir
        self.local_token = local_token
        self.symbols = symbols
        self._cache: dict[str, str] = {}

    def repo_dir(self) -> Path:
        """local_repo: where the script runs and git commands run; the given directory,
        else the config's."""
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
        if name in self.symbols:
            return symbol(name)
        if name.startswith("DATETIME-"):
            out = self.now.strftime(name[len("DATETIME-") :])
        elif name in self._computers:
            out = self._computers[name](self)
        else:
            problems = check_names(f"${{{{{name}}}}}")
            raise TemplateError(problems[0] if problems else f"cannot substitute ${{{{{name}}}}}")
        self._cache[name] = out
        return out

    def _given(self, name: str, value: object, why: str) -> str:
        """`value` as text, or the error saying why the variable has none here."""
        if value is None or value == "":
            raise TemplateError(f"${{{{{name}}}}} has no value{why}")
        return str(value)

    # How each named variable is computed (DATETIME-<format> aside): one entry per variable.
    _computers: dict[str, Callable[[Templater], str]] = {
        "DATE": lambda t: t.now.strftime("%Y%m%d"),
        "DATETIME": lambda t: t.now.strftime("%Y-%m-%dT%H:%M:%S"),
        "USER": lambda t: t._given("USER", t.user_name, ": no user name is configured"),
        "USER_ID": lambda t: t._given("USER_ID", t.user_id, ": no user identifier is configured"),
        "CONFIG_DIR": lambda t: t._given(
            "CONFIG_DIR",
            t.config_dir,
            " here: it is the job directory, made when a run starts",
        ),
        "LOCAL_TOKEN": lambda t: t._given(
            "LOCAL_TOKEN", t.local_token, " here: only a job has a token"
        ),
        "SOURCE_CONFIG": lambda t: t.config_path.name,
        "RUN_ID": lambda t: t.run_id,
        "REPO_DIR": lambda t: str(t.repo_dir()),
        "GIT_BRANCH": lambda t: t._git("GIT_BRANCH", "rev-parse", "--abbrev-ref", "HEAD"),
        "GIT_REMOTE": lambda t: t._git("GIT_REMOTE", "remote", "get-url", "origin"),
        "GIT_TAG": lambda t: t._git("GIT_TAG", "describe", "--tags", "--abbrev=0"),
    }

    def values(self) -> dict[str, str]:
        """The values substituted so far, by variable name (symbols left as written aside)."""
        return dict(self._cache)

    def preset(self, values: dict[str, str]) -> None:
        """Take these values as given (a rebuild reuses those a recorded run took)."""
        self._cache.update(values)

    def substitute(self, text: str) -> str:
        """text with every ${{VAR}} replaced; raise TemplateError for the first bad one."""
        out = TEMPLATE_RE.sub(lambda m: self.value(m.group(1)), text)
        if "${{" in TEMPLATE_RE.sub("", text):
            raise TemplateError("unterminated '${{' (template variables look like ${{CONFIG_DIR}})")
        return out


def run_templater(
    config_path: Path,
    *,
    now: datetime,
    run_id: str,
    user_name: str | None = None,
    user_id: str | None = None,
    repo_dir: Callable[[], Path] | Path | None = None,
    job_dir: str | Path | None = None,
    local_token: str | None = None,
    symbolic: bool = False,
) -> Templater:
    """The templater of one run of a config: every part of fdp-tasks that expands a config's
    ${{...}} asks here, so they all expand it alike.

    `job_dir` becomes ${{CONFIG_DIR}}, with a trailing separator as the reference
    substitutes it. With `symbolic` the job's variables stay as written (an up-to-date check
    must not see a new job directory or token as a change); so does ${{LOCAL_TOKEN}} until
    there is a token.
    """
    symbols = set(JOB_VARIABLES) if symbolic else set()
    if local_token is None:
        symbols.add("LOCAL_TOKEN")
    return Templater(
        config_path=config_path,
        now=now,
        run_id=run_id,
        user_name=user_name,
        user_id=user_id,
        repo_dir=repo_dir,
        config_dir=None if job_dir is None else str(job_dir).rstrip("/\\") + os.sep,
        local_token=local_token,
        symbols=frozenset(symbols),
    )


def git_root(start: Path) -> Path | None:
    """The root of the git work tree holding `start`, without running git.

    Looks for `.git` (a directory, or a file in worktrees and submodules) upward, so it
    costs a few stat calls and works where git is not installed.
    """
    here = start.resolve()
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return None


def config_dir_problems(data: object, path: tuple = ()) -> list[tuple[tuple, str]]:
    """${{CONFIG_DIR}} and ${{LOCAL_TOKEN}} anywhere but in run_metadata.script.

    The job directory is new for every run and the token is revoked when the job ends, so
    anything else that used them (a register root, a description) would differ in every
    run, or point at nothing, or carry a credential into the registry.
    """
    out: list[tuple[tuple, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            out += config_dir_problems(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += config_dir_problems(value, path + (i,))
    elif isinstance(data, str) and path != ("run_metadata", "script"):
        for name in dict.fromkeys(m.group(1) for m in JOB_VARIABLE_RE.finditer(data)):
            if name == "CONFIG_DIR":
                out.append(
                    (
                        path,
                        "${{CONFIG_DIR}} is the job directory, which exists only while the "
                        "script runs, so only run_metadata.script may use it; for files of "
                        "your project use ${{REPO_DIR}} (the repository root)",
                    )
                )
            else:
                out.append(
                    (
                        path,
                        "${{LOCAL_TOKEN}} is the job's registry token: only run_metadata.script "
                        "may use it, so that it is never recorded or pushed",
                    )
                )
    return out
