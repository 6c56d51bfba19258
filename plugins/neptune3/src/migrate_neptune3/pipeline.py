"""Attribute groups read concurrently, written in a fixed order, with bounded memory.

Each group (a request's worth of series) runs in a worker and hands its batches to its own small queue; the
calling thread writes the queues in group order. A group blocks once its queue holds `depth` batches, so at
most workers x depth batches wait in memory, and the output is the same row order on every export.
Groups start in order (FIFO pool), so the group being written is always running: no deadlock.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
from migrate_core.errors import Cancelled

_DONE = object()


class Emit:
    """What a group's work receives: `write(batch)` (ordered) and `stopped` (another group failed)."""

    def __init__(self, sink: Callable[[pa.RecordBatch], None]) -> None:
        self._sink = sink

    def write(self, batch: pa.RecordBatch) -> None:
        self._sink(batch)


def run_ordered(tasks: Sequence[Callable[[Emit], None]], write: Callable[[pa.RecordBatch], None], *, workers: int,
                depth: int = 1, cancelled: Callable[[], bool] = lambda: False) -> None:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            task(Emit(write))
        return
    stop = threading.Event()
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in tasks]

    def put(q: queue.Queue[Any], item: Any) -> None:
        while True:
            if stop.is_set():
                raise Cancelled()
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def body(index: int) -> None:
        q = queues[index]
        try:
            if stop.is_set():
                return
            tasks[index](Emit(lambda batch: put(q, batch)))
            put(q, _DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
            if not stop.is_set():
                q.put(_Failure(exc))

    with ThreadPoolExecutor(workers, thread_name_prefix="neptune3-attr") as pool:
        for index in range(len(tasks)):
            pool.submit(contextvars.copy_context().run, body, index)  # the run's retry scope goes along
        try:
            for q in queues:
                while True:
                    try:
                        item = q.get(timeout=0.1)
                    except queue.Empty:
                        if cancelled():
                            raise Cancelled() from None
                        continue
                    if item is _DONE:
                        break
                    if isinstance(item, _Failure):
                        raise item.exc
                    write(item)
        finally:
            stop.set()
            for q in queues:  # unblock producers waiting on a full queue
                while True:
                    try:
                        q.get_nowait()
                    except queue.Empty:
                        break


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
