"""What a code run needs besides its code and inputs to be rebuilt: the environment it ran
in (Python, platform, installed distributions) and how its config was written (the source
config's path and text, and the machine-independent values its `${{...}}` took).

A job records this as a small JSON file beside the working config and script, an object
among the code run's inputs, so it travels with push and pull and any FDP registry can hold
it. `fdp info RUN` summarises it and `fdp reproduce` compares it with the current one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import socket
import sys
from collections.abc import Iterable
from typing import Any

FILE_NAME = "environment.json"
DESCRIPTION = "environment of the run"
FORMAT = 1

# Variables whose value belongs to one machine or one job: rewritten by a rebuild, never
# recorded (the job's token above all).
MACHINE_VARIABLES = ("REPO_DIR", "CONFIG_DIR", "LOCAL_TOKEN")


def distributions(path: list[str] | None = None) -> list[str]:
    """The distributions installed on `path` (default: this interpreter's `sys.path`) as
    `name==version`, sorted by name, each once (the first on the path, as an import)."""
    found: dict[str, str] = {}
    found_on = (
        importlib.metadata.distributions()
        if path is None
        else importlib.metadata.distributions(path=path)
    )
    for dist in found_on:
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            found.setdefault(_canonical(name), f"{name}=={dist.version}")
    return [found[k] for k in sorted(found)]


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def current(import_path: Iterable[str] = ()) -> dict[str, Any]:
    """The environment this process runs in, for a script started from it whose own import
    path (its PYTHONPATH) puts `import_path` before this interpreter's: what it would find
    there counts among the distributions. `host` says where it was taken; it is not part of
    the environment a rebuild compares (`difference`)."""
    path = list(dict.fromkeys([*(entry for entry in import_path if entry), *sys.path]))
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "host": socket.gethostname(),
        "distributions": distributions(path),
    }


def capture(
    source_config: str | None,
    source_text: str | None,
    local_repo: str | None,
    substitutions: dict[str, str],
    taken: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record of one job: the environment, and its config as the user wrote it.

    `taken` is the environment where the script ran (`current()` taken on a worker);
    without it, this process's. `source_config` and `local_repo` are relative to the git
    repository's root; `substitutions` may hold machine-specific variables, which are
    dropped here."""
    kept = {k: v for k, v in substitutions.items() if k not in MACHINE_VARIABLES}
    return {
        "format": FORMAT,
        **(taken if taken is not None else current()),
        "source_config": source_config,
        "source_config_sha1": hashlib.sha1(
            source_text.encode("utf-8"), usedforsecurity=False
        ).hexdigest()
        if source_text is not None
        else None,
        "source_config_text": source_text,
        "local_repo": local_repo,
        "substitutions": dict(sorted(kept.items())),
    }


def summary(record: dict[str, Any]) -> str:
    """One line: `Python 3.12.3 on Linux-6.8-x86_64, 84 distributions`."""
    count = len(record.get("distributions") or [])
    return (
        f"Python {record.get('python', '?')} on {record.get('platform', '?')}, "
        f"{count} distribution{'s' if count != 1 else ''}"
    )


def _by_name(entries: list[str]) -> dict[str, str]:
    out = {}
    for entry in entries:
        name, _, version = entry.partition("==")
        out[_canonical(name)] = f"{name}=={version}" if version else name
    return out


def difference(recorded: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """What differs between a recorded environment and another, one line each: Python and
    platform, then distributions added, removed and changed. Empty when they agree."""
    lines = []
    for key, label in (("python", "Python"), ("platform", "platform")):
        if recorded.get(key) != now.get(key):
            lines.append(f"{label}: {recorded.get(key)} recorded, {now.get(key)} now")
    old = _by_name(recorded.get("distributions") or [])
    new = _by_name(now.get("distributions") or [])
    for name in sorted(new.keys() - old.keys()):
        lines.append(f"added: {new[name]}")
    for name in sorted(old.keys() - new.keys()):
        lines.append(f"removed: {old[name]}")
    for name in sorted(old.keys() & new.keys()):
        if old[name] != new[name]:
            lines.append(f"changed: {old[name]} -> {new[name].partition('==')[2]}")
    return lines
