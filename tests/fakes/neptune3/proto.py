"""Protobuf message classes used by the fake, plus a columnar encoder for float points.

Read-side messages come from the client that is installed: neptune-query >= 1.10 vendors them under
``neptune_query.generated.neptune_api``; older releases (1.7.x) import them from the separate ``neptune-api``
package. The wire format is identical, so whichever copy is importable is used. Write-side messages
(``RunOperation`` & co.) only exist in ``neptune-api``, which ``neptune-scale`` depends on.

Why a hand-rolled encoder: a 10M-point series would otherwise need 10M Python message objects per export.
``encode_float_points`` writes the repeated ``ProtoFloatPointValueDTO`` field straight from numpy arrays;
the envelope around it is still serialized by the shipped message classes, and the test-suite checks that
the result parses back into the shipped classes with identical content.
"""

from __future__ import annotations

import numpy as np

try:  # neptune-query >= 1.10 ships its own copy of the API client
    from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model import (
        attributes_pb2,
        leaderboard_entries_pb2,
        requests_pb2,
        series_values_pb2,
    )
except ImportError:  # pragma: no cover - neptune-query <= 1.9 with the neptune-api package
    from neptune_api.proto.neptune_pb.api.v1.model import (  # type: ignore[no-redef]
        attributes_pb2,
        leaderboard_entries_pb2,
        requests_pb2,
        series_values_pb2,
    )

from neptune_api.proto.google_rpc import code_pb2
from neptune_api.proto.neptune_pb.ingest.v1 import common_pb2
from neptune_api.proto.neptune_pb.ingest.v1.pub import client_pb2, ingest_pb2, request_status_pb2

__all__ = [
    "attributes_pb2",
    "client_pb2",
    "code_pb2",
    "common_pb2",
    "encode_float_points",
    "frame",
    "ingest_pb2",
    "leaderboard_entries_pb2",
    "request_status_pb2",
    "requests_pb2",
    "series_values_pb2",
    "varint",
]


def varint(value: int) -> bytes:
    """Protobuf base-128 varint of a non-negative int (negative int64 uses its two's complement)."""
    value &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def frame(field_number: int, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload. Concatenation of fields is a valid message."""
    return varint((field_number << 3) | 2) + varint(len(payload)) + payload


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """Number of bytes of the varint encoding of each uint64 value."""
    lengths = np.ones(values.shape, dtype=np.int64)
    for k in range(1, 10):
        lengths += values >= np.uint64(1 << (7 * k))
    return lengths


# Field tags of ProtoFloatPointValueDTO: timestamp_millis=1 (varint), step=2 (double), value=3 (double),
# is_preview=4 (varint bool), completion_ratio=5 (float). The repeated field in ProtoFloatSeriesValuesDTO is 2.
_TAG_TS, _TAG_STEP, _TAG_VALUE, _TAG_PREVIEW, _TAG_RATIO = 0x08, 0x11, 0x19, 0x20, 0x2D
_TAG_POINT = 0x12


def encode_float_points(
    timestamps_ms: np.ndarray,
    steps: np.ndarray,
    values: np.ndarray,
    is_preview: np.ndarray | None,
    completion_ratio: np.ndarray | None,
) -> bytes:
    """Encode ``repeated ProtoFloatPointValueDTO values = 2`` for the given columns, vectorised.

    Every field is written explicitly (also zeros): parsers accept that, and it keeps the layout simple.
    Points that are not previews get ``completion_ratio`` 1.0 (the fake's convention for finished points).
    """
    n = int(len(steps))
    if n == 0:
        return b""
    ts = np.ascontiguousarray(timestamps_ms, dtype=np.int64).view(np.uint64)
    ts_len = _varint_lengths(ts)
    if bool(np.all(ts_len == ts_len[0])):
        return _encode_uniform(ts, int(ts_len[0]), steps, values, is_preview, completion_ratio)
    inner_len = 1 + ts_len + 9 + 9 + 2 + 5  # always < 128, so the length prefix is one byte
    record_len = 2 + inner_len
    offsets = np.zeros(n, dtype=np.int64)
    np.cumsum(record_len[:-1], out=offsets[1:])
    out = np.empty(int(offsets[-1] + record_len[-1]), dtype=np.uint8)

    out[offsets] = _TAG_POINT
    out[offsets + 1] = inner_len.astype(np.uint8)
    out[offsets + 2] = _TAG_TS
    pos = offsets + 3
    remaining = ts.copy()
    for k in range(10):
        active = ts_len > k
        if not active.any():
            break
        idx = pos[active] + k
        chunk = (remaining[active] & np.uint64(0x7F)).astype(np.uint8)
        more = ts_len[active] > k + 1
        out[idx] = chunk | (more.astype(np.uint8) << 7)
        remaining[active] >>= np.uint64(7)
    pos = pos + ts_len

    def put_fixed(tag: int, column: np.ndarray, width: int) -> None:
        nonlocal pos
        out[pos] = tag
        raw = np.ascontiguousarray(column).view(np.uint8).reshape(n, width)
        out[(pos + 1)[:, None] + np.arange(width)] = raw
        pos = pos + 1 + width

    put_fixed(_TAG_STEP, np.asarray(steps, dtype="<f8"), 8)
    put_fixed(_TAG_VALUE, np.asarray(values, dtype="<f8"), 8)
    out[pos] = _TAG_PREVIEW
    out[pos + 1] = 0 if is_preview is None else np.asarray(is_preview, dtype=np.uint8)
    pos = pos + 2
    ratio = np.ones(n, dtype="<f4") if completion_ratio is None else np.asarray(completion_ratio, dtype="<f4")
    put_fixed(_TAG_RATIO, ratio, 4)
    return out.tobytes()


def _encode_uniform(
    ts: np.ndarray,
    ts_len: int,
    steps: np.ndarray,
    values: np.ndarray,
    is_preview: np.ndarray | None,
    completion_ratio: np.ndarray | None,
) -> bytes:
    """Fast path of ``encode_float_points`` when every timestamp varint has the same length (the usual case):
    records have a fixed size, so each field is one strided column write into an (n, record) byte matrix."""
    n = len(ts)
    inner = 1 + ts_len + 9 + 9 + 2 + 5
    rec = np.empty((n, 2 + inner), dtype=np.uint8)
    rec[:, 0] = _TAG_POINT
    rec[:, 1] = inner
    rec[:, 2] = _TAG_TS
    remaining = ts.copy()
    for k in range(ts_len):
        chunk = (remaining & np.uint64(0x7F)).astype(np.uint8)
        rec[:, 3 + k] = chunk | 0x80 if k < ts_len - 1 else chunk
        remaining >>= np.uint64(7)
    pos = 3 + ts_len
    rec[:, pos] = _TAG_STEP
    rec[:, pos + 1 : pos + 9] = np.ascontiguousarray(steps, dtype="<f8").view(np.uint8).reshape(n, 8)
    pos += 9
    rec[:, pos] = _TAG_VALUE
    rec[:, pos + 1 : pos + 9] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    pos += 9
    rec[:, pos] = _TAG_PREVIEW
    rec[:, pos + 1] = 0 if is_preview is None else np.asarray(is_preview, dtype=np.uint8)
    pos += 2
    rec[:, pos] = _TAG_RATIO
    ratio = (
        np.ones(n, dtype="<f4")
        if completion_ratio is None
        else np.ascontiguousarray(completion_ratio, dtype="<f4")
    )
    rec[:, pos + 1 : pos + 5] = ratio.view(np.uint8).reshape(n, 4)
    return rec.tobytes()
