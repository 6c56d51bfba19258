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

    def stop(self) -> None:
        pass


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

    def start(self, label: str, total_runs: int | None) -> None:
        self._label, self._total, self._started = label, total_runs, time.monotonic()
        self._last = self._started

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

    def stop(self) -> None:
        self._bars.stop()
