"""Schema migrations: a new database is upgraded to the newest revision, whose tables are
exactly the store's; a registry made before migrations existed is recognised and upgraded
with every record kept; opening an up-to-date database changes nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from support import REPO, sha1

from fdp_tasks.store import migrations
from fdp_tasks.store.sql import Store

OLD_SCHEMA = REPO / "tests" / "data" / "registry" / "schema-0001.sqlite.sql"


def test_revisions_are_numbered_one_after_the_other() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations.HERE))
    script = ScriptDirectory.from_config(config)
    revisions = list(reversed(list(script.walk_revisions())))
    assert [r.revision for r in revisions] == [f"{i:04d}" for i in range(1, len(revisions) + 1)]
    assert [r.down_revision for r in revisions] == [None, *[r.revision for r in revisions[:-1]]]
    assert script.get_current_head() == migrations.head_revision()
    for revision in revisions:
        assert Path(revision.path).name.startswith(f"{revision.revision}_")


def test_the_newest_revision_makes_the_stores_tables(registry_database: str) -> None:
    store = Store(registry_database)
    try:
        with store.engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head_revision()
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, store.meta) == []
    finally:
        store.close()


def test_a_registry_made_before_migrations_is_upgraded_with_its_records(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_SCHEMA.read_text(encoding="utf-8"))
        conn.executescript(
            """
            INSERT INTO users (id, username, last_updated)
                VALUES (1, 'admin', '2021-09-20T12:00:00+00:00');
            INSERT INTO auth_token VALUES ('d1', 1, '2021-09-20T12:00:01.250000+00:00');
            INSERT INTO namespace (id, name, last_updated, updated_by_id)
                VALUES (1, 'lab', '2021-09-20T12:00:02+00:00', 1);
            INSERT INTO object (id, description, uuid, last_updated, updated_by_id)
                VALUES (1, 'script', '6f1c8a4e-3f38-4a65-9a7e-0d2b0c1e9b10',
                        '2021-09-20T12:00:03.000001+00:00', 1);
            INSERT INTO object_component (id, object_id, name, whole_object, last_updated)
                VALUES (1, 1, 'whole_object', 1, '2021-09-20T12:00:03.000001+00:00');
            INSERT INTO code_run (id, run_date, description, submission_script_id, uuid,
                                  last_updated, updated_by_id)
                VALUES (1, '2021-09-20T13:30:00+00:00', 'a run', 1,
                        '0b6d1f0e-2a7c-4d0e-8c57-6a3a4a1f2e3d',
                        '2021-09-20T13:30:05+00:00', 1);
            INSERT INTO code_run__outputs VALUES (1, 1, 0);
            """
        )
    store = Store(db)
    try:
        run = store.get("code_run", 1)
        assert run["run_date"] == "2021-09-20T13:30:00+00:00"
        assert run["last_updated"] == "2021-09-20T13:30:05+00:00"
        assert run["outputs"] == [1]
        assert run["uuid"] == "0b6d1f0e-2a7c-4d0e-8c57-6a3a4a1f2e3d"
        assert store.get("object", 1)["last_updated"] == "2021-09-20T12:00:03.000001+00:00"
        assert store.get("namespace", 1)["name"] == "lab"
        assert store.find("code_run", {"run_date": "2021-09-20T14:30:00+01:00"}) == [run]
        # records made after the upgrade look like those made before
        new = store.create("namespace", {"name": "later"}, user_id=1)
        assert store.get("namespace", new["id"]) == new
        assert new["id"] == 2
        with store.engine.connect() as conn:
            assert migrations.current_revision(conn) == migrations.head_revision()
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, store.meta) == []
    finally:
        store.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # the moment is a timestamp now: SQLite's DATETIME text, in UTC
        stored = conn.execute("SELECT created FROM auth_token").fetchone()[0]
        assert stored == "2021-09-20 12:00:01.250000"


def test_opening_an_up_to_date_registry_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    Store(db).close()
    before = db.read_bytes()
    again = Store(db)
    assert not (tmp_path / "registry.db-wal").exists() or sha1(tmp_path / "registry.db-wal") == (
        "da39a3ee5e6b4b0d3255bfef95601890afd80709"  # an empty log: nothing written
    )
    again.close()
    assert db.read_bytes() == before


def test_a_database_with_only_some_registry_tables_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT)")
    with pytest.raises(migrations.MigrationError, match="not a registry fdp-tasks made"):
        Store(db)


def test_stores_opening_one_new_database_at_once_upgrade_it_once(tmp_path: Path) -> None:
    """Processes starting together on a fresh registry (a job's scripts, a server and a
    command) must not trip over each other's upgrade."""
    import subprocess
    import sys

    db = tmp_path / "shared.db"
    code = (
        "import sys; from fdp_tasks.store.sql import Store; "
        "s = Store(sys.argv[1]); s.ensure_user(sys.argv[2]); s.close()"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db), f"user{i}"], cwd=REPO)
        for i in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == 4
        assert conn.execute(sa.text("SELECT count(*) FROM alembic_version")).scalar() == 1
    engine.dispose()


def test_an_in_memory_registry_has_its_tables() -> None:
    """`sqlite://` (what a command that only reads opens when there is no registry yet)."""
    store = Store("sqlite://")
    assert store.find("namespace") == []
    assert store.create("namespace", {"name": "lab"})["id"] == 1
    store.close()


def test_a_registry_from_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    Store(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(migrations.MigrationError, match="revision 9999, newer than") as refused:
        Store(db)
    assert "\n" not in str(refused.value)
