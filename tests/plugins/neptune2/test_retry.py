"""The neptune2 client's retries under the shared policy (migrate_core.retry), against the fake Neptune 2.x
server: Retry-After in both forms, a longer one than 10 min fails, jitter, the budget, cancel mid-wait and
a download that breaks off. Waits are recorded (not slept) except where a test is about cancelling one."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from migrate_core.errors import Cancelled
from migrate_neptune2 import client as client_module
from migrate_neptune2.errors import Neptune2Error

from .conftest import make_source

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def waits(monkeypatch):
    recorded: list[float] = []
    monkeypatch.setattr(client_module, "_sleep", lambda seconds, cancelled: recorded.append(seconds))
    monkeypatch.setattr(client_module.RateLimiter, "pause", lambda self, seconds: paused.append(seconds))
    return recorded


paused: list[float] = []  # what a 429 paused the shared rate limiter for (every worker waits it out)


@pytest.fixture
def client(fake_neptune2, declared):
    source = make_source(retry_budget=1.0, retry_backoff=0.25)
    yield source.client
    source.close()


def get_project(client):
    return client.json("getProject", {"projectIdentifier": "ws/proj"})


def test_retry_after_delta_seconds_is_waited_in_full(fake_neptune2, client, waits):
    fault = fake_neptune2.faults.add("getProject", "429", times=2, retry_after="120")
    assert get_project(client)["name"] == "proj"
    assert fault.hits == 2 and waits == [120.0, 120.0]  # not its first digit; not counted against the budget
    assert paused[-2:] == [120.0, 120.0]


def test_retry_after_http_date(fake_neptune2, client, waits):
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_neptune2.faults.add("getProject", "429", times=1, retry_after=when)
    fake_neptune2.faults.add("getProject", "429", times=1, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    assert get_project(client)["name"] == "proj"
    assert len(waits) == 2 and 20 <= waits[0] <= 30 and waits[1] == 0.0  # a date in the past: at once


def test_retry_after_up_to_10_min_is_waited_and_longer_fails(fake_neptune2, client, waits):
    fake_neptune2.faults.add("getProject", "429", times=1, retry_after="600")
    assert get_project(client)["name"] == "proj"
    assert waits == [600.0]
    waits.clear()
    fault = fake_neptune2.faults.add("getProject", "429", times=1, retry_after="601")
    with pytest.raises(Neptune2Error, match=r"getProject kept failing \(HTTP 429\) and asked to wait more than 600s"):
        get_project(client)
    assert fault.hits == 1 and waits == []  # treated as a failure, not a wait


def test_backoff_is_jittered_within_the_budget(fake_neptune2, client, waits, monkeypatch):
    real = client_module.retry.wait  # this test waits for real: the budget is measured on the clock
    monkeypatch.setattr(client_module, "_sleep", lambda seconds, cancelled: (waits.append(seconds),
                                                                            real(seconds, cancelled)))
    fault = fake_neptune2.faults.add("getProject", "5xx", times=None, status=503)
    with pytest.raises(Neptune2Error, match=r"getProject kept failing \(HTTP 503\) for 1s, \d+ attempts"):
        get_project(client)
    assert fault.hits == len(waits) + 1 >= 2
    assert 0.125 <= waits[0] <= 0.25 and 0.25 <= waits[1] <= 0.5  # doubling from 0.25 s, partial jitter
    assert sum(waits) <= 1.0  # the 1 s budget is never overrun by a planned wait


def test_jitter_makes_the_waits_vary(fake_neptune2, waits, declared):
    source = make_source(retry_budget=1000.0, retry_backoff=30.0)
    try:
        for _ in range(20):
            fake_neptune2.faults.add("getProject", "5xx", times=1, status=502)
            get_project(source.client)
    finally:
        source.close()
    assert len(waits) == 20 and all(15.0 <= w <= 30.0 for w in waits) and len(set(waits)) > 15


def test_cancel_during_a_wait_aborts_promptly(fake_neptune2, client):
    fake_neptune2.faults.add("getProject", "5xx", times=None, status=503)
    client.settings = replace(client.settings, backoff=60.0, retry_budget=600.0)
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.json("getProject", {"projectIdentifier": "ws/proj"}, cancelled=cancel.is_set)
    assert time.monotonic() - started < 0.3 + 0.5


def test_retries_are_logged_one_line_each(fake_neptune2, client, waits, monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(client_module.log, "info", lambda event, **kw: seen.append({"event": event, **kw}))
    fake_neptune2.faults.add("getProject", "5xx", times=2, status=502)
    get_project(client)
    assert [(e["event"], e["attempt"], e["reason"]) for e in seen] == [
        ("neptune2_retry", 1, "HTTP 502"), ("neptune2_retry", 2, "HTTP 502")]
