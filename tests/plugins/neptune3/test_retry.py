"""Our own neptune3 request (the project listing; neptune-query has no call for it) under the shared retry
policy, against the fake Neptune 3.x server: Retry-After in both forms, longer than 10 min fails, jitter,
the budget, cancel mid-wait, and retries counted for the run in progress.

The fake has no project listing, so after the injected faults the request reaches its 404, which the
client reports as "offers no project listing": proof the retries ended in a real answer."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from migrate_core.api import RunContext, RunReport
from migrate_core.errors import Cancelled
from migrate_neptune3.client import CURRENT_RUN, Neptune3Client, RunRetries
from migrate_neptune3.errors import Neptune3Error, ProjectError

from .conftest import make_source

pytestmark = pytest.mark.timeout(60)
LISTING = r"^/api/backend/v1/projects$"
NO_LISTING = "offers no project listing"


@pytest.fixture
def waits(monkeypatch):
    recorded: list[float] = []
    monkeypatch.setattr(Neptune3Client, "_sleep", lambda self, seconds: recorded.append(seconds))
    return recorded


@pytest.fixture
def client(fake_neptune3):
    return make_source(retry_budget=1000.0).client


def test_5xx_is_retried_with_jittered_backoff(fake_neptune3, client, waits):
    fault = fake_neptune3.faults.add(LISTING, "5xx", times=3, status=503)
    with pytest.raises(ProjectError, match=NO_LISTING):
        client.list_projects("ws")
    assert fault.hits == 3 and len(waits) == 3
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0


def test_retry_after_in_seconds_and_as_http_dates(fake_neptune3, client, waits):
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake_neptune3.faults.add(LISTING, "429", times=1, retry_after=7)
    fake_neptune3.faults.add(LISTING, "429", times=1, retry_after=soon)  # float() of this used to crash
    fake_neptune3.faults.add(LISTING, "429", times=1, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    with pytest.raises(ProjectError, match=NO_LISTING):
        client.list_projects("ws")
    assert len(waits) == 3 and waits[0] == 7.0 and 20 <= waits[1] <= 30 and waits[2] == 0.0


def test_a_retry_after_longer_than_10_min_fails_at_once(fake_neptune3, client, waits):
    fake_neptune3.faults.add(LISTING, "429", times=1, retry_after=600)
    fault = fake_neptune3.faults.add(LISTING, "429", times=1, retry_after=601)
    with pytest.raises(Neptune3Error, match="asked to wait more than 600 s"):
        client.list_projects("ws")
    assert waits == [600.0] and fault.hits == 1


def test_the_retry_budget_bounds_the_retries(fake_neptune3, monkeypatch):
    client = make_source(retry_budget=1.0).client
    waited: list[float] = []
    real = Neptune3Client._sleep
    monkeypatch.setattr(Neptune3Client, "_sleep", lambda self, s: (waited.append(s), real(self, s)))
    fake_neptune3.faults.add(LISTING, "5xx", times=None, status=502)
    with pytest.raises(Neptune3Error, match=r"kept failing until the retry budget ran out \(HTTP 502\)"):
        client.list_projects("ws")
    assert waited and sum(waited) <= 1.0


def test_cancel_during_a_wait_aborts_promptly(fake_neptune3, client):
    fake_neptune3.faults.add(LISTING, "429", times=None, retry_after=300)
    threading.Timer(0.3, client.cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.list_projects("ws")
    assert time.monotonic() - started < 0.3 + 0.5


def test_retries_count_for_the_run_in_progress(fake_neptune3, client, waits):
    events: list[tuple[str, int]] = []
    run = RunRetries(RunContext(RunReport(), threading.Event(), on_event=lambda name, n: events.append((name, n))))
    fake_neptune3.faults.add(LISTING, "5xx", times=2, status=500)
    scope = CURRENT_RUN.set(run)
    try:
        with pytest.raises(ProjectError, match=NO_LISTING):
            client.list_projects("ws")
    finally:
        CURRENT_RUN.reset(scope)
    assert run.count == 2 and events == [("retries", 1), ("retries", 1)]


def test_the_first_retry_delay_varies(fake_neptune3, client, waits):
    for _ in range(20):
        fake_neptune3.faults.add(LISTING, "5xx", times=1, status=503)
        with pytest.raises(ProjectError, match=NO_LISTING):
            client.list_projects("ws")
    assert len(waits) == 20 and all(0.25 <= w <= 0.5 for w in waits) and len(set(waits)) > 15
