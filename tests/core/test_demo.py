import math
import threading

import pyarrow as pa
import pytest
from migrate_core.api import RunContext, RunReport, Selection
from migrate_core.demo import DemoConfig
from migrate_core.demo_source import DemoSource
from migrate_core.format import ATTRIBUTE_TYPES
from migrate_core.testing import MemoryStorage, SourceContract, export_into


class TestDemoContract(SourceContract):
    @pytest.fixture
    def source(self):
        return DemoSource(DemoConfig(points_per_series=300, runs=3))


def _tables(config: DemoConfig, tmp_path) -> dict[str, pa.Table]:
    storage = MemoryStorage(tmp_path)
    export_into(storage, DemoSource(config))
    return {r.run_id: storage.runs[r.key][0] for r in storage.list_runs()}


def test_every_attribute_type_but_the_2x_only_ones(tmp_path):
    tables = _tables(DemoConfig(points_per_series=20), tmp_path)
    types = set(tables["DEMO-1"]["attribute_type"].to_pylist())
    assert types == set(ATTRIBUTE_TYPES) - {"file_set", "artifact"}
    paths = set(tables["DEMO-1"]["attribute_path"].to_pylist())
    assert {"sys/name", "sys/tags", "sys/creation_time"} <= paths
    assert any(p.startswith("monitoring/") and p.endswith("/stdout") for p in paths)
    assert any(p.endswith("/stderr") for p in paths)


def test_fork_decimal_steps_and_non_finite_values(tmp_path):
    tables = _tables(DemoConfig(points_per_series=20), tmp_path)
    fork = tables["DEMO-3"]
    params = {r["attribute_path"]: r for r in fork.to_pylist() if r["step"] is None}
    assert params["sys/forking/parent"]["string_value"] == "DEMO-1"
    assert params["sys/forking/step"]["float_value"] == 10.0
    one = tables["DEMO-1"].to_pylist()
    s1 = [r["step"] for r in one if r["attribute_path"] == "metrics/series_1"]
    assert any(step != step.to_integral() for step in s1)
    s0 = [r["float_value"] for r in one if r["attribute_path"] == "metrics/series_0"]
    assert math.isnan(s0[3]) and s0[5] == math.inf and s0[7] == -math.inf


def test_large_runs_come_in_bounded_batches():
    source = DemoSource(DemoConfig(runs=1, series_per_run=1, points_per_series=1_000_000, batch_rows=100_000,
                                   files=False))
    sizes = []

    class Writer:
        def write(self, batch):
            sizes.append(batch.num_rows)

    run = next(source.list_runs(Selection()))
    source.export_run(run, Selection(), Writer(), RunContext(RunReport(), threading.Event()))
    assert max(sizes) == 100_000 and sum(sizes) > 1_000_000
