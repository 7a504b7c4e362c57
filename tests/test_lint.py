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
         if m.name not in ("fdp_tasks.dodo", "fdp_tasks.graph.dodo")]  # doit imports those
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


def test_layers_hold() -> None:
    """The import-linter contracts in pyproject.toml: layers top to bottom, and what each
    layer may not know (imports inside functions count too)."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint, "import-linter is a test dependency"
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
