"""`ordered_map`: run a few requests at once, hand results back in input order, never more than `window`
results held at a time (so memory stays bounded whatever the input length)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], window: int) -> Iterator[R]:
    if window <= 1:
        for item in items:
            yield fn(item)
        return
    pool = ThreadPoolExecutor(window, thread_name_prefix="neptune2-fetch")
    pending: deque[Future[R]] = deque()
    source = iter(items)
    try:
        for item in source:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break
        while pending:
            result = pending.popleft().result()
            item = next(source, _END)
            if item is not _END:
                pending.append(pool.submit(fn, item))
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


_END: object = object()
