"""String and histogram series points (repeated ProtoPointValueDTO) -> Arrow, without a per-point Python loop.

The protobuf runtime costs ~1 us per field read per point. Instead:

1. the page's `seriesValues` (ProtoSeriesValuesDTO) is serialised (C speed) and re-parsed as a message whose
   field 1 is `repeated bytes`: the runtime cuts the records apart in C and we get each point's bytes, their
   lengths (`map(len, ...)`, no bytecode per point) and their offsets in the joined buffer;
2. every record then carries a cursor, and the fields are walked for all records at once with numpy: each
   round reads one field of every record still unfinished (a tag byte, then a varint, 8 or 4 bytes, or a
   length-delimited range). Rounds are bounded by the number of fields of a message (6), not by points;
3. nested messages (the point's `object`, its `histogram`) are walked the same way over their ranges, and
   strings and packed doubles are gathered into Arrow buffers with offsets.

ProtoPointValueDTO: timestamp_millis = 1 (varint), step = 2 (double), value = 3 (string, deprecated),
is_preview = 4 (varint), completion_ratio = 5 (float), object = 6 (message). ProtoSeriesPointValueObjectDTO:
stringValue = 1, histogram = 2, fileRef = 3. ProtoHistogram: type = 1 (string), edges = 2, values = 3 (packed
doubles). Missing fields read as their defaults, as through the runtime. Anything unexpected (an unknown wire
type, a repeated scalar, unpacked doubles) raises `Unexpected`, and the caller uses the runtime instead.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa


class Unexpected(Exception):
    pass


@cache
def _records_type() -> Any:
    """A message type `{ repeated bytes items = 1; }`: parses any message's field 1 into raw record bytes."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="migrate_neptune3_records.proto", package="migrate_neptune3",
                                               syntax="proto3")
    message = proto.message_type.add(name="Records")
    message.field.add(name="items", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("migrate_neptune3.Records")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # pragma: no cover - old protobuf


class Records:
    """The points of one series page: one joined buffer, and each point's [start, end) in it."""

    def __init__(self, series_values: Any) -> None:
        items = list(_records_type().FromString(series_values.SerializeToString()).items)  # bytes made once
        self.n = len(items)
        lengths = np.fromiter(map(len, items), np.int64, self.n)
        self.ends = np.cumsum(lengths)
        self.starts = self.ends - lengths
        # 16 zero bytes of padding: a varint or double read near the end never indexes past the buffer
        self.buf = np.frombuffer(b"".join(items) + bytes(16), dtype=np.uint8)
        self.size = int(self.ends[-1]) if self.n else 0


# field number -> (wire type, (record index, value offset, value length or varint value))
Fields = dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]


def walk(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, expected: dict[int, int]) -> Fields:
    """Every field of the messages at buf[starts[i]:ends[i]], all messages at once.

    `expected` maps field number -> wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). For
    each field present: the indexes of the messages holding it, the offset of its value (after the tag and,
    for length-delimited fields, the length) and its length (or, for varints, its decoded value).
    """
    found: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    index = np.arange(len(starts), dtype=np.int64)
    pos = starts.astype(np.int64, copy=True)
    end = ends
    rounds = 0
    while True:
        live = pos < end
        if not live.all():
            index, pos, end = index[live], pos[live], end[live]
        if not len(index):
            break
        rounds += 1
        if rounds > 2 * len(expected) + 2:
            raise Unexpected()  # a field occurs more than once: leave it to the runtime
        tags = buf[pos].astype(np.int64)
        if (tags >= 0x80).any():
            raise Unexpected()  # multi-byte tags: field numbers above 15 are not part of these messages
        at = pos + 1
        for tag in np.flatnonzero(np.bincount(tags, minlength=0x80)).tolist():
            field, wire = tag >> 3, tag & 7
            if expected.get(field) != wire:
                raise Unexpected()
            single = tags[0] == tags[-1] and tag == tags[0] and (tags == tag).all()
            pick = slice(None) if single else tags == tag
            i, p = index[pick], at[pick]
            if wire == 0:
                value, width = _varints(buf, p)
                found.setdefault(field, []).append((i, p, value))
                nxt = p + width
            elif wire == 1 or wire == 5:
                width = 8 if wire == 1 else 4
                found.setdefault(field, []).append((i, p, np.full(len(p), width, np.int64)))
                nxt = p + width
            else:
                length, width = _varints(buf, p)
                length = length.astype(np.int64)
                found.setdefault(field, []).append((i, p + width, length))
                nxt = p + width + length
            pos[pick] = nxt
        if (pos > end).any():
            raise Unexpected()  # a field runs past its message: corrupt
    out: Fields = {}
    for field, parts in found.items():
        i, p, v = (np.concatenate(c) for c in zip(*parts, strict=True)) if len(parts) > 1 else parts[0]
        if len(parts) > 1 and np.bincount(i).max() > 1:
            raise Unexpected()
        out[field] = (i, p, v)
    return out


def _varints(buf: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(value as uint64, width in bytes) of the varints starting at each of `pos`: one round per byte."""
    n = len(pos)
    if not n:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    first = int(pos[0])
    w = 1
    while w < 10 and buf[first + w - 1] >= 0x80:
        w += 1
    window = buf[pos[:, None] + np.arange(w)]  # the buffer is padded: never out of range near the end
    cont = window >= 0x80
    if cont[:, : w - 1].all() and not cont[:, w - 1].any():  # all as wide as the first: one pass
        parts = (window & 0x7F).astype(np.uint64) << (np.arange(w, dtype=np.uint64) * np.uint64(7))
        return np.bitwise_or.reduce(parts, axis=1), np.full(n, w, np.int64)
    value = np.zeros(n, np.uint64)
    width = np.zeros(n, np.int64)
    idx: np.ndarray | slice = slice(None)  # all of them, until some varint ends before the others
    at = pos
    for j in range(10):
        byte = buf[at + j]  # the buffer is padded: never out of range near the end
        value[idx] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        more = byte >= 0x80
        if not more.any():
            width[idx] = j + 1
            return value, width
        if more.all():
            continue
        if isinstance(idx, slice):
            idx = np.arange(n)
        width[idx[~more]] = j + 1
        idx, at = idx[more], at[more]
    raise Unexpected()  # longer than 10 bytes: not a varint


def _column_f64(buf: np.ndarray, n: int, field: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> np.ndarray:
    out = np.zeros(n, np.float64)
    if field is not None:
        i, p, _ = field
        out[i] = buf[p[:, None] + np.arange(8)].copy().view("<f8")[:, 0]
    return out


def _column_i64(n: int, field: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> np.ndarray:
    out = np.zeros(n, np.int64)
    if field is not None:
        i, _, value = field
        out[i] = value.view(np.int64)
    return out


def _gather(buf: np.ndarray, n: int, field: tuple[np.ndarray, np.ndarray, np.ndarray] | None
            ) -> tuple[np.ndarray, np.ndarray]:
    """(int64 offsets of n+1, joined bytes) of a length-delimited field per message; absent -> empty."""
    lengths = np.zeros(n, np.int64)
    starts = np.zeros(n, np.int64)
    if field is not None:
        i, p, length = field
        lengths[i] = length
        starts[i] = p
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    total = int(offsets[-1])
    if not total:
        return offsets, np.zeros(0, np.uint8)
    if field is not None and len(field[0]) == n and n > 1:
        size, stride = int(lengths[0]), int(starts[1] - starts[0])
        if stride >= size and (lengths == size).all() and (np.diff(starts) == stride).all():
            # equal ranges at equal distances (e.g. histograms of one shape): a strided view, one copy
            view = np.lib.stride_tricks.as_strided(buf[int(starts[0]):], shape=(n, size), strides=(stride, 1))
            # (a copy; with one-byte ranges reshape alone would return a strided view, not contiguous bytes)
            return offsets, np.ascontiguousarray(view.reshape(-1))
    # the ranges lie in message order without overlapping: a mask of the buffer made of runs
    # (gap, range, gap, range, ..., rest), and the masked bytes taken in one pass
    some = lengths > 0
    begin, size = starts[some], lengths[some]
    runs = np.empty(2 * len(begin) + 1, np.int64)
    runs[1:-1:2] = size
    runs[0:-1:2] = begin - np.concatenate(([0], (begin + size)[:-1]))
    runs[-1] = len(buf) - int(begin[-1] + size[-1])
    if (runs < 0).any():
        raise Unexpected()
    pattern = np.zeros(len(runs), np.bool_)
    pattern[1::2] = True
    return offsets, buf[np.repeat(pattern, runs)]


def _strings(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    n = len(offsets) - 1
    if offsets[-1] >= 2**31:
        raise Unexpected()  # a page of more than 2 GB of text: not for the 32-bit offsets of pa.string()
    array = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data))
    array.validate(full=True)  # UTF-8, as the runtime checked on its parse
    return array


def _doubles(offsets: np.ndarray, data: np.ndarray) -> pa.Array:
    if (offsets % 8).any():
        raise Unexpected()
    values = pa.array(data.view("<f8") if len(data) else np.zeros(0, np.float64), pa.float64())
    return pa.ListArray.from_arrays(pa.array((offsets // 8).astype(np.int32), pa.int32()), values)


_POINT = {1: 0, 2: 1, 3: 2, 4: 0, 5: 5, 6: 2}
_OBJECT = {1: 2, 2: 2, 3: 2}
_HISTOGRAM = {1: 2, 2: 2, 3: 2}


def _points(series_values: Any) -> tuple[Records, Fields, Fields]:
    rec = Records(series_values)
    point = walk(rec.buf, rec.starts, rec.ends, _POINT)
    if 6 in point:
        i, p, length = point[6]
        obj = walk(rec.buf, p, p + length, _OBJECT)
        obj = {f: (i[j], q, v) for f, (j, q, v) in obj.items()}  # back to point indexes
    else:
        obj = {}
    return rec, point, obj


def steps_stamps(rec: Records, point: Fields) -> tuple[np.ndarray, np.ndarray]:
    return _column_f64(rec.buf, rec.n, point.get(2)), _column_i64(rec.n, point.get(1))


def string_columns(series_values: Any) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(steps, timestamps, string values) of a string series page."""
    rec, point, obj = _points(series_values)
    steps, stamps = steps_stamps(rec, point)
    return steps, stamps, _strings(*_gather(rec.buf, rec.n, obj.get(1)))


def histogram_columns(series_values: Any) -> tuple[np.ndarray, np.ndarray, pa.Array, pa.Array, pa.Array]:
    """(steps, timestamps, types, edges lists, values lists) of a histogram series page."""
    rec, point, obj = _points(series_values)
    steps, stamps = steps_stamps(rec, point)
    hist: Fields = {}
    if 2 in obj:
        i, p, length = obj[2]
        hist = {f: (i[j], q, v) for f, (j, q, v) in walk(rec.buf, p, p + length, _HISTOGRAM).items()}
    kinds = _strings(*_gather(rec.buf, rec.n, hist.get(1)))
    edges = _doubles(*_gather(rec.buf, rec.n, hist.get(2)))
    counts = _doubles(*_gather(rec.buf, rec.n, hist.get(3)))
    return steps, stamps, kinds, edges, counts
