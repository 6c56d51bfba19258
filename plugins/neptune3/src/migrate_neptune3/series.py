"""Series reads: bounded pages straight from neptune-query's page calls into columnar numpy/Arrow.

Float series use `series/float` with our own paging: ascending order, `perSeriesPointsLimit` sized so one
answer holds at most `page_points` points, and `afterStep` for the next page (steps are unique within a
series, also across a fork's inherited history). String, histogram and file series use `series` with the
server's `searchAfter` tokens. Nothing is accumulated per series: each page becomes batches at once.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from migrate_core.format import HISTOGRAM_TYPE, make_batch, steps_from_float, timestamps_ms

from . import pointwire
from .client import Neptune3Client

PREVIEW_SUFFIX = "@preview"
COMPLETION_SUFFIX = "@preview_completion"


@dataclass(frozen=True)
class FloatPage:
    attribute: str
    timestamps: np.ndarray  # int64 ms
    steps: np.ndarray  # float64
    values: np.ndarray  # float64
    is_preview: np.ndarray  # bool
    completion: np.ndarray  # float32


def _holder(project: str, sys_id: str) -> dict[str, str]:
    return {"identifier": f"{project}/{sys_id}", "type": "experiment"}


def float_pages(client: Neptune3Client, project: str, sys_id: str, attributes: list[str], *, lineage: bool,
                page_points: int) -> Iterator[FloatPage]:
    """Every point (committed and preview) of the given float series, one page at a time."""
    pending = {
        str(i): {
            "requestId": str(i),
            "series": {"holder": _holder(project, sys_id), "attribute": name,
                       "lineage": "FULL" if lineage else "NONE", "lineageEntityType": "RUN",
                       "includePreview": True},
        }
        for i, name in enumerate(attributes)
    }
    def ask(requests: dict[str, dict[str, Any]]) -> tuple[int, Future[list[tuple[str, Any]]]]:
        limit = max(1, page_points // len(requests))
        params = {"requests": list(requests.values()), "stepRange": {"from": None, "to": None},
                  "order": "ascending", "perSeriesPointsLimit": limit}
        # in the caller's context, so a retry of the prefetched request is counted for its run
        return limit, prefetch.submit(contextvars.copy_context().run, client.float_series_page, params)

    # one request in flight while the previous answer is decoded and written: the server works meanwhile
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="neptune3-prefetch")
    try:
        limit, answer = ask(pending)
        while True:
            pages = []
            following: dict[str, dict[str, Any]] = {}
            for request_id, page in answer.result():
                request = pending.get(request_id)
                if request is None:
                    continue
                if len(page[0]):
                    pages.append(FloatPage(request["series"]["attribute"], *page))
                if len(page[0]) >= limit:
                    following[request_id] = {**request, "afterStep": float(page[1][-1])}
            if following:
                pending = following
                limit, answer = ask(pending)
            yield from pages
            if not following:
                return
    finally:
        # on cancel or failure, do not wait for a prefetched answer nobody will read
        prefetch.shutdown(wait=False, cancel_futures=True)


def float_batches(project_id: str, run_id: str, page: FloatPage, previews: bool) -> tuple[list[pa.RecordBatch], int]:
    """Canonical batches for one page, and the number of preview points not exported."""
    out = []
    committed = ~page.is_preview
    n_committed = int(committed.sum())
    if n_committed == len(page.steps):
        out.append(_float_batch(project_id, run_id, page.attribute, page.steps, page.timestamps, page.values))
        return out, 0
    if n_committed:
        out.append(_float_batch(project_id, run_id, page.attribute, page.steps[committed],
                                page.timestamps[committed], page.values[committed]))
    preview = page.is_preview
    n_preview = len(page.steps) - n_committed
    if not previews:
        return out, n_preview
    steps, stamps = page.steps[preview], page.timestamps[preview]
    out.append(_float_batch(project_id, run_id, page.attribute + PREVIEW_SUFFIX, steps, stamps, page.values[preview]))
    out.append(_float_batch(project_id, run_id, page.attribute + COMPLETION_SUFFIX, steps, stamps,
                            page.completion[preview].astype(np.float64)))
    return out, 0


def _float_batch(project_id: str, run_id: str, path: str, steps: np.ndarray, stamps: np.ndarray,
                 values: np.ndarray) -> pa.RecordBatch:
    return make_batch(project_id, run_id, path, "float_series", len(steps), step=steps_from_float(steps),
                      timestamp=timestamps_ms(stamps), float_value=pa.array(values, type=pa.float64()))


def series_pages(client: Neptune3Client, project: str, sys_id: str, attributes: list[str], *,
                 lineage: bool) -> Iterator[tuple[str, Any]]:
    """(attribute, ProtoSeriesValuesDTO) pages of string / histogram / file series (`.values` the points)."""
    pending = {
        str(i): {
            "requestId": str(i),
            "series": {"holder": _holder(project, sys_id), "attribute": name,
                       "lineage": "FULL" if lineage else "NONE", "lineageEntityType": "RUN"},
        }
        for i, name in enumerate(attributes)
    }
    while pending:
        params = {"requests": list(pending.values()), "stepRange": {"from": None, "to": None},
                  "order": "ascending"}
        dto = client.series_page(params)
        following: dict[str, dict[str, Any]] = {}
        for series in dto.series:
            request = pending.get(series.requestId)
            if request is None:
                continue
            values = series.seriesValues.values
            if len(values):
                yield request["series"]["attribute"], series.seriesValues
            if series.HasField("searchAfter") and not series.searchAfter.finished:
                if not len(values) and not series.searchAfter.token:
                    continue  # no progress: the server has nothing more for it
                following[series.requestId] = {**request, "searchAfter": {"finished": False,
                                                                          "token": series.searchAfter.token}}
        pending = following


def string_batch(project_id: str, run_id: str, path: str, series_values: Any) -> pa.RecordBatch:
    """The canonical batch of one string series page (decoded column-wise; the runtime if that fails)."""
    try:
        steps, stamps, text = pointwire.string_columns(series_values)
    except pointwire.Unexpected:
        steps, stamps, text = string_columns_runtime(series_values.values)
    return make_batch(project_id, run_id, path, "string_series", len(steps), step=steps_from_float(steps),
                      timestamp=timestamps_ms(stamps), string_value=text)


def histogram_batch(project_id: str, run_id: str, path: str, series_values: Any) -> pa.RecordBatch:
    """The canonical batch of one histogram series page (decoded column-wise; the runtime if that fails)."""
    try:
        steps, stamps, kinds, edges, counts = pointwire.histogram_columns(series_values)
    except pointwire.Unexpected:
        steps, stamps, kinds, edges, counts = histogram_columns_runtime(series_values.values)
    struct = pa.StructArray.from_arrays([kinds, edges, counts], fields=list(HISTOGRAM_TYPE))
    return make_batch(project_id, run_id, path, "histogram_series", len(steps), step=steps_from_float(steps),
                      timestamp=timestamps_ms(stamps), histogram_value=struct)


# The protobuf runtime's way, one attribute read per field per point: the fallback, and the reference the
# column-wise decoding is tested against bit for bit.


def steps_stamps_runtime(values: Any) -> tuple[np.ndarray, np.ndarray]:
    n = len(values)
    return (np.fromiter((v.step for v in values), np.float64, n),
            np.fromiter((v.timestamp_millis for v in values), np.int64, n))


def string_columns_runtime(values: Any) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    steps, stamps = steps_stamps_runtime(values)
    return steps, stamps, pa.array([v.object.stringValue for v in values], pa.string())


def histogram_columns_runtime(values: Any) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, pa.Array]:
    steps, stamps = steps_stamps_runtime(values)
    hists = [v.object.histogram for v in values]
    return (steps, stamps, pa.array([h.type for h in hists], pa.string()),
            pa.array([list(h.edges) for h in hists], pa.list_(pa.float64())),
            pa.array([list(h.values) for h in hists], pa.list_(pa.float64())))
