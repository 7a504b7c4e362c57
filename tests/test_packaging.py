"""fdp-tasks as pip installs it: a wheel that carries its schemas and data, installed with
`pip install --user` and run from outside the checkout; and a pyproject.toml that names every
package and every distribution the code imports."""

from __future__ import annotations

import ast
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from importlib import metadata, util
from pathlib import Path

import pytest
from support import REPO, source_copy

NETWORK_TROUBLE = (
    "Could not find a version",
    "No matching distribution",
    "Max retries exceeded",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
)


def source_packages() -> set[str]:
    """The packages of the source tree: folders of fdp_tasks/ with an __init__.py."""
    return {
        ".".join(init.parent.relative_to(REPO).parts)
        for init in (REPO / "fdp_tasks").rglob("__init__.py")
    }


def build_wheel(folder: Path) -> Path:
    """A wheel built from a copy of the sources (the checkout gets no build/ folder)."""
    source = source_copy(folder)
    wheels = folder / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    if proc.returncode != 0:  # pip fetches setuptools for an isolated build
        offline = any(sign in proc.stderr for sign in NETWORK_TROUBLE)
        if offline and not os.environ.get("CI"):
            pytest.skip(f"no package index to build the wheel with: {proc.stderr[-300:]}")
        pytest.fail(proc.stderr[-3000:])
    [wheel] = wheels.glob("fdp_tasks-*.whl")
    return wheel


@pytest.mark.timeout(300)
def test_a_user_install_of_the_wheel_finds_its_schemas(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    for data in (
        "schemas/config.schema.json",
        "schemas/registry.schema.json",
        "data/file_formats.json",
        "server/web/templates/web/product.html",  # the web view's pages and style
        "server/web/static/web.css",
    ):
        assert f"fdp_tasks/{data}" in names
    packages = {n.rpartition("/")[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}
    assert packages == source_packages() | {"fdp_tasks.schemas"}

    # `pip install --user` (which a virtualenv does not allow: its base Python's), in a home
    # of its own; the dependencies come from this test's environment, which holds fdp-tasks
    # itself only as an editable install that is not active on PYTHONPATH.
    deps = site.getsitepackages()
    here = util.find_spec("fdp_tasks")
    assert here and here.origin
    if any(Path(here.origin).is_relative_to(d) for d in deps):
        pytest.skip("fdp-tasks is installed here as a copy, which would shadow the wheel's")
    python = getattr(sys, "_base_executable", sys.executable)
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_USER"))},
        "HOME": str(home),
        "FDP_HOME": str(home / ".fdp"),
    }
    install = [python, "-m", "pip", "install", "-q", "--user", "--no-deps", "--no-index"]
    subprocess.run([*install, str(wheel)], env=env, check=True, capture_output=True, timeout=120)
    user_base = subprocess.run(
        [python, "-m", "site", "--user-base"], env=env, capture_output=True, text=True
    ).stdout.strip()
    fdp = Path(user_base) / ("Scripts/fdp.exe" if os.name == "nt" else "bin/fdp")
    assert fdp.is_file()

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copyfile(REPO / "examples" / "seirs" / "config.yaml", outside / "config.yaml")
    (outside / "bad.yaml").write_text("run_metadata:\n  shell: zsh\n", encoding="utf-8")
    env["PYTHONPATH"] = os.pathsep.join(deps)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(fdp), *args], cwd=outside, env=env, capture_output=True, text=True, timeout=120
        )

    where = subprocess.run(
        [python, "-c", "import fdp_tasks; print(fdp_tasks.__file__)"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(home), where
    assert run("validate", "config.yaml").stdout == "config.yaml: ok\n"
    bad = run("validate", "bad.yaml")  # the config schema said what was expected
    assert bad.returncode == 2 and "bad.yaml: run_metadata.shell: 'zsh' is not one of" in bad.stderr
    made = run("init", ".", "--name", "Ada Lovelace", "--namespace", "ada")
    assert made.returncode == 0, made.stderr  # a registry built from registry.schema.json
    assert run("list").returncode == 0


def test_setuptools_is_told_every_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = project["tool"]["setuptools"]
    assert set(setuptools["packages"]) == source_packages() | {"fdp_tasks.schemas"}
    assert setuptools["package-dir"] == {"fdp_tasks.schemas": "schemas"}


def test_every_imported_distribution_is_a_dependency() -> None:
    """What fdp_tasks imports (inside functions too), but the standard library, is declared,
    so that a plain `pip install` brings it, or an extra that installs a feature (`s3`),
    whose code imports it only when that feature is used."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    features = {
        extra: specs
        for extra, specs in project["project"].get("optional-dependencies", {}).items()
        if extra not in ("test", "example")
    }
    declared = {
        re.split(r"[\[<>=!~ ;]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in [*project["project"]["dependencies"], *sum(features.values(), [])]
    }
    imported: set[str] = set()
    for path in (REPO / "fdp_tasks").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add(node.module.split(".")[0])
    imported -= set(sys.stdlib_module_names) | {"fdp_tasks"}
    providers = metadata.packages_distributions()
    needed = {
        dist.lower().replace("_", "-") for name in imported for dist in providers.get(name, [name])
    }
    assert needed <= declared, f"imported but not in [project.dependencies]: {needed - declared}"
