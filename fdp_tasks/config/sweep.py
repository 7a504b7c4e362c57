"""Parameter sweeps: a template FDP config and lists of values, expanded into one plain FDP
config per combination of values (`fdp sweep expand`, or by the graph when a sweep file
is among the configs it is given).

    # sweep.yaml
    template: config.yaml         # where ${{SWEEP.beta}} and ${{SWEEP.seed}} go
    parameters:
      beta: [0.1, 0.2]
      seed: [1, 2, 3]
    output: runs/                 # default: sweep/ (the sweep file's name)

The configs are plain FDP configs, with the values written in where the template says, so
each is valid for the reference CLI too (`fair run runs/beta-0.1_seed-1.yaml`); each is
checked as any config is before any is written. The template is text, not YAML to rewrite:
its comments, order and quoting stay as written. Configs of an earlier expansion that the
sweep no longer makes are removed; unchanged ones are left as they are, so their jobs stay
up to date.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from fdp_tasks.config.load import load_config
from fdp_tasks.config.validate import document_problems, format_problems
from fdp_tasks.errors import ConfigError
from fdp_tasks.files import replace_text

SCHEMA = "sweep.schema.json"
PLACEHOLDER_RE = re.compile(r"\$\{\{\s*SWEEP\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
MARK = "# fdp sweep:"  # the first line of every config an expansion writes
_SWEEP_KEY_RE = re.compile(r"^template\s*:", re.MULTILINE)


@dataclass(frozen=True)
class Sweep:
    """A sweep file, checked: its template's text, the parameters and where configs go."""

    path: Path
    template: Path
    template_text: str
    parameters: dict[str, list[Any]]
    output: Path

    def points(self) -> Iterator[dict[str, Any]]:
        """Every combination of values, the first parameter's changing slowest."""
        names = list(self.parameters)
        for values in itertools.product(*self.parameters.values()):
            yield dict(zip(names, values, strict=True))


def is_sweep_file(path: Path) -> bool:
    """Whether a YAML file is a sweep file (a top-level `template:`, which no FDP config
    has) rather than a config: a look at its text, without parsing it."""
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(65536)
    except (OSError, UnicodeDecodeError):
        return False
    return _SWEEP_KEY_RE.search(head) is not None


def value_text(value: Any) -> str:
    """A value as it is written into a config: YAML's words for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def point_name(point: dict[str, Any]) -> str:
    """`beta-0.1_seed-1`: the file name (without .yaml) of one combination's config."""
    return "_".join(f"{name}-{value_text(value)}" for name, value in point.items())


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file and its template; ConfigError, one line per problem."""
    path = Path(path)
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        raise ConfigError(f"{where}: YAML syntax error: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: top level: expected a mapping with template and parameters")
    problems = document_problems(SCHEMA, data)
    if problems:
        raise ConfigError(format_problems(file, problems))
    template = (path.parent / data["template"]).resolve()
    if not template.is_file():
        raise ConfigError(f"{file}: template: {data['template']}: no such file")
    text = template.read_text(encoding="utf-8")
    parameters: dict[str, list[Any]] = data["parameters"]
    used = set(PLACEHOLDER_RE.findall(text))
    lines = [
        f"{file}: template: {data['template']} uses ${{{{SWEEP.{name}}}}}, which is not a "
        f"parameter (parameters: {', '.join(parameters)})"
        for name in sorted(used - set(parameters))
    ]
    lines += [
        f"{file}: parameters.{name}: not used in {data['template']} (write "
        f"${{{{SWEEP.{name}}}}} where its value goes, so that each run is its own)"
        for name in parameters
        if name not in used
    ]
    if lines:
        raise ConfigError(lines)
    output = path.parent / (data.get("output") or path.stem)
    return Sweep(path, template, text, parameters, output.resolve())


def render(sweep: Sweep, point: dict[str, Any]) -> str:
    """The config of one combination: the template with the values written in."""
    values = ", ".join(f"{name}={value_text(value)}" for name, value in point.items())
    head = (
        f"{MARK} made from {sweep.template.name} by {sweep.path.name} with {values}; "
        "edit those, not this file\n"
    )
    return head + PLACEHOLDER_RE.sub(lambda m: value_text(point[m.group(1)]), sweep.template_text)


def expand(path: str | Path) -> list[Path]:
    """Write the configs of a sweep (checked first, all of them); the configs, in order.
    A config whose text is unchanged is not touched, and configs an earlier expansion
    wrote that this one does not make are removed."""
    sweep = load_sweep(path)
    texts: dict[Path, str] = {}
    for point in sweep.points():
        target = sweep.output / f"{point_name(point)}.yaml"
        if target in texts:  # pragma: no cover - names of unique values never clash
            raise ConfigError(f"{sweep.path}: two combinations both make {target.name}")
        texts[target] = render(sweep, point)
    # an unchanged config was checked when it was written (and is again when it is loaded)
    changed = {target: text for target, text in texts.items() if _read(target) != text}
    _check(sweep, changed)
    sweep.output.mkdir(parents=True, exist_ok=True)
    for target, text in changed.items():
        _write(target, text)
    for old in sweep.output.glob("*.yaml"):
        if old not in texts and _read(old).startswith(MARK):
            old.unlink(missing_ok=True)
    return list(texts)


def _write(path: Path, text: str) -> None:
    """A config whole or not at all (a temporary file renamed into place)."""

    def write(fh: IO[str]) -> None:
        fh.write(text)

    replace_text(path, write, 0o644)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _check(sweep: Sweep, texts: dict[Path, str]) -> None:
    """Every config checked as `fdp validate` checks one, before any is written; the
    problems name the config each would be."""
    if not texts:
        return
    problems: list[str] = []
    scratch = Path(tempfile.mkdtemp(prefix=".sweep-", dir=sweep.path.parent))
    try:
        for target, text in texts.items():
            trial = scratch / target.name
            trial.write_text(text, encoding="utf-8")
            try:
                load_config(trial, log_warnings=False)
            except ConfigError as exc:
                shown = os.path.relpath(target)
                problems += [line.replace(str(trial), shown) for line in str(exc).splitlines()]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if problems:
        raise ConfigError(problems)
