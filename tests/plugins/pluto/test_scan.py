"""The loader's first pass: taken from the manifest's per-attribute summary when it can stand in for the rows,
and then equal to the pass over the rows; a summary that disagrees with the rows is counted, never silent."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.api import RunReader
from migrate_core.format import make_batch, steps_from_units, timestamps_ms
from migrate_core.manifest import AttributeStats, step_decimals
from migrate_pluto.scan import SCAN_COLUMNS, _scan, from_manifest, scan

from .helpers import load, make_sink
from .test_mapping import T0, P, one_run, params, series, strings


def _mixed(run_id: str, n: int) -> pa.RecordBatch:
    """Two series interleaved in one batch of more than SMALL_TABLE_ROWS rows (the manifest's group-by path),
    one of them on quarter steps."""
    paths = pa.array(["mixed/a", "mixed/b"] * n)
    units = np.repeat(np.arange(n, dtype=np.int64), 2) * 1_000_000
    units[1::2] += 250_000
    return make_batch(P, run_id, paths, "float_series", 2 * n, step=steps_from_units(units),
                      timestamp=timestamps_ms(T0 + np.arange(2 * n)),
                      float_value=pa.array(np.arange(2 * n, dtype=np.float64)))


def _stored(tmp_path, run_id="RUN-1"):
    storage = one_run(
        tmp_path, run_id,
        params(run_id, [("cfg/lr", "float", "float_value", 0.1), ("cfg/n", "int", "int_value", 7),
                        ("cfg/name", "string", "string_value", "x"), ("cfg/on", "bool", "bool_value", True)]),
        series(run_id, "m/loss", [-2_000_000, 1_500_000, 3_000_000], [1.0, 2.0, 3.0]),
        series(run_id, "m/acc", [0, 1_000_000], [0.5, 0.6]),
        strings(run_id, "notes", ["a", "b"]),
        _mixed(run_id, 200),
    )
    return storage, storage.get_run(P, run_id)


def test_step_decimals_per_row():
    units = np.array([0, 1_000_000, 1_500_000, 250_000, -2_000_001, 10_000_000], dtype=np.int64)
    assert step_decimals(steps_from_units(units)).tolist() == [0, 0, 1, 2, 6, 0]
    assert step_decimals(steps_from_units(np.array([], dtype=np.int64))).tolist() == []


def test_manifest_records_the_decimals_of_every_attribute(tmp_path):
    _storage, run = _stored(tmp_path)
    attributes = run.manifest["attributes"]
    assert attributes["m/loss"]["step_decimals"] == 1
    assert attributes["m/acc"]["step_decimals"] == 0
    assert attributes["mixed/a"]["step_decimals"] == 0
    assert attributes["mixed/b"]["step_decimals"] == 2  # from the grouped path
    assert attributes["cfg/lr"]["step_decimals"] == 0


def test_small_and_grouped_paths_agree():
    """The Python path for a few rows and Arrow's group-by give the same decimals."""
    batch = _mixed("R", 200)
    small, large = AttributeStats(), AttributeStats()
    for i in range(0, batch.num_rows, 100):  # 100-row tables: the small path
        small.update(pa.Table.from_batches([batch.slice(i, 100)]))
    large.update(pa.Table.from_batches([batch]))
    assert {p: e["step_decimals"] for p, e in small.attributes.items()} == \
        {p: e["step_decimals"] for p, e in large.attributes.items()} == {"mixed/a": 0, "mixed/b": 2}


def test_manifest_scan_equals_the_scan_of_the_rows(tmp_path):
    storage, run = _stored(tmp_path)
    reader = RunReader(storage, run)
    quick, rows = from_manifest(reader, 1000), _scan(reader, 1000, SCAN_COLUMNS)
    assert quick is not None
    assert quick.planner.plan() == rows.planner.plan()
    assert quick.planner.plan().divisor == 10_000 and quick.planner.plan().offset_units == -2_000_000
    assert quick.attributes == rows.attributes
    assert (quick.rows, quick.unknown_types, quick.absent) == (rows.rows, rows.unknown_types, rows.absent)
    assert "step" not in quick.params.column_names  # a parameter has no step: that column is not read
    assert quick.params.sort_by("attribute_path").to_pylist() == \
        rows.params.drop_columns(["step"]).sort_by("attribute_path").to_pylist()


def test_a_metrics_only_run_reads_no_rows(tmp_path, monkeypatch):
    storage = one_run(tmp_path, "RUN-2", series("RUN-2", "m/loss", [0, 500_000], [1.0, 2.0]))
    reader = RunReader(storage, storage.get_run(P, "RUN-2"))
    monkeypatch.setattr(reader, "batches", lambda *a, **k: pytest.fail("read rows"))
    info = from_manifest(reader, 1000)
    assert info is not None and info.planner.plan().divisor == 100_000 and info.params is None


@pytest.mark.parametrize("edit", ["no_decimals", "other_types", "rows_disagree"])
def test_manifests_that_cannot_stand_in_fall_back_to_the_rows(tmp_path, edit):
    storage, run = _stored(tmp_path)
    manifest = copy.deepcopy(run.manifest)
    entry = manifest["attributes"]["m/loss"]
    if edit == "no_decimals":  # written before manifests recorded step decimals
        for e in manifest["attributes"].values():
            e.pop("step_decimals")
    elif edit == "other_types":
        entry["other_types"] = {"string_series": 1}
    else:
        entry["rows"] += 1
    reader = RunReader(storage, dataclasses.replace(run, manifest=manifest))
    assert from_manifest(reader, 1000) is None
    assert scan(reader, 1000).planner.plan().divisor == 10_000  # the rows' plan


def test_a_summary_that_disagrees_with_the_rows_is_counted(fake_pluto, tmp_path):
    """A manifest claiming integer steps for a series on half steps: the points that fall between the plan's
    steps are named in the report, not merged silently."""
    storage, run = _stored(tmp_path)
    manifest = copy.deepcopy(run.manifest)
    for e in manifest["attributes"].values():
        e["step_decimals"] = 0
    storage.get_run = lambda project, run_id: dataclasses.replace(run, manifest=manifest)  # type: ignore[method-assign]
    report = load(make_sink(fake_pluto, project="scan"), storage, P, "RUN-1")
    lost = {k: v for k, v in report.losses.items() if "between the steps" in k}
    assert list(lost.values()) == [1 + 200]  # m/loss at 1.5, mixed/b at every quarter step
