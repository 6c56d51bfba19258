"""HTTP to Pluto: one keep-alive client per run, timeouts everywhere, retries under the shared policy
(migrate_core.retry: backoff with jitter, Retry-After honoured up to 10 min), and one-line errors that
quote the server.

Transient: connection errors, timeouts, 408, 429 and 5xx. Anything else (401, 404, 422, ...) fails at
once with the server's message. Waits are cancellable, so Ctrl+C stops a run promptly.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

import httpx
from migrate_core import retry
from migrate_core.retry import MAX_RETRY_AFTER, RetryPolicy, Transient, parse_retry_after

from .errors import PlutoError

RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
__all__ = ["MAX_RETRY_AFTER", "RetryPolicy", "Transport", "parse_retry_after", "retry_policy"]
USER_AGENT = "migrate-ml-pluto/0.1"


@dataclass(frozen=True)
class Endpoints:
    api: str
    ingest: str
    py: str

    def describe(self) -> str:
        return self.api


def retry_policy(retries: int = 8, backoff: float = 1.0, backoff_max: float = 60.0) -> RetryPolicy:
    """The sink's settings as the shared policy: `retries` after the first attempt, exponential backoff with
    partial jitter up to `backoff_max`, and a Retry-After longer than 10 min waited for 10 min only."""
    return RetryPolicy(attempts=retries + 1, backoff=backoff, backoff_max=backoff_max, jitter=0.5,
                       max_retry_after=MAX_RETRY_AFTER, long_retry_after="clamp")


class Circuit:
    """Shared by every run of one sink: after `threshold` runs in a row gave up because Pluto could not be
    reached, further requests fail at once for `cooldown` seconds instead of hammering a dead server."""

    def __init__(self, threshold: int = 2, cooldown: float = 60.0) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._last = ""

    def check(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if time.monotonic() - self._opened_at < self.cooldown:
                raise PlutoError(f"{self._last} (not retried: {self._failures} runs in a row could not reach "
                                 f"Pluto; waiting {self.cooldown:g} s before trying again)")
            self._opened_at = None  # half-open: let one request through

    def unreachable(self, problem: str) -> None:
        with self._lock:
            self._failures += 1
            self._last = problem
            if self._failures >= self.threshold:
                self._opened_at = time.monotonic()

    def reached(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None


_TLS_LOCK = threading.Lock()
_TLS: dict[tuple[bool, str, str], ssl.SSLContext] = {}


def tls_context(verify: bool) -> ssl.SSLContext:
    """The TLS context every client of this process shares (httpx's own recipe: certifi's bundle, or
    SSL_CERT_FILE / SSL_CERT_DIR). Each run has its own client, and httpx builds a context per client,
    loading the whole CA bundle again: 17-70 ms of CPU each, paid before a run's first request even
    against a plain-http server. A context is safe to share between clients and threads."""
    key = (verify, os.environ.get("SSL_CERT_FILE", ""), os.environ.get("SSL_CERT_DIR", ""))
    with _TLS_LOCK:
        context = _TLS.get(key)
        if context is None:
            context = _TLS[key] = httpx.create_ssl_context(verify=verify, trust_env=True)
        return context


class Transport:
    """Requests against one Pluto deployment with one API key."""

    def __init__(
        self,
        endpoints: Endpoints,
        api_key: str,
        policy: RetryPolicy,
        timeout: float,
        verify_tls: bool = True,
        cancel: threading.Event | None = None,
        circuit: Circuit | None = None,
        on_retry: Callable[[retry.RetryEvent], None] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.on_retry = on_retry  # told about each retry (the sink counts them live: ctx.event("retries"))
        self.circuit = circuit or Circuit()
        self.policy = policy
        self.cancel = cancel or threading.Event()
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            verify=tls_context(verify_tls),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
            follow_redirects=False,
            trust_env=True,
        )

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ core

    def request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        json_body: Any = None,
        content: bytes | Callable[[], Iterable[bytes]] | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        auth: bool = True,
        retries: int | None = None,
        timeout: float | None = None,
        landed: Callable[[], bool] | None = None,
    ) -> httpx.Response | None:
        """Send with retries; `content` may be a factory of a fresh byte iterator (streamed bodies).

        `landed()` is asked before each retry of a request Pluto would not deduplicate: when the earlier
        attempt did arrive (its answer was lost), it returns True and nothing is sent again (result None).
        """
        policy = self.policy if retries is None else replace(self.policy, attempts=retries + 1)
        self.circuit.check()

        def attempt() -> httpx.Response:
            body = content() if callable(content) else content
            hdrs = dict(headers or {})
            extra: dict[str, Any] = {}
            if timeout is not None:
                extra["timeout"] = timeout
            try:
                if not auth:
                    # presigned storage URLs carry their own credentials; never send ours there
                    response = self._send_plain(method, url, body, hdrs, params, timeout)
                else:
                    response = self._client.request(
                        method, url, json=json_body, content=body, headers=hdrs, params=params, **extra
                    )
            except httpx.TransportError as exc:
                raise Transient(f"cannot reach Pluto for {what} ({url_base(url)}): "
                                f"{type(exc).__name__}: {exc}".rstrip(": ")) from None
            self.circuit.reached()
            if response.status_code in (200, 201):
                return response
            status = response.status_code
            problem = f"Pluto answered {status} to {what}: {server_message(response)}"
            if status not in RETRY_STATUS:
                raise PlutoError(problem, status)
            raise Transient(problem, retry_after=parse_retry_after(response.headers.get("retry-after")),
                            status=status)

        try:
            return retry.call(attempt, policy, cancel=self.cancel, landed=landed, on_retry=self.on_retry,
                              sleep=lambda seconds: self._sleep(seconds))
        except retry.RetriesExhausted as exc:
            last = exc.last
            if last.status is None:
                self.circuit.unreachable(last.problem)
            suffix = f" (gave up after {exc.attempts} attempts)" if exc.attempts > 1 else ""
            raise PlutoError(last.problem + suffix, last.status) from None

    def _send_plain(
        self, method: str, url: str, body: Any, headers: dict[str, str], params: Any, timeout: float | None
    ) -> httpx.Response:
        request = self._client.build_request(method, url, content=body, headers=headers, params=params,
                                             timeout=timeout if timeout is not None else self._client.timeout)
        request.headers.pop("Authorization", None)
        return self._client.send(request)

    def _sleep(self, seconds: float) -> None:
        retry.wait(seconds, self.cancel)  # raises Cancelled at once on Ctrl+C

    # ------------------------------------------------------------------ endpoints

    def api_post(self, path: str, body: dict[str, Any], what: str) -> dict[str, Any]:
        response = self.request("POST", self.endpoints.api + path, what, json_body=body)
        return _json(response, what)

    def api_get(self, path: str, params: dict[str, Any], what: str) -> dict[str, Any]:
        response = self.request("GET", self.endpoints.api + path, what, params=params)
        return _json(response, what)

    def ingest(self, kind: str, body: bytes, run_id: int, project: str, what: str,
               landed: Callable[[], bool] | None = None) -> None:
        headers = {
            "Content-Type": "application/x-ndjson",
            "X-Run-Id": str(run_id),
            "X-Project-Name": project,
        }
        self.request("POST", f"{self.endpoints.ingest}/ingest/{kind}", what, content=body, headers=headers,
                     landed=landed)

    def presign(self, entries: list[dict[str, Any]], run_id: int, project: str, what: str) -> dict[str, str]:
        headers = {"X-Run-Id": str(run_id), "X-Project-Name": project}
        response = self.request(
            "POST", f"{self.endpoints.ingest}/files", what, json_body={"files": entries}, headers=headers
        )
        urls: dict[str, str] = {}
        for items in _json(response, what).values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    urls.update({str(k): str(v) for k, v in item.items()})
        return urls

    def stored_size(self, url: str) -> int | None:
        """Size of a stored object behind a (presigned) download URL, reading headers only; None if absent."""
        request = self._client.build_request("GET", url, timeout=30.0)
        request.headers.pop("Authorization", None)
        try:
            response = self._client.send(request, stream=True)
        except httpx.HTTPError:
            return None
        try:
            if response.status_code != 200:
                return None
            length = response.headers.get("content-length")
            return int(length) if length is not None and length.isdigit() else None
        finally:
            response.close()

    def heartbeat(self, run_id: int) -> str | None:
        """The py service's trigger: keeps the stale-run reaper away. One attempt, 5 s; None on failure."""
        try:
            response = self._client.post(
                f"{self.endpoints.py}/api/runs/trigger", json={"runId": run_id}, timeout=5.0
            )
            if response.status_code == 200:
                return str(response.json().get("status") or "")
        except (httpx.HTTPError, ValueError):
            return None
        return None


def _json(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise PlutoError(f"Pluto sent a non-JSON answer to {what}: {response.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise PlutoError(f"Pluto sent an unexpected answer to {what}: {str(data)[:200]}")
    return data


def server_message(response: httpx.Response) -> str:
    """The server's own words: `error`/`message`/`code` of a JSON body, else the text, one line."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "code", "message") if data.get(k)]
        text = ": ".join(dict.fromkeys(parts)) if parts else json.dumps(data)[:300]
    else:
        text = response.text or response.reason_phrase
    return " ".join(text.split())[:500]


def url_base(url: str) -> str:
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.host}" + (f":{parsed.port}" if parsed.port else "")
