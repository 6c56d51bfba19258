"""A faithful in-process fake of the Pluto server (API + ingest + py service + S3) on one port.

Why it exists: CI has no internet and the real pluto-server needs Docker images, so tests and
benchmarks of the Pluto sink run the unmodified ``pluto-ml`` client against this fake.  It
reproduces the wire protocol and the server rules that matter for a lossless migration
(validation, dedup, status precedence, tag limits) and adds fault injection and a Python
inspection API.  See ``/work/shared/docs/reference/pluto-protocol.md``.

Usage::

    with FakePluto() as srv:
        os.environ.update(srv.client_env(home=tmp / "home", pluto_dir=tmp / "run"))
        ...  # run pluto.init()/log()/finish() or raw HTTP against srv.url
        run = srv.run_by_external("proj", "ext-1")
        assert run.metric("loss")[3] == (0.25, 1700000000123)
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import numpy as np

from ..common import FakeHTTPServer, FakeRequestHandler, ServedFake
from .faults import Fault, FaultSet
from .ingest import (
    IngestError,
    RejectionError,
    decode_data_line,
    decode_files_body,
    decode_log_line,
    parse_lines,
    parse_metrics,
)
from .state import (
    LOG_TYPES,
    NONFINITE_NAN,
    NONFINITE_NEG_INF,
    NONFINITE_POS_INF,
    STATUS_RANK,
    DataRow,
    FileRow,
    LogRow,
    Project,
    Run,
    State,
    deep_merge,
    log_group,
    now_ms,
)

DEFAULT_API_KEY = "mlpi_fake_test_key"
_API_KEY_PREFIXES = ("mlps_", "mlpi_")
MAX_TAGS = 50


# ---------------------------------------------------------------------------------------------
# request / response plumbing
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    """A parsed HTTP request as seen by the route handlers."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    """What a route handler returns; always sent with Content-Length."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class RequestRecord:
    """One entry of the request log (bodies above ``record_body_limit`` bytes are not kept)."""

    method: str
    path: str
    endpoint: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes | None
    body_size: int
    status: int | None = None
    fault: str | None = None

    def json(self) -> Any:
        return None if not self.body else json.loads(self.body)


class _ApiError(Exception):
    """Short-circuits a handler with an error response."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json", headers or {})


def _iso(ms: int | None) -> str | None:
    """Timestamps in read-back responses are ISO-8601 UTC strings with milliseconds."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _finite_or_none(v: float) -> float | None:
    """JSON has no NaN/Infinity; like ``JSON.stringify`` in the Node backend they become null."""
    return v if math.isfinite(v) else None


def endpoint_key(method: str, path: str) -> str:
    """Normalised endpoint name used by the request counters, e.g. ``GET /api/runs/details/{id}``."""
    if path.startswith("/s3/"):
        return f"{method} /s3/*"
    if path.startswith("/api/runs/details/by-display-id/"):
        return f"{method} /api/runs/details/by-display-id/{{displayId}}"
    if path.startswith("/api/runs/details/"):
        return f"{method} /api/runs/details/{{id}}"
    return f"{method} {path}"


# ---------------------------------------------------------------------------------------------
# HTTP server
# ---------------------------------------------------------------------------------------------


class _HTTPServer(FakeHTTPServer):
    request_queue_size = 256
    fake: FakePluto


class _Handler(FakeRequestHandler):
    server: _HTTPServer
    server_version = "fake-pluto"
    sys_version = ""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, resp: Response) -> None:
        self.send_answer(resp.status, resp.body, resp.headers, resp.content_type)

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        path = unquote(split.path)
        body = self.read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request(method, path, parse_qs(split.query), headers, body)
        record = fake._record(req)
        fault = fake.faults.take(method, path)
        if fault is not None:
            record.fault = fault.kind
            if fault.kind == "slow":
                time.sleep(fault.delay)
                fault = None
            elif not fault.process:
                self._apply_fault(fault, record)
                return
        resp = fake._handle(req)
        if fault is not None:
            self._apply_fault(fault, record)
            return
        record.status = resp.status
        self._send(resp)

    def _apply_fault(self, fault: Fault, record: RequestRecord) -> None:
        if fault.kind == "drop":
            self.drop_connection()
            return
        if fault.kind == "429":
            resp = _json(
                429,
                {"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests (injected)"},
                {"Retry-After": retry_after_header(fault.retry_after)},
            )
        elif fault.kind == "422":
            resp = _json(
                422,
                {
                    "code": "STREAM_DECODING_ERROR",
                    "message": "Failed to parse JSON line (bytes): injected fault",
                },
            )
        else:
            resp = _json(fault.status, {"error": "Internal Server Error", "message": "injected fault"})
        record.status = resp.status
        self._send(resp)


# ---------------------------------------------------------------------------------------------
# the fake
# ---------------------------------------------------------------------------------------------


class FakePluto(ServedFake):
    """The fake server: start it, point the client at ``url``, then inspect ``runs``/``projects``.

    All four client URLs (app, api, ingest, py) and the S3 storage are served on one loopback
    port.  State is kept in memory and guarded by ``state.lock``; read it from tests after the
    client has finished (or under the lock).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        org_slug: str = "fake-org",
        fast_ingest: bool = True,
        record_body_limit: int = 64 * 1024,
        keep_request_log: bool = True,
    ) -> None:
        self.host = host
        self._port = port
        self.api_key = api_key
        #: Keys that authenticate. Ingest accepts any of them; the API also requires the mlps_/mlpi_ prefix.
        self.api_keys: set[str] = {api_key}
        self.fast_ingest = fast_ingest
        self.record_body_limit = record_body_limit
        self.keep_request_log = keep_request_log
        self.state = State(org_slug)
        self.faults = FaultSet()
        #: Request log, in arrival order (see ``keep_request_log``).
        self.requests: list[RequestRecord] = []
        #: Requests per endpoint, e.g. ``counts["POST /ingest/metrics"]``.
        self.counts: Counter[str] = Counter()
        #: Exceptions raised inside handlers (answered with 500); tests should expect it empty.
        self.errors: list[BaseException] = []
        self._log_lock = threading.Lock()
        self._routes: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("POST", "/api/slug"): self._h_slug,
            ("POST", "/api/runs/create"): self._h_create,
            ("POST", "/api/runs/resume"): self._h_resume,
            ("POST", "/api/runs/trigger"): self._h_trigger,
            ("POST", "/api/runs/logName/add"): self._h_log_name,
            ("POST", "/api/runs/config/update"): self._h_config,
            ("POST", "/api/runs/tags/update"): self._h_tags,
            ("POST", "/api/runs/status/update"): self._h_status,
            ("POST", "/api/runs/modelGraph/create"): self._h_graph,
            ("POST", "/api/runs/alert"): self._h_alert,
            ("POST", "/ingest/metrics"): self._h_ingest_metrics,
            ("POST", "/ingest/data"): self._h_ingest_data,
            ("POST", "/ingest/logs"): self._h_ingest_logs,
            ("POST", "/files"): self._h_files,
            ("GET", "/api/runs/list"): self._h_list,
            ("GET", "/api/runs/projects"): self._h_projects,
            ("GET", "/api/runs/metric-names"): self._h_metric_names,
            ("GET", "/api/runs/metrics"): self._h_metrics,
            ("GET", "/api/runs/metrics/raw"): self._h_metrics_raw,
            ("GET", "/api/runs/statistics"): self._h_statistics,
            ("GET", "/api/runs/files"): self._h_files_list,
            ("GET", "/api/runs/logs"): self._h_logs,
            ("GET", "/api/runs/status/history"): self._h_status_history,
            ("GET", "/_fake/state"): self._h_state,
        }

    # -- lifecycle (stop, context manager: ServedFake) ------------------------------------------
    def start(self) -> FakePluto:
        """Bind (port 0 = ephemeral) and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        httpd = self._bind(_HTTPServer, _Handler, self._port)
        self._port = httpd.server_address[1]
        self._serve("fake-pluto", poll_interval=0.05)
        return self

    @property
    def port(self) -> int:
        """The bound port (still known after ``stop()``)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL for all four client URLs (app, api, ingest, py)."""
        return self.base_url

    # -- client configuration ----------------------------------------------------------------
    def client_env(
        self, home: str | Path | None = None, pluto_dir: str | Path | None = None
    ) -> dict[str, str]:
        """Environment variables that point the unmodified ``pluto-ml`` client at this fake.

        Pass ``home`` (a temp dir): a successful login writes the key into
        ``$HOME/.local/share/python_keyring`` and creates ``~/.pluto/.login_ok``.  Note that
        ``pluto.auth.LOGIN_MARKER_PATH`` is computed when ``pluto`` is first imported, so also
        patch that attribute if ``pluto`` was imported before HOME changed (the fixture does).
        """
        env = {
            "PLUTO_API_KEY": self.api_key,
            "PLUTO_URL_APP": self.url,
            "PLUTO_URL_API": self.url,
            "PLUTO_URL_INGEST": self.url,
            "PLUTO_URL_PY": self.url,
            "PLUTO_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        if home is not None:
            env["HOME"] = str(home)
        if pluto_dir is not None:
            env["PLUTO_DIR"] = str(pluto_dir)
        return env

    def client_settings(self, **overrides: Any) -> dict[str, Any]:
        """``settings=`` for ``pluto.init`` that is fast and quiet in tests.

        All four URLs are included (a partial set is reset to production by the client); console
        capture and system metrics are off; the sync worker flushes every 50 ms.
        """
        settings: dict[str, Any] = {
            "url_app": self.url,
            "url_api": self.url,
            "url_ingest": self.url,
            "url_py": self.url,
            "_auth": self.api_key,
            "disable_console": True,
            "disable_system_metrics": True,
            "sync_process_flush_interval": 0.05,
            "sync_process_batch_size": 2000,
            "sync_process_file_batch_size": 50,
            "sync_process_shutdown_timeout": 20,
            "x_sys_sampling_interval": 1,
        }
        settings.update(overrides)
        return settings

    # -- inspection --------------------------------------------------------------------------
    @property
    def projects(self) -> dict[str, Project]:
        return self.state.projects

    @property
    def runs(self) -> dict[int, Run]:
        """Runs by numeric id."""
        return self.state.runs

    def run(self, run_id: int) -> Run:
        return self.state.runs[run_id]

    def run_by_external(self, project: str, external_id: str) -> Run:
        run = self.state.find_external(project, external_id)
        if run is None:
            raise KeyError(f"no run with externalId {external_id!r} in project {project!r}")
        return run

    def run_by_name(self, project: str, name: str) -> Run:
        p = self.state.projects.get(project)
        for run in p.runs if p else []:
            if run.name == name:
                return run
        raise KeyError(f"no run named {name!r} in project {project!r}")

    def ingested(self, project: str, run_id: int) -> Any:
        """Ingested data stored under ``(X-Project-Name, X-Run-Id)``, even for unknown runs."""
        return self.state.data_for(project, run_id)

    def count(self, endpoint: str) -> int:
        """Requests seen for ``endpoint``: ``"POST /ingest/metrics"`` or just a path (any method)."""
        if " " in endpoint:
            return self.counts.get(endpoint, 0)
        return sum(n for key, n in self.counts.items() if key.split(" ", 1)[1] == endpoint)

    def requests_to(self, path: str, method: str | None = None) -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def total_metric_rows(self) -> int:
        """Metric rows ever accepted (duplicates included) across all runs."""
        with self.state.lock:
            return sum(s.raw_count for d in self.state.run_data.values() for s in d.metrics.values())

    def cancel_run(self, run_id: int) -> None:
        """Make the trigger heartbeat answer CANCELLED (the client then calls ``os._exit(2)``!)."""
        with self.state.lock:
            self.state.runs[run_id].cancel_requested = True

    def reap_stale_runs(
        self, now: int | None = None, heartbeat_timeout_s: float = 150, data_timeout_s: float = 1800
    ) -> list[int]:
        """Run the py service's stale-run reaper once; returns the ids it marked FAILED.

        Production marks a RUNNING run FAILED when its last heartbeat is older than 150 s or
        it received no data for 1800 s.  The fake never reaps on its own (tests stay
        deterministic); call this, usually with a future ``now`` (epoch ms), to reproduce the
        "back-dated import reaped to FAILED" trap and test the resume + finish repair.
        """
        now = now_ms() if now is None else now
        reaped = []
        with self.state.lock:
            for run in self.state.runs.values():
                if run.status != "RUNNING":
                    continue
                running_since = next(
                    (t for s, t in reversed(run.status_history) if s == "RUNNING"), run.created_at
                )
                beat = max(run.last_heartbeat_ms or 0, running_since)
                data = self.state.data_for(run.project, run.id).last_ingest_ms
                last_data = max(data or 0, running_since)
                if now - beat > heartbeat_timeout_s * 1000 or now - last_data > data_timeout_s * 1000:
                    self._set_status(run, "FAILED", now)
                    run.status_updated = now
                    run.status_metadata = json.dumps({"reason": "stale run reaped (fake)"})
                    reaped.append(run.id)
        return reaped

    def add_api_key(self, key: str) -> None:
        self.api_keys.add(key)

    def reset_counters(self) -> None:
        with self._log_lock:
            self.counts.clear()
            self.requests.clear()

    # -- internals ---------------------------------------------------------------------------
    def _record(self, req: Request) -> RequestRecord:
        key = endpoint_key(req.method, req.path)
        rec = RequestRecord(
            req.method,
            req.path,
            key,
            req.query,
            req.headers,
            req.body if len(req.body) <= self.record_body_limit else None,
            len(req.body),
        )
        with self._log_lock:
            self.counts[key] += 1
            if self.keep_request_log:
                self.requests.append(rec)
        return rec

    def _handle(self, req: Request) -> Response:
        try:
            handler = self._routes.get((req.method, req.path))
            if handler is None:
                if req.path.startswith("/s3/") and req.method in ("PUT", "GET"):
                    handler = self._h_s3_put if req.method == "PUT" else self._h_s3_get
                elif req.method == "GET" and req.path.startswith("/api/runs/details/"):
                    handler = self._h_details
                else:
                    return _json(404, {"error": "Not Found"})
            return handler(req)
        except _ApiError as exc:
            return _json(exc.status, exc.body)
        except Exception as exc:  # a bug in the fake: surface it to the test
            self.errors.append(exc)
            return _json(500, {"error": f"fake server error: {type(exc).__name__}: {exc}"})

    # auth ----------------------------------------------------------------------------------
    def _bearer(self, req: Request) -> str | None:
        h = req.headers.get("authorization")
        if not h or not h.startswith("Bearer "):
            return None
        return h[len("Bearer ") :].strip() or None

    def _api_auth(self, req: Request) -> None:
        key = self._bearer(req)
        if key is None:
            raise _ApiError(401, {"error": "Unauthorized", "message": "Missing API key"})
        if not key.startswith(_API_KEY_PREFIXES) or key not in self.api_keys:
            raise _ApiError(401, {"error": "Unauthorized", "message": "Invalid API key"})

    def _ingest_auth(self, req: Request) -> None:
        key = self._bearer(req)
        if key is None:
            raise _ApiError(401, {"code": "MISSING_TOKEN", "message": "Missing authorization token"})
        if key not in self.api_keys:
            raise _ApiError(401, {"code": "INVALID_TOKEN", "message": "Invalid API key"})

    def _ingest_target(self, req: Request) -> tuple[str, int]:
        """(project, runId) from the headers; the run is not required to exist (like production)."""
        run_header = req.headers.get("x-run-id")
        if run_header is None:
            raise _ApiError(
                400, {"code": "INVALID_HEADER_FORMAT", "message": "Missing required header: X-Run-Id"}
            )
        project = req.headers.get("x-project-name")
        if project is None:
            raise _ApiError(
                400, {"code": "INVALID_HEADER_FORMAT", "message": "Missing required header: X-Project-Name"}
            )
        try:
            run_id = int(run_header) if run_header.strip().isdigit() else 0
        except ValueError:
            run_id = 0
        if run_id >= 2**64:
            run_id = 0
        return project, run_id

    # body helpers ----------------------------------------------------------------------------
    @staticmethod
    def _body(req: Request) -> dict[str, Any]:
        try:
            obj = req.json()
        except (ValueError, UnicodeDecodeError):
            raise _ApiError(400, {"error": "Invalid JSON body"}) from None
        if not isinstance(obj, dict):
            raise _ApiError(400, {"error": "Expected a JSON object body"})
        return obj

    @staticmethod
    def _opt_int(obj: dict[str, Any], key: str) -> int | None:
        v = obj.get(key)
        if v is None:
            return None
        if type(v) is not int or v < 0:
            raise _ApiError(400, {"error": f"{key} must be a non-negative integer"})
        return v

    @staticmethod
    def _json_field(obj: dict[str, Any], key: str) -> Any:
        """config / systemMetadata / loggerSettings arrive as JSON *strings*."""
        v = obj.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            raise _ApiError(400, {"error": f"{key} must be a JSON string"})
        try:
            return json.loads(v)
        except ValueError:
            raise _ApiError(400, {"error": f"{key} is not valid JSON"}) from None

    @staticmethod
    def _check_tags(tags: Any) -> list[str]:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _ApiError(400, {"error": "tags must be an array of strings"})
        if len(tags) > MAX_TAGS:
            raise _ApiError(400, {"error": f"A run can have at most {MAX_TAGS} tags."})
        if sum(1 for t in tags if t.startswith("group:")) > 1:
            raise _ApiError(400, {"error": "A run can have at most one group:* tag."})
        return list(tags)

    def _run_from_body(self, obj: dict[str, Any]) -> Run:
        run_id = obj.get("runId")
        if type(run_id) is not int:
            raise _ApiError(400, {"error": "runId must be an integer"})
        run = self.state.runs.get(run_id)
        if run is None:
            raise _ApiError(404, {"error": "Run not found"})
        return run

    def _run_url(self, run: Run) -> str:
        return f"{self.url}/o/{self.state.org_slug}/projects/{quote(run.project, safe='')}/{run.id}"

    def _run_response(self, run: Run, resumed: bool) -> Response:
        return _json(
            200,
            {
                "runId": run.id,
                "number": run.number,
                "displayId": run.display_id,
                "projectName": run.project,
                "organizationSlug": self.state.org_slug,
                "url": self._run_url(run),
                "resumed": resumed,
                "forkedFromRunId": run.fork_run_id,
                "forkStep": run.fork_step,
            },
        )

    @staticmethod
    def _set_status(run: Run, status: str, at: int) -> None:
        run.status = status
        run.status_history.append((status, at))

    # API handlers ----------------------------------------------------------------------------
    def _h_slug(self, req: Request) -> Response:
        self._api_auth(req)
        return _json(200, {"organization": {"slug": self.state.org_slug}})

    def _h_create(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        name, project_name = b.get("runName"), b.get("projectName")
        if not isinstance(name, str) or not isinstance(project_name, str):
            raise _ApiError(400, {"error": "runName and projectName must be strings"})
        external_id = b.get("externalId")
        if external_id is not None and not isinstance(external_id, str):
            raise _ApiError(400, {"error": "externalId must be a string"})
        config = self._json_field(b, "config")
        if config is not None and not isinstance(config, dict):
            raise _ApiError(400, {"error": "config must encode a JSON object"})
        system_metadata = self._json_field(b, "systemMetadata")
        logger_settings = self._json_field(b, "loggerSettings")
        tags = self._check_tags(b["tags"]) if b.get("tags") is not None else []
        created_at = self._opt_int(b, "createdAt")
        updated_at = self._opt_int(b, "updatedAt")
        fork_run_id, fork_step = b.get("forkRunId"), b.get("forkStep")
        now = now_ms()
        with self.state.lock:
            project = self.state.project(project_name)
            assert project is not None
            if external_id is not None:
                existing = self.state.find_external(project_name, external_id)
                if existing is not None:
                    # Same externalId in the same org+project: hand back that run, RUNNING again.
                    if config:
                        existing.config = deep_merge(existing.config, config)
                    existing.resume_count += 1
                    existing.updated_at = now
                    self._set_status(existing, "RUNNING", now)
                    return self._run_response(existing, resumed=True)
            parent: Run | None = None
            if fork_run_id is not None:
                if type(fork_run_id) is not int or type(fork_step) is not int or fork_step < 0:
                    raise _ApiError(
                        400, {"error": "forkRunId and forkStep must be given together as integers"}
                    )
                parent = self.state.runs.get(fork_run_id)
                if parent is None:
                    raise _ApiError(404, {"error": "Parent run not found"})
                if b.get("inheritConfig", True):
                    config = deep_merge(parent.config, config or {})
                if b.get("inheritTags", False):
                    tags = self._check_tags(parent.tags + [t for t in tags if t not in parent.tags])
            run = self.state.new_run(
                project,
                name=name,
                external_id=external_id,
                config=config or {},
                tags=tags,
                status="RUNNING",
                created_at=created_at if created_at is not None else now,
                updated_at=updated_at if updated_at is not None else now,
                system_metadata=system_metadata,
                logger_settings=logger_settings,
                fork_run_id=parent.id if parent else None,
                fork_step=fork_step if parent else None,
            )
            run.status_history.append(("RUNNING", now))
            return self._run_response(run, resumed=False)

    def _h_resume(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        with self.state.lock:
            run: Run | None = None
            if b.get("runId") is not None:
                run = self.state.runs.get(b["runId"]) if type(b["runId"]) is int else None
            elif b.get("displayId") is not None:
                run = self.state.find_display(str(b["displayId"]), b.get("projectName"))
            elif b.get("externalId") is not None:
                run = self.state.find_external(str(b.get("projectName")), str(b["externalId"]))
            else:
                raise _ApiError(400, {"error": "runId, displayId or externalId is required"})
            if run is None:
                raise _ApiError(404, {"error": "Run not found"})
            run.resume_count += 1
            self._set_status(run, "RUNNING", now_ms())
            return self._run_response(run, resumed=True)

    def _h_trigger(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        with self.state.lock:
            run = self._run_from_body(b)
            run.heartbeats += 1
            run.last_heartbeat_ms = now_ms()
            # CANCELLED makes the client os._exit(); only say it when a test asked for it.
            status = (
                "CANCELLED"
                if run.cancel_requested
                else ("RUNNING" if run.status == "CANCELLED" else run.status)
            )
            return _json(200, {"status": status, "triggers": None})

    def _h_log_name(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        log_type, names = b.get("logType"), b.get("logName")
        if log_type not in LOG_TYPES:
            raise _ApiError(400, {"error": f"Invalid logType: {log_type!r}"})
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise _ApiError(400, {"error": "logName must be an array of strings"})
        with self.state.lock:
            run = self._run_from_body(b)
            for n in names:
                run.log_names[n] = log_type
        return _json(200, {"success": True})

    def _h_config(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        delta = self._json_field(b, "config")
        if delta is not None and not isinstance(delta, dict):
            raise _ApiError(400, {"error": "config must encode a JSON object"})
        with self.state.lock:
            run = self._run_from_body(b)
            if delta:
                run.config = deep_merge(run.config, delta)
                run.updated_at = now_ms()
        return _json(200, {"success": True})

    def _h_tags(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        tags = self._check_tags(b.get("tags"))
        with self.state.lock:
            run = self._run_from_body(b)
            run.tags = tags
            run.updated_at = now_ms()
        return _json(200, {"success": True})

    def _h_status(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        status = b.get("status")
        if status not in STATUS_RANK:
            raise _ApiError(400, {"error": f"Invalid status: {status!r}"})
        status_updated = self._opt_int(b, "statusUpdated")
        with self.state.lock:
            run = self._run_from_body(b)
            current = run.status
            if current != "RUNNING" and STATUS_RANK[status] < STATUS_RANK[current]:
                return _json(200, {"success": True})  # lower terminal state: silently ignored
            now = now_ms()
            self._set_status(run, status, now)
            run.status_metadata = b.get("statusMetadata")
            run.status_updated = status_updated if status_updated is not None else now
            run.updated_at = now
        return _json(200, {"success": True})

    def _h_graph(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        with self.state.lock:
            self._run_from_body(b).model_graphs.append(b.get("graph"))
        return _json(200, {"success": True})

    def _h_alert(self, req: Request) -> Response:
        self._api_auth(req)
        b = self._body(req)
        with self.state.lock:
            self._run_from_body(b).alerts.append(b.get("alert"))
        return _json(200, {"success": True})

    # ingest handlers -------------------------------------------------------------------------
    @staticmethod
    def _ingest_result(rows: int, err: IngestError | None) -> Response:
        if err is not None:
            return _json(err.status, err.body())
        return Response(
            200, f"Stream processed successfully: {rows} records".encode(), "text/plain; charset=utf-8"
        )

    def _h_ingest_metrics(self, req: Request) -> Response:
        self._ingest_auth(req)
        project, run_id = self._ingest_target(req)
        batch, err = parse_metrics(req.body, fast=self.fast_ingest)
        with self.state.lock:
            data = self.state.data_for(project, run_id)
            for name, (steps, values, times) in batch.series.items():
                data.series_for_write(name).append(steps, values, times)
            if batch.rows:
                data.last_ingest_ms = now_ms()
        return self._ingest_result(batch.rows, err)

    def _h_ingest_data(self, req: Request) -> Response:
        self._ingest_auth(req)
        project, run_id = self._ingest_target(req)
        rows, err = parse_lines(req.body, decode_data_line)
        with self.state.lock:
            data = self.state.data_for(project, run_id)
            data.data.extend(DataRow(ln, dt, d, s, t) for t, d, s, dt, ln in rows)
            if rows:
                data.last_ingest_ms = now_ms()
        return self._ingest_result(len(rows), err)

    def _h_ingest_logs(self, req: Request) -> Response:
        self._ingest_auth(req)
        project, run_id = self._ingest_target(req)
        rows, err = parse_lines(req.body, decode_log_line)
        with self.state.lock:
            data = self.state.data_for(project, run_id)
            data.logs.extend(LogRow(t, m, n, lt) for t, m, n, lt in rows)
            if rows:
                data.last_ingest_ms = now_ms()
        return self._ingest_result(len(rows), err)

    def _h_files(self, req: Request) -> Response:
        # axum runs the Json extractor before the handler authenticates.
        try:
            entries = decode_files_body(req.headers.get("content-type"), req.body)
        except RejectionError as exc:
            return Response(exc.status, exc.text.encode(), "text/plain; charset=utf-8")
        self._ingest_auth(req)
        project, run_id = self._ingest_target(req)
        out: dict[str, list[dict[str, str]]] = {}
        with self.state.lock:
            data = self.state.data_for(project, run_id)
            for e in entries:
                key = f"{self.state.org_slug}/{project}/{run_id}/{e['logName']}/{e['fileName']}"
                ft = e["fileType"]
                data.files.append(
                    FileRow(
                        file_name=e["fileName"],
                        file_type=ft if isinstance(ft, str) else ft["custom"],
                        file_size=e["fileSize"],
                        log_name=e["logName"],
                        step=e["step"],
                        time=e["time"],
                        key=key,
                        caption=e.get("caption"),
                        sample_index=e.get("sampleIndex"),
                        annotations=e.get("annotations"),
                        store=self.state.objects,
                    )
                )
                out.setdefault(e["logName"], []).append({e["fileName"]: self._object_url(key)})
        return _json(200, out)

    def _object_url(self, key: str) -> str:
        return f"{self.url}/s3/{quote(key, safe='/')}"

    def _h_s3_put(self, req: Request) -> Response:
        key = req.path[len("/s3/") :]
        with self.state.lock:
            self.state.objects.objects[key] = req.body
            self.state.objects.content_types[key] = req.headers.get("content-type", "")
        return Response(200, b"", "application/xml", {"ETag": f'"{abs(hash(req.body)):x}"'})

    def _h_s3_get(self, req: Request) -> Response:
        key = req.path[len("/s3/") :]
        with self.state.lock:
            blob = self.state.objects.objects.get(key)
            ctype = self.state.objects.content_types.get(key) or "application/octet-stream"
        if blob is None:
            return Response(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        return Response(200, blob, ctype)

    # read-back handlers ----------------------------------------------------------------------
    def _run_json(self, run: Run) -> dict[str, Any]:
        return {
            "id": run.id,
            "name": run.name,
            "number": run.number,
            "displayId": run.display_id,
            "status": run.status,
            "tags": list(run.tags),
            "config": run.config,
            "systemMetadata": run.system_metadata,
            "loggerSettings": run.logger_settings,
            "statusMetadata": run.status_metadata,
            "projectName": run.project,
            "externalId": run.external_id,
            "createdAt": _iso(run.created_at),
            "updatedAt": _iso(run.updated_at),
            "statusUpdated": _iso(run.status_updated),
            "forkedFromRunId": run.fork_run_id,
            "forkStep": run.fork_step,
            "url": self._run_url(run),
        }

    @staticmethod
    def _int_param(
        req: Request, name: str, default: int | None = None, maximum: int | None = None
    ) -> int | None:
        raw = req.q(name)
        if raw is None:
            return default
        if not raw.isdigit():
            raise _ApiError(400, {"error": f"{name} must be a non-negative integer"})
        value = int(raw)
        if maximum is not None and value > maximum:
            raise _ApiError(400, {"error": f"{name} must be <= {maximum}"})
        return value

    def _run_param(self, req: Request) -> Run:
        run_id = self._int_param(req, "runId")
        if run_id is None:
            raise _ApiError(400, {"error": "runId is required"})
        run = self.state.runs.get(run_id)
        project = req.q("projectName")
        if run is None or (project is not None and run.project != project):
            raise _ApiError(404, {"error": "Run not found"})
        return run

    def _h_details(self, req: Request) -> Response:
        self._api_auth(req)
        rest = req.path[len("/api/runs/details/") :]
        project = req.q("projectName")
        with self.state.lock:
            if rest.startswith("by-display-id/"):
                run = self.state.find_display(rest[len("by-display-id/") :], project)
                limit = 1000
            else:
                run = self.state.runs.get(int(rest)) if rest.isdigit() else None
                if run is not None and project is not None and run.project != project:
                    run = None
                limit = None
            if run is None:
                raise _ApiError(404, {"error": "Run not found"})
            out = self._run_json(run)
            names = sorted(run.log_names.items())[:limit]
            out["logNames"] = [{"logName": n, "logType": t, "logGroup": log_group(n)} for n, t in names]
        return _json(200, out)

    def _h_list(self, req: Request) -> Response:
        self._api_auth(req)
        project = req.q("projectName")
        limit = self._int_param(req, "limit", 50, 200)
        offset = self._int_param(req, "offset", 0, 100000)
        search = (req.q("search") or "").lower()
        tags = [t for t in (req.q("tags") or "").split(",") if t]
        if req.q("filter") is not None:
            # Loud rather than silently wrong: the Mongo-style filter language is not modelled.
            raise _ApiError(400, {"error": "the fake Pluto server does not support `filter`"})
        sort = req.q("sort") or "-createdAt"
        desc = sort.startswith("-")
        sort_field = sort.lstrip("+-")
        attr = {
            "createdAt": "created_at",
            "created_at": "created_at",
            "updatedAt": "updated_at",
            "updated_at": "updated_at",
            "name": "name",
            "status": "status",
        }.get(sort_field)
        if attr is None:
            raise _ApiError(400, {"error": f"Unsupported sort field: {sort_field}"})
        with self.state.lock:
            p = self.state.projects.get(project or "")
            runs = [
                r
                for r in (p.runs if p else [])
                if search in r.name.lower() and all(t in r.tags for t in tags)
            ]
            runs.sort(key=lambda r: (getattr(r, attr), r.id), reverse=desc)
            page = runs[offset : offset + limit]  # type: ignore[operator]
            return _json(200, {"runs": [self._run_json(r) for r in page]})

    def _h_projects(self, req: Request) -> Response:
        self._api_auth(req)
        with self.state.lock:
            return _json(
                200,
                {
                    "projects": [
                        {
                            "id": p.id,
                            "name": p.name,
                            "runCount": len(p.runs),
                            "createdAt": _iso(p.created_at),
                            "updatedAt": _iso(max([p.created_at] + [r.updated_at for r in p.runs])),
                        }
                        for p in self.state.projects.values()
                    ]
                },
            )

    def _h_metric_names(self, req: Request) -> Response:
        self._api_auth(req)
        project = req.q("projectName") or ""
        limit = self._int_param(req, "limit", 500, 500)
        search = req.q("search") or ""
        run_ids = {int(x) for x in (req.q("runIds") or "").split(",") if x.strip().isdigit()}
        with self.state.lock:
            names: set[str] = set()
            for (proj, rid), data in self.state.run_data.items():
                if proj == project and (not run_ids or rid in run_ids):
                    names.update(n for n in data.metrics if search in n)
        return _json(200, {"metricNames": sorted(names)[:limit]})

    def _series_for(self, req: Request) -> tuple[Run, list[Any]]:
        run = self._run_param(req)
        data = self.state.data_for(run.project, run.id)
        name = req.q("logName")
        if name is not None:
            series = [data.metrics[name]] if name in data.metrics else []
        else:
            series = [data.metrics[n] for n in sorted(data.metrics)]
        return run, series

    def _h_metrics(self, req: Request) -> Response:
        self._api_auth(req)
        limit = self._int_param(req, "limit", 10000, 10000)
        step_min = self._int_param(req, "stepMin")
        step_max = self._int_param(req, "stepMax")
        out: list[dict[str, Any]] = []
        with self.state.lock:
            _, series = self._series_for(req)
            for s in series:
                steps, values, times = s.arrays()
                mask = np.ones(len(steps), dtype=bool)
                if step_min is not None:
                    mask &= steps >= np.uint64(step_min)
                if step_max is not None:
                    mask &= steps <= np.uint64(step_max)
                idx = np.flatnonzero(mask)
                if limit is not None and len(idx) > limit:
                    # The real server reservoir-samples; the fake keeps an even, deterministic spread.
                    idx = idx[np.unique(np.linspace(0, len(idx) - 1, num=limit).round().astype(np.int64))]
                group = log_group(s.name)
                for st, v, t in zip(
                    steps[idx].tolist(), values[idx].tolist(), times[idx].tolist(), strict=True
                ):
                    out.append(
                        {
                            "logName": s.name,
                            "logGroup": group,
                            "step": st,
                            "time": _iso(t),
                            "value": _finite_or_none(v),
                        }
                    )
        return _json(200, {"metrics": out})

    def _h_metrics_raw(self, req: Request) -> Response:
        self._api_auth(req)
        limit = self._int_param(req, "limit", 50000, 50000)
        step_min = self._int_param(req, "stepMin")
        step_max = self._int_param(req, "stepMax")
        rows: list[dict[str, Any]] = []
        truncated = False
        with self.state.lock:
            _, series = self._series_for(req)
            for s in series:
                steps, values, times = s.raw()
                order = np.lexsort((times, steps))
                group = log_group(s.name)
                for i in order.tolist():
                    st = int(steps[i])
                    if (step_min is not None and st < step_min) or (step_max is not None and st > step_max):
                        continue
                    if limit is not None and len(rows) >= limit:
                        truncated = True
                        break
                    v = float(values[i])
                    flags = 0
                    if math.isnan(v):
                        flags = NONFINITE_NAN
                    elif v == math.inf:
                        flags = NONFINITE_POS_INF
                    elif v == -math.inf:
                        flags = NONFINITE_NEG_INF
                    rows.append(
                        {
                            "logName": s.name,
                            "logGroup": group,
                            "step": st,
                            "time": _iso(int(times[i])),
                            "value": _finite_or_none(v),
                            "nonFiniteFlags": flags,
                        }
                    )
        return _json(200, {"rows": rows, "truncated": truncated})

    def _h_statistics(self, req: Request) -> Response:
        self._api_auth(req)
        out: list[dict[str, Any]] = []
        with self.state.lock:
            run, series = self._series_for(req)
            for s in series[:100]:
                steps, values, _ = s.arrays()
                if len(steps) == 0:
                    continue
                finite = values[np.isfinite(values)]
                stats: dict[str, Any] = {
                    "logName": s.name,
                    "logGroup": log_group(s.name),
                    "count": int(len(steps)),
                }
                if len(finite):
                    stats.update(
                        min=float(finite.min()),
                        max=float(finite.max()),
                        mean=float(finite.mean()),
                        stddev=float(finite.std()),
                    )
                else:
                    stats.update(min=None, max=None, mean=None, stddev=None)
                stats["last"] = {"step": int(steps[-1]), "value": _finite_or_none(float(values[-1]))}
                out.append(stats)
        return _json(200, {"runId": run.id, "metrics": out})

    def _h_files_list(self, req: Request) -> Response:
        self._api_auth(req)
        name = req.q("logName")
        with self.state.lock:
            run = self._run_param(req)
            files = [
                {
                    "fileName": f.file_name,
                    "fileType": f.file_type,
                    "fileSize": f.file_size,
                    "logName": f.log_name,
                    "logGroup": log_group(f.log_name),
                    "time": _iso(f.time),
                    "step": f.step,
                    "caption": f.caption,
                    "url": self._object_url(f.key),
                }
                for f in self.state.data_for(run.project, run.id).files
                if name is None or f.log_name == name
            ]
        return _json(200, {"files": files})

    def _h_logs(self, req: Request) -> Response:
        self._api_auth(req)
        limit = self._int_param(req, "limit", 10000, 10000)
        offset = self._int_param(req, "offset", 0)
        log_type = req.q("logType")
        with self.state.lock:
            run = self._run_param(req)
            logs = [
                line
                for line in self.state.data_for(run.project, run.id).logs
                if log_type is None or line.log_type.lower() == log_type.lower()
            ]
            logs = sorted(logs, key=lambda x: (x.time, x.line_number))
            page = logs[offset : offset + limit]  # type: ignore[operator]
            return _json(
                200,
                {
                    "logs": [
                        {
                            "message": x.message,
                            "logType": x.log_type,
                            "time": _iso(x.time),
                            "lineNumber": x.line_number,
                            "step": x.line_number,
                        }
                        for x in page
                    ],
                    "total": len(logs),
                },
            )

    def _h_status_history(self, req: Request) -> Response:
        self._api_auth(req)
        with self.state.lock:
            run = self._run_param(req)
            history = [{"status": s, "createdAt": _iso(t)} for s, t in run.status_history]
        return _json(200, {"runId": run.id, "history": history})

    def _h_state(self, req: Request) -> Response:
        """Debug dump (no auth): what arrived, summarised."""
        with self.state.lock:
            runs = []
            for run in self.state.runs.values():
                d = self._run_json(run)
                d["logNames"] = dict(run.log_names)
                d["metrics"] = {n: {"points": len(s), "rawRows": s.raw_count} for n, s in run.metrics.items()}
                d["dataRows"] = len(run.data)
                d["logLines"] = len(run.logs)
                d["files"] = [f.file_name for f in run.files]
                runs.append(d)
            counts = dict(self.counts)
        return _json(200, {"organization": self.state.org_slug, "runs": runs, "counts": counts})


def retry_after_header(value: float | str) -> str:
    """A Retry-After value as sent: seconds (``7``) or, given as a string, verbatim (an HTTP date)."""
    return value if isinstance(value, str) else f"{value:g}"
