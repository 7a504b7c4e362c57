"""Turn a loaded config into the working config a run uses.

The working config is fully qualified (every namespace, version and default explicit, globs
expanded, register items turned into reads) so that a run is reproducible and needs no network.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from fdp_tasks.config.load import Config
from fdp_tasks.config.templates import (
    TemplateError,
    Templater,
    git,
    is_templated_version_key,
    is_version_key,
)
from fdp_tasks.config.validate import KeyPath, Problem, format_problems
from fdp_tasks.config.versions import VersionError, increment, incrementer, is_semver, latest
from fdp_tasks.errors import ConfigError

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
DEFAULT_READ_VERSION = "${{LATEST}}"
DEFAULT_WRITE_VERSION = "${{PATCH}}"
DEFAULT_REGISTER_VERSION = "1.0.0"
NO_COMMIT = "0" * 40
SHELL_BY_SUFFIX = {
    ".py": "python",
    ".r": "R",
    ".jl": "julia",
    ".sh": "sh",
    ".bash": "bash",
    ".ps1": "pwsh",
    ".bat": "batch",
    ".cmd": "batch",
}
_URL_SCHEMES = ("http://", "https://", "ftp://", "s3://", "gs://")


_warned: set[str] = set()


def _warn_once(message: str) -> None:
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
    user_namespace: str | None = None
    user_name: str | None = None
    user_id: str | None = None
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    now: datetime = field(default_factory=datetime.now)
    resolve_writes: bool = True


def _abspath(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _dir_string(path: Path) -> str:
    text = path.as_posix()
    return text if text.endswith("/") else text + "/"


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
        self.problems: list[Problem] = []
        self.pinned: dict[tuple[str, str], list[str]] = {}
        self.bad_versions: set[KeyPath] = set()  # reported already: no follow-on problems

    def problem(self, path: KeyPath, message: str) -> None:
        self.problems.append((path, message))

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

    # -- run_metadata ---------------------------------------------------------------------

    def run_metadata(self, meta: dict, local_repo: Path, needs: dict[str, bool]) -> dict:
        ctx = self.ctx
        out: dict[str, Any] = {"description": meta.get("description", "")}
        given_in = meta.get("default_input_namespace")
        given_out = meta.get("default_output_namespace")
        ns_in = given_in or given_out or ctx.user_namespace
        ns_out = given_out or given_in or ctx.user_namespace
        for key, value in (
            ("default_input_namespace", ns_in),
            ("default_output_namespace", ns_out),
        ):
            if value:
                out[key] = value
            elif needs[key]:
                self.problem(
                    ("run_metadata", key),
                    "not set, and no user namespace is configured (set it here or run fdp init)",
                )
        out["write_data_store"] = _dir_string(Path(ctx.data_store).expanduser().absolute())
        out["local_data_registry_url"] = ctx.registry_url
        if meta.get("remote_data_registry_url"):
            out["remote_data_registry_url"] = meta["remote_data_registry_url"]
        if "script_path" in meta:
            script_path = _abspath(self.base, meta["script_path"])
            out["script_path"] = str(script_path)
            shell = SHELL_BY_SUFFIX.get(script_path.suffix.lower(), "sh")
        else:
            if "script" in meta:
                out["script"] = meta["script"]
            shell = "sh"
        out["shell"] = meta.get("shell", shell)
        out["public"] = meta.get("public", True)
        out["local_repo"] = str(local_repo)
        out.update(self.provenance(meta, local_repo))
        out["default_read_version"] = meta.get("default_read_version", DEFAULT_READ_VERSION)
        out["default_write_version"] = meta.get("default_write_version", DEFAULT_WRITE_VERSION)
        out["api_version"] = meta.get("api_version", API_VERSION)
        return out

    def provenance(self, meta: dict, local_repo: Path) -> dict[str, str]:
        """remote_repo and latest_commit: as given, else from git, else placeholders.

        A placeholder is logged as one warning: the run's code would otherwise be recorded
        without a commit and nobody would notice.
        """
        out: dict[str, str] = {}
        missing = []
        if "remote_repo" in meta:
            out["remote_repo"] = meta["remote_repo"]
        else:
            remote = git(local_repo, "remote", "get-url", "origin")
            out["remote_repo"] = remote or ""
            if not remote:
                missing.append('no remote repository (remote_repo "")')
        if "latest_commit" in meta:
            out["latest_commit"] = meta["latest_commit"]
        else:
            commit = git(local_repo, "rev-parse", "HEAD")
            out["latest_commit"] = commit or NO_COMMIT
            if not commit:
                missing.insert(0, f"no commit (latest_commit {NO_COMMIT})")
        runs_script = bool(meta.get("script") or meta.get("script_path"))
        if missing and runs_script:
            _warn_once(
                f"warning: {self.cfg.file}: {_git_trouble(local_repo)}: code runs will record "
                + " and ".join(missing)
            )
        elif (
            runs_script
            and "latest_commit" not in meta
            and git(local_repo, "status", "--porcelain", "--untracked-files=no")
        ):
            _warn_once(
                f"warning: {self.cfg.file}: {local_repo} has uncommitted changes: code runs "
                f"will record commit {out['latest_commit'][:12]}, which is not exactly what ran"
            )
        return out

    # -- versions -------------------------------------------------------------------------

    def known_versions(self, namespace: str, name: str) -> list[str]:
        found = list(self.ctx.registry.versions(namespace, name))
        return found + self.pinned.get((namespace, name), [])

    def read_version(self, path: KeyPath, ns: str, name: str, spec: str, check: bool) -> str | None:
        known = self.known_versions(ns, name)
        inc = incrementer(spec)
        if inc == "LATEST":
            top = latest(known)
            if top is None:
                if not check:
                    return spec
                self.problem(
                    path,
                    f"{ns}:{name} has no version in the local registry (pull or register it first)",
                )
            return top
        if inc:
            self.problem(
                path, f"a read cannot use ${{{{{inc}}}}}; give a version or ${{{{LATEST}}}}"
            )
            return None
        if check and spec not in known:
            if known:
                have = ", ".join(sorted(set(known)))
                self.problem(
                    path, f"{ns}:{name}@{spec} not found in the local registry (have {have})"
                )
            else:
                self.problem(path, f"{ns}:{name} not found in the local registry")
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
                _warn_once(
                    f"warning: {self.cfg.file}: register item {item[kind]} has no version, "
                    f"using {version}"
                )
            item["namespace_name"] = ns
            item["version"] = version
            item["root"] = self.root(item["root"])
            item["path"] = item["path"].lstrip("/")
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
        return "file://" + _dir_string(_abspath(self.base, root))

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

    def reads(self, items: list, ns_in: str | None, read_default: str) -> list:
        out = []
        for i, item in enumerate(items):
            basics = self.item_basics("read", i, item, ns_in, read_default)
            if basics is None:
                continue
            path, use, ns, name, spec, vpath = basics
            cache = use.get("cache")
            extra = {k: use[k] for k in ("component",) if k in use}
            if cache:
                extra["cache"] = str(_abspath(self.base, cache))
            if "*" in name:
                if cache:
                    self.problem(path + ("use", "cache"), "a glob read cannot use cache")
                    continue
                matches = set(self.ctx.registry.names(ns, name))
                matches |= {
                    n for (p_ns, n) in self.pinned if p_ns == ns and fnmatch.fnmatchcase(n, name)
                }
                if not matches:
                    self.problem(
                        path + ("data_product",),
                        f"{name!r} matches no data product in namespace {ns} of the local registry",
                    )
                    continue
                for match in sorted(matches):
                    version = self.read_version(vpath, ns, match, spec, check=True)
                    if version is not None:
                        new = {"data_product": match}
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
            version = self.read_version(vpath, ns, name, spec, check=not cache)
            if version is None:
                continue
            new = {"data_product": item["data_product"]}
            if "description" in item:
                new["description"] = item["description"]
            new["use"] = {"data_product": name, "namespace": ns, "version": version, **extra}
            out.append(new)
        return out

    def writes(self, items: list, ns_out: str | None, write_default: str, public: bool) -> list:
        out = []
        seen: dict[tuple, int] = {}
        for i, item in enumerate(items):
            basics = self.item_basics("write", i, item, ns_out, write_default)
            if basics is None:
                continue
            path, use, ns, name, spec, vpath = basics
            key = (ns, name, use.get("component"))
            if key in seen:
                self.problem(path, f"writes {ns}:{name} like write[{seen[key]}] already does")
                continue
            seen[key] = i
            inc = incrementer(spec)
            version: str | None = spec
            if inc == "LATEST":
                self.problem(
                    vpath,
                    "a write cannot use ${{LATEST}}; use ${{PATCH}}, "
                    "${{MINOR}}, ${{MAJOR}} or a new version",
                )
                continue
            if self.ctx.resolve_writes:
                existing = list(self.ctx.registry.versions(ns, name))
                try:
                    version = increment(inc, existing) if inc else spec
                except VersionError as exc:
                    self.problem(vpath, str(exc))
                    continue
                if version in existing:
                    self.problem(
                        vpath, f"{ns}:{name}@{version} already exists in the local registry"
                    )
                    continue
            new_use = {"data_product": name, "namespace": ns, "version": version}
            if "component" in use:
                new_use["component"] = use["component"]
            out.append(
                {
                    "data_product": item["data_product"],
                    "description": item.get("description", ""),
                    "file_type": item["file_type"],
                    "public": item.get("public", public),
                    "use": new_use,
                }
            )
        return out

    # -- all ------------------------------------------------------------------------------

    def run(self) -> dict:
        ctx = self.ctx
        data = copy.deepcopy(self.cfg.data)
        meta = data.get("run_metadata") or {}

        def templater_for(repo_dir: Path | None) -> Templater:
            return Templater(
                config_path=self.cfg.path,
                now=ctx.now,
                run_id=ctx.run_id,
                user_name=ctx.user_name,
                user_id=ctx.user_id,
                repo_dir=repo_dir,
            )

        # local_repo may use variables itself; the others (GIT_*) are then read in it
        local_repo = self.base
        if "local_repo" in meta:
            repo_text = self.substitute(
                meta["local_repo"], templater_for(None), ("run_metadata", "local_repo")
            )
            local_repo = _abspath(self.base, repo_text)
        templater = templater_for(local_repo)
        data = self.substitute(data, templater, ())
        meta = data.get("run_metadata") or {}
        reads, writes = data.get("read") or [], data.get("write") or []
        registers = data.get("register") or []

        def lacks(items: list, *keys: str) -> bool:
            for item in items:
                use = item.get("use") or {}
                if not any(item.get(k) for k in keys) and not use.get("namespace"):
                    return True
            return False

        objects = [r for r in registers if "external_object" in r or "data_product" in r]
        needs = {
            "default_input_namespace": lacks(reads),
            "default_output_namespace": lacks(writes) or lacks(objects, "namespace_name"),
        }
        run_meta = self.run_metadata(meta, local_repo, needs)
        register = self.register(registers, run_meta.get("default_output_namespace"))
        read = self.reads(
            reads, run_meta.get("default_input_namespace"), run_meta["default_read_version"]
        )
        write = self.writes(
            writes,
            run_meta.get("default_output_namespace"),
            run_meta["default_write_version"],
            run_meta["public"],
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
        return {"run_metadata": run_meta, "read": read, "write": write, "register": register}


def resolve(cfg: Config, ctx: ResolveContext) -> dict:
    """The fully qualified working config for one run of cfg; raise ConfigError listing all
    problems (unknown variables, missing reads, existing write versions, ...)."""
    return _Resolver(cfg, ctx).run()
