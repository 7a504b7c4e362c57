"""A remote's data products in one namespace, kept between commands and brought up to date
from the newest records alone.

A pull that finds nothing newer, and a push of what the remote holds already, both need the
remote's listing of a namespace: the name and version of every data product in it. Listing
it all costs a page per thousand products however little changed, as a fetch that sent the
whole history would. Listings come newest first, and the fields a listing keeps (`id`,
`name`, `version`, `object`, `namespace`) never change once a data product is made, so the
listing is kept in FDP_HOME, as DVC keeps an index of a remote, and a later command asks
for the newest few records only. When they lead back to the newest kept record, unchanged,
and the listing's `count` is the kept count plus the records before it, the remote holds
exactly those records and the kept ones. Anything else (a record removed or replaced, a
registry that gives no count, a damaged file) lists the namespace again from the start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

from fdp_tasks.files import write_atomically
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record
from fdp_tasks.store.cache import CachedRegistry, iter_listing

log = logging.getLogger(__name__)

FORMAT = 1
# Records asked for first: a pull after a colleague's few new products gets them in one page.
FIRST_PAGE = 50
ROW = queries.LISTED_FIELDS  # a kept record is a row of these, in this order


def kept_file(home: Path, api_url: str, namespace_id: int) -> Path:
    """Where the listing of one namespace of one remote is kept."""
    key = hashlib.sha1(f"{api_url} {namespace_id}".encode(), usedforsecurity=False).hexdigest()
    return home / "listings" / f"{key}.json"


def product_listing(
    registry: Any, namespace_id: int, kept: Path, save: bool = True
) -> list[Record]:
    """The remote's data products in a namespace as `queries.listed` records, newest first:
    from the kept listing and the records newer than it where that is the remote's listing,
    else listed whole (and kept for next time, unless `save` is false: a command that only
    looks). `kept`: where it is kept (`kept_file`); only registries that give a listing's
    count (over HTTP) keep one."""
    inner = registry.inner if isinstance(registry, CachedRegistry) else registry
    filters = {"namespace": namespace_id}
    listing = getattr(inner, "listing", None)
    if listing is None:
        return [queries.listed(r) for r in iter_listing(registry, "data_product", filters)]
    url = str(getattr(inner, "api_url", ""))
    before = _load(kept, url, namespace_id)
    if before is not None:
        head = listing("data_product", filters, first_page=FIRST_PAGE)
        rows = _brought_up_to_date(before, head.count, head.records)
        if rows is not None:
            if save and len(rows) != len(before):
                _save(kept, url, namespace_id, rows)
            return rows
        log.debug("the kept listing of namespace %s on %s is out of date", namespace_id, url)
    whole = listing("data_product", filters)
    rows = [queries.listed(r) for r in whole.records]
    if save and whole.count == len(rows):  # only a listing the registry vouches for is kept
        _save(kept, url, namespace_id, rows)
    return rows


def _brought_up_to_date(
    before: list[Record], count: int | None, records: Generator[Record, None, None]
) -> list[Record] | None:
    """The kept listing with the records newer than its newest, if that is the remote's
    whole listing (see the module's docstring), else None."""
    if count is None:
        records.close()
        return None
    newest = before[0] if before else None
    new: list[Record] = []
    with contextlib.closing(records):  # a listing given up early asks for no more pages
        for record in records:
            row = queries.listed(record)
            if newest is not None and row["id"] <= newest["id"]:
                same = row == newest and len(new) + len(before) == count
                return new + before if same else None
            new.append(row)
            if len(new) > count:
                return None
    return new if newest is None and len(new) == count else None


def _load(path: Path, url: str, namespace_id: int) -> list[Record] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if (
            document.get("format") != FORMAT
            or document.get("url") != url
            or document.get("namespace") != namespace_id
        ):
            return None
        rows = [dict(zip(ROW, row, strict=True)) for row in document["rows"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None  # missing or damaged: listed again
    ids = [row["id"] for row in rows]
    if not all(isinstance(i, int) for i in ids) or ids != sorted(ids, reverse=True):
        return None
    return rows


def _save(path: Path, url: str, namespace_id: int, rows: list[Record]) -> None:
    """Written whole or not at all; a listing that cannot be kept is only not kept."""
    document = {
        "format": FORMAT,
        "url": url,
        "namespace": namespace_id,
        "rows": [[row[key] for key in ROW] for row in rows],
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(path, [text])
        os.chmod(path, 0o600)
    except OSError as exc:
        log.debug("could not keep the listing in %s: %s", path, exc)
