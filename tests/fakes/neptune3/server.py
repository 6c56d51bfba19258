"""``FakeNeptune3``: a local HTTP server speaking the Neptune 3.x API to the unmodified clients.

Start it, point the clients at it with ``client_env()`` (or ``api_token`` + ``project``), and either write
with neptune-scale or declare data with ``data`` (the builder). Everything runs on 127.0.0.1 with an
ephemeral port, in a ``ThreadingHTTPServer`` on a daemon thread.

Bootstrap paths served (both client generations):

- neptune-query >= 1.10: ``GET /api/backend/v1/authorization/oauth-token`` only.
- neptune-query <= 1.9 and neptune-scale: ``GET /api/backend/v1/clients/config`` (no auth), then the OpenID
  discovery document it names, then the token exchange.
- Refresh: ``POST {iss}/protocol/openid-connect/token`` (form data), used once the JWT ``exp`` is near.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from ..common import FakeHTTPServer, FakeRequestHandler, ServedFake
from . import read_api, write_api
from .builder import DataBuilder
from .faults import Fault, FaultInjector
from .read_api import Answer, NotFound
from .store import Store
from .tokens import CLIENT_ID, REALM_PATH, TokenIssuer, decode_api_token, make_api_token

STORAGE_PREFIX = "/_fake_storage/"


@dataclass
class RequestRecord:
    """One request as the fake saw it (for assertions on paging and retries)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int
    body: Any  # decoded JSON body for JSON requests, else None
    fault: str | None
    started: float


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8")) if self.raw else {}

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


Handler = Callable[["FakeNeptune3", _Request], Answer]


class _HttpServer(FakeHTTPServer):
    request_queue_size = 128  # neptune-query opens up to 32 connections at once; the stdlib default is 5
    fake: FakeNeptune3

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout, reset) breaks the pipe mid-answer; note it instead of printing."""
        self.fake.disconnects += 1


class _RequestHandler(FakeRequestHandler):
    # headers and body go out in two sends; without TCP_NODELAY every small answer waits ~40 ms for the
    # client's delayed ACK, which made the fake, not our code, the bottleneck of small-run exports
    disable_nagle_algorithm = True
    server: _HttpServer

    def _handle(self) -> None:
        split = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            raw=self.read_body(),
        )
        answer = self.server.fake.dispatch(request)
        if answer is None:  # a "reset" fault: drop the connection without answering
            self.drop_connection()
            return
        self.send_answer(answer.status, answer.body, answer.headers, answer.content_type)

    do_GET = do_POST = do_PUT = do_HEAD = _handle


class FakeNeptune3(ServedFake):
    """The fake backend. Use as a context manager or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        project: str = "fake-workspace/fake-project",
        *,
        api_key: str = "fake-api-key",
        series_page_points: int = 10_000,
        token_ttl_seconds: float = 24 * 3600,
        host: str = "127.0.0.1",
    ) -> None:
        self.project = project
        self.api_key = api_key
        self.valid_api_keys: set[str] = {api_key}
        self.series_page_points = series_page_points
        self.store = Store()
        self.store.project(project, create=True)
        self.faults = FaultInjector()
        self.requests: list[RequestRecord] = []
        self.server_errors: list[str] = []  # tracebacks of handler crashes (a test should keep this empty)
        self.disconnects = 0  # connections the client dropped while the fake was answering
        self.host = host
        self._token_ttl = token_ttl_seconds
        self._issuer: TokenIssuer | None = None
        self._lock = threading.Lock()
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"^/api/backend/v1/clients/config$"), FakeNeptune3._client_config),
            (
                "GET",
                re.compile(rf"^{REALM_PATH}/\.well-known/openid-configuration$"),
                FakeNeptune3._discovery,
            ),
            ("POST", re.compile(rf"^{REALM_PATH}/protocol/openid-connect/token$"), FakeNeptune3._refresh),
            ("GET", re.compile(r"^/api/backend/v1/authorization/oauth-token$"), FakeNeptune3._exchange),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/proto/leaderboard/entries/search/?$"),
                FakeNeptune3._search,
            ),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/proto/leaderboard/entries/global/search/?$"),
                FakeNeptune3._global_search,
            ),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/leaderboard/attributes/definitions/query$"),
                FakeNeptune3._definitions,
            ),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/proto/leaderboard/attributes/query$"),
                FakeNeptune3._values,
            ),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/proto/attributes/series/float$"),
                FakeNeptune3._float_series,
            ),
            ("POST", re.compile(r"^/api/leaderboard/v1/proto/attributes/series$"), FakeNeptune3._series),
            (
                "POST",
                re.compile(r"^/api/leaderboard/v1/proto/attributes/timeseries/buckets$"),
                FakeNeptune3._buckets,
            ),
            ("POST", re.compile(r"^/api/storagebridge/v1/signedUrl$"), FakeNeptune3._signed_url),
            ("POST", re.compile(r"^/api/client/v1/ingest$"), FakeNeptune3._ingest),
            ("POST", re.compile(r"^/api/client/v1/ingest/check$"), FakeNeptune3._ingest_check),
            ("GET", re.compile(rf"^{STORAGE_PREFIX}"), FakeNeptune3._blob_get),
            ("PUT", re.compile(rf"^{STORAGE_PREFIX}"), FakeNeptune3._blob_put),
        ]
        self._public = re.compile(
            rf"^(/api/backend/v1/clients/config|/api/backend/v1/authorization/oauth-token|{REALM_PATH}/|{STORAGE_PREFIX})"
        )

    # -- lifecycle, addresses, tokens, environment (stop, port, base_url: ServedFake) ----------------------
    def start(self) -> FakeNeptune3:
        """Bind to an ephemeral port and serve from a daemon thread."""
        if self._httpd is not None:
            return self
        self._bind(_HttpServer, _RequestHandler)
        self._issuer = TokenIssuer(self.base_url, access_ttl_seconds=self._token_ttl)
        self._serve("fake-neptune3", poll_interval=0.05)
        return self

    @property
    def api_token(self) -> str:
        """A valid Neptune API token for this server (base64 JSON with ``api_address`` and ``api_url``)."""
        return make_api_token(self.base_url, self.api_key)

    def make_api_token(self, api_key: str | None = None, *, valid: bool = True) -> str:
        """Another token for this server; a distinct key gives the client a fresh (uncached) HTTP client."""
        key = api_key or f"key-{len(self.valid_api_keys)}-{time.monotonic_ns()}"
        if valid:
            self.valid_api_keys.add(key)
        return make_api_token(self.base_url, key)

    @property
    def token_ttl_seconds(self) -> float:
        return self._token_ttl

    @token_ttl_seconds.setter
    def token_ttl_seconds(self, value: float) -> None:
        """Lifetime of access tokens issued from now on. The clients refresh when fewer than 30 s remain."""
        self._token_ttl = value
        if self._issuer is not None:
            self._issuer.access_ttl_seconds = value

    def client_env(self, log_directory: str | None = None, *, retry_soft_timeout: int = 10) -> dict[str, str]:
        """Environment variables that point unmodified neptune-query / neptune-scale at this fake.

        Plain HTTP needs no flag. Proxies are bypassed for 127.0.0.1, retry budgets are cut from 30-60 min
        to seconds so a mistake fails fast instead of hanging, and neptune-scale's logs go to
        ``log_directory`` when given. neptune-scale has no such knob (its 360 s retry budget is a constant):
        always pass a timeout to ``Run.close()`` / ``wait_for_processing()`` in tests.
        """
        env = {
            "NEPTUNE_API_TOKEN": self.api_token,
            "NEPTUNE_PROJECT": self.project,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "NEPTUNE_QUERY_RETRY_SOFT_TIMEOUT": str(retry_soft_timeout),
            "NEPTUNE_QUERY_RETRY_HARD_TIMEOUT": str(max(30, retry_soft_timeout * 3)),
            "NEPTUNE_HTTP_REQUEST_TIMEOUT_SECONDS": "20",
            "NEPTUNE_QUERY_FILES_TIMEOUT": "20",
            "NEPTUNE_ENABLE_COLORS": "false",
            "NEPTUNE_DISABLE_COLORS": "true",
        }
        if log_directory is not None:
            env["NEPTUNE_LOG_DIRECTORY"] = str(log_directory)
        return env

    # -- data and inspection -----------------------------------------------------------------------------
    @property
    def data(self) -> DataBuilder:
        """Builder that declares projects/runs/series directly in the store (no HTTP)."""
        return DataBuilder(self.store, default_project=self.project)

    def count(self, path_regex: str, method: str | None = None) -> int:
        """How many requests matched ``path_regex`` (and ``method``) so far."""
        pattern = re.compile(path_regex)
        with self._lock:
            return sum(
                1
                for r in self.requests
                if pattern.search(r.path) and (method is None or r.method.upper() == method.upper())
            )

    def requests_to(self, path_regex: str) -> list[RequestRecord]:
        pattern = re.compile(path_regex)
        with self._lock:
            return [r for r in self.requests if pattern.search(r.path)]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- dispatch ------------------------------------------------------------------------------------------
    def dispatch(self, request: _Request) -> Answer | None:
        """Record the request (before answering, so slow ones are visible), apply faults, route."""
        body = None
        if request.raw and request.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = request.json()
            except ValueError:
                body = None
        record = RequestRecord(request.method, request.path, request.query, 0, body, None, time.time())
        with self._lock:
            self.requests.append(record)
        fault = self.faults.take(request.method, request.path, request.raw or b"")
        answer: Answer | None
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "slow":
                time.sleep(fault.delay)
        if fault is not None and fault.kind != "slow":
            answer = self._fault_answer(fault)
        else:
            answer = self._route(request)
        record.status = 0 if answer is None else answer.status
        return answer

    @staticmethod
    def _fault_answer(fault: Fault) -> Answer | None:
        if fault.kind == "reset":
            return None
        if fault.kind == "429":
            answer = Answer.error(fault.status or 429, "Too Many Requests", "TOO_MANY_REQUESTS")
            answer.headers["Retry-After"] = _retry_after(1.0 if fault.retry_after is None else fault.retry_after)
            return answer
        if fault.kind == "expired_token":
            return Answer.error(401, "Access token expired", "UNAUTHORIZED")
        if fault.kind == "access_denied":
            return Answer.error(fault.status or 403, "Access denied", "ACCESS_DENIED")
        status = fault.status or (503 if fault.kind == "5xx" else 500)
        if fault.body is not None:
            answer = (
                Answer(status, fault.body, "application/octet-stream")
                if isinstance(fault.body, bytes)
                else Answer.json(fault.body, status)
            )
        else:
            answer = Answer.error(status, f"injected HTTP {status}")
        if fault.retry_after is not None:
            answer.headers["Retry-After"] = _retry_after(fault.retry_after)
        return answer

    def _route(self, request: _Request) -> Answer:
        for method, pattern, handler in self._routes:
            if (
                method == request.method or (method == "GET" and request.method == "HEAD")
            ) and pattern.search(request.path):
                if not self._public.search(request.path):
                    denied = self._check_bearer(request)
                    if denied is not None:
                        return denied
                try:
                    return handler(self, request)
                except NotFound as e:
                    return Answer.error(404, str(e), "NOT_FOUND")
                except Exception:
                    trace = traceback.format_exc()
                    self.server_errors.append(trace)
                    return Answer.error(500, "fake server error:\n" + trace)
        return Answer.error(404, f"no route for {request.method} {request.path}", "NOT_FOUND")

    def _check_bearer(self, request: _Request) -> Answer | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return Answer.error(401, "missing bearer token", "UNAUTHORIZED")
        assert self._issuer is not None
        reason = self._issuer.check_access_token(auth[len("Bearer ") :])
        return None if reason is None else Answer.error(401, reason, "UNAUTHORIZED")

    # -- auth handlers ------------------------------------------------------------------------------------
    def _client_config(self, request: _Request) -> Answer:
        return Answer.json(
            {
                "apiUrl": self.base_url,
                "applicationUrl": self.base_url,
                "pyLibVersions": {},
                "security": {
                    "clientId": CLIENT_ID,
                    "openIdDiscovery": f"{self.base_url}{REALM_PATH}/.well-known/openid-configuration",
                },
            }
        )

    def _discovery(self, request: _Request) -> Answer:
        issuer = f"{self.base_url}{REALM_PATH}"
        return Answer.json(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
                "token_endpoint": f"{issuer}/protocol/openid-connect/token",
            }
        )

    def _exchange(self, request: _Request) -> Answer:
        token = request.headers.get("X-Neptune-Api-Token", "")
        data = decode_api_token(token)
        if data is None or data.get("api_key") not in self.valid_api_keys:
            return Answer(401, b"", "application/json")
        assert self._issuer is not None
        return Answer.json(
            {
                "accessToken": self._issuer.access_token(),
                "refreshToken": self._issuer.refresh_token(),
                "username": "fake-user",
            }
        )

    def _refresh(self, request: _Request) -> Answer:
        form = parse_qs(request.raw.decode("utf-8"))
        if form.get("grant_type", [""])[0] != "refresh_token" or not form.get("refresh_token", [""])[0]:
            return Answer.json({"error": "invalid_grant"}, 400)
        assert self._issuer is not None
        return Answer.json(
            {
                "access_token": self._issuer.access_token(),
                "refresh_token": self._issuer.refresh_token(),
                "token_type": "Bearer",
                "expires_in": int(self._issuer.access_ttl_seconds),
            }
        )

    # -- read handlers ------------------------------------------------------------------------------------
    def _search(self, request: _Request) -> Answer:
        return read_api.search_entries(self.store, request.param("projectIdentifier"), request.json())

    def _global_search(self, request: _Request) -> Answer:
        return read_api.global_search_entries(self.store, request.json())

    def _definitions(self, request: _Request) -> Answer:
        return read_api.query_definitions(self.store, request.json())

    def _values(self, request: _Request) -> Answer:
        return read_api.query_attribute_values(self.store, request.param("projectIdentifier"), request.json())

    def _float_series(self, request: _Request) -> Answer:
        return read_api.float_series(self.store, request.json())

    def _series(self, request: _Request) -> Answer:
        deprecated = (request.param("useDeprecatedStringFields") or "false").lower() == "true"
        return read_api.series_values(self.store, request.json(), self.series_page_points, deprecated)

    def _buckets(self, request: _Request) -> Answer:
        return read_api.timeseries_buckets(self.store, request.raw)

    def _signed_url(self, request: _Request) -> Answer:
        return read_api.signed_urls(request.json(), self.sign_url)

    def sign_url(self, project: str, path: str, permission: str = "read") -> str:
        """URL of a blob in the fake's storage (``provider: aws``, so the clients use plain GET/PUT)."""
        return (
            f"{self.base_url}{STORAGE_PREFIX}{quote(project, safe='')}/{quote(path, safe='/')}"
            f"?X-Fake-Permission={permission}&X-Fake-Expires={int(time.time()) + 3600}"
        )

    @staticmethod
    def _blob_key(request: _Request) -> tuple[str, str]:
        rest = request.path[len(STORAGE_PREFIX) :]
        project, _, path = rest.partition("/")
        return unquote(project), unquote(path)

    def _blob_get(self, request: _Request) -> Answer:
        data = self.store.blobs.get(self._blob_key(request))
        if data is None:
            return Answer(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        return Answer(200, data, "application/octet-stream")

    def _blob_put(self, request: _Request) -> Answer:
        with self.store.lock:
            self.store.blobs[self._blob_key(request)] = request.raw
        return Answer(200, b"", "text/plain", {"ETag": '"' + hashlib.md5(request.raw).hexdigest() + '"'})

    # -- write handlers ------------------------------------------------------------------------------------
    def _ingest(self, request: _Request) -> Answer:
        return Answer(body=write_api.ingest(self.store, request.raw))

    def _ingest_check(self, request: _Request) -> Answer:
        return Answer(body=write_api.check_status(self.store, request.raw))


def _retry_after(value: float | str) -> str:
    """Seconds (``7``) or, given as a string, verbatim (an HTTP date)."""
    return value if isinstance(value, str) else f"{value:g}"
