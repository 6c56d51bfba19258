"""The vectorised float-point decoder equals the protobuf runtime on every layout it can meet."""

from __future__ import annotations

import numpy as np
import pytest
from migrate_neptune3.floatwire import decode_dto, decode_slow
from neptune_query.internal.retrieval.metrics import ProtoFloatSeriesValuesResponseDTO


def series(points) -> object:
    answer = ProtoFloatSeriesValuesResponseDTO()
    dto = answer.series.add(requestId="0").series
    dto.total_item_count = len(points)
    for ts, step, value, preview, ratio in points:
        dto.values.add(timestamp_millis=ts, step=step, value=value, is_preview=preview, completion_ratio=ratio)
    return dto


def same(dto) -> None:
    fast, slow = decode_dto(dto), decode_slow(dto.values)
    for a, b in zip(fast, slow, strict=True):
        assert a.dtype == b.dtype and len(a) == len(b)
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8))  # bit for bit (NaN payloads, -0.0)


T = 1_700_000_000_000


def test_regular_points() -> None:
    same(series([(T + i, i * 0.1, np.sin(i), False, 1.0) for i in range(5000)]))


def test_empty_and_single() -> None:
    same(series([]))
    same(series([(T, 3.5, 2.0, False, 1.0)]))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_irregular_layouts(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = []
    for i in range(3000):
        pick = rng.random(6)
        ts = 0 if pick[0] < 0.02 else (-(T + i) if pick[0] < 0.04 else int(rng.integers(0, 2**50)) if pick[0] < 0.1
                                        else T + i)
        step = 0.0 if pick[1] < 0.05 else float(i)
        value = [0.0, -0.0, float("nan"), float("inf"), -float("inf"), 1e-310][int(pick[2] * 6)] \
            if pick[2] < 0.3 else float(rng.standard_normal())
        preview = bool(pick[3] < 0.1)
        ratio = 0.0 if pick[4] < 0.05 else float(np.float32(rng.random()))
        points.append((ts, step, value, preview, ratio))
    same(series(points))


def test_long_regular_runs_with_rare_changes() -> None:
    points = [(T + i, float(i), 0.0 if i % 997 == 0 else 1.5, i % 1500 == 7, 0.5 if i % 1500 == 7 else 1.0)
              for i in range(20_000)]
    same(series(points))


def test_raw_answer_with_several_series_equals_the_runtime_parse() -> None:
    from migrate_neptune3.floatwire import decode_response

    answer = ProtoFloatSeriesValuesResponseDTO()
    for request_id, n in (("0", 3), ("1", 0), ("2", 70_000)):
        item = answer.series.add(requestId=request_id)
        item.series.total_item_count = n
        for i in range(n):
            item.series.values.add(timestamp_millis=T + i, step=i / 4, value=1.0 / (i + 1), completion_ratio=1.0)
    got = decode_response(answer.SerializeToString(), ProtoFloatSeriesValuesResponseDTO)
    assert [request_id for request_id, _ in got] == ["0", "1", "2"]
    for (_, cols), item in zip(got, answer.series, strict=True):
        for a, b in zip(cols, decode_slow(item.series.values), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    with pytest.raises(ValueError, match="unreadable series/float answer"):
        decode_response(b"\x0a\x05\x0a\x01", ProtoFloatSeriesValuesResponseDTO)  # truncated


def test_records_shorter_than_a_word() -> None:
    # all-default points are empty records (2 bytes); a 1-byte timestamp alone makes 4: both under 8 bytes
    same(series([(0, 0.0, 0.0, False, 0.0)] * 300))
    same(series([(5, 0.0, 0.0, False, 0.0)] * 300 + [(T, 1.0, 2.0, False, 1.0)] * 300))
    same(series([(i % 100, 0.0, 0.0, False, 0.0) for i in range(1000)]))
