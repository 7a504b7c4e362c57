"""The code base stays ruff-clean: checked with the rest of the tests."""

from __future__ import annotations

import ast
import json
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
        [ruff, "check", "--no-cache", "fdp_tasks", "tests", "examples", "benchmarks", "dodo.py"],
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


@pytest.mark.timeout(600)
def test_types_check(tmp_path: Path) -> None:
    """mypy, as configured in pyproject.toml ([tool.mypy]), finds no error in fdp_tasks.

    A cache of its own, so that a run beside another mypy never reads a half-written one."""
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent))
    assert mypy, "mypy is a test dependency"
    proc = subprocess.run(
        [mypy, "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


# -- one owner for each rule ------------------------------------------------------------------
# Each rule below is written once, in the module named, so that no two copies can come to
# disagree. A finding names the rule and the owner to call instead.
OWNERS: dict[str, str] = {
    "a semver pattern": "fdp_tasks/versions.py",
    "a set of boolean words": "fdp_tasks/scalars.py",
    "a date-time parser (fromisoformat)": "fdp_tasks/scalars.py",
    "a script command (Rscript)": "fdp_tasks/languages.py",
    "a requests.Session": "fdp_tasks/transfer.py",
    "a download loop (iter_content)": "fdp_tasks/transfer.py",
    "a retry loop (backoff, RETRY_STATUS)": "fdp_tasks/transfer.py",
    "a Templater made directly": "fdp_tasks/config/templates.py",
    "a token registered directly (add_token)": "fdp_tasks/store/tokens.py",
    "a JSON schema validator": "fdp_tasks/config/validate.py",
}
# Rules written exactly once even inside their owner.
ONCE = {"a JSON schema validator"}
BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n", "t", "f", "1", "0"}
SCANNED = ("fdp_tasks", "tests", "benchmarks", "examples", "schemas", "dodo.py")


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


# Calls that define an owned rule, by the called name's last part.
CALL_RULES = {
    "iter_content": "a download loop (iter_content)",
    "fromisoformat": "a date-time parser (fromisoformat)",
    "Templater": "a Templater made directly",
    "add_token": "a token registered directly (add_token)",
}


def _constant_rule(node: ast.Constant) -> str | None:
    if not isinstance(node.value, str):
        return None
    if "0|[1-9]" in node.value:
        return "a semver pattern"
    return "a script command (Rscript)" if node.value == "Rscript" else None


def _collection_rule(node: ast.Set | ast.List | ast.Tuple) -> str | None:
    words = {
        e.value.strip().lower()
        for e in node.elts
        if isinstance(e, ast.Constant) and isinstance(e.value, str)
    }
    if words & {"yes", "on"} and len(words & BOOLEAN_WORDS) > 1:
        return "a set of boolean words"
    return None


def _call_rule(node: ast.Call) -> str | None:
    name = _dotted(node.func)
    last = name.rpartition(".")[2]
    if name in ("requests.Session", "requests.sessions.Session"):
        return "a requests.Session"
    if last.endswith("Validator") and last.startswith("Draft"):
        return "a JSON schema validator"
    return CALL_RULES.get(last)


RETRY_LOOP = "a retry loop (backoff, RETRY_STATUS)"


def _names_backoff(node: ast.AST) -> bool:
    return any(
        "backoff" in (n.id if isinstance(n, ast.Name) else n.attr).lower()
        for n in ast.walk(node)
        if isinstance(n, (ast.Name, ast.Attribute))
    )


def _retry_rule(node: ast.AST) -> str | None:
    """Retrying by hand: the list of statuses worth a retry, a wait that grows by powers or
    is named backoff, slept on: transfer.send and its RetryPolicy are the one place for it."""
    if isinstance(node, ast.Name) and node.id == "RETRY_STATUS":
        return RETRY_LOOP
    if isinstance(node, ast.Attribute) and node.attr == "RETRY_STATUS":
        return RETRY_LOOP
    if isinstance(node, ast.Call) and _dotted(node.func).rpartition(".")[2] == "sleep":
        waits = [n for arg in node.args for n in ast.walk(arg)]
        if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow) for n in waits):
            return RETRY_LOOP
        if any(_names_backoff(arg) for arg in node.args):
            return RETRY_LOOP
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Mult)
        and (_names_backoff(node.left) or _names_backoff(node.right))
    ):
        return RETRY_LOOP
    return None


def _node_rule(node: ast.AST) -> str | None:
    retry = _retry_rule(node)
    if retry:
        return retry
    if isinstance(node, ast.Constant):
        return _constant_rule(node)
    if isinstance(node, (ast.Set, ast.List, ast.Tuple)):
        return _collection_rule(node)
    if isinstance(node, ast.ImportFrom) and node.module == "requests":
        return "a requests.Session" if any(a.name == "Session" for a in node.names) else None
    return _call_rule(node) if isinstance(node, ast.Call) else None


def rule_findings(source: str) -> list[tuple[str, int]]:
    """(rule, line) for every definition of an owned rule in Python source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        rule = _node_rule(node)
        if rule:
            found.append((rule, getattr(node, "lineno", 0)))
    return found


def _all_findings() -> list[tuple[str, str, int]]:
    out = []
    for top in SCANNED:
        base = REPO / top
        files = (
            [base] if base.is_file() else sorted(base.rglob("*.py")) + sorted(base.rglob("*.json"))
        )
        for path in files:
            rel = path.relative_to(REPO).as_posix()
            if rel == "tests/test_lint.py" or "/data/" in rel:
                continue  # this file names the rules; test data only holds examples
            text = path.read_text(encoding="utf-8")
            if path.suffix == ".json":
                out += [("a semver pattern", rel, 0)] if "0|[1-9]" in text else []
            else:
                out += [
                    (rule, rel, line)
                    for rule, line in rule_findings(text)
                    # a test lists the words it feeds a parser: inputs, not a second parser
                    if not (rule == "a set of boolean words" and path.name.startswith("test_"))
                ]
    return out


def test_each_rule_has_one_owner() -> None:
    """Semver, booleans, date-times, script languages, HTTP sessions and downloads,
    templaters, tokens and the config validator each have one home: no second copy."""
    findings = _all_findings()
    stray = [
        f"{rel}:{line}: {rule}; use {OWNERS[rule]}"
        for rule, rel, line in findings
        if rel != OWNERS[rule]
    ]
    for rule in ONCE:
        places = [f"{rel}:{line}" for r, rel, line in findings if r == rule]
        if len(places) > 1:
            stray.append(f"{rule} made {len(places)} times ({', '.join(places)}): once only")
    assert not stray, "\n".join(stray)
    assert {rule for rule, _, _ in findings} == set(OWNERS)  # each owner is still found


def test_the_owner_check_finds_second_copies() -> None:
    """A copy of each rule, as it would be written elsewhere, is found."""
    copies = {
        "a semver pattern": 'SEMVER = r"^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)"',
        "a set of boolean words": 'TRUE = {"True", "yes", "1"}',
        "a date-time parser (fromisoformat)": "when = datetime.fromisoformat(text)",
        "a script command (Rscript)": 'cmd = ["Rscript", script]',
        "a requests.Session": "from requests import Session",
        "a download loop (iter_content)": "for b in resp.iter_content(1024): pass",
        "a retry loop (backoff, RETRY_STATUS)": "time.sleep(0.2 * 2 ** attempt)",
        "a Templater made directly": "t = templates.Templater(config_path=p)",
        "a token registered directly (add_token)": "store.add_token(1, token)",
        "a JSON schema validator": "v = jsonschema.Draft7Validator(schema)",
    }
    for rule, source in copies.items():
        assert (rule, 1) in rule_findings(source), rule
    assert rule_findings('ok = ("true", "1", "false", "0")\nname = "Session"') == []
    for retrying in (
        "if resp.status_code in transfer.RETRY_STATUS: pass",
        "time.sleep(self.backoff)",
        "wait = self.backoff * 2",
    ):
        assert (RETRY_LOOP, 1) in rule_findings(retrying), retrying
    assert rule_findings("time.sleep(0.05)") == []  # polling for a port is no retry policy


def test_the_schema_names_the_script_languages() -> None:
    """config.schema.json's `shell` enum is the languages table's names, in its order."""
    from fdp_tasks.languages import LANGUAGES

    schema = json.loads((REPO / "schemas" / "config.schema.json").read_text(encoding="utf-8"))
    shell = schema["$defs"]["runMetadata"]["properties"]["shell"]
    assert shell["enum"] == list(LANGUAGES)
