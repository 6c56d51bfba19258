"""Shared by the benchmarks: peak memory of this process and its children, sampled in a thread."""

from __future__ import annotations

import contextlib
import threading
import time

import psutil


class PeakRss:
    """Samples RSS of this process plus its children (e.g. pluto-ml's sync process) every 20 ms;
    ru_maxrss would also count whatever ran before the measured block."""

    def __init__(self) -> None:
        self.peak = 0
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = self._proc.memory_info().rss
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
