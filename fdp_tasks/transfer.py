"""HTTP for all of fdp-tasks: sessions, the one retry policy, circuit breakers, downloads.

Every HTTP session fdp-tasks opens, every request it sends and every download comes from
here (`new_session`, `send`, `download`), so the registry client and the storages retry,
resume, back off and keep tokens to themselves the same way:

- **What is retried.** A connection that was never made (refused, connect timeout) always;
  one that dropped after the request went out (a reset, a read timeout) and answers 500,
  502, 503 and 504 only for requests that may safely run twice (GET, PUT, ... or a POST
  whose caller says so, such as an idempotent create that re-reads on a clash). 429 always:
  the server says it did nothing.
- **How long.** Exponential backoff with jitter, `Retry-After` (seconds or an HTTP date)
  obeyed on 429 and 503, a bounded number of attempts and of seconds waited per request.
- **When to stop trying.** A `CircuitBreaker` per remote counts failed attempts with no
  success between; past its threshold every further request to that remote fails at once
  with one message, so a remote that died mid-push costs seconds, not minutes. A success
  (after a cool-down, one request is let through to probe) closes it again.

Reading a file wherever a storage root says it is (a local directory, file:// or
http(s)://) is here too (`open_location`).
"""

from __future__ import annotations

import email.utils
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions

from fdp_tasks.datastore import local_root, safe_relative
from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.files import read_chunks

log = logging.getLogger(__name__)

_session: requests.Session | None = None
USER_AGENT = "fdp-tasks"
# Small enough that a dropped connection loses little of what it had already brought.
NETWORK_CHUNK = 64 * 1024
# A connection that fails, stalls, or ends before the body does: worth another try.
DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)
# Answers worth another try: the server may be back a moment later.
RETRY_STATUS = (500, 502, 503, 504)
# "Too many requests": the server did nothing and says so; worth another try for any method.
THROTTLED = 429
# Answers whose Retry-After header says how long to wait.
RETRY_AFTER_STATUS = (THROTTLED, 503)
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDIRECTS = (301, 302, 303, 307, 308)
MAX_HOPS = 10
# Seconds a registry client waits for an answer unless FDP_HTTP_TIMEOUT says otherwise.
DEFAULT_TIMEOUT = 30.0
TIMEOUT_VARIABLE = "FDP_HTTP_TIMEOUT"


def http_timeout() -> float:
    """How long to wait for a remote's answer (seconds): `FDP_HTTP_TIMEOUT` when set (a
    slow link or a registry behind a slow proxy needs more), else DEFAULT_TIMEOUT."""
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise BadInput(
            f"{TIMEOUT_VARIABLE}={text!r}: expected a number of seconds greater than 0, "
            "such as 30 or 120"
        )
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long one request is tried again.

    The n-th wait is `backoff * 2**(n-1)`, at most `max_wait`, less a random part of up to
    `jitter` of it (so clients that failed together do not come back together). A
    `Retry-After` the server sends replaces the computed wait. All waits of one request
    together stay under `budget` seconds: a server that asks for more is not waited for.
    """

    attempts: int = 5
    backoff: float = 0.2
    max_wait: float = 10.0
    budget: float = 60.0
    jitter: float = 0.5

    def delay(self, failures: int) -> float:
        """The wait after the `failures`-th failed attempt."""
        base = min(self.max_wait, self.backoff * 2 ** max(0, failures - 1))
        return base * (1 - self.jitter * random.random())  # noqa: S311 - not for secrets


DEFAULT_POLICY = RetryPolicy()


def retry_after(resp: requests.Response) -> float | None:
    """The seconds a 429 or 503 answer asks the client to wait (`Retry-After` as seconds or
    as an HTTP date), or None when it asks nothing usable."""
    if resp.status_code not in RETRY_AFTER_STATUS:
        return None
    value = (resp.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class RemoteUnavailable(FdpError):
    """A remote's circuit breaker is open: it stopped answering (or never answered this
    command), so nothing more is sent."""

    def __init__(self, label: str, why: str, answered: bool = True):
        state = "stopped answering" if answered else "does not answer"
        super().__init__(f"{label} {state}: {why}")
        self.label = label
        self.why = why
        self.answered = answered


class NoAnswer(FdpError):
    """A request got no answer at all, after the retries the policy allows (or none, when a
    repeat was not safe). Callers say it in their own words from `method`, `url`, `why`."""

    def __init__(self, method: str, url: str, why: str, attempts: int):
        super().__init__(f"{method} {_safe(url)}: no answer ({why} after {attempts} attempt(s))")
        self.method = method
        self.url = url
        self.why = why
        self.attempts = attempts


class CircuitBreaker:
    """Open after `threshold` failed attempts in a row at one remote, closed by a success.

    While open, `check` raises `RemoteUnavailable` at once, naming the first failure that
    opened it; every `cooldown` seconds one request is let through to probe whether the
    remote is back. Thread-safe: the transfers of `--jobs N` share one breaker per remote.
    """

    def __init__(self, label: str, threshold: int = 6, cooldown: float = 30.0):
        self.label = label
        self.threshold = max(1, threshold)
        self.cooldown = cooldown
        self.failures = 0
        self.refused = 0  # requests failed at once while open
        self.answered = False  # the remote has answered this command once at least
        self._why = ""
        self._opened_at: float | None = None
        self._last_try = 0.0  # when it opened, or the last probe went
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> None:
        """Raise RemoteUnavailable while open, except for one probe per cool-down."""
        with self._lock:
            if self._opened_at is None:
                return
            now = time.monotonic()
            if now >= self._last_try + self.cooldown:
                self._last_try = now
                return
            self.refused += 1
            why = self._why
        raise RemoteUnavailable(self.label, why, self.answered)

    def failed(self, why: str) -> None:
        with self._lock:
            self.failures += 1
            if self._opened_at is None and self.failures >= self.threshold:
                self._why = why
                self._opened_at = self._last_try = time.monotonic()
                log.debug("%s: circuit open after %d failures (%s)", self.label, self.failures, why)

    def succeeded(self) -> None:
        with self._lock:
            self.answered = True
            self.failures = 0
            self._opened_at = None
            self._why = ""


def describe_drop(exc: BaseException) -> str:
    """A dropped request in a few words: connection refused, reset, timed out, ..."""
    text = str(exc).lower()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    for needle, words in (
        ("refused", "connection refused"),
        ("reset", "connection reset"),
        ("aborted", "connection aborted"),
        ("remotedisconnected", "connection closed by the server"),
        ("closed connection", "connection closed by the server"),
        ("name or service", "host not found"),
    ):
        if needle in text.replace(" ", "") or needle in text:
            return words
    return type(exc).__name__


def never_sent(exc: BaseException) -> bool:
    """Whether a failed request certainly never reached the server (no connection was
    made), so that sending it again cannot do anything twice."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason: Any = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)
    return isinstance(
        reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)
    )


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    breaker: CircuitBreaker | None = None,
    retry_safe: bool | None = None,
    expected: Container[int] = (),
    body: Callable[[], Any] | None = None,
    **kwargs: Any,
) -> requests.Response:
    """One HTTP request under the retry policy (see the module docstring); returns the answer,
    which may still be a 5xx once the retries are spent. `retry_safe` says whether the
    request may run twice (by default: whether the method is idempotent); a status in
    `expected` is the caller's to handle and never retried. `body`, when given, makes a
    fresh request body for each attempt (closed after it). Raises NoAnswer when no attempt
    got an answer, RemoteUnavailable when the breaker is open."""
    safe = method.upper() in IDEMPOTENT if retry_safe is None else retry_safe
    failures = 0
    waited = 0.0
    while True:
        if breaker is not None:
            breaker.check()
        asked: float | None = None
        if body is not None:
            kwargs["data"] = body()
        try:
            resp = session.request(method, url, **kwargs)
        except DROPPED as exc:
            why = describe_drop(exc)
            failures += 1
            if breaker is not None:
                breaker.failed(f"{method} {_path(url)}: {why}")
            pause = policy.delay(failures)
            if (
                (not safe and not never_sent(exc))
                or failures >= policy.attempts
                or waited + pause > policy.budget
            ):
                raise NoAnswer(method, url, why, failures) from None
        else:
            status = resp.status_code
            retried = status == THROTTLED or (safe and status in RETRY_STATUS)
            if status in expected or not retried:
                if breaker is not None:
                    if status >= 500 and status not in expected:
                        breaker.failed(f"{method} {_path(url)}: the server answered {status}")
                    else:
                        breaker.succeeded()
                return resp
            failures += 1
            asked = retry_after(resp)
            pause = policy.delay(failures) if asked is None else asked
            if failures >= policy.attempts or waited + pause > policy.budget:
                if breaker is not None and status >= 500:
                    breaker.failed(f"{method} {_path(url)}: the server answered {status}")
                if asked is not None and waited + pause > policy.budget:
                    log.info(
                        "%s %s: asked to wait %.0f s, more than the retry budget",
                        method,
                        _safe(url),
                        asked,
                    )
                return resp
            resp.close()
        finally:
            close = getattr(kwargs.get("data"), "close", None)
            if body is not None and close is not None:
                close()
        log.debug(
            "%s %s: attempt %d failed, waiting %.2f s%s",
            method,
            _safe(url),
            failures,
            pause,
            " as Retry-After asked" if asked is not None else "",
        )
        time.sleep(pause)
        waited += pause


def send_to(
    who: str,
    failure: Callable[[str], FdpError],
    session: requests.Session,
    method: str,
    url: str,
    **options: Any,
) -> requests.Response:
    """`send`, for a client that names its remote in its own words (`who`: "the registry at
    https://...", or just the origin): a request that got no answer raises `failure` with
    one line naming the method, the path and `who`, and an open circuit breaker says `who`
    in its reason, so the registry client and the file storages tell it alike."""
    try:
        return send(session, method, url, **options)
    except NoAnswer as exc:
        raise failure(
            f"{method} {urlsplit(url).path}: no answer from {who} ({exc.why} after "
            f"{exc.attempts} attempt(s))"
        ) from None
    except RemoteUnavailable as exc:
        raise RemoteUnavailable(
            exc.label, f"no answer from {who} ({exc.why})", exc.answered
        ) from None


def new_session(headers: Mapping[str, str] | None = None) -> requests.Session:
    """A keep-alive HTTP session that names fdp-tasks, with these default headers."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    session.headers.update(headers or {})
    return session


def http_session() -> requests.Session:
    """The process's session for files at http(s):// storage roots."""
    global _session
    if _session is None:
        _session = new_session()
    return _session


def download(
    url: str,
    *,
    session: requests.Session | None = None,
    auth: Callable[[str], Mapping[str, str]] | None = None,
    attempts: int = 5,
    backoff: float = 0.2,
    timeout: float | tuple[float, float] = (10, 60),
    start: int = 0,
    end: int | None = None,
    policy: RetryPolicy | None = None,
    breaker: CircuitBreaker | None = None,
) -> Iterator[bytes]:
    """Stream the bytes at `url` (from offset `start` up to, not including, `end` when
    given) under the retry policy (by default `attempts` and `backoff`): a dropped
    connection or a 5xx answer is tried again, and what already arrived is not asked for
    again (Range, checked against Content-Range).

    Redirects are followed here, each hop getting only the headers `auth` gives for its
    URL, so a registry's token never reaches the object store it redirects to; a refused
    redirect target (an expired presigned URL) sends the request to `url` again.
    """
    session = session or http_session()
    policy = policy or RetryPolicy(attempts=max(1, attempts), backoff=backoff)
    received = failures = hops = 0
    waited = 0.0
    target = url

    def again(why: str, asked: float | None = None) -> None:
        nonlocal failures, waited
        failures += 1
        if breaker is not None:
            breaker.failed(f"GET {_path(url)}: {why}")
        pause = policy.delay(failures) if asked is None else asked
        if failures >= policy.attempts or waited + pause > policy.budget:
            raise FdpError(
                f"GET {_safe(url)}: failed {failures} times, the last after {received} bytes "
                f"({why})"
            )
        log.debug(
            "GET %s: attempt %d failed (%s), waiting %.2f s", _safe(url), failures, why, pause
        )
        time.sleep(pause)
        waited += pause

    while True:
        if breaker is not None:
            breaker.check()
        headers = {"Accept": "*/*", **(auth(target) if auth else {})}
        offset = start + received
        if offset or end is not None:
            headers["Range"] = f"bytes={offset}-{'' if end is None else end - 1}"
        try:
            resp = session.get(
                target, headers=headers, stream=True, timeout=timeout, allow_redirects=False
            )
        except DROPPED as exc:
            again(describe_drop(exc))
            continue
        with resp:
            status = resp.status_code
            moved = status in REDIRECTS
            if moved or (status in (401, 403) and target != url):
                hops += 1
                target = _next_hop(resp, target, url, hops)
                continue
            if status == 416 and offset:
                return  # nothing is left after what arrived
            if status in RETRY_STATUS or status == THROTTLED:
                again(f"the server answered {status}", retry_after(resp))
                continue
            if breaker is not None:
                breaker.succeeded()
            left = None if end is None else end - start - received
            try:
                for block in _capped(_resumed_body(resp, target, offset), left):
                    received += len(block)
                    yield block
                return
            except DROPPED as exc:
                again(describe_drop(exc))


def _capped(blocks: Iterator[bytes], left: int | None) -> Iterator[bytes]:
    """The non-empty blocks of `blocks`, cut after `left` bytes when that is given."""
    for block in blocks:
        if left is not None:
            block = block[:left]
            left -= len(block)
        if block:
            yield block
        if left is not None and left <= 0:
            return


def _next_hop(resp: requests.Response, target: str, url: str, hops: int) -> str:
    """Where a download goes after a redirect (its Location), or back to `url` after a
    redirect target refused it."""
    if hops > MAX_HOPS:
        raise FdpError(f"GET {_safe(url)}: redirected or refused too often")
    location = resp.headers.get("Location") if resp.status_code in REDIRECTS else None
    return urljoin(target, location) if location else url


def _resumed_body(resp: requests.Response, target: str, received: int) -> Iterator[bytes]:
    """The bytes of an answer that follow the `received` already had: a 206 must start
    exactly there, and of a 200 (a server that ignores Range) the first bytes are dropped."""
    status = resp.status_code
    if status not in (200, 206):
        raise HttpStatusError(f"GET {_safe(target)}: {status} {resp.reason or ''}".rstrip(), status)
    if status == 206 and not resp.headers.get("Content-Range", "").startswith(f"bytes {received}-"):
        raise FdpError(f"GET {_safe(target)}: the server cannot resume at byte {received}")
    skip = received if status == 200 else 0
    for block in resp.iter_content(NETWORK_CHUNK):
        if skip:
            cut = min(skip, len(block))
            block, skip = block[cut:], skip - cut
        if block:
            yield block


class HttpStatusError(FdpError):
    """A download answered with a status that no retry changes (404, 403, ...)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def location_url(root: str, path: str) -> str:
    """root + path, as the FAIR Data Pipeline joins them (the path never escapes the root)."""
    rel = safe_relative(path, f"its storage root {root}")
    return root if not rel else (root if root.endswith("/") else root + "/") + rel


def open_location(root: str, path: str, attempts: int = 5, start: int = 0) -> Iterator[bytes]:
    """Stream the bytes at root + path from offset `start` on; HTTP downloads resume with
    Range after a drop."""
    base = local_root(root)
    if base is not None:
        file = base.resolve() / safe_relative(path, f"its storage root {root}")
        if not file.is_file():
            raise FdpError(f"{file} does not exist (storage root {root}, path {path})")
        return _file_chunks(file, start)
    if root.startswith(("http://", "https://")):
        return download(location_url(root, path), attempts=attempts, start=start)
    raise FdpError(f"storage root {root!r}: only file://, http:// and https:// are supported")


def _file_chunks(file: Path, start: int = 0) -> Iterator[bytes]:
    with open(file, "rb") as fh:
        fh.seek(start)
        yield from read_chunks(fh)


def _path(url: str) -> str:
    """The path of a URL: what a message about a remote already named needs of it."""
    return urlsplit(url).path or "/"


def _safe(url: str) -> str:
    """A URL without its query string, which may hold a signature."""
    return url.split("?", 1)[0]
