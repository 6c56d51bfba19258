"""Progress: rich bars on a terminal (runs and rows, rate, ETA), periodic log lines otherwise."""

from __future__ import annotations

import threading
import time

import structlog

log = structlog.get_logger("migrate.progress")


class Progress:
    """No-op base; also what tests and `--json` use."""

    def start(self, label: str, total_runs: int | None) -> None:
        pass

    def set_total(self, total_runs: int, final: bool = True) -> None:
        pass

    def rows(self, count: int) -> None:
        pass

    def run_done(self, ok: bool) -> None:
        pass

    def event(self, name: str, count: int = 1) -> None:
        pass

    def stop(self) -> None:
        pass


class _Events:
    """Thread-safe named counters (retries, throttled requests, ...) shown with the progress."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, name: str, count: int) -> None:
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + count

    def text(self) -> str:
        with self._lock:
            return ", ".join(f"{name} {n:,}" for name, n in sorted(self.counts.items()))


class LineProgress(Progress):
    """For logs and CI: one `progress` event at most every `interval` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._rows = 0
        self._runs = 0
        self._total: int | None = None
        self._label = ""
        self._started = time.monotonic()
        self._last = self._started
        self._events = _Events()

    def start(self, label: str, total_runs: int | None) -> None:
        self._label, self._total, self._started = label, total_runs, time.monotonic()
        self._last = self._started

    def event(self, name: str, count: int = 1) -> None:
        self._events.add(name, count)
        self._maybe_log()

    def set_total(self, total_runs: int, final: bool = True) -> None:
        self._total = total_runs

    def rows(self, count: int) -> None:
        with self._lock:
            self._rows += count
        self._maybe_log()

    def run_done(self, ok: bool) -> None:
        with self._lock:
            self._runs += 1
        self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        log.info(
            "progress",
            command=self._label,
            runs_done=self._runs,
            runs_total=self._total,
            rows=self._rows,
            rows_per_s=int(self._rows / elapsed),
            **self._events.counts,
        )


class RichProgress(Progress):
    """Two bars on stderr: runs (with ETA when the total is known) and rows with their rate."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import (
            Progress as Bars,
        )

        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._runs = None
        self._rows = None
        self._row_count = 0
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._events = _Events()

    def start(self, label: str, total_runs: int | None) -> None:
        self._started = time.monotonic()
        self._bars.start()
        self._runs = self._bars.add_task(f"{label}: runs", total=total_runs, rate="")
        self._rows = self._bars.add_task(f"{label}: rows", total=None, rate="")

    def set_total(self, total_runs: int, final: bool = True) -> None:
        if self._runs is not None:
            self._bars.update(self._runs, total=total_runs)

    def rows(self, count: int) -> None:
        with self._lock:
            self._row_count += count
            total = self._row_count
        if self._rows is not None:
            rate = total / max(time.monotonic() - self._started, 1e-9)
            self._bars.update(self._rows, completed=total, rate=f"{rate:,.0f} rows/s")

    def run_done(self, ok: bool) -> None:
        if self._runs is not None:
            self._bars.advance(self._runs)

    def event(self, name: str, count: int = 1) -> None:
        self._events.add(name, count)
        if self._runs is not None:
            self._bars.update(self._runs, rate=self._events.text())

    def stop(self) -> None:
        self._bars.stop()
