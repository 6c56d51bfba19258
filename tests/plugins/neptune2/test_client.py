"""The HTTP layer's own rules: the shared rate limit, Retry-After parsing."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest
from migrate_neptune2 import client as client_module
from migrate_neptune2.client import RateLimiter, retry_after_seconds

pytestmark = pytest.mark.timeout(30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.now += seconds


def test_rate_limit_paces_every_worker_together(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(client_module, "time", SimpleNamespace(monotonic=clock.monotonic, sleep=clock.sleep,
                                                               time=clock.monotonic))
    limiter = RateLimiter(per_minute=600, burst=5)  # 10 requests per second after a burst of 5
    for _ in range(5):
        limiter.acquire()
    assert clock.now == 1000.0  # the burst is free
    for _ in range(20):
        limiter.acquire()
    assert 1001.9 <= clock.now <= 1002.3  # 20 more at 10/s take 2 s of (fake) time
    limiter.pause(30)
    limiter.acquire()
    assert clock.now >= 1032.0  # a 429's Retry-After holds back every thread sharing the limiter


def test_rate_limit_off():
    limiter = RateLimiter(per_minute=0, burst=1)
    for _ in range(1000):
        limiter.acquire()


def test_retry_after_values():
    assert retry_after_seconds("120") == 120.0  # the whole value, not its first digit
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") <= 0  # a date in the past: no wait


def test_ordered_map_keeps_order_and_bounds_the_window():
    import random
    import time

    from migrate_neptune2.ordered import ordered_map

    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def work(i: int) -> int:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(random.random() / 500)
        with lock:
            in_flight -= 1
        return i * i

    assert list(ordered_map(work, range(200), 4)) == [i * i for i in range(200)]
    assert peak <= 4
    assert list(ordered_map(work, range(5), 1)) == [0, 1, 4, 9, 16]

    def boom(i: int) -> int:
        if i == 7:
            raise ValueError("7")
        return i

    with pytest.raises(ValueError):
        list(ordered_map(boom, range(100), 3))


def test_content_disposition_names():
    from migrate_neptune2.client import _filename

    assert _filename('attachment; filename="ckpt.pt"') == "ckpt.pt"
    assert _filename("attachment; filename=plain.bin") == "plain.bin"
    assert _filename("attachment; filename=\"fallback.txt\"; filename*=UTF-8''%C3%BCn%C3%AF.txt") == "ünï.txt"
    assert _filename("attachment") is None and _filename(None) is None
