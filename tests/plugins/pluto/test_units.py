"""Small pure pieces: step plans, name encoding, histogram payloads, Retry-After, duplicate counting."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.format import steps_from_units
from migrate_core.testing import MemoryRun
from migrate_pluto import encode, names
from migrate_pluto.steps import StepPlan, StepPlanner
from migrate_pluto.transport import parse_retry_after

from .helpers import load, make_sink, run_of
from .test_mapping import P, neptune_storage, series


@pytest.mark.parametrize(("units", "scale", "offset"), [
    ([0, 1_000_000, 7_000_000], 1, 0),
    ([0, 500_000], 10, 0),
    ([1, 2], 1_000_000, 0),
    ([-3_000_000, 0], 1, -3_000_000),
    ([-1_250_000, 500_000], 100, -1_250_000),
])
def test_step_plan(units, scale, offset):
    planner = StepPlanner()
    planner.add(steps_from_units(np.array(units)))
    plan = planner.plan()
    assert (plan.scale, plan.offset_units) == (scale, offset)
    mapped = plan.to_pluto(np.array(units, dtype=np.int64))
    assert mapped.min() == 0 or offset == 0
    assert len(set(mapped.tolist())) == len(units)


def test_merged_plan_is_at_least_as_fine():
    merged = StepPlan(1_000_000, 0).merged(StepPlan(10_000, -2_000_000))
    assert (merged.scale, merged.offset) == (100, "-2")


def test_name_encoding_is_injective_and_keeps_printable_ascii():
    samples = ["a/b c", "é", "%C3%A9", "%", "a%b", "ü/x", "", "x\ny", "✓", " ", "%20", "  "]
    encoded = [names.encode_name(s) for s in samples]
    assert len(set(encoded)) == len(samples)
    assert all(all(" " <= ch <= "~" for ch in e) for e in encoded)
    assert names.encode_name("a/b c") == "a/b c"
    assert all(e.strip() for e in encoded)  # Pluto refuses blank names


def test_external_ids_are_never_bare_and_stay_bounded():
    assert names.external_id("neptune", "ws/p", "SAN-1") == "neptune:ws/p:SAN-1"
    long = names.external_id("neptune", "ws/p", "x" * 1000)
    assert len(long) <= 255 and long != names.external_id("neptune", "ws/p", "x" * 999)


def test_metric_body_round_trips_every_float():
    values = np.array([0.1, 1 / 3, 1e-310, -0.0, 1.7976931348623157e308, math.nan, math.inf, -math.inf])
    body = encode.metric_body("m", np.arange(values.size, dtype=np.uint64), np.full(values.size, 5),
                              pa.array(values))
    got = [json.loads(line)["data"]["m"] for line in body.decode().splitlines()]
    for a, b in zip(got, values.tolist(), strict=True):
        assert (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))


def test_grouped_body_round_trips_every_float_in_every_position():
    """Series with their commas attached (orjson), a series with non-finite values between them, and the last
    one: every value parses back to the same float64, sign of zero included, in lines Arrow's reader takes."""
    rng = np.random.default_rng(7)
    n = 2000
    finite = [rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n), np.full(n, -0.0),
              np.array([5e-324, 1e-310, 0.1, 1 / 3, 1e16, 1.7976931348623157e308, 1.0, 2.5] * (n // 8))]
    special = np.where(np.arange(n) % 3 == 0, np.nan, np.where(np.arange(n) % 3 == 1, np.inf, -1.5))
    columns = [finite[0], special, finite[1], finite[2], finite[0][::-1].copy()]
    names = [f"m/{i}" for i in range(len(columns))]
    body = encode.grouped_metric_body(names, np.arange(n, dtype=np.uint64), np.full(n, 5),
                                      [pa.array(c) for c in columns])
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert len(lines) == n
    for name, column in zip(names, columns, strict=True):
        got = np.array([line["data"][name] for line in lines])
        same = (np.isnan(got) & np.isnan(column)) | ((got == column) & (np.signbit(got) == np.signbit(column)))
        assert same.all(), name
    assert encode.float_text_with_comma(pa.array(finite[2][:3])).to_pylist() == ["5e-324,", "1e-310,", "0.1,"]
    assert encode.float_text_with_comma(pa.array(special)) is None


def test_histogram_payload_marks_non_uniform_edges():
    payload, uniform = encode.histogram_payload([0.0, 0.5, 1.0], [3.0, 4.0])
    assert uniform and json.loads(payload)["bins"] == {"min": 0, "max": 1, "num": 2}
    payload, uniform = encode.histogram_payload([0.0, 0.1, 1.0], [3.0, 4.0])
    assert not uniform and json.loads(payload)["edges"] == [0, 0.1, 1]


def test_retry_after_seconds_and_http_dates():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= parse_retry_after(when) <= 31


def test_duplicates_in_unsorted_series_are_counted(fake_pluto, tmp_path):
    units = [3_000_000, 2_000_000, 1_000_000, 2_000_000, 5_000_000, 5_000_000]
    storage = neptune_storage(tmp_path, [MemoryRun(P, "R-1", pa.Table.from_batches([
        series("R-1", "m", units, [float(i) for i in range(len(units))])]))])
    report = load(make_sink(fake_pluto, read_batch_rows=3), storage, P, "R-1")
    assert sum(report.losses.values()) == 2
    assert sorted(run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").metric("m")) == [1, 2, 3, 5]
