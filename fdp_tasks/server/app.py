"""The registry over HTTP: a Flask app speaking the REST conventions of the reference registry.

Endpoints, filters and write permissions all come from the declared schema, so the server
never drifts from the store. Where the reference registry has a defect (500 on a POST
without trailing slash, FK filters refusing URLs, silently ignored reverse filters) this
server does the sensible thing instead, while keeping every convention clients rely on:

- records carry `url`, foreign keys and many-to-many fields as absolute URLs;
- lists are `{count, next, previous, results}`, newest first, with an opaque cursor;
- a unique clash is a 409 (clients then look the record up by filter);
- writes need `Authorization: token <t>` and answer 403 without one (never 401);
- FK filters take a numeric id, and, unlike the reference, also a record URL of the
  right type (the id is taken from its path), because data-pipeline-api sends URLs of
  whatever host it was given.

Two additions the reference lacks, which clients use only after this server answers them
(the reference answers 400 and 404, and clients then ask one record or file at a time):
`?id=1,2,3` lists records by id, and `POST /api/data/` with `{"hashes": [...]}` answers
where to upload many files at once (`server/blobs.py`).

Its file store is in `blobs`.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import flask
from werkzeug.exceptions import HTTPException

from fdp_tasks.server.blobs import BlobViews, blob_key
from fdp_tasks.server.common import ADMIN, ApiError, json_response
from fdp_tasks.server.leftovers import sweep_lost_push
from fdp_tasks.server.prov_routes import register_prov_routes
from fdp_tasks.server.web import register_web
from fdp_tasks.storage import Storage
from fdp_tasks.storage.base import BUNDLES_HEADER, is_sha1
from fdp_tasks.store.base import InvalidRecord, NotFound, Record, UniqueViolation
from fdp_tasks.store.prune import InUse, NotOwner, in_use_message, retire_product
from fdp_tasks.store.schema import Field, RecordType
from fdp_tasks.store.sql import Store, token_digest
from fdp_tasks.store.values import BadValue, coerce, parse_bool

log = logging.getLogger(__name__)

LIST_EXTRAS = {"cursor", "format", "ordering", "page_size"}
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 10000
# What a PATCH or PUT may never change: published data stays the bytes it was published with.
FROZEN_FIELDS = {
    "data_product": ("object", "namespace", "name", "version"),
    "storage_location": ("path", "hash", "public", "storage_root"),
}
# Record ids are 64-bit signed integers in every database: a larger one names no record.
MAX_ID = 2**63 - 1
# Records created by one POST of a JSON list (a push's records of a few hundred products).
RECORDS_PER_REQUEST = 500
JSON_TYPES = {
    "string": "string",
    "text": "string",
    "boolean": "boolean",
    "integer": "integer",
    "datetime": "datetime",
    "uuid": "string",
    "fk": "field",
    "m2m": "field",
}


def field_errors(exc: InvalidRecord, type_name: str) -> dict[str, list[str]]:
    """The DRF-style 400 body for a record the store refused: `{"field": ["message"]}` for
    a field of the record asked about, else `{"non_field_errors": [...]}`."""
    if exc.field and exc.type_name == type_name:
        return {exc.field: [exc.message]}
    return {"non_field_errors": [str(exc)]}


def _ref_id(value: Any, target: str) -> int:
    """The id in a reference: an int, a numeric string, or a URL whose path ends in
    /<target>/<id>/ (any host: only the path counts, like the reference registry)."""
    if isinstance(value, bool):
        raise BadValue(f"expected a {target} URL or id, got {value!r}")
    if isinstance(value, int):
        return _in_range(value, target)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return _in_range(int(text), target)
        parts = [p for p in urlsplit(text).path.split("/") if p]
        if len(parts) >= 2 and parts[-1].isdigit() and parts[-2] == target:
            return _in_range(int(parts[-1]), target)
    raise BadValue(
        f"Invalid hyperlink - expected a {target} URL such as <registry>/api/{target}/<id>/, "
        f"got {value!r}"
    )


def _in_range(record_id: int, target: str) -> int:
    if not 0 <= record_id <= MAX_ID:
        raise BadValue(f"no {target} has the id {record_id}: ids are at most {MAX_ID}")
    return record_id


def _id_list(value: str) -> list[int]:
    """The ids of `?id=1,2,3`: records by id in one listing, where the upstream has one GET
    per record (it answers 400 to the parameter, and clients then fall back to that)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    ids = [int(p) for p in parts if p.isascii() and p.isdigit() and len(p) <= 19]
    if not ids or len(ids) != len(parts) or len(ids) > MAX_PAGE_SIZE or max(ids) > MAX_ID:
        raise ApiError(
            400, {"id": [f"expected up to {MAX_PAGE_SIZE} record ids separated by commas"]}
        )
    return ids


def _holds_all(key: str, wanted: set[int]) -> Callable[[Record], bool]:
    """A check the store cannot express: the record's `key` list holds every id wanted."""
    return lambda record: wanted <= set(record.get(key) or [])


def _ref_list(value: Any, target: str) -> list[int]:
    """Ids from a filter value that may be one reference or a list, even a Python list repr
    such as "['http://h/api/author/1/']" (what data-pipeline-api sends for list fields)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            items = [i.strip().strip("'\"") for i in text[1:-1].split(",")]
            return [_ref_id(i, target) for i in items if i]
        return [_ref_id(text, target)]
    return [_ref_id(value, target)]


class _Cursor:
    """Opaque list cursor: 'b<id>' pages to older records, 'a<id>' to newer ones."""

    @staticmethod
    def encode(direction: str, record_id: int) -> str:
        raw = f"{direction}{record_id}".encode("ascii")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    @staticmethod
    def decode(text: str) -> tuple[str, int]:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            direction, number = raw[0], int(raw[1:])
        except (ValueError, IndexError, UnicodeDecodeError):
            raise ApiError(404, {"detail": "Invalid cursor"}) from None
        if direction not in ("a", "b") or not 0 <= number <= MAX_ID:
            raise ApiError(404, {"detail": "Invalid cursor"})
        return direction, number


class RegistryApp:
    """The record views, bound to one store (the file views are in `blobs`)."""

    def __init__(
        self,
        store: Store,
        public_url: str | None = None,
        literal_names: bool = False,
    ):
        """`literal_names`: a `*` in a name filter is a character, not a glob (and, since no
        name holds one, matches nothing). For the registry a job's script talks to: a script
        looking up an exact name that happens to be a config's write pattern must not be
        answered with some other product that the pattern matches."""
        self.literal_names = literal_names
        self.store = store
        self.schema = store.schema
        self.public_url = public_url.rstrip("/") if public_url else None
        self.blob_storage: Storage | None = None  # set by create_app: a lost push's files go
        # set by create_app: refuses a storage location naming bytes the server has not hashed
        self.check_location: Callable[[dict[str, Any], int | None], None] | None = None
        # set by create_app: verifies a batch's uploads at once, before its locations go in
        self.prepare_locations: Callable[[list[Any], Record], None] | None = None
        store.ensure_user("admin")

    # ------------------------------------------------------------ helpers
    def base(self) -> str:
        """The scheme://host[:port] prefix of every URL this server hands out."""
        return self.public_url or flask.request.host_url.rstrip("/")

    def record_url(
        self, type_name: str, record_id: int | None, base: str | None = None
    ) -> str | None:
        """A record's URL; `base`: `self.base()`, when the caller has it already."""
        if record_id is None:
            return None
        return f"{base or self.base()}/api/{type_name}/{record_id}/"

    def rtype(self, type_name: str) -> RecordType:
        if type_name not in self.schema:
            raise ApiError(404, {"detail": f"unknown endpoint {type_name!r}"})
        return self.schema[type_name]

    def user(self) -> Record | None:
        """The token's user, or None for an anonymous (or wrongly authenticated) request."""
        if "fdp_user" in flask.g:
            return flask.g.fdp_user
        user = None
        header = flask.request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and token.strip():
            user = self.store.user_for_token(token.strip())
        flask.g.fdp_user = user
        if user is not None:  # for the access log
            flask.request.environ["REMOTE_USER"] = user["username"]
        return user

    def token_digest(self) -> str | None:
        """The digest of the request's token (how the store knows a job's token), if any."""
        scheme, _, token = flask.request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and token.strip():
            return token_digest(token.strip())
        return None

    def require_user(self) -> Record:
        user = self.user()
        if user is not None:
            return user
        if flask.request.headers.get("Authorization"):
            raise ApiError(403, {"detail": "Invalid token."})
        raise ApiError(403, {"detail": "Authentication credentials were not provided."})

    def wire(
        self, rtype: RecordType, rec: Record, prefixes: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """A store record as the reference registry shows it: references as URLs.
        `prefixes`: `url_prefixes()`, made once for all the records of a response (a
        listing page holds a thousand)."""
        prefix = prefixes if prefixes is not None else self.url_prefixes()

        def url(type_name: str, record_id: int | None) -> str | None:
            return None if record_id is None else f"{prefix[type_name]}{record_id}/"

        out: dict[str, Any] = {"url": url(rtype.name, rec["id"])}
        for f in rtype.fields.values():
            value = rec.get(f.name)
            if f.is_fk:
                out[f.name] = url(f.target, value)
            elif f.is_m2m:
                out[f.name] = [url(f.target, v) for v in value or []]
            else:
                out[f.name] = value
        for rname, (other, _via) in rtype.reverse.items():
            out[rname] = [url(other, v) for v in rec.get(rname) or []]
        out["last_updated"] = rec.get("last_updated")
        out["updated_by"] = url("users", rec.get("updated_by"))
        return out

    def url_prefixes(self) -> dict[str, str]:
        """The URL of each record type's collection, to which a record's id is added."""
        base = self.base()
        return {name: f"{base}/api/{name}/" for name in self.schema.types}

    def incoming(self, rtype: RecordType, body: Any) -> dict[str, Any]:
        """Request body fields as store data: references become ids, unknown keys drop."""
        if not isinstance(body, dict):
            raise ApiError(400, {"non_field_errors": ["expected a JSON object"]})
        data: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for name, value in body.items():
            f = rtype.fields.get(name)
            if f is None:
                continue
            try:
                if f.is_fk:
                    data[name] = None if value is None else _ref_id(value, f.target)
                elif f.is_m2m:
                    if not isinstance(value, (list, tuple)):
                        kind = type(value).__name__
                        raise BadValue(f'Expected a list of items but got type "{kind}".')
                    data[name] = [_ref_id(v, f.target) for v in value]
                else:
                    data[name] = value
            except BadValue as exc:
                errors[name] = [str(exc)]
        if errors:
            raise ApiError(400, errors)
        if rtype.name == "storage_location" and self.check_location is not None:
            self.check_location(data, (flask.request.view_args or {}).get("record_id"))
        return data

    def filters(self, rtype: RecordType) -> tuple[dict[str, Any], list[Callable[[Record], bool]]]:
        """Store filters from the query string, plus checks the store cannot express."""
        filters: dict[str, Any] = {}
        post: list[Callable[[Record], bool]] = []
        args = flask.request.args
        for key in args:
            if key in LIST_EXTRAS:
                continue
            if key == "id":
                filters["id"] = _id_list(args.getlist(key)[-1])
                continue
            f: Field | None = rtype.fields.get(key)
            if f is None:
                allowed = ", ".join(sorted([*rtype.fields, *LIST_EXTRAS]))
                raise ApiError(
                    400,
                    {
                        "detail": f"unknown query parameter {key!r} for "
                        f"{rtype.name}; allowed: {allowed}"
                    },
                )
            value = args.getlist(key)[-1]
            if value == "":
                continue  # like django-filter: an empty value does not filter
            try:
                if f.is_fk:
                    filters[key] = (
                        None if value.lower() in ("none", "null") else _ref_id(value, f.target)
                    )
                elif f.is_m2m:
                    ids = _ref_list(value, f.target)
                    if not ids:
                        continue
                    filters[key] = ids[0]
                    if len(ids) > 1:
                        post.append(_holds_all(key, set(ids)))
                elif f.kind == "boolean":
                    filters[key] = parse_bool(value)
                elif self.literal_names and key in rtype.glob and "*" in value:
                    filters[key] = value
                    post.append(lambda r: False)  # no name holds a '*'
                else:
                    filters[key] = value
            except BadValue as exc:
                raise ApiError(400, {key: [str(exc)]}) from None
        return filters, post

    def page_size(self) -> int:
        try:
            size = int(flask.request.args.get("page_size", DEFAULT_PAGE_SIZE))
        except ValueError:
            return DEFAULT_PAGE_SIZE
        return DEFAULT_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)

    def page_link(self, type_name: str, cursor: str | None) -> str | None:
        if cursor is None:
            return None
        params = [(k, v) for k, v in flask.request.args.items(multi=True) if k != "cursor"]
        params.append(("cursor", cursor))
        return f"{self.base()}/api/{type_name}/?{urlencode(params)}"

    # -------------------------------------------------------------- views
    def index(self) -> flask.Response:
        base = self.base()
        return json_response({name: f"{base}/api/{name}/" for name in self.schema.types})

    def username(self) -> flask.Response:
        user = self.require_user()
        return json_response(
            {"username": user["username"], "url": self.record_url("users", user["id"])}
        )

    def collection(self, type_name: str) -> flask.Response:
        rtype = self.rtype(type_name)
        if flask.request.method == "OPTIONS":
            return self.options(rtype, detail=False)
        if flask.request.method == "POST":
            return self.create(rtype)
        if rtype.private:
            self.require_user()
        return self.listing(rtype)

    def listing(self, rtype: RecordType) -> flask.Response:
        filters, post = self.filters(rtype)
        self.hide_private(rtype, filters)
        size = self.page_size()
        cursor = flask.request.args.get("cursor")
        direction, mark = _Cursor.decode(cursor) if cursor else ("b", None)
        try:
            if not post and direction == "b":
                count = self.store.count(rtype.name, filters)
                rows = self.store.find(
                    rtype.name, filters, limit=size + 1, before_id=mark, full=True
                )
                page, older, newer = rows[:size], len(rows) > size, mark is not None
            else:
                rows = [
                    r
                    for r in self.store.find(rtype.name, filters, full=True)
                    if all(p(r) for p in post)
                ]
                count = len(rows)
                if direction == "b":
                    rest = [r for r in rows if mark is None or r["id"] < mark]
                    page, older, newer = rest[:size], len(rest) > size, mark is not None
                else:
                    ahead = [r for r in rows if r["id"] > mark]
                    page = ahead[-size:]
                    older, newer = True, len(ahead) > size
        except InvalidRecord as exc:
            raise ApiError(400, field_errors(exc, rtype.name)) from None
        prefixes = self.url_prefixes()
        nxt = _Cursor.encode("b", page[-1]["id"]) if older and page else None
        prev = _Cursor.encode("a", page[0]["id"]) if newer and page else None
        if newer and not page and mark is not None:
            prev = _Cursor.encode("a", mark - 1) if direction == "b" else None
        return json_response(
            {
                "count": count,
                "next": self.page_link(rtype.name, nxt),
                "previous": self.page_link(rtype.name, prev),
                "results": [self.wire(rtype, r, prefixes) for r in page],
            }
        )

    def create(self, rtype: RecordType) -> flask.Response:
        user = self.require_user()
        if rtype.private:
            raise ApiError(405, {"detail": 'Method "POST" not allowed.'}, {"Allow": "GET"})
        body = self.body()
        if isinstance(body, list):
            return self.create_many(rtype, body, user)
        return json_response(self.create_one(rtype, body, user), 201)

    def create_many(self, rtype: RecordType, items: list[Any], user: Record) -> flask.Response:
        """`POST /api/<type>/` with a JSON list of up to RECORDS_PER_REQUEST records: each
        created as a POST of it alone would be, answered in order with its status and
        record (a clash: 409 and the existing record), so a push sends the records of many
        products in a few requests. The upstream registry answers 400 to a list, and
        clients then post record by record."""
        if not 0 < len(items) <= RECORDS_PER_REQUEST:
            raise ApiError(
                400, {"non_field_errors": [f"expected 1 to {RECORDS_PER_REQUEST} records"]}
            )
        if rtype.name == "storage_location" and self.prepare_locations is not None:
            self.prepare_locations(items, user)
        created = self.create_all_at_once(rtype, items, user)
        if created is not None:
            return json_response({"results": [{"status": 201, "record": r} for r in created]})
        answers: list[dict[str, Any]] = []
        for item in items:
            try:
                answers.append({"status": 201, "record": self.create_one(rtype, item, user)})
            except ApiError as exc:
                answer: dict[str, Any] = {"status": exc.status, **exc.body}
                if exc.status == 409 and exc.body.get("existing"):
                    existing = self.store.get(rtype.name, _ref_id(exc.body["existing"], rtype.name))
                    answer["record"] = self.wire(rtype, existing)
                answers.append(answer)
        return json_response({"results": answers}, 200)

    def create_all_at_once(
        self, rtype: RecordType, items: list[Any], user: Record
    ) -> list[dict[str, Any]] | None:
        """The records of a list, when every one of them is new and valid, created in one
        transaction and a few statements per chunk (`Store.create_many`) rather than some
        ten each; None, with nothing written, when any of them is not, so that each is
        answered on its own. The checks are those of `create_one`, for each record."""
        try:
            datas = [self.incoming(rtype, item) for item in items]
            writable: dict[int, bool] = {}
            for data in datas:
                self.require_member(rtype, data, user, writable)
        except ApiError:
            return None
        try:
            with self.store.transaction():
                with self.store.provisional_as(self.token_digest()):
                    recs = self.store.create_many(rtype.name, datas, user_id=user["id"])
                if rtype.name == "storage_location":
                    for public in (True, False):
                        hashes = [r["hash"] for r in recs if bool(r["public"]) is public]
                        self.store.claim_files(hashes, user["id"], published=public)
        except (UniqueViolation, InvalidRecord):
            return None  # rolled back: record by record, each with its own answer
        prefixes = self.url_prefixes()
        return [self.wire(rtype, rec, prefixes) for rec in recs]

    def create_one(self, rtype: RecordType, body: Any, user: Record) -> dict[str, Any]:
        """One record from a POST's body, on the wire; ApiError says why not."""
        data = self.incoming(rtype, body)
        self.require_member(rtype, data, user)
        try:
            # under a running job's token the record is provisional until the job ends
            with self.store.provisional_as(self.token_digest()):
                rec = self.store.create(rtype.name, data, user_id=user["id"])
        except UniqueViolation as exc:
            self.after_clash(rtype, data, user, exc)
            clash: dict[str, Any] = {"detail": str(exc)}
            if exc.existing:
                clash["existing"] = self.record_url(rtype.name, exc.existing["id"])
            raise ApiError(409, clash) from None
        except InvalidRecord as exc:
            raise ApiError(400, field_errors(exc, rtype.name)) from None
        if rtype.name == "storage_location":
            self.store.claim_file(rec["hash"], user["id"], published=bool(rec["public"]))
        return self.wire(rtype, rec)

    # ------------------------------------------------------- who may write what
    def require_member(
        self,
        rtype: RecordType,
        data: dict[str, Any],
        user: Record,
        writable: dict[int, bool] | None = None,
    ) -> None:
        """A data product (a new version too) or an external object goes into a namespace
        only from one of its members, or admin: nobody publishes under another's name.
        `writable`: what was found of each namespace so far, for a list of records."""
        namespace_id = None
        if rtype.name == "data_product":
            namespace_id = data.get("namespace")
        elif rtype.name == "external_object" and isinstance(data.get("data_product"), int):
            product = self.store.find_one("data_product", {"id": data["data_product"]})
            namespace_id = product["namespace"] if product else None
        if not isinstance(namespace_id, int) or user["username"] == ADMIN:
            return
        known = {} if writable is None else writable
        if namespace_id not in known:
            namespace = self.store.find_one("namespace", {"id": namespace_id})
            # a dangling reference is the store's to refuse
            known[namespace_id] = namespace is None or self.store.is_member(
                namespace_id, user["id"]
            )
        if known[namespace_id]:
            return
        if rtype.name == "data_product" and self.store.find_one(
            "data_product",
            {"namespace": namespace_id, "name": data.get("name"), "version": data.get("version")},
        ):
            # there already: the create answers 409 with it, as to anyone, so that a push of
            # results made from another group's data finds that data in its provenance
            return
        name = self.store.get("namespace", namespace_id)["name"]
        raise ApiError(
            403,
            {
                "detail": f"{user['username']} is not a member of namespace {name}: only its "
                "members write there; ask one of them, or admin, to add you"
            },
        )

    def after_clash(
        self, rtype: RecordType, data: dict[str, Any], user: Record, exc: UniqueViolation
    ) -> None:
        """A storage location that exists already is claimed by this user too (a push of
        theirs is about to name its bytes); a data product that exists already with other
        bytes means this push lost the race for its name, and what this user wrote that no
        data product needs goes (see server/leftovers.py)."""
        if rtype.name == "storage_location" and exc.existing is not None:
            found = exc.existing
            self.store.claim_file(found["hash"], user["id"], published=bool(found["public"]))
            return
        existing = exc.existing
        posted = data.get("object")
        if rtype.name != "data_product" or existing is None or not isinstance(posted, int):
            return
        if posted == existing["object"]:
            return
        if self.object_hash(posted) == self.object_hash(existing["object"]):
            return  # the same bytes: the client goes on with the existing product
        if self.blob_storage is None:
            return
        swept = sweep_lost_push(self.store, self.blob_storage, user["id"])
        if swept.total or swept.hashes:
            log.info(
                "a push by %s lost the race for a data product: swept %s and %d file(s)",
                user["username"],
                ", ".join(f"{n} {t}" for t, n in swept.records.items() if n) or "no records",
                len(swept.hashes),
            )

    def object_hash(self, object_id: int) -> str | None:
        obj = self.store.find_one("object", {"id": object_id})
        if obj is None or obj.get("storage_location") is None:
            return None
        location = self.store.find_one("storage_location", {"id": obj["storage_location"]})
        return location["hash"] if location else None

    def refuse_repointing(self, rtype: RecordType, current: Record, data: dict[str, Any]) -> None:
        """Published data stays what it was: a data product's name, version, namespace and
        object, and a storage location's file, never change (a correction is a new
        version); an object may move only to a location holding the same bytes (a pull
        does that)."""
        for name in FROZEN_FIELDS.get(rtype.name, ()):
            if name not in data:
                continue
            wanted = data[name]
            field = rtype.fields[name]
            if not field.is_relation:
                try:
                    wanted = coerce(field, wanted)
                except BadValue:
                    continue  # the store refuses it, saying why
            if wanted != current.get(name):
                raise ApiError(
                    400,
                    {
                        name: [
                            f"a {rtype.name}'s {name} never changes once created: publish "
                            "a new version instead"
                        ]
                    },
                )
        if rtype.name == "object" and isinstance(data.get("storage_location"), int):
            before = current.get("storage_location")
            after = data["storage_location"]
            if before is not None and after != before:
                old = self.store.find_one("storage_location", {"id": before})
                new = self.store.find_one("storage_location", {"id": after})
                if old and new and old["hash"] != new["hash"]:
                    raise ApiError(
                        400,
                        {
                            "storage_location": [
                                "an object moves only to a location of the same bytes "
                                f"(SHA-1 {old['hash']}, not {new['hash']}): publish a new "
                                "version instead"
                            ]
                        },
                    )

    def hide_private(self, rtype: RecordType, filters: dict[str, Any]) -> None:
        """Private storage locations are listed to token holders only."""
        if rtype.name != "storage_location" or self.user() is not None:
            return
        if filters.get("public") is False:
            raise ApiError(403, {"detail": "Listing private storage locations needs a token."})
        filters["public"] = True

    # ---------------------------------------------------------- namespace members
    def member_list(self, namespace: Record) -> dict[str, Any]:
        return {
            "namespace": self.record_url("namespace", namespace["id"]),
            "name": namespace["name"],
            "members": [u["username"] for u in self.store.members(namespace["id"])],
        }

    def may_manage(self, namespace: Record, user: Record) -> None:
        if user["username"] != ADMIN and not self.store.is_member(namespace["id"], user["id"]):
            raise ApiError(
                403,
                {"detail": f"only members of namespace {namespace['name']}, or admin, do that"},
            )

    def members(self, record_id: int) -> flask.Response:
        """`GET` lists a namespace's members; `POST {"username": ...}` adds one (admin or a
        member)."""
        user = self.require_user()
        namespace = self.fetch(self.rtype("namespace"), record_id)
        if flask.request.method == "GET":
            return json_response(self.member_list(namespace))
        self.may_manage(namespace, user)
        body = self.body()
        username = body.get("username") if isinstance(body, dict) else None
        if not isinstance(username, str) or not username:
            raise ApiError(400, {"username": ["This field is required."]})
        other = self.store.find_one("users", {"username": username})
        if other is None:
            raise ApiError(400, {"username": [f"no user {username!r} on this registry"]})
        added = self.store.add_member(namespace["id"], other["id"])
        return json_response(self.member_list(namespace), 201 if added else 200)

    def member(self, record_id: int, username: str) -> flask.Response:
        """`DELETE` takes a member's right to write in the namespace away (admin or a
        member)."""
        user = self.require_user()
        namespace = self.fetch(self.rtype("namespace"), record_id)
        self.may_manage(namespace, user)
        other = self.store.find_one("users", {"username": username})
        if other is None or not self.store.remove_member(namespace["id"], other["id"]):
            raise ApiError(404, {"detail": "Not found."})
        return flask.Response(status=204)

    def detail(self, type_name: str, record_id: int) -> flask.Response:
        rtype = self.rtype(type_name)
        method = flask.request.method
        if method == "OPTIONS":
            return self.options(rtype, detail=True)
        if method == "GET":
            if rtype.private:
                self.require_user()
            return json_response(self.wire(rtype, self.fetch(rtype, record_id)))
        user = self.require_user()
        if method == "DELETE" and rtype.name == "data_product":
            return self.delete_product(record_id, user)
        if method not in rtype.writable:
            allowed = ", ".join(["GET", *sorted(rtype.writable)])
            raise ApiError(405, {"detail": f'Method "{method}" not allowed.'}, {"Allow": allowed})
        current = self.fetch(rtype, record_id)
        owner = current.get("updated_by")
        if owner is not None and owner != user["id"] and user["username"] != ADMIN:
            # Changing someone else's provenance is for them, or for the registry's admin.
            raise ApiError(
                403, {"detail": "Only the user who wrote this record, or admin, may change it."}
            )
        if method == "DELETE":
            try:
                self.store.delete(rtype.name, record_id)
            except InvalidRecord as exc:
                raise ApiError(409, {"detail": str(exc)}) from None
            return flask.Response(status=204)
        data = self.incoming(rtype, self.body())
        self.refuse_repointing(rtype, current, data)
        if method == "PUT":
            missing = {
                f.name: ["This field is required."]
                for f in rtype.fields.values()
                if f.required and f.name not in data
            }
            if missing:
                raise ApiError(400, missing)
        try:
            rec = self.store.patch(rtype.name, record_id, data, user_id=user["id"])
        except UniqueViolation as exc:
            raise ApiError(409, {"detail": str(exc)}) from None
        except InvalidRecord as exc:
            raise ApiError(400, field_errors(exc, rtype.name)) from None
        return json_response(self.wire(rtype, rec))

    def delete_product(self, record_id: int, user: Record) -> flask.Response:
        """`DELETE` of a data product version: with the provenance only it needs, in one
        transaction (`store.prune`): 403 when it, or its object, is another user's (admin
        excepted), 409 naming the code runs or issues that use it. Records of others that it
        shares stay, and so do files anyone else asked to keep."""
        self.fetch(self.rtype("data_product"), record_id)
        try:
            retire_product(
                self.store,
                record_id,
                user_id=user["id"],
                admin=user["username"] == ADMIN,
                drop_files=self.drop_blobs,
            )
        except NotOwner as exc:
            raise ApiError(403, {"detail": str(exc)}) from None
        except InUse as exc:
            raise ApiError(409, in_use_message(exc)) from None
        except InvalidRecord as exc:
            raise ApiError(409, {"detail": str(exc)}) from None
        return flask.Response(status=204)

    def drop_blobs(self, hashes: list[str]) -> None:
        """Delete the files of these SHA-1s from the blob storage (if the server has one)."""
        if self.blob_storage is None:
            return
        for sha1 in hashes:
            if is_sha1(sha1):
                self.blob_storage.delete(blob_key(sha1))

    def fetch(self, rtype: RecordType, record_id: int) -> Record:
        if record_id > MAX_ID:
            raise ApiError(404, {"detail": "Not found."})
        try:
            return self.store.get(rtype.name, record_id, full=True)
        except NotFound:
            raise ApiError(404, {"detail": "Not found."}) from None

    def body(self) -> Any:
        """The request's JSON. Nesting too deep for the parser, and strings no database can
        hold (lone UTF-16 surrogates), are bad input like any other malformed JSON."""
        try:
            body = json.loads(flask.request.get_data(cache=False) or b"{}")
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise ApiError(400, {"detail": "JSON parse error - nested too deeply"}) from None
        except UnicodeEncodeError:
            raise ApiError(
                400, {"detail": "JSON parse error - a string holds a lone surrogate"}
            ) from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, {"detail": f"JSON parse error - {exc}"}) from None
        return body

    def options(self, rtype: RecordType, detail: bool) -> flask.Response:
        """DRF-style metadata, so clients that ask OPTIONS for writable fields keep working.

        `filter_fields` names the query parameters a listing of this type accepts, as the
        reference registry's do: the reference CLI looks a record up after a 409 with those
        of the posted fields, and without them takes the newest record of the type.
        """
        fields: dict[str, Any] = {
            "url": {"type": "field", "required": False, "read_only": True, "label": "Url"},
        }
        for f in rtype.fields.values():
            fields[f.name] = {
                "type": JSON_TYPES[f.kind],
                "required": f.required,
                "read_only": False,
                "label": f.name.replace("_", " ").capitalize(),
            }
        for extra in ("last_updated", "updated_by"):
            fields[extra] = {
                "type": "field",
                "required": False,
                "read_only": True,
                "label": extra.replace("_", " ").capitalize(),
            }
        methods = ["GET", "OPTIONS"]
        actions: dict[str, Any] = {}
        if detail:
            # a data product version is deleted with what only it needs (delete_product)
            deletable = {"DELETE"} if rtype.name == "data_product" else set()
            methods += sorted(rtype.writable | deletable)
            if "PUT" in rtype.writable:
                actions["PUT"] = fields
        elif not rtype.private:
            methods.append("POST")
            actions["POST"] = fields
        body = {
            "name": rtype.name.replace("_", " ").title(),
            "description": "",
            "renders": ["application/json"],
            "parses": ["application/json"],
            "actions": actions,
            "filter_fields": list(rtype.fields),
        }
        return json_response(body, headers={"Allow": ", ".join(methods)})

    def health(self) -> flask.Response:
        """200 when the database answers, else 503: for load balancers and monitoring."""
        problem = self.store.ping()
        if problem:
            log.warning("health check: the database does not answer: %s", problem)
            return json_response({"status": "unavailable"}, 503)
        return json_response({"status": "ok"})

    # -------------------------------------------------------------- hooks
    def check_accept(self) -> flask.Response | None:
        """Refuse an API version other than the schema's, like DRF's Accept versioning."""
        if not flask.request.path.startswith("/api"):
            return None
        for media in flask.request.headers.get("Accept", "").split(","):
            for param in media.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.strip().lower() == "version" and value.strip() != self.schema.version:
                    return json_response(
                        {
                            "detail": f'Invalid version in "Accept" header: '
                            f"{value.strip()!r}; this registry speaks "
                            f"{self.schema.version}."
                        },
                        406,
                    )
        return None


def create_app(
    store: Store,
    blob_dir: Path | str | Storage,
    public_url: str | None = None,
    literal_names: bool = False,
) -> flask.Flask:
    """The WSGI app for `store`; blobs go to `blob_dir` (a folder, an s3:// URL or a
    Storage). URLs use `public_url` if given, else the Host header of each request."""
    views = RegistryApp(store, public_url, literal_names)
    blobs = BlobViews(views, blob_dir)
    views.blob_storage = blobs.storage
    views.check_location = blobs.check_location
    views.prepare_locations = blobs.prepare_locations
    app = flask.Flask(__name__)
    app.config["fdp_registry"] = views
    app.config["fdp_signed_upload"] = blobs.signed_upload  # see server/limits.py
    app.url_map.strict_slashes = False
    app.before_request(views.check_accept)

    def route(rule: str, view: Callable[..., Any], methods: list[str], endpoint: str) -> None:
        app.add_url_rule(
            rule,
            endpoint,
            view,
            methods=methods,
            strict_slashes=False,
            provide_automatic_options=False,
        )

    route("/health", views.health, ["GET"], "health")
    route("/api/", views.index, ["GET"], "index")
    route("/api/username/", views.username, ["GET"], "username")
    route("/api/data/<sha1>/", blobs.presign, ["POST"], "presign")
    route("/api/data/", blobs.presign_many, ["POST"], "presign_many")
    route("/api/namespace/<int:record_id>/members/", views.members, ["GET", "POST"], "members")
    route("/api/namespace/<int:record_id>/members/<username>/", views.member, ["DELETE"], "member")
    route("/data/<sha1>", blobs.blob, ["GET", "PUT"], "blob")
    route("/data/", blobs.bundle, ["POST"], "bundle")
    route("/data/", blobs.receive_bundle, ["PUT"], "receive_bundle")
    route("/api/<type_name>/", views.collection, ["GET", "POST", "OPTIONS"], "collection")
    route(
        "/api/<type_name>/<int:record_id>/",
        views.detail,
        ["GET", "PATCH", "PUT", "DELETE", "OPTIONS"],
        "detail",
    )
    register_web(app, views)  # the read-only HTML pages, under /ui/
    register_prov_routes(app, views, blobs)  # prov-report and RO-Crates, as upstream has them

    if not blobs.direct:

        @app.after_request
        def _says_bundles(resp: flask.Response) -> flask.Response:
            resp.headers[BUNDLES_HEADER] = "1"  # POST /data/ sends small files in bundles
            return resp

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> flask.Response:
        return json_response(exc.body, exc.status, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> flask.Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
        return json_response({"detail": exc.description or exc.name}, exc.code or 500, headers)

    @app.errorhandler(Exception)
    def _server_error(exc: Exception) -> flask.Response:
        log.exception("%s %s failed", flask.request.method, flask.request.path)
        return json_response({"detail": f"internal server error: {type(exc).__name__}"}, 500)

    return app
