"""End to end through the `migrate` CLI: declared runs in the fake Neptune 2.x server -> `migrate export` ->
parquet equal to the declaration point for point, file bytes equal; then into the fake Pluto and verified."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from migrate_local_fs.storage import LocalFsStorage

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.plugins.neptune2.conftest import FAST_SET, T0
from tests.stored import decimals, rows, stored_runs, table_of

pytestmark = pytest.mark.timeout(120)


def check_run_one(storage: LocalFsStorage, run, declared: dict[str, Any]) -> None:
    table = table_of(storage, run)
    assert set(table["run_id"].to_pylist()) == {"PROJ-1"} and set(table["project_id"].to_pylist()) == {"ws/proj"}

    steps, values, stamps = declared["float"]
    loss = rows(table, "train/loss")
    assert loss["attribute_type"].to_pylist() == ["float_series"] * len(steps)
    assert loss["step"].to_pylist() == decimals(steps)
    assert loss["timestamp"].cast(pa.int64()).to_pylist() == stamps.tolist()
    np.testing.assert_array_equal(loss["float_value"].to_numpy(), values)  # NaN == NaN, inf kept

    s_steps, s_values, s_stamps = declared["string"]
    out = rows(table, "logs/stdout")
    assert out["step"].to_pylist() == decimals(s_steps)
    assert out["string_value"].to_pylist() == s_values
    assert out["timestamp"].cast(pa.int64()).to_pylist() == s_stamps

    params = {r["attribute_path"]: r for r in table.filter(pa.compute.is_null(table["step"])).to_pylist()}
    assert params["params/lr"]["float_value"] == 0.1 and params["params/lr"]["attribute_type"] == "float"
    assert params["params/epochs"]["int_value"] == 10
    assert params["params/big"]["int_value"] == 2**40
    assert params["params/use_bn"]["bool_value"] is True
    assert params["params/optimizer"]["string_value"] == "adam"
    assert params["params/started"]["datetime_value"] == declared["started"].replace(microsecond=250000)
    assert params["params/classes"]["string_set_value"] == ["cat", "dog"]
    assert params["sys/tags"]["string_set_value"] == ["baseline"]
    assert params["sys/id"]["string_value"] == "PROJ-1" and params["sys/name"]["string_value"] == "first run"
    assert params["sys/creation_time"]["attribute_type"] == "datetime"
    assert params["sys/state"]["string_value"] == "idle"
    git = json.loads(params["source_code/git"]["string_value"])
    assert git["commit"]["commitId"] == "abc123" and git["currentBranch"] == "main"

    def content(row) -> bytes:
        with storage.open_file(run, row["file_value"]["path"]) as handle:
            return handle.read()

    ckpt = rows(table, "model/ckpt").to_pylist()
    assert [r["attribute_type"] for r in ckpt] == ["file"]
    assert ckpt[0]["file_value"]["path"].endswith("/ckpt.pt") and content(ckpt[0]) == declared["file"].content

    preds = rows(table, "images/preds").to_pylist()
    assert [r["step"] for r in preds] == [Decimal("10.000000"), Decimal("20.500000")]  # real steps, not indices
    assert [int(r["timestamp"].timestamp() * 1000) for r in preds] == [T0 + 5, T0 + 9]
    assert [content(r) for r in preds] == [b"png-a", b"png-b"]
    assert [r["file_value"]["path"].rsplit("/", 1)[1] for r in preds] == ["0.png", "1.jpeg"]

    fileset = rows(table, "source_code/files").to_pylist()
    assert {r["attribute_type"] for r in fileset} == {"file_set"}
    got = {r["file_value"]["path"].split("source_code/files/", 1)[1]: content(r) for r in fileset}
    assert got == declared["file_set"]

    artifact = rows(table, "datasets/train").to_pylist()
    listing = json.loads(content(artifact[0]))
    assert [f["filePath"] for f in listing] == ["data/train.csv"] and listing[0]["fileHash"] == "h1"


def test_export_equals_the_declared_runs_point_for_point(migrate, declared, fake_neptune2, tmp_path):
    result = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["stages"]["export"]["ok"] == 2  # the trashed run is not listed
    assert summary["losses"] == {"artifact file contents (kept in the artifact's own storage)": 1}
    storage, runs = stored_runs(tmp_path)
    assert sorted(runs) == ["PROJ-1", "PROJ-2"] and all(r.complete for r in runs.values())
    check_run_one(storage, runs["PROJ-1"], declared)
    assert rows(table_of(storage, runs["PROJ-2"]), "train/loss")["float_value"].to_pylist() == [0.5, 0.25]

    again = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET, "--json").json()
    assert again["stages"]["export"]["skipped"] == 2


def test_series_timestamps_are_utc_whatever_the_machine_time_zone(
    migrate, declared, fake_neptune2, tmp_path, monkeypatch
):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        import neptune

        # PROJ-2: the plain client cannot even open PROJ-1, whose NaN series stats simplejson refuses
        run = neptune.init_run(with_id="PROJ-2", project="ws/proj", mode="read-only")
        naive = run["train/loss"].fetch_values(progress_bar=False)["timestamp"].iloc[0]
        run.stop()
        assert naive.hour == 17  # the plain client: 22:13:20 UTC comes back as naive New York time
        result = migrate("export", "--source", "neptune2", "-p", "ws/proj", "-r", "^PROJ-1$", *FAST_SET)
        assert result.code == 0, result.err
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
    storage, runs = stored_runs(tmp_path)
    check_run_one(storage, runs["PROJ-1"], declared)


def test_request_budget_per_run(migrate, fake_neptune2: FakeNeptune2Server):
    srv = fake_neptune2
    for i in range(20):
        srv.add_run("ws/proj", attrs={"params/i": i, "params/s": {"a", "b"}},
                    float_series={"m/a": [0.1, 0.2], "m/b": [1.0]}, string_series={"log": ["x"]})
    srv.reset_counters()
    result = migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET)
    assert result.code == 0, result.err
    data_ops = {op: n for op, n in srv.counts.items() if not op.startswith("swagger")}
    assert data_ops.get("getExperimentAttributes") == 20  # one structure read per run
    assert "getExperiment" not in data_ops and "getStringSetAttribute" not in data_ops
    assert data_ops["searchLeaderboardEntries"] == 1 and data_ops["getProject"] == 1
    assert data_ops["getFloatSeriesValues"] == 40 and data_ops["getStringSeriesValues"] == 20


def test_refresh_re_exports_only_runs_modified_since_their_export(migrate, declared, fake_neptune2, tmp_path):
    from datetime import timedelta

    assert migrate("export", "--source", "neptune2", "-p", "ws/proj", *FAST_SET).code == 0
    run_one = fake_neptune2.container("ws/proj", "PROJ-1")
    fake_neptune2.set_attr(run_one, "sys/modification_time", run_one.attrs["sys/modification_time"] + timedelta(hours=1))
    fake_neptune2.set_attr(run_one, "params/late", 7)
    result = migrate("export", "--source", "neptune2", "-p", "ws/proj", "--refresh", *FAST_SET, "--json")
    assert result.code == 0, result.err
    assert {r["run_id"]: r["status"] for r in result.json()["runs"]} == {"PROJ-1": "ok", "PROJ-2": "skipped"}
    storage, runs = stored_runs(tmp_path)
    assert rows(table_of(storage, runs["PROJ-1"]), "params/late")["int_value"].to_pylist() == [7]
    since = (run_one.attrs["sys/modification_time"] - timedelta(minutes=1)).isoformat()
    windowed = migrate("export", "--source", "neptune2", "-p", "ws/proj", "--since", since, "--force", *FAST_SET,
                       "--json").json()
    assert [r["run_id"] for r in windowed["runs"]] == ["PROJ-1"]


def test_run_into_pluto_then_verify(migrate, declared, fake_neptune2, fake_pluto, pluto_sink_args, tmp_path):
    sink = pluto_sink_args
    result = migrate("run", "--source", "neptune2", "--sink", "pluto", "-p", "ws/proj", *FAST_SET, *sink, "--json")
    assert result.code == 0, result.out + result.err
    summary = result.json()
    assert summary["stages"]["export"]["ok"] == 2 and summary["stages"]["load"]["ok"] == 2
    verified = migrate("verify", "--sink", "pluto", *sink, "--json")
    assert verified.code == 0, verified.out + verified.err
    report = verified.json()
    assert report["ok"] and sorted(r["run_id"] for r in report["runs"]) == ["PROJ-1", "PROJ-2"]
