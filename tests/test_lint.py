"""The code base stays ruff-clean: checked with the rest of the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO


def test_ruff_clean() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    proc = subprocess.run(
        [ruff, "check", "fdp_tasks", "tests", "examples", "benchmarks", "dodo.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


IMPORT_EACH = """
import importlib, pkgutil, sys
import fdp_tasks
names = [m.name for m in pkgutil.walk_packages(fdp_tasks.__path__, "fdp_tasks.")
         if m.name != "fdp_tasks.graph.dodo"]  # doit imports that one, inside a project
for name in names:
    for loaded in [k for k in sys.modules if k.startswith("fdp_tasks")]:
        del sys.modules[loaded]
    importlib.import_module(name)
print(len(names))
"""


def test_every_module_imports_on_its_own() -> None:
    """No module needs another to be imported first: the signature of an import cycle."""
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) > 20
