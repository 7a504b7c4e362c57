"""A throwaway PostgreSQL cluster for the tests: initdb into a temporary folder, started on a
free port of 127.0.0.1 with its socket in that folder, a database per test made from a
migrated template, and everything removed at the end.

PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user and
its commands run through `runuser -u postgres --`.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

TEMPLATE = "fdp_template"
SETTINGS = {
    # Speed over durability: the cluster lives as long as one test session.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "60",
    "listen_addresses": "127.0.0.1",
}


def postgres_bin() -> Path | None:
    """The folder of `initdb` and `pg_ctl`: on PATH, else the newest /usr/lib/postgresql/*."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).parent
    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    return Path(candidates[-1]).parent if candidates else None


def postgres_problem() -> str | None:
    """Why no cluster can be started here, or None."""
    if postgres_bin() is None:
        return (
            "PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin; "
            "`apt-get install postgresql`)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no `postgres` user to run PostgreSQL as"
        if shutil.which("runuser") is None:
            return "running as root, and runuser(1) is not installed"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """One running cluster; `new_database()` hands out an empty, migrated database."""

    def __init__(self, bindir: Path, folder: Path):
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self.port = 0
        self._names = itertools.count(1)
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(
                f"{' '.join(argv[:2])} exited {proc.returncode}: {proc.stderr.strip()}\n{tail}"
            )
        return proc

    @classmethod
    def start(cls) -> PostgresCluster:
        bindir = postgres_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed")
        # Not under pytest's temp dirs: those are 0700 root, closed to the postgres user.
        folder = Path(tempfile.mkdtemp(prefix="fdp-pg-"))
        cluster = cls(bindir, folder)
        if cluster._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        try:
            cluster._run(
                "initdb", "-D", str(cluster.data), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
            for attempt in range(5):
                cluster.port = _free_port()
                options = " ".join(
                    [f"-p {cluster.port}", f"-k {folder}"]
                    + [f"-c {key}={value}" for key, value in SETTINGS.items()]
                )
                try:
                    cluster._run(
                        "pg_ctl", "-D", str(cluster.data), "-l", str(folder / "server.log"),
                        "-w", "-t", "60", "-o", options, "start",
                    )  # fmt: skip
                    break
                except RuntimeError:
                    if attempt == 4:  # the port was taken meanwhile, five times over
                        raise
            cluster._make_template()
            cluster._watch(os.getpid())
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _watch(self, owner: int) -> None:
        """Stop the cluster once `owner` is gone, however it ended: a test worker killed
        by a timeout or a signal never reaches its fixture's teardown."""
        stop = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        if self._as_postgres:
            stop = ["runuser", "-u", "postgres", "--", *stop]
        script = (
            f"while kill -0 {owner} 2>/dev/null; do sleep 2; done; "
            f"{shlex.join(stop)} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.folder))}"
        )
        subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(sql)

    def _make_template(self) -> None:
        """A database upgraded to the newest revision, copied for each test: faster than
        migrating every test's database."""
        from fdp_tasks.store.sql import Store

        self._admin(f"CREATE DATABASE {TEMPLATE}")
        Store(self.url(TEMPLATE)).close()

    def new_database(self, prefix: str = "registry") -> str:
        """The URL of a new database, already migrated and holding no records."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Remove a database handed out here, even with connections still open to it."""
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def new_empty_database(self, prefix: str = "empty") -> str:
        """The URL of a new database without any table (migrations not run)."""
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
