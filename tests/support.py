"""Helpers for tests that drive `fdp` and `doit` as a user would: subprocesses, real files,
servers on 127.0.0.1 (each on a port the system picked when it bound), mounted file systems."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
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

    def fdp(self, *args: str, check: bool = True, cwd: Path | None = None) -> Result:
        return self.run(sys.executable, "-m", "fdp_tasks.cli.main", *args, check=check, cwd=cwd)

    def doit(self, *args: str, check: bool = True, cwd: Path | None = None) -> Result:
        return self.run(sys.executable, "-m", "doit", *args, check=check, cwd=cwd)

    def start_fdp(self, *args: str, **popen: Any) -> subprocess.Popen:
        """`fdp ARGS` started in the background, for a test that acts while it runs."""
        return subprocess.Popen(
            [sys.executable, "-m", "fdp_tasks.cli.main", *args],
            cwd=self.project,
            env={**self.environ, "PWD": str(self.project)},
            **popen,
        )

    def add_remote(
        self, url: str | Path, token_file: Path | None = None, name: str = "origin"
    ) -> Result:
        """`fdp remote add NAME URL [--token-file FILE]`."""
        token = ["--token-file", str(token_file)] if token_file else []
        return self.fdp("remote", "add", name, str(url), *token)

    def read_config(
        self, reads: list[str], namespace: str = "lab", name: str = "config.yaml"
    ) -> Path:
        """A config that only reads the named data products (globs too) from `namespace`."""
        return self.config(
            {
                "run_metadata": {"description": "reuse", "default_input_namespace": namespace},
                "read": [{"data_product": product} for product in reads],
            },
            name,
        )

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


def record_counts(db: Any, types: list[str] = RECORD_TYPES) -> dict[str, int]:
    """How many records of each type a registry holds: `db` is a Store or its SQLite file."""
    from fdp_tasks.store.sql import Store

    store = db if isinstance(db, Store) else Store(db)
    try:
        return {t: store.count(t) for t in types}
    finally:
        if store is not db:
            store.close()


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, ended but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, or going between open and read
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def sha1(path: Path) -> str:
    """The SHA-1 of a file's bytes, as registries record it."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


def git(repo: Path, *args: str) -> str:
    """`git -C repo ARGS` (as a committer named Test); its output, stripped."""
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.org"]
        + list(args),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def git_commit_all(root: Path, message: str = "model") -> None:
    """Make `root` a git repository (if it is not one) with everything in it committed, as a
    model repository is."""
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "add", "-A")
    git(root, "commit", "-q", "--allow-empty", "-m", message)


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

SEEDED_MODEL = '''\
"""Reads the registered seed and writes `<name>,<seed>` to each write item, repeated as
often as the first argument says (once without one)."""
import sys
from fdp_tasks.api import Session

repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 1
with Session() as fdp:
    with open(fdp.read("inputs/seed")) as fh:
        seed = fh.read()
    for item in fdp.config["write"]:
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write(f"{item['data_product']},{seed}" * repeat)
'''


def producer(
    base: Path,
    outputs: int | list[int] = 2,
    *,
    name: str = "producer",
    namespace: str = "lab",
    inputs: dict[str, str] | None = None,
    version: str = "1.0.0",
    model: str = SEEDED_MODEL,
    args: str = "",
    root: str = "${{REPO_DIR}}/raw/",
    doi: str | None = None,
    **fields: Any,
) -> Env:
    """A project whose one run reads registered inputs and writes results/partNN (NN from
    `outputs`: a count or the numbers), in `namespace` throughout.

    `inputs` maps each input's name to its text (by default `inputs/seed` holding
    "seed-value"), registered at `version` from raw/ under `root`, with the identifier
    `<doi>/<name>` if a `doi` is given, else a local unique name, and with any further
    `fields`. The script is `model`, given `args`.
    """
    parts = range(outputs) if isinstance(outputs, int) else outputs
    texts = inputs if inputs is not None else {"seed": "seed-value\n"}
    env = Env(base, name)
    for stem, text in texts.items():
        env.file(f"raw/{stem}.txt", text)
    env.file("model.py", model)

    def identity(stem: str) -> dict[str, str]:
        if doi:
            return {"identifier": f"{doi}/{stem}"}
        unique = f"{namespace}-{stem}-{version}"
        return {"unique_name": unique, "alternate_identifier_type": "local"}

    env.config(
        {
            "run_metadata": {
                "description": "writes results/partNN",
                "default_input_namespace": namespace,
                "default_output_namespace": namespace,
                "script": "python3 ${{REPO_DIR}}/model.py" + (f" {args}" if args else ""),
            },
            "register": [
                {
                    "external_object": f"inputs/{stem}",
                    "namespace_name": namespace,
                    "root": root,
                    "path": f"{stem}.txt",
                    "file_type": "txt",
                    "version": version,
                    "title": stem,
                    **identity(stem),
                    **fields,
                }
                for stem in texts
            ],
            "write": [
                {
                    "data_product": f"results/part{i:02d}",
                    "description": f"part {i}",
                    "file_type": "csv",
                }
                for i in parts
            ],
        }
    )
    return env


def register_only(
    root: str,
    path: str,
    name: str = "inputs/data",
    version: str = "1.0.0",
    namespace: str = "test",
    **fields: Any,
) -> dict[str, Any]:
    """A config that only registers `<root><path>` as the CSV external object
    `<namespace>:<name>@<version>`, with any further `fields`."""
    item = {
        "external_object": name,
        "namespace_name": namespace,
        "root": root,
        "path": path,
        "title": name.rpartition("/")[2],
        "identifier": f"https://example.org/{name}",
        "file_type": "csv",
        "version": version,
    }
    return {
        "run_metadata": {"description": "one source", "default_input_namespace": namespace},
        "register": [{**item, **fields}],
    }


def reader(
    base: Path,
    remote: str | Path,
    reads: list[str],
    namespace: str = "lab",
    name: str = "colleague",
    token_file: Path | None = None,
) -> Env:
    """A project that reads `reads` from `namespace` on the remote `remote` (a URL or a
    directory), added as origin; without a token file, as reading is public."""
    env = Env(base, name)
    env.read_config(reads, namespace)
    env.add_remote(remote, token_file)
    return env


# ------------------------------------------------------------------------------ servers
class CountingRegistry:
    """Our registry server in a thread of the test process, on a port the system picks,
    behind a WSGI middleware that counts the requests reaching it (by method and path), notes
    them with their status in the order they were answered (`log`), and the client
    connections they came on (`connections`: one address and port per TCP connection).
    `wrap` puts another middleware in front of the app, to make the server misbehave."""

    def __init__(self, base: Path, wrap: Callable[[Any], Any] | None = None):
        from fdp_tasks.server.app import create_app
        from fdp_tasks.server.serve import _make_server, _serve_until
        from fdp_tasks.store.sql import Store
        from fdp_tasks.store.tokens import working_token

        base.mkdir(parents=True, exist_ok=True)
        self.db = base / "registry.db"
        self.store = Store(self.db)
        self.token_file = base / "token"
        self.token = working_token(self.store, file=self.token_file)
        self.requests: Counter[str] = Counter()
        self.log: list[str] = []
        self.queries: list[str] = []  # "GET /api/x/?page_size=1", every request in order
        self.connections: set[tuple[str, str]] = set()
        lock = threading.Lock()
        app = create_app(self.store, base / "blobs")
        inner = wrap(app) if wrap else app

        def counting(environ: dict[str, Any], start_response: Any) -> Any:
            request = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
            with lock:
                self.requests[request] += 1
                self.queries.append(f"{request}?{environ.get('QUERY_STRING', '')}")
                self.connections.add(
                    (environ.get("REMOTE_ADDR", ""), environ.get("REMOTE_PORT", ""))
                )
            statuses: list[str] = []

            def answer(status: str, headers: Any, exc_info: Any = None) -> Any:
                statuses.append(status.split()[0])
                return start_response(status, headers, exc_info)

            body = inner(environ, answer)
            with lock:
                self.log.append(f"{request} {statuses[0] if statuses else '-'}")
            return body

        # signed uploads may be large, as on a server `fdp registry serve` starts
        large = app.config["fdp_signed_upload"]
        server = _make_server(counting, "127.0.0.1", 0, 4, large_body=large)
        self.api_url = f"http://127.0.0.1:{server.effective_port}/api/"
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_serve_until, args=(server, self._stop), name="counting-registry", daemon=True
        )
        self._thread.start()

    def total(self) -> int:
        return sum(self.requests.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.store.close()


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound but never listening, and held for
    the block, so that no server of another test can be given it meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def hold_port(port: int, timeout: float = 30.0) -> socket.socket:
    """Reserve `port` on 127.0.0.1 while the server that had it is down, until the returned
    socket is closed: bound with SO_REUSEADDR and never listening, it lets the server (whose
    socket has SO_REUSEADDR too, as waitress's has) bind and listen beside it when it starts
    again, while the system gives the port to no other socket. Retries while the port is
    still taken (connections of the old server closing), up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return sock
        except OSError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ------------------------------------------------------------------------------ disks
class MountError(Exception):
    """mount(8) refused: not root, or no right to mount here."""


class Mounts:
    """File systems a test mounts (it needs root): a small tmpfs to fill, or a directory bound
    read-only onto itself. `unmount_all` takes them down again, last first."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    @staticmethod
    def _mount(*args: str) -> None:
        proc = subprocess.run(["mount", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise MountError(f"mount {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")

    def tmpfs(self, point: Path, size: str = "256k") -> Path:
        """A fresh tmpfs of `size` bytes (k and m suffixes) at `point`, created if missing."""
        point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        self.points.append(point)
        return point

    def resize(self, point: Path, size: str) -> None:
        """Give a tmpfs mounted here another size, keeping its files."""
        self._mount("-o", f"remount,size={size}", str(point))

    def read_only(self, point: Path) -> Path:
        """`point` bound onto itself, then made read-only: its files stay as they are and
        nothing can change them, root included."""
        self._mount("--bind", str(point), str(point))
        self.points.append(point)
        self._mount("-o", "remount,bind,ro", str(point))
        return point

    def writable(self, point: Path) -> None:
        """Let a read-only bind mount at `point` be written again."""
        self._mount("-o", "remount,bind,rw", str(point))

    def unmount_all(self) -> None:
        while self.points:
            point = self.points.pop()
            if subprocess.run(["umount", str(point)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True)


def mounting_problem(probe: Path) -> str | None:
    """Why this process cannot mount file systems, or None if it can (a tiny tmpfs is
    mounted at `probe` and taken down again)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "mounting a tmpfs or a read-only bind mount needs root"
    if shutil.which("mount") is None:
        return "mount(8) is not installed"
    mounts = Mounts()
    try:
        mounts.tmpfs(probe, "64k")
    except MountError as exc:
        return f"cannot mount here ({exc})"
    finally:
        mounts.unmount_all()
    return None


# ------------------------------------------------------------------------------ sessions
def shared_once(
    basetemp: Path, name: str, make: Callable[[Path], dict[str, Any]]
) -> dict[str, Any]:
    """What `make(folder)` returns, made once per test session: under pytest-xdist the first
    worker to ask makes it (in a folder of the session's temp directory, which the workers
    share) while holding a lock that the others wait for, then writes it down for them.

    `basetemp` is `tmp_path_factory.getbasetemp()`; `make` returns what JSON can hold.
    """
    shared = basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp
    folder = shared / name
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / "made.json"
    with open(folder / ".lock", "w") as lock:
        try:
            import fcntl
        except ImportError:  # no flock (Windows): each worker makes its own
            fcntl = None  # type: ignore[assignment]
            folder = Path(str(folder) + f"-{os.getpid()}")
            folder.mkdir(exist_ok=True)
            done = folder / "made.json"
        if fcntl is not None:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if done.is_file():
            return json.loads(done.read_text(encoding="utf-8"))
        made = make(folder)
        done.write_text(json.dumps(made), encoding="utf-8")
        return made


def source_copy(base: Path) -> Path:
    """The checkout's sources, copied, so that building them leaves no build/ folder here."""
    source = base / "fdp-tasks"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("fdp_tasks", "schemas"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    return source
