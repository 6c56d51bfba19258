"""Fake Neptune 2.x backend: a stdlib HTTP server that the unmodified neptune 1.x client can read from.

Why a real HTTP server: the client downloads Swagger specs, exchanges its API token for a JWT, refreshes it
through a Keycloak-style endpoint and then talks bravado over ``requests``; only a server exercises all of that
(type conversion, paging, retries, error mapping) the way a real self-hosted 2.x backend would.

Typical use::

    srv = FakeNeptune2Server().start()
    srv.add_project("ws/proj")
    srv.add_run("ws/proj", attrs={"params/lr": 0.1}, float_series={"train/loss": [0.9, 0.5, 0.2]})
    env = srv.client_env()          # NEPTUNE_API_TOKEN, OAUTHLIB_INSECURE_TRANSPORT, NO_PROXY, TZ, ...
    srv.faults.add(r"/attributes/series/float", "5xx", times=1)
    srv.stop()
"""

from __future__ import annotations

import io
import json
import re
import secrets
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np

from ..common import (
    FakeHTTPServer,
    FakeRequestHandler,
    FaultRule,
    FaultRules,
    ServedFake,
    check_fault_kind,
    decode_api_token,
    hs256_claims,
    hs256_jwt,
    make_api_token,
    method_matches,
)
from . import spec as specs
from .model import (
    Artifact,
    Container,
    FileSeries,
    FileSet,
    FloatSeries,
    Project,
    RunState,
    StringSeries,
    attr_type,
    attribute_dto,
    attribute_properties,
    format_datetime,
    make_artifact,
    make_file,
    make_file_series,
    make_file_set,
    make_float_series,
    make_string_series,
    ms_to_datetime,
    to_ms,
)
from .nql import NQLSyntaxError, compile_query

JSON = dict[str, Any]

MAX_SERVER_OFFSET = 10_000
TOKEN_VERSION_MESSAGE = "Parameter 'X-Neptune-Api-Token' missing or invalid"
DEFAULT_BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
OAUTH_CLIENT_ID = "neptune-cli"


class HttpError(Exception):
    """Raised by handlers to answer with an error status and a JSON body."""

    def __init__(
        self, status: int, body: JSON | None = None, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body or {}
        self.headers = dict(headers or {})


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    path_params: dict[str, str] = field(default_factory=dict)

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def q_int(self, name: str, default: int) -> int:
        raw = self.q(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError as e:
            raise HttpError(400, {"title": "Bad request", "message": f"{name} must be an integer"}) from e

    def q_list(self, name: str) -> list[str] | None:
        values = self.query.get(name)
        if not values:
            return None
        return [part for v in values for part in v.split(",") if part]

    def required(self, name: str) -> str:
        value = self.q(name)
        if value is None:
            raise HttpError(400, {"title": "Bad request", "message": f"Missing parameter {name}"})
        return value

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise HttpError(400, {"title": "Bad request", "message": "body is not JSON"}) from e


@dataclass
class RequestRecord:
    """One served request, for per-endpoint accounting in tests and benchmarks."""

    method: str
    path: str
    op: str
    query: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    fault: str | None = None


FAULT_KINDS = ("5xx", "429", "401", "403", "404", "token_version", "token_expired", "slow", "drop", "error")


@dataclass
class Fault(FaultRule):
    """An injected failure.  ``pattern`` is searched in the request path or must fully match the operationId."""

    pattern: str
    kind: str
    times: int | None = 1
    status: int | None = None
    retry_after: str | None = "1"
    delay: float = 1.0
    body: JSON | None = None
    method: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str, op: str) -> bool:
        if not method_matches(self.method, method):
            return False
        return re.search(self.pattern, path) is not None or re.fullmatch(self.pattern, op) is not None


class Faults(FaultRules[Fault]):
    """Registry of injected faults, consumed in insertion order; ``times=None`` means forever.

    ``take(method, path, op)``: the operationId is matched too."""

    def add(
        self,
        pattern: str,
        kind: str,
        times: int | None = 1,
        *,
        status: int | None = None,
        retry_after: str | None = "1",
        delay: float = 1.0,
        body: JSON | None = None,
        method: str | None = None,
    ) -> Fault:
        """Kinds: ``5xx`` (status default 500), ``429`` (with ``Retry-After: retry_after`` unless None),
        ``401``, ``403``, ``404``, ``token_version`` (the 400 "X-Neptune-Api-Token missing or invalid"),
        ``token_expired`` (401 ``AUTHORIZATION_TOKEN_EXPIRED``), ``slow`` (sleep ``delay`` s, then serve),
        ``drop`` (close the connection without an answer), ``error`` (any ``status`` and ``body``)."""
        check_fault_kind(kind, FAULT_KINDS)
        return self._register(Fault(pattern, kind, times, status, retry_after, delay, body, method))

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.rules)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, datetime):
        return format_datetime(obj)
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=_json_default).encode()


def _json(obj: Any, status: int = 200) -> Response:
    return Response(status, _dumps(obj), {"Content-Type": "application/json"})


class _Handler(FakeRequestHandler):
    timeout = 60
    wbufsize = 1 << 16  # one write per small response; headers and body in separate packets stall on ACKs
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.fake._dispatch(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._dispatch(self, "POST")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.fake._dispatch(self, "PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.fake._dispatch(self, "DELETE")


class _HTTPServer(FakeHTTPServer):
    fake: FakeNeptune2Server


class FakeNeptune2Server(ServedFake):
    """In-process fake of a self-hosted Neptune 2.x server.

    Data: ``add_project``, ``add_run``, ``add_model``, ``add_model_version``.  Faults: ``faults.add(...)``.
    Accounting: ``counts`` (operationId -> requests), ``requests`` (list of RequestRecord with query and
    headers; set ``record_requests = False`` to keep only the counts in long benchmarks).
    Knobs: ``latency`` (seconds added to every request), ``max_offset`` (leaderboard window, 10 000),
    ``artifacts_enabled``, ``channel_api_enabled``, ``file_set_prepare_polls`` (polls answered without a
    download URL), ``access_token_ttl`` (seconds), ``config_overrides`` (merged into ClientConfig),
    ``string_series_max_value_length`` (truncate served string-series values, like legacy servers did).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, username: str = "fake-user") -> None:
        self.host = host
        self._requested_port = port
        self.username = username
        self.latency = 0.0
        self.max_offset = MAX_SERVER_OFFSET
        self.artifacts_enabled = True
        self.channel_api_enabled = True
        self.file_set_prepare_polls = 0
        self.access_token_ttl = 365 * 24 * 3600
        self.config_overrides: JSON = {}
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self.requests: list[RequestRecord] = []

        self._lock = threading.RLock()
        self._signing_key = secrets.token_bytes(32)
        self._api_keys: set[str] = set()
        self._refresh_tokens: set[str] = set()
        self._projects: dict[str, Project] = {}  # qualified name -> project
        self._projects_by_id: dict[str, Project] = {}
        self._org_ids: dict[str, str] = {}
        self._by_uuid: dict[str, Container] = {}
        self._channels: dict[str, tuple[Container, str]] = {}
        self._artifacts: dict[tuple[str, str], Artifact] = {}
        self._download_requests: dict[str, list[Any]] = {}
        self._model_version_counters: dict[str, int] = {}
        self._container_counter = 0
        self._version = 0
        self._search_cache: dict[tuple[Any, ...], list[Container]] = {}
        self._attr_def_cache: dict[tuple[Any, ...], list[tuple[str, str]]] = {}

        self.string_series_max_value_length: int | None = None
        self.record_requests = True
        self._routes, self._template_routes = self._build_routes()
        self._default_token = ""

    # ------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> FakeNeptune2Server:
        """Bind (port 0 = an ephemeral port) and serve from a daemon thread; ``stop()`` or use ``with``."""
        self._bind(_HTTPServer, _Handler, self._requested_port)
        self._serve("fake-neptune2")
        self._default_token = self.make_api_token("fake-api-key")
        return self

    # --------------------------------------------------------------------------------------------- tokens

    @property
    def api_token(self) -> str:
        """The default API token: base64 JSON with ``api_address`` and ``api_url`` pointing at this server."""
        return self._default_token

    def make_api_token(self, api_key: str | None = None) -> str:
        """A new valid API token.  A distinct token defeats the client's per-token caches (config, exchange)."""
        api_key = api_key or secrets.token_hex(8)
        self._api_keys.add(api_key)
        return make_api_token(self.base_url, api_key)

    def client_env(self, *, retries_timeout: int = 5, api_token: str | None = None) -> dict[str, str]:
        """Environment variables that point an unmodified neptune 1.x client (or a subprocess) at this fake."""
        return {
            "NEPTUNE_API_TOKEN": api_token or self.api_token,
            "OAUTHLIB_INSECURE_TRANSPORT": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "TZ": "UTC",
            "NEPTUNE_RETRIES_TIMEOUT": str(retries_timeout),
        }

    def _jwt(self, ttl: float) -> str:
        now = int(time.time())
        claims = {
            "exp": now + int(ttl),
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": self.base_url + specs.OAUTH_REALM_PATH,
            "azp": OAUTH_CLIENT_ID,
            "sub": self.username,
            "preferred_username": self.username,
        }
        return hs256_jwt(self._signing_key, claims)

    def _check_bearer(self, req: Request) -> None:
        auth = req.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise HttpError(401, {"title": "Unauthorized", "message": "missing bearer token"})
        try:
            claims = hs256_claims(self._signing_key, auth[len("Bearer ") :])
        except ValueError as e:
            raise HttpError(401, {"title": "Unauthorized", "message": "invalid bearer token"}) from e
        if claims.get("exp", 0) < time.time():
            raise HttpError(401, {"errorType": "AUTHORIZATION_TOKEN_EXPIRED", "title": "Token expired"})

    def _check_api_token(self, req: Request, *, known_key: bool) -> None:
        """Malformed or missing token header -> the 400 the exporter reads as "wrong token version";
        an unknown ``api_key`` -> 401 (checked on the exchange, which the client maps to an invalid token)."""
        data = decode_api_token(req.headers.get("X-Neptune-Api-Token") or "")
        if data is None or "api_key" not in data:
            raise HttpError(400, {"title": "Bad request", "message": TOKEN_VERSION_MESSAGE})
        if known_key and data["api_key"] not in self._api_keys:
            raise HttpError(401, {"title": "Unauthorized", "message": "Invalid API token"})

    # -------------------------------------------------------------------------------------------- builder

    def add_project(
        self, name: str, *, key: str | None = None, attrs: Mapping[str, Any] | None = None, version: int = 2
    ) -> Project:
        """Declare project ``workspace/name``; ``key`` defaults to the upper-cased name (sys ids ``KEY-1``...)."""
        workspace, _, pname = name.partition("/")
        if not workspace or not pname or "/" in pname:
            raise ValueError(f"project name must be 'workspace/project', got {name!r}")
        with self._lock:
            if name in self._projects:
                raise ValueError(f"project {name} already exists")
            key = key or (re.sub(r"[^A-Z0-9]", "", pname.upper())[:10] or "PROJ")
            org_id = self._org_ids.setdefault(workspace, str(uuid.uuid4()))
            project = Project(str(uuid.uuid4()), workspace, pname, key, org_id, version=version)
            created = self._tick(None)
            sys_attrs: dict[str, Any] = {
                "sys/id": key,
                "sys/name": pname,
                "sys/creation_time": ms_to_datetime(created),
                "sys/modification_time": ms_to_datetime(created),
                "sys/ping_time": ms_to_datetime(created),
                "sys/owner": self.username,
                "sys/size": 0.0,
                "sys/trashed": False,
                "sys/description": "",
                "sys/tags": set(),
                "sys/visibility": "priv",
            }
            container = Container(project.id, key, "project", project, sys_attrs, insertion=-1)
            project.container = container
            self._projects[name] = project
            self._projects_by_id[project.id] = project
            self._by_uuid[project.id] = container
            self._add_attrs(container, created, attrs=attrs)
            self._version += 1
        return project

    def project(self, name: str) -> Project:
        return self._projects[name]

    def container(self, project: str, sys_id: str) -> Container:
        return self._projects[project].by_sys_id[sys_id]

    def add_run(
        self,
        project: str,
        sys_id: str | None = None,
        *,
        attrs: Mapping[str, Any] | None = None,
        float_series: Mapping[str, Any] | None = None,
        string_series: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        file_series: Mapping[str, Any] | None = None,
        file_sets: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        group_tags: Iterable[str] = (),
        trashed: bool = False,
        creation_time: datetime | int | None = None,
        state: str = "idle",
        name: str = "",
        owner: str | None = None,
        custom_run_id: str | None = None,
        failed: bool = False,
        group_tags_404: bool = True,
    ) -> Container:
        """Add a run.  ``sys_id`` defaults to the next ``KEY-n``.  Series specs: a values list, or
        ``(steps, values[, timestamps_ms])``; files: bytes or ``File``; file series: list of bytes,
        ``(bytes, step)`` or ``FileSeriesItem``; file sets: ``{relative_path: bytes}``; artifacts: list of
        ``ArtifactFile`` or paths.  ``sys/group_tags`` is listed but answers 404 when fetched unless
        ``group_tags_404=False`` (as observed on real servers)."""
        with self._lock:
            proj = self._projects.get(project) or self.add_project(project)
            if sys_id is None:
                sys_id = f"{proj.key}-{proj.next_run_number}"
            m = re.fullmatch(re.escape(proj.key) + r"-(\d+)", sys_id)
            if m:
                proj.next_run_number = max(proj.next_run_number, int(m.group(1)) + 1)
            extra: dict[str, Any] = {
                "sys/state": RunState(state),
                "sys/failed": failed,
                "sys/running_time": 0.0,
                "sys/monitoring_time": 0,
                "sys/hostname": "fake-host",
                "sys/group_tags": set(group_tags),
            }
            if custom_run_id is not None:
                extra["sys/custom_run_id"] = custom_run_id
            container = self._new_container(
                proj, "run", sys_id, proj.id, trashed, creation_time, name, owner, tags, extra
            )
            container.group_tags_404 = group_tags_404
            self._add_attrs(
                container,
                to_ms(container.attrs["sys/creation_time"]),
                attrs=attrs,
                float_series=float_series,
                string_series=string_series,
                files=files,
                file_series=file_series,
                file_sets=file_sets,
                artifacts=artifacts,
            )
            self._version += 1
        return container

    def add_model(
        self,
        project: str,
        key: str = "MOD",
        *,
        attrs: Mapping[str, Any] | None = None,
        trashed: bool = False,
        creation_time: datetime | int | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> Container:
        """Add a model with sys id ``PROJKEY-KEY``; ``kwargs`` take the same series/file specs as add_run."""
        with self._lock:
            proj = self._projects.get(project) or self.add_project(project)
            sys_id = f"{proj.key}-{key}"
            container = self._new_container(
                proj, "model", sys_id, proj.id, trashed, creation_time, name, None, (), {}
            )
            self._add_attrs(container, to_ms(container.attrs["sys/creation_time"]), attrs=attrs, **kwargs)
            self._version += 1
        return container

    def add_model_version(
        self,
        model: Container | str,
        *,
        project: str | None = None,
        attrs: Mapping[str, Any] | None = None,
        stage: str = "none",
        trashed: bool = False,
        creation_time: datetime | int | None = None,
        name: str = "",
        **kwargs: Any,
    ) -> Container:
        """Add a version ``MODELID-n`` of ``model`` (a Container or its sys id with ``project=``)."""
        with self._lock:
            if isinstance(model, str):
                if project is None:
                    project = next(p.qualified_name for p in self._projects.values() if model in p.by_sys_id)
                model = self.container(project, model)
            proj = model.project
            n = self._model_version_counters.get(model.sys_id, 0) + 1
            self._model_version_counters[model.sys_id] = n
            extra = {"sys/model_id": model.sys_id, "sys/stage": stage}
            container = self._new_container(
                proj,
                "modelVersion",
                f"{model.sys_id}-{n}",
                model.id,
                trashed,
                creation_time,
                name,
                None,
                (),
                extra,
            )
            self._add_attrs(container, to_ms(container.attrs["sys/creation_time"]), attrs=attrs, **kwargs)
            self._version += 1
        return container

    def set_attr(self, container: Container, path: str, value: Any) -> None:
        """Add or replace one attribute (any value accepted by add_run's ``attrs``)."""
        with self._lock:
            self._add_attrs(container, to_ms(container.attrs["sys/creation_time"]), attrs={path: value})
            self._version += 1

    def _tick(self, creation_time: datetime | int | None) -> int:
        self._container_counter += 1
        if creation_time is None:
            return DEFAULT_BASE_MS + self._container_counter * 1000
        return to_ms(creation_time)

    def _new_container(
        self,
        proj: Project,
        ctype: str,
        sys_id: str,
        parent_id: str | None,
        trashed: bool,
        creation_time: datetime | int | None,
        name: str,
        owner: str | None,
        tags: Iterable[str],
        extra: Mapping[str, Any],
    ) -> Container:
        if sys_id in proj.by_sys_id:
            raise ValueError(f"{sys_id} already exists in {proj.qualified_name}")
        created = self._tick(creation_time)
        created_dt = ms_to_datetime(created)
        attrs: dict[str, Any] = {
            "sys/id": sys_id,
            "sys/name": name,
            "sys/owner": owner or self.username,
            "sys/creation_time": created_dt,
            "sys/modification_time": created_dt,
            "sys/ping_time": created_dt,
            "sys/trashed": trashed,
            "sys/tags": set(tags),
            "sys/description": "",
            "sys/size": 0.0,
            **extra,
        }
        container = Container(
            str(uuid.uuid4()),
            sys_id,
            ctype,
            proj,
            attrs,
            parent_id=parent_id,
            insertion=self._container_counter,
        )
        proj.containers.append(container)
        proj.by_sys_id[sys_id] = container
        self._by_uuid[container.id] = container
        return container

    def _add_attrs(
        self,
        container: Container,
        base_ms: int,
        *,
        attrs: Mapping[str, Any] | None = None,
        float_series: Mapping[str, Any] | None = None,
        string_series: Mapping[str, Any] | None = None,
        files: Mapping[str, Any] | None = None,
        file_series: Mapping[str, Any] | None = None,
        file_sets: Mapping[str, Any] | None = None,
        artifacts: Mapping[str, Any] | None = None,
    ) -> None:
        target = container.attrs
        for path, value in (attrs or {}).items():
            if isinstance(value, list | tuple):
                value = set(value) if all(isinstance(v, str) for v in value) else value
            if isinstance(value, set | frozenset):
                value = {str(v) for v in value}
            attr_type(value)  # validates
            target[path] = value
        for path, s in (float_series or {}).items():
            target[path] = make_float_series(s, base_ms)
        for path, s in (string_series or {}).items():
            target[path] = make_string_series(s, base_ms)
        for path, f in (files or {}).items():
            target[path] = make_file(f)
        for path, fs in (file_series or {}).items():
            target[path] = make_file_series(fs, base_ms)
        for path, fset in (file_sets or {}).items():
            target[path] = make_file_set(fset)
        for path, art in (artifacts or {}).items():
            target[path] = make_artifact(art)
        for path, value in target.items():
            if isinstance(value, FileSeries):
                self._channels[value.channel_id] = (container, path)
            elif isinstance(value, Artifact):
                self._artifacts[(container.project.id, value.hash)] = value

    # ------------------------------------------------------------------------------------------ accounting

    def count(self, op: str) -> int:
        """Requests served for one operationId (including faulted ones)."""
        return self.counts.get(op, 0)

    def reset_counters(self) -> None:
        with self._lock:
            self.counts.clear()
            self.requests.clear()

    # ------------------------------------------------------------------------------------------- dispatch

    def _build_routes(
        self,
    ) -> tuple[dict[tuple[str, str], tuple[str, Callable[..., Response], bool]], list[Any]]:
        exact: dict[tuple[str, str], tuple[str, Callable[..., Response], bool]] = {}
        templated: list[Any] = []
        for (method, path), op in specs.operations().items():
            handler = getattr(self, f"_op_{op}")
            auth = op not in ("getClientConfig", "exchangeApiToken")
            if "{" in path:
                regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$")
                templated.append((method, regex, op, handler, auth))
            else:
                exact[(method, path)] = (op, handler, auth)
        for path, factory in specs.SPEC_PATHS.items():
            name = path.split("/")[2]
            exact[("GET", path)] = (f"swagger:{name}", self._spec_handler(factory), False)
        exact[("POST", specs.OAUTH_TOKEN_PATH)] = ("oauthRefresh", self._oauth_refresh, False)
        exact[("GET", specs.FILE_SET_ZIP_PATH)] = ("downloadFileSetZip", self._download_zip, True)
        return exact, templated

    def _route(
        self, method: str, path: str
    ) -> tuple[str, Callable[..., Response], bool, dict[str, str]] | None:
        hit = self._routes.get((method, path))
        if hit:
            return hit[0], hit[1], hit[2], {}
        for m, regex, op, handler, auth in self._template_routes:
            if m == method:
                match = regex.match(path)
                if match:
                    return op, handler, auth, match.groupdict()
        return None

    def _dispatch(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path = split.path
        query = parse_qs(split.query, keep_blank_values=True)
        body = h.read_body()
        route = self._route(method, path)
        op = route[0] if route else f"{method} {path}"
        record = RequestRecord(
            method, path, op, query, dict(h.headers.items()) if self.record_requests else {}
        )
        with self._lock:
            self.counts[op] += 1
            if self.record_requests:
                self.requests.append(record)

        if self.latency:
            time.sleep(self.latency)
        fault = self.faults.take(method, path, op)
        response: Response | None = None
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "drop":
                h.drop_connection()
                record.status = -1
                return
            if fault.kind == "slow":
                time.sleep(fault.delay)
            else:
                response = self._fault_response(fault)

        if response is None:
            if route is None:
                response = _json({"title": "Not found", "message": f"no route {method} {path}"}, 404)
            else:
                op, handler, needs_auth, path_params = route
                req = Request(method, path, query, h.headers, body, path_params)
                try:
                    if needs_auth:
                        self._check_bearer(req)
                    response = handler(req)
                except HttpError as e:
                    response = _json({"code": e.status, **e.body}, e.status)
                    response.headers.update(e.headers)
                except Exception as e:  # a bug in the fake must surface as a 500, not a hung client
                    response = _json({"title": "Fake server error", "message": repr(e)}, 500)
        record.status = response.status
        self._send(h, response)

    def _fault_response(self, fault: Fault) -> Response:
        kind = fault.kind
        if kind == "5xx":
            status = fault.status or 500
            return _json(fault.body or {"title": "Server error", "code": status}, status)
        if kind == "429":
            resp = _json(fault.body or {"title": "Too many requests", "code": 429}, 429)
            if fault.retry_after is not None:
                resp.headers["Retry-After"] = str(fault.retry_after)
            return resp
        if kind == "token_version":
            return _json(fault.body or {"code": 400, "message": TOKEN_VERSION_MESSAGE}, 400)
        if kind == "token_expired":
            return _json(
                {"code": 401, "errorType": "AUTHORIZATION_TOKEN_EXPIRED", "title": "Token expired"}, 401
            )
        if kind in ("401", "403", "404"):
            status = int(kind)
            return _json(fault.body or {"code": status, "title": "Injected error"}, status)
        status = fault.status or 500
        return _json(fault.body or {"code": status, "title": "Injected error"}, status)

    @staticmethod
    def _send(h: _Handler, response: Response) -> None:
        try:
            h.send_answer(response.status, response.body, response.headers)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    # ---------------------------------------------------------------------------------- bootstrap handlers

    def _spec_handler(self, factory: Callable[[], JSON]) -> Callable[[Request], Response]:
        body = _dumps(factory())

        def handler(req: Request) -> Response:
            return Response(200, body, {"Content-Type": "application/json"})

        return handler

    def _op_getClientConfig(self, req: Request) -> Response:  # noqa: N802 - operationId naming
        self._check_api_token(req, known_key=False)
        config: JSON = {
            "apiUrl": self.base_url,
            "applicationUrl": self.base_url,
            "pyLibVersions": {
                "minRecommendedVersion": "1.0.0",
                "minCompatibleVersion": "1.0.0",
                "maxCompatibleVersion": "1.99.99",
            },
            "multiPartUpload": {"enabled": False},
            "artifacts": {"enabled": self.artifacts_enabled, "apiVersion": 2},
            "sysNameSetByBackend": False,
            "security": {
                "clientId": OAUTH_CLIENT_ID,
                "openIdDiscovery": self.base_url
                + specs.OAUTH_REALM_PATH
                + "/.well-known/openid-configuration",
            },
        }
        config.update(self.config_overrides)
        return _json(config)

    def _op_exchangeApiToken(self, req: Request) -> Response:  # noqa: N802
        self._check_api_token(req, known_key=True)
        refresh = secrets.token_urlsafe(24)
        self._refresh_tokens.add(refresh)
        return _json(
            {
                "accessToken": self._jwt(self.access_token_ttl),
                "refreshToken": refresh,
                "username": self.username,
            }
        )

    def _oauth_refresh(self, req: Request) -> Response:
        form = parse_qs(req.body.decode())
        if form.get("grant_type", [""])[0] != "refresh_token":
            raise HttpError(400, {"error": "unsupported_grant_type"})
        token = form.get("refresh_token", [""])[0]
        if token not in self._refresh_tokens:
            raise HttpError(400, {"error": "invalid_grant", "error_description": "Invalid refresh token"})
        new_refresh = secrets.token_urlsafe(24)
        self._refresh_tokens.add(new_refresh)
        return _json(
            {
                "access_token": self._jwt(self.access_token_ttl),
                "refresh_token": new_refresh,
                "token_type": "bearer",
                "expires_in": int(self.access_token_ttl),
                "refresh_expires_in": int(self.access_token_ttl),
            }
        )

    # ------------------------------------------------------------------------------------ project handlers

    @staticmethod
    def _project_dto(p: Project) -> JSON:
        return {
            "id": p.id,
            "name": p.name,
            "organizationName": p.workspace,
            "organizationId": p.organization_id,
            "projectKey": p.key,
            "version": p.version,
            "visibility": "priv",
            "description": "",
            "archived": False,
        }

    def _find_project(self, ident: str | None) -> Project:
        project = self._projects_by_id.get(ident or "") or self._projects.get(ident or "")
        if project is None:
            raise HttpError(404, {"errorType": "PROJECT_NOT_FOUND", "title": f"Project {ident} not found"})
        return project

    def _op_getProject(self, req: Request) -> Response:  # noqa: N802
        return _json(self._project_dto(self._find_project(req.required("projectIdentifier"))))

    def _op_listProjects(self, req: Request) -> Response:  # noqa: N802
        projects = sorted(self._projects.values(), key=lambda p: p.qualified_name)
        ws = req.q("organizationIdentifier")
        org_id = req.q("organizationId")
        term = req.q("searchTerm")
        matching = [
            p
            for p in projects
            if (not ws or p.workspace == ws)
            and (not org_id or p.organization_id == org_id)
            and (not term or term.lower() in p.name.lower())
        ]
        offset = req.q_int("offset", 0)
        limit = req.q_int("limit", len(matching))
        page = matching[offset : offset + limit]
        return _json(
            {
                "entries": [self._project_dto(p) for p in page],
                "matchingItemCount": len(matching),
                "totalItemCount": len(projects),
            }
        )

    def _op_listOrganizations(self, req: Request) -> Response:  # noqa: N802
        return _json(
            [{"id": oid, "name": ws, "organizationType": "team"} for ws, oid in sorted(self._org_ids.items())]
        )

    # --------------------------------------------------------------------------------- container handlers

    def _find_container(self, ident: str | None) -> Container:
        container = self._by_uuid.get(ident or "")
        if container is None and ident and ident.count("/") == 2:
            proj_name, _, sys_id = ident.rpartition("/")
            project = self._projects.get(proj_name)
            container = project.by_sys_id.get(sys_id) if project else None
        if container is None:
            raise HttpError(404, {"errorType": "EXPERIMENT_NOT_FOUND", "title": f"Object {ident} not found"})
        return container

    def _op_getExperiment(self, req: Request) -> Response:  # noqa: N802
        c = self._find_container(req.required("experimentId"))
        p = c.project
        return _json(
            {
                "id": c.id,
                "shortId": c.sys_id,
                "type": c.type,
                "name": c.attrs.get("sys/name", ""),
                "organizationId": p.organization_id,
                "organizationName": p.workspace,
                "projectId": p.id,
                "projectName": p.name,
                "parentId": c.parent_id,
                "trashed": c.trashed,
                "customId": c.attrs.get("sys/custom_run_id"),
            }
        )

    def _op_getExperimentAttributes(self, req: Request) -> Response:  # noqa: N802
        c = self._find_container(req.required("experimentId"))
        p = c.project
        return _json(
            {
                "id": c.id,
                "organizationId": p.organization_id,
                "organizationName": p.workspace,
                "projectId": p.id,
                "projectName": p.name,
                "type": c.type,
                "trashed": c.trashed,
                "attributes": [attribute_dto(name, value) for name, value in c.attrs.items()],
            }
        )

    def _attr(self, req: Request, expected: str | tuple[str, ...]) -> tuple[Container, str, Any]:
        c = self._find_container(req.required("experimentId"))
        path = req.required("attribute")
        value = c.attrs.get(path)
        types = (expected,) if isinstance(expected, str) else expected
        if value is None or attr_type(value) not in types:
            raise HttpError(
                404,
                {"errorType": "ATTRIBUTE_NOT_FOUND", "title": f"Attribute {path} not found in {c.sys_id}"},
            )
        return c, path, value

    def _atom_getter(self, op: str) -> Callable[[Request], Response]:
        expected = specs.ATOM_GETTER_TYPES[op]

        def handler(req: Request) -> Response:
            c, path, value = self._attr(req, expected)
            if path == "sys/group_tags" and c.group_tags_404:
                raise HttpError(
                    404, {"errorType": "ATTRIBUTE_NOT_FOUND", "title": f"Attribute {path} not found"}
                )
            return _json(attribute_properties(path, value))

        return handler

    def __getattr__(self, name: str) -> Any:
        # _op_getFloatAttribute, _op_getStringSetAttribute, ... share one implementation.
        if name.startswith("_op_") and name[4:] in specs.ATOM_GETTER_TYPES:
            return self._atom_getter(name[4:])
        raise AttributeError(name)

    # ---------------------------------------------------------------------------------------- leaderboard

    def _matching(
        self, project: Project, types: list[str] | None, query: str, sort_name: str | None, ascending: bool
    ) -> list[Container]:
        key = (project.id, tuple(types or ()), query, sort_name, ascending, self._version)
        cached = self._search_cache.get(key)
        if cached is not None:
            return cached
        pred = compile_query(query)
        wanted = set(types) if types else None
        found = [c for c in project.containers if (wanted is None or c.type in wanted) and pred(c.attrs)]
        if sort_name:
            present = [c for c in found if c.attrs.get(sort_name) is not None]
            missing = [c for c in found if c.attrs.get(sort_name) is None]
            present.sort(key=lambda c: _sort_key(c.attrs[sort_name]), reverse=not ascending)
            found = present + missing
        if len(self._search_cache) > 64:
            self._search_cache.clear()
        self._search_cache[key] = found
        return found

    def _op_searchLeaderboardEntries(self, req: Request) -> Response:  # noqa: N802
        project = self._find_project(req.required("projectIdentifier"))
        types = req.q_list("type")
        params = req.json() or {}
        query = ((params.get("query") or {}).get("query")) or ""
        sorting = params.get("sorting") or {}
        sort_name = (sorting.get("sortBy") or {}).get("name")
        ascending = sorting.get("dir", "descending") == "ascending"
        pagination = params.get("pagination") or {}
        limit = int(pagination.get("limit") if pagination.get("limit") is not None else 100)
        offset = int(pagination.get("offset") or 0)
        if offset < 0 or limit < 0 or offset + limit > self.max_offset:
            raise HttpError(
                400,
                {
                    "title": "Bad request",
                    "message": f"offset + limit must not exceed {self.max_offset} (got {offset} + {limit})",
                },
            )
        try:
            found = self._matching(project, types, query, sort_name, ascending)
        except NQLSyntaxError as e:
            raise HttpError(400, {"title": "Syntax error", "message": str(e)}) from e
        filters = params.get("attributeFilters")
        paths = [f.get("path") for f in filters] if filters else None
        entries = []
        for c in found[offset : offset + limit]:
            items = c.attrs.items() if paths is None else [(p, c.attrs[p]) for p in paths if p in c.attrs]
            entries.append(
                {
                    "experimentId": c.id,
                    "type": c.type,
                    "organizationName": c.project.workspace,
                    "projectName": c.project.name,
                    "attributes": [attribute_dto(n, v) for n, v in items],
                }
            )
        return _json({"matchingItemCount": len(found), "totalGroupCount": len(found), "entries": entries})

    def _op_searchLeaderboardAttributes(self, req: Request) -> Response:  # noqa: N802
        project = self._find_project(req.required("projectIdentifier"))
        types = req.q_list("type")
        key = (project.id, tuple(types or ()), self._version)
        defs = self._attr_def_cache.get(key)
        if defs is None:
            seen: dict[tuple[str, str], None] = {}
            wanted = set(types) if types else None
            for c in project.containers:
                if wanted is None or c.type in wanted:
                    for name, value in c.attrs.items():
                        seen[(name, attr_type(value))] = None
            defs = sorted(seen)
            self._attr_def_cache[key] = defs
        search = req.q("search") or ""
        return _json({"entries": [{"name": n, "type": t} for n, t in defs if search in n]})

    # --------------------------------------------------------------------------------------------- series

    @staticmethod
    def _page(req: Request, total: int) -> slice:
        offset = max(req.q_int("offset", 0), 0)
        limit = max(req.q_int("limit", 1000), 0)
        return slice(min(offset, total), min(offset + limit, total))

    def _op_getFloatSeriesValues(self, req: Request) -> Response:  # noqa: N802
        _, _, s = self._attr(req, "floatSeries")
        return _json(_series_page(s, self._page(req, len(s))))

    def _op_getStringSeriesValues(self, req: Request) -> Response:  # noqa: N802
        _, _, s = self._attr(req, "stringSeries")
        page = _series_page(s, self._page(req, len(s)))
        limits = [int(x) for x in (req.q("maxSingleValueLength"), self.string_series_max_value_length) if x]
        if limits:
            n = min(limits)
            for v in page["values"]:
                v["value"] = v["value"][:n]
        return _json(page)

    def _image_url(self, c: Container, path: str, index: int) -> str:
        qs = urlencode({"experimentId": c.id, "attribute": path, "index": index})
        return f"{self.base_url}/api/leaderboard/v1/attributes/series/image/single?{qs}"

    def _op_getImageSeriesValues(self, req: Request) -> Response:  # noqa: N802
        c, path, s = self._attr(req, "imageSeries")
        sl = self._page(req, len(s.items))
        values = [
            {
                "timestampMillis": item.timestamp_ms,
                "step": item.step,
                "value": {
                    "name": item.name,
                    "description": item.description,
                    "imageUrl": self._image_url(c, path, i),
                    "thumbnailUrl": self._image_url(c, path, i),
                },
            }
            for i, item in enumerate(s.items[sl], start=sl.start)
        ]
        return _json({"totalItemCount": len(s.items), "values": values})

    def _op_getImageSeriesValue(self, req: Request) -> Response:  # noqa: N802
        _, path, s = self._attr(req, "imageSeries")
        index = req.q_int("index", -1)
        if not 0 <= index < len(s.items):
            raise HttpError(404, {"errorType": "ATTRIBUTE_NOT_FOUND", "title": f"{path}[{index}] not found"})
        item = s.items[index]
        subtype = item.mime.split("/")[-1]
        return Response(
            200,
            item.content,
            {"Content-Type": item.mime, "Content-Disposition": f'attachment; filename="{index}.{subtype}"'},
        )

    def _op_getChannelValues(self, req: Request) -> Response:  # noqa: N802
        channel_id = req.path_params["channelId"]
        hit = self._channels.get(channel_id) if self.channel_api_enabled else None
        if hit is None:
            raise HttpError(404, {"title": f"Channel {channel_id} not found"})
        c, path = hit
        s = c.attrs[path]
        sl = self._page(req, len(s.items))
        values = [
            {
                "timestampMillis": item.timestamp_ms,
                "x": item.step,
                "y": {
                    "imageValue": {
                        "name": item.name,
                        "description": item.description,
                        "imageUrl": self._image_url(c, path, i),
                        "thumbnailUrl": self._image_url(c, path, i),
                    }
                },
            }
            for i, item in enumerate(s.items[sl], start=sl.start)
        ]
        return _json({"channelId": channel_id, "totalItemCount": len(s.items), "values": values})

    # ---------------------------------------------------------------------------------------------- files

    def _op_downloadAttribute(self, req: Request) -> Response:  # noqa: N802
        _, _, f = self._attr(req, "file")
        filename = f"{f.name}.{f.ext}" if f.ext else f.name
        return Response(
            200,
            f.content,
            {
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{filename}"',
            },
        )

    def _op_prepareForDownloadFileSetAttributeZip(self, req: Request) -> Response:  # noqa: N802
        c, path, _ = self._attr(req, "fileSet")
        request_id = str(uuid.uuid4())
        with self._lock:
            self._download_requests[request_id] = [c, path, self.file_set_prepare_polls]
        return _json({"id": request_id})

    def _op_getDownloadPrepareRequest(self, req: Request) -> Response:  # noqa: N802
        request_id = req.required("id")
        with self._lock:
            entry = self._download_requests.get(request_id)
            if entry is None:
                raise HttpError(404, {"title": f"Download request {request_id} not found"})
            if entry[2] > 0:
                entry[2] -= 1
                return _json({"id": request_id})
        return _json(
            {"id": request_id, "downloadUrl": f"{self.base_url}{specs.FILE_SET_ZIP_PATH}?id={request_id}"}
        )

    def _download_zip(self, req: Request) -> Response:
        request_id = req.required("id")
        entry = self._download_requests.get(request_id)
        if entry is None:
            raise HttpError(404, {"title": f"Download request {request_id} not found"})
        c, path, _ = entry
        fileset: FileSet = c.attrs[path]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in sorted(fileset.files.items()):
                zf.writestr(name, content)
        filename = path.split("/")[-1] + ".zip"
        return Response(
            200,
            buf.getvalue(),
            {"Content-Type": "application/zip", "Content-Disposition": f'attachment; filename="{filename}"'},
        )

    def _op_lsFileSetAttribute(self, req: Request) -> Response:  # noqa: N802
        _, _, fileset = self._attr(req, "fileSet")
        prefix = (req.q("path") or "").strip("/")
        prefix = prefix + "/" if prefix else ""
        children: dict[str, JSON] = {}
        mtime = format_datetime(ms_to_datetime(fileset.mtime_ms))
        for name, content in fileset.files.items():
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            entry = children.setdefault(
                head, {"name": head, "size": 0, "mtime": mtime, "fileType": "directory" if sep else "file"}
            )
            entry["size"] += len(content)
        return _json(list(children.values()))

    # ------------------------------------------------------------------------------------------ artifacts

    def _op_listArtifactFiles(self, req: Request) -> Response:  # noqa: N802
        project = self._find_project(req.required("projectIdentifier"))
        artifact = self._artifacts.get((project.id, req.required("hash")))
        if artifact is None:
            raise HttpError(404, {"title": "Artifact not found"})
        return _json({"files": [f.to_json() for f in artifact.files]})


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, FloatSeries | StringSeries):
        value = value.values[-1] if len(value) else None
    if isinstance(value, RunState):
        value = value.value
    if isinstance(value, datetime):
        return (0, value.timestamp())
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float | np.number):
        return (1, float(value))
    if isinstance(value, set | frozenset):
        return (2, ",".join(sorted(value)))
    return (2, str(value))


def _series_page(s: FloatSeries | StringSeries, sl: slice) -> JSON:
    ts = s.timestamps[sl].tolist()
    steps = s.steps[sl].tolist()
    values = s.values[sl].tolist()
    return {
        "totalItemCount": len(s),
        "values": [
            {"timestampMillis": t, "step": st, "value": v} for t, st, v in zip(ts, steps, values, strict=True)
        ],
    }
