"""Locate data files shipped with fdp-tasks, in a source checkout or an installed copy."""

from __future__ import annotations

import sys
from pathlib import Path


def schema_path(name: str) -> Path:
    """Return the path of schemas/<name>: the checkout's copy first, else the installed data-file.

    Schemas live outside the package (so other tools can use them), hence this look-up.
    """
    candidates = [
        Path(__file__).resolve().parent.parent / "schemas" / name,
        Path(sys.prefix) / "share" / "fdp-tasks" / "schemas" / name,
    ]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"schema {name!r} not found (looked in {', '.join(str(p.parent) for p in candidates)})"
    )
