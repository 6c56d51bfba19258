"""Faults injected on demand, matched by request path, to exercise the clients' retry paths.

Kinds (what the client sees):

- ``"5xx"``: an HTTP error status (``status``, default 503); neptune-query retries with backoff.
- ``"429"``: Too Many Requests with ``Retry-After: <retry_after>``; neptune-query sleeps that long, and the
  wait does not count against its soft retry budget.
- ``"http_error"``: any ``status`` with an optional JSON ``body``; e.g. 400 on a signed-URL GET means
  "URL expired, sign again" to the download code, 404 means "file gone, skip it".
- ``"expired_token"``: 401 as for an expired access token. neptune-query does **not** retry this (it only
  refreshes proactively from the JWT ``exp``), so the call fails with ``NeptuneUnexpectedResponseError``.
  To exercise the refresh flow use ``FakeNeptune3.token_ttl_seconds`` instead.
- ``"access_denied"``: 403 with ``{"errorType": "ACCESS_DENIED"}`` -> ``NeptuneProjectInaccessible``.
- ``"slow"``: sleep ``delay`` seconds, then answer normally (or time out the client).
- ``"reset"``: close the connection without an answer (a transport error; retried).

``body_regex`` narrows a rule to requests whose body matches it, e.g. only the requests that name several
runs at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..common import FaultRule, FaultRules, check_fault_kind, method_matches

KINDS = frozenset({"5xx", "429", "http_error", "expired_token", "access_denied", "slow", "reset"})


@dataclass
class Fault(FaultRule):
    """One rule. ``times=None`` means forever; ``hits`` counts how often it fired."""

    path_regex: str
    kind: str
    times: int | None = 1
    method: str | None = None
    status: int | None = None
    retry_after: float | str | None = None
    delay: float = 0.0
    body: Any = None
    body_regex: str | None = None
    hits: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)
    _body_pattern: re.Pattern[bytes] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_fault_kind(self.kind, KINDS)
        self._pattern = re.compile(self.path_regex)
        self._body_pattern = re.compile(self.body_regex.encode()) if self.body_regex else None

    def matches(self, method: str, path: str, body: bytes = b"") -> bool:
        if self.exhausted or not method_matches(self.method, method):
            return False
        if self._body_pattern is not None and self._body_pattern.search(body) is None:
            return False
        return self._pattern.search(path) is not None


class FaultInjector(FaultRules[Fault]):
    """Thread-safe list of fault rules; the first live matching rule fires (``take``, ``clear``, ``rules``)."""

    def add(
        self,
        path_regex: str,
        kind: str,
        *,
        times: int | None = 1,
        method: str | None = None,
        status: int | None = None,
        retry_after: float | str | None = None,
        delay: float = 0.0,
        body: Any = None,
        body_regex: str | None = None,
    ) -> Fault:
        """Register a fault for requests whose path (without query string) matches ``path_regex`` (and whose
        body matches ``body_regex``, if given)."""
        if kind == "slow" and delay <= 0:
            raise ValueError("a 'slow' fault needs delay > 0")
        return self._register(Fault(path_regex, kind, times, method, status, retry_after, delay, body, body_regex))
