"""NDJSON bodies for Pluto's ingest endpoints, built from Arrow arrays.

Metric lines are assembled entirely in Arrow compute (number formatting is shortest round-trip, so
every float64 survives exactly; NaN and +-Inf become the bare literals the ingest server accepts).
String and histogram payloads need JSON escaping per value, which runs per row but off the metric path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

# Constants as typed Arrow scalars: a plain Python value handed to a compute function is converted on
# every call, and that conversion tries `import dateutil.relativedelta` each time; where python-dateutil
# is not installed (a venv without pluto-ml) the failed import walks sys.path under the import lock,
# 8 times per metrics body, in every loading thread at once.
_NAN_TEXT = pa.scalar("NaN", pa.string())
_INF_TEXT = pa.scalar("Infinity", pa.string())
_NEG_INF_TEXT = pa.scalar("-Infinity", pa.string())
_MINUS_ZERO = pa.scalar("-0", pa.string())
_MINUS_ZERO_FLOAT = pa.scalar("-0.0", pa.string())
_INF = pa.scalar(math.inf, pa.float64())
_NEG_INF = pa.scalar(-math.inf, pa.float64())
_ZERO = pa.scalar(0.0, pa.float64())
_HEAD = pa.scalar('{"time":', pa.string())
_STEP = pa.scalar(',"step":', pa.string())
_TAIL = pa.scalar("}}\n", pa.string())
_NO_SEPARATOR = pa.scalar("", pa.string())


def _text(values: np.ndarray) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def float_text(values: pa.Array) -> pa.Array:
    """float64 -> JSON number text: shortest round-trip digits, NaN/Infinity/-Infinity literals."""
    text = pc.cast(values, pa.string())
    if pc.any(pc.invert(pc.is_finite(values))).as_py():
        text = pc.if_else(pc.is_nan(values), _NAN_TEXT, text)
        text = pc.if_else(pc.equal(values, _INF), _INF_TEXT, text)
        text = pc.if_else(pc.equal(values, _NEG_INF), _NEG_INF_TEXT, text)
    if pc.any(pc.equal(values, _ZERO)).as_py():
        text = pc.if_else(pc.equal(text, _MINUS_ZERO), _MINUS_ZERO_FLOAT, text)  # "-0" would parse as integer 0
    return text


def metric_body(name: str, steps: np.ndarray, times: np.ndarray, values: pa.Array) -> bytes:
    """One line per point: `{"time":T,"step":S,"data":{"<name>":V}}`, the whole body as bytes."""
    if len(steps) == 0:
        return b""
    mid = pa.scalar(',"data":{' + json.dumps(name, ensure_ascii=False) + ":", pa.string())
    lines = pc.binary_join_element_wise(
        _HEAD, _text(times), _STEP, _text(steps), mid, float_text(values), _TAIL, _NO_SEPARATOR
    )
    return _joined(lines)


def float_text_with_comma(values: pa.Array) -> pa.Array | None:
    """float64 -> `V,` per value (JSON number text and the comma that follows it), or None when a value is
    null or not finite (JSON has no literal for those; `float_text` writes the ones the ingest accepts).

    orjson writes the whole array as `[a,b,c]` with shortest round-trip digits; turning the closing bracket
    into a comma leaves `[a,b,c,`, whose commas are the ends of the values: the Arrow string array is built
    on that buffer, from offset 1, without copying a value."""
    if values.null_count or not pa.types.is_float64(values.type) or len(values) == 0:
        return None
    numbers = values.to_numpy(zero_copy_only=False)
    if not np.isfinite(numbers).all():
        return None
    text = bytearray(orjson.dumps(numbers, option=orjson.OPT_SERIALIZE_NUMPY))
    text[-1] = 0x2C  # the values start after the "[" (offset 1): no byte is moved
    ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 0x2C)
    if ends.size != len(numbers) or text[0] != 0x5B:  # a format orjson does not write: never guess
        return None
    offsets = np.empty(len(numbers) + 1, dtype=np.int32)
    offsets[0] = 1
    offsets[1:] = ends + 1
    return pa.StringArray.from_buffers(len(numbers), pa.py_buffer(offsets), pa.py_buffer(text))


def grouped_metric_body(names: Sequence[str], steps: np.ndarray, times: np.ndarray,
                        values: Sequence[pa.Array]) -> bytes:
    """One line per step for several series logged at the same steps and times:
    `{"time":T,"step":S,"data":{"a":Va,"b":Vb,...}}` (what one `log()` call with several keys sends).
    Pluto stores the same points as from one line per point, and parses a fraction of the text.

    Every series but the last is written with its comma attached (`float_text_with_comma`); a series with a
    non-finite value, and the last one, as `float_text` with the comma put before the next key."""
    if len(steps) == 0:
        return b""
    if len(names) == 1:
        return metric_body(names[0], steps, times, values[0])
    parts: list[Any] = [_HEAD, _text(times), _STEP, _text(steps)]
    comma = False  # does the next key need a comma before it (the previous value came without one)?
    for i, (name, column) in enumerate(zip(names, values, strict=True)):
        key = ('"data":{' if i == 0 else "") + json.dumps(name, ensure_ascii=False) + ":"
        key = ("," if comma or i == 0 else "") + key
        text = float_text_with_comma(column) if i < len(names) - 1 else None
        parts += [pa.scalar(key, pa.string()), text if text is not None else float_text(column)]
        comma = text is None
    parts += [_TAIL, _NO_SEPARATOR]
    return _joined(pc.binary_join_element_wise(*parts))


def _joined(lines: pa.Array) -> bytes:
    if isinstance(lines, pa.ChunkedArray):
        return b"".join(_joined(chunk) for chunk in lines.chunks)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    return lines.buffers()[2].slice(start, end - start).to_pybytes()


def data_lines(name: str, data_type: str, steps: Sequence[int], times: Sequence[int],
               payloads: Sequence[str]) -> list[bytes]:
    """`/ingest/data` lines; `payloads` are the `data` strings (raw text, or JSON for histograms)."""
    tail = "," + '"dataType":' + json.dumps(data_type) + ',"logName":' + json.dumps(name, ensure_ascii=False) + "}\n"
    return [
        f'{{"time":{t},"step":{s},"data":{json.dumps(p, ensure_ascii=False)}{tail}'.encode()
        for s, t, p in zip(steps, times, payloads, strict=True)
    ]


def log_lines(log_type: str, numbers: Sequence[int], times: Sequence[int], messages: Sequence[str]) -> list[bytes]:
    tail = ',"logType":' + json.dumps(log_type) + "}\n"
    return [
        f'{{"time":{t},"message":{json.dumps(m, ensure_ascii=False)},"lineNumber":{n}{tail}'.encode()
        for n, t, m in zip(numbers, times, messages, strict=True)
    ]


def histogram_payload(edges: Sequence[float], counts: Sequence[float]) -> tuple[str, bool]:
    """Pluto's histogram JSON and whether the edges were uniform.

    Uniform edges are exactly `bins.min/max/num`. Non-uniform ones cannot be drawn by Pluto; the
    payload then still carries them, verbatim, in `edges` (the UI draws uniform bins: approximated).
    """
    freq = [_num(c) for c in counts]
    n = len(freq)
    lo = _num(edges[0]) if len(edges) else 0.0
    hi = _num(edges[-1]) if len(edges) else 0.0
    uniform = len(edges) == n + 1 and _uniform(edges)
    payload: dict[str, object] = {
        "freq": freq,
        "maxFreq": max((c for c in freq if isinstance(c, int | float)), default=0),
        "bins": {"min": lo, "max": hi, "num": n},
        "shape": "uniform",
        "type": "Histogram",
        "v": 1,
    }
    if not uniform:
        payload["edges"] = [_num(e) for e in edges]
    return json.dumps(payload, separators=(",", ":"), allow_nan=False), uniform


def _uniform(edges: Sequence[float]) -> bool:
    arr = np.asarray(edges, dtype=np.float64)
    if arr.size < 2 or not np.all(np.isfinite(arr)):
        return arr.size < 2
    expected = np.linspace(arr[0], arr[-1], arr.size)
    return bool(np.array_equal(arr, expected))


def _num(value: float | None) -> float | int | str | None:
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value
