"""End to end through the `migrate` CLI: golden runs written by the real neptune-scale into the fake Neptune
3.x backend -> `migrate export --source neptune3` -> parquet equal to what was written, point for point
(steps, values, timestamps, histograms, file bytes, tags, forks); then into the fake Pluto and verified."""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePosixPath

import pyarrow as pa
import pytest

from tests.fakes.neptune3 import fixtures
from tests.fakes.neptune3.golden import LOSS_STEPS, T0, loss
from tests.plugins.neptune3.conftest import FAST_SET
from tests.stored import decimals, rows, stored_runs, table_of

pytestmark = pytest.mark.timeout(180)
fake_neptune3_golden = fixtures.fake_neptune3_golden
PROJECT = "golden-ws/golden-proj"
PREVIEW_LOSS = "metric preview points (set source.neptune3.previews=true to export them)"


def ms(dt) -> int:
    return int(dt.timestamp() * 1000)


def stamps(table: pa.Table) -> list[int]:
    return table["timestamp"].cast(pa.int64()).to_pylist()


def source_file_name(fake, run_id: str, attribute: str, step: float | None = None) -> str:
    run = fake.store.project(PROJECT).by_custom_id[run_id]
    value = run.get(attribute).value
    if step is None:
        return PurePosixPath(value.path).name
    cols = value.columns()
    return PurePosixPath(cols.values[list(cols.steps).index(step)].path).name


def check_golden_a(storage, run, fake) -> None:
    table = table_of(storage, run)
    assert set(table["run_id"].to_pylist()) == {"golden-a"} and set(table["project_id"].to_pylist()) == {PROJECT}

    lo = rows(table, "metrics/loss")
    assert lo["attribute_type"].to_pylist() == ["float_series"] * len(LOSS_STEPS)
    assert lo["step"].to_pylist() == decimals(LOSS_STEPS)
    assert lo["float_value"].to_pylist() == [loss(k) for k in range(len(LOSS_STEPS))]
    assert stamps(lo) == [ms(T0 + timedelta(seconds=k)) for k in range(len(LOSS_STEPS))]
    acc = rows(table, "metrics/acc")
    assert acc["step"].to_pylist() == decimals(range(10)) and acc["float_value"].to_pylist() == [i / 10 for i in range(10)]
    assert stamps(acc) == [ms(T0 + timedelta(seconds=100 + i)) for i in range(10)]

    text = rows(table, "logs/text")
    assert text["attribute_type"].to_pylist() == ["string_series"] * 3
    assert text["string_value"].to_pylist() == ["first line", "second line", "third ünïcode line"]
    assert text["step"].to_pylist() == decimals([1, 2, 3])
    assert stamps(text) == [ms(T0 + timedelta(seconds=200 + i)) for i in (1, 2, 3)]

    hw = rows(table, "hist/w").to_pylist()
    assert [r["histogram_value"] for r in hw] == [
        {"type": "COUNTING", "edges": [0.0, 1.0, 2.0, 3.0], "values": [5.0, 7.0, 1.0]},
        {"type": "COUNTING", "edges": [0.0, 1.0, 2.0, 3.0], "values": [4.0, 8.0, 2.0]},
    ]
    assert [r["step"] for r in hw] == decimals([1, 2])
    assert [ms(r["timestamp"]) for r in hw] == [ms(T0 + timedelta(seconds=300)), ms(T0 + timedelta(seconds=301))]
    hd = rows(table, "hist/d").to_pylist()
    assert [(r["histogram_value"]["edges"], r["histogram_value"]["values"]) for r in hd] == [
        ([-1.0, 0.0, 1.0], [0.25, 0.75])]

    params = {r["attribute_path"]: r for r in table.filter(pa.compute.is_null(table["step"])).to_pylist()}
    assert params["cfg/lr"]["float_value"] == 0.001 and params["cfg/lr"]["attribute_type"] == "float"
    assert params["cfg/batch"]["int_value"] == 64 and params["cfg/optimizer"]["string_value"] == "adam"
    assert params["cfg/use_amp"]["bool_value"] is True
    assert params["cfg/started"]["datetime_value"] == T0 + timedelta(hours=1)
    assert sorted(params["cfg/layers"]["string_set_value"]) == ["conv", "fc"]
    assert sorted(params["sys/tags"]["string_set_value"]) == ["alpha", "golden"]
    assert params["sys/group_tags"]["string_set_value"] == ["group-1"]
    assert params["sys/custom_run_id"]["string_value"] == "golden-a"
    assert params["sys/name"]["string_value"] == "exp-golden"
    assert params["sys/creation_time"]["datetime_value"] == T0

    def content(row) -> bytes:
        with storage.open_file(run, row["file_value"]["path"]) as handle:
            return handle.read()

    model = rows(table, "files/model").to_pylist()
    assert [r["attribute_type"] for r in model] == ["file"] and content(model[0]) == b"model-bytes-\x00\x01\x02"
    assert PurePosixPath(model[0]["file_value"]["path"]).name == source_file_name(fake, "golden-a", "files/model")
    config = rows(table, "files/config").to_pylist()
    assert content(config[0]) == b'{"a": 1}'
    series = rows(table, "files/series").to_pylist()
    assert [r["attribute_type"] for r in series] == ["file_series"] * 2
    assert [r["step"] for r in series] == decimals([1, 2])
    assert [content(r) for r in series] == [b"series-step-1", b"series-step-2"]
    assert [ms(r["timestamp"]) for r in series] == [ms(T0 + timedelta(seconds=400)), ms(T0 + timedelta(seconds=401))]
    assert [PurePosixPath(r["file_value"]["path"]).name for r in series] == [
        source_file_name(fake, "golden-a", "files/series", s) for s in (1.0, 2.0)]


def test_export_equals_the_written_runs_point_for_point(migrate, fake_neptune3_golden, tmp_path):
    result = migrate("export", "--source", "neptune3", "-p", PROJECT, *FAST_SET, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["stages"]["export"]["ok"] == 4
    assert summary["losses"] == {PREVIEW_LOSS: 2}  # golden-a's two preview points, counted, not silent
    storage, runs = stored_runs(tmp_path)
    assert sorted(runs) == ["golden-a", "golden-b", "golden-fork", "golden-fork2"]
    assert all(r.complete for r in runs.values())
    check_golden_a(storage, runs["golden-a"], fake_neptune3_golden)

    b = rows(table_of(storage, runs["golden-b"]), "metrics/loss")
    assert b["step"].to_pylist() == decimals([*range(10), 10])  # 10.0000001 and 10.0000004 collide: one kept
    assert b["float_value"].to_pylist() == [10.0 - i for i in range(10)] + [0.5]

    fork = table_of(storage, runs["golden-fork"])
    assert rows(fork, "metrics/loss")["step"].to_pylist() == decimals([2.0 + k / 10 for k in range(1, 11)])
    assert rows(fork, "metrics/loss")["float_value"].to_pylist() == [100.0 + k for k in range(1, 11)]
    lineage = storage.lineage(runs["golden-fork"])
    assert lineage["parent_run_id"] == "golden-a" and float(lineage["fork_step"]) == 2.0
    lineage2 = storage.lineage(runs["golden-fork2"])
    assert lineage2["parent_run_id"] == "golden-fork" and float(lineage2["fork_step"]) == 2.5
    fork2 = rows(table_of(storage, runs["golden-fork2"]), "metrics/loss")
    assert fork2["step"].to_pylist() == decimals([2.6, 2.7]) and fork2["float_value"].to_pylist() == [200.0, 201.0]
    info = runs["golden-fork2"].manifest["source"]["info"]
    assert info["run_id_from"] == "sys/custom_run_id" and info["fork_step"] == 2.5

    again = migrate("export", "--source", "neptune3", "-p", PROJECT, *FAST_SET, "--json").json()
    assert again["stages"]["export"]["skipped"] == 4


def test_previews_and_materialised_lineage_on_request(migrate, fake_neptune3_golden, tmp_path):
    result = migrate("export", "--source", "neptune3", "-p", PROJECT, "-r", "^golden-(a|fork2)$", *FAST_SET,
                     "--set", "source.neptune3.previews=true", "--set", "source.neptune3.materialise_lineage=true",
                     "--json")
    assert result.code == 0, result.err
    assert result.json()["losses"] == {}
    storage, runs = stored_runs(tmp_path)
    assert sorted(runs) == ["golden-a", "golden-fork2"]
    a = table_of(storage, runs["golden-a"])
    assert len(rows(a, "metrics/loss")) == len(LOSS_STEPS)  # committed points stay apart from previews
    preview = rows(a, "metrics/loss@preview")
    assert preview["step"].to_pylist() == decimals([5.0, 5.5]) and preview["float_value"].to_pylist() == [0.015, 0.012]
    completion = rows(a, "metrics/loss@preview_completion")
    assert completion["step"].to_pylist() == decimals([5.0, 5.5])
    assert completion["float_value"].to_pylist() == pytest.approx([0.5, 0.8])
    assert stamps(preview) == stamps(completion) == [ms(T0 + timedelta(seconds=60)), ms(T0 + timedelta(seconds=61))]

    inherited = rows(table_of(storage, runs["golden-fork2"]), "metrics/loss")
    root = [s for s in LOSS_STEPS if s <= 2.0]
    assert inherited["step"].to_pylist() == decimals([*root, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7])
    assert inherited["float_value"].to_pylist() == [loss(k) for k in range(len(root))] + [
        101.0, 102.0, 103.0, 104.0, 105.0, 200.0, 201.0]


def test_run_into_pluto_then_verify(migrate, fake_neptune3_golden, fake_pluto, pluto_sink_args, tmp_path):
    sink = pluto_sink_args
    result = migrate("run", "--source", "neptune3", "--sink", "pluto", "-p", PROJECT, *FAST_SET, *sink, "--json")
    assert result.code == 0, result.out + result.err
    summary = result.json()
    assert summary["stages"]["export"]["ok"] == 4 and summary["stages"]["load"]["ok"] == 4
    verified = migrate("verify", "--sink", "pluto", *sink, "--json")
    assert verified.code == 0, verified.out + verified.err
    report = verified.json()
    assert report["ok"] and sorted(r["run_id"] for r in report["runs"]) == [
        "golden-a", "golden-b", "golden-fork", "golden-fork2"]
