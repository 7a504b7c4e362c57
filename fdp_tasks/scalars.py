"""Booleans and date-times written as text, read one way wherever they come from.

A config's `public: yes`, a query string's `?public=on` and a record body's `"public": "t"`
go through the same words, so a value one part of fdp-tasks accepts is never refused by
another; the same holds for dates (`release_date`, a record's date-time fields).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

# Case-insensitive, surrounding spaces ignored: the words YAML 1.1 and DRF take as booleans.
TRUE_WORDS = frozenset({"true", "yes", "on", "y", "t", "1"})
FALSE_WORDS = frozenset({"false", "no", "off", "n", "f", "0"})


def parse_bool(value: Any) -> bool:
    """A boolean from True/False, 0/1 or one of the words; ValueError for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def positive_int(value: Any) -> int:
    """A count of at least 1 (`--jobs 4`, `jobs=4`, `jobs: 4`); ValueError for anything
    else, booleans included."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"expected a positive integer, got {value!r}")


def parse_datetime(value: Any) -> datetime:
    """An ISO 8601 date or date-time (seconds, fraction and zone optional, 'Z' for UTC) as a
    datetime, without a zone when none is written; ValueError for anything else.

    Callers choose the form they keep: the config the moment as written, the store UTC.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text[-1] in "Zz":
            text = text[:-1] + "+00:00"  # Python before 3.11 does not read 'Z'
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"expected an ISO 8601 date or date-time, got {value!r}")
