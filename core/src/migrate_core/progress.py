"""Progress: rich bars on a terminal, periodic log lines otherwise, nothing under `--quiet`/`--no-progress`.

What is counted (the same in every display):
- runs: runs finished (done, skipped, failed, deferred) of the runs selected; the total grows while a source is
  still listing and is final once the listing ended.
- rows, per stage (`export`, `load`): rows read so far; the total is the sum of the selected runs' rows where
  every one of them is known: exact for a load (the manifests), `~` an estimate for an export (the source's).
  `migrate run` shows export and load on lines of their own, so no row is counted twice.
- bytes, per stage: bytes of files written (export) or uploaded (load), as in the summary.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import structlog

log = structlog.get_logger("migrate.progress")


def human(n: float) -> str:
    """1234 -> 1.2k, 1234567 -> 1.2M (counts people read at a glance); below 1,000 as is."""
    n = float(n)
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            text = f"{n / size:.1f}"
            return (text[:-2] if text.endswith(".0") else text) + unit
    return f"{n:.0f}"


class Progress:
    """No-op base; also what `--json`, `--quiet` and `--no-progress` use."""

    #: True when bars show every run finishing, so per-run "done" log lines would only repeat them
    shows_runs = False

    def start(self, label: str, total_runs: int | None) -> None:
        pass

    def set_total(self, total_runs: int, final: bool = True) -> None:
        pass

    def expect_rows(self, count: int | None, stage: str, estimate: bool = False) -> None:
        """Add one selected run's rows to `stage`'s total (None: not known, so the total is not either)."""

    def rows(self, count: int, stage: str | None = None) -> None:
        pass

    def bytes(self, count: int, stage: str | None = None) -> None:
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


class _Stage:
    """One stage's counters: rows done, their total (None while unknown), bytes."""

    def __init__(self) -> None:
        self.rows = 0
        self.total: int | None = 0
        self.estimate = False
        self.bytes = 0


class Counters(Progress):
    """The state every display shows, kept thread-safe; the displays below render it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.label = ""
        self.runs_done = 0
        self.runs_total: int | None = None
        self.runs_final = False
        self.stages: dict[str, _Stage] = {}
        self._events = _Events()

    def _stage(self, stage: str | None) -> _Stage:
        name = stage or self.label
        if name not in self.stages:
            self.stages[name] = _Stage()
        return self.stages[name]

    def start(self, label: str, total_runs: int | None) -> None:
        with self._lock:
            self.label, self.runs_total, self.runs_final = label, total_runs, total_runs is not None

    def set_total(self, total_runs: int, final: bool = True) -> None:
        with self._lock:
            self.runs_total, self.runs_final = total_runs, final

    def expect_rows(self, count: int | None, stage: str, estimate: bool = False) -> None:
        with self._lock:
            s = self._stage(stage)
            s.total = None if count is None or s.total is None else s.total + count
            s.estimate = s.estimate or estimate

    def rows(self, count: int, stage: str | None = None) -> None:
        with self._lock:
            self._stage(stage).rows += count

    def bytes(self, count: int, stage: str | None = None) -> None:
        with self._lock:
            self._stage(stage).bytes += count

    def run_done(self, ok: bool) -> None:
        with self._lock:
            self.runs_done += 1

    def event(self, name: str, count: int = 1) -> None:
        self._events.add(name, count)


class LineProgress(Counters):
    """For logs and CI: one `progress` event at most every `interval` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = interval
        self._started = time.monotonic()
        self._last = self._started

    def start(self, label: str, total_runs: int | None) -> None:
        super().start(label, total_runs)
        self._started = time.monotonic()
        self._last = self._started

    def event(self, name: str, count: int = 1) -> None:
        super().event(name, count)
        self._maybe_log()

    def rows(self, count: int, stage: str | None = None) -> None:
        super().rows(count, stage)
        self._maybe_log()

    def run_done(self, ok: bool) -> None:
        super().run_done(ok)
        self._maybe_log()

    def _maybe_log(self) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        fields: dict[str, Any] = {}
        with self._lock:
            for name, s in self.stages.items():
                fields[f"rows_{name}"] = s.rows
                fields[f"rows_{name}_total"] = s.total
                fields[f"rows_{name}_per_s"] = int(s.rows / elapsed)
                if s.bytes:
                    fields[f"bytes_{name}"] = s.bytes
            runs_done, runs_total = self.runs_done, self.runs_total
        log.info("progress", command=self.label, runs_done=runs_done, runs_total=runs_total, **fields,
                 **self._events.counts)


class RichProgress(Counters):
    """Bars on stderr: runs (of the total, with ETA), then per stage rows (of their total where known, with
    rate and ETA) and bytes. Log lines print above them (rich redirects stderr while the bars are live)."""

    shows_runs = True

    def __init__(self, console: Any = None) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bars

        count, rate = _columns()
        self.bars = Bars(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            count,
            TaskProgressColumn(),
            rate,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[note]}"),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._tasks: dict[str, Any] = {}
        self._tasks_lock = threading.Lock()

    def _task(self, key: str, description: str, unit: str, total: int | None = None) -> Any:
        with self._tasks_lock:  # workers report from many threads: one bar per key
            if key not in self._tasks:
                self._tasks[key] = self.bars.add_task(description, total=total, unit=unit, estimate=False, note="")
            return self._tasks[key]

    def start(self, label: str, total_runs: int | None) -> None:
        super().start(label, total_runs)
        self.bars.start()
        self._task("runs", f"{label} runs", "runs", total_runs)

    def set_total(self, total_runs: int, final: bool = True) -> None:
        super().set_total(total_runs, final)
        self.bars.update(self._task("runs", f"{self.label} runs", "runs"), total=total_runs)

    def expect_rows(self, count: int | None, stage: str, estimate: bool = False) -> None:
        super().expect_rows(count, stage, estimate)
        s = self.stages[stage]
        self.bars.update(self._task(f"rows:{stage}", f"{stage} rows", "rows"), total=s.total, estimate=s.estimate)

    def rows(self, count: int, stage: str | None = None) -> None:
        super().rows(count, stage)
        name = stage or self.label
        s = self.stages[name]
        self.bars.update(self._task(f"rows:{name}", f"{name} rows", "rows"), completed=s.rows, total=s.total,
                         estimate=s.estimate)

    def bytes(self, count: int, stage: str | None = None) -> None:
        super().bytes(count, stage)
        name = stage or self.label
        self.bars.update(self._task(f"bytes:{name}", f"{name} bytes", "bytes"), completed=self.stages[name].bytes)

    def run_done(self, ok: bool) -> None:
        super().run_done(ok)
        self.bars.update(self._task("runs", f"{self.label} runs", "runs"), completed=self.runs_done)

    def event(self, name: str, count: int = 1) -> None:
        super().event(name, count)
        self.bars.update(self._task("runs", f"{self.label} runs", "runs"), note=self._events.text())

    def stop(self) -> None:
        self.bars.stop()


def _columns() -> tuple[Any, Any]:
    """The two columns of our own, built on first use (rich.progress is imported only when bars are shown)."""
    from rich.filesize import decimal
    from rich.progress import ProgressColumn
    from rich.text import Text

    class Count(ProgressColumn):
        """`1.2M/~3.4M rows`, `3/12 runs`, `45.1 MB`: done of total (`?` while unknown)."""

        def render(self, task: Any) -> Any:
            unit = task.fields.get("unit", "")
            if unit == "bytes":
                return Text(decimal(int(task.completed)), style="progress.download")
            done = f"{int(task.completed):,}" if unit == "runs" else human(task.completed)
            if task.total is None:
                total = "?"
            else:
                total = ("~" if task.fields.get("estimate") else "") + (
                    f"{int(task.total):,}" if unit == "runs" else human(task.total))
            return Text(f"{done}/{total} {unit}", style="progress.download")

    class Rate(ProgressColumn):
        """`12.3k rows/s`, `4.5 MB/s`; nothing for runs (their ETA says more)."""

        def render(self, task: Any) -> Any:
            unit, speed = task.fields.get("unit", ""), task.finished_speed or task.speed
            if unit == "runs" or not speed:
                return Text("")
            text = f"{decimal(int(speed))}/s" if unit == "bytes" else f"{human(speed)} rows/s"
            return Text(text, style="progress.data.speed")

    return Count(), Rate()
