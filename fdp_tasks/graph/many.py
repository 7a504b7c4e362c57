"""Many configs, one graph: the tasks of every config a command is given, side by side.

Each config's tasks are its own (`dodo_namespace`), renamed with the config's path from the
project root: `job@sweep/beta-0.1_seed-1.yaml`, `register@...:PSU:params`, so that doit
runs the jobs of all of them at once (`doit -n 4`), each job through the one executor the
command shares. The plain names (`register`, `pull`, `job`, `push`, `prov`) are groups of
every config's tasks, so `doit`, `doit push` and `doit job` mean what they mean for one
config. One job of a config still runs at a time (its lock); jobs of different configs run
side by side, in threads or processes.

Configs come from `doit config=a.yaml,b.yaml` (globs too), else the `configs:` globs of
.fdp/settings.yaml, else a sweep.yaml where there is no config.yaml; a sweep file among
them stands for the configs it makes, which are written (or brought up to date) first.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.task import DelayedLoader

from fdp_tasks.config.sweep import expand, is_sweep_file
from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.executors import Executor, executor_for
from fdp_tasks.graph.report import FdpReporter
from fdp_tasks.graph.tasks import dodo_namespace
from fdp_tasks.project import Project

GROUPS = ("register", "pull", "job", "push", "prov")
DEFAULT_CONFIG = "config.yaml"
DEFAULT_SWEEP = "sweep.yaml"  # taken where there is no config.yaml
Task = dict[str, Any]


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def expand_entries(entries: list[str], base: Path, where: str) -> list[Path]:
    """Files named by `entries` (paths or globs, from `base`), sweep files replaced by the
    configs they make, each config once, in the order given."""
    out: dict[Path, None] = {}
    for entry in entries:
        text = entry.strip()
        if not text:
            continue
        pattern = str(Path(text).expanduser() if Path(text).is_absolute() else base / text)
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if not _is_pattern(text) and not found:
            raise BadInput(f"{where}: {text}: no such config file")
        for path in found:
            if not path.is_file():
                continue
            if is_sweep_file(path):
                out.update(dict.fromkeys(p.resolve() for p in expand(path)))
            else:
                out[path.resolve()] = None
    if not out:
        raise BadInput(f"{where}: {', '.join(entries)} names no config file")
    return list(out)


def project_configs(project: Project) -> list[str] | None:
    """The `configs:` globs of the project's settings, if it lists any."""
    value = project.settings.get("configs")
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadInput(f"{project.settings_path}: configs: expected a list of paths or globs")
    return value


def configs_for(text: str | None, base: Path) -> list[Path] | None:
    """The configs a command is given: `text` (`config=` of doit: comma-separated paths or
    globs, or one sweep file), else the project's `configs:` setting, else, where there is
    no config.yaml, a sweep.yaml. None when that is one plain config file, which keeps the
    single-config graph and its task names; a list, a glob or a sweep is a graph of many
    even when it names one config, so that its task names (and doit's memory of them) do
    not change as it grows."""
    if text is None:
        project = Project.find(base)
        listed = project_configs(project)
        if listed is not None:
            return expand_entries(listed, project.root, f"{project.settings_path}: configs")
        if not (base / DEFAULT_CONFIG).is_file() and (base / DEFAULT_SWEEP).is_file():
            return expand_entries([DEFAULT_SWEEP], base, str(base / DEFAULT_SWEEP))
        return None
    parts = [p for p in text.split(",") if p.strip()]
    if len(parts) == 1 and not _is_pattern(parts[0]):
        path = base / parts[0]
        if not (path.is_file() and is_sweep_file(path)):
            return None
    return expand_entries(parts, base, f"config={text}")


def label_of(project: Project, config: Path) -> str:
    """A config's name in task names: its path from the project root."""
    try:
        return config.resolve().relative_to(project.root).as_posix()
    except ValueError:
        return config.resolve().as_posix()


def task_name(name: str, label: str) -> str:
    """`register:PSU:x` of config `a.yaml` -> `register@a.yaml:PSU:x`."""
    base, sep, sub = name.partition(":")
    return f"{base}@{label}{sep}{sub}"


def _renamed_task(task: Task, label: str) -> Task:
    out = dict(task)
    out["basename"] = task_name(str(task["basename"]), label)
    if task.get("task_dep"):
        out["task_dep"] = [task_name(str(dep), label) for dep in task["task_dep"]]
    return out


def _renamed_creator(creator: Callable[[], Any], label: str) -> Callable[[], Iterator[Task]]:
    """A task creator of one config, its tasks (and those it waits for) renamed."""

    def renamed() -> Iterator[Task]:
        made = creator()
        for task in [made] if isinstance(made, dict) else made:
            yield _renamed_task(task, label)

    renamed.__doc__ = creator.__doc__
    delayed = getattr(creator, "doit_create_after", None)
    if delayed is not None:
        renamed.doit_create_after = DelayedLoader(  # type: ignore[attr-defined]
            renamed,
            executed=task_name(delayed.task_dep, label) if delayed.task_dep else None,
            target_regex=delayed.target_regex,
            creates=[task_name(name, label) for name in delayed.creates],
        )
    return renamed


def many_namespace(
    configs: list[Path], executor: str | None = None, **options: Any
) -> dict[str, Any]:
    """One doit namespace for all `configs`; `options` as `dodo_namespace` takes them. The
    namespace's `sessions` are every config's session, which whoever runs doit closes."""
    project = Project.find(configs[0].parent)
    runner: Executor = executor_for(project, executor)
    merged: dict[str, Any] = {}
    labels: list[str] = []
    sessions = []
    for config in configs:
        namespace = dodo_namespace(str(config), executor=runner, **options)
        label = label_of(project, config)
        if label in labels:  # pragma: no cover - configs are made unique above
            raise FdpError(f"{label}: named twice")
        labels.append(label)
        sessions.append(namespace["session"])
        for key, value in namespace.items():
            if key.startswith("task_"):
                merged[f"task_{task_name(key[5:], label)}"] = _renamed_creator(value, label)
    for group in GROUPS:
        merged[f"task_{group}"] = _group(group, labels)
    state = project.state_dir / "graph"
    state.mkdir(parents=True, exist_ok=True)
    merged["DOIT_CONFIG"] = {
        "default_tasks": ["register", "pull", "job"],
        "dep_file": str(state / "doit.db"),
        "backend": "sqlite3",
        "verbosity": 2,
        "reporter": FdpReporter,
    }
    merged["sessions"] = sessions
    merged["executor"] = runner
    return merged


def _group(group: str, labels: list[str]) -> Callable[[], Task]:
    def creator() -> Task:
        return {
            "basename": group,
            "doc": f"{group} for every config ({len(labels)})",
            "actions": None,
            "task_dep": [f"{group}@{label}" for label in labels],
        }

    creator.__doc__ = f"{group} for every config of the graph"
    return creator
