"""Float and string series, paged from the server and turned into Arrow batches without per-point Python.

Each page's JSON list of `{timestampMillis, step, value}` goes straight into a pyarrow struct array; pages are
concatenated up to `batch_rows` points and written, so memory per series is bounded by one batch whatever its
length. Timestamps are taken from `timestampMillis` (epoch milliseconds, UTC): the neptune client turns them
into naive *local* datetimes, which shifts every point by the machine's UTC offset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
) -> Iterator[pa.StructArray]:
    """Yield the series' points as struct arrays of at most ~batch_rows points, in server order."""
    op = OPERATIONS[kind]
    point_type = _point_type(kind)
    pending: list[pa.Array] = []
    pending_rows = 0
    offset = 0
    total = None
    while True:
        data = client.json(op, {"experimentId": experiment_id, "attribute": path, "limit": page_size,
                                "offset": offset}, cancelled=cancelled)
        total = int(data.get("totalItemCount") or 0)
        values = data.get("values") or []
        if values:
            page = _page(values, point_type, kind, path, op)
            pending.append(page)
            pending_rows += len(page)
            offset += len(page)
        done = not values or offset >= total
        if pending and (done or pending_rows >= batch_rows):
            yield pa.concat_arrays(pending) if len(pending) > 1 else pending[0]
            pending, pending_rows = [], 0
        if done:
            break
    if offset != total:
        raise AttributeFetchError(f"{path}: the server announced {total} points but served {offset}")


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
