"""The one retry policy (migrate_core.retry): Retry-After in both forms and its cap, jitter, attempts and
deadline, a cancellable wait, the per-retry hook and the landed() question.

Delays are recorded through `sleep=` and time through `clock=`, so nothing here waits for real except the
cancellation tests, which bound only how promptly a wait ends."""

from __future__ import annotations

import threading
import time
from email.utils import format_datetime, parsedate_to_datetime

import pytest
from migrate_core.errors import Cancelled
from migrate_core.retry import (
    MAX_RETRY_AFTER,
    RetriesExhausted,
    RetryEvent,
    RetryPolicy,
    Transient,
    call,
    parse_retry_after,
    wait,
)

NOW = parsedate_to_datetime("Wed, 21 Oct 2015 07:28:00 GMT").timestamp()


class Clock:
    """A fake monotonic clock that a recorded sleep moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int | None, retry_after: float | None = None, result: str = "ok"):
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if times is None or len(calls) <= times:
            raise Transient(f"HTTP 503 (call {len(calls)})", retry_after=retry_after, status=503)
        return result

    return attempt, calls


# ------------------------------------------------------------------------------------------ Retry-After


def test_retry_after_delta_seconds():
    assert parse_retry_after("120") == 120.0  # the whole value, not its first digit
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None
    assert parse_retry_after("soon") is None and parse_retry_after("nan") is None


def test_retry_after_http_date():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=lambda: NOW) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:38:00 GMT", now=lambda: NOW) == 600.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=lambda: NOW) == 0.0  # in the past: no wait
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=lambda: NOW) == 30.0
    soon = format_datetime_now(40)
    assert 30 <= parse_retry_after(soon) <= 41  # against the real clock, too
    assert parse_retry_after("Wed, 99 Foo 2015 07:28:30 GMT") is None


def format_datetime_now(ahead: float) -> str:
    from datetime import UTC, datetime

    return format_datetime(datetime.fromtimestamp(time.time() + ahead, UTC), usegmt=True)


def test_retry_after_replaces_the_backoff():
    clock = Clock()
    attempt, calls = failing(2, retry_after=7)
    assert call(attempt, RetryPolicy(backoff=100), sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [7.0, 7.0] and len(calls) == 3


def test_a_retry_after_beyond_the_cap_is_clamped():
    clock = Clock()
    attempt, _ = failing(1, retry_after=3600)
    assert call(attempt, RetryPolicy(), sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [MAX_RETRY_AFTER] == [600.0]
    assert RetryPolicy().delay(1, 600.0) == 600.0 and RetryPolicy().delay(1, 601.0) == 600.0
    assert RetryPolicy(max_retry_after=30).delay(1, 31.0) == 30.0


def test_a_retry_after_beyond_the_cap_fails_when_the_policy_says_so():
    clock = Clock()
    attempt, calls = failing(1, retry_after=601)
    with pytest.raises(RetriesExhausted) as err:
        call(attempt, RetryPolicy(long_retry_after="fail"), sleep=clock.sleep, clock=clock)
    assert err.value.why == "retry_after" and err.value.attempts == 1 and clock.sleeps == [] and len(calls) == 1
    assert "HTTP 503 (call 1)" in str(err.value)
    assert RetryPolicy(long_retry_after="fail").delay(1, 600.0) == 600.0  # the cap itself is still waited


# ------------------------------------------------------------------------------------------ backoff


def test_backoff_doubles_up_to_its_maximum_without_jitter():
    policy = RetryPolicy(backoff=0.5, backoff_max=3.0, jitter=0)
    assert [policy.backoff_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert policy.backoff_delay(10_000) == 3.0  # no overflow on a long storm


def test_partial_jitter_varies_within_half_to_full_delay():
    policy = RetryPolicy(backoff=1.0, backoff_max=60.0)  # default: partial jitter
    delays = [policy.backoff_delay(3) for _ in range(300)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 250  # they vary
    assert min(delays) < 2.5 and max(delays) > 3.5  # and spread over the range


def test_full_jitter_spans_zero_to_the_delay():
    policy = RetryPolicy(backoff=1.0, backoff_max=60.0, jitter=1.0)
    delays = [policy.backoff_delay(3) for _ in range(300)]
    assert all(0.0 <= d <= 4.0 for d in delays)
    assert min(delays) < 1.0 and max(delays) > 3.0


def test_the_delays_a_call_waits_are_jittered():
    clock = Clock()
    attempt, _ = failing(None)
    with pytest.raises(RetriesExhausted):
        call(attempt, RetryPolicy(attempts=41, backoff=1.0, backoff_max=1.0), sleep=clock.sleep, clock=clock)
    assert len(clock.sleeps) == 40 and all(0.5 <= s <= 1.0 for s in clock.sleeps)
    assert len(set(clock.sleeps)) > 30


# ------------------------------------------------------------------------------------------ giving up


def test_attempts_bound_the_call():
    clock = Clock()
    attempt, calls = failing(None)
    with pytest.raises(RetriesExhausted) as err:
        call(attempt, RetryPolicy(attempts=3, backoff=0.01), sleep=clock.sleep, clock=clock)
    assert len(calls) == 3 and len(clock.sleeps) == 2
    assert err.value.attempts == 3 and err.value.why == "attempts" and err.value.last.status == 503


def test_one_attempt_means_no_retry():
    clock = Clock()
    attempt, calls = failing(None)
    with pytest.raises(RetriesExhausted):
        call(attempt, RetryPolicy(attempts=1), sleep=clock.sleep, clock=clock)
    assert len(calls) == 1 and clock.sleeps == []


def test_the_deadline_bounds_the_call():
    clock = Clock()
    attempt, calls = failing(None)
    with pytest.raises(RetriesExhausted) as err:
        call(attempt, RetryPolicy(attempts=None, deadline=10, backoff=1, jitter=0), sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1, 2, 4]  # a wait of 8 more would end at 15 s, past the 10 s deadline
    assert err.value.why == "deadline" and len(calls) == 4
    assert clock.now - 1000.0 <= 10


def test_the_deadline_counts_time_spent_in_attempts():
    clock = Clock()

    def slow() -> str:
        clock.now += 4  # each attempt takes 4 s
        raise Transient("timeout")

    with pytest.raises(RetriesExhausted) as err:
        call(slow, RetryPolicy(attempts=None, deadline=10, backoff=1, jitter=0), sleep=clock.sleep, clock=clock)
    assert clock.sleeps == [1] and err.value.attempts == 2  # 4 + 1 + 4 = 9; 2 more would be 11


def test_server_waits_can_be_left_out_of_the_deadline():
    clock = Clock()
    attempt, calls = failing(5, retry_after=30)
    policy = RetryPolicy(attempts=None, deadline=10, retry_after_in_deadline=False)
    assert call(attempt, policy, sleep=clock.sleep, clock=clock) == "ok"
    assert clock.sleeps == [30.0] * 5
    clock2 = Clock()
    attempt, _ = failing(5, retry_after=30)
    with pytest.raises(RetriesExhausted) as err:
        call(attempt, RetryPolicy(attempts=None, deadline=10), sleep=clock2.sleep, clock=clock2)
    assert err.value.why == "deadline" and clock2.sleeps == []


def test_other_errors_are_not_retried():
    clock = Clock()
    calls: list[int] = []

    def attempt() -> None:
        calls.append(1)
        raise ValueError("401: bad token")

    with pytest.raises(ValueError, match="bad token"):
        call(attempt, RetryPolicy(), sleep=clock.sleep, clock=clock)
    assert calls == [1] and clock.sleeps == []


# ------------------------------------------------------------------------------------------ hooks


def test_on_retry_is_told_about_every_retry():
    clock = Clock()
    seen: list[RetryEvent] = []
    attempt, _ = failing(3, retry_after=2)
    assert call(attempt, RetryPolicy(), on_retry=seen.append, sleep=clock.sleep, clock=clock) == "ok"
    assert [(e.attempt, e.delay) for e in seen] == [(1, 2.0), (2, 2.0), (3, 2.0)]
    assert seen[0].failure.problem == "HTTP 503 (call 1)"


def test_landed_is_asked_before_each_retry_and_stops_a_resend():
    clock = Clock()
    asked: list[int] = []
    attempt, calls = failing(None)

    def landed() -> bool:
        asked.append(len(calls))
        return len(asked) == 2  # the second retry finds the earlier attempt arrived

    assert call(attempt, RetryPolicy(), landed=landed, sleep=clock.sleep, clock=clock) is None
    assert asked == [1, 2] and len(calls) == 2 and len(clock.sleeps) == 2


def test_landed_is_not_asked_before_the_first_attempt():
    asked: list[int] = []
    assert call(lambda: "ok", RetryPolicy(), landed=lambda: asked.append(1) or True) == "ok"
    assert asked == []


# ------------------------------------------------------------------------------------------ cancel


@pytest.mark.parametrize("kind", ["event", "callable"])
def test_cancel_during_a_wait_aborts_promptly(kind):
    cancel = threading.Event()
    attempt, calls = failing(None)
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        call(attempt, RetryPolicy(backoff=30, jitter=0), cancel=cancel if kind == "event" else cancel.is_set)
    assert time.monotonic() - started < 0.2 + 0.5  # not the 30 s backoff
    assert len(calls) == 1


def test_cancel_before_an_attempt_sends_nothing():
    cancel = threading.Event()
    cancel.set()
    attempt, calls = failing(None)
    with pytest.raises(Cancelled):
        call(attempt, RetryPolicy(), cancel=cancel)
    assert calls == []


def test_cancel_set_by_a_recorded_sleep_still_stops():
    cancel = threading.Event()
    attempt, calls = failing(None)
    with pytest.raises(Cancelled):
        call(attempt, RetryPolicy(), cancel=cancel, sleep=lambda s: cancel.set())
    assert len(calls) == 1


def test_wait_returns_after_its_time_when_not_cancelled():
    wait(0.01, threading.Event())
    wait(0.01, lambda: False)
    wait(0.01, None)
