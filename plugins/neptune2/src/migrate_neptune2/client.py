"""HTTP access to a Neptune 2.x server, bootstrapped by the unmodified neptune 1.x client.

The neptune client does what only it should do: parse the API token, read the server's ClientConfig, check
the version, exchange the token for an OAuth session and download the Swagger specs that name every
operation's path. We then send the data requests ourselves over that authenticated session, because the
client's own paths cost too much for a migration:

- bravado builds a Python model object per series point (~25 ms per 1000-point page); we parse the JSON and
  hand the arrays to pyarrow;
- runs-table pages are not retried by the client at all, and its 429 handling waits the *first digit* of
  `Retry-After`; here every request is retried with backoff and jitter, honours `Retry-After` in full, and
  gives up after a bounded budget with a one-line error;
- requests pass a shared rate limiter (the documented limit is 1000 requests per minute per user).
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import requests
import structlog
from migrate_core import retry
from migrate_core.retry import MAX_RETRY_AFTER, RetryPolicy, Transient
from requests.adapters import HTTPAdapter

from .errors import ApiError, AuthError, Neptune2Error

log = structlog.get_logger("migrate.neptune2")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
ARTIFACT_API_VERSION = "2"
SPOOL_BYTES = 8 << 20


@dataclass(frozen=True)
class ClientSettings:
    token_env: str = "NEPTUNE_API_TOKEN"
    requests_per_minute: int = 1000
    burst: int = 50
    max_connections: int = 32
    timeout: float = 60.0
    retry_budget: float = 120.0
    backoff: float = 0.5
    ssl_verify: bool | None = None  # None: the neptune client's own rule (NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE)


class RateLimiter:
    """Token bucket shared by every thread of one source; `pause()` stops everyone after a 429."""

    def __init__(self, per_minute: int, burst: int) -> None:
        self.rate = per_minute / 60.0 if per_minute > 0 else 0.0
        self.capacity = float(max(1, burst))
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def acquire(self, cancelled: Callable[[], bool] | None = None) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                wait = self.paused_until - now
                if wait <= 0 and self.rate:
                    self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                    self.updated = now
                    if self.tokens >= 1:
                        self.tokens -= 1
                        return
                    wait = (1 - self.tokens) / self.rate
                elif wait <= 0:
                    return
            if cancelled is not None and cancelled():
                return
            time.sleep(max(0.001, min(wait, 0.25)))

    def pause(self, seconds: float) -> None:
        with self.lock:
            self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (the whole value, not its first digit)."""
    return retry.parse_retry_after(value)


class Neptune2Client:
    """One authenticated session to one Neptune 2.x server, safe to share between worker threads."""

    def __init__(self, api_token: str, settings: ClientSettings) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.requests_per_minute, settings.burst)
        self.request_count = 0
        self._count_lock = threading.Lock()
        self._bootstrap(api_token)

    # ------------------------------------------------------------------------------------------ bootstrap

    def _bootstrap(self, api_token: str) -> None:
        from neptune.common.exceptions import (
            ClientHttpError,
            NeptuneConnectionLostException,
            NeptuneInvalidApiTokenException,
        )
        from neptune.internal.backends import hosted_client
        from neptune.internal.backends.api_model import OptionalFeatures
        from neptune.internal.backends.utils import ssl_verify
        from neptune.internal.credentials import Credentials

        env = self.settings.token_env
        try:
            credentials = Credentials.from_token(api_token)
        except NeptuneInvalidApiTokenException:
            raise AuthError(f"${env} does not hold a valid Neptune API token") from None
        verify = ssl_verify() if self.settings.ssl_verify is None else self.settings.ssl_verify
        address = credentials.api_url_opt or credentials.token_origin_address
        try:
            http_client, config = hosted_client.create_http_client_with_auth(credentials, verify, None)
        except NeptuneInvalidApiTokenException:
            raise AuthError(f"Neptune at {address} rejected the API token in ${env} (invalid or revoked)") from None
        except ClientHttpError as exc:
            if "X-Neptune-Api-Token" in str(getattr(exc, "response", "")):
                raise AuthError(
                    f"Neptune at {address} refused the API token in ${env} as missing or invalid "
                    "(is it a token for this server and a 2.x API?)"
                ) from None
            raise Neptune2Error(f"Neptune at {address} refused the connection: HTTP {exc.status}") from None
        except NeptuneConnectionLostException:
            raise Neptune2Error(f"cannot reach Neptune at {address} (connection failed until the retry budget ran out)"
                                ) from None
        self.api_url = config.api_url.rstrip("/")
        self.auth = http_client.authenticator.auth
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers.update(http_client.session.headers)
        self.session.headers["X-Neptune-LegacyClient"] = "false"
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=max(4, self.settings.max_connections))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.operations: dict[str, tuple[str, str]] = {}
        clients = [hosted_client.create_backend_client(config, http_client),
                   hosted_client.create_leaderboard_client(config, http_client)]
        self.artifacts_enabled = config.has_feature(OptionalFeatures.ARTIFACTS)
        if self.artifacts_enabled:
            clients.append(hosted_client.create_artifacts_client(config, http_client))
        for client in clients:
            for op_id, op in client.swagger_spec.resources["api"].operations.items():
                self.operations[op_id] = (op.http_method.upper(), op.path_name)

    def has(self, op: str) -> bool:
        return op in self.operations

    # ------------------------------------------------------------------------------------------ requests

    def request(
        self,
        op: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: Any = None,
        path_params: Mapping[str, str] | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        cancelled: Callable[[], bool] | None = None,
        ok_statuses: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one operation, retrying transient failures within the retry budget; raise ApiError otherwise."""
        if url is None:
            if op not in self.operations:
                raise Neptune2Error(f"the server's API does not offer {op}")
            method, path = self.operations[op]
            for key, value in (path_params or {}).items():
                path = path.replace("{" + key + "}", requests.utils.quote(str(value), safe=""))
            url = self.api_url + path
        else:
            method = "GET"

        def attempt() -> requests.Response:
            self.limiter.acquire(cancelled)
            self._refresh_if_needed()
            try:
                with self._count_lock:
                    self.request_count += 1
                response = self.session.request(
                    method, url, params=params, json=body, headers=headers, auth=self.auth, stream=stream,
                    timeout=(min(30.0, self.settings.timeout), self.settings.timeout),
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Transient(type(exc).__name__) from None
            status = response.status_code
            if status < 400 or status in ok_statuses:
                return response
            data = _json_or_none(response)
            response.close()
            if status == 401 and isinstance(data, dict) and data.get("errorType") == "AUTHORIZATION_TOKEN_EXPIRED":
                self.auth._refresh_token()  # noqa: SLF001 - the client's own refresh path
                raise Transient("token expired", status=status)
            if status in RETRY_STATUSES:
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if status == 429 and wait is not None:
                    self.limiter.pause(min(wait, MAX_RETRY_AFTER))
                raise Transient(f"HTTP {status}", retry_after=wait, status=status)
            if status == 401:
                raise AuthError(f"Neptune answered 401 Unauthorized to {op}: the API token in "
                                f"${self.settings.token_env} is not accepted")
            raise ApiError(op, status, data, response.text[:200] if data is None else "")

        def retried(event: retry.RetryEvent) -> None:
            log.info("neptune2_retry", op=op, reason=event.failure.problem, attempt=event.attempt,
                     wait_s=round(event.delay, 2))

        try:
            return retry.call(attempt, self._policy(), cancel=cancelled, on_retry=retried,  # type: ignore[return-value]
                              sleep=lambda seconds: _sleep(seconds, cancelled))
        except retry.RetriesExhausted as exc:
            if exc.why == "retry_after":
                raise Neptune2Error(
                    f"Neptune {op} kept failing ({exc.last.problem}) and asked to wait more than "
                    f"{MAX_RETRY_AFTER:.0f}s; giving up after {exc.attempts} attempts"
                ) from None
            raise Neptune2Error(
                f"Neptune {op} kept failing ({exc.last.problem}) for {self.settings.retry_budget:.0f}s, "
                f"{exc.attempts} attempts; giving up"
            ) from None

    def _policy(self) -> RetryPolicy:
        """Requests: doubling from `backoff` up to 30 s with partial jitter, for `retry_budget` seconds; a
        Retry-After up to 10 min is waited and does not count against the budget, a longer one fails."""
        return RetryPolicy(attempts=None, deadline=self.settings.retry_budget, backoff=self.settings.backoff,
                           backoff_max=30.0, jitter=0.5, max_retry_after=MAX_RETRY_AFTER,
                           long_retry_after="fail", retry_after_in_deadline=False)

    def _refresh_if_needed(self) -> None:
        """The client's OAuth refresh (it retries connection errors itself, for NEPTUNE_RETRIES_TIMEOUT)."""
        try:
            self.auth.refresh_token_if_needed()
        except Exception as exc:
            if type(exc).__name__ == "NeptuneInvalidApiTokenException":
                raise AuthError(f"Neptune no longer accepts the API token in ${self.settings.token_env}") from None
            raise Neptune2Error(f"refreshing the Neptune access token failed: {type(exc).__name__}") from None

    def json(self, op: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        response = self.request(op, params, **kwargs)
        try:
            return json.loads(response.content)  # stdlib: accepts NaN/Infinity (simplejson refuses them)
        except ValueError as exc:
            raise Neptune2Error(f"Neptune {op} answered with a body that is not JSON ({exc})") from None

    def download(self, op: str, params: Mapping[str, Any] | None = None, *, url: str | None = None,
                 accept: str = "application/octet-stream", cancelled: Callable[[], bool] | None = None
                 ) -> tuple[IO[bytes], int, str | None, str | None]:
        """Fetch a body into a spooled temp file (retrying the whole download if it breaks off).

        Returns (file at position 0, size, file name from Content-Disposition, content type)."""
        def attempt() -> tuple[IO[bytes], int, str | None, str | None]:
            response = self.request(op, params, url=url, headers={"Accept": accept}, stream=True, cancelled=cancelled)
            spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed to the caller
            size = 0
            try:
                with response:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        spool.write(chunk)
                        size += len(chunk)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                spool.close()
                raise Transient(type(exc).__name__) from None
            spool.seek(0)
            return spool, size, _filename(response.headers.get("Content-Disposition")), \
                response.headers.get("Content-Type")

        # a body that breaks off is fetched again, doubling from 2 x backoff up to 10 s, within the budget
        policy = RetryPolicy(attempts=None, deadline=self.settings.retry_budget, backoff=2 * self.settings.backoff,
                             backoff_max=10.0, jitter=0.5)
        try:
            return retry.call(attempt, policy, cancel=cancelled,  # type: ignore[return-value]
                              sleep=lambda seconds: _sleep(seconds, cancelled))
        except retry.RetriesExhausted as exc:
            raise Neptune2Error(f"Neptune {op} download kept breaking off ({exc.last.problem})") from None

    # ------------------------------------------------------------------------------------------ projects

    def get_project(self, name: str) -> dict[str, Any] | None:
        try:
            return self.json("getProject", {"projectIdentifier": name})
        except ApiError as exc:
            if exc.status in (404, 400, 403):
                return None
            raise

    def list_projects(self, workspace: str | None = None, page: int = 200) -> list[str]:
        """Every project visible to the token (in `workspace`, if given), as `workspace/project`."""
        names: list[str] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"offset": offset, "limit": page}
            if workspace:
                params["organizationIdentifier"] = workspace
            else:
                params["userRelation"] = "viewerOrHigher"
            data = self.json("listProjects", params)
            entries = data.get("entries") or []
            names += [f"{e.get('organizationName')}/{e.get('name')}" for e in entries]
            offset += len(entries)
            if not entries or offset >= int(data.get("matchingItemCount") or 0):
                return names

    def close(self) -> None:
        self.session.close()


def _json_or_none(response: requests.Response) -> Any:
    try:
        return json.loads(response.content)
    except ValueError:
        return None


def _filename(disposition: str | None) -> str | None:
    """The file name of a Content-Disposition header; `filename*=UTF-8''...` (RFC 5987) wins over `filename=`."""
    if not disposition:
        return None
    plain = None
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        key, value = key.lower(), value.strip()
        if key == "filename*" and "''" in value:
            charset, _, encoded = value.partition("''")
            try:
                return requests.utils.unquote(encoded, encoding=charset or "utf-8") or plain
            except LookupError:
                continue
        if key == "filename" and value:
            plain = value.strip('"') or None
    return plain


def _sleep(seconds: float, cancelled: Callable[[], bool] | None) -> None:
    """Every retry wait: ends early, raising Cancelled, when `cancelled()` turns true (polled every 0.1 s)."""
    retry.wait(seconds, cancelled)
