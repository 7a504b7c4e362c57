"""`doit reproduce`: rebuild data products from their recorded code runs and check them.

    reproduce:<ns:name@version>   rebuilds the run that made it in a scratch registry and
                                  data store (`fdp_tasks.reproduce`); fails unless every
                                  output of that run comes out bit for bit

The items are those listed under `reproduce:` in `.fdp/settings.yaml` (`ns:name@version`, or
`ns:name` for the newest), else the outputs of the config's runs; products of one code run
are rebuilt once. Never up to date and not a default task: only `doit reproduce` (or `doit
reproduce:<item>`) runs them, and they never run the job first: they check what was recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.graph.plan import Plan
from fdp_tasks.graph.prov_tasks import config_outputs
from fdp_tasks.graph.report import REPORT, TaskFailure
from fdp_tasks.job import ServeRegistry
from fdp_tasks.reproduce import Outcome, reproduce, run_of

Task = dict[str, Any]
SETTING = "reproduce"


def reproduce_items(plan: Plan) -> list[str]:
    """The products to check: the settings' `reproduce:` list, else the config's outputs."""
    listed = plan.project.settings.get(SETTING)
    if listed is None:
        return sorted(config_outputs(plan))
    if not isinstance(listed, list) or not all(isinstance(i, str) and i for i in listed):
        raise BadInput(
            f"{plan.project.settings_path}: {SETTING}: expected a list of data products "
            "(namespace:name@version, or namespace:name for the newest)"
        )
    return list(dict.fromkeys(listed))


def reproduce_tasks(
    plan: Plan, serve: ServeRegistry | None, remote: str | None = None
) -> Iterator[Task]:
    """One task per item; each fails with what differs when it is not reproduced."""
    try:
        items = reproduce_items(plan)
    except FdpError as exc:
        failure = TaskFailure(exc)
        yield {"name": "settings", "actions": [lambda: failure], "uptodate": [False]}
        return
    rebuilt: dict[str, Outcome] = {}  # by code run: products of one run, one rebuild

    for item in items:

        def check(item: str = item) -> Any:
            if serve is None:
                return TaskFailure(FdpError("no way to serve a registry to the rebuild"))
            said: list[str] = []
            try:
                run_uuid = run_of(plan.project, item, remote)
                outcome = rebuilt.get(run_uuid) or reproduce(
                    plan.project, run_uuid, serve, remote, say=said.append
                )
            except (FdpError, OSError) as exc:
                return TaskFailure(exc)
            rebuilt[run_uuid] = outcome
            if not outcome.reproduced:
                return TaskFailure(FdpError("\n".join(outcome.lines())))
            return {REPORT: [*said, *outcome.lines()], "reproduced": outcome.summary}

        yield {
            "name": item,
            "doc": f"rebuild {item} from its recorded code run and compare it bit for bit",
            "actions": [check],
            "uptodate": [False],
            "verbosity": 2,
        }
