"""Float and string series, paged from the server and turned into Arrow batches without per-point Python.

Each page's JSON list of `{timestampMillis, step, value}` goes straight into a pyarrow struct array; pages are
concatenated up to `batch_rows` points and written, so memory per series is bounded by one batch whatever its
length. Timestamps are taken from `timestampMillis` (epoch milliseconds, UTC): the neptune client turns them
into naive *local* datetimes, which shifts every point by the machine's UTC offset.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from migrate_core.format import TIMESTAMP_TYPE, make_batch, steps_from_float

from .client import Neptune2Client
from .errors import AttributeFetchError

OPERATIONS = {"float_series": "getFloatSeriesValues", "string_series": "getStringSeriesValues"}
VALUE_TYPES = {"float_series": pa.float64(), "string_series": pa.string()}


def _point_type(kind: str) -> pa.StructType:
    return pa.struct([("timestampMillis", pa.int64()), ("step", pa.float64()), ("value", VALUE_TYPES[kind])])


def read_series(
    client: Neptune2Client,
    experiment_id: str,
    path: str,
    kind: str,
    page_size: int,
    batch_rows: int,
    cancelled: Callable[[], bool] | None = None,
    prefetch: int = 1,
    first: dict | None = None,
) -> Iterator[pa.StructArray]:
    """Yield the series' points as struct arrays of at most ~batch_rows points, in server order."""
    op = OPERATIONS[kind]
    point_type = _point_type(kind)
    pending: list[pa.Array] = []
    pending_rows = 0
    offset = total = 0

    def fetch(at: int) -> dict:
        return client.json(op, {"experimentId": experiment_id, "attribute": path, "limit": page_size,
                                "offset": at}, cancelled=cancelled)

    for data in _pages(fetch, page_size, prefetch, first):
        total = int(data.get("totalItemCount") or 0)
        values = data.get("values") or []
        if values:
            page = _page(values, point_type, kind, path, op)
            pending.append(page)
            pending_rows += len(page)
            offset += len(page)
        if pending and pending_rows >= batch_rows:
            yield pa.concat_arrays(pending) if len(pending) > 1 else pending[0]
            pending, pending_rows = [], 0
    if pending:
        yield pa.concat_arrays(pending) if len(pending) > 1 else pending[0]
    if offset < total:
        raise AttributeFetchError(f"{path}: the server announced {total} points but served {offset}")


def _pages(fetch: Callable[[int], dict], page_size: int, prefetch: int, first: dict | None = None) -> Iterator[dict]:
    """Pages in order. After the first page (which tells the total), up to `prefetch` pages are requested at
    once; memory stays bounded by that window. If the series changes length meanwhile, the rest is read
    one page after another until an empty page or the latest total."""
    data = fetch(0) if first is None else first
    yield data
    offset = len(data.get("values") or [])
    total = int(data.get("totalItemCount") or 0)
    if prefetch > 1 and 0 < offset < total:
        pool = ThreadPoolExecutor(prefetch, thread_name_prefix="neptune2-page")
        try:
            planned = iter(range(offset, total, page_size))
            window: deque[tuple[int, Future]] = deque()
            for at in itertools.islice(planned, prefetch):
                window.append((at, pool.submit(fetch, at)))
            latest = total
            while window:
                at, future = window.popleft()
                data = future.result()
                got = len(data.get("values") or [])
                latest = max(latest, int(data.get("totalItemCount") or 0))
                yield data
                offset = at + got
                if got != min(page_size, total - at):
                    break  # the series changed under us: finish sequentially from here
                nxt = next(planned, None)
                if nxt is not None:
                    window.append((nxt, pool.submit(fetch, nxt)))
            total = latest  # pages answered out of order: the largest total any of them saw
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    while data.get("values") and offset < total:
        data = fetch(offset)
        yield data
        offset += len(data.get("values") or [])
        total = int(data.get("totalItemCount") or 0)


def _page(values: list, point_type: pa.StructType, kind: str, path: str, op: str) -> pa.StructArray:
    """JSON points -> struct array in C++; servers that send non-finite floats as strings ("NaN") take a
    slower path that casts the values column (Arrow parses NaN/Infinity/-Infinity)."""
    try:
        return pa.array(values, type=point_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        if kind != "float_series":
            raise AttributeFetchError(f"{path}: unexpected point format from {op}: {exc}") from None
    loose = pa.struct([("timestampMillis", pa.int64()), ("step", pa.float64()), ("value", pa.string())])
    try:
        raw = pa.array([{**v, "value": None if v.get("value") is None else str(v["value"])} for v in values],
                       type=loose)
        value = raw.field("value").cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise AttributeFetchError(f"{path}: unexpected point format from {op}: {exc}") from None
    return pa.StructArray.from_arrays([raw.field("timestampMillis"), raw.field("step"), value],
                                      fields=list(point_type))


def series_batch(project_id: str, run_id: str, path: str, kind: str, points: pa.StructArray) -> pa.RecordBatch:
    """Canonical rows for one chunk of points: decimal steps, UTC millisecond timestamps, typed values."""
    steps = points.field("step")
    if steps.null_count:
        raise AttributeFetchError(f"{path}: {steps.null_count} points without a step")
    timestamps = points.field("timestampMillis")
    column = "float_value" if kind == "float_series" else "string_value"
    return make_batch(
        project_id,
        run_id,
        path,
        kind,
        len(points),
        step=steps_from_float(steps.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)),
        timestamp=timestamps.cast(TIMESTAMP_TYPE),
        **{column: points.field("value")},
    )
