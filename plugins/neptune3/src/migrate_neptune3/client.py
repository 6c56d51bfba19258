"""The one place that touches neptune-query: its authenticated HTTP client and its page fetchers.

We use neptune-query's *page* functions (one request each, with its retry and auth handling) rather than its
public `fetch_*` functions, because those build whole pandas frames (runs x steps x attributes) in memory and
label runs by `sys/custom_run_id` only. The page functions exist with the same signatures in 1.7 and 1.14;
this module is the compatibility seam if a later version moves them.

Every neptune-query error is translated here into one of our errors with a one-line message; the token is
never part of a message.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from migrate_core import retry
from neptune_query import exceptions as nq_exc
from neptune_query.internal import client as nq_client
from neptune_query.internal.context import Context
from neptune_query.internal.retrieval import attribute_definitions as nq_defs
from neptune_query.internal.retrieval import attribute_values as nq_values
from neptune_query.internal.retrieval import files as nq_files
from neptune_query.internal.retrieval import metrics as nq_metrics
from neptune_query.internal.retrieval import search as nq_search
from neptune_query.internal.retrieval import series as nq_series

from .errors import AuthError, Neptune3Error, ProjectError
from .floatwire import decode_dto, decode_response

T = TypeVar("T")
DEFAULT_RETRY_BUDGET = 300
RETRY_ENV = "NEPTUNE_QUERY_RETRY_SOFT_TIMEOUT"
RETRY_HARD_ENV = "NEPTUNE_QUERY_RETRY_HARD_TIMEOUT"

try:  # neptune-query's version, for the manifest and messages
    from importlib.metadata import version as _dist_version

    NQ_VERSION = _dist_version("neptune-query")
except Exception:  # pragma: no cover
    NQ_VERSION = "unknown"


def check_token(token: str, env: str) -> None:
    """Fail early, and clearly, on a token that cannot be a Neptune API token (never echoing it)."""
    try:
        payload = json.loads(base64.b64decode(token.encode("ascii"), validate=False).decode("utf-8"))
    except (binascii.Error, UnicodeError, ValueError):
        raise AuthError(f"${env} does not hold a Neptune API token (expected base64 JSON); "
                        "copy the token from your Neptune 3.x user menu") from None
    if not isinstance(payload, dict) or "api_key" not in payload:
        raise AuthError(f"${env} does not hold a Neptune API token (no api_key in it)")
    url = payload.get("api_url") or payload.get("api_address")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise AuthError(f"the API token in ${env} names no server URL (api_url); it is not a Neptune 3.x token")


def set_retry_budget(seconds: float | None) -> float:
    """neptune-query reads its retry budgets from the environment at every request: set them for this process.

    An explicit `retry_budget` wins; otherwise a budget the user exported is kept; otherwise 300 s (the
    client's own default is 30 min, which looks like a hang).
    """
    if seconds is None:
        current = os.environ.get(RETRY_ENV)
        if current:
            try:
                return float(current)
            except ValueError:
                pass
        seconds = DEFAULT_RETRY_BUDGET
    os.environ[RETRY_ENV] = str(int(max(1, round(seconds))))
    os.environ[RETRY_HARD_ENV] = str(int(max(30, round(seconds * 2))))
    return float(seconds)


class RunRetries:
    """Retries made for one run: counted for its report note and shown live through `ctx.event("retries")`
    (without a ctx, as for a group of runs, only counted)."""

    def __init__(self, ctx: Any = None) -> None:
        self.ctx = ctx
        self.count = 0
        self.requests = 0  # requests made for this run so far (only ever compared with an earlier count)
        self._lock = threading.Lock()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
        if self.ctx is not None:
            self.ctx.event("retries")


# The run whose request is being retried. neptune-query retries in the thread that made the request, so the
# run is found through a context variable: set by export_run, carried into its worker and prefetch threads
# (`contextvars.copy_context().run`). Retries outside a run (listing) are only counted process-wide.
CURRENT_RUN: ContextVar[RunRetries | None] = ContextVar("neptune3_current_run", default=None)


def _count_retry(event: retry.RetryEvent) -> None:
    """A retry of one of our own requests counts for the run in progress like one of neptune-query's."""
    run = CURRENT_RUN.get()
    if run is not None:
        run.hit()


@dataclass
class RetryCounter:
    """Counts neptune-query's retries (it logs "Backing off ..." before each) so progress can show them."""

    count: int = 0

    def install(self) -> None:
        import logging

        from neptune_query.internal.logger import get_logger

        counter = self
        logger = get_logger()
        floor = logger.getEffectiveLevel()

        class _Filter(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if record.getMessage().startswith("Backing off Neptune API request"):
                    counter.count += 1
                    run = CURRENT_RUN.get()
                    if run is not None:
                        run.hit()
                    return False  # counted and surfaced by us, not printed
                return record.levelno >= floor  # nothing more is printed than before

        logger.addFilter(_Filter())
        if floor > logging.INFO:
            logger.setLevel(logging.INFO)


class Neptune3Client:
    """neptune-query's HTTP client for one token, and typed page calls with our error translation."""

    def __init__(self, token: str, token_env: str) -> None:
        self.token_env = token_env
        self._token = token
        self._client: Any = None
        self._lock = threading.Lock()
        self.requests = 0
        self.cancel = threading.Event()  # set to stop our own retry waits (neptune-query's are its own)

    @property
    def http(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._call("sign-in", lambda: nq_client.get_client(Context(api_token=self._token)))
        return self._client

    # ---------------------------------------------------------------------------------------- errors

    def _call(self, what: str, fn: Callable[[], T], project: str | None = None) -> T:
        self.requests += 1
        run = CURRENT_RUN.get()
        if run is not None:
            run.requests += 1
        try:
            return fn()
        except nq_exc.NeptuneInvalidCredentialsError:
            raise AuthError(f"Neptune rejected the API token in ${self.token_env}") from None
        except nq_exc.NeptuneFailedToFetchClientConfig:
            raise AuthError(f"could not sign in with the token in ${self.token_env}: its server is unreachable or "
                            "does not serve the Neptune 3.x client configuration (if it is a Neptune 2.x token; "
                            "use --source neptune2)") from None
        except nq_exc.NeptuneProjectInaccessible:
            raise ProjectError(f"Neptune project {project!r} is not accessible with the token in "
                               f"${self.token_env}") from None
        except nq_exc.NeptuneUnexpectedResponseError as exc:
            raise self._unexpected(what, exc, project) from None
        except nq_exc.NeptuneRetryError as exc:
            raise Neptune3Error(f"Neptune {what} kept failing until the retry budget ran out "
                                f"({_one_line(exc)}); raise source.neptune3.retry_budget or retry later") from None
        except nq_exc.NeptuneError as exc:
            raise Neptune3Error(f"Neptune {what} failed: {_one_line(exc)}") from None
        except ValueError as exc:
            if "API token" in str(exc) or "api_token" in str(exc):
                raise AuthError(f"no usable Neptune API token in ${self.token_env}") from None
            raise

    def _unexpected(self, what: str, exc: Any, project: str | None) -> Exception:
        # neptune-query keeps status and body only in the message text
        found = re.search(r"Response status:\s*(\d+)", str(exc))
        status = int(found.group(1)) if found else None
        content = re.search(r"Response content:\s*(.*)", str(exc), re.S)
        body = _body_text(content.group(1).strip() if content else "")
        if status == 401:
            return AuthError(f"Neptune answered HTTP 401 to {what}: the API token in ${self.token_env} "
                             "expired or was revoked")
        if status == 404 and what == "runs search":
            if "project" in body.lower():
                return ProjectError(f"Neptune project {project!r} not found or not visible to the token in "
                                    f"${self.token_env}")
            return AuthError(f"the server behind the token in ${self.token_env} does not speak the Neptune 3.x "
                             "API (no runs search endpoint): if it is a Neptune 2.x token; use --source neptune2")
        if status in (400, 404) and what == "sign-in":
            return AuthError(f"the token in ${self.token_env} could not be exchanged (HTTP {status}); "
                             "is it a Neptune 3.x token?")
        return Neptune3Error(f"Neptune {what} answered HTTP {status}" + (f": {body[:300]}" if body else ""))

    # ---------------------------------------------------------------------------------------- calls

    def search_runs(self, project: str, query: str | None, attributes: list[str], page: int) -> Iterator[Any]:
        """Entries (ProtoAttributesDTO) of the project's runs matching `query`, oldest first, paged by offset.

        Oldest first, so runs created during the listing land after the last page instead of shifting it.
        Pages overlap a little and entries are deduplicated by `sys/id`, so runs deleted during the
        listing (which shift later offsets down) do not make the next page skip a run.
        """
        http = self.http
        overlap = min(50, page // 4)
        offset = 0
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {
                "attributeFilters": [{"path": name} for name in dict.fromkeys(["sys/id", *attributes])],
                "pagination": {"limit": page, "offset": offset},
                "experimentLeader": False,
                "sorting": {"dir": "ascending", "sortBy": {"name": "sys/creation_time", "type": "datetime"}},
            }
            if query:
                params["query"] = {"query": query}
            dto = self._call("runs search", lambda p=params: nq_search._fetch_sys_attrs_page(
                http, p, project_identifier=project), project)
            for entry in dto.entries:
                sys_id = next((a.string_properties.value for a in entry.attributes if a.name == "sys/id"), None)
                if sys_id is None or sys_id not in seen:
                    if sys_id is not None:
                        seen.add(sys_id)
                    yield entry
            if len(dto.entries) < page:
                return
            offset += page - overlap

    def list_projects(self, workspace: str, page: int = 200) -> list[str]:
        """Projects of `workspace` visible to the token, via the backend's project listing.

        neptune-query has no call for this; Neptune servers list projects on the backend API that 2.x also
        uses (`GET /api/backend/v1/projects`), which is what neptune-exporter's `--workspace` relies on. We
        send it over neptune-query's authenticated HTTP client (5xx, 429 and dropped connections retried).
        """
        http = self.http.get_httpx_client()
        names: list[str] = []
        offset = 0
        while True:
            params = {"organizationIdentifier": workspace, "offset": offset, "limit": page}
            response = self._get_retried(http, "/api/backend/v1/projects", params, f"project listing of {workspace!r}")
            if response.status_code == 404:
                raise ProjectError(f"this Neptune server offers no project listing (workspace {workspace!r}); "
                                   "name the projects in source.neptune3.projects or with -p")
            if response.status_code in (401, 403):
                raise AuthError(f"Neptune refused to list the projects of {workspace!r} for the token in "
                                f"${self.token_env} (HTTP {response.status_code})")
            if response.status_code != 200:
                raise Neptune3Error(f"Neptune project listing of {workspace!r} answered HTTP {response.status_code}")
            data = response.json()
            entries = data.get("entries") or []
            names += [f"{e.get('organizationName') or workspace}/{e.get('name')}" for e in entries]
            offset += len(entries)
            if not entries or offset >= int(data.get("matchingItemCount") or 0):
                return names

    def _get_retried(self, http: Any, path: str, params: dict[str, Any], what: str) -> Any:
        """One GET of ours (neptune-query has no call for it) under the shared retry policy: 5xx, 429 and
        dropped connections retried, doubling from 0.5 s to 30 s with jitter, a Retry-After (seconds or an
        HTTP date) replacing the backoff; all within the retry budget, and a Retry-After longer than 10 min
        fails at once. Retries count for the run in progress, like neptune-query's."""
        import httpx

        def attempt() -> Any:
            self.requests += 1
            try:
                response = http.get(path, params=params)
            except httpx.TransportError as exc:
                raise retry.Transient(_one_line(exc)) from None
            if response.status_code != 429 and response.status_code < 500:
                return response
            raise retry.Transient(f"HTTP {response.status_code}", status=response.status_code,
                                  retry_after=retry.parse_retry_after(response.headers.get("retry-after")))

        budget = float(os.environ.get(RETRY_ENV) or DEFAULT_RETRY_BUDGET)
        policy = retry.RetryPolicy(attempts=None, deadline=budget, backoff=0.5, backoff_max=30.0, jitter=0.5,
                                   max_retry_after=retry.MAX_RETRY_AFTER, long_retry_after="fail")
        try:
            return retry.call(attempt, policy, cancel=self.cancel, on_retry=_count_retry,
                              sleep=lambda seconds: self._sleep(seconds))
        except retry.RetriesExhausted as exc:
            if exc.why == "retry_after":
                raise Neptune3Error(f"Neptune {what} failed: the server asked to wait more than "
                                    f"{retry.MAX_RETRY_AFTER:.0f} s ({exc.last.problem})") from None
            raise Neptune3Error(f"Neptune {what} kept failing until the retry budget ran out "
                                f"({exc.last.problem})") from None

    def _sleep(self, seconds: float) -> None:
        retry.wait(seconds, self.cancel)  # raises Cancelled at once on Ctrl+C

    def attribute_definitions(self, project: str, sys_id: str) -> list[tuple[str, str]]:
        """(name, wire type) of every attribute of one run, paged by token."""
        return self.attribute_definitions_union(project, [sys_id])

    def attribute_definitions_union(self, project: str, sys_ids: list[str]) -> list[tuple[str, str]]:
        """(name, wire type) of the attributes of several runs: the union, not per run (the API says no more)."""
        http = self.http
        out: list[tuple[str, str]] = []
        params: dict[str, Any] = {
            "projectIdentifiers": [project],
            "experimentIdsFilter": [f"{project}/{sys_id}" for sys_id in sys_ids],
            "attributeNameFilter": {},
            "nextPage": {"limit": 10_000},
        }
        while True:
            dto = self._call("attribute definitions", lambda p=params: nq_defs._fetch_attribute_definitions_page(
                http, p), project)
            out.extend((e.name, str(getattr(e.type, "value", e.type))) for e in dto.entries)
            token = getattr(dto.next_page, "next_page_token", None) if dto.next_page else None
            if not token or not isinstance(token, str) or len(dto.entries) < 10_000:
                return out
            params = {**params, "nextPage": {"limit": 10_000, "nextPageToken": token}}

    def attribute_values(self, project: str, sys_id: str, names: list[str], limit: int) -> Iterator[Any]:
        """ProtoAttributeDTO values of the named attributes of one run."""
        for _sys_id, attribute in self.attribute_values_by_run(project, [sys_id], names, limit):
            yield attribute

    def attribute_values_by_run(self, project: str, sys_ids: list[str], names: list[str],
                                limit: int) -> Iterator[tuple[str, Any]]:
        """(sys/id, ProtoAttributeDTO) of the named attributes of several runs; a run lacking one has no entry."""
        http = self.http
        params: dict[str, Any] = {
            "experimentIdsFilter": [f"{project}/{sys_id}" for sys_id in sys_ids],
            "attributeNamesFilter": names,
            "nextPage": {"limit": limit},
        }
        while True:
            dto = self._call("attribute values", lambda p=params: nq_values._fetch_attribute_values_page(
                http, p, project_identifier=project), project)
            for entry in dto.entries:
                sys_id = entry.experimentShortId
                for attribute in entry.attributes:
                    yield sys_id, attribute
            token = dto.nextPage.nextPageToken
            if not token:
                return
            params = {**params, "nextPage": {"limit": limit, "nextPageToken": token}}

    def float_series_page(self, params: dict[str, Any]) -> list[tuple[str, Any]]:
        """(requestId, numpy columns) per series of one series/float answer, decoded from the raw bytes.

        The request goes through the same neptune-query call chain as its own `_fetch_metrics_page`
        (metadata header, retries, error mapping); we only skip its protobuf parse of the answer.
        """
        if getattr(nq_metrics, "get_multiple_float_series_values_proto", None) is None:  # pragma: no cover
            dto = self._call("float series read", lambda: nq_metrics._fetch_metrics_page(self.http, params))
            return [(s.requestId, decode_dto(s.series)) for s in dto.series]
        return decode_response(self.float_series_raw(params), nq_metrics.ProtoFloatSeriesValuesResponseDTO)

    def float_series_raw(self, params: dict[str, Any]) -> bytes:
        """The undecoded series/float answer (ProtoFloatSeriesValuesResponseDTO bytes)."""
        http = self.http
        raw = nq_metrics.get_multiple_float_series_values_proto

        def fetch() -> bytes:
            call = nq_metrics.retry.handle_errors_default(nq_metrics.with_neptune_client_metadata(raw.sync_detailed))
            return call(client=http, body=nq_metrics.FloatTimeSeriesValuesRequest.from_dict(params)).content

        return self._call("float series read", fetch)

    def series_page(self, params: dict[str, Any]) -> Any:
        return self._call("series read", lambda: nq_series._fetch_series_page(self.http, params))

    def signed_urls(self, project: str, paths: list[str]) -> list[Any]:
        refs = [_FileRef(path=p, project_identifier=project) for p in paths]
        return self._call("file signing", lambda: nq_files.fetch_signed_urls(self.http, refs, "read"), project)

    def download(self, signed: Any, target: Any) -> Any:
        """Download one signed file to `target`; None when the storage answers 404 (the file is gone)."""
        return self._call("file download", lambda: nq_files.download_file_complete(self.http, signed, target))


@dataclass(frozen=True)
class _FileRef:
    path: str
    project_identifier: str


def _body_text(content: Any) -> str:
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    text = str(content or "")
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            text = str(data.get("message") or data.get("title") or data.get("errorType") or text)
    except ValueError:
        pass
    return " ".join(text.split())


def _one_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m|\{h1\}|\{end\}", "", str(exc))  # neptune-query colours its messages
    return " ".join(text.split())[:300]
