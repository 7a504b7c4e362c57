"""The tasks of one config, for a project's dodo.py: `from fdp_tasks.dodo import *`.

doit imports dodo.py after it has read `config=...` and `refresh=1` from its command line, so
this module can read them with `get_var` when it is imported. `remote=NAME` picks a remote;
`force=1` runs the job even when it looks up to date; `dirty=1` runs and pushes from a git
repository with uncommitted changes (the run is recorded as dirty); `wait=1` waits for a job
of the same config that another process runs, instead of refusing. `config=a.yaml,b.yaml`
(globs, or a sweep file) puts many configs in one graph, as the `configs:` setting does
without `config=`; `executor=local|dask|slurm` says where jobs run.
"""

from doit import get_var

from fdp_tasks.entry import load_namespace
from fdp_tasks.executors import EXECUTORS
from fdp_tasks.scalars import parse_bool, positive_int


def _flag(name: str) -> bool:
    """`force=1` (or yes, true, on) sets a flag; `force=0` (or no, false, off) or none does not."""
    text = get_var(name, "")
    try:
        return bool(text) and parse_bool(text)
    except ValueError as exc:
        raise SystemExit(f"fdp: error: {name}={text}: {exc}") from None


def _jobs() -> int | None:
    """`jobs=N`: files a push or pull moves at once (default: the `jobs` setting)."""
    text = get_var("jobs", "")
    if not text:
        return None
    try:
        return positive_int(text)
    except ValueError as exc:
        raise SystemExit(f"fdp: error: jobs={text}: {exc}") from None


def _executor() -> str | None:
    """`executor=NAME`: where jobs run (default: the `executor` setting, else here)."""
    text = get_var("executor", "")
    if not text:
        return None
    if text not in EXECUTORS:
        raise SystemExit(f"fdp: error: executor={text}: expected one of {', '.join(EXECUTORS)}")
    return text


_namespace = load_namespace(
    get_var("config", None),
    refresh=_flag("refresh"),
    remote=get_var("remote", None),
    force=_flag("force"),
    dirty=_flag("dirty"),
    wait=_flag("wait"),
    jobs=_jobs(),
    executor=_executor(),
)
globals().update(_namespace)
__all__ = list(_namespace)
