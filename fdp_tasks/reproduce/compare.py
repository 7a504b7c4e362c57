"""Saying how two versions of an output differ, in one line a person can act on."""

from __future__ import annotations

from itertools import zip_longest

# Shown of a differing line at most, so that one long CSV row does not flood a CI log.
SHOWN = 120


def _shown(line: str | None) -> str:
    if line is None:
        return "(end of file)"
    return repr(line if len(line) <= SHOWN else line[:SHOWN] + "...")


def first_difference(recorded: bytes, new: bytes) -> str | None:
    """`line 3: recorded '...', new '...'` for text (CSV, YAML, JSON, ...); None for bytes
    that are not UTF-8 text, or when they do not differ."""
    try:
        old_text, new_text = recorded.decode("utf-8"), new.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\0" in old_text or "\0" in new_text:
        return None
    pairs = zip_longest(old_text.splitlines(), new_text.splitlines())
    for number, (old, now) in enumerate(pairs, start=1):
        if old != now:
            return f"line {number}: recorded {_shown(old)}, new {_shown(now)}"
    if old_text != new_text:  # only line endings or a final newline differ
        return "the same lines, with other line endings or final newline"
    return None
