"""What a job's code is, for its up-to-date check: every file git tracks in the repository
at its commit, but the FDP configs.

A model's code is often in modules its script imports, so any tracked file may change what
a job writes. FDP configs are the exception: each job's own config is part of its working
config already, and another config only says what another job does. So a commit that only
edits one config reruns only that config's job, which is what lets a CI run with a warm
cache execute just what changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
from pathlib import Path

import yaml

from fdp_tasks.config.templates import git
from fdp_tasks.files import write_atomically

YAML_SUFFIXES = (".yaml", ".yml")
LARGEST_CONFIG = 1_000_000  # bytes: a bigger YAML file is taken for data, not a config
_config_blobs: dict[str, bool] = {}  # git blob id -> whether it holds an FDP config
# libyaml's parser when PyYAML has it: every no-op reads every tracked YAML file
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def is_fdp_config(data: object) -> bool:
    """Whether parsed YAML is a FAIR Data Pipeline config: a mapping with run_metadata, or
    with read/write/register lists; or a sweep file (`config/sweep.py`: a template and
    parameters), which only says which configs there are, so that adding a value to a sweep
    runs just the new configs."""
    return isinstance(data, dict) and (
        isinstance(data.get("run_metadata"), dict)
        or any(isinstance(data.get(k), list) for k in ("write", "register"))
        or (isinstance(data.get("template"), str) and isinstance(data.get("parameters"), dict))
    )


def _text_is_fdp_config(text: bytes) -> bool:
    if len(text) > LARGEST_CONFIG:
        return False
    try:
        return is_fdp_config(yaml.load(text.decode("utf-8"), Loader=_SafeLoader))  # noqa: S506
    except (UnicodeDecodeError, yaml.YAMLError):
        return False


def _learn_blobs(repo: Path, blobs: list[str]) -> None:
    """Read the given blobs in one `git cat-file --batch` and note which are FDP configs."""
    todo = [b for b in dict.fromkeys(blobs) if b not in _config_blobs]
    if not todo:
        return
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "--batch"],
            input="".join(f"{b}\n" for b in todo).encode(),
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return
    out, at = proc.stdout, 0
    for blob in todo:
        end = out.find(b"\n", at)
        if end < 0:
            break
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:  # "<id> missing"
            _config_blobs[blob] = False
            continue
        size = int(header[2])
        _config_blobs[blob] = _text_is_fdp_config(out[at : at + size])
        at += size + 1


def _read_known(path: Path) -> dict[str, bool]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {k: v for k, v in document.items() if isinstance(v, bool)}


def code_digest(repo: Path, known: Path | None = None, remember: bool = True) -> str | None:
    """A digest of the files git tracks at HEAD in `repo` (their paths, modes and blob ids),
    FDP configs left out; None outside a git repository or before its first commit.

    `known`: a JSON file keeping which YAML blobs are FDP configs, so that a config of ten
    thousand items is parsed once rather than by every up-to-date check (a blob id names
    its bytes: what is kept never goes stale); `remember`: whether what was learnt may be
    written there (commands that only look leave it)."""
    listing = git(repo, "ls-tree", "-r", "-z", "--full-tree", "HEAD")
    if listing is None:
        return None
    entries = []
    yaml_blobs: dict[str, str] = {}
    for entry in listing.split("\0"):
        meta, _, path = entry.partition("\t")
        fields = meta.split()
        if len(fields) != 3:
            continue
        entries.append((path, fields[0], fields[2]))
        if fields[1] == "blob" and path.lower().endswith(YAML_SUFFIXES):
            yaml_blobs[path] = fields[2]
    blobs = list(dict.fromkeys(yaml_blobs.values()))
    kept_before = _read_known(known) if known is not None and yaml_blobs else {}
    for blob in blobs:
        if blob not in _config_blobs and blob in kept_before:
            _config_blobs[blob] = kept_before[blob]
    _learn_blobs(repo, blobs)
    learnt = {b: _config_blobs[b] for b in blobs if b in _config_blobs}
    if known is not None and remember and learnt != kept_before:
        with contextlib.suppress(OSError):  # not kept: only a slower next check
            write_atomically(known, [json.dumps(learnt, sort_keys=True).encode("utf-8")])
    kept = "".join(
        f"{mode} {blob}\t{path}\0"
        for path, mode, blob in entries
        if not (path in yaml_blobs and _config_blobs.get(blob, False))
    )
    return hashlib.sha1(kept.encode("utf-8", "surrogateescape"), usedforsecurity=False).hexdigest()
