"""Per-test fault injection for the fake Pluto server.

``srv.faults.add(r"^/ingest/metrics$", "5xx", times=2)`` makes the next two matching requests
fail.  Kinds:

``"5xx"``    answer ``status`` (default 503) with a JSON error body
``"429"``    answer 429 with ``Retry-After: retry_after`` (default 1 s; a string is sent as is, e.g. an HTTP date)
``"drop"``   read the request, then close the connection without any response
``"slow"``   sleep ``delay`` seconds (default 1 s), then answer normally
``"422"``    answer 422 ``STREAM_DECODING_ERROR`` (what a bad NDJSON line produces)

With ``process=True`` the request is first handled normally (state changes are kept) and only
the response is replaced -- the "server committed but the client never saw a 200" case that
makes client retries duplicate data.  ``times=None`` keeps the fault active until removed.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

from ..common import FaultRule, FaultRules, check_fault_kind, method_matches

KINDS = frozenset({"5xx", "429", "drop", "slow", "422"})


@dataclass
class Fault(FaultRule):
    """One active fault rule; ``hits`` counts the requests it has affected."""

    pattern: re.Pattern[str]
    kind: str
    times: int | None = 1
    method: str | None = None
    status: int = 503
    retry_after: float | str = 1
    delay: float = 1.0
    process: bool = False
    hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        return method_matches(self.method, method) and self.pattern.search(path) is not None


class FaultSet(FaultRules[Fault]):
    """Thread-safe list of fault rules consulted once per request (first active match wins)."""

    def add(
        self,
        path_regex: str,
        kind: str,
        times: int | None = 1,
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after: float | str = 1,
        delay: float = 1.0,
        process: bool = False,
    ) -> Fault:
        """Register a fault for requests whose path (no query string) matches ``path_regex``."""
        check_fault_kind(kind, KINDS)
        if status is None:
            status = {"5xx": 503, "429": 429, "422": 422}.get(kind, 503)
        if kind == "5xx" and not 500 <= status <= 599:
            raise ValueError("a 5xx fault needs a status between 500 and 599")
        fault = Fault(
            re.compile(path_regex),
            kind,
            times,
            method.upper() if method else None,
            status,
            retry_after,
            delay,
            process,
        )
        return self._register(fault)

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for f in self._rules if not f.exhausted)
