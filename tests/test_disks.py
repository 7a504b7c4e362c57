"""Full and read-only disks, for real: a tmpfs of a few hundred KiB that a write fills, and a
read-only bind mount that refuses every write, root's included (the tests run as root, so
file modes would prove nothing). The `mounts` fixture mounts them and skips, saying why, where
this process may not mount.

What a user must be able to count on: a write that fails leaves what the data store held as
it was, no temporary file, and no record of the file that was not written; and the error
says in one line what went wrong, and where.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest
from support import Env, Mounts, register_only

SMALL = "a,b\n1,2\n"
OTHER = SMALL + "3,4\n"
BIG = "x,y\n" + "1,2\n" * 150_000  # 600 KiB: more than the tmpfs holds

# A script that writes as many KiB as its argument says to its one output.
SIZED_WRITER = """\
import sys
from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.write("out"), "w") as fh:
        for _ in range(int(sys.argv[1])):
            fh.write("x" * 1023 + "\\n")
"""

# The production code does not yet turn a registry it cannot open into an `fdp: error:` line
# as it does other failures (the registry store fails to open SQLite in WAL mode in a
# read-only folder with a SQLAlchemy traceback): this test says what it should do, and fails
# once it does.
def register_config(path: str, version: str) -> dict:
    """Register raw/<path> as test:inputs/data@<version>."""
    return register_only("${{REPO_DIR}}/raw/", path, version=version)


def files_under(root: Path, skip: str = "jobs") -> list[str]:
    """Every file below `root` (hidden ones too) but those of the job directories."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).parts[0] != skip
    )


def registered(env: Env) -> list[str]:
    return env.fdp("list").stdout.split()


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("fdp: error:")]


def project(tmp_path: Path) -> Env:
    """A project with three sources to register: small, big and other."""
    env = Env(tmp_path)
    env.file("raw/small.csv", SMALL)
    env.file("raw/big.csv", BIG)
    env.file("raw/other.csv", OTHER)
    return env


def pull_first(env: Env) -> Path:
    """Register inputs/data@1.0.0 from the small source; returns its file in the store."""
    env.config(register_config("small.csv", "1.0.0"))
    env.fdp("pull")
    return env.data_store / "test/inputs/data/1.0.0.csv"


class Refusal(NamedTuple):
    """A project whose data store will refuse the next file, and what it held until then."""

    env: Env
    stored: Path  # inputs/data@1.0.0, pulled before
    held: list[str]  # the files in the data store
    source: str  # what the config now registers as 2.0.0
    make_room: Callable[[], None]  # lets the data store take files again


def onto_a_full_disk(tmp_path: Path, mounts: Mounts) -> Refusal:
    """inputs/data@1.0.0 pulled into a data store on a 256 KiB tmpfs, and a config that
    registers 600 KiB as 2.0.0."""
    env = project(tmp_path)
    mounts.tmpfs(env.data_store, "256k")
    stored = pull_first(env)
    env.config(register_config("big.csv", "2.0.0"))
    held = files_under(env.data_store)
    return Refusal(env, stored, held, BIG, lambda: mounts.resize(env.data_store, "2m"))


def onto_a_read_only_store(tmp_path: Path, mounts: Mounts) -> Refusal:
    """inputs/data@1.0.0 pulled, the data store then made read-only, and a config that
    registers 2.0.0."""
    env = project(tmp_path)
    stored = pull_first(env)
    mounts.read_only(env.data_store)
    env.config(register_config("other.csv", "2.0.0"))
    held = files_under(env.data_store)
    return Refusal(env, stored, held, OTHER, lambda: mounts.writable(env.data_store))


REFUSALS = pytest.mark.parametrize(
    ("onto", "said"),
    [(onto_a_full_disk, "No space left on device"), (onto_a_read_only_store, "Read-only")],
    ids=["full", "read-only"],
)


@REFUSALS
def test_a_data_store_that_takes_no_file_fails_the_pull_and_keeps_what_it_held(
    tmp_path: Path, mounts: Mounts, onto: Callable[..., Refusal], said: str
) -> None:
    env, stored, held, source, make_room = onto(tmp_path, mounts)
    failed = env.fdp("pull", check=False)
    assert failed.returncode != 0
    assert said in failed.output
    assert stored.read_text() == SMALL
    assert files_under(env.data_store) == held  # no temporary file, no part of 2.0.0
    assert registered(env) == ["test:inputs/data@1.0.0"]  # no record of it either
    make_room()  # then the same pull completes
    assert env.fdp("pull").executed == ["register:test:inputs/data@2.0.0"]
    assert (env.data_store / "test/inputs/data/2.0.0.csv").read_text() == source
    assert stored.read_text() == SMALL


def test_a_full_data_store_fails_the_run_and_keeps_the_earlier_output(
    tmp_path: Path, mounts: Mounts
) -> None:
    env = Env(tmp_path)
    mounts.tmpfs(env.data_store, "384k")
    env.file("model.py", SIZED_WRITER)

    def config(kib: int) -> None:
        env.config(
            {
                "run_metadata": {
                    "description": f"writes {kib} KiB",
                    "default_output_namespace": "test",
                    "script": f"python3 ${{{{REPO_DIR}}}}/model.py {kib}",
                },
                "write": [{"data_product": "out", "file_type": "csv"}],
            }
        )

    config(1)
    assert env.fdp("run").executed == ["job"]
    first = env.data_store / "test/out/0.0.1.csv"
    written = first.read_text()
    held = files_under(env.data_store)
    config(1024)  # 1 MiB
    failed = env.fdp("run", check=False)
    assert failed.returncode != 0
    assert "No space left on device" in failed.output
    assert first.read_text() == written
    assert files_under(env.data_store) == held  # the script's unfinished output is gone
    assert registered(env) == ["test:out@0.0.1"]


@REFUSALS
def test_a_data_store_that_takes_no_file_is_one_line_naming_it(
    tmp_path: Path, mounts: Mounts, onto: Callable[..., Refusal], said: str
) -> None:
    env = onto(tmp_path, mounts).env
    failed = env.fdp("pull", check=False)
    assert "Traceback" not in failed.output
    [line] = error_lines(failed.output)
    assert said in line and str(env.data_store) in line


def test_a_read_only_registry_is_one_line_naming_it(tmp_path: Path, mounts: Mounts) -> None:
    env = project(tmp_path)
    pull_first(env)
    mounts.read_only(env.home)  # the registry's database and the data store
    env.config(register_config("other.csv", "2.0.0"))
    failed = env.fdp("pull", check=False)
    assert failed.returncode != 0 and "Traceback" not in failed.output
    [line] = error_lines(failed.output)
    assert str(env.home) in line
    listed = env.fdp("list", check=False)  # reading: the list, or one line saying why not
    assert "Traceback" not in listed.output
    assert listed.returncode == 0 or len(error_lines(listed.output)) == 1
