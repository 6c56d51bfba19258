"""A one-thread send pipeline for metric bodies: the next body is encoded while the last is in flight.

Metrics are the bulk of a run and Pluto deduplicates them, so they need no per-request bookkeeping;
the bounded queue keeps at most `depth` encoded bodies in memory. Anything that does need ordering
(tracked kinds, the final status) calls `flush()` first, which also surfaces a send error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable


class Pipeline:
    def __init__(self, send: Callable[[bytes], None], depth: int = 2) -> None:
        self._send = send
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="pluto-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is None:
                    return
                if self._error is None:
                    self._send(body)
            except BaseException as exc:  # noqa: BLE001 - handed to the loading thread
                self._error = exc
            finally:
                self._queue.task_done()

    def submit(self, body: bytes) -> None:
        self._raise()
        self._queue.put(body)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Stop the thread; unsent bodies are dropped (a resumed load sends metrics again, harmlessly)."""
        if self._thread.is_alive():
            self._error = self._error or RuntimeError("pipeline closed")
            self._queue.put(None)
            self._thread.join(timeout=60)

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, RuntimeError("metrics pipeline stopped after an error")
            raise error
