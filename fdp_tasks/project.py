"""Where a project's local registry, data store, token and remotes are.

User-wide defaults live in $FDP_HOME (default ~/.fdp): `user.yaml` (name, ORCID,
namespace), `registry.db`, `data/`, `token`. A project may override any of them in
`.fdp/settings.yaml`, which `fdp init` and `fdp remote add` write at the root of the git
repository. Settings are found as git finds `.git`: from the config's folder (or the working
directory) upward, to the repository root, so a config in a subfolder uses the root's.

A job without a person (CI) needs none of these files: the environment gives who runs
(`FDP_USER_NAME`, `FDP_USER_ORCID`, `FDP_NAMESPACE`), the remotes (`FDP_REMOTE_URL` for
origin, `FDP_REMOTE_URL_<NAME>`) and their tokens (`FDP_REMOTE_TOKEN_<NAME>`, else the
remote's token file, else `FDP_REMOTE_TOKEN`); a token from the environment is held in
memory only.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from fdp_tasks.config.codebase import is_fdp_config
from fdp_tasks.config.templates import git_root
from fdp_tasks.datastore import DataStore
from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.files import read_secret, replace_text
from fdp_tasks.processes import pid_alive
from fdp_tasks.scalars import positive_int
from fdp_tasks.store.base import database_url
from fdp_tasks.store.tokens import (
    check_username,
    revoke_tokens,
    rotate_token,
    token_report,
    working_token,
)

if TYPE_CHECKING:  # the SQL engine is imported when a store is opened, not to find one
    from fdp_tasks.store.sql import Store

SETTINGS_DIR = ".fdp"
SETTINGS_FILE = "settings.yaml"
LOCAL_USER = "admin"  # the reference language APIs look this user up on the local registry
DEFAULT_GC_RETENTION_DAYS = 7.0
_swept: set[str] = set()  # registries whose killed jobs' records this process deleted


ENV_USER = {"name": "FDP_USER_NAME", "identifier": "FDP_USER_ORCID", "namespace": "FDP_NAMESPACE"}
ENV_REMOTE_URL = "FDP_REMOTE_URL"
ENV_REMOTE_TOKEN = "FDP_REMOTE_TOKEN"  # noqa: S105  (a variable's name)
_ORCID = re.compile(r"^\d{4}-\d{4}-\d{4}-\d{3}[\dX]$")


def remote_env_name(prefix: str, remote: str) -> str:
    """The variable that names something of one remote: `FDP_REMOTE_TOKEN_<NAME>`, the
    remote's name upper-cased with every other character than a letter or digit as `_`."""
    return f"{prefix}_{re.sub(r'[^A-Z0-9]', '_', remote.upper())}"


def _env(name: str) -> str | None:
    """A variable's value, or None when it is unset or empty (a CI secret that is not
    defined arrives as an empty string)."""
    value = os.environ.get(name, "").strip()
    return value or None


def env_token(remote: str, token_file: Path | None = None) -> str | None:
    """A remote's token from the environment: `FDP_REMOTE_TOKEN_<NAME>`, else (for a remote
    without a token file of its own) `FDP_REMOTE_TOKEN`. Never written anywhere."""
    names = [remote_env_name(ENV_REMOTE_TOKEN, remote)]
    if token_file is None:
        names.append(ENV_REMOTE_TOKEN)
    for name in names:
        value = _env(name)
        if value is not None:
            if any(ch.isspace() or not ch.isprintable() for ch in value):
                raise BadInput(f"{name}: expected a token (one word), not text with spaces")
            return value
    return None


def env_user() -> dict[str, str]:
    """Who runs, from FDP_USER_NAME, FDP_USER_ORCID (a bare ORCID, or a URL) and
    FDP_NAMESPACE, for a job that no `fdp init` set up."""
    out = {}
    for key, name in ENV_USER.items():
        value = _env(name)
        if value is None:
            continue
        if key == "identifier" and "://" not in value:
            if not _ORCID.match(value):
                raise BadInput(
                    f"{name}: expected an ORCID (0000-0002-1825-0097, or its https://orcid.org/ "
                    f"URL), not {value!r}"
                )
            value = f"https://orcid.org/{value}"
        out[key] = value
    return out


def fdp_home(project: Path | None = None) -> Path:
    """$FDP_HOME, default ~/.fdp. A relative FDP_HOME is taken from the project's root, so
    that a CI job can keep everything a rerun needs inside its checkout (`FDP_HOME=.fdp/home`),
    whichever folder a command runs from."""
    home = Path(os.environ.get("FDP_HOME") or Path.home() / ".fdp").expanduser()
    if not home.is_absolute() and project is not None:
        home = project / home
    return home.resolve()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, as in some containers
        return "unknown"


def server_dir_for(db_url: str, home: Path) -> Path:
    """Where the server of a database (a URL or a SQLite file) keeps its pid file, log and
    blobs: beside a SQLite file, else under $FDP_HOME."""
    db_url = database_url(db_url)
    if db_url.startswith("sqlite:///"):
        return Path(db_url[len("sqlite:///") :]).parent / "server"
    return home / "server"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise BadInput(f"{where}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level")
    return data


def remote_url_problem(url: str) -> str | None:
    """Why `url` names no remote, or None: a remote is an http(s):// registry, or a directory
    (a path, or a file:// URL)."""
    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is not a number raises here)
    except ValueError as exc:
        return f"{url} is not a valid URL ({exc})"
    if parts.scheme not in ("http", "https", "file"):
        return f"{url}: a remote is an http(s):// registry or a directory, not {parts.scheme}://"
    if parts.scheme != "file" and not parts.hostname:
        return f"{url} names no host"
    return None


def remote_url(text: str) -> str:
    """A remote as `fdp remote add` and `fdp init --remote` record it: a URL as given, a
    directory as its absolute path."""
    problem = remote_url_problem(text)
    if problem:
        raise BadInput(problem)
    return text if "://" in text else str(Path(text).expanduser().resolve())


def check_settings(path: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Settings of the shape every command reads, so that a hand-edited file that is not
    says where, instead of failing somewhere later."""
    for key, value in settings.items():
        if value is None:
            continue
        if key in ("user", "remotes") and not isinstance(value, dict):
            raise BadInput(f"{path}: {key}: expected a mapping")
        if key in ("registry", "data_store", "token_file", "default_remote") and not isinstance(
            value, str
        ):
            raise BadInput(f"{path}: {key}: expected a string")
        if key == "gc_retention_days" and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise BadInput(
                f"{path}: gc_retention_days: expected a number of days, 0 or more, not {value!r}"
            )
        if key == "jobs":  # files a push or pull moves at once
            try:
                positive_int(value)
            except ValueError:
                raise BadInput(
                    f"{path}: jobs: expected a positive integer (files moved at once), "
                    f"not {value!r}"
                ) from None
    return settings


def write_yaml(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    replace_text(path, lambda fh: yaml.safe_dump(data, fh, sort_keys=False), mode)


@dataclass
class User:
    name: str
    identifier: str | None
    namespace: str | None
    input_namespace: str | None = None  # where the user reads from, if not `namespace`
    output_namespace: str | None = None  # where the user's runs write, if not `namespace`


def env_remotes(configured: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, URL, variable) of each remote the environment names: FDP_REMOTE_URL is origin,
    FDP_REMOTE_URL_<NAME> the configured remote of that name, else a remote named <name>
    in lower case. A URL from the environment wins over the settings'."""
    by_variable = {remote_env_name(ENV_REMOTE_URL, name): name for name in configured}
    found: dict[str, tuple[str, str, str]] = {}
    generic = _env(ENV_REMOTE_URL)
    if generic is not None:
        found["origin"] = ("origin", generic, ENV_REMOTE_URL)
    for variable in sorted(os.environ):
        if not variable.startswith(ENV_REMOTE_URL + "_"):
            continue
        url = _env(variable)
        if url is None:
            continue
        name = by_variable.get(variable) or variable[len(ENV_REMOTE_URL) + 1 :].lower()
        found[name] = (name, url, variable)
    return list(found.values())


@dataclass
class RemoteSpec:
    name: str
    url: str
    token_file: Path | None = None
    variable: str | None = None  # the environment variable the URL came from

    def token(self) -> str | None:
        """The remote's token: from FDP_REMOTE_TOKEN_<NAME>, else from a file only its owner
        can read, else from FDP_REMOTE_TOKEN."""
        from_env = env_token(self.name, self.token_file)
        if from_env is not None or self.token_file is None:
            return from_env
        return read_secret(checked_token_file(self.token_file, f"remote {self.name}'s token file"))


def checked_token_file(path: Path, what: str) -> Path:
    """A file fit to hold a token: it exists and no other user can read it (checked when a
    remote is added, and again whenever its token is read)."""
    if not path.is_file():
        raise BadInput(
            f"{what}: {path} does not exist (put the registry's token in it, then "
            f"`chmod 600 {path}`)"
        )
    mode = path.stat().st_mode & 0o777
    if os.name != "nt" and mode & 0o077:
        raise BadInput(
            f"{what}: {path} is readable by other users (mode {oct(mode)[2:]}); run "
            f"`chmod 600 {path}`"
        )
    return path


def ignore_state(state_dir: Path) -> None:
    """Keep `.fdp/` out of git with a .gitignore of its own, so that no tracked file of the
    user's repository changes (which would make the next run refuse a dirty tree)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ignore = state_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# fdp-tasks state: settings, doit's database, runs log\n*\n")


class Project:
    """A project directory and the local registry and data store it uses."""

    def __init__(self, root: Path, home: Path, settings: dict[str, Any], user_file: dict):
        self.root = root
        self.home = home
        self.settings = settings
        self._user_file = user_file
        self._identity_done = False
        self._author_id = 0

    @classmethod
    def load(cls, root: str | Path | None = None) -> Project:
        """The project at `root` exactly, or, without it, the one `find` finds from the
        working directory."""
        if root is None:
            return cls.find()
        found = Path(root).expanduser().resolve()
        home = fdp_home(found)
        path = found / SETTINGS_DIR / SETTINGS_FILE
        settings = check_settings(path, read_yaml(path))
        return cls(found, home, settings, read_yaml(home / "user.yaml"))

    @classmethod
    def find(cls, start: str | Path | None = None) -> Project:
        """The project a file or folder belongs to, found as git finds `.git`.

        `.fdp/settings.yaml` is looked for from `start` (default: the working directory)
        upward to the root of the git repository holding it; without one, the project is
        the repository root (or, outside a repository, `start` itself), which is where
        `fdp init` and `fdp remote add` put `.fdp/`.
        """
        here = Path(start or Path.cwd()).expanduser().resolve()
        if here.is_file():
            here = here.parent
        return cls.load(project_root(here))

    # ----------------------------------------------------------------- paths
    @property
    def state_dir(self) -> Path:
        return self.root / SETTINGS_DIR

    @property
    def settings_path(self) -> Path:
        return self.state_dir / SETTINGS_FILE

    def _path(self, key: str, default: Path) -> Path:
        value = self.settings.get(key)
        if not value:
            return default
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else (self.root / path).resolve()

    @property
    def registry_db(self) -> str:
        value = self.settings.get("registry")
        if value and "://" in str(value):
            return str(value)
        return database_url(self._path("registry", self.home / "registry.db"))

    @property
    def data_store(self) -> DataStore:
        return DataStore(self._path("data_store", self.home / "data"))

    @property
    def token_path(self) -> Path:
        return self._path("token_file", self.home / "token")

    @property
    def server_dir(self) -> Path:
        return server_dir_for(self.registry_db, self.home)

    @property
    def gc_retention_days(self) -> float:
        """How old an unreferenced file or job folder must be before `fdp gc` deletes it
        (`gc_retention_days` in the settings)."""
        value = self.settings.get("gc_retention_days")
        return DEFAULT_GC_RETENTION_DAYS if value is None else float(value)

    def state_dir_for(self, config: Path) -> Path:
        """Per-config state (doit's database, the runs log, the push ledger), keyed by the
        config's path relative to the project root: two `config.yaml` files in different
        folders never share it."""
        config = Path(config).resolve()
        try:
            key = config.relative_to(self.root).as_posix()
        except ValueError:  # a config outside the project: keyed by its absolute path
            key = "_outside/" + config.as_posix().lstrip("/").replace(":", "")
        state = self.state_dir / "configs" / key
        legacy = self.state_dir / "configs" / config.stem
        if not state.exists() and legacy != state and (legacy / "runs.jsonl").is_file():
            # state of an earlier release, kept by the config's stem: copied, never moved, so
            # that nothing of it is lost whichever config it belonged to
            import shutil

            shutil.copytree(legacy, state, ignore=shutil.ignore_patterns("doit.db*"))
        return state

    @property
    def user(self) -> User:
        # the environment wins, as GIT_AUTHOR_NAME does over git's settings
        merged = {**self._user_file, **(self.settings.get("user") or {}), **env_user()}
        return User(
            name=str(merged.get("name") or _login_name()),
            identifier=merged.get("identifier"),
            namespace=merged.get("namespace"),
            input_namespace=merged.get("input_namespace"),
            output_namespace=merged.get("output_namespace"),
        )

    @property
    def remotes(self) -> dict[str, RemoteSpec]:
        out = {}
        for name, spec in (self.settings.get("remotes") or {}).items():
            if isinstance(spec, str):
                spec = {"url": spec}
            if not isinstance(spec, dict) or not spec.get("url"):
                raise BadInput(
                    f"{self.settings_path}: remotes.{name}: expected a url "
                    "(set it with `fdp remote add NAME URL`)"
                )
            problem = remote_url_problem(str(spec["url"]))
            if problem:
                raise BadInput(f"{self.settings_path}: remotes.{name}: {problem}")
            token_file = spec.get("token_file")
            out[name] = RemoteSpec(
                name=name,
                url=str(spec["url"]),
                token_file=(self.root / Path(token_file).expanduser()) if token_file else None,
            )
        for name, url, variable in env_remotes(out):
            problem = remote_url_problem(url)
            if problem:
                raise BadInput(f"{variable}: {problem}")
            known = out.get(name)
            out[name] = RemoteSpec(
                name, remote_url(url), known.token_file if known else None, variable
            )
        return out

    # --------------------------------------------------------------- registry
    def store(self) -> Store:
        """The local registry, created if missing. Who the user is gets recorded only by
        `ensure_identity`, which commands that write the registry call. Records of jobs
        whose process is gone (killed mid-run) are deleted on the first opening."""
        from fdp_tasks.store import provisional
        from fdp_tasks.store.sql import open_store

        store = open_store(self.registry_db)
        if store.url not in _swept:
            _swept.add(store.url)
            provisional.drop_dead(store)
        return store

    def read_store(self) -> Store:
        """The local registry for commands that only read: nothing is created, and records
        of running or killed jobs are not seen. A registry that does not exist yet reads as
        an empty one."""
        from fdp_tasks.store.sql import open_store

        url = self.registry_db
        if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
            return open_store("sqlite://")
        return open_store(url, settled_only=True)

    def ensure_identity(self) -> Store:
        """The local registry, with the local user and its author in place."""
        store = self.store()
        if not self._identity_done:
            self._author_id = self._ensure_identity(store)
            self._identity_done = True
        return store

    def _ensure_identity(self, store: Store) -> int:
        """Link the local user to the author the user settings describe; returns its id.

        Runs of the local user are recorded under this author, so it follows the settings:
        a name or ORCID set later (`fdp init --name ...`) applies from the next run on.
        """
        user = store.ensure_user(LOCAL_USER)
        me = self.user
        link = store.find_one("user_author", {"user": user["id"]})
        if link is not None:
            current = store.get("author", link["author"])
            if current["name"] == me.name and current["identifier"] == me.identifier:
                return current["id"]
        found = None
        if me.identifier:
            found = store.find_one("author", {"identifier": me.identifier})
        else:
            candidates = store.find("author", {"name": me.name, "identifier": None})
            found = candidates[-1] if candidates else None
        if found is None:
            data: dict[str, Any] = {"name": me.name}
            if me.identifier:
                data["identifier"] = me.identifier
            found, _ = store.get_or_create("author", data)
        if link is None:
            store.get_or_create("user_author", {"user": user["id"], "author": found["id"]})
        else:
            store.patch("user_author", link["id"], {"author": found["id"]})
        return found["id"]

    def author_id(self) -> int:
        self.ensure_identity()
        return self._author_id

    @contextlib.contextmanager
    def job_token(self) -> Iterator[str]:
        """A token of the local user for one job, revoked when the job ends.

        The job's working config may hold it (${{LOCAL_TOKEN}}) and is recorded and pushed
        as the run's model_config: a revoked token there opens nothing.
        """
        from fdp_tasks.store import provisional
        from fdp_tasks.store.sql import token_digest

        store = self.ensure_identity()
        user = store.ensure_user(LOCAL_USER)
        # Each live job token is noted with the job's process id, so that one a killed job
        # never revoked is revoked by the next job instead of staying valid.
        pending = self.server_dir / "job-tokens"
        pending.mkdir(parents=True, exist_ok=True)
        for note in pending.glob("*.pid"):
            if not _noted_pid_alive(note):
                provisional.drop(store, note.stem)
                store.revoke_digest(note.stem)
                note.unlink(missing_ok=True)
        token = store.issue_token(user["id"])
        note = pending / f"{token_digest(token)}.pid"
        # whole or not at all: a job starting beside this one reads an empty note as a
        # process that is gone, and would revoke this token
        replace_text(note, lambda fh: fh.write(str(os.getpid())), 0o644)
        # What the job writes with this token stays provisional until `keep_job_records`;
        # whatever is still provisional when the job ends (a failure) is deleted.
        provisional.begin(store, token_digest(token))
        try:
            yield token
        finally:
            provisional.drop(store, token_digest(token))
            store.revoke_token(token)
            note.unlink(missing_ok=True)

    def keep_job_records(self, token: str) -> int:
        """The job of `token` succeeded: what it wrote is for good; how many records."""
        from fdp_tasks.store import provisional
        from fdp_tasks.store.sql import token_digest

        return provisional.keep(self.store(), token_digest(token))

    def local_token(self) -> str:
        """The token for writing to the local registry over HTTP, kept in the token file;
        created on first use."""
        return working_token(self.ensure_identity(), LOCAL_USER, file=self.token_path)

    # --------------------------------------------------------------- settings
    def save_settings(self) -> None:
        write_yaml(self.settings_path, self.settings)

    def remote(self, name: str | None = None) -> RemoteSpec:
        remotes = self.remotes
        if name is None:
            name = self.settings.get("default_remote") or (
                "origin" if "origin" in remotes else None
            )
            if name is None and len(remotes) == 1:
                name = next(iter(remotes))
        if name is None or name not in remotes:
            known = ", ".join(remotes) or "none"
            what = f"remote {name!r}" if name else "a remote"
            raise FdpError(
                f"{what} is not configured for {self.root} (known: {known}); "
                "add one with `fdp remote add NAME URL`"
            )
        return remotes[name]


def fdp_configs(root: Path, limit: int = 2000) -> list[Path]:
    """FAIR Data Pipeline configs under `root` (YAML files whose top level has run_metadata,
    or read/write/register lists), skipping hidden and virtualenv folders."""
    found = []
    seen = 0
    for path in sorted(root.rglob("*.y*ml")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p in ("node_modules", "venv", "__pycache__") for p in rel):
            continue
        seen += 1
        if seen > limit:
            break
        try:
            if path.stat().st_size > 1_000_000:
                continue
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if is_fdp_config(data):
            found.append(path)
    return found


def _new_store(url: str) -> Store:
    """A Store of its own for `url` (the caller closes it), the SQL engine imported here."""
    from fdp_tasks.store.sql import Store

    return Store(url)


def user_token(db: str, username: str, path: Path | None = None) -> tuple[str, Path]:
    """A token of `username` in the registry database `db`, kept in `path` (default: beside a
    SQLite file, `<user>.token`, mode 0600), as `working_token` hands it out. Returns the
    token and the file."""
    url = database_url(db)
    path = _needed_token_file(url, check_username(username, "--user"), path)
    store = _new_store(url)
    try:
        return working_token(store, username, file=path), path
    finally:
        store.close()


def _token_file(url: str, username: str, path: Path | None) -> Path | None:
    """`path`, else `<user>.token` beside a SQLite database (None for another database)."""
    if path is not None:
        return path
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///") :]).parent / f"{username}.token"
    return None


def _needed_token_file(url: str, username: str, path: Path | None) -> Path:
    file = _token_file(url, username, path)
    if file is None:
        raise FdpError("--file is needed with a database URL: where to keep the token")
    return file


def registry_tokens(db: str) -> list[dict[str, Any]]:
    """The tokens of the registry database `db`: user, day made, day last used."""
    store = _new_store(database_url(db))
    try:
        return token_report(store)
    finally:
        store.close()


def revoke_user_tokens(db: str, username: str, path: Path | None = None) -> tuple[int, Path | None]:
    """Revoke every token of `username` in `db` and remove their token file (`path`, else the
    one beside a SQLite database); how many tokens, and the file if there was one."""
    url = database_url(db)
    path = _token_file(url, check_username(username, "--revoke"), path)
    existed = path is not None and path.is_file()
    store = _new_store(url)
    try:
        return revoke_tokens(store, username, path), path if existed else None
    finally:
        store.close()


def rotate_user_token(db: str, username: str, path: Path | None = None) -> Path:
    """Give `username` a new token in `db`, kept in `path` (else beside a SQLite database),
    mode 0600; their older tokens stop working. Returns the file."""
    url = database_url(db)
    file = _needed_token_file(url, check_username(username, "--rotate"), path)
    store = _new_store(url)
    try:
        rotate_token(store, username, file)
    finally:
        store.close()
    return file


def config_not_found(name: str, here: Path, example: str) -> BadInput:
    """The error for a config that is not there, naming the project's configs if it has any
    (`example` shows how to name one, e.g. "fdp run {}" with the path put in)."""
    root = project_root(here)
    found = [os.path.relpath(p, here) for p in fdp_configs(root, limit=500)[:5]]
    if found:
        return BadInput(
            f"{name}: no such config file; this project's FDP configs: {', '.join(found)} "
            f"(name one, e.g. `{example.format(found[0])}`)"
        )
    return BadInput(f"{name}: no such config file (create one with `fdp init`)")


def _noted_pid_alive(note: Path) -> bool:
    """Whether the process a job token's note names still runs (its token stays valid)."""
    try:
        return pid_alive(int(note.read_text(encoding="utf-8").strip()))
    except (OSError, ValueError):
        return False


def project_root(start: Path) -> Path:
    """The folder holding the `.fdp/settings.yaml` that applies at `start`: the nearest one
    upward, stopping at the root of the git repository; else that root, else `start`."""
    top = git_root(start)
    home = fdp_home(top or start)
    for candidate in (start, *start.parents):
        settings = candidate / SETTINGS_DIR / SETTINGS_FILE
        if settings.is_file() and (candidate / SETTINGS_DIR).resolve() != home:
            return candidate
        if candidate == top:
            break
    return top or start
