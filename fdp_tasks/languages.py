"""The script languages a job runs, in one table: `run_metadata.shell` names a row.

Resolution picks a language from a `script_path` suffix, the job copies the script under the
language's suffix and runs it with its command; config.schema.json lists the same names.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from fdp_tasks.errors import FdpError


@dataclass(frozen=True)
class Language:
    """How a script of one language is stored in the job directory and run."""

    name: str
    suffix: str  # of the job's copy of the script
    command: tuple[str, ...]  # what runs it, before the script's path
    implied_by: tuple[str, ...] = ()  # script_path suffixes (lower case) that mean it


DEFAULT = "sh"
# As the reference runs them: a failing command of a shell script fails the job, and
# `python` is the interpreter fdp-tasks runs under.
LANGUAGES: dict[str, Language] = {
    lang.name: lang
    for lang in (
        Language("sh", ".sh", ("sh", "-e"), (".sh",)),
        Language("bash", ".sh", ("bash", "-eo", "pipefail"), (".bash",)),
        Language("python", ".py", (sys.executable,), (".py",)),
        Language("python3", ".py", (sys.executable,)),
        Language("R", ".R", ("Rscript",), (".r",)),
        Language("julia", ".jl", ("julia",), (".jl",)),
        Language("java", ".java", ("java",)),
        Language("powershell", ".ps1", ("powershell", "-File")),
        Language("pwsh", ".ps1", ("pwsh", "-File"), (".ps1",)),
        Language("batch", ".bat", ("cmd", "/c"), (".bat", ".cmd")),
    )
}


def language(name: str) -> Language:
    """The language `run_metadata.shell` names; FdpError for one not in the table."""
    if name not in LANGUAGES:
        raise FdpError(
            f"run_metadata.shell: unknown shell {name!r} (known: {', '.join(LANGUAGES)})"
        )
    return LANGUAGES[name]


def language_for_path(path: str | Path) -> str:
    """The language a script file's suffix implies (`run.py` is python), else the default."""
    suffix = Path(path).suffix.lower()
    return next((n for n, lang in LANGUAGES.items() if suffix in lang.implied_by), DEFAULT)


def command_for(name: str, script: Path) -> list[str]:
    """The command line that runs `script` as language `name`."""
    return [*language(name).command, str(script)]
