"""Rebuild one recorded code run in a scratch registry and data store, and compare outputs."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import shutil
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from fdp_tasks import environment
from fdp_tasks.catalog.locations import intact, local_location
from fdp_tasks.config.resolve import DIRTY, NO_COMMIT
from fdp_tasks.config.templates import TemplateError, git, git_root, run_templater
from fdp_tasks.datastore import product_path
from fdp_tasks.errors import FdpError, HashMismatch
from fdp_tasks.job import ServeRegistry, run_job
from fdp_tasks.project import Project
from fdp_tasks.provenance import Lineage, find_item
from fdp_tasks.refs import ProductRef
from fdp_tasks.remotes import Remote, open_remote
from fdp_tasks.remotes.sync import Copier
from fdp_tasks.reproduce.compare import first_difference
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record, Registry

# Outputs larger than this are compared by SHA-1 only, not line by line.
LINE_DIFF_LIMIT = 64 * 1024 * 1024


@dataclass
class OutputCheck:
    """One recorded output and what the rebuild wrote under its name."""

    product: str
    recorded_sha1: str | None
    new_sha1: str | None
    first_difference: str | None = None

    @property
    def same(self) -> bool:
        return self.recorded_sha1 is not None and self.recorded_sha1 == self.new_sha1

    def lines(self) -> list[str]:
        if self.same:
            return [f"{self.product}: the same bytes (SHA-1 {self.new_sha1})"]
        if self.new_sha1 is None:
            return [
                f"{self.product}: not written by the rebuild (recorded SHA-1 {self.recorded_sha1})"
            ]
        out = [
            f"{self.product}: differs (recorded SHA-1 {self.recorded_sha1}, new {self.new_sha1})"
        ]
        if self.first_difference:
            out.append(f"  {self.first_difference}")
        return out


@dataclass
class Outcome:
    """What a rebuild showed. `environment_changes` is compared only when outputs differ."""

    code_run: str
    commit: str
    records_from: str
    outputs: list[OutputCheck] = field(default_factory=list)
    environment_changes: list[str] | None = None
    scratch: str | None = None

    @property
    def reproduced(self) -> bool:
        return all(check.same for check in self.outputs)

    @property
    def summary(self) -> str:
        total = len(self.outputs)
        if self.reproduced:
            return f"reproduced {total}/{total} outputs bit for bit"
        differ = sum(not check.same for check in self.outputs)
        return f"not reproduced: {differ} of {total} outputs differ"

    def lines(self) -> list[str]:
        """The report, last line the summary: only what differs is named."""
        out = [line for check in self.outputs if not check.same for line in check.lines()]
        if self.environment_changes is not None:
            if self.environment_changes:
                out.append("environment, recorded and now:")
                out += [f"  {line}" for line in self.environment_changes]
            else:
                out.append("environment: the same Python, platform and distributions as recorded")
        if self.scratch:
            out.append(f"kept the scratch folder {self.scratch}")
        out.append(self.summary)
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "code_run": self.code_run,
            "commit": self.commit,
            "records_from": self.records_from,
            "reproduced": self.reproduced,
            "summary": self.summary,
            "outputs": [{**asdict(check), "same": check.same} for check in self.outputs],
            "environment_changes": self.environment_changes,
            "scratch": self.scratch,
        }


class Records:
    """Where the recorded run is read from (the local registry, else a remote's) and how
    recorded files are fetched: from the local data store by SHA-1, else from the remote
    (`--remote`, else the project's default remote), opened only when needed."""

    def __init__(self, project: Project, remote_name: str | None):
        self.project = project
        self.local: Registry = project.read_store()
        self.data = project.data_store
        self.remote_name = remote_name
        self._remote: Remote | None = None

    def remote(self, why: str) -> Remote:
        if self._remote is None:
            try:
                spec = self.project.remote(self.remote_name)
            except FdpError as exc:
                raise FdpError(f"{why}, and there is no remote to fetch it from: {exc}") from None
            self._remote = open_remote(spec.name, spec.url, spec.token(), readonly=True)
        return self._remote

    def has_remote(self) -> bool:
        try:
            self.project.remote(self.remote_name)
        except FdpError:
            return False
        return True

    def close(self) -> None:
        if self._remote is not None:
            self._remote.close()

    def local_copy(self, sha1: str) -> Path | None:
        """A file of the local data store holding these bytes, by the local registry."""
        roots = self.local.find("storage_root", {"root": self.data.uri}, limit=1)
        if not roots:
            return None
        for location in self.local.find(
            "storage_location", {"storage_root": roots[0]["id"], "hash": sha1}
        ):
            if intact(self.data, location["path"], sha1):
                return self.data.path(location["path"])
        return None

    def stream(self, registry: Registry, object_id: int, what: str) -> Iterator[bytes]:
        """The bytes of a recorded object's file, checked against its SHA-1 by the caller."""
        obj = registry.get("object", object_id)
        if not obj.get("storage_location"):
            raise FdpError(f"{what} has no file recorded")
        location = registry.get("storage_location", obj["storage_location"])
        root = registry.get("storage_root", location["storage_root"])
        here = self.local_copy(location["hash"])
        if here is not None:
            return _chunks(here)
        if self.data.holds(root["root"]) and registry is self.local:
            why = f"{what} ({self.data.path(location['path'])}) is not in the local data store"
        else:
            why = f"{what} is not in the local data store"
        return self.remote(why).download(root["root"], location["path"])

    def read(self, registry: Registry, object_id: int, what: str) -> bytes:
        obj = registry.get("object", object_id)
        expected = (
            registry.get("storage_location", obj["storage_location"])["hash"]
            if obj.get("storage_location")
            else None
        )
        data = b"".join(self.stream(registry, object_id, what))
        got = _sha1(data)
        if expected and got != expected:
            raise HashMismatch(f"{what}: fetched bytes have SHA-1 {got}, recorded {expected}")
        return data


def _chunks(path: Path, size: int = 1 << 20) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while block := fh.read(size):
            yield block


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


# ---------------------------------------------------------------------- the recorded run
def find_run(records: Records, item: str) -> tuple[Registry, Record, str]:
    """The code run to rebuild (given, or the newest that made the product), the registry
    holding it, and where that is in words: the local registry first, then the remote."""
    run = _run_in(records.local, item)
    if run is not None:
        return records.local, run, "the local registry"
    if records.remote_name is None and not records.has_remote():
        raise FdpError(f"{item} is not in the local registry, and no remote is configured")
    remote = records.remote(f"{item} is not in the local registry")
    run = _run_in(remote.registry, item)
    if run is None:
        raise FdpError(f"{item} is neither in the local registry nor on remote {remote.name}")
    return remote.registry, run, f"remote {remote.name}"


def _run_in(registry: Registry, item: str) -> Record | None:
    """The run `item` names, or the newest that made the product it names; None when this
    registry does not hold it."""
    found = find_item(registry, item)
    if found is None:
        return None
    kind, record_id = found
    if kind == "code_run":
        return registry.get("code_run", record_id)
    runs = Lineage(registry).runs_of_product(record_id)
    if not runs:
        raise FdpError(
            f"{item} was registered from a source, not made by a code run: there is no run to "
            "rebuild"
        )
    return max(runs, key=lambda run: (str(run.get("run_date") or ""), run["id"]))


def recorded_commit(registry: Registry, run: Record) -> str:
    """The commit the run's code was recorded at; a dirty run or none is refused here."""
    commit = None
    if run.get("code_repo"):
        obj = registry.get("object", run["code_repo"])
        if obj.get("storage_location"):
            location = registry.get("storage_location", obj["storage_location"])
            commit = location.get("hash") or location.get("path")
    if not commit or commit.strip("0") == "" or commit == NO_COMMIT:
        raise FdpError(
            f"code run {run['uuid']} records no commit of its code: it cannot be rebuilt"
        )
    if commit.endswith(DIRTY):
        raise FdpError(
            f"code run {run['uuid']} was recorded as dirty (commit {commit}): its code had "
            "uncommitted changes that no commit holds, so it cannot be rebuilt"
        )
    return commit


def recorded_environment(records: Records, registry: Registry, run: Record) -> dict[str, Any]:
    components = queries.get_many(registry, "object_component", list(run.get("inputs") or []))
    objects = queries.get_many(registry, "object", [c["object"] for c in components.values()])
    for obj in objects.values():
        if obj.get("description") == environment.DESCRIPTION and not obj.get("data_products"):
            text = records.read(registry, obj["id"], f"the environment of code run {run['uuid']}")
            try:
                found = json.loads(text)
            except ValueError:
                break
            if isinstance(found, dict):
                return found
            break
    raise FdpError(
        f"code run {run['uuid']} has no recorded environment (runs record one since fdp-tasks "
        "records how to rebuild them): its source config is unknown, so it cannot be rebuilt"
    )


def recorded_outputs(registry: Registry, run: Record) -> list[queries.Located]:
    components = queries.get_many(registry, "object_component", list(run.get("outputs") or []))
    objects = queries.get_many(registry, "object", [c["object"] for c in components.values()])
    ids = [p for obj in objects.values() for p in obj.get("data_products") or []]
    products = queries.get_many(registry, "data_product", ids)
    return queries.locate_many(registry, [products[i] for i in sorted(products)])


# ---------------------------------------------------------------------- the code
@contextlib.contextmanager
def worktree(repo: Path, commit: str, where: Path, keep: bool, run_uuid: str) -> Iterator[Path]:
    """A detached git worktree of `repo` at `commit`, removed afterwards unless `keep`."""
    if git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
        if git(repo, "remote", "get-url", "origin"):
            git(repo, "fetch", "-q", "origin")  # a commit of a branch not fetched yet
        if git(repo, "cat-file", "-e", f"{commit}^{{commit}}") is None:
            raise FdpError(
                f"code run {run_uuid} was made from commit {commit}, which the git repository "
                f"{repo} does not hold (history rewritten, or its branch deleted?): it cannot "
                "be rebuilt"
            )
    proc = subprocess.run(
        ["git", "-C", str(repo), "worktree", "add", "--detach", "-q", str(where), commit],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
        raise FdpError(f"cannot check out commit {commit} of {repo}: {reason}")
    try:
        yield where
    finally:
        if not keep:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(where)],
                capture_output=True,
            )
            shutil.rmtree(where, ignore_errors=True)
            subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True)


# ---------------------------------------------------------------------- the scratch project
def scratch_project(project: Project, folder: Path) -> Project:
    """A project whose registry and data store live in `folder`, for the same user."""
    user = project.user
    return Project(
        folder,
        folder / "home",
        {"registry": str(folder / "registry.db"), "data_store": str(folder / "data")},
        {key: value for key, value in asdict(user).items() if value is not None},
    )


def moved_by(moved: dict[int, int]) -> Callable[[Record], int | None]:
    """A Copier's `relocate`: storage locations already placed in the scratch store."""
    return lambda location: moved.get(location["id"])


def stage_inputs(
    records: Records,
    registry: Registry,
    working: dict[str, Any],
    scratch: Project,
) -> None:
    """Every input the working config reads, in the scratch data store and registry, with
    the bytes the run recorded (by SHA-1)."""
    store, data = scratch.store(), scratch.data_store
    # per registry read from: a copier, and its storage locations -> the scratch ones
    copiers: dict[int, tuple[Copier, dict[int, int]]] = {}
    for item in working.get("read") or []:
        use = item.get("use") or {}
        if use.get("cache"):
            continue  # a file of the repository, used as it is
        ref = ProductRef.of_read_item(item)
        found, source_registry = queries.locate_ref(registry, ref), registry
        if found is None and registry is not records.local:
            found, source_registry = queries.locate_ref(records.local, ref), records.local
        if found is None or found.location is None:
            raise FdpError(f"input {ref} of the run is recorded nowhere here: cannot fetch it")
        sha1 = found.hash or ""
        extension = _extension(source_registry, found)
        rel = product_path(ref.namespace, ref.name, ref.version_text, extension)
        chunks = records.stream(source_registry, found.object["id"], f"input {ref}")
        data.put_stream(rel, chunks, expected_sha1=sha1)
        location = local_location(store, data, rel, sha1, bool(found.location.get("public", True)))
        if id(source_registry) not in copiers:
            moved: dict[int, int] = {}
            copiers[id(source_registry)] = (Copier(source_registry, store, moved_by(moved)), moved)
        copier, moved_here = copiers[id(source_registry)]
        moved_here[found.location["id"]] = location
        copier.copy("data_product", found.product["id"])


def _extension(registry: Registry, found: queries.Located) -> str:
    if found.object.get("file_type"):
        return str(registry.get("file_type", found.object["file_type"])["extension"])
    suffix = Path(found.location["path"]).suffix if found.location else ""
    return suffix.lstrip(".") or "dat"


def _rebase(value: Any, old: str, new: str) -> Any:
    """Paths under the recorded local_repo, moved under the rebuild's."""
    if isinstance(value, dict):
        return {k: _rebase(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new) for v in value]
    if isinstance(value, str) and old and (value == old or value.startswith(old.rstrip("/") + "/")):
        return new + value[len(old.rstrip("/")) :]
    return value


def rebuild_working(
    recorded: dict[str, Any],
    env: dict[str, Any],
    checkout: Path,
    scratch: Project,
) -> Callable[[str, Path, str], dict[str, Any]]:
    """How the job gets its working config: the recorded one with the machine's values
    (registry URL, data store, local_repo, job directory, token) those of the rebuild, the
    script expanded again from the source config with the recorded values."""
    source_rel = env.get("source_config")
    text = env.get("source_config_text")
    if text is None and source_rel and (checkout / source_rel).is_file():
        text = (checkout / source_rel).read_text(encoding="utf-8")
    if not source_rel or text is None:
        raise FdpError("the run's source config was not recorded: it cannot be rebuilt")
    try:
        source = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise FdpError(
            f"the recorded source config {source_rel} is not valid YAML: {exc}"
        ) from None
    source_meta = source.get("run_metadata") or {}
    config_path = checkout / source_rel
    new_repo = (checkout / (env.get("local_repo") or ".")).resolve()
    old_meta = recorded.get("run_metadata") or {}
    old_repo = str(old_meta.get("local_repo") or "")
    user = scratch.user

    def working_for(api_url: str, job: Path, token: str) -> dict[str, Any]:
        meta = {k: v for k, v in old_meta.items() if k not in ("script", "script_path")}
        meta["local_repo"] = str(new_repo)
        meta["write_data_store"] = scratch.data_store.root.as_posix().rstrip("/") + "/"
        meta["local_data_registry_url"] = api_url
        if source_meta.get("script"):
            templater = run_templater(
                config_path,
                now=datetime.now(),
                run_id=str(uuidlib.uuid4()),
                user_name=user.name,
                user_id=user.identifier,
                repo_dir=new_repo,
                job_dir=job,
                local_token=token,
            )
            templater.preset(
                {
                    k: v
                    for k, v in (env.get("substitutions") or {}).items()
                    if k not in environment.MACHINE_VARIABLES
                }
            )
            try:
                meta["script"] = templater.substitute(str(source_meta["script"]))
            except TemplateError as exc:
                raise FdpError(f"{source_rel}: run_metadata.script: {exc}") from None
        elif source_meta.get("script_path"):
            named = str(source_meta["script_path"])
            candidates = [config_path.parent / named, new_repo / named]
            meta["script_path"] = str(next((c for c in candidates if c.is_file()), candidates[0]))
        out: dict[str, Any] = {"run_metadata": meta}
        for section in ("read", "write"):
            if recorded.get(section):
                out[section] = _rebase(copy.deepcopy(recorded[section]), old_repo, str(new_repo))
        return out

    return working_for


# ---------------------------------------------------------------------- comparing
def compare(
    records: Records,
    registry: Registry,
    recorded: list[queries.Located],
    scratch: Project,
    new_runs: list[str],
) -> list[OutputCheck]:
    store, data = scratch.store(), scratch.data_store
    made: dict[tuple[str, str], queries.Located] = {}
    for run_uuid in new_runs:
        rows = store.find("code_run", {"uuid": run_uuid}, limit=1)
        if rows:
            for found in recorded_outputs(store, rows[0]):
                made[(found.namespace["name"], found.product["name"])] = found
    checks = []
    for old in recorded:
        new = made.get((old.namespace["name"], old.product["name"]))
        new_path = data.path(new.location["path"]) if new and new.location else None
        check = OutputCheck(str(old.ref), old.hash, new.hash if new else None)
        if not check.same and new_path is not None and _comparable(new_path):
            try:
                before = records.read(registry, old.object["id"], f"output {old.ref}")
            except FdpError as exc:
                check.first_difference = f"(the recorded bytes are not here to compare: {exc})"
            else:
                check.first_difference = first_difference(before, new_path.read_bytes())
        checks.append(check)
    return checks


def _comparable(path: Path) -> bool:
    """Whether a new output is small enough to be compared line by line."""
    return path.is_file() and path.stat().st_size <= LINE_DIFF_LIMIT


# ---------------------------------------------------------------------- all of it
def run_of(project: Project, item: str, remote_name: str | None = None) -> str:
    """The uuid of the code run `reproduce` would rebuild for `item`, found as it finds it:
    several products of one run need one rebuild."""
    records = Records(project, remote_name)
    try:
        return str(find_run(records, item)[1]["uuid"])
    finally:
        records.close()


def reproduce(
    project: Project,
    item: str,
    serve: ServeRegistry,
    remote_name: str | None = None,
    keep: bool = False,
    say: Callable[[str], None] = print,
) -> Outcome:
    """Rebuild the code run that made `item` (a data product, or a code run's uuid) and
    compare its outputs with the recorded ones."""
    records = Records(project, remote_name)
    try:
        registry, run, place = find_run(records, item)
        commit = recorded_commit(registry, run)
        env = recorded_environment(records, registry, run)
        if not run.get("model_config"):
            raise FdpError(f"code run {run['uuid']} records no config: it cannot be rebuilt")
        config_text = records.read(
            registry, run["model_config"], f"the working config of code run {run['uuid']}"
        )
        recorded = yaml.safe_load(config_text) or {}
        outputs = recorded_outputs(registry, run)
        repo = git_root(project.root)
        if repo is None:
            raise FdpError(
                f"{project.root} is in no git repository: the run's code is rebuilt from "
                "the model's repository, at the recorded commit"
            )
        say(f"reproducing code run {run['uuid']} (commit {commit[:12]}, recorded in {place})")
        folder = Path(tempfile.mkdtemp(prefix="fdp-reproduce-"))
        try:
            outcome = _rebuild(
                records, registry, run, commit, env, recorded, outputs, repo, folder, keep, serve
            )
            outcome.records_from = place
        except BaseException:
            if keep:
                say(f"kept the scratch folder {folder}")
            raise
        finally:
            if not keep:
                shutil.rmtree(folder, ignore_errors=True)
        if keep:
            outcome.scratch = str(folder)
        return outcome
    finally:
        records.close()


def _rebuild(
    records: Records,
    registry: Registry,
    run: Record,
    commit: str,
    env: dict[str, Any],
    recorded: dict[str, Any],
    outputs: list[queries.Located],
    repo: Path,
    folder: Path,
    keep: bool,
    serve: ServeRegistry,
) -> Outcome:
    scratch = scratch_project(records.project, folder)
    stage_inputs(records, registry, recorded, scratch)
    with worktree(repo, commit, folder / "repo", keep, run["uuid"]) as checkout:
        working_for = rebuild_working(recorded, env, checkout, scratch)
        try:
            done = run_job(scratch, folder / "state" / "runs.jsonl", working_for, serve=serve)
        except FdpError as exc:
            hint = "" if keep else " (--keep keeps the scratch folder and its job log)"
            raise FdpError(f"the rebuild of code run {run['uuid']} failed: {exc}{hint}") from None
    checks = compare(records, registry, outputs, scratch, list(done.get("code_runs") or []))
    outcome = Outcome(run["uuid"], commit, "", checks)
    if not outcome.reproduced:
        outcome.environment_changes = environment.difference(env, environment.current())
    return outcome
