"""Turn a loaded config into the working config a run uses.

The working config is fully qualified (every namespace, version and default explicit, globs
expanded, register items turned into reads) so that a run is reproducible and needs no network.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import shlex
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from fdp_tasks.config.load import Config
from fdp_tasks.config.templates import (
    TEMPLATE_RE,
    TemplateError,
    Templater,
    config_dir_problems,
    git,
    git_root,
    is_templated_version_key,
    is_version_key,
    run_templater,
)
from fdp_tasks.config.validate import KeyPath, Problem, format_problems, normalise_datetime
from fdp_tasks.environment import MACHINE_VARIABLES
from fdp_tasks.errors import ConfigError
from fdp_tasks.languages import DEFAULT as DEFAULT_LANGUAGE
from fdp_tasks.languages import language_for_path
from fdp_tasks.names import glob_matches
from fdp_tasks.refs import PartialRef
from fdp_tasks.versions import (
    VersionError,
    increment,
    incrementer,
    is_semver,
    latest,
    sort_versions,
)

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DEFAULT_READ_VERSION = "${{LATEST}}"
DEFAULT_WRITE_VERSION = "${{PATCH}}"
DEFAULT_REGISTER_VERSION = "1.0.0"
NO_COMMIT = "0" * 40
_URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")
JOB_STAMP = "%Y%m%d-%H%M%S-%f"
DIRTY = "-dirty"  # appended to a commit with uncommitted changes, as the reference does
# A job's working config carries, under this key, what a rebuild needs (not given to the
# script: the job writes only run_metadata, read and write into its config.yaml).
REBUILD_KEY = "rebuild"


def job_dir_for(data_store: Path, now: datetime) -> Path:
    """The job directory of a run started at `now`: <data store>/jobs/<timestamp>."""
    return Path(data_store).expanduser().absolute() / "jobs" / now.strftime(JOB_STAMP)


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log a warning once per process, however often a command resolves its config."""
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)


class RegistryView(Protocol):
    """What resolution needs to know about the local registry (implemented by the caller)."""

    def versions(self, namespace: str, name: str) -> list[str]:
        """Existing versions of data product namespace:name, in any order."""
        ...

    def names(self, namespace: str, pattern: str) -> list[str]:
        """Data product names in namespace matching a '*' glob."""
        ...


@dataclass
class ResolveContext:
    """Everything resolution needs besides the config; nothing here touches the network."""

    registry: RegistryView
    data_store: Path
    registry_url: str
    user_namespace: str | None = None  # the user's namespace, for reads and writes alike
    user_name: str | None = None
    user_id: str | None = None
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    now: datetime = field(default_factory=datetime.now)
    resolve_writes: bool = True
    user_input_namespace: str | None = None  # when the user reads from another namespace
    user_output_namespace: str | None = None
    # The job: its directory (${{CONFIG_DIR}}) and token (${{LOCAL_TOKEN}}). Without a job
    # the directory is the one a run started now would get, and the token stays a symbol.
    job_dir: str | None = None
    local_token: str | None = None
    # Both stay symbols: for the up-to-date check, which must not see a new job as a change.
    symbolic: bool = False
    # A run needs its pinned reads in the local registry; resolving alone takes them as given.
    require_inputs: bool = False

    @property
    def input_namespace(self) -> str | None:
        return self.user_input_namespace or self.user_namespace

    @property
    def output_namespace(self) -> str | None:
        return self.user_output_namespace or self.user_namespace


def _abspath(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _dir_string(path: Path) -> str:
    text = path.as_posix()
    return text if text.endswith("/") else text + "/"


def _lacks(items: list, *keys: str) -> bool:
    """Whether an item names no namespace (in `keys` or use.namespace): it needs a default."""
    for item in items:
        use = item.get("use") or {}
        if not any(item.get(k) for k in keys) and not use.get("namespace"):
            return True
    return False


@dataclass(frozen=True)
class DeclaredRead:
    """A read item as its config states it, variables expanded and defaults applied: the
    name may be a '*' pattern and the version an incrementer, since no registry is asked."""

    index: int
    namespace: str
    name: str
    version: str
    key: KeyPath  # the key path the user wrote (its version's, if given), for messages
    cache: str | None = None

    @property
    def ref(self) -> PartialRef:
        """What the read asks for: its namespace is known, its version and name may still
        wait for the registry (an incrementer, a pattern)."""
        return PartialRef(self.namespace, self.name, self.version)


def _git_trouble(repo: Path) -> str:
    """Why git gave no commit or remote for repo, as a phrase naming the directory."""
    if shutil.which("git") is None:
        return f"git is not installed, so {repo} cannot be inspected"
    if git(repo, "rev-parse", "--git-dir") is None:
        return f"{repo} is not a git repository"
    if git(repo, "rev-parse", "--verify", "-q", "HEAD") is None:
        return f"the git repository at {repo} has no commit yet"
    return f"the git repository at {repo} has no remote 'origin'"


class _Resolver:
    def __init__(self, cfg: Config, ctx: ResolveContext):
        self.cfg = cfg
        self.ctx = ctx
        self.base = cfg.path.parent
        self.local_repo = self.base
        self.problems: list[Problem] = []
        self.pinned: dict[tuple[str, str], list[str]] = {}
        self.bad_versions: set[KeyPath] = set()  # reported already: no follow-on problems
        self.templaters: list[Templater] = []  # every one made, for the values they gave

    def problem(self, path: KeyPath, message: str) -> None:
        """A problem, reported at the key path the user wrote (before normalisation)."""
        self.problems.append((self.cfg.original(path), message))

    # -- templates ------------------------------------------------------------------------

    def substitute(self, value: Any, templater: Templater, path: KeyPath) -> Any:
        if isinstance(value, dict):
            out = {}
            for k, v in value.items():
                if is_templated_version_key(k):
                    out[k] = self.version(v, templater, path + (k,))
                elif is_version_key(k):
                    out[k] = v
                else:
                    out[k] = self.substitute(v, templater, path + (k,))
            return out
        if isinstance(value, list):
            return [self.substitute(v, templater, path + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${{" in value:
            try:
                return templater.substitute(value)
            except TemplateError as exc:
                self.problem(path, str(exc))
        return value

    def version(self, value: Any, templater: Templater, path: KeyPath) -> Any:
        """A version with its template variables expanded; incrementers keep their meaning."""
        if not isinstance(value, str) or "${{" not in value or incrementer(value):
            return value
        try:
            expanded = templater.substitute(value)
        except TemplateError as exc:
            self.problem(path, str(exc))
            self.bad_versions.add(path)
            return value
        if not is_semver(expanded):
            self.bad_versions.add(path)
            self.problem(
                path,
                f"{value!r} expands to {expanded!r}, which is not a semantic version (like 1.0.0)",
            )
            return value
        return expanded

    # -- paths ----------------------------------------------------------------------------

    def local_path(self, value: str) -> Path:
        """A relative path from a config: the config's folder first, then the repository root
        (scripts and data are often named from the root, where the script runs)."""
        path = Path(os.path.expanduser(value))
        if path.is_absolute():
            return Path(os.path.normpath(path))
        candidates = [_abspath(self.base, value), _abspath(self.local_repo, value)]
        return next((c for c in candidates if c.exists()), candidates[0])

    # -- run_metadata ---------------------------------------------------------------------

    def default_namespaces(self, meta: dict, needs: dict[str, bool]) -> dict[str, str]:
        """default_input_namespace and default_output_namespace, where there is one; a
        missing one that `needs` says an item needs is a problem."""
        ctx = self.ctx
        out: dict[str, str] = {}
        # A missing namespace is the user's own, never the other key: someone running
        # another group's model must not write into that group's namespace.
        for key, value in (
            ("default_input_namespace", meta.get("default_input_namespace") or ctx.input_namespace),
            (
                "default_output_namespace",
                meta.get("default_output_namespace") or ctx.output_namespace,
            ),
        ):
            if value:
                out[key] = value
            elif needs.get(key):
                self.problem(
                    ("run_metadata", key),
                    "not set, and no user namespace is configured (set it here, or run "
                    "`fdp init --namespace NS`)",
                )
        return out

    def run_metadata(self, meta: dict, local_repo: Path, needs: dict[str, bool]) -> dict:
        ctx = self.ctx
        out: dict[str, Any] = {"description": meta.get("description", "")}
        out.update(self.default_namespaces(meta, needs))
        out["write_data_store"] = _dir_string(Path(ctx.data_store).expanduser().absolute())
        out["local_data_registry_url"] = ctx.registry_url
        if meta.get("remote_data_registry_url"):
            out["remote_data_registry_url"] = meta["remote_data_registry_url"]
        if "script_path" in meta:
            script_path = self.local_path(meta["script_path"])
            out["script_path"] = str(script_path)
            shell = language_for_path(script_path)
        else:
            if "script" in meta:
                out["script"] = meta["script"]
            shell = DEFAULT_LANGUAGE
        out["shell"] = meta.get("shell", shell)
        out["public"] = meta.get("public", True)
        out["local_repo"] = str(local_repo)
        out.update(self.provenance(meta, local_repo, out))
        out["api_version"] = meta.get("api_version", API_VERSION)
        return out

    def provenance(self, meta: dict, local_repo: Path, script_meta: dict) -> dict[str, str]:
        """remote_repo and latest_commit: as given, else from git, else placeholders.

        A commit with uncommitted changes to tracked files is recorded as `<sha>-dirty`, as
        the reference does, so provenance never claims a commit that is not what ran. A
        placeholder is logged as one warning: the run's code would otherwise be recorded
        without a commit and nobody would notice.
        """
        out: dict[str, str] = {}
        missing = []
        if "remote_repo" in meta:
            out["remote_repo"] = meta["remote_repo"]
        else:
            remote = git(local_repo, "remote", "get-url", "origin")
            # never blank: registries refuse an empty path for the code repository
            out["remote_repo"] = remote or local_repo.as_uri()
            if not remote:
                missing.append(f"the local repository {local_repo.as_uri()} as remote_repo")
        if "latest_commit" in meta:
            out["latest_commit"] = meta["latest_commit"]
        else:
            commit = git(local_repo, "rev-parse", "HEAD")
            out["latest_commit"] = commit or NO_COMMIT
            if not commit:
                missing.insert(0, f"no commit (latest_commit {NO_COMMIT})")
            elif dirty_files(local_repo, list(script_paths(script_meta).values())):
                out["latest_commit"] = commit + DIRTY
        runs_script = bool(meta.get("script") or meta.get("script_path"))
        if missing and runs_script:
            warn_once(
                f"{self.cfg.file}: {_git_trouble(local_repo)}: code runs will record "
                + " and ".join(missing)
            )
        return out

    # -- versions -------------------------------------------------------------------------

    def known_versions(self, namespace: str, name: str) -> list[str]:
        found = list(self.ctx.registry.versions(namespace, name))
        return found + self.pinned.get((namespace, name), [])

    def read_version(self, path: KeyPath, ns: str, name: str, spec: str, check: bool) -> str | None:
        """The version a read takes. A pinned version is taken as given, with no look-up,
        unless `check` (a run needs the input: it must be in the local registry)."""
        inc = incrementer(spec)
        if inc == "LATEST":
            top = latest(self.known_versions(ns, name))
            if top is None:
                self.problem(
                    path,
                    f"{ns}:{name} has no version in the local registry: pull it first "
                    "(`fdp pull`), or register it",
                )
            return top
        if inc:
            self.problem(
                path, f"a read cannot use ${{{{{inc}}}}}; give a version or ${{{{LATEST}}}}"
            )
            return None
        if not check:
            return spec
        known = self.known_versions(ns, name)
        if spec not in known:
            have = f" (the local registry has {', '.join(sort_versions(known))})" if known else ""
            self.problem(
                path,
                f"{ns}:{name}@{spec} is not in the local registry{have}: pull it first "
                "(`fdp pull`)",
            )
            return None
        return spec

    def version_failed(self, vpath: KeyPath, section: str) -> bool:
        """The item's version (its own or the section default) could not be expanded."""
        if vpath in self.bad_versions:
            return True
        default = ("run_metadata", f"default_{section}_version")
        return len(vpath) == 2 and default in self.bad_versions

    # -- sections -------------------------------------------------------------------------

    def register(self, items: list, ns_out: str | None) -> list:
        out = []
        for i, item in enumerate(items):
            path = ("register", i)
            item = dict(item)
            kind = next((k for k in ("external_object", "data_product") if k in item), None)
            if kind is None:
                out.append(item)
                continue
            use = item.pop("use", None) or {}
            ns = item.get("namespace_name") or use.get("namespace") or ns_out
            version = item.get("version") or use.get("version")
            if not version:
                version = DEFAULT_REGISTER_VERSION
                warn_once(
                    f"{self.cfg.file}: register item {item[kind]} has no version, using {version}"
                )
            item["namespace_name"] = ns
            item["version"] = version
            item["root"] = self.root(item["root"])
            item["path"] = item["path"].lstrip("/")
            if kind == "external_object" and not item.get("release_date"):
                # registries require one (the upstream refuses an external object without):
                # a config that gives none records the day it is registered
                item["release_date"] = self.ctx.now.strftime("%Y-%m-%dT00:00:00")
            if isinstance(item.get("release_date"), str):
                released = normalise_datetime(item["release_date"])
                if released is None:
                    self.problem(
                        path + ("release_date",),
                        f"{item['release_date']!r} is not a date (ISO 8601, e.g. "
                        "2021-09-20T12:00:00); check the format of ${{DATETIME-...}}",
                    )
                else:
                    item["release_date"] = released
            if "file_type" not in item:
                suffix = Path(item["path"]).suffix.lstrip(".")
                if suffix:
                    item["file_type"] = suffix
                else:
                    self.problem(
                        path + ("file_type",), "required key missing (cannot infer it from path)"
                    )
            if ns:
                self.pinned.setdefault((ns, item[kind]), []).append(version)
            out.append(item)
        return out

    def root(self, root: str) -> str:
        if root.startswith(_URL_SCHEMES):
            return root if root.endswith("/") else root + "/"
        if root.startswith("file://"):
            root = root[len("file://") :]
        return "file://" + _dir_string(self.local_path(root))

    def item_basics(
        self, section: str, i: int, item: dict, ns_default: str | None, version_default: str
    ) -> tuple | None:
        """Key path, use block, namespace, name, version spec and version key path of a read or
        write item; None when it cannot be resolved (the problem is reported elsewhere)."""
        path = (section, i)
        use = dict(item.get("use") or {})
        ns = use.get("namespace") or ns_default
        if not ns:
            return None  # reported on run_metadata.default_input/output_namespace
        name = use.get("data_product") or item["data_product"]
        spec = use.get("version") or version_default
        vpath = path + ("use", "version") if "version" in use else path
        if self.version_failed(vpath, section):
            return None
        return path, use, ns, name, spec, vpath

    def glob_names(self, ns: str, pattern: str) -> list[str]:
        """Names in `ns` matching a config pattern: the local registry's, and those this
        config registers."""
        found = {n for n in self.ctx.registry.names(ns, pattern) if glob_matches(pattern, n)}
        found |= {n for (p_ns, n) in self.pinned if p_ns == ns and glob_matches(pattern, n)}
        return sorted(found)

    def reads(self, items: list, ns_in: str | None, read_default: str) -> list:
        out = []
        check = self.ctx.require_inputs
        for i, item in enumerate(items):
            basics = self.item_basics("read", i, item, ns_in, read_default)
            if basics is None:
                continue
            path, use, ns, name, spec, vpath = basics
            cache = use.get("cache")
            extra = {k: use[k] for k in ("component",) if k in use}
            if cache:
                extra["cache"] = str(self.local_path(cache))
            if "*" in name:
                if cache:
                    self.problem(path + ("use", "cache"), "a glob read cannot use cache")
                    continue
                matches = self.glob_names(ns, name)
                if not matches:
                    self.problem(
                        path + ("data_product",),
                        f"{name!r} matches no data product in namespace {ns} of the local "
                        "registry (pull them first)",
                    )
                    continue
                for match in matches:
                    version = self.read_version(vpath, ns, match, spec, check=True)
                    if version is not None:
                        new: dict[str, Any] = {"data_product": match}
                        if "description" in item:
                            new["description"] = item["description"]
                        new["use"] = {
                            "data_product": match,
                            "namespace": ns,
                            "version": version,
                            **extra,
                        }
                        out.append(new)
                continue
            version = self.read_version(vpath, ns, name, spec, check=check and not cache)
            if version is None:
                continue
            read: dict[str, Any] = {"data_product": item["data_product"]}
            if "description" in item:
                read["description"] = item["description"]
            read["use"] = {"data_product": name, "namespace": ns, "version": version, **extra}
            out.append(read)
        return out

    def write_version(
        self, vpath: KeyPath, spec: str, existing: Callable[[], list[str]], what: str
    ) -> Any:
        """The version a write takes, or None (with the problem reported). `existing` gives
        the versions there are; it is asked only when writes are resolved."""
        inc = incrementer(spec)
        if inc == "LATEST":
            self.problem(
                vpath,
                "a write cannot use ${{LATEST}}; use ${{PATCH}}, ${{MINOR}}, ${{MAJOR}} or a "
                "new version",
            )
            return None
        if not self.ctx.resolve_writes:
            return spec
        known = existing()
        try:
            version = increment(inc, known) if inc else spec
        except VersionError as exc:
            self.problem(vpath, str(exc))
            return None
        if version in known:
            self.problem(vpath, f"{what}@{version} already exists in the local registry")
            return None
        return version

    def writes(self, items: list, ns_out: str | None, write_default: str, public: bool) -> list:
        out = []
        seen: dict[tuple, int] = {}
        explicit = {
            (
                (item.get("use") or {}).get("namespace") or ns_out,
                (item.get("use") or {}).get("data_product") or item["data_product"],
            )
            for item in items
            if "*" not in ((item.get("use") or {}).get("data_product") or item["data_product"])
        }

        def entry(item: dict, name: str, use: dict, ns: str, version: Any) -> dict:
            new_use = {"data_product": name, "namespace": ns, "version": version}
            if "component" in use:
                new_use["component"] = use["component"]
            return {
                "data_product": item["data_product"],
                "description": item.get("description", ""),
                "file_type": item["file_type"],
                "public": item.get("public", public),
                "use": new_use,
            }

        for i, item in enumerate(items):
            basics = self.item_basics("write", i, item, ns_out, write_default)
            if basics is None:
                continue
            path, use, ns, name, spec, vpath = basics
            inc = incrementer(spec)
            key = (ns, name, f"${{{{{inc}}}}}" if inc else spec, use.get("component"))
            if key in seen:
                self.problem(path, f"writes {ns}:{name} like write[{seen[key]}] already does")
                continue
            seen[key] = i
            if "*" not in name:
                version = self.write_version(
                    vpath,
                    spec,
                    partial(self.ctx.registry.versions, ns, name),
                    f"{ns}:{name}",
                )
                if version is not None:
                    out.append(entry(item, name, use, ns, version))
                continue
            # A write pattern, as the reference treats it: every registered name it matches
            # gets a new version, and the pattern itself stays, for names the script writes
            # under it, with the version that follows all of theirs.
            every: list[str] = []
            for match in self.glob_names(ns, name):
                if (ns, match) in explicit:
                    continue  # the item naming it says how it is written
                versions = list(self.ctx.registry.versions(ns, match))
                every += versions
                version = self.write_version(vpath, spec, partial(list, versions), f"{ns}:{match}")
                if version is not None:
                    out.append({**entry(item, match, use, ns, version), "data_product": match})
            version = self.write_version(vpath, spec, partial(list, every), f"{ns}:{name}")
            if version is not None:
                out.append(entry(item, name, use, ns, version))
        return out

    # -- all ------------------------------------------------------------------------------

    def templater(self, repo_dir: Path | None) -> Templater:
        ctx = self.ctx
        made = run_templater(
            self.cfg.path,
            now=ctx.now,
            run_id=ctx.run_id,
            user_name=ctx.user_name,
            user_id=ctx.user_id,
            repo_dir=repo_dir,
            job_dir=ctx.job_dir or job_dir_for(ctx.data_store, ctx.now),
            local_token=ctx.local_token,
            symbolic=ctx.symbolic,
        )
        self.templaters.append(made)
        return made

    def rebuild_record(self) -> dict[str, Any]:
        """What a rebuild of this job needs besides the working config: the source config's
        path and local_repo relative to the git repository's root, the config's text, and
        the values its variables took (`environment.capture` drops the machine's own)."""
        root = git_root(self.base)
        values: dict[str, str] = {}
        for made in self.templaters:
            values.update(made.values())
        for name in MACHINE_VARIABLES:  # the job's token above all: never recorded
            values.pop(name, None)

        def relative(path: Path) -> str | None:
            if root is None or not path.resolve().is_relative_to(root):
                return None
            return path.resolve().relative_to(root).as_posix()

        try:
            text: str | None = self.cfg.path.read_text(encoding="utf-8")
        except OSError:
            text = None
        return {
            "source_config": relative(self.cfg.path),
            "source_text": text,
            "local_repo": relative(self.local_repo),
            "substitutions": values,
        }

    def expand(self, data: dict) -> dict:
        """`data` (the config, or some of its sections) with its template variables expanded.

        local_repo may use variables itself; the others (GIT_*) are then read in it. By
        default it is the root of the git repository holding the config, as `fair init`
        records it; the script runs there.
        """
        meta = data.get("run_metadata") or {}
        self.local_repo = git_root(self.base) or self.base
        if "local_repo" in meta:
            repo_text = self.substitute(
                meta["local_repo"], self.templater(None), ("run_metadata", "local_repo")
            )
            self.local_repo = _abspath(self.base, repo_text)
        return self.substitute(data, self.templater(self.local_repo), ())

    def declared_reads(self) -> list[DeclaredRead]:
        """The read items as `reads` resolves them, up to the point where the registry is
        asked: patterns are not matched and incrementers stay as written."""
        meta = self.cfg.data.get("run_metadata") or {}
        keys = ("local_repo", "default_input_namespace", "default_read_version")
        data = self.expand(
            {
                "run_metadata": {k: meta[k] for k in keys if k in meta},
                "read": copy.deepcopy(self.cfg.data.get("read") or []),
            }
        )
        items = data["read"]
        ns_in = self.default_namespaces(
            data["run_metadata"], {"default_input_namespace": _lacks(items)}
        ).get("default_input_namespace")
        read_default = data["run_metadata"].get("default_read_version", DEFAULT_READ_VERSION)
        out = []
        for i, item in enumerate(items):
            basics = self.item_basics("read", i, item, ns_in, read_default)
            if basics is not None:
                _, use, ns, name, spec, vpath = basics
                cache = str(self.local_path(use["cache"])) if use.get("cache") else None
                out.append(DeclaredRead(i, ns, name, spec, self.cfg.original(vpath), cache))
        if self.problems:
            raise ConfigError(format_problems(self.cfg.file, self.problems))
        return out

    def run(self) -> dict:
        data = copy.deepcopy(self.cfg.data)
        for path, message in config_dir_problems(data):
            self.problem(path, message)
        data = self.expand(data)
        meta = data.get("run_metadata") or {}
        reads, writes = data.get("read") or [], data.get("write") or []
        registers = data.get("register") or []
        objects = [r for r in registers if "external_object" in r or "data_product" in r]
        needs = {
            "default_input_namespace": _lacks(reads),
            "default_output_namespace": _lacks(writes) or _lacks(objects, "namespace_name"),
        }
        run_meta = self.run_metadata(meta, self.local_repo, needs)
        # Consumed here, not copied through, as the reference deletes them.
        read_default = meta.get("default_read_version", DEFAULT_READ_VERSION)
        write_default = meta.get("default_write_version", DEFAULT_WRITE_VERSION)
        register = self.register(registers, run_meta.get("default_output_namespace"))
        read = self.reads(reads, run_meta.get("default_input_namespace"), read_default)
        write = self.writes(
            writes, run_meta.get("default_output_namespace"), write_default, run_meta["public"]
        )
        have = {(r["use"]["namespace"], r["use"]["data_product"]) for r in read}
        for item in register:
            kind = next((k for k in ("external_object", "data_product") if k in item), None)
            if kind is None or not item.get("namespace_name"):
                continue
            key = (item["namespace_name"], item[kind])
            if key in have:
                continue
            have.add(key)
            read.append(
                {
                    "data_product": item[kind],
                    "use": {
                        "data_product": item[kind],
                        "namespace": item["namespace_name"],
                        "version": item["version"],
                    },
                }
            )
        if self.problems:
            raise ConfigError(format_problems(self.cfg.file, self.problems))
        working = {"run_metadata": run_meta, "read": read, "write": write, "register": register}
        if self.ctx.job_dir is not None and self.ctx.resolve_writes:
            self.check_complete(working)
            working[REBUILD_KEY] = self.rebuild_record()
        return working

    def check_complete(self, working: dict) -> None:
        """A job's working config holds no ${{...}} but ${{RUN_ID}}, which the language APIs
        fill in: anything else would reach the script unresolved."""
        left: list[Problem] = []

        def walk(value: Any, path: KeyPath) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(v, path + (k,))
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    walk(v, path + (i,))
            elif isinstance(value, str):
                names = {m.group(1) for m in TEMPLATE_RE.finditer(value)} - {"RUN_ID"}
                if names:
                    left.append(
                        (path, "unresolved " + ", ".join(f"${{{{{n}}}}}" for n in sorted(names)))
                    )

        walk(working, ())
        if left:
            raise ConfigError(format_problems(self.cfg.file, left))


def script_paths(run_metadata: dict[str, Any]) -> dict[str, Path]:
    """The files a run's script is: script_path, or every existing file an inline script
    names (`python simpleModel/ext/run.py` names run.py), by the word that names them."""
    repo = Path(run_metadata.get("local_repo") or ".")
    if run_metadata.get("script_path"):
        candidates = [str(run_metadata["script_path"])]
    else:
        text = str(run_metadata.get("script") or "")
        try:
            candidates = shlex.split(text, comments=True)
        except ValueError:
            candidates = text.split()
    out = {}
    for word in candidates:
        path = Path(word) if Path(word).is_absolute() else repo / word
        if len(word) < 1024 and path.is_file():
            out[word] = path
    return out


# fdp-tasks' own state (`.fdp/`, at any depth: doit's database changes with every run) is no
# part of what a run recorded, even where a user committed it
NOT_STATE = (":(exclude,top,glob)**/.fdp/**",)


def dirty_files(repo: Path, also: list[Path] | None = None) -> list[str]:
    """What makes the git repository at `repo` differ from its commit: tracked files with
    uncommitted changes, and those of `also` (the script's own files) that git does not
    track, since the commit does not hold them. Empty when clean, or not a repository."""
    out = git(repo, "status", "--porcelain", "--untracked-files=no", "--", ":/", *NOT_STATE)
    # "XY path" lines; the output comes stripped, so split on the first whitespace run
    changed = [line.split(None, 1)[-1] for line in out.splitlines() if line.strip()] if out else []
    inside = [str(p) for p in also or () if p.resolve().is_relative_to(repo.resolve())]
    if inside and out is not None:
        untracked = git(repo, "ls-files", "--others", "--exclude-standard", "--", *inside)
        changed += [f"{name} (untracked)" for name in (untracked or "").splitlines() if name]
    return changed


def uncommitted_digest(repo: Path) -> str | None:
    """A digest of the uncommitted changes to tracked files (None when there are none), so
    that a run recorded as dirty is redone when those changes change."""
    diff = git(repo, "diff", "HEAD", "--no-ext-diff", "--binary", "--", ":/", *NOT_STATE)
    return hashlib.sha1(
        diff.encode("utf-8", "surrogateescape"), usedforsecurity=False
    ).hexdigest() if diff else None


def declared_reads(cfg: Config, ctx: ResolveContext) -> list[DeclaredRead]:
    """What cfg's read items ask for, resolved as `resolve` resolves them but without the
    registry: for deciding what to pull. Raises ConfigError listing every problem."""
    return _Resolver(cfg, ctx).declared_reads()


def resolve(cfg: Config, ctx: ResolveContext) -> dict:
    """The fully qualified working config for one run of cfg; raise ConfigError listing all
    problems (unknown variables, missing reads, existing write versions, ...)."""
    return _Resolver(cfg, ctx).run()
