"""Per-test fault injection for the fake Pluto server.

``srv.faults.add(r"^/ingest/metrics$", "5xx", times=2)`` makes the next two matching requests
fail.  Kinds:

``"5xx"``    answer ``status`` (default 503) with a JSON error body
``"429"``    answer 429 with ``Retry-After: retry_after`` (default 1 s)
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

KINDS = frozenset({"5xx", "429", "drop", "slow", "422"})


@dataclass
class Fault:
    """One active fault rule; ``hits`` counts the requests it has affected."""

    pattern: re.Pattern[str]
    kind: str
    times: int | None = 1
    method: str | None = None
    status: int = 503
    retry_after: float = 1
    delay: float = 1.0
    process: bool = False
    hits: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.pattern.search(path) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


class FaultSet:
    """Thread-safe list of fault rules consulted once per request (first active match wins)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        path_regex: str,
        kind: str,
        times: int | None = 1,
        *,
        method: str | None = None,
        status: int | None = None,
        retry_after: float = 1,
        delay: float = 1.0,
        process: bool = False,
    ) -> Fault:
        """Register a fault for requests whose path (no query string) matches ``path_regex``."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {sorted(KINDS)}")
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
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first matching active fault, if any."""
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def remove(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(1 for f in self._faults if not f.exhausted)
