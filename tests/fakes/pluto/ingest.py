"""NDJSON parsing and validation with the real ingest service's rules.

Rules reproduced (pluto-server ``ingest``):

* lines are processed in order; blank lines are skipped; a final line without ``\\n`` counts;
* a line that does not deserialize into the exact shape (wrong type, negative or fractional
  integer, missing or unknown field) stops the request with **422**
  ``{"code": "STREAM_DECODING_ERROR", ...}``;
* a line that deserializes but fails validation (empty ``data`` after dropping ``null`` values,
  blank metric name, blank ``dataType``/``logName``/``logType``) stops it with **400**
  (``INVALID_METRIC_FORMAT`` / ``INVALID_LOG_FORMAT``);
* either way every line before the bad one has already been accepted and stays stored;
* metric values may be numbers, ``null`` (skipped), bare ``NaN``/``Infinity``/``-Infinity``
  literals or those three words as strings; the response counts stored *rows*
  (one per metric value).

Metrics have a fast path: the whole body is parsed by ``pyarrow.json`` into columns and, only
if every check passes on the columns, turned into numpy arrays per metric name.  Anything
unusual falls back to the exact line-by-line parser, so the fast path never changes results.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

U64_MAX = 2**64 - 1
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_METRIC_KEYS = ("time", "step", "data")
_DATA_KEYS = ("time", "data", "step", "dataType", "logName")
_LOG_KEYS = ("time", "message", "lineNumber", "logType")


class IngestError(Exception):
    """A request-level error, rendered as ``{"code": ..., "message": ...}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


class _LineError(Exception):
    """Raised by a line decoder; carries whether it is a decode (422) or validation (400) error."""

    def __init__(self, message: str, validation_code: str | None = None) -> None:
        super().__init__(message)
        self.validation_code = validation_code


@dataclass
class MetricBatch:
    """Accepted metric rows of one request, columnar per metric name."""

    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    rows: int = 0


# ---------------------------------------------------------------------------------------------
# field checks shared by all line kinds
# ---------------------------------------------------------------------------------------------


def _u64(obj: dict[str, Any], key: str) -> int:
    v = obj[key]
    if type(v) is not int:
        raise _LineError(f"invalid type: {_describe(v)}, expected u64 for field `{key}`")
    if v < 0 or v > U64_MAX:
        raise _LineError(f"invalid value: integer `{v}`, expected u64 for field `{key}`")
    return v


def _string(obj: dict[str, Any], key: str) -> str:
    v = obj[key]
    if not isinstance(v, str):
        raise _LineError(f"invalid type: {_describe(v)}, expected a string for field `{key}`")
    return v


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, str):
        return f"string {json.dumps(v)}"
    if isinstance(v, list):
        return "sequence"
    return "map"


def _shape(obj: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Exact field set: unknown fields are denied and every field is required (serde semantics)."""
    if not isinstance(obj, dict):
        raise _LineError(f"invalid type: {_describe(obj)}, expected a struct")
    for k in obj:
        if k not in keys:
            expected = ", ".join(f"`{x}`" for x in keys)
            raise _LineError(f"unknown field `{k}`, expected one of {expected}")
    for k in keys:
        if k not in obj:
            raise _LineError(f"missing field `{k}`")
    return obj


def _metric_value(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise _LineError(f"invalid type: {_describe(v)}, expected a number for metric `{name}`")
    if isinstance(v, int):
        try:
            return float(v)
        except OverflowError:
            raise _LineError(f"number out of range for metric `{name}`") from None
    if isinstance(v, float):
        return v
    if isinstance(v, str):
        if v in _NONFINITE:
            return _NONFINITE[v]
        raise _LineError(f"unexpected string metric value: '{v}'")
    raise _LineError(f"invalid type: {_describe(v)}, expected a number for metric `{name}`")


def decode_metric_line(obj: Any) -> tuple[int, int, dict[str, float]]:
    """Validate one parsed metrics line; returns ``(time, step, {name: value})``."""
    obj = _shape(obj, _METRIC_KEYS)
    t = _u64(obj, "time")
    s = _u64(obj, "step")
    data = obj["data"]
    if not isinstance(data, dict):
        raise _LineError(f"invalid type: {_describe(data)}, expected a map of metric names to float values")
    out: dict[str, float] = {}
    for name, raw in data.items():
        v = _metric_value(name, raw)
        if v is not None:
            out[name] = v
    if not out:
        raise _LineError("'data' field cannot be empty", "INVALID_METRIC_FORMAT")
    for name in out:
        if not name.strip():
            raise _LineError("metric name cannot be empty", "INVALID_METRIC_FORMAT")
    return t, s, out


def decode_data_line(obj: Any) -> tuple[int, str, int, str, str]:
    """Validate one ``/ingest/data`` line; returns ``(time, data, step, dataType, logName)``."""
    obj = _shape(obj, _DATA_KEYS)
    t = _u64(obj, "time")
    d = _string(obj, "data")
    s = _u64(obj, "step")
    dt = _string(obj, "dataType")
    ln = _string(obj, "logName")
    if not dt.strip():
        raise _LineError("'dataType' field cannot be empty", "INVALID_LOG_FORMAT")
    if not ln.strip():
        raise _LineError("'logName' field cannot be empty", "INVALID_LOG_FORMAT")
    return t, d, s, dt, ln


def decode_log_line(obj: Any) -> tuple[int, str, int, str]:
    """Validate one ``/ingest/logs`` line; returns ``(time, message, lineNumber, logType)``."""
    obj = _shape(obj, _LOG_KEYS)
    t = _u64(obj, "time")
    m = _string(obj, "message")
    n = _u64(obj, "lineNumber")
    lt = _string(obj, "logType")
    if not lt.strip():
        raise _LineError("'logType' field cannot be empty", "INVALID_LOG_FORMAT")
    return t, m, n, lt


def iter_lines(body: bytes) -> list[bytes]:
    """Non-blank lines of an NDJSON body, trimmed like the real stream processor."""
    out = []
    for raw in body.split(b"\n"):
        line = raw.strip(b" \t\r")
        if line:
            out.append(line)
    return out


def parse_lines(body: bytes, decoder: Any) -> tuple[list[Any], IngestError | None]:
    """Decode lines in order; stop at the first bad one and return what came before it."""
    accepted: list[Any] = []
    for line in iter_lines(body):
        try:
            try:
                obj = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _LineError(str(exc)) from None
            accepted.append(decoder(obj))
        except _LineError as exc:
            if exc.validation_code is not None:
                return accepted, IngestError(400, exc.validation_code, str(exc))
            preview = line[:100].decode("utf-8", "replace")
            return accepted, IngestError(
                422, "STREAM_DECODING_ERROR", f"Failed to parse JSON line (bytes): '{preview}': {exc}"
            )
    return accepted, None


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------


def _metrics_from_rows(rows: list[tuple[int, int, dict[str, float]]]) -> MetricBatch:
    per: dict[str, tuple[list[int], list[float], list[int]]] = {}
    n = 0
    for t, s, data in rows:
        for name, v in data.items():
            lists = per.get(name)
            if lists is None:
                lists = per[name] = ([], [], [])
            lists[0].append(s)
            lists[1].append(v)
            lists[2].append(t)
            n += 1
    batch = MetricBatch(rows=n)
    for name, (steps, values, times) in per.items():
        batch.series[name] = (
            np.array(steps, dtype=np.uint64),
            np.array(values, dtype=np.float64),
            np.array(times, dtype=np.uint64),
        )
    return batch


_INT_TYPES = (pa.int64(),)
_NUM_TYPES = (pa.int64(), pa.float64())


def _fast_metrics(body: bytes) -> MetricBatch | None:
    """Columnar parse of a well-formed body; None whenever the exact parser must decide."""
    n_lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    try:
        table = pj.read_json(
            io.BytesIO(body),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(body) + 64),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n_lines or sorted(table.column_names) != ["data", "step", "time"]:
        return None
    tcol = table.column("time")
    scol = table.column("step")
    dcol = table.column("data")
    if tcol.type not in _INT_TYPES or scol.type not in _INT_TYPES or not pa.types.is_struct(dcol.type):
        return None
    if tcol.null_count or scol.null_count or dcol.null_count:
        return None
    if pc.min(tcol).as_py() < 0 or pc.min(scol).as_py() < 0:
        return None
    struct = dcol.combine_chunks() if dcol.num_chunks != 1 else dcol.chunk(0)
    names = [struct.type.field(i).name for i in range(struct.type.num_fields)]
    if any(not n.strip() for n in names):
        return None
    children = struct.flatten()
    n = table.num_rows
    valid_per_row: np.ndarray | None = None
    full: list[tuple[str, np.ndarray]] = []
    partial: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, child in zip(names, children, strict=True):
        if pa.types.is_null(child.type):
            continue
        if child.type not in _NUM_TYPES:
            return None
        values = child.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if child.null_count == 0:
            full.append((name, values))
            continue
        mask = child.is_valid().to_numpy(zero_copy_only=False)
        partial.append((name, values, mask))
        valid_per_row = mask.astype(np.int32) if valid_per_row is None else valid_per_row + mask
    # Without a fully-populated column some row may hold only nulls (or be an empty object),
    # which the exact parser rejects with 400.
    if not full and (valid_per_row is None or not bool(valid_per_row.all())):
        return None
    steps = scol.to_numpy().astype(np.uint64)
    times = tcol.to_numpy().astype(np.uint64)
    batch = MetricBatch()
    rows = 0
    for name, values in full:
        batch.series[name] = (steps, values, times)
        rows += n
    for name, values, mask in partial:
        batch.series[name] = (steps[mask], values[mask], times[mask])
        rows += int(mask.sum())
    batch.rows = rows
    return batch


def parse_metrics(body: bytes, fast: bool = True) -> tuple[MetricBatch, IngestError | None]:
    """Parse a ``/ingest/metrics`` body into accepted rows plus the error that stopped it (if any)."""
    if not body.strip():
        return MetricBatch(), None
    if fast:
        batch = _fast_metrics(body)
        if batch is not None:
            return batch, None
    rows, err = parse_lines(body, decode_metric_line)
    return _metrics_from_rows(rows), err


# ---------------------------------------------------------------------------------------------
# /files presign body (axum Json extractor: 415 / 413 / 400 / 422, plain-text bodies)
# ---------------------------------------------------------------------------------------------

FILES_BODY_LIMIT = 2 * 1024 * 1024


class RejectionError(Exception):
    """An axum extractor rejection: plain-text body with ``status``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def decode_files_body(content_type: str | None, body: bytes) -> list[dict[str, Any]]:
    """Validate a ``POST /files`` body and return its entries (unknown fields are ignored)."""
    if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
        raise RejectionError(415, "Expected request with `Content-Type: application/json`")
    if len(body) > FILES_BODY_LIMIT:
        raise RejectionError(413, "Failed to buffer the request body: length limit exceeded")
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RejectionError(400, f"Failed to parse the request body as JSON: {exc}") from None

    def fail(msg: str) -> RejectionError:
        return RejectionError(422, f"Failed to deserialize the JSON body into the target type: {msg}")

    if not isinstance(obj, dict):
        raise fail(f"invalid type: {_describe(obj)}, expected struct FileUploadRequest")
    if "files" not in obj:
        raise fail("missing field `files`")
    files = obj["files"]
    if not isinstance(files, list):
        raise fail(f"files: invalid type: {_describe(files)}, expected a sequence")
    out = []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise fail(f"files[{i}]: invalid type: {_describe(entry)}, expected struct FileUploadInfo")
        for key in ("fileName", "logName", "fileSize", "fileType", "step", "time"):
            if key not in entry:
                raise fail(f"files[{i}]: missing field `{key}`")
        try:
            _string(entry, "fileName")
            _string(entry, "logName")
            _u64(entry, "fileSize")
            _u64(entry, "step")
            _u64(entry, "time")
        except _LineError as exc:
            raise fail(f"files[{i}]: {exc}") from None
        ft = entry["fileType"]
        if not (isinstance(ft, str) or (isinstance(ft, dict) and isinstance(ft.get("custom"), str))):
            raise fail(f"files[{i}].fileType: invalid type: {_describe(ft)}, expected a string or an object")
        out.append(entry)
    return out
