"""Shared by the benchmarks: peak memory of this process and its children, sampled in a thread."""

from __future__ import annotations

import contextlib
import threading
import time
from queue import Empty
from typing import Any

import psutil


class PeakRss:
    """Samples RSS of this process, plus its children with `children=True` (e.g. pluto-ml's sync process),
    every 20 ms; ru_maxrss would also count whatever ran before the measured block. Children are opt-in:
    finding them scans all of /proc, which costs a measured phase about a quarter of a core."""

    def __init__(self, children: bool = False) -> None:
        self.peak = 0
        self._children = children
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = self._proc.memory_info().rss
        if not self._children:
            return total
        with contextlib.suppress(psutil.Error):
            total += sum(child.memory_info().rss for child in self._proc.children(recursive=True))
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.02)

    def __enter__(self) -> PeakRss:
        self.peak = self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def result_of(proc: Any, queue: Any) -> Any:
    """The one result a phase's child process puts on `queue`; a child that dies first (an exception, a
    crash, the OOM killer) is an error naming its exit code, not a benchmark that waits forever."""
    while True:
        try:
            result = queue.get(timeout=1.0)
        except Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the benchmark phase's process died (exit code {proc.exitcode}) "
                                   "before reporting; its traceback is above") from None
            continue
        proc.join()
        return result
