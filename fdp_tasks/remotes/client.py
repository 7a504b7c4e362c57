"""HttpRegistry: the `Registry` protocol over the REST API, for our server and the reference one.

Records come back exactly like the store's (int ids, references as ids), so sync code moves
records between registries by translating ids; URLs exist only on the wire. The client uses
one keep-alive session, follows cursor pagination with a large `page_size` (one request per
page, never one per record, the next asked for while the caller reads one), and retries what
is safe to retry. It relies on nothing the
reference registry lacks: trailing slashes always, FK filters as numeric ids, only the
`cursor` and `page_size` extras, and never reverse-relation filters (the reference ignores
them silently).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests

from fdp_tasks import transfer
from fdp_tasks.errors import HashMismatch
from fdp_tasks.storage.base import (
    BUNDLES_HEADER,
    NoFileStorage,  # noqa: F401 - sync catches it from here
)
from fdp_tasks.storage.upstream import UpstreamDataStorage, api_root, origin
from fdp_tasks.store.base import (
    InvalidRecord,
    NotFound,
    Record,
    RegistryError,
    UniqueViolation,
    create_or_existing,
)
from fdp_tasks.store.schema import RecordType, RegistrySchema, load_schema

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
# Records asked for in one listing by id: a URL of a few kilobytes, one page of answers.
IDS_PER_REQUEST = 200
# Records created by one POST of a list (our server takes up to 500): a body of some 100 KB.
CREATES_PER_REQUEST = 200


# `http://h:8000`, `http://h:8000/api` and `http://h:8000/api/` all become the last.
normalise_api_url = api_root


@dataclass
class Listing:
    """A listing's records (an iterator that asks for pages as it is read) and its `count`."""

    count: int | None
    records: Generator[Record, None, None]


def _cursor(next_url: str) -> dict[str, str]:
    """The query of a listing's `next` link, to follow on the address we use, whatever host
    the server names."""
    return dict(parse_qsl(urlsplit(next_url).query, keep_blank_values=True))


def id_from_url(url: str) -> int:
    """The record id at the end of a record URL's path ('.../api/object/12/' -> 12)."""
    if isinstance(url, str) and "?" not in url and "#" not in url:
        tail = url[:-1] if url.endswith("/") else url  # a listing holds thousands of these
        head, _, last = tail.rpartition("/")
        if head and last.isdigit() and last.isascii():
            return int(last)
    parts = [p for p in urlsplit(str(url)).path.split("/") if p]
    if not parts or not parts[-1].isdigit():
        raise InvalidRecord(f"not a registry record URL: {url!r}")
    return int(parts[-1])


def _ref(value: Any) -> int | None:
    """An id from an int, a numeric string or a record URL."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return id_from_url(value)


def _detail(resp: requests.Response) -> str:
    """The server's message, short, from a JSON error body or the start of the text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300]
    if isinstance(body, dict) and set(body) == {"detail"}:
        return str(body["detail"])
    return str(body)[:500]


class HttpRegistry:
    """A registry reached over HTTP, with the same record shape as `Store`."""

    def __init__(
        self,
        api_url: str,
        token: str | None = None,
        timeout: float | None = None,
        retries: int = 5,
        page_size: int = 1000,
        schema: RegistrySchema | None = None,
        backoff: float = 0.2,
        label: str | None = None,
        breaker: transfer.CircuitBreaker | None = None,
    ):
        """`label` names the registry in messages (`remote origin`); `breaker` is shared
        with other clients of the same remote, if given."""
        self.api_url = normalise_api_url(api_url)
        self.schema = schema or load_schema()
        self.timeout = transfer.http_timeout() if timeout is None else timeout
        self.retries = max(1, retries)
        self.page_size = page_size
        self.backoff = backoff
        self.policy = transfer.RetryPolicy(attempts=self.retries, backoff=backoff)
        # one per remote, shared with its file storage: a dead remote fails everything fast
        self.breaker = breaker or transfer.CircuitBreaker(
            f"{label or 'the registry'} ({self.api_url})"
        )
        self._token = token
        self.session = transfer.new_session({"Accept": f"application/json; version={API_VERSION}"})
        self._blobs: UpstreamDataStorage | None = None
        # whether the registry said it sends small files in bundles (our server does, in a
        # header of its answers): its storage asks for them only then
        self.sends_bundles = False
        # Records created inside open transaction() blocks, per thread: what an undo deletes.
        self._undo = threading.local()
        self._origin = origin(self.api_url)
        # whether the registry lists records by id (`?id=1,2,3`): unknown until asked
        self.lists_by_id: bool | None = None
        # whether it creates records from a POST of a list: unknown until asked
        self.creates_in_batches: bool | None = None

    def __repr__(self) -> str:
        return f"HttpRegistry({self.api_url!r})"

    def __enter__(self) -> HttpRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._blobs is not None:
            self._blobs.close()
        self.session.close()

    # ------------------------------------------------------------ plumbing
    def url_for(self, type_name: str, record_id: int | None = None) -> str:
        """The URL of a type's list, or of one record, on this registry."""
        if record_id is None:
            return f"{self.api_url}{type_name}/"
        return f"{self.api_url}{type_name}/{int(record_id)}/"

    def _auth(self, url: str) -> dict[str, str]:
        # The token goes only to this registry, never to presigned or third-party URLs.
        if self._token and origin(url) == self._origin:
            return {"Authorization": f"token {self._token}"}
        return {}

    def request(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...] = (200,),
        expected: tuple[int, ...] = (),
        body_factory: Callable[[], Any] | None = None,
        idempotent: bool | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP call under the retry policy of `transfer.send`; a status in `ok` or
        `expected` is returned, others raise.

        A request that may have reached the server is sent again only when it is safe to
        run twice: idempotent methods, or a POST whose caller says so (`idempotent`). A
        status in `expected` is never retried. Once the remote stopped answering (the
        circuit breaker this client shares with its file storage), every call fails at once.
        """
        path = urlsplit(url).path
        headers = {**self._auth(url), **kwargs.pop("headers", {})}
        resp = transfer.send_to(
            f"the registry at {origin(url)}",
            RegistryError,
            self.session,
            method,
            url,
            policy=self.policy,
            breaker=self.breaker,
            retry_safe=idempotent,
            expected=expected,
            body=body_factory,
            headers=headers,
            timeout=self.timeout,
            **kwargs,
        )
        if resp.headers.get(BUNDLES_HEADER) == "1":
            self.sends_bundles = True
        if resp.status_code in ok or resp.status_code in expected:
            return resp
        self._raise(method, path, resp)

    def _raise(self, method: str, path: str, resp: requests.Response) -> NoReturn:
        status = resp.status_code
        where = f"{method} {path}"
        if status in (401, 403) and not path.startswith(urlsplit(self.api_url).path):
            raise RegistryError(f"{where}: refused ({status}): {_detail(resp)}")
        if status in (401, 403):
            raise RegistryError(
                f"{where}: the registry refused the request ({status}): the token is missing "
                f"or invalid ({_detail(resp)})"
            )
        if status == 404:
            raise NotFound("resource", f"{where} (404: {_detail(resp)})")
        if status == 409:
            raise UniqueViolation(path, (), None)
        if 400 <= status < 500:
            raise InvalidRecord(f"{where}: {status} {_detail(resp)}")
        raise RegistryError(f"{where}: server error {status}: {_detail(resp)}")

    def _get_json(self, url: str, params: Any = None) -> Any:
        return self.request("GET", url, params=params).json()

    # ----------------------------------------------------------- records
    def _type(self, type_name: str) -> RecordType:
        if type_name not in self.schema:
            raise NotFound("type", type_name)
        return self.schema[type_name]

    def from_wire(self, rtype: RecordType, body: dict[str, Any]) -> Record:
        """A wire record as the store shows it: `id` from `url`, references as ids."""
        rec: Record = {"id": id_from_url(body["url"])}
        for key, value in body.items():
            if key == "url":
                continue
            f = rtype.fields.get(key)
            if f is not None and f.is_fk or key == "updated_by":
                rec[key] = _ref(value)
            elif f is not None and f.is_m2m or key in rtype.reverse:
                if value is None:
                    rec[key] = []
                elif isinstance(value, list):
                    rec[key] = [_ref(v) for v in value]
                else:
                    rec[key] = [_ref(value)]
            else:
                rec[key] = value
        for f in rtype.fields.values():
            rec.setdefault(f.name, [] if f.is_m2m else None)
        for rname in rtype.reverse:
            rec.setdefault(rname, [])
        return rec

    def to_wire(self, rtype: RecordType, data: dict[str, Any]) -> dict[str, Any]:
        """Outgoing data: ids become absolute URLs of this registry."""
        out: dict[str, Any] = {}
        for key, value in data.items():
            f = rtype.fields.get(key)
            if f is None:
                continue
            if f.is_fk:
                out[key] = None if value is None else self._ref_url(f.target, value)
            elif f.is_m2m:
                out[key] = [self._ref_url(f.target, v) for v in value or []]
            elif isinstance(value, (datetime, date)):
                out[key] = value.isoformat()
            else:
                out[key] = value
        return out

    def _ref_url(self, type_name: str, value: Any) -> str:
        if isinstance(value, str) and not value.strip().isdigit():
            return value  # already a URL
        return self.url_for(type_name, _ref(value))

    def _query(self, rtype: RecordType, filters: dict[str, Any]) -> dict[str, str]:
        params: dict[str, str] = {}
        for key, value in filters.items():
            if value is None:
                continue  # checked locally: the reference cannot filter on null
            f = rtype.fields.get(key)
            if f is not None and f.is_relation:
                params[key] = str(_ref(value))
            elif isinstance(value, bool):
                params[key] = "true" if value else "false"
            elif isinstance(value, (datetime, date)):
                params[key] = value.isoformat()
            else:
                params[key] = str(value)
        return params

    def get(self, type_name: str, record_id: int) -> Record:
        rtype = self._type(type_name)
        try:
            body = self._get_json(self.url_for(type_name, record_id))
        except NotFound:
            raise NotFound(type_name, f"id {record_id}") from None
        return self.from_wire(rtype, body)

    def iter_find(
        self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None
    ) -> Iterator[Record]:
        """Matching records newest first, fetched a page at a time (the first once read)."""
        yield from self.listing(type_name, filters, limit).records

    def listing(
        self,
        type_name: str,
        filters: dict[str, Any] | None = None,
        limit: int | None = None,
        first_page: int | None = None,
    ) -> Listing:
        """Matching records newest first, a page at a time, with the listing's `count`
        (None where the registry gives none). `first_page`: the size of the first page
        only, for a caller that may need no more than a few of the newest; later pages
        are the usual size."""
        rtype = self._type(type_name)
        filters = dict(filters or {})
        nulls = [k for k, v in filters.items() if v is None]
        params: dict[str, str] = self._query(rtype, filters)
        size = self.page_size if limit is None or nulls else min(self.page_size, max(limit, 1))
        if first_page is not None and not nulls:
            size = min(size, max(first_page, 1))
        params["page_size"] = str(size)
        url = self.url_for(type_name)
        body = self._get_json(url, params)
        count = body.get("count")
        # a caller that asked for a small first page may need no more: the next page is
        # asked for once the first has been read, not while it is
        records = self._pages(rtype, url, body, nulls, limit, ahead=first_page is None)
        return Listing(count if isinstance(count, int) else None, records)

    def _pages(
        self,
        rtype: RecordType,
        url: str,
        body: Any,
        nulls: list[str],
        limit: int | None,
        ahead: bool = True,
    ) -> Generator[Record, None, None]:
        seen = 0
        helper: ThreadPoolExecutor | None = None
        try:
            while True:
                nxt = body.get("next")
                coming: Future[Any] | None = None
                following = {**_cursor(nxt), "page_size": str(self.page_size)} if nxt else {}
                if nxt and limit is None and ahead:
                    # the next page is asked for now, and the server makes it while this one
                    # is read: a listing of many pages waits on the server once, not per page
                    helper = helper or ThreadPoolExecutor(1, thread_name_prefix="listing")
                    coming = helper.submit(self._get_json, url, following)
                for item in body.get("results", []):
                    rec = self.from_wire(rtype, item)
                    if any(rec.get(k) not in (None, []) for k in nulls):
                        continue
                    yield rec
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
                if not nxt:
                    return
                body = coming.result() if coming is not None else self._get_json(url, following)
                ahead = True
        finally:
            if helper is not None:
                helper.shutdown(wait=False, cancel_futures=True)

    def find(
        self, type_name: str, filters: dict[str, Any] | None = None, limit: int | None = None
    ) -> list[Record]:
        """Records matching exact filters (globs on glob fields), newest first."""
        return list(self.iter_find(type_name, filters, limit))

    def find_one(self, type_name: str, filters: dict[str, Any]) -> Record | None:
        rows = self.find(type_name, filters, limit=1)
        return rows[0] if rows else None

    def _existing(
        self, rtype: RecordType, data: dict[str, Any], hint: str | None
    ) -> tuple[tuple[str, ...], Record | None]:
        """After a 409: the clashing record, found by the natural keys set in `data`."""
        probe = {
            f.name: f.default
            for f in rtype.fields.values()
            if f.default is not None and not f.is_relation
        }
        for name, value in data.items():
            f = rtype.fields.get(name)
            if f is not None:
                probe[name] = _ref(value) if f.is_fk else value
        keys = rtype.natural_keys(probe)
        if hint:
            try:
                hinted = self.get(rtype.name, id_from_url(hint))
                for key in keys:
                    if all(_same(hinted.get(k), probe[k]) for k in key):
                        return key, hinted
            except RegistryError:
                pass
        for key in keys:
            try:
                rec = self.find_one(rtype.name, {k: probe[k] for k in key})
            except RegistryError:
                continue
            if rec is not None:
                return key, rec
        return (keys[0] if keys else ()), None

    def create(self, type_name: str, data: dict[str, Any], *, retry_safe: bool = False) -> Record:
        """POST one record; on 409 raise UniqueViolation carrying the existing record.

        `retry_safe`: the POST may be sent again after a drop or a 5xx, because the caller
        takes a clash (409: the first attempt got through) as the record it wanted."""
        rtype = self._type(type_name)
        resp = self.request(
            "POST",
            self.url_for(type_name),
            ok=(201, 200),
            expected=(409,),
            idempotent=retry_safe,
            json=self.to_wire(rtype, data),
        )
        if resp.status_code == 409:
            hint = None
            try:
                body = resp.json()
                hint = body.get("existing") if isinstance(body, dict) else None
            except ValueError:
                pass
            key, existing = self._existing(rtype, data, hint)
            raise UniqueViolation(type_name, key, existing)
        record = self.from_wire(rtype, resp.json())
        created = getattr(self._undo, "created", None)
        if created is not None:
            created.append((type_name, record["id"]))
        return record

    def patch(self, type_name: str, record_id: int, data: dict[str, Any]) -> Record:
        rtype = self._type(type_name)
        resp = self.request(
            "PATCH",
            self.url_for(type_name, record_id),
            expected=(409,),
            json=self.to_wire(rtype, data),
        )
        if resp.status_code == 409:
            raise UniqueViolation(type_name, (), None)
        return self.from_wire(rtype, resp.json())

    def get_or_create(self, type_name: str, data: dict[str, Any]) -> tuple[Record, bool]:
        """The existing record with the same unique key, or a new one (one POST if new).
        The POST is safe to repeat: a repeat that clashes with the first finds its record."""
        return create_or_existing(lambda: self.create(type_name, data, retry_safe=True))

    def get_or_create_many(
        self, type_name: str, rows: list[dict[str, Any]]
    ) -> list[tuple[Record, bool]]:
        """`get_or_create` for many records of one type, in order: a few hundred per POST of
        a list where the registry takes one (our server), else one POST each (the upstream
        answers 400 to a list, and is not asked so again). Safe to repeat, like one."""
        results: list[tuple[Record, bool]] = []
        if self.creates_in_batches is not False and len(rows) > 1:
            rtype = self._type(type_name)
            for start in range(0, len(rows), CREATES_PER_REQUEST):
                chunk = rows[start : start + CREATES_PER_REQUEST]
                answers = self._create_batch(rtype, chunk)
                if answers is None:
                    break  # the registry takes records one at a time
                results += answers
        for data in rows[len(results) :]:
            results.append(self.get_or_create(type_name, data))
        return results

    def _create_batch(
        self, rtype: RecordType, rows: list[dict[str, Any]]
    ) -> list[tuple[Record, bool]] | None:
        """One POST of a list of records; None if the registry does not take lists."""
        resp = self.request(
            "POST",
            self.url_for(rtype.name),
            ok=(200,),
            expected=() if self.creates_in_batches else (400, 404, 405),
            idempotent=True,  # a repeat finds what the first attempt created (409)
            json=[self.to_wire(rtype, data) for data in rows],
        )
        answers = resp.json().get("results") if resp.status_code == 200 else None
        if not isinstance(answers, list) or len(answers) != len(rows):
            if resp.status_code == 200:
                raise RegistryError(
                    f"POST {urlsplit(resp.url).path}: {len(rows)} records sent, "
                    f"{len(answers) if isinstance(answers, list) else 'no'} answers"
                )
            self.creates_in_batches = False
            return None
        self.creates_in_batches = True
        created = getattr(self._undo, "created", None)
        out: list[tuple[Record, bool]] = []
        for data, answer in zip(rows, answers, strict=True):
            status = answer.get("status")
            if status == 201:
                record = self.from_wire(rtype, answer["record"])
                if created is not None:
                    created.append((rtype.name, record["id"]))
                out.append((record, True))
            elif status == 409 and answer.get("record"):
                out.append((self.from_wire(rtype, answer["record"]), False))
            elif status == 409:
                key, existing = self._existing(rtype, data, answer.get("existing"))
                if existing is None:
                    raise UniqueViolation(rtype.name, key, None)
                out.append((existing, False))
            else:
                detail = {k: v for k, v in answer.items() if k != "status"}
                where = f"POST /{rtype.name}/ (one record of a list)"
                if status == 400:
                    raise InvalidRecord(f"{where}: {status} {detail}")
                raise RegistryError(f"{where}: refused ({status}): {detail}")
        return out

    def delete(self, type_name: str, record_id: int) -> None:
        """DELETE one record; InvalidRecord while others refer to it (our server's 409)."""
        self._type(type_name)
        try:
            resp = self.request(
                "DELETE", self.url_for(type_name, record_id), ok=(200, 202, 204), expected=(409,)
            )
        except NotFound:
            raise NotFound(type_name, f"id {record_id}") from None
        if resp.status_code == 409:
            raise InvalidRecord(f"{type_name} {record_id}: {_detail(resp)}")

    def count(self, type_name: str, filters: dict[str, Any] | None = None) -> int:
        """The listing's `count`, from a one-record page (filters on null are checked here,
        so those count by listing)."""
        rtype = self._type(type_name)
        if any(v is None for v in (filters or {}).values()):
            return len(self.find(type_name, filters))
        params = self._query(rtype, filters or {})
        params["page_size"] = "1"
        return int(self._get_json(self.url_for(type_name), params)["count"])

    def get_many(self, type_name: str, ids: list[int]) -> dict[int, Record]:
        """Records by id, a few hundred per request where the registry lists by id (our
        server's `?id=1,2,3`), else one GET each: the upstream registry answers 400 to the
        filter, which is then not asked again. An id the listing leaves out (a private
        location to a reader without a token) is asked for by itself, and answers as a GET
        would."""
        wanted = list(dict.fromkeys(ids))
        found: dict[int, Record] = {}
        if self.lists_by_id is not False and len(wanted) > 1:
            rtype = self._type(type_name)
            for start in range(0, len(wanted), IDS_PER_REQUEST):
                chunk = wanted[start : start + IDS_PER_REQUEST]
                try:
                    rows = self._by_ids(rtype, chunk)
                except InvalidRecord:
                    if self.lists_by_id:
                        raise
                    self.lists_by_id = False  # the upstream: unknown query parameter
                    break
                self.lists_by_id = True
                found.update((r["id"], r) for r in rows if r["id"] in chunk)
        for record_id in wanted:
            if record_id not in found:
                found[record_id] = self.get(type_name, record_id)
        return {i: found[i] for i in wanted}

    def _by_ids(self, rtype: RecordType, ids: list[int]) -> list[Record]:
        """One listing of the records with these ids (one page: at most IDS_PER_REQUEST)."""
        params = {"id": ",".join(str(int(i)) for i in ids), "page_size": str(len(ids))}
        body = self._get_json(self.url_for(rtype.name), params)
        return [self.from_wire(rtype, item) for item in body.get("results", [])]

    @contextlib.contextmanager
    def transaction(self) -> Iterator[HttpRegistry]:
        """The REST API has no transactions; this undoes what it can. Records created inside
        the block are deleted, newest first, when it raises; the exception then goes on.
        Changes made by `patch` are not undone (the API keeps no history), and a record the
        registry will not delete (the upstream deletes only code runs; our server keeps
        provenance such as objects) stays, with one warning naming what stayed. Nested
        blocks join the outer one."""
        if getattr(self._undo, "created", None) is not None:
            yield self
            return
        self._undo.created = []
        try:
            yield self
        except BaseException:
            created, self._undo.created = self._undo.created, None
            self._remove(created)
            raise
        finally:
            self._undo.created = None

    def _remove(self, created: list[tuple[str, int]]) -> None:
        kept: list[str] = []
        for type_name, record_id in reversed(created):
            try:
                self.delete(type_name, record_id)
            except NotFound:
                continue
            except RegistryError:
                kept.append(f"{type_name} {record_id}")
        if kept:
            log.warning(
                "%s: %d record(s) made before the failure stay (the registry would not "
                "delete them): %s",
                self.api_url,
                len(kept),
                ", ".join(kept[:10]) + (" ..." if len(kept) > 10 else ""),
            )

    # ------------------------------------------------------------- other
    def whoami(self) -> str:
        """The username the token belongs to; checks a token before a long push."""
        return str(self._get_json(f"{self.api_url}username/")["username"])

    def data_root(self) -> str:
        """The storage root of files uploaded to this registry: its site's `data/`.

        The upstream registry serves them from there (`GET <base>/data/<sha1>` redirects to
        its object store) and its set-up creates that storage root; the reference CLI looks
        it up the same way.
        """
        return urljoin(self.api_url, "../data/")

    @property
    def blobs(self) -> UpstreamDataStorage:
        """The registry's file storage (its `/data/` protocol), sharing this client's
        session, token and retry settings."""
        if self._blobs is None:
            self._blobs = UpstreamDataStorage(
                self.api_url,
                self._token,
                session=self.session,
                timeout=self.timeout,
                retries=self.retries,
                backoff=self.backoff,
                breaker=self.breaker,
                bundles=lambda: self.sends_bundles,
            )
        return self._blobs

    def upload_blob(self, path: Path, sha1: str) -> dict[str, Any]:
        """Put a file into the registry's file storage, unless it already holds it: returns
        `{storage_root, path, exists, uploaded}` (see `UpstreamDataStorage.upload`). Raises
        NoFileStorage when the registry cannot take files at all, InvalidRecord when it
        refuses these bytes as not hashing to `sha1`."""
        try:
            return self.blobs.upload(path, sha1)
        except HashMismatch as exc:
            raise InvalidRecord(str(exc)) from None

    def download(self, url: str) -> Iterator[bytes]:
        """Stream a file's bytes, as `transfer.download` does: resumed after a drop, and
        redirects (the upstream sends `<base>/data/<sha1>` to a presigned URL on its object
        store) followed without the token, which goes only to this registry."""
        return transfer.download(
            url,
            session=self.session,
            auth=self._auth,
            policy=self.policy,
            breaker=self.breaker,
            timeout=self.timeout,
        )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return str(a).lower() == str(b).lower()
    return a == b or str(a) == str(b)
