"""An emulation of the upstream FAIR Data Pipeline registry (data-registry v1.2.1, as observed).

A client that syncs with real registries has to live with the upstream's conventions and
defects; this server reproduces them on loopback, so tests and benchmarks meet them without
a Django install or a network. Records live in fdp-tasks' own SQL store (`Store`); everything
the upstream does differently from our own server lives in this Flask app:

- tokens: a missing or wrong token is a 403 (never 401), even a wrong one on a read; reads are
  public except `users`, `groups` and `username`;
- 409 on a unique clash with the upstream's bodies (`Field root must be unique`, `Field
  non_field_errors must be unique`, raw database text on a uuid clash); nothing unique on
  object, code_run or author beyond the uuid; an author's uuid is derived from its
  identifier (Author.save);
- foreign keys in bodies are URLs whose path only is resolved (another host's URL links this
  server's row of that id); an integer is a 400;
- filters: every model field name, reverse relations included (accepted and ignored); foreign
  keys by numeric id only; anchored globs on name fields, exact matches elsewhere; an unknown
  query parameter is a 400; `cursor`, `format`, `ordering`, `page_size` (unbounded) allowed;
- cursor pages of 100, newest first; `Accept: application/json; version=1.0.0` or none (406);
  a trailing slash is required (GET without: 301, any other method: 500);
- only issue, data_product and code_run take PATCH/PUT, only code_run DELETE; a new object gets
  a `whole_object` component; OPTIONS lists `filter_fields` and, with a token, `actions.POST`;
- files: `POST /api/data/<sha1>` hands out a presigned PUT on an S3 bucket (moto in server
  mode) and nothing else, or 409 when the bucket holds that SHA-1, or, without object storage,
  the upstream's 500; `GET /data/<sha1>` redirects to a presigned GET (for a file recorded
  under the data root; 404 otherwise). The storage root `<base>/data/` exists from the start,
  as the upstream's set_site_info makes it.

Known differences: uniqueness is our schema's (so also `licence` (object, licence_info)), and
names must also be canonical as our store requires; `ordering` takes only `id` or `-id`.

Every request is counted (by method and path shape), as are the presigned requests that
reach the bucket, so tests and benchmarks can report requests per product. Run this file to
serve an emulation in its own process (it prints one JSON line with its address and token
file, and serves until SIGTERM).
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import re
import secrets
import signal
import sys
import threading
import uuid as uuidlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import flask

from fdp_tasks.scalars import parse_bool
from fdp_tasks.server.app import JSON_TYPES, field_errors
from fdp_tasks.server.serve import _make_server, _serve_until
from fdp_tasks.store.base import InvalidRecord, NotFound, Record, UniqueViolation
from fdp_tasks.store.schema import Field, RecordType
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token
from fdp_tasks.store.values import BadValue, parse_datetime
from fdp_tasks.versions import is_semver

API_VERSION = "1.0.0"
USERNAME = "admin"
LIST_EXTRAS = ("cursor", "format", "ordering", "page_size")
PAGE_SIZE = 100
URL_LIFETIME = 3600
NO_BUCKETS = "'Settings' object has no attribute 'BUCKETS'"
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
ACCESS_KEY = "fdp-emulation"
SECRET_KEY = "fdp-emulation-secret"
REGION = "us-east-1"

# NameField on the upstream: anchored glob filters, and '[', ']', '?', '*' refused in values.
NAME_FIELDS = {
    ("author", "name"),
    ("namespace", "name"),
    ("object_component", "name"),
    ("data_product", "name"),
    ("keyword", "keyphrase"),
    ("code_repo_release", "name"),
}
URL_FIELDS = {
    ("author", "identifier"),
    ("namespace", "website"),
    ("external_object", "identifier"),
    ("licence", "identifier"),
    ("code_repo_release", "website"),
}
VERSION_FIELDS = {("data_product", "version"), ("code_repo_release", "version")}
# Model fields that are NOT NULL upstream although our schema leaves them optional.
EXTRA_REQUIRED = {"external_object": ("release_date", "title")}
# Reverse relations among a model's field names: listed as filters, accepted, and ignored.
REVERSE_FILTERS: dict[str, tuple[str, ...]] = {
    "file_type": ("object",),
    "issue": ("component_issues",),
    "author": ("object", "userauthor"),
    "object": (
        "code_repo_of",
        "config_of",
        "submission_script_of",
        "components",
        "data_products",
        "code_repo_release",
        "quality_control",
        "quality_control_document",
        "keywords",
        "licences",
        "metadata",
    ),
    "object_component": ("inputs_of", "outputs_of"),
    "storage_root": ("locations",),
    "storage_location": ("location_for_object", "original_store_of"),
    "namespace": ("data_products",),
    "data_product": ("external_object",),
}
# One-to-one reverse relations, shown as one URL (or null) rather than a list.
SINGLE_REVERSE = {("data_product", "external_object")}
WRITABLE = {"issue": {"PATCH", "PUT"}, "data_product": {"PATCH", "PUT"}}
WRITABLE["code_run"] = {"PATCH", "PUT", "DELETE"}
DRF_TYPES = JSON_TYPES  # the field types DRF's OPTIONS metadata names, as our server's
ID_SEGMENT = re.compile(r"^\d+$")
SHA1_SEGMENT = re.compile(r"^[0-9a-fA-F]{40}$")


class Answer(Exception):
    """A finished HTTP answer, raised from anywhere inside a view."""

    def __init__(
        self,
        status: int,
        body: Any = None,
        headers: dict[str, str] | None = None,
        text: str | None = None,
    ):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.text = text

    def response(self) -> flask.Response:
        if self.text is not None:
            return flask.Response(
                self.text, self.status, headers=self.headers, mimetype="text/plain"
            )
        if self.body is None:
            return flask.Response(b"", self.status, headers=self.headers)
        return _json(self.body, self.status, self.headers)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> flask.Response:
    return flask.Response(
        json.dumps(body), status=status, headers=headers, mimetype="application/json"
    )


def request_shape(method: str, path: str) -> str:
    """`GET /api/object/12/` -> `GET /api/object/{id}/`: groups requests for counting."""
    parts = []
    for part in path.split("/"):
        if ID_SEGMENT.match(part):
            part = "{id}"
        elif SHA1_SEGMENT.match(part):
            part = "{sha1}"
        parts.append(part)
    return f"{method.upper()} {'/'.join(parts)}"


def author_uuid(identifier: str) -> str:
    """The uuid the upstream's Author.save gives an author with an identifier."""
    return str(uuidlib.UUID(hashlib.sha256(identifier.encode("utf-8")).hexdigest()[::2]))


def filter_fields(rtype: RecordType) -> list[str]:
    """What OPTIONS lists and a listing accepts: the model's field names, reverse ones too."""
    if rtype.name == "users":
        return ["username"]
    names = [*REVERSE_FILTERS.get(rtype.name, ()), *rtype.reverse, "updated_by", "last_updated"]
    return list(dict.fromkeys([*names, *rtype.fields]))


def _valid_url(text: str) -> bool:
    split = urlsplit(text)
    return split.scheme in ("http", "https", "ftp", "ftps") and bool(split.netloc)


def _model_table(type_name: str) -> str:
    return f"data_management_{type_name.replace('_', '')}"


# ---------------------------------------------------------------------------- object store
class ObjectStore:
    """An S3 API (moto in server mode) on 127.0.0.1, one bucket per emulated registry.

    Like S3, it refuses a presigned request that also carries an `Authorization` header
    ("Only one auth mechanism allowed"), so a client that sends its registry token to the
    object store fails here as it would there. Presigned requests are counted per bucket.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {}
        self.server: Any = None
        self.endpoint = ""

    @classmethod
    def start(cls) -> ObjectStore:
        """Start the S3 server on a free port; returns once it accepts connections."""
        from moto.server import ThreadedMotoServer

        store = cls()

        class GatedMotoServer(ThreadedMotoServer):
            # ThreadedMotoServer's own entry, with the gate in front of moto's app and
            # without a log line per request.
            def _server_entry(self) -> None:
                from moto.moto_server.werkzeug_app import (
                    DomainDispatcherApplication,
                    MotoRequestHandler,
                    create_backend_app,
                )
                from werkzeug.serving import make_server

                class QuietHandler(MotoRequestHandler):
                    def log_request(self, *args: Any, **kwargs: Any) -> None:
                        pass

                app = store.gate(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(
                    self._ip_address, self._port, app, True, request_handler=QuietHandler
                )
                self._server_ready_event.set()
                self._server.serve_forever()

        server = GatedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        store.server = server
        store.endpoint = f"http://{host}:{port}"
        return store

    def gate(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """WSGI middleware: count presigned requests, refuse them with a second credential."""

        def gated(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
            presigned = "Signature" in query or "X-Amz-Signature" in query
            if presigned:
                bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
                with self.lock:
                    self.counts.setdefault(bucket, Counter())[environ["REQUEST_METHOD"]] += 1
            if presigned and environ.get("HTTP_AUTHORIZATION"):
                body = (
                    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument'
                    b"</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm "
                    b"query parameter, Signature query string parameter or the Authorization "
                    b"header should be specified</Message></Error>"
                )
                start_response(
                    "400 Bad Request",
                    [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
                )
                return [body]
            return app(environ, start_response)

        return gated

    def client(self) -> Any:
        """A boto3 S3 client for this server (what the upstream presigns with)."""
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self) -> str:
        """A new, empty bucket of its own for one emulated registry."""
        name = f"fdp-{secrets.token_hex(8)}"
        self.client().create_bucket(Bucket=name)
        return name

    def requests(self, bucket: str) -> Counter[str]:
        """Presigned requests that reached `bucket`, by method."""
        with self.lock:
            return Counter(self.counts.get(bucket, Counter()))

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


# ---------------------------------------------------------------------------- the app
class UpstreamApp:
    """The registry's views: the upstream's behaviour over our store."""

    def __init__(self, store: Store, objects: ObjectStore | None = None, bucket: str | None = None):
        self.store = store
        self.schema = store.schema
        self.objects = objects
        self.bucket = bucket
        self.s3 = objects.client() if objects else None
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.flask = flask.Flask(__name__)
        for rule in ("/", "/<path:path>"):
            self.flask.add_url_rule(
                rule,
                rule,
                self.dispatch,
                methods=ALL_METHODS,
                strict_slashes=False,
                provide_automatic_options=False,
            )
        self.flask.register_error_handler(Answer, lambda exc: exc.response())

    # ---------------------------------------------------------------- plumbing
    def base(self) -> str:
        return flask.request.host_url.rstrip("/")

    def data_root(self) -> str:
        return f"{self.base()}/data/"

    def url(self, type_name: str, record_id: int | None) -> str | None:
        if record_id is None:
            return None
        return f"{self.base()}/api/{type_name}/{record_id}/"

    def dispatch(self, path: str = "") -> flask.Response:
        req = flask.request
        if req.path == "/_emulation/counts":  # for a benchmark's harness; not counted
            with self.lock:
                counts = dict(self.counts)
            if self.objects is not None and self.bucket is not None:
                stored = self.objects.requests(self.bucket)
                counts.update({f"S3 {method}": n for method, n in stored.items()})
            return _json(counts)
        with self.lock:
            self.counts[request_shape(req.method, req.path)] += 1
        try:
            return self.route(req.path, req.method)
        except Answer as answer:
            return answer.response()

    def route(self, path: str, method: str) -> flask.Response:
        if path.startswith("/api"):
            self.check_accept()
        if match := re.fullmatch(r"/data/([^/]+)", path):
            if method not in ("GET", "HEAD"):
                raise Answer(405, text="Method Not Allowed")
            return self.get_data(match[1])
        if match := re.fullmatch(r"/api/data/([^/]+)", path):
            return self.object_storage(match[1], method)
        if path == "/api/":
            self.authenticate()
            return self.index()
        if path == "/api/username/":
            return self.username()
        if match := re.fullmatch(r"/api/(\w+)/", path):
            return self.collection(match[1], method)
        if match := re.fullmatch(r"/api/(\w+)/(\d+)/", path):
            return self.detail(match[1], int(match[2]), method)
        if not path.endswith("/") and self.resolves(path + "/"):
            if method in ("GET", "HEAD"):
                query = flask.request.query_string.decode("latin-1")
                location = path + "/" + (f"?{query}" if query else "")
                raise Answer(301, headers={"Location": location}, text="")
            # Django's CommonMiddleware, DEBUG on: it cannot redirect a body-carrying request.
            raise Answer(
                500,
                text=f"RuntimeError at {path}: You called this URL via {method}, but the URL "
                "doesn't end in a slash and you have APPEND_SLASH set.",
            )
        raise Answer(404, text="Not Found")

    def resolves(self, path: str) -> bool:
        if path in ("/api/", "/api/username/"):
            return True
        match = re.fullmatch(r"/api/(\w+)/(?:\d+/)?", path)
        return bool(match) and (match[1] in self.schema or match[1] == "groups")

    def check_accept(self) -> None:
        """DRF's Accept-header versioning: only 1.0.0 (or no version) is served."""
        for media in flask.request.headers.get("Accept", "").split(","):
            for param in media.split(";")[1:]:
                key, _, value = param.strip().partition("=")
                if key.strip() == "version" and value.strip() != API_VERSION:
                    raise Answer(406, {"detail": 'Invalid version in "Accept" header.'})

    def authenticate(self) -> Record | None:
        """DRF TokenAuthentication: no header is anonymous, a bad one is a 403."""
        header = flask.request.headers.get("Authorization", "")
        parts = header.split()
        if not parts or parts[0].lower() != "token":
            return None
        if len(parts) == 1:
            raise Answer(403, {"detail": "Invalid token header. No credentials provided."})
        if len(parts) > 2:
            raise Answer(
                403, {"detail": "Invalid token header. Token string should not contain spaces."}
            )
        user = self.store.user_for_token(parts[1])
        if user is None:
            raise Answer(403, {"detail": "Invalid token."})
        return user

    def require_user(self) -> Record:
        user = self.authenticate()
        if user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        return user

    def rtype(self, type_name: str) -> RecordType:
        if type_name not in self.schema:
            raise Answer(404, text="Not Found")
        return self.schema[type_name]

    # ---------------------------------------------------------------- views
    def index(self) -> flask.Response:
        names = ["users", "groups", *(n for n in self.schema.types if n != "users")]
        return _json({name: f"{self.base()}/api/{name}/" for name in names})

    def username(self) -> flask.Response:
        user = self.require_user()
        return _json({"username": user["username"]})

    def collection(self, type_name: str, method: str) -> flask.Response:
        if type_name == "groups":
            self.require_user()
            return _json({"count": 0, "next": None, "previous": None, "results": []})
        rtype = self.rtype(type_name)
        user = self.authenticate()
        if rtype.private and user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        if method == "OPTIONS":
            return self.options(rtype, user, detail=False)
        if method in ("GET", "HEAD"):
            return self.listing(rtype)
        if method == "POST" and not rtype.private:
            return self.create(rtype, user)
        if user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        raise Answer(405, {"detail": f'Method "{method}" not allowed.'})

    def detail(self, type_name: str, record_id: int, method: str) -> flask.Response:
        rtype = self.rtype(type_name)
        user = self.authenticate()
        if rtype.private and user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        if method == "OPTIONS":
            return self.options(rtype, user, detail=True)
        if method not in SAFE_METHODS and user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        allowed = WRITABLE.get(type_name, set())
        if method not in ("GET", "HEAD") and method not in allowed:
            raise Answer(405, {"detail": f'Method "{method}" not allowed.'})
        current = self.fetch(rtype, record_id)
        if method in ("GET", "HEAD"):
            return _json(self.wire(rtype, [current])[0])
        assert user is not None
        if method == "DELETE":
            try:
                self.store.delete(type_name, record_id)
            except InvalidRecord as exc:
                raise Answer(500, text=f"ProtectedError: {exc}") from None
            return flask.Response(b"", 204)
        data = self.incoming(rtype, self.body(), partial=method == "PATCH")
        try:
            record = self.store.patch(type_name, record_id, data, user_id=user["id"])
        except UniqueViolation as exc:
            raise Answer(400, {"non_field_errors": [str(exc)]}) from None
        except InvalidRecord as exc:
            raise Answer(400, field_errors(exc, type_name)) from None
        return _json(self.wire(rtype, [record])[0])

    def fetch(self, rtype: RecordType, record_id: int) -> Record:
        try:
            return self.store.get(rtype.name, record_id, full=True)
        except NotFound:
            raise Answer(404, {"detail": "Not found."}) from None

    def body(self) -> dict[str, Any]:
        raw = flask.request.get_data(cache=False)
        try:
            body = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise Answer(400, {"detail": f"JSON parse error - {exc}"}) from None
        if not isinstance(body, dict):
            raise Answer(
                400,
                {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]},
            )
        return body

    # ---------------------------------------------------------------- create
    def create(self, rtype: RecordType, user: Record | None) -> flask.Response:
        if user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        data = self.incoming(rtype, self.body(), partial=False)
        if rtype.name == "author":
            if data.get("identifier"):
                data["uuid"] = author_uuid(data["identifier"])  # Author.save
            elif not data.get("name"):
                raise Answer(
                    409,
                    {
                        "detail": "CHECK constraint failed: "
                        "data_management_author_identifier_and_or_name"
                    },
                )
        try:
            record = self.store.create(rtype.name, data, user_id=user["id"])
        except UniqueViolation as exc:
            raise Answer(409, {"detail": _clash_text(rtype.name, exc.key)}) from None
        except InvalidRecord as exc:
            raise Answer(400, field_errors(exc, rtype.name)) from None
        return _json(self.wire(rtype, [record])[0], 201)

    def incoming(self, rtype: RecordType, body: dict[str, Any], partial: bool) -> dict[str, Any]:
        """Validate a body as the upstream's serializers do; unknown fields are ignored."""
        data: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        required = {f.name for f in rtype.fields.values() if f.required}
        required |= set(EXTRA_REQUIRED.get(rtype.name, ()))
        for f in rtype.fields.values():
            if f.name not in body:
                if f.name in required and not partial:
                    errors[f.name] = ["This field is required."]
                continue
            value = body[f.name]
            try:
                if value is None or (value == "" and f.is_fk):
                    if f.name in required:
                        raise BadValue("This field may not be null.")
                    data[f.name] = [] if f.is_m2m else None
                elif value == "" and f.name in required:
                    raise BadValue("This field may not be blank.")
                elif f.is_fk:
                    data[f.name] = self.resolve(value, f.to or "")
                elif f.is_m2m:
                    if not isinstance(value, list):
                        kind = type(value).__name__
                        raise BadValue(f'Expected a list of items but got type "{kind}".')
                    data[f.name] = [self.resolve(v, f.to or "") for v in value]
                else:
                    data[f.name] = _scalar(rtype.name, f, value)
            except BadValue as exc:
                errors[f.name] = [str(exc)]
        if errors:
            raise Answer(400, errors)
        return data

    def resolve(self, value: Any, target: str) -> int:
        """A hyperlink's id: the path alone is resolved, whichever host the URL names."""
        if not isinstance(value, str):
            raise BadValue(f"Incorrect type. Expected URL string, received {type(value).__name__}.")
        path = urlsplit(value).path if value.startswith(("http:", "https:")) else value
        match = re.fullmatch(r"/api/(\w+)/(\d+)/", path)
        if not match or match[1] not in self.schema:
            raise BadValue("Invalid hyperlink - No URL match.")
        if match[1] != target:
            raise BadValue("Invalid hyperlink - Incorrect URL match.")
        if self.store.find_one(target, {"id": int(match[2])}) is None:
            raise BadValue("Invalid hyperlink - Object does not exist.")
        return int(match[2])

    # ---------------------------------------------------------------- listing
    def listing(self, rtype: RecordType) -> flask.Response:
        args = flask.request.args
        accepted = filter_fields(rtype)
        extras = LIST_EXTRAS if rtype.name != "users" else ("cursor", "format")
        if set(args) - set(accepted) - set(extras):
            allowed = ", ".join([*accepted, *extras])
            raise Answer(
                400,
                {
                    "detail": "Invalid query arguments, only query arguments "
                    f"[{allowed}] are allowed"
                },
            )
        filters, checks = self.filters(rtype)
        size = _positive_int(args.get("page_size"), PAGE_SIZE)
        ascending = args.get("ordering") == "id"
        forward, mark = self.cursor(args.get("cursor"))
        try:
            if not checks and not ascending and forward:
                count = self.store.count(rtype.name, filters)
                rows = self.store.find(
                    rtype.name, filters, limit=size + 1, before_id=mark, full=True
                )
                page, more = rows[:size], len(rows) > size
            else:
                every = [
                    r
                    for r in self.store.find(rtype.name, filters, full=True)
                    if all(c(r) for c in checks)
                ]
                if ascending:
                    every.reverse()
                count = len(every)
                page, more = _window(every, mark, size, forward, ascending)
        except InvalidRecord as exc:
            raise Answer(400, field_errors(exc, rtype.name)) from None
        older = more if forward else mark is not None
        newer = mark is not None if forward else more
        return _json(
            {
                "count": count,
                "next": self.page_link(rtype.name, {"p": page[-1]["id"]})
                if older and page
                else None,
                "previous": self.page_link(rtype.name, {"r": 1, "p": page[0]["id"]})
                if newer and page
                else None,
                "results": self.wire(rtype, page),
            }
        )

    def cursor(self, text: str | None) -> tuple[bool, int | None]:
        """(forward, position) from a DRF-style cursor: base64 of 'p=<id>' or 'r=1&p=<id>'."""
        if not text:
            return True, None
        try:
            raw = base64.b64decode(text.encode("ascii") + b"=" * (-len(text) % 4)).decode()
            fields = parse_qs(raw, keep_blank_values=True)
            return fields.get("r", ["0"])[0] != "1", int(fields["p"][0])
        except (ValueError, KeyError, UnicodeError):
            raise Answer(404, {"detail": "Invalid cursor"}) from None

    def page_link(self, type_name: str, position: dict[str, Any]) -> str:
        cursor = base64.b64encode(urlencode(position).encode()).decode()
        params = [(k, v) for k, v in flask.request.args.items(multi=True) if k != "cursor"]
        params.append(("cursor", cursor))
        return f"{self.base()}/api/{type_name}/?{urlencode(params)}"

    def filters(self, rtype: RecordType) -> tuple[dict[str, Any], list[Callable[[Record], bool]]]:
        """Store filters from the query, plus checks the store cannot express as the upstream
        means them (globs with '?' or '[', exact matches where our store would glob)."""
        filters: dict[str, Any] = {}
        checks: list[Callable[[Record], bool]] = []
        args = flask.request.args
        ignored = set(REVERSE_FILTERS.get(rtype.name, ())) | set(rtype.reverse)
        for key in args:
            if key in LIST_EXTRAS or key in ignored:
                continue  # reverse relations: accepted and silently ignored, as upstream
            values = [v for v in args.getlist(key) if v != ""]
            if not values:
                continue
            value = values[-1]
            if key == "updated_by":
                filters[key] = _number(key, value)
                continue
            if key == "last_updated":
                moment = _moment(key, value)
                checks.append(lambda r, m=moment: r.get("last_updated") == m)
                continue
            self.field_filter(rtype, key, values, filters, checks)
        return filters, checks

    def field_filter(
        self,
        rtype: RecordType,
        key: str,
        values: list[str],
        filters: dict[str, Any],
        checks: list[Callable[[Record], bool]],
    ) -> None:
        """One model field's filter, into `filters` (for the store) or `checks`."""
        value = values[-1]
        f = rtype.fields[key]
        if f.is_fk:
            filters[key] = _number(key, value)
        elif f.is_m2m:
            wanted = {self.choice(key, f.to or "", v) for v in values}
            checks.append(lambda r, k=key, w=wanted: bool(w & set(r.get(k) or [])))
        elif f.kind == "boolean":
            text = value.strip().lower()
            if text in ("true", "1", "false", "0"):
                filters[key] = text in ("true", "1")
        elif f.kind == "integer":
            filters[key] = _number(key, value)
        elif f.kind == "uuid":
            try:
                filters[key] = str(uuidlib.UUID(value))
            except ValueError:
                raise Answer(400, {key: ["Enter a valid UUID."]}) from None
        elif f.kind == "datetime":
            filters[key] = _moment(key, value)
        elif (rtype.name, key) in NAME_FIELDS and any(c in value for c in "?["):
            pattern = re.compile(r"\A" + fnmatch.translate(value))
            checks.append(lambda r, k=key, p=pattern: bool(p.match(r.get(k) or "")))
        elif (rtype.name, key) not in NAME_FIELDS and "*" in value and key in rtype.glob:
            checks.append(lambda r, k=key, v=value: r.get(k) == v)  # exact upstream
        else:
            filters[key] = value

    def choice(self, key: str, target: str, value: str) -> int:
        """A many-to-many filter value: the id of an existing record, or a 400."""
        text = value.strip()
        if text.isdigit() and self.store.find_one(target, {"id": int(text)}) is not None:
            return int(text)
        raise Answer(
            400, {key: [f"Select a valid choice. {value} is not one of the available choices."]}
        )

    # ---------------------------------------------------------------- records
    def wire(self, rtype: RecordType, records: list[Record]) -> list[dict[str, Any]]:
        """Records as the upstream's serializers show them."""
        # One-to-one reverse relations of an object, looked up once per answer.
        single: dict[str, tuple[str, dict[int, int]]] = {}
        if rtype.name == "object" and records:
            for name, other in (
                ("code_repo_release", "code_repo_release"),
                ("quality_control", "quality_controlled"),
            ):
                single[name] = (other, {r["object"]: r["id"] for r in self.store.find(other)})
        out = []
        for rec in records:
            if rtype.name == "users":
                out.append(
                    {
                        "url": self.url("users", rec["id"]),
                        "username": rec["username"],
                        "full_name": rec.get("full_name"),
                        "email": rec.get("email"),
                        "orgs": [],
                    }
                )
                continue
            body: dict[str, Any] = {
                "url": self.url(rtype.name, rec["id"]),
                "last_updated": rec.get("last_updated"),
                "updated_by": self.url("users", rec.get("updated_by")),
            }
            for f in rtype.fields.values():
                value = rec.get(f.name)
                if f.is_fk:
                    body[f.name] = self.url(f.to or "", value)
                elif f.is_m2m:
                    body[f.name] = [self.url(f.to or "", v) for v in value or []]
                else:
                    body[f.name] = value
            for rname, (other, _via) in rtype.reverse.items():
                urls = [self.url(other, v) for v in rec.get(rname) or []]
                if (rtype.name, rname) in SINGLE_REVERSE:
                    body[rname] = urls[0] if urls else None
                else:
                    body[rname] = urls
            for name, (other, by_object) in single.items():
                body[name] = self.url(other, by_object.get(rec["id"]))
            if rtype.name == "data_product":
                body["prov_report"] = f"{self.base()}/api/prov-report/{rec['id']}/"
                body["ro_crate"] = f"{self.base()}/api/ro-crate/data-product/{rec['id']}/"
            elif rtype.name == "code_run":
                body["ro_crate"] = f"{self.base()}/api/ro-crate/code-run/{rec['id']}/"
            out.append(body)
        return out

    def options(self, rtype: RecordType, user: Record | None, detail: bool) -> flask.Response:
        """DRF SimpleMetadata plus the upstream's `filter_fields`."""
        title = rtype.name.replace("_", " ").title()
        body: dict[str, Any] = {
            "name": f"{title} {'Instance' if detail else 'List'}",
            "description": "",
            "renders": ["application/json", "text/html"],
            "parses": ["application/json", "application/x-www-form-urlencoded"],
        }
        action = "PUT" if detail else "POST"
        allowed = "PUT" in WRITABLE.get(rtype.name, set()) if detail else not rtype.private
        if user is not None and allowed:
            body["actions"] = {action: self.field_info(rtype)}
        body["filter_fields"] = filter_fields(rtype)
        return _json(body)

    def field_info(self, rtype: RecordType) -> dict[str, Any]:
        def info(kind: str, required: bool, read_only: bool, name: str) -> dict[str, Any]:
            label = name.replace("_", " ").capitalize()
            return {"type": kind, "required": required, "read_only": read_only, "label": label}

        required = set(EXTRA_REQUIRED.get(rtype.name, ()))
        fields = {
            "url": info("field", False, True, "url"),
            "last_updated": info("datetime", False, True, "last_updated"),
            "updated_by": info("field", False, True, "updated_by"),
        }
        for f in rtype.fields.values():
            kind = "url" if (rtype.name, f.name) in URL_FIELDS else DRF_TYPES[f.kind]
            fields[f.name] = info(kind, f.required or f.name in required, False, f.name)
        for rname in rtype.reverse:
            fields[rname] = info("field", False, True, rname)
        return fields

    # ---------------------------------------------------------------- files
    def object_storage(self, checksum: str, method: str) -> flask.Response:
        user = self.authenticate()
        if method not in SAFE_METHODS and user is None:
            raise Answer(403, {"detail": "Authentication credentials were not provided."})
        if method != "POST":
            raise Answer(405, {"detail": f'Method "{method}" not allowed.'})
        if self.s3 is None:
            raise Answer(500, text=NO_BUCKETS)
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=checksum)
        except ClientError:
            pass
        else:
            raise Answer(409)
        url = self.s3.generate_presigned_url(
            "put_object", Params={"Bucket": self.bucket, "Key": checksum}, ExpiresIn=URL_LIFETIME
        )
        return _json({"url": url})

    def get_data(self, name: str) -> flask.Response:
        """A redirect to a presigned GET, for a file registered under the data root."""
        root = self.store.find_one("storage_root", {"root": self.data_root()})
        location = (
            self.store.find_one("storage_location", {"storage_root": root["id"], "path": name})
            if root
            else None
        )
        if location is None or self.s3 is None:
            raise Answer(404, text="Not Found")
        filename = None
        for obj in self.store.find("object", {"storage_location": location["id"]}):
            private = self.store.find_one(
                "key_value", {"object": obj["id"], "key": "accessibility"}
            )
            if private and private["value"] == "private":
                raise Answer(403, text="")  # only a browser session could read it
            if obj.get("file_type"):
                extension = self.store.get("file_type", obj["file_type"])["extension"]
                filename = f"{name}.{extension}"
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if filename:
            params["ResponseContentDisposition"] = f"attachment; filename = {filename}"
        url = self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=URL_LIFETIME)
        raise Answer(302, headers={"Location": url}, text="")


def _scalar(type_name: str, f: Field, value: Any) -> Any:
    """A scalar body value checked as the upstream's serializer field would."""
    if f.kind == "boolean":
        try:
            return parse_bool(value)  # DRF's BooleanField takes the same words
        except ValueError:
            raise BadValue("Must be a valid boolean.") from None
    if f.kind == "integer":
        try:
            return int(str(value))
        except ValueError:
            raise BadValue("A valid integer is required.") from None
    if f.kind == "datetime":
        try:
            return parse_datetime(value)
        except BadValue:
            raise BadValue(
                "Datetime has wrong format. Use one of these formats instead: "
                "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
            ) from None
    if f.kind == "uuid":
        try:
            return str(uuidlib.UUID(str(value)))
        except ValueError:
            raise BadValue("Must be a valid UUID.") from None
    if isinstance(value, (dict, list)):
        raise BadValue("Not a valid string.")
    text = str(value)
    if (type_name, f.name) in NAME_FIELDS and any(c in text for c in "[]?*"):
        raise BadValue(f"Name {text} contains invalid characters ([]?*).")
    if (type_name, f.name) in VERSION_FIELDS and not is_semver(text):
        raise BadValue(f"Version {text} is not a valid semantic version.")
    if (type_name, f.name) in URL_FIELDS and not _valid_url(text):
        raise BadValue("Enter a valid URL.")
    return text


def _clash_text(type_name: str, key: tuple[str, ...]) -> str:
    """The upstream's 409 detail: its serializer's words, or the database's on a uuid."""
    if key == ("uuid",):
        return f"UNIQUE constraint failed: {_model_table(type_name)}.uuid"
    if len(key) == 1:
        return f"Field {key[0]} must be unique"
    return "Field non_field_errors must be unique"


def _number(key: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise Answer(400, {key: ["Enter a number."]}) from None


def _moment(key: str, value: str) -> str:
    try:
        return parse_datetime(value)
    except BadValue:
        raise Answer(400, {key: ["Enter a valid date/time."]}) from None


def _positive_int(text: str | None, default: int) -> int:
    try:
        number = int(text or "")
    except ValueError:
        return default
    return number if number > 0 else default


def _window(
    rows: list[Record], mark: int | None, size: int, forward: bool, ascending: bool
) -> tuple[list[Record], bool]:
    """One page of `rows` (in listing order) after the cursor's position, or before it for a
    previous page, and whether more lie beyond the page in that direction."""
    if mark is None:
        return rows[:size], len(rows) > size

    def after(record_id: int) -> bool:
        return record_id > mark if ascending else record_id < mark

    if forward:
        rest = [r for r in rows if after(r["id"])]
        return rest[:size], len(rest) > size
    rest = [r for r in rows if not after(r["id"]) and r["id"] != mark]
    return rest[-size:], len(rest) > size


# ---------------------------------------------------------------------------- running
@dataclass
class Upstream:
    """An emulated upstream registry serving in a thread of this process."""

    base_url: str
    store: Store
    token: str
    token_file: Path
    app: UpstreamApp
    object_store: ObjectStore | None = None
    bucket: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def data_root(self) -> str:
        """The storage root of files uploaded to this registry: `<base>/data/`."""
        return f"{self.base_url}/data/"

    def headers(self, token: str | None = "") -> dict[str, str]:
        """Headers as data-pipeline-api sends them; token "" means this registry's token."""
        headers = {"Accept": f"application/json; version={API_VERSION}"}
        token = self.token if token == "" else token
        if token:
            headers["Authorization"] = f"token {token}"
        return headers

    @property
    def requests(self) -> Counter[str]:
        """Requests this registry answered, by method and path shape."""
        with self.app.lock:
            return Counter(self.app.counts)

    @property
    def object_store_requests(self) -> Counter[str]:
        """Presigned requests that reached this registry's bucket, by method."""
        if self.object_store is None or self.bucket is None:
            return Counter()
        return self.object_store.requests(self.bucket)

    def reset_counts(self) -> None:
        with self.app.lock:
            self.app.counts.clear()
        if self.object_store is not None and self.bucket is not None:
            with self.object_store.lock:
                self.object_store.counts.pop(self.bucket, None)

    def bucket_keys(self) -> list[str]:
        """The keys (SHA-1s) the bucket holds."""
        if self.object_store is None:
            return []
        client = self.object_store.client()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return keys

    def object_bytes(self, key: str) -> bytes:
        assert self.object_store is not None
        got = self.object_store.client().get_object(Bucket=self.bucket, Key=key)
        return got["Body"].read()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def start_upstream(
    base: Path,
    object_store: ObjectStore | None = None,
    storage_root: bool = True,
    port: int = 0,
    threads: int = 8,
) -> Upstream:
    """Serve a fresh emulated registry (database and token under `base`) on 127.0.0.1.

    With `object_store`, files go to a bucket of their own there; without it the registry
    has no file storage (`POST /api/data/<sha1>` is the upstream's 500). `storage_root=False`
    leaves out the `<base>/data/` root that the upstream's set-up creates, for a client to
    create it.
    """
    base.mkdir(parents=True, exist_ok=True)
    store = Store(base / "registry.db")
    token_file = base / "token"
    token = working_token(store, USERNAME, file=token_file)
    bucket = object_store.create_bucket() if object_store else None
    app = UpstreamApp(store, object_store, bucket)
    server = _make_server(app.flask, "127.0.0.1", port, threads)
    base_url = f"http://127.0.0.1:{server.effective_port}"
    if storage_root:
        user = store.ensure_user(USERNAME)
        store.create("storage_root", {"root": f"{base_url}/data/"}, user_id=user["id"])
    upstream = Upstream(base_url, store, token, token_file, app, object_store, bucket)
    upstream._thread = threading.Thread(
        target=_serve_until, args=(server, upstream._stop), name="fdp-upstream", daemon=True
    )
    upstream._thread.start()
    return upstream


def main(argv: Iterable[str] | None = None) -> int:
    """Serve an emulation in this process until SIGTERM or Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="database and token go here")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-object-storage", action="store_true")
    args = parser.parse_args(list(argv) if argv is not None else None)
    objects = None if args.no_object_storage else ObjectStore.start()
    upstream = start_upstream(args.dir, objects, port=args.port)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    print(
        json.dumps(
            {
                "base_url": upstream.base_url,
                "token_file": str(upstream.token_file),
                "bucket": upstream.bucket,
            }
        ),
        flush=True,
    )
    stopping.wait()
    upstream.stop()
    if objects:
        objects.stop()
    return 0


def remote_counts(base_url: str) -> Counter[str]:
    """The request counts of an emulation serving in another process: its registry's by
    method and path shape, its bucket's as `S3 <method>`."""
    import requests

    return Counter(requests.get(f"{base_url}/_emulation/counts", timeout=10).json())


if __name__ == "__main__":
    sys.exit(main())
