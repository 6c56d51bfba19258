"""Handlers of the read API that neptune-query calls; JSON in, protobuf (or JSON) out.

Each handler takes the decoded request and returns an ``Answer``. Paging follows what the 1.14.1 client does
with the answers (see ``neptune_query/internal/retrieval/*.py``):

- entries/search: ``pagination.offset``/``limit``; the client stops on a short page.
- definitions/query and attributes/query: opaque ``nextPage.nextPageToken`` (here: an offset), empty on the
  last page. attributes/query pages over (run, attribute) pairs, so one run can span two pages.
- series/float: ``perSeriesPointsLimit`` per request; the client asks again with ``afterStep`` when a series
  filled its limit. Both orders are supported (1.7 asks ascending, >= 1.10 descending).
- series: ``searchAfter`` tokens, a total point budget per answer (``series_page_points``), and an optional
  ``perSeriesPointsLimit`` that bounds the total per series across pages (the client's tail limit).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nql
from .proto import attributes_pb2, encode_float_points, frame, leaderboard_entries_pb2, series_values_pb2
from .store import SERIES_TYPES, Columns, FileRef, Histogram, Project, Run, Store

lb = leaderboard_entries_pb2
sv = series_values_pb2


@dataclass
class Answer:
    """An HTTP answer produced by a handler."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/x-protobuf"
    headers: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def json(data: Any, status: int = 200) -> Answer:
        return Answer(status, json.dumps(data).encode("utf-8"), "application/json")

    @staticmethod
    def error(status: int, message: str, error_type: str | None = None) -> Answer:
        body: dict[str, Any] = {"code": status, "message": message, "title": message}
        if error_type:
            body["errorType"] = error_type
        return Answer.json(body, status)


class NotFound(Exception):
    """Unknown project: answered with 404 (neptune-query then raises NeptuneUnexpectedResponseError)."""


# -- attribute values as protobuf -----------------------------------------------------------------------
def _file_ref_proto(target: Any, ref: FileRef) -> None:
    target.path = ref.path
    target.sizeBytes = int(ref.size_bytes)
    target.mimeType = ref.mime_type


def _histogram_proto(target: Any, hist: Histogram) -> None:
    target.type = hist.type
    target.edges.extend(hist.edges)
    target.values.extend(hist.values)


def fill_attribute(dto: Any, name: str, attr_type: str, value: Any) -> None:
    """Fill a ``ProtoAttributeDTO`` with the one ``*_properties`` field matching the attribute type."""
    dto.name = name
    dto.type = attr_type
    simple = {
        "int": "int_properties",
        "float": "float_properties",
        "string": "string_properties",
        "bool": "bool_properties",
        "datetime": "datetime_properties",
    }
    if attr_type in simple:
        props = getattr(dto, simple[attr_type])
        props.attribute_name = name
        props.attribute_type = attr_type
        props.value = int(value) if attr_type in ("int", "datetime") else value
        return
    if attr_type == "stringSet":
        props = dto.string_set_properties
        props.attribute_name, props.attribute_type = name, attr_type
        props.value.extend(sorted(value))
    elif attr_type == "fileRef":
        props = dto.file_ref_properties
        props.attribute_name, props.attribute_type = name, attr_type
        _file_ref_proto(props, value)
    elif attr_type in SERIES_TYPES:
        agg = value.aggregates()
        field_name = {
            "floatSeries": "float_series_properties",
            "stringSeries": "string_series_properties",
            "fileRefSeries": "file_ref_series_properties",
            "histogramSeries": "histogram_series_properties",
        }[attr_type]
        props = getattr(dto, field_name)
        props.attribute_name, props.attribute_type = name, attr_type
        if "last_step" in agg:
            props.last_step = agg["last_step"]
        if attr_type == "floatSeries":
            props.has_preview = agg["has_preview"]
            for key in ("last", "min", "max", "average", "variance"):
                if key in agg:
                    setattr(props, key, agg[key])
        elif "last" in agg:
            if attr_type == "stringSeries":
                props.last = agg["last"]
            elif attr_type == "fileRefSeries":
                _file_ref_proto(props.last, agg["last"])
            else:
                _histogram_proto(props.last, agg["last"])
    else:  # pragma: no cover - the store only holds the types above
        raise ValueError(f"unsupported attribute type {attr_type}")


# -- attribute selection -------------------------------------------------------------------------------
def _name_filter_matches(name: str, name_filter: dict[str, Any] | None) -> bool:
    """``attributeNameFilter``: any alternative of ``mustMatchAny`` matches (all its musts, none of its nots)."""
    if not name_filter:
        return True
    alternatives = name_filter.get("mustMatchAny")
    if alternatives is None:
        return True
    for alt in alternatives:
        musts = alt.get("mustMatchRegexes") or []
        nots = alt.get("mustNotMatchRegexes") or []
        if all(re.search(r, name) for r in musts) and not any(re.search(r, name) for r in nots):
            return True
    return False


def _type_filter(body: dict[str, Any]) -> set[str] | None:
    items = body.get("attributeFilter")
    if not items:
        return None
    return {item["attributeType"] for item in items if item.get("attributeType")}


def _select_attributes(run: Run, body: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Attributes of ``run`` chosen by ``attributeNamesFilter`` or by the type + name-regex filters."""
    names = body.get("attributeNamesFilter")
    out: list[tuple[str, str, Any]] = []
    if names is not None:
        for name in names:
            attr = run.get(name)
            if attr is not None:
                out.append((name, attr.type, attr.value))
        return out
    types = _type_filter(body)
    name_filter = body.get("attributeNameFilter")
    for name in sorted(run.attributes):
        attr = run.attributes[name]
        if types is not None and attr.type not in types:
            continue
        if _name_filter_matches(name, name_filter):
            out.append((name, attr.type, attr.value))
    return out


def _runs_by_ids(store: Store, ids: Iterable[str]) -> list[Run]:
    runs = []
    for identifier in ids:
        run = store.find_run(identifier)
        if run is not None and not run.trashed:
            runs.append(run)
    return runs


def _project_or_404(store: Store, name: str | None) -> Project:
    proj = store.project(name or "")
    if proj is None:
        raise NotFound(f"project {name!r} not found")
    return proj


def _offset_token(token: str | None) -> int:
    if not token:
        return 0
    try:
        return int(token)
    except ValueError:
        return 0


# -- entries/search --------------------------------------------------------------------------------------
def _sort_key(value: tuple[str, Any]) -> tuple[int, Any]:
    attr_type, v = value
    if attr_type in ("int", "float", "datetime", "bool"):
        f = float(v)
        return (0, -math.inf if math.isnan(f) else f)
    if attr_type == "stringSet":
        return (1, ",".join(sorted(v)))
    return (1, str(v))


def _sorted_runs(runs: list[Run], sorting: dict[str, Any] | None) -> list[Run]:
    sorting = sorting or {}
    sort_by = sorting.get("sortBy") or {"name": "sys/creation_time", "type": "datetime"}
    descending = sorting.get("dir", "descending") == "descending"
    name, attr_type = sort_by.get("name", "sys/creation_time"), sort_by.get("type")
    aggregation = sorting.get("aggregationMode")
    if aggregation == "auto":
        aggregation = None
    present: list[tuple[tuple[int, Any], Run]] = []
    missing: list[Run] = []
    for run in runs:
        found = nql.attribute_scalar(run, name, attr_type, aggregation)
        if found is None:
            missing.append(run)
        else:
            present.append((_sort_key(found), run))
    try:
        present.sort(key=lambda item: item[0], reverse=descending)
    except TypeError:
        present.sort(key=lambda item: str(item[0]), reverse=descending)
    return [run for _, run in present] + missing


def _search_entries(
    store: Store, project_name: str | None, body: dict[str, Any], *, global_search: bool = False
) -> Answer:
    """Filter (``experimentLeader``, NQL), sort, page and project runs of one project or of all projects."""
    if global_search:
        runs = [r for proj in store.projects.values() for r in proj.runs if not r.trashed]
        projection = ["sys/id", "sys/name", "sys/custom_run_id"]
    else:
        proj = _project_or_404(store, project_name)
        runs = [r for r in proj.runs if not r.trashed]
        projection = [f.get("path") for f in body.get("attributeFilters") or [] if f.get("path")]
    if body.get("experimentLeader"):
        runs = [r for r in runs if r.is_experiment_head]
    query = (body.get("query") or {}).get("query")
    if query:
        try:
            tree = nql.parse(query)
        except nql.NqlError as e:
            return Answer.error(400, f"invalid NQL: {e}", "MALFORMED_JSON_REQUEST")
        runs = [r for r in runs if nql.evaluate(tree, r)]
    runs = _sorted_runs(runs, body.get("sorting"))
    pagination = body.get("pagination") or {}
    offset = int(pagination.get("offset") or 0)
    limit = int(pagination.get("limit") or 100)
    page = runs[offset : offset + limit]

    result = lb.ProtoLeaderboardEntriesSearchResultDTO(matching_item_count=len(runs))
    for run in page:
        ws, pname = run.project.name.split("/")
        entry = result.entries.add(
            experiment_id=run.internal_id,
            type="run",
            project_id=run.project.uuid,
            organization_id="org-" + ws,
            project_name=pname,
            organization_name=ws,
        )
        for name in projection:
            attr = run.get(name)
            if attr is not None:
                fill_attribute(entry.attributes.add(), name, attr.type, attr.value)
    return Answer(body=result.SerializeToString())


# -- attribute definitions and values -----------------------------------------------------------------
def _query_definitions(store: Store, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/leaderboard/attributes/definitions/query -> JSON entries + nextPage."""
    projects = body.get("projectIdentifiers") or []
    ids = body.get("experimentIdsFilter")
    if ids is not None:
        runs = _runs_by_ids(store, ids)
    else:
        runs = []
        for name in projects:
            proj = _project_or_404(store, name)
            runs.extend(r for r in proj.runs if not r.trashed)
    types = _type_filter(body)
    name_filter = body.get("attributeNameFilter")
    found: set[tuple[str, str]] = set()
    for run in runs:
        for name, attr in list(run.attributes.items()):
            if types is not None and attr.type not in types:
                continue
            if _name_filter_matches(name, name_filter):
                found.add((name, attr.type))
    ordered = sorted(found)
    next_page = body.get("nextPage") or {}
    limit = int(next_page.get("limit") or 10_000)
    offset = _offset_token(next_page.get("nextPageToken"))
    chunk = ordered[offset : offset + limit]
    page: dict[str, Any] = {"limit": limit}
    if offset + limit < len(ordered):
        page["nextPageToken"] = str(offset + limit)
    return Answer.json({"entries": [{"name": n, "type": t} for n, t in chunk], "nextPage": page})


def _query_attribute_values(store: Store, project_name: str | None, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/proto/leaderboard/attributes/query -> ProtoQueryAttributesResultDTO."""
    ids = body.get("experimentIdsFilter")
    if ids is not None:
        runs = _runs_by_ids(store, ids)
    else:
        proj = _project_or_404(store, project_name)
        runs = [r for r in proj.runs if not r.trashed]
    pairs: list[tuple[Run, tuple[str, str, Any]]] = []
    for run in runs:
        pairs.extend((run, item) for item in _select_attributes(run, body))
    next_page = body.get("nextPage") or {}
    limit = int(next_page.get("limit") or 10_000)
    offset = _offset_token(next_page.get("nextPageToken"))
    chunk = pairs[offset : offset + limit]
    result = attributes_pb2.ProtoQueryAttributesResultDTO()
    current: Run | None = None
    entry = None
    for run, (name, attr_type, value) in chunk:
        if run is not current:
            entry = result.entries.add(experimentId=run.internal_id, experimentShortId=run.sys_id)
            current = run
        assert entry is not None
        fill_attribute(entry.attributes.add(), name, attr_type, value)
    result.nextPage.limit = limit
    result.nextPage.nextPageToken = str(offset + limit) if offset + limit < len(pairs) else ""
    return Answer(body=result.SerializeToString())


def search_entries(store: Store, project_name: str | None, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/proto/leaderboard/entries/search/ -> ProtoLeaderboardEntriesSearchResultDTO."""
    with store.lock:  # a consistent view while neptune-scale may be writing
        return _search_entries(store, project_name, body)


def global_search_entries(store: Store, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/proto/leaderboard/entries/global/search/ (``neptune_query.experimental``):
    runs of every project, each entry carrying sys/id, sys/name and sys/custom_run_id."""
    with store.lock:
        return _search_entries(store, None, body, global_search=True)


def query_definitions(store: Store, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/leaderboard/attributes/definitions/query -> JSON entries + nextPage."""
    with store.lock:
        return _query_definitions(store, body)


def query_attribute_values(store: Store, project_name: str | None, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/proto/leaderboard/attributes/query -> ProtoQueryAttributesResultDTO."""
    with store.lock:
        return _query_attribute_values(store, project_name, body)


# -- series ---------------------------------------------------------------------------------------------
def series_columns(run: Run, attribute: str, series_types: set[str], lineage: str) -> Columns | None:
    """Points of ``attribute`` for ``run``; with lineage FULL, ancestors' points up to each fork step come first."""
    chain = run.lineage() if lineage == "FULL" else [(run, math.inf)]
    parts: list[Columns] = []
    is_float = "floatSeries" in series_types
    for holder, max_step in chain:
        attr = holder.get(attribute)
        if attr is None or attr.type not in series_types:
            continue
        cols = attr.value.columns()
        if max_step != math.inf:
            cols = cols.slice(0, int(np.searchsorted(cols.steps, max_step, side="right")))
        if len(cols):
            parts.append(cols)
    own = run.get(attribute)
    if not parts:
        return None if own is None or own.type not in series_types else own.value.columns()
    cols = Columns.concat(parts, is_float)
    if len(parts) > 1 and np.any(np.diff(cols.steps) < 0):
        order = np.argsort(cols.steps, kind="stable")
        cols = cols.mask(order)
    return cols


def _restrict(cols: Columns, step_range: dict[str, Any] | None, include_preview: bool | None) -> Columns:
    if include_preview is False and cols.is_preview is not None and bool(cols.is_preview.any()):
        cols = cols.mask(~cols.is_preview)
    step_range = step_range or {}
    lo, hi = step_range.get("from"), step_range.get("to")
    start = 0 if lo is None else int(np.searchsorted(cols.steps, float(lo), side="left"))
    stop = len(cols) if hi is None else int(np.searchsorted(cols.steps, float(hi), side="right"))
    return cols.slice(start, max(start, stop))


def _after(cols: Columns, after_step: float | None, descending: bool) -> Columns:
    if after_step is None:
        return cols
    if descending:
        return cols.slice(0, int(np.searchsorted(cols.steps, float(after_step), side="left")))
    return cols.slice(int(np.searchsorted(cols.steps, float(after_step), side="right")), len(cols))


def _take(cols: Columns, limit: int, descending: bool) -> Columns:
    """The first ``limit`` points in the requested order (descending: highest steps first)."""
    if descending:
        part = cols.slice(max(0, len(cols) - limit), len(cols))
        rev = slice(None, None, -1)
        return Columns(
            part.steps[rev],
            part.timestamps[rev],
            part.values[rev],
            None if part.is_preview is None else part.is_preview[rev],
            None if part.completion is None else part.completion[rev],
        )
    return cols.slice(0, limit)


def _resolve(store: Store, series: dict[str, Any]) -> Run | None:
    holder = series.get("holder") or {}
    return store.find_run(str(holder.get("identifier", "")))


def float_series(store: Store, body: dict[str, Any]) -> Answer:
    """POST /api/leaderboard/v1/proto/attributes/series/float -> ProtoFloatSeriesValuesResponseDTO."""
    limit = int(body.get("perSeriesPointsLimit") or 10_000)
    descending = body.get("order", "ascending") == "descending"
    parts: list[bytes] = []
    for request in body.get("requests") or []:
        series = request.get("series") or {}
        with store.lock:  # ingest may be adding attributes concurrently
            run = _resolve(store, series)
            cols = None
            if run is not None:
                cols = series_columns(
                    run, series.get("attribute", ""), {"floatSeries"}, series.get("lineage", "NONE")
                )
        head = sv.ProtoFloatSeriesValuesSingleSeriesResponseDTO(requestId=str(request.get("requestId", "")))
        if cols is None:
            inner = sv.ProtoFloatSeriesValuesDTO(total_item_count=0).SerializeToString()
        else:
            cols = _restrict(cols, body.get("stepRange"), series.get("includePreview"))
            total = len(cols)
            cols = _take(_after(cols, request.get("afterStep"), descending), limit, descending)
            ratio = cols.completion
            inner = sv.ProtoFloatSeriesValuesDTO(
                total_item_count=total
            ).SerializeToString() + encode_float_points(
                cols.timestamps, cols.steps, cols.values, cols.is_preview, ratio
            )
        parts.append(frame(1, head.SerializeToString() + frame(2, inner)))
    return Answer(body=b"".join(parts))


def _encode_token(step: float | None, count: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"s": step, "n": count}).encode()).decode("ascii")


def _decode_token(token: str | None) -> tuple[float | None, int]:
    if not token:
        return None, 0
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
        return (None if data["s"] is None else float(data["s"])), int(data["n"])
    except Exception:
        return None, 0


def _fill_point_object(point: Any, attr_type: str, value: Any) -> None:
    obj = point.object
    if attr_type == "stringSeries":
        obj.stringValue = value
    elif attr_type == "histogramSeries":
        _histogram_proto(obj.histogram, value)
    else:
        _file_ref_proto(obj.fileRef, value)


def series_values(
    store: Store, body: dict[str, Any], page_points: int, deprecated_string_fields: bool
) -> Answer:
    """POST /api/leaderboard/v1/proto/attributes/series -> ProtoSeriesValuesResponseDTO (string/histogram/file)."""
    descending = body.get("order", "ascending") == "descending"
    tail = body.get("perSeriesPointsLimit")
    tail_limit = int(tail) if tail else None
    budget = page_points
    result = sv.ProtoSeriesValuesResponseDTO()
    types = {"stringSeries", "histogramSeries", "fileRefSeries"}
    for request in body.get("requests") or []:
        series = request.get("series") or {}
        out = result.series.add(requestId=str(request.get("requestId", "")))
        search_after = request.get("searchAfter") or {}
        after_step, sent = _decode_token(search_after.get("token"))
        attribute = series.get("attribute", "")
        with store.lock:
            run = _resolve(store, series)
            cols = (
                None if run is None else series_columns(run, attribute, types, series.get("lineage", "NONE"))
            )
            attr_type = "stringSeries" if run is None else _series_type(run, attribute, types)
        target = out.string_series if deprecated_string_fields else out.seriesValues
        target.SetInParent()
        if cols is None:
            out.searchAfter.finished = True
            out.searchAfter.token = _encode_token(None, 0)
            continue
        cols = _after(
            _restrict(cols, body.get("stepRange"), series.get("includePreview")), after_step, descending
        )
        want = len(cols) if tail_limit is None else max(0, min(len(cols), tail_limit - sent))
        n = min(want, budget)
        page = _take(cols, n, descending)
        budget -= n
        for i in range(len(page)):
            point = target.values.add(timestamp_millis=int(page.timestamps[i]), step=float(page.steps[i]))
            if page.is_preview is not None:
                point.is_preview = bool(page.is_preview[i])
                point.completion_ratio = float(page.completion[i])  # type: ignore[index]
            else:
                point.completion_ratio = 1.0
            _fill_point_object(point, attr_type, page.values[i])
        finished = n >= want
        last = float(page.steps[-1]) if n else after_step
        out.searchAfter.finished = finished
        out.searchAfter.token = _encode_token(last, sent + n)
    return Answer(body=result.SerializeToString())


def _series_type(run: Run, attribute: str, types: set[str]) -> str:
    for holder, _ in reversed(run.lineage()):
        attr = holder.get(attribute)
        if attr is not None and attr.type in types:
            return attr.type
    return "stringSeries"


# -- storage ----------------------------------------------------------------------------------------------
def signed_urls(body: dict[str, Any], sign: Callable[[str, str, str], str]) -> Answer:
    """POST /api/storagebridge/v1/signedUrl -> one ``aws`` URL per requested file, pointing back at the fake."""
    files = []
    for item in body.get("files") or []:
        files.append(
            {
                "path": item["path"],
                "project_identifier": item["project_identifier"],
                "provider": "aws",
                "url": sign(item["project_identifier"], item["path"], item.get("permission", "read")),
            }
        )
    return Answer.json({"files": files})


# -- metric buckets (neptune_query.fetch_metric_buckets) -------------------------------------------------------
def _formula_attribute(formula: str) -> str:
    """``${name}`` with ``\\``, ``$``, ``{``, ``}`` backslash-escaped -> ``name``."""
    if formula.startswith("${") and formula.endswith("}"):
        formula = formula[2:-1]
    return re.sub(r"\\(.)", r"\1", formula)


def _bucket_stats(bucket: Any, steps: np.ndarray, values: np.ndarray) -> None:
    finite = np.isfinite(values)
    bucket.nanCount = int(np.isnan(values).sum())
    bucket.positiveInfCount = int(np.isposinf(values).sum())
    bucket.negativeInfCount = int(np.isneginf(values).sum())
    bucket.finitePointCount = int(finite.sum())
    if bucket.finitePointCount:
        fx, fy = steps[finite], values[finite]
        bucket.first.x, bucket.first.y = float(fx[0]), float(fy[0])
        bucket.last.x, bucket.last.y = float(fx[-1]), float(fy[-1])
        bucket.localMin, bucket.localMax = float(fy.min()), float(fy.max())
        bucket.localSum = float(fy.sum())


def timeseries_buckets(store: Store, payload: bytes) -> Answer:
    """POST /api/leaderboard/v1/proto/attributes/timeseries/buckets (protobuf in and out).

    Buckets over steps, as neptune-query's ``_collapse_open_buckets`` expects them: bucket 0 is
    ``(-inf, lo]``, then ``maxBuckets - 1`` equal buckets over ``(lo, hi]`` where ``[lo, hi]`` is the view
    range or the series' own step range. A series with one distinct step gets a single ``(step, +inf)`` bucket.
    """
    from .proto import requests_pb2

    request = requests_pb2.ProtoGetTimeseriesBucketsRequest.FromString(payload)
    view = request.view
    max_buckets = max(1, int(view.maxBuckets or 1000))
    result = sv.ProtoTimeseriesBucketsDTO()
    for expr in request.expressions:
        entry = result.entries.add(requestId=expr.requestId)
        lineage = "FULL" if expr.lineage == requests_pb2.ProtoLineage.FULL else "NONE"
        with store.lock:
            run = store.find_run(expr.runId)
            cols = (
                None
                if run is None
                else series_columns(run, _formula_attribute(expr.customYFormula), {"floatSeries"}, lineage)
            )
        if cols is None:
            continue
        include_preview = expr.includePreview if expr.HasField("includePreview") else False
        cols = _restrict(cols, None, include_preview)
        if len(cols) == 0:
            continue
        lo = float(getattr(view, "from")) if view.HasField("from") else float(cols.steps[0])
        hi = float(view.to) if view.HasField("to") else float(cols.steps[-1])
        steps, values = cols.steps, np.asarray(cols.values, dtype=np.float64)
        if hi <= lo or max_buckets == 1:
            keep = steps >= lo if hi <= lo else steps <= hi
            bucket = entry.bucket.add(index=0, fromX=lo, toX=math.inf)
            _bucket_stats(bucket, steps[keep], values[keep])
            continue
        n = max_buckets - 1
        edges = lo + (hi - lo) * np.arange(n + 1) / n
        edges[-1] = hi
        bounds = np.searchsorted(steps, edges, side="right")  # points <= edge
        first = entry.bucket.add(index=0, fromX=-math.inf, toX=lo)
        _bucket_stats(first, steps[: bounds[0]], values[: bounds[0]])
        for i in range(n):
            bucket = entry.bucket.add(index=i + 1, fromX=float(edges[i]), toX=float(edges[i + 1]))
            _bucket_stats(bucket, steps[bounds[i] : bounds[i + 1]], values[bounds[i] : bounds[i + 1]])
    return Answer(body=result.SerializeToString())
