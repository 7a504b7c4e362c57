"""Helpers for tests that drive `fdp` and `doit` as a user would: subprocesses, real files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
DODO = REPO / "dodo.py"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    executed: list[str] = field(default_factory=list)
    up_to_date: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def parse_doit(stdout: str) -> tuple[list[str], list[str]]:
    """Task names doit executed ('.  name') and found up to date ('-- name')."""
    executed, fresh = [], []
    for line in stdout.splitlines():
        if line.startswith(".  "):
            executed.append(line[3:].strip())
        elif line.startswith("-- "):
            fresh.append(line[3:].strip())
    return executed, fresh


class Env:
    """An isolated user: own FDP_HOME (registry, data store, token) and project directory."""

    def __init__(self, base: Path, name: str = "project"):
        self.base = base
        self.home = base / f"{name}-home"
        self.project = base / name
        self.project.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DODO, self.project / "dodo.py")

    @property
    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env["FDP_HOME"] = str(self.home)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        return env

    def config(self, data: dict[str, Any], name: str = "config.yaml") -> Path:
        path = self.project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    def file(self, rel: str, text: str) -> Path:
        path = self.project / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def run(self, *argv: str, check: bool = True, cwd: Path | None = None) -> Result:
        where = cwd or self.project
        proc = subprocess.run(
            list(argv),
            cwd=where,
            env={**self.environ, "PWD": str(where)},  # as a shell sets it
            capture_output=True,
            text=True,
            timeout=300,
        )
        executed, fresh = parse_doit(proc.stdout)
        result = Result(proc.returncode, proc.stdout, proc.stderr, executed, fresh)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                f"\n--- stderr\n{proc.stderr}"
            )
        return result

    def fdp(self, *args: str, check: bool = True) -> Result:
        return self.run(sys.executable, "-m", "fdp_tasks.cli.main", *args, check=check)

    def doit(self, *args: str, check: bool = True) -> Result:
        return self.run(sys.executable, "-m", "doit", *args, check=check)

    @property
    def data_store(self) -> Path:
        return self.home / "data"


# The record types a sync creates, for tests that count what a registry holds.
RECORD_TYPES = [
    "storage_root",
    "storage_location",
    "file_type",
    "namespace",
    "author",
    "object",
    "object_component",
    "data_product",
    "external_object",
    "code_run",
]


def git_commit_all(root: Path, message: str = "model") -> None:
    """Make `root` a git repository (if it is not one) with everything in it committed, as a
    model repository is."""
    git = ["git", "-C", str(root), "-c", "user.name=Test", "-c", "user.email=test@example.org"]
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", message], check=True)


def example_repo(base: Path, *names: str) -> Path:
    """The named examples copied as they sit in this repository, into a git repository of
    their own at `base/repo`, committed; returns that repository's root."""
    repo = base / "repo"
    for name in names:
        shutil.copytree(
            REPO / "examples" / name,
            repo / "examples" / name,
            ignore=shutil.ignore_patterns(".fdp", "remote", "__pycache__"),
        )
    (repo / ".gitignore").write_text(".fdp/\n*-home/\nremote/\n", encoding="utf-8")
    git_commit_all(repo)
    return repo


WRITER_SCRIPT = '''\
"""Reads every input named in the config and writes one CSV per write item."""
import sys
from fdp_tasks.api import Session

with Session() as fdp:
    total = 0
    for item in fdp.config.get("read") or []:
        with open(fdp.read(item["data_product"])) as fh:
            total += sum(1 for _ in fh)
    for item in fdp.config.get("write") or []:
        with open(fdp.write(item["data_product"]), "w") as fh:
            fh.write(f"lines,{total}\\n" + (sys.argv[1] if len(sys.argv) > 1 else ""))
'''
