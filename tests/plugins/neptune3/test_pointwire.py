"""The column-wise string and histogram decoding equals the protobuf runtime's, bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from migrate_neptune3 import pointwire
from migrate_neptune3.series import (
    histogram_batch,
    histogram_columns_runtime,
    string_batch,
    string_columns_runtime,
)
from neptune_query.internal.retrieval.series import ProtoSeriesValuesResponseDTO

T = 1_700_000_000_000


def page():
    return ProtoSeriesValuesResponseDTO().series.add(requestId="0").seriesValues


def same_numbers(a: np.ndarray, b: np.ndarray) -> None:
    assert a.dtype == b.dtype and len(a) == len(b)
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))  # NaN payloads, -0.0


def same_lists(a: pa.Array, b: pa.Array) -> None:
    assert a.type == b.type and len(a) == len(b) and a.null_count == b.null_count == 0
    assert np.array_equal(a.offsets.to_numpy(), b.offsets.to_numpy())
    same_numbers(a.values.to_numpy(), b.values.to_numpy())


def strings_page(rng: np.random.Generator, n: int):
    dto = page()
    texts = ["", "a", "ünïcode ✓ 日本", "x" * 200, "y" * 70_000, "\x00nul", "emoji 🙂" * 30]
    for i in range(n):
        pick = rng.random(3)
        point = dto.values.add()
        if pick[0] > 0.05:
            point.timestamp_millis = int(rng.choice([T + i, 0, -(T + i), 2**62]))
        if pick[1] > 0.05:
            point.step = float(rng.choice([i, 0.5 * i, -0.0, 1e11 + 0.25, float(i) / 3]))
        if pick[0] < 0.9:  # otherwise no object at all: the runtime reads ""
            point.object.stringValue = texts[int(pick[2] * len(texts))] if pick[2] < 0.7 else f"line {i}"
        if pick[1] < 0.02:
            point.is_preview = True
            point.completion_ratio = 0.5
    return dto


@pytest.mark.parametrize("seed", [1, 2])
def test_strings_equal_the_runtime(seed: int) -> None:
    dto = strings_page(np.random.default_rng(seed), 3000)
    fast, slow = pointwire.string_columns(dto), string_columns_runtime(dto.values)
    same_numbers(fast[0], slow[0])
    same_numbers(fast[1], slow[1])
    assert fast[2].type == pa.string() and fast[2].equals(slow[2])


def hist_page(rng: np.random.Generator, n: int):
    dto = page()
    nan_payload = np.array([0x7FF8_0000_0000_0001], np.uint64).view(np.float64)[0]
    for i in range(n):
        pick = rng.random(3)
        point = dto.values.add(timestamp_millis=T + i, step=float(i))
        if pick[0] < 0.05:
            continue  # no object: an empty histogram of type ""
        hist = point.object.histogram
        if pick[1] < 0.05:
            continue  # an empty histogram message
        hist.type = "COUNTING" if pick[1] < 0.6 else ("DENSITY" if pick[1] < 0.9 else "ünï")
        bins = int(rng.integers(0, 40)) if pick[2] < 0.5 else 10
        if bins:
            hist.edges.extend(np.sort(rng.standard_normal(bins + 1)).tolist())
            counts = rng.integers(0, 100, bins).astype(float)
            if pick[2] < 0.1:
                counts[0] = nan_payload
                counts[-1] = -0.0
            hist.values.extend(counts.tolist())
    return dto


@pytest.mark.parametrize("seed", [1, 2])
def test_histograms_equal_the_runtime(seed: int) -> None:
    dto = hist_page(np.random.default_rng(seed), 2000)
    fast, slow = pointwire.histogram_columns(dto), histogram_columns_runtime(dto.values)
    same_numbers(fast[0], slow[0])
    same_numbers(fast[1], slow[1])
    assert fast[2].equals(slow[2])
    same_lists(fast[3], slow[3])
    same_lists(fast[4], slow[4])


@pytest.mark.parametrize("texts", [["a", "b"], ["a", "b", "c", "d"], ["ab", "cd", "ef"]])
def test_equal_length_strings_at_equal_distances(texts: list[str]) -> None:
    # every value the same length at the same distance: read through one strided view, which must still give
    # contiguous bytes (one-byte values once made `reshape` hand back a strided view that Arrow refused)
    dto = page()
    for i, text in enumerate(texts):
        dto.values.add(timestamp_millis=T + i, step=float(i)).object.stringValue = text
    fast, slow = pointwire.string_columns(dto), string_columns_runtime(dto.values)
    same_numbers(fast[0], slow[0])
    assert fast[2].equals(slow[2]) and fast[2].to_pylist() == texts


def test_single_and_default_points() -> None:
    dto = page()
    dto.values.add()  # every field at its default
    for fast, slow in ((pointwire.string_columns(dto), string_columns_runtime(dto.values)),
                       (pointwire.histogram_columns(dto), histogram_columns_runtime(dto.values))):
        same_numbers(fast[0], slow[0])
        same_numbers(fast[1], slow[1])
        assert all(a.equals(b) for a, b in zip(fast[2:], slow[2:], strict=True))


def test_batches_are_the_same_either_way(monkeypatch) -> None:
    rng = np.random.default_rng(3)
    strings, hists = strings_page(rng, 500), hist_page(rng, 500)
    fast = (string_batch("p", "r", "logs", strings), histogram_batch("p", "r", "h", hists))

    def refuse(*_a, **_k):
        raise pointwire.Unexpected()

    monkeypatch.setattr(pointwire, "string_columns", refuse)
    monkeypatch.setattr(pointwire, "histogram_columns", refuse)
    slow = (string_batch("p", "r", "logs", strings), histogram_batch("p", "r", "h", hists))
    for a, b in zip(fast, slow, strict=True):
        assert a.schema == b.schema and a.num_rows == b.num_rows
        for x, y in zip(a.columns, b.columns, strict=True):
            if pa.types.is_struct(x.type) and not x.null_count:
                assert x.field(0).equals(y.field(0))
                same_lists(x.field(1), y.field(1))
                same_lists(x.field(2), y.field(2))
            elif pa.types.is_floating(x.type):
                same_numbers(x.to_numpy(zero_copy_only=False), y.to_numpy(zero_copy_only=False))
            else:
                assert x.equals(y)


def test_unexpected_wire_data_is_left_to_the_runtime() -> None:
    buf = np.frombuffer(b"\x0b\x00" + bytes(16), np.uint8)  # wire type 3 (groups): not ours
    with pytest.raises(pointwire.Unexpected):
        pointwire.walk(buf, np.array([0]), np.array([2]), {1: 0})
    buf = np.frombuffer(b"\x08\x01\x08\x02" + bytes(16), np.uint8)  # a scalar field twice
    with pytest.raises(pointwire.Unexpected):
        pointwire.walk(buf, np.array([0]), np.array([4]), {1: 0})
    buf = np.frombuffer(b"\x0a\x09ab" + bytes(16), np.uint8)  # a string running past its message
    with pytest.raises(pointwire.Unexpected):
        pointwire.walk(buf, np.array([0]), np.array([4]), {1: 2})
