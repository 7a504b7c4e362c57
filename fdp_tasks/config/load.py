"""Read a config.yaml, turn deprecated and loosely typed forms into the modern form, validate.

Real configs still hold forms older reference releases accepted; they are rewritten here (with a
deprecation warning naming the modern form) so every later stage sees one shape only.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from fdp_tasks.config.validate import (
    LEGACY_PLACEHOLDER_RE,
    SCRIPT_PATH,
    KeyPath,
    Problem,
    format_path,
    format_problems,
    normalise_datetime,
    placeholder_hint,
    placeholder_typo,
    placeholder_warnings,
)
from fdp_tasks.config.validate import validate_problems as _validate_problems
from fdp_tasks.errors import ConfigError
from fdp_tasks.files import write_atomically
from fdp_tasks.resources import read_schema
from fdp_tasks.scalars import parse_bool

log = logging.getLogger(__name__)


@dataclass
class Config:
    """A loaded, normalised and valid user config."""

    path: Path
    data: dict
    warnings: list[str] = field(default_factory=list)
    file: str = ""  # the path as the user gave it, for messages; defaults to str(path)
    # Maps a key path of the normalised data back to the one the user wrote.
    key_paths: Callable[[KeyPath], KeyPath] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path).absolute()
        if not self.file:
            self.file = str(self.path)

    def original(self, path: KeyPath) -> KeyPath:
        """The key path the user wrote for a path of the normalised data (for messages)."""
        return self.key_paths(path) if self.key_paths else path

    @property
    def dir(self) -> Path:
        """The directory holding the config file (relative paths in it start here)."""
        return self.path.parent


# libyaml's parser when PyYAML was built with it: an order of magnitude faster on big configs.
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[str] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
            if key_node.value in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                )
            seen.add(key_node.value)
    loader.flatten_mapping(node)
    pairs = loader.construct_pairs(node, deep=deep)
    try:
        return dict(pairs)
    except TypeError:
        # `{{NAME}}` is a mapping used as a key: a YAML error with its place, not a crash.
        key = next((k for k, _ in node.value if not isinstance(k, yaml.ScalarNode)), node)
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", node.start_mark, "found unhashable key", key.start_mark
        ) from None


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(path: Path, file: str) -> Any:
    """Parse the YAML file; raise ConfigError with file:line:column for syntax errors."""
    if not path.exists():
        raise ConfigError(f"{file}: no such file")
    if path.is_dir():
        raise ConfigError(f"{file}: is a directory, expected a config.yaml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        hints = _placeholder_syntax_problems(text, file)
        if hints:
            raise ConfigError(hints) from None
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else file
        what = exc.problem or exc.context or "invalid YAML"
        if not isinstance(exc, yaml.constructor.ConstructorError):
            what = f"YAML syntax error: {what}"
        raise ConfigError(f"{where}: {what}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: YAML syntax error: {exc}") from None


def _value_scalars(node: yaml.Node, path: KeyPath = ()) -> Iterator[tuple[KeyPath, yaml.Node]]:
    """Every scalar value of a composed YAML document, with its key path."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            yield from _value_scalars(value, path + (name,))
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            yield from _value_scalars(value, path + (i,))
    elif isinstance(node, yaml.ScalarNode):
        yield path, node


def _placeholder_syntax_problems(text: str, file: str) -> list[str]:
    """Problem lines for placeholders that break the YAML (`root: {CONFIG_DIR}/a` reads as a
    mapping followed by text, `root: {{CONFIG_DIR}}` as a mapping for a key): each with its
    line, key path and the ${{...}} meant. Empty when the YAML is broken for another reason
    too (a duplicate key, say)."""
    patched, spots, pos = [], [], 0
    size = 0
    for match in LEGACY_PLACEHOLDER_RE.finditer(text):
        before = text[pos : match.start()]
        patched.append(before)
        size += len(before)
        line = text.count("\n", 0, match.start())
        column = match.start() - (text.rfind("\n", 0, match.start()) + 1)
        written, name = placeholder_typo(match)
        replacement = f"${{{{{name}}}}}"
        spots.append((size, size + len(replacement), written, name, line, column))
        patched.append(replacement)
        size += len(replacement)
        pos = match.end()
    if not spots:
        return []
    patched.append(text[pos:])
    try:
        root = yaml.compose("".join(patched), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
        yaml.load("".join(patched), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError:
        return []
    out = []
    for path, node in _value_scalars(root) if root is not None else ():
        if path == SCRIPT_PATH:
            continue  # braces in a script may be the shell's own
        for index, end, written, name, line, column in spots:
            if node.start_mark.index <= index < node.end_mark.index:
                if index != node.start_mark.index or written.startswith("$"):
                    what = f"{written} is not a template variable"
                else:
                    start = "a mapping" if end == node.end_mark.index else "the start of a mapping"
                    what = f"YAML reads {written} as {start}, not a template variable"
                out.append(
                    f"{file}:{line + 1}:{column + 1}: {format_path(path)}: "
                    f"{what}; {placeholder_hint([name])}"
                )
    return out


def _plain(value: Any) -> Any:
    """Dates become ISO strings and keys strings, so the data is JSON-like."""
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return value


def loose_bool(value: Any) -> Any:
    """A boolean written as a word ('yes', 'off', ...) becomes one, as the registry reads
    it; anything else is left for the schema to report."""
    try:
        return parse_bool(value)
    except ValueError:
        return value


class _Normaliser:
    """Rewrites one config in place, collecting warnings, problems and key-path renames."""

    def __init__(self, file: str):
        self.file = file
        self.warnings: list[str] = []
        self.problems: list[Problem] = []
        # (path in the normalised data, path the user wrote): used to report problems where
        # the user can find them.
        self.renames: list[tuple[KeyPath, KeyPath]] = []
        self.default_ns: str | None = None

    def warn(self, old: KeyPath, new: KeyPath, extra: str = "") -> None:
        self.warnings.append(
            f"{self.file}: {format_path(old)} is deprecated, use {format_path(new)} instead" + extra
        )

    def move(self, item: dict, path: KeyPath, old_key: str, new_keys: tuple[str, ...]) -> None:
        """Move item[old_key] to item[new_keys...], refusing to overwrite a different value."""
        if old_key not in item:
            return
        target = item
        for key in new_keys[:-1]:
            target = target.setdefault(key, {}) if isinstance(target, dict) else None
            if not isinstance(target, dict):
                return  # the schema reports the non-mapping
        value = item.pop(old_key)
        if new_keys[-1] in target and target[new_keys[-1]] != value:
            self.problems.append(
                (
                    path + (old_key,),
                    f"conflicts with {format_path(path + new_keys)}; "
                    f"remove the deprecated {old_key}",
                )
            )
            return
        target[new_keys[-1]] = value
        self.warn(path + (old_key,), path + new_keys)
        self.renames.append((path + new_keys, path + (old_key,)))

    def run(self, data: dict) -> dict:
        for key in ("run_metadata", "read", "write", "register"):
            if key in data and data[key] is None:
                del data[key]  # an empty section means nothing to do
        meta = data.get("run_metadata")
        if isinstance(meta, dict):
            self.move(meta, ("run_metadata",), "local_data_registry", ("local_data_registry_url",))
            if "public" in meta:
                meta["public"] = loose_bool(meta["public"])
        for section in ("read", "write"):
            items = data.get(section)
            if isinstance(items, list):
                for i, item in enumerate(items):
                    if isinstance(item, dict):
                        self.move(item, (section, i), "version", ("use", "version"))
                        if section == "write" and "public" in item:
                            item["public"] = loose_bool(item["public"])
        if isinstance(meta, dict) and isinstance(meta.get("default_output_namespace"), str):
            self.default_ns = meta["default_output_namespace"]
        if isinstance(data.get("register"), list):
            data["register"] = self.register(data["register"])
        return data

    def register(self, items: list) -> list:
        out: list = []
        for i, item in enumerate(items):
            path = ("register", i)
            if not (
                isinstance(item, dict) and ("external_object" in item or "data_product" in item)
            ):
                self.renames.append((("register", len(out)), path))
                out.append(item)
                continue
            start = len(self.renames)
            if "namespace" in item and not isinstance(item["namespace"], dict):
                self.move(item, path, "namespace", ("namespace_name",))
            moved = self.renames[start:]
            del self.renames[start:]
            if "primary" in item:
                item["primary"] = loose_bool(item["primary"])
            if isinstance(item.get("release_date"), str) and "${{" not in item["release_date"]:
                fixed = normalise_datetime(item["release_date"])
                if fixed is None:
                    self.problems.append(
                        (
                            path + ("release_date",),
                            f"{item['release_date']!r} is not a date "
                            "(ISO 8601, e.g. 2021-09-20T12:00:00)",
                        )
                    )
                else:
                    item["release_date"] = fixed
            if isinstance(item.get("authors"), str):
                item["authors"] = [a.strip() for a in item["authors"].splitlines() if a.strip()]
            inline = {
                k: item.pop(k) for k in ("namespace_full_name", "namespace_website") if k in item
            }
            if inline:
                use = given if isinstance(given := item.get("use"), dict) else {}
                name = item.get("namespace_name") or use.get("namespace") or self.default_ns
                if not name:
                    self.problems.append(
                        (
                            path + (next(iter(inline)),),
                            "needs namespace_name (or a default_output_namespace) "
                            "to name the namespace",
                        )
                    )
                else:
                    ns: dict[str, Any] = {"namespace": name}
                    new = ("register", len(out))
                    if "namespace_full_name" in inline:
                        ns["full_name"] = inline["namespace_full_name"]
                        self.renames.append((new + ("full_name",), path + ("namespace_full_name",)))
                    if "namespace_website" in inline:
                        ns["website"] = inline["namespace_website"]
                        self.renames.append((new + ("website",), path + ("namespace_website",)))
                    self.renames.append((new, path))
                    out.append(ns)
                    self.warnings.append(
                        f"{self.file}: {format_path(path)}: "
                        f"{' and '.join(inline)} {'are' if len(inline) > 1 else 'is'} deprecated; "
                        "use a separate register item "
                        f"'- namespace: {name}' with full_name and website"
                    )
            here = ("register", len(out))
            self.renames += [(here + new[2:], old) for new, old in moved]
            self.renames.append((here, path))
            out.append(item)
        return out

    def original(self, path: KeyPath) -> KeyPath:
        """The key path the user wrote for a path in the normalised data."""
        best: tuple[KeyPath, KeyPath] | None = None
        for new, old in self.renames:
            if path[: len(new)] == new and (best is None or len(new) > len(best[0])):
                best = (new, old)
        if best is None:
            return path
        return best[1] + path[len(best[0]) :]


def normalise(data: dict, file: str) -> tuple[dict, list[str], list[Problem], _Normaliser]:
    """Normalised copy of data, deprecation warnings, problems found, and the path mapper."""
    norm = _Normaliser(file)
    out = norm.run(_plain(copy.deepcopy(data)))
    return out, norm.warnings, norm.problems, norm


def load_config(
    path: str | Path,
    *,
    log_warnings: bool = True,
    cache_dir: Path | None = None,
    write_cache: bool = True,
) -> Config:
    """Read, normalise and validate a config; raise ConfigError listing every problem.

    Deprecation warnings are kept on Config.warnings and, unless log_warnings is False,
    also logged (callers that print them themselves pass False). `cache_dir`: where the
    outcome of validating a valid config is kept (see `ValidatedCache`), so that a config
    whose bytes did not change is not parsed and validated again; `write_cache`: whether
    a new outcome may be kept there (commands that only look pass False).
    """
    file = str(path)
    abs_path = Path(path).expanduser().absolute()
    cache = ValidatedCache(cache_dir, file, abs_path) if cache_dir is not None else None
    if cache is not None:
        known = cache.load()
        if known is not None:
            if log_warnings:
                for warning in known.warnings:
                    log.warning("%s", warning)
            return known
    cfg = _load_config(abs_path, file)
    if log_warnings:
        for warning in cfg.warnings:
            log.warning("%s", warning)
    if cache is not None and write_cache:
        cache.save(cfg)
    return cfg


def _load_config(abs_path: Path, file: str) -> Config:
    raw = read_yaml(abs_path, file)
    if raw is None:
        raise ConfigError(
            f"{file}: the file is empty (expected a mapping with run_metadata, read, write, "
            "register)"
        )
    if not isinstance(raw, dict):
        kind = "a list" if isinstance(raw, list) else f"{type(raw).__name__} {raw!r}"
        raise ConfigError(
            f"{file}: top level: expected a mapping with run_metadata, read, write, register; "
            f"got {kind}"
        )
    data, warnings, problems, norm = normalise(raw, file)
    warnings += [f"{file}: {format_path(p)}: {m}" for p, m in placeholder_warnings(data)]
    problems = problems + [(norm.original(p), m) for p, m in _validate_problems(data)]
    if problems:
        raise ConfigError(format_problems(file, problems))
    return Config(path=abs_path, data=data, warnings=warnings, file=file, key_paths=norm.original)


@lru_cache(maxsize=1)
def _validator_digest() -> str:
    """What decides a config's validity besides its bytes: the code that reads and checks
    it, and the schema. A cached outcome made by other code or another schema is stale."""
    digest = hashlib.sha1(usedforsecurity=False)
    package = Path(__file__).resolve().parent.parent
    for rel in _VALIDATING_MODULES:
        with contextlib.suppress(OSError):
            digest.update((package / rel).read_bytes())
    digest.update(json.dumps(read_schema(CONFIG_SCHEMA), sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


CONFIG_SCHEMA = "config.schema.json"
# The modules whose code decides what a config normalises to and whether it is valid.
_VALIDATING_MODULES = (
    "config/load.py",
    "config/validate.py",
    "config/templates.py",
    "names.py",
    "versions.py",
    "scalars.py",
    "languages.py",
)
_VALIDATED_FORMAT = 1
_KEEP_VALIDATED = 4  # outcomes kept per folder: `doit` and `fdp` may name a config differently


class ValidatedCache:
    """The outcome of loading a valid config (its normalised data, warnings and key-path
    renames), kept as JSON under a name made of the config's bytes, the name it was given
    by (which messages quote) and `_validator_digest()`: any change to either is a miss.
    Configs that do not load are never kept, so their problems are always reported."""

    def __init__(self, folder: Path, file: str, path: Path):
        self.folder = folder
        self.file = file
        self.path = path
        self._entry: Path | None = None

    def _entry_path(self) -> Path | None:
        if self._entry is None:
            try:
                body = self.path.read_bytes()
            except OSError:
                return None
            digest = hashlib.sha1(usedforsecurity=False)
            for part in (_validator_digest(), self.file, str(self.path)):
                digest.update(part.encode("utf-8") + b"\0")
            digest.update(body)
            self._entry = self.folder / f"{digest.hexdigest()}.json"
        return self._entry

    def load(self) -> Config | None:
        entry = self._entry_path()
        if entry is None or not entry.is_file():
            return None
        try:
            document = json.loads(entry.read_text(encoding="utf-8"))
            if document.get("format") != _VALIDATED_FORMAT:
                return None
            norm = _Normaliser(self.file)
            norm.renames = [(tuple(new), tuple(old)) for new, old in document["renames"]]
            return Config(
                path=self.path,
                data=document["data"],
                warnings=list(document["warnings"]),
                file=self.file,
                key_paths=norm.original,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, cfg: Config) -> None:
        """Keep the outcome, if its data survives JSON unchanged (YAML dates, say, would
        not); the oldest outcomes beyond the few kept are dropped."""
        entry = self._entry_path()
        renames = getattr(getattr(cfg.key_paths, "__self__", None), "renames", None)
        if entry is None or renames is None:
            return
        try:
            document = {
                "format": _VALIDATED_FORMAT,
                "data": cfg.data,
                "warnings": cfg.warnings,
                "renames": renames,
            }
            text = json.dumps(document, separators=(",", ":"))
            if json.loads(text)["data"] != cfg.data:
                return
            write_atomically(entry, [text.encode("utf-8")])
            kept = sorted(
                self.folder.glob("*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True
            )
            for old in kept[_KEEP_VALIDATED:]:
                old.unlink(missing_ok=True)
        except (OSError, TypeError, ValueError):
            return  # a cache that cannot be written is only a slower next load
