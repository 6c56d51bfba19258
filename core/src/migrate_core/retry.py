"""One retry policy for every plugin that talks HTTP: backoff with jitter, `Retry-After`, a cap, a deadline,
a cancellable wait and a hook per retry.

The retry loop itself is tenacity's (a kept, widely used library, with pluggable wait, stop and sleep
strategies and no dependencies of its own); this module only decides what our policy is:

- an attempt that may succeed when tried again raises `Transient` (with the server's `Retry-After`, if any);
  any other exception ends the call at once;
- the delay before retry *n* is `backoff * 2**(n-1)`, at most `backoff_max`, with jitter: `jitter=0.5`
  (partial, the default) waits a uniform random time in [delay/2, delay], `jitter=1` (full) in [0, delay];
- a `Retry-After` (delta-seconds or an HTTP date, see `parse_retry_after`) replaces the backoff delay; one
  longer than `max_retry_after` (600 s) is either waited for that long only (`long_retry_after="clamp"`)
  or ends the call (`"fail"`), because a server asking for more than ten minutes is not coming back soon;
- the call gives up when `attempts` (first one included) were made, or when the next wait would end past
  `deadline` seconds from the first attempt (`retry_after_in_deadline=False` leaves the waits the server
  asked for out of that sum);
- every wait ends early when the `cancel` event is set (Ctrl+C sets it) and raises `Cancelled`;
- `on_retry` is told about each retry before its wait (to log or count it); `landed()` is asked after the
  wait and before sending again: True means the earlier attempt did arrive, and nothing is sent again.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal, TypeVar

import tenacity

from .errors import Cancelled

T = TypeVar("T")

MAX_RETRY_AFTER = 600.0  # seconds: the longest Retry-After any plugin waits for

Cancel = threading.Event | Callable[[], bool] | None


class Transient(Exception):  # noqa: N818 - a signal to the retry loop, not a failure the user sees
    """Raised by an attempt that may succeed when tried again: `problem` is the one-line reason."""

    def __init__(self, problem: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.retry_after = retry_after
        self.status = status  # None: the server was not reached (connection error, timeout)


class RetriesExhausted(Exception):  # noqa: N818 - callers turn it into their own one-line error
    """The call gave up: `last` is the last transient failure, `attempts` how many attempts were made, and
    `why` one of "attempts", "deadline", "retry_after" (the server asked for a wait longer than the cap)."""

    def __init__(self, last: Transient, attempts: int, why: str) -> None:
        super().__init__(f"{last.problem} (gave up after {attempts} attempts: {why})")
        self.last = last
        self.attempts = attempts
        self.why = why


@dataclass(frozen=True)
class RetryEvent:
    """What `on_retry` is told before the wait of one retry."""

    attempt: int  # the attempt that just failed (1 = the first)
    delay: float  # seconds about to be waited
    failure: Transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int | None = 9  # most attempts in all, the first included; None: only the deadline bounds
    deadline: float | None = None  # seconds from the first attempt after which no retry starts
    backoff: float = 1.0  # delay before the first retry (before jitter); doubles per retry
    backoff_max: float = 60.0
    jitter: float = 0.5  # the random fraction of each delay: 0 none, 0.5 partial, 1 full
    max_retry_after: float = MAX_RETRY_AFTER
    long_retry_after: Literal["clamp", "fail"] = "clamp"
    retry_after_in_deadline: bool = True  # False: waits the server asked for (up to the cap) are not counted

    def backoff_delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds before retry number `retry` (1 = the first) when the server did not say."""
        base = min(self.backoff_max, self.backoff * 2.0 ** min(retry - 1, 64))
        jitter = min(max(self.jitter, 0.0), 1.0)
        return base * (1.0 - jitter + jitter * rng())

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """The wait before retry `retry`; None when the server asked for longer than the cap and the
        policy treats that as a failure."""
        if retry_after is None:
            return self.backoff_delay(retry)
        retry_after = max(retry_after, 0.0)
        if retry_after > self.max_retry_after:
            return None if self.long_retry_after == "fail" else self.max_retry_after
        return retry_after


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """`Retry-After` in seconds: delta-seconds ("120", the whole value) or an HTTP date (a date in the past
    is 0). None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; email.utils returns naive for "-0000"
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def is_cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check_cancelled(cancel: Cancel) -> None:
    if is_cancelled(cancel):
        raise Cancelled()


def wait(seconds: float, cancel: Cancel) -> None:
    """Sleep `seconds`, raising `Cancelled` as soon as `cancel` is set (an event at once; a callable is
    polled every 0.1 s)."""
    if isinstance(cancel, threading.Event):
        if cancel.wait(max(seconds, 0.0)):
            raise Cancelled()
        return
    end = time.monotonic() + seconds
    while True:
        check_cancelled(cancel)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def call(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    cancel: Cancel = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
    landed: Callable[[], bool] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> T | None:
    """Run `attempt()` until it returns, retrying each `Transient` it raises under `policy`.

    Returns its result, or None when `landed()` said an earlier attempt arrived. Raises `RetriesExhausted`
    when the policy gives up, `Cancelled` when `cancel` is set, and any other exception of `attempt` at once.
    `sleep` replaces the cancellable wait (tests record the delays with it); `clock` measures the deadline.
    """
    started = clock()
    free = 0.0  # seconds of server-asked waits that do not count against the deadline
    planned: dict[str, float | bool] = {}

    def next_wait(state: tenacity.RetryCallState) -> float:
        failure = _failure(state)
        delay = policy.delay(state.attempt_number, failure.retry_after)
        planned["server"] = failure.retry_after is not None and delay is not None
        planned["refused"] = delay is None
        return 0.0 if delay is None else delay

    def stop(state: tenacity.RetryCallState) -> bool:
        if planned.get("refused"):
            planned["why"] = "retry_after"
            return True
        if policy.attempts is not None and state.attempt_number >= policy.attempts:
            planned["why"] = "attempts"
            return True
        if policy.deadline is not None:
            upcoming = state.upcoming_sleep
            counted = 0.0 if (planned.get("server") and not policy.retry_after_in_deadline) else upcoming
            if clock() - started - free + counted > policy.deadline:
                planned["why"] = "deadline"
                return True
        return False

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal free
        if planned.get("server") and not policy.retry_after_in_deadline:
            free += state.upcoming_sleep
        if on_retry is not None:
            on_retry(RetryEvent(state.attempt_number, state.upcoming_sleep, _failure(state)))

    def give_up(state: tenacity.RetryCallState) -> None:
        raise RetriesExhausted(_failure(state), state.attempt_number, str(planned.get("why", "attempts")))

    def pause(seconds: float) -> None:
        if sleep is not None:
            sleep(float(seconds))
            check_cancelled(cancel)
        else:
            wait(float(seconds), cancel)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Transient),
        wait=next_wait,
        stop=stop,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        sleep=pause,
    )
    for trial in retrying:
        with trial:
            check_cancelled(cancel)
            if trial.retry_state.attempt_number > 1 and landed is not None and landed():
                return None
            return attempt()
    raise AssertionError("unreachable: tenacity either returns, raises or gives up")  # pragma: no cover


def _failure(state: tenacity.RetryCallState) -> Transient:
    assert state.outcome is not None
    exc = state.outcome.exception()
    assert isinstance(exc, Transient)
    return exc
