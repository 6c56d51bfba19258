"""Exact loss counts of the Pluto loader: each value it cannot carry as it was is counted once, by name.

Each test loads a run with several affected points and asserts the exact count, so a count that is
dropped, or fixed at one, fails here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
from migrate_core.format import TIMESTAMP_TYPE, make_batch, steps_from_units, timestamps_ms
from migrate_core.testing import MemoryRun, MemorySource, MemoryStorage, export_into

from .helpers import load, make_sink, run_of

P = "ws/proj"
T0 = 1_700_000_000_000
CREATED = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
CREATED_MS = int(CREATED.timestamp() * 1000)
UNTIMED = "series points without a timestamp (sent with the run's creation time)"
UNTIMED_NO_CREATION = "series points without a timestamp (sent as 1970-01-01: the run has no creation time)"
EARLY = "points timed before 1970 (Pluto times are unsigned: sent as 1970-01-01)"


class NeptuneSource(MemorySource):
    name = "neptune2"


def _loaded(srv, tmp_path, *batches: pa.RecordBatch, files=()):
    storage = MemoryStorage(tmp_path / "state")
    export_into(storage, NeptuneSource([MemoryRun(P, "R-1", pa.Table.from_batches(list(batches)), files=list(files))]))
    report = load(make_sink(srv), storage, P, "R-1")
    return run_of(srv, "ws-proj", f"neptune:{P}:R-1"), report


def _times(values: list[int | None]) -> pa.Array:
    return pa.array(values, type=pa.int64()).cast(TIMESTAMP_TYPE)


def _created() -> pa.RecordBatch:
    return make_batch(P, "R-1", "sys/creation_time", "datetime", 1, datetime_value=pa.array([CREATED], TIMESTAMP_TYPE))


def _floats(path: str, units: list[int | None], values: list[float | None], times: list[int | None]):
    n = len(units)
    steps = steps_from_units(np.array([u or 0 for u in units]))
    steps = pa.array([None if u is None else s for u, s in zip(units, steps.to_pylist(), strict=True)], steps.type)
    return make_batch(P, "R-1", path, "float_series", n, step=steps, timestamp=_times(times),
                      float_value=pa.array(values, type=pa.float64()))


def _strings(path: str, values: list[str], times: list[int | None]):
    n = len(values)
    return make_batch(P, "R-1", path, "string_series", n, step=steps_from_units(np.arange(n) * 1_000_000),
                      timestamp=_times(times), string_value=pa.array(values, type=pa.string()))


def test_points_without_a_timestamp_get_the_creation_time_and_are_counted(fake_pluto, tmp_path):
    run, report = _loaded(
        fake_pluto, tmp_path, _created(),
        _floats("m", [0, 1_000_000, 2_000_000, 3_000_000], [1.0, 2.0, 3.0, 4.0], [T0, None, None, T0 + 3]),
        _strings("notes", ["a", "b", "c"], [None, T0 + 1, None]),
        _strings("monitoring/abc/stdout", ["line 1", "line 2"], [None, T0 + 5]),
        files=[("weights", "w.bin", b"\x00" * 10)],  # a plain file has no time of its own: not counted
    )
    assert run.metric("m") == {0: (1.0, T0), 1: (2.0, CREATED_MS), 2: (3.0, CREATED_MS), 3: (4.0, T0 + 3)}
    assert sorted((d.step, d.time) for d in run.data) == [(0, CREATED_MS), (1, T0 + 1), (2, CREATED_MS)]
    assert sorted((x.line_number, x.time) for x in run.logs) == [(0, CREATED_MS), (1, T0 + 5)]
    assert len(run.files) == 1
    assert report.losses == {UNTIMED: 2 + 2 + 1}


def test_points_without_a_timestamp_in_a_run_without_a_creation_time_say_so(fake_pluto, tmp_path):
    run, report = _loaded(fake_pluto, tmp_path, _floats("m", [0, 1_000_000, 2_000_000], [1.0, 2.0, 3.0],
                                                        [None, T0, None]))
    assert run.metric("m") == {0: (1.0, 0), 1: (2.0, T0), 2: (3.0, 0)}
    assert report.losses == {UNTIMED_NO_CREATION: 2}


def test_float_points_without_a_value_or_step_are_counted_exactly(fake_pluto, tmp_path):
    run, report = _loaded(
        fake_pluto, tmp_path,
        _floats("m", [0, 1_000_000, 2_000_000, 3_000_000, None, 5_000_000],
                [1.0, None, None, 4.0, 5.0, None], [T0 + i for i in range(6)]),
    )
    assert run.metric("m") == {0: (1.0, T0), 3: (4.0, T0 + 3)}
    assert report.losses == {"float_series points without a value": 3, "float_series points without a step": 1}


def test_every_point_timed_before_1970_is_counted(fake_pluto, tmp_path):
    run, report = _loaded(
        fake_pluto, tmp_path,
        _floats("m", [0, 1_000_000, 2_000_000, 3_000_000, 4_000_000], [1.0, 2.0, 3.0, 4.0, 5.0],
                [-86_400_000, -1, T0, -5, 7]),
        _strings("notes", ["a", "b"], [-1_000, T0]),
    )
    assert run.metric("m") == {0: (1.0, 0), 1: (2.0, 0), 2: (3.0, T0), 3: (4.0, 0), 4: (5.0, 7)}
    assert sorted((d.step, d.time) for d in run.data) == [(0, 0), (1, T0)]
    assert report.losses == {EARLY: 4}


def test_plain_timestamps_stay_loss_free(fake_pluto, tmp_path):
    _run, report = _loaded(fake_pluto, tmp_path, _created(),
                           make_batch(P, "R-1", "m", "float_series", 2, step=steps_from_units(np.array([0, 1_000_000])),
                                      timestamp=timestamps_ms([T0, T0 + 1]), float_value=pa.array([1.0, 2.0])))
    assert not report.losses


def test_parameter_rows_repeating_a_path_are_counted(fake_pluto, tmp_path):
    rows = make_batch(P, "R-1", pa.array(["p/lr", "p/lr", "p/lr", "p/other"]), "float", 4,
                      float_value=pa.array([0.1, 0.2, 0.3, 1.0]))
    run, report = _loaded(fake_pluto, tmp_path, rows)
    assert run.config["p"] == {"lr": 0.3, "other": 1.0}
    assert report.losses == {"parameter rows repeating a path (the config keeps the last)": 2}
