"""The stat cache of the up-to-date checks: an unchanged output is not read again, and any
change to one is still seen, whatever its size and mtime say; and the kept outcome of
validating a config, which an edit to the config makes stale."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import time
from pathlib import Path

import pytest
from support import WRITER_SCRIPT, Env

from fdp_tasks import stat_cache
from fdp_tasks.stat_cache import BATCH, RACY_MARGIN_NS, StatCache


def _config() -> dict:
    return {
        "run_metadata": {
            "description": "stat cache test",
            "default_input_namespace": "test",
            "default_output_namespace": "test",
            "shell": "python",
            "script_path": "model.py",
        },
        "write": [{"data_product": "out/summary", "description": "lines", "file_type": "csv"}],
    }


@pytest.fixture
def ran(tmp_path: Path) -> Env:
    """A project whose job ran, then a no-op once its output was old enough to be kept in
    the stat cache (younger files are hashed again every time)."""
    env = Env(tmp_path)
    env.file("model.py", WRITER_SCRIPT)
    env.config(_config())
    assert "job" in env.doit().executed
    time.sleep(RACY_MARGIN_NS / 1e9 + 0.3)
    assert env.doit().executed == []
    return env


def _output(env: Env) -> Path:
    return env.data_store / "test/out/summary/0.0.1.csv"


def _cached_paths(env: Env) -> set[str]:
    [cache] = (env.project / ".fdp" / "configs").rglob("hashes.db")
    return _kept_paths(cache)


def _kept_paths(cache: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(cache)) as db:
        return {path for (path,) in db.execute("SELECT path FROM files")}


def test_a_no_op_keeps_the_outputs_hashes_by_their_stat(ran: Env) -> None:
    assert str(_output(ran)) in _cached_paths(ran)
    again = ran.doit()
    assert again.executed == [] and "job" in again.up_to_date


def test_an_output_changed_in_place_with_its_size_and_mtime_kept_is_seen(ran: Env) -> None:
    out = _output(ran)
    before = out.stat()
    text = out.read_text(encoding="utf-8")
    out.write_text(text.replace("lines", "LINES"), encoding="utf-8")
    os.utime(out, ns=(before.st_atime_ns, before.st_mtime_ns))  # as `touch -r` would
    after = out.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert "job" in ran.doit().executed
    status = json.loads(ran.fdp("status", "--json").stdout)
    assert [row["state"] for row in status if row["task"] == "job"] == ["up-to-date"]


def test_an_output_replaced_by_another_file_of_the_same_size_and_mtime_is_seen(
    ran: Env,
) -> None:
    out = _output(ran)
    before = out.stat()
    text = out.read_text(encoding="utf-8")
    other = out.with_name("other.tmp")
    other.write_text(text.replace("lines", "LINES"), encoding="utf-8")
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(other, out)
    after = out.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert after.st_ino != before.st_ino
    status = json.loads(ran.fdp("status", "--json").stdout)
    [job] = [row for row in status if row["task"] == "job"]
    assert job["state"] == "will-run" and "missing or modified" in job["reason"]
    assert "job" in ran.doit().executed


def test_the_json_cache_of_earlier_releases_goes_once_the_new_one_is_made(ran: Env) -> None:
    [cache] = (ran.project / ".fdp" / "configs").rglob("hashes.db")
    old = cache.with_name("hashes.json")
    old.write_text(json.dumps({str(_output(ran)): [1, 2, 3, "0" * 40]}), encoding="utf-8")
    cache.unlink()  # as after an upgrade: the JSON file there, no SQLite one yet
    ran.fdp("status", "--json")  # reads, never writes: leaves both as they are
    assert old.exists() and not cache.exists()
    assert ran.doit().executed == []
    assert cache.exists() and not old.exists()


def test_status_reads_the_cache_but_never_writes_it(ran: Env) -> None:
    [cache] = (ran.project / ".fdp" / "configs").rglob("hashes.db")
    before = cache.stat().st_mtime_ns, cache.read_bytes()
    _output(ran).unlink()
    ran.fdp("status", "--json")
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before


def test_an_edited_config_is_validated_again(ran: Env) -> None:
    [kept] = (ran.project / ".fdp" / "configs").rglob("validated/*.json")
    config = ran.project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    invalid = text.replace("data_product: out/summary", "data_product: {}")
    config.write_text(invalid, encoding="utf-8")
    result = ran.doit(check=False)
    assert result.returncode != 0
    config.write_text(
        text.replace("description: lines", "description: lines, again"), encoding="utf-8"
    )
    ran.doit()
    assert {p.name for p in kept.parent.glob("*.json")} - {kept.name}
    config.write_text(text.replace("run_metadata:", "run_metadata: [", 1), encoding="utf-8")
    broken = ran.doit(check=False)
    assert broken.returncode != 0 and "config.yaml" in broken.stderr


# A no-op that finds the registry as it was answers its look-ups from the config's state:
# no SQL engine, no schema validator, no HTTP client is loaded (the process reports what
# it imported once doit is done).
REPORT_IMPORTS = """
import runpy, sys
module = sys.argv[1] if len(sys.argv) > 1 else "doit"
sys.argv = [module, *sys.argv[2:]]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = [m for m in ("sqlalchemy", "jsonschema", "requests", "alembic") if m in sys.modules]
print("imported: " + ",".join(heavy), file=sys.stderr)
sys.exit(code)
"""


def _imported(result_stderr: str) -> list[str]:
    [line] = [x for x in result_stderr.splitlines() if x.startswith("imported: ")]
    return [m for m in line[len("imported: ") :].split(",") if m]


def test_a_no_op_on_an_unchanged_registry_loads_no_sql_engine(ran: Env) -> None:
    result = ran.run(sys.executable, "-c", REPORT_IMPORTS)
    assert result.executed == [] and "job" in result.up_to_date
    assert _imported(result.stderr) == []
    [kept] = (ran.project / ".fdp" / "configs").rglob("registry-answers.db")
    with contextlib.closing(sqlite3.connect(kept)) as db:
        assert db.execute("SELECT count(*) FROM answers").fetchone()[0] > 0
    # `fdp status` only reads: the config's validation is kept by `fdp run`, as it names it
    assert ran.fdp("run").executed == []
    status = ran.run(sys.executable, "-c", REPORT_IMPORTS, "fdp_tasks.cli.main", "status")
    rows = [line.split()[:2] for line in status.stdout.splitlines()]
    assert ["up-to-date", "job"] in rows and ["unknown", "push:test:out/summary@0.0.1"] in rows
    assert _imported(status.stderr) == []


def test_damaged_or_earlier_kept_answers_are_only_a_slower_check(ran: Env) -> None:
    [kept] = (ran.project / ".fdp" / "configs").rglob("registry-answers.db")
    earlier = kept.with_name("registry-answers.json")  # an earlier release's
    earlier.write_text('{"format": 2, "answers": {}}', encoding="utf-8")
    kept.write_bytes(b"not a database")
    status = ran.run(sys.executable, "-c", REPORT_IMPORTS, "fdp_tasks.cli.main", "status")
    assert ["up-to-date", "job"] in [line.split()[:2] for line in status.stdout.splitlines()]
    assert kept.read_bytes() == b"not a database"  # status only reads
    assert ran.doit().executed == []  # asks the store, and keeps its answers anew
    assert not earlier.exists()
    result = ran.run(sys.executable, "-c", REPORT_IMPORTS)
    assert result.executed == [] and _imported(result.stderr) == []


def test_a_registry_changed_after_its_answers_were_kept_is_read_again(ran: Env) -> None:
    # another writer records other content for the output, leaving its file as it is:
    # only the registry says the file is no longer what was recorded
    with sqlite3.connect(ran.home / "registry.db") as db:
        changed = db.execute(
            "UPDATE storage_location SET hash = ? WHERE path LIKE ?",
            ("0" * 40, "%out/summary/0.0.1.csv"),
        ).rowcount
    assert changed == 1
    status = json.loads(ran.fdp("status", "--json").stdout)
    [job] = [row for row in status if row["task"] == "job"]
    assert job["state"] == "will-run" and "missing or modified" in job["reason"]
    result = ran.run(sys.executable, "-c", REPORT_IMPORTS)
    assert "job" in result.executed
    assert "sqlalchemy" in _imported(result.stderr)


def test_a_file_the_process_wrote_is_trusted_by_it_until_it_changes_and_never_kept(
    tmp_path: Path,
) -> None:
    """What a download hashed as it wrote is not read again by the checks after it (a
    made-up SHA-1 shows the file was not read), is read once its stat changes, and is
    not kept for the next process: a write in the same clock tick could follow it."""
    kept = tmp_path / "hashes.db"
    data = tmp_path / "data.csv"
    data.write_bytes(b"a,b\n1,2\n")
    cache = StatCache(kept)
    cache.wrote(data, "f" * 40)
    assert cache.sha1(data) == "f" * 40
    cache.save()
    assert StatCache(kept).sha1(data) != "f" * 40  # not kept: hashed by the next process

    data.write_bytes(b"a,b\n3,4\n")
    os.utime(data, ns=(1, 1))
    assert cache.sha1(data) == hashlib.sha1(data.read_bytes()).hexdigest()


def test_the_cache_keeps_what_was_hashed_drops_what_is_gone_and_outlives_damage(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries are kept a batch at a time (a check of many files holds a batch of them)
    and read back by the next process; once the cache has doubled since it was last
    pruned, the entries of files gone or changed are dropped; a damaged cache is an empty
    one, made anew."""
    kept = tmp_path / "state" / "hashes.db"

    def files(prefix: str, count: int) -> list[Path]:
        made = []
        for i in range(count):
            path = tmp_path / "data" / f"{prefix}{i}.csv"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"{prefix}{i}\n", encoding="utf-8")
            os.utime(path, ns=(1, 1))
            made.append(path)
        return made

    many = files("a", BATCH + 5)
    cache = StatCache(kept, margin_ns=0)
    for path in many[:BATCH]:
        cache.sha1(path)
    assert len(_kept_paths(kept)) == BATCH  # written when the batch filled, before `save`
    for path in many[BATCH:]:
        cache.sha1(path)
    cache.save()
    assert _kept_paths(kept) == {str(path) for path in many}

    many[0].write_text("changed\n", encoding="utf-8")
    os.utime(many[0], ns=(1, 1))
    looking = StatCache(kept, writable=False)
    assert looking.sha1(many[0]) == hashlib.sha1(b"changed\n").hexdigest()
    assert looking.sha1(many[1]) == hashlib.sha1(b"a1\n").hexdigest()

    monkeypatch.setattr(stat_cache, "PRUNE_SLACK", 0)
    for path in many[2:]:
        path.unlink()
    newer = files("b", BATCH + 10)  # the cache more than doubles since it was pruned
    growing = StatCache(kept, margin_ns=0)
    for path in newer:
        growing.sha1(path)
    growing.save()
    assert _kept_paths(kept) == {str(many[1])} | {str(path) for path in newer}

    kept.write_bytes(b"not a database")
    damaged = StatCache(kept, margin_ns=0)
    assert damaged.sha1(many[1]) == hashlib.sha1(b"a1\n").hexdigest()
    damaged.save()
    assert _kept_paths(kept) == {str(many[1])}
