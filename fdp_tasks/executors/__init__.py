"""Where a job's script runs: here (`local`, the default), on a Dask cluster (`dask`), or on
Slurm (`slurm`). Chosen by `executor:` in .fdp/settings.yaml, `fdp run --executor` or
`doit executor=NAME`.

A job that runs on another machine cannot reach the loopback server of the local registry,
nor a data store only this machine has: `dask` and `slurm` need `shared_registry` (the URL of
an fdp registry server of this project's registry database, which every worker reaches) and
an explicit `data_store` (a folder every worker mounts at the same path). Without them the
command refuses at once, in one line saying what to set.

    executor: dask
    shared_registry: http://fdp.cluster.example:8000/api/
    shared_registry_db: postgresql+psycopg://fdp@db.cluster.example/fdp   # optional
    data_store: /shared/fdp/data
    dask: {scheduler_address: tcp://10.0.0.5:8786}       # default: a LocalCluster
    slurm: {partition: short, cores: 1, memory: 2GB, walltime: "00:30:00", workers: 8}
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from fdp_tasks.errors import BadInput
from fdp_tasks.executors.base import Executor, JobResult, JobSpec, run_command
from fdp_tasks.executors.local import LocalExecutor
from fdp_tasks.project import Project
from fdp_tasks.scalars import positive_int

__all__ = [
    "EXECUTORS",
    "Executor",
    "JobResult",
    "JobSpec",
    "LocalExecutor",
    "executor_for",
    "run_command",
]

EXECUTORS = ("local", "dask", "slurm")
FAR_EXECUTORS = ("dask", "slurm")  # jobs run on other machines: a shared registry is needed


def executor_name(project: Project, name: str | None = None, flag: str = "--executor") -> str:
    """The executor asked for (`name`, from `flag`), else the project's `executor:`
    setting, else `local`; an unknown name is a one-line error naming where it came from."""
    where = flag
    if name is None:
        name = project.settings.get("executor")
        where = f"{project.settings_path}: executor"
    if name is None or name == "":
        return "local"
    if name not in EXECUTORS:
        raise BadInput(f"{where}: expected one of {', '.join(EXECUTORS)}, not {name!r}")
    return str(name)


def executor_for(project: Project, name: str | None = None, flag: str = "--executor") -> Executor:
    """The executor a command runs its jobs with. A far one (dask, slurm) is refused without
    a shared registry and data store; its cluster starts only when a job is submitted."""
    chosen = executor_name(project, name, flag)
    if chosen == "local":
        return LocalExecutor()
    settings, path = project.settings, project.settings_path
    registry, registry_db = _shared_registry(project, chosen)
    if chosen == "dask":
        from fdp_tasks.executors.dask import DaskExecutor, DaskOptions

        dask_options = _options(DaskOptions, settings.get("dask"), f"{path}: dask")
        return DaskExecutor(dask_options, registry, registry_db)
    from fdp_tasks.executors.slurm import SlurmExecutor, SlurmOptions

    slurm_options = _options(SlurmOptions, settings.get("slurm"), f"{path}: slurm")
    if slurm_options.log_directory is None:  # the workers' Slurm logs, beside the settings
        logs = str(project.state_dir / "executor" / "slurm")
        slurm_options = replace(slurm_options, log_directory=logs)
    return SlurmExecutor(slurm_options, registry, registry_db)


def _shared_registry(project: Project, chosen: str) -> tuple[str, str | None]:
    settings, path = project.settings, project.settings_path
    registry = settings.get("shared_registry")
    missing = []
    if not registry:
        missing.append(
            "shared_registry (the URL of an fdp registry server of this project's registry "
            "database that every worker reaches, e.g. http://host:8000/api/)"
        )
    if not settings.get("data_store"):
        missing.append("data_store (a folder every worker mounts at the same path)")
    if missing:
        raise BadInput(
            f"executor {chosen} runs jobs on other machines, which cannot reach this "
            f"machine's loopback registry: set {' and '.join(missing)} in {path}"
        )
    text = str(registry)
    if not text.startswith(("http://", "https://")):
        raise BadInput(f"{path}: shared_registry: expected an http(s):// URL, not {text!r}")
    registry_db = settings.get("shared_registry_db")
    if registry_db is not None and (not isinstance(registry_db, str) or "://" not in registry_db):
        raise BadInput(
            f"{path}: shared_registry_db: expected a database URL "
            f"(postgresql+psycopg://...), not {registry_db!r}"
        )
    return text.rstrip("/") + "/", registry_db


def _options(kind: Any, given: Any, where: str) -> Any:
    """The `dask:` or `slurm:` mapping as options, each key checked against its type."""
    if given is None:
        return kind()
    if not isinstance(given, dict):
        raise BadInput(f"{where}: expected a mapping")
    known = {f.name: f for f in fields(kind)}
    values: dict[str, Any] = {}
    for key, value in given.items():
        if key not in known:
            raise BadInput(f"{where}.{key}: unknown; expected one of {', '.join(known)}")
        values[key] = _option_value(known[key].type, value, f"{where}.{key}")
    return kind(**values)


def _option_value(declared: Any, value: Any, where: str) -> Any:
    text = str(declared)
    if "list" in text:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadInput(f"{where}: expected a list of strings")
        return value
    if "int" in text:
        try:
            return positive_int(value)
        except ValueError:
            raise BadInput(f"{where}: expected a positive integer, not {value!r}") from None
    if "float" in text:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise BadInput(f"{where}: expected a number of seconds, not {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise BadInput(f"{where}: expected a string, not {value!r}")
    return value

