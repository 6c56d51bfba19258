"""Every row of docs/pluto-mapping.md, checked against what the fake Pluto server received."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.format import HISTOGRAM_TYPE, make_batch, steps_from_units, timestamps_ms
from migrate_core.testing import MemoryRun, MemorySource

from tests.fakes.pluto import FakePluto

from .helpers import load, make_sink, memory_storage, run_of

P = "ws/proj"
T0 = 1_700_000_000_000


class NeptuneSource(MemorySource):
    name = "neptune2"


def neptune_storage(tmp_path, runs):
    from migrate_core.testing import MemoryStorage, export_into

    storage = MemoryStorage(tmp_path / "state")
    export_into(storage, NeptuneSource(runs))
    return storage


def params(run_id: str, rows: list[tuple[str, str, str, object]]) -> pa.RecordBatch:
    n = len(rows)
    columns: dict[str, list[object]] = {}
    for i, (_p, _t, column, value) in enumerate(rows):
        columns.setdefault(column, [None] * n)[i] = value
    return make_batch(P, run_id, pa.array([r[0] for r in rows]), pa.array([r[1] for r in rows]), n, **columns)


def series(run_id: str, path: str, units: list[int], values: list[float], times: list[int] | None = None):
    return make_batch(P, run_id, path, "float_series", len(units), step=steps_from_units(np.array(units)),
                      timestamp=timestamps_ms(times or [T0 + i for i in range(len(units))]),
                      float_value=pa.array(values, type=pa.float64()))


def strings(run_id: str, path: str, values: list[str], times: list[int] | None = None):
    n = len(values)
    return make_batch(P, run_id, path, "string_series", n, step=steps_from_units(np.arange(n) * 1_000_000),
                      timestamp=timestamps_ms(times or [T0 + 10 * i for i in range(n)]),
                      string_value=pa.array(values, type=pa.string()))


def one_run(tmp_path, run_id: str, *batches: pa.RecordBatch, neptune: bool = True, files=()):
    run = MemoryRun(P, run_id, pa.Table.from_batches(list(batches)), files=list(files))
    return (neptune_storage if neptune else memory_storage)(tmp_path, [run])


def loaded(srv: FakePluto, tmp_path, run_id: str, *batches, **kwargs):
    storage = one_run(tmp_path, run_id, *batches)
    report = load(make_sink(srv, **kwargs), storage, P, run_id)
    return run_of(srv, kwargs.get("project") or "ws-proj", f"neptune:{P}:{run_id}"), report


# ------------------------------------------------------------------------------------------- identity


@pytest.mark.parametrize("run_id", ["SAN-12", "12345"])
def test_identity_external_id_never_a_bare_id_and_ids_kept_in_config(fake_pluto, tmp_path, run_id):
    run, _ = loaded(fake_pluto, tmp_path, run_id, params(run_id, [("sys/id", "string", "string_value", run_id)]))
    assert run.external_id == f"neptune:{P}:{run_id}"
    assert run.project == "ws-proj"
    assert run.config["_migrate"]["run_id"] == run_id and run.config["_migrate"]["project_id"] == P
    assert run.config["sys"]["id"] == run_id


def test_identity_project_is_configurable(fake_pluto, tmp_path):
    run, _ = loaded(fake_pluto, tmp_path, "R-1", params("R-1", [("a", "int", "int_value", 1)]), project="imports")
    assert run.project == "imports"


def test_name_from_sys_name_else_run_id(fake_pluto, tmp_path):
    named, _ = loaded(fake_pluto, tmp_path / "a", "R-1", params("R-1", [("sys/name", "string", "string_value", "nice")]))
    unnamed, _ = loaded(fake_pluto, tmp_path / "b", "R-2", params("R-2", [("a", "int", "int_value", 1)]))
    assert named.name == "nice" and unnamed.name == "R-2"


# ------------------------------------------------------------------------------------------- tags


def test_tags_are_sys_tags_plus_import_tags(fake_pluto, tmp_path):
    run, report = loaded(fake_pluto, tmp_path, "R-1",
                         params("R-1", [("sys/tags", "string_set", "string_set_value", ["b", "a", "ünï"])]))
    assert sorted(run.tags) == sorted(["import:neptune", f"import_project:{P}", "a", "b", "ünï"])
    assert not report.losses


def test_tags_beyond_pluto_limits_are_kept_in_config_and_reported(fake_pluto, tmp_path):
    tags = [f"t{i:05d}" for i in range(10_000)] + ["group:x", "group:y"]
    run, report = loaded(fake_pluto, tmp_path, "R-1", params("R-1", [("sys/tags", "string_set", "string_set_value", tags)]))
    assert len(run.tags) == 50 and run.tags[:2] == ["import:neptune", f"import_project:{P}"]
    assert sum(t.startswith("group:") for t in run.tags) <= 1
    overflow = run.config["_migrate"]["tags_overflow"]
    assert sorted(set(run.tags[2:]) | set(overflow)) == sorted(tags)
    assert sum(report.losses.values()) == len(overflow) == len(tags) - 48
    assert run.config["sys"]["tags"] == tags


# ------------------------------------------------------------------------------------------- parameters


def test_parameters_of_every_type_nested_in_config(fake_pluto, tmp_path):
    created = datetime(2024, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
    modified = datetime(2024, 3, 2, 8, 30, tzinfo=UTC)
    run, report = loaded(fake_pluto, tmp_path, "R-1", params("R-1", [
        ("sys/creation_time", "datetime", "datetime_value", created),
        ("sys/modification_time", "datetime", "datetime_value", modified),
        ("cfg/lr", "float", "float_value", 0.001),
        ("cfg/bad", "float", "float_value", math.nan),
        ("cfg/epochs", "int", "int_value", 2**40),
        ("cfg/opt/name", "string", "string_value", "adam"),
        ("cfg/amp", "bool", "bool_value", True),
        ("cfg/when", "datetime", "datetime_value", created),
        ("cfg/layers", "string_set", "string_set_value", ["conv", "relu"]),
        ("cfg/opt", "string", "string_value", "leaf and namespace"),
    ]))
    cfg = run.config["cfg"]
    assert cfg["lr"] == 0.001 and cfg["bad"] == "NaN" and cfg["epochs"] == 2**40 and cfg["amp"] is True
    assert cfg["when"] == "2024-03-01T12:00:00.123Z" and cfg["layers"] == ["conv", "relu"]
    assert cfg["opt"] == {"name": "adam", "_value": "leaf and namespace"}
    assert run.created_at == int(created.timestamp() * 1000)
    assert run.status == "COMPLETED" and run.status_updated == int(modified.timestamp() * 1000)
    assert not report.losses


def test_failed_runs_stay_failed(fake_pluto, tmp_path):
    run, _ = loaded(fake_pluto, tmp_path, "R-1", params("R-1", [("sys/failed", "bool", "bool_value", True)]))
    assert run.status == "FAILED"


# ------------------------------------------------------------------------------------------- float series


def test_float_series_keep_steps_times_and_non_finite_values(fake_pluto, tmp_path):
    values = [0.1, math.nan, math.inf, -math.inf, 1e-300, 2.0]
    times = [T0 + 7 * i for i in range(6)]
    run, report = loaded(fake_pluto, tmp_path, "R-1",
                         series("R-1", "train/loss", [i * 1_000_000 for i in range(6)], values, times))
    points = run.metric("train/loss")
    assert sorted(points) == list(range(6))
    for i, value in enumerate(values):
        got, time = points[i]
        assert time == times[i]
        assert (math.isnan(got) and math.isnan(value)) or got == value
    assert run.config["_migrate"]["step_scale"] == 1 and not report.losses


def test_decimal_and_negative_steps_map_without_collisions(fake_pluto, tmp_path):
    units = [-2_500_000, -1_000_000, 0, 250_000, 500_000, 1_000_000, 1_250_000]  # -2.5 .. 1.25
    run, report = loaded(fake_pluto, tmp_path, "R-1",
                         series("R-1", "m", units, [float(i) for i in range(len(units))]),
                         series("R-1", "n", [0, 3_000_000], [1.0, 2.0]))
    migrate = run.config["_migrate"]
    scale, offset = migrate["step_scale"], float(migrate["step_offset"])
    assert (scale, offset) == (100, -2.5)
    points = run.metric("m")
    assert len(points) == len(units)
    assert sorted(points) == [int((u / 1e6 - offset) * scale) for u in units]
    assert sorted(run.metric("n")) == [250, 550]  # one plan per run
    assert not report.losses


def test_metric_names_the_client_would_mangle_are_encoded_and_recorded(fake_pluto, tmp_path):
    names = ["a/b c", "métric/ü", "100%", "ok"]
    batches = [series("R-1", name, [0, 1_000_000], [1.0, 2.0]) for name in names]
    run, _ = loaded(fake_pluto, tmp_path, "R-1", *batches)
    assert set(run.metrics) == {"a/b c", "m%C3%A9tric/%C3%BC", "100%25", "ok"}
    assert run.config["_migrate"]["names"] == {"m%C3%A9tric/%C3%BC": "métric/ü", "100%25": "100%"}
    assert run.log_names["m%C3%A9tric/%C3%BC"] == "METRIC"


def test_duplicate_step_rows_are_counted_and_the_last_wins(fake_pluto, tmp_path):
    run, report = loaded(fake_pluto, tmp_path, "R-1",
                         series("R-1", "m", [0, 1_000_000, 1_000_000, 2_000_000], [1.0, 2.0, 3.0, 4.0],
                                [T0, T0 + 1, T0 + 2, T0 + 3]))
    assert run.metric("m")[1] == (3.0, T0 + 2)
    assert list(report.losses.values()) == [1] and "sharing a step" in next(iter(report.losses))


# ------------------------------------------------------------------------------------------- string series


def test_stdout_and_stderr_become_console_logs_in_order(fake_pluto, tmp_path):
    out = strings("R-1", "monitoring/abc/stdout", ["line 0", "line 1", "line 2"], [T0, T0, T0 + 5])
    err = strings("R-1", "monitoring/abc/stderr", ["oops ✓"], [T0 + 1])
    run, _ = loaded(fake_pluto, tmp_path, "R-1", out, err)
    logs = sorted((x.time, x.line_number, x.log_type, x.message) for x in run.logs)
    assert logs == [(T0, 0, "INFO", "line 0"), (T0, 1, "INFO", "line 1"), (T0 + 1, 0, "ERROR", "oops ✓"),
                    (T0 + 5, 2, "INFO", "line 2")]
    assert run.string_series == {}
    assert run.config["_migrate"]["console_logs"] == ["monitoring/abc/stderr", "monitoring/abc/stdout"]


def test_other_string_series_keep_step_time_and_any_length(fake_pluto, tmp_path):
    long = "x" * 1_000_000
    run, report = loaded(fake_pluto, tmp_path, "R-1", strings("R-1", "train/notes", ["", "short", long]))
    rows = run.string_series["train/notes"]
    assert [(r.step, r.time, r.data) for r in rows] == [(0, T0, ""), (1, T0 + 10, "short"), (2, T0 + 20, long)]
    assert run.log_names["train/notes"] == "DATA" and not report.losses


# ------------------------------------------------------------------------------------------- histograms


def _hist(run_id: str, path: str, edges: list[list[float]], counts: list[list[float]]):
    n = len(edges)
    value = pa.array([{"type": "COUNTING", "edges": e, "values": c} for e, c in zip(edges, counts, strict=True)],
                     type=HISTOGRAM_TYPE)
    return make_batch(P, run_id, path, "histogram_series", n, step=steps_from_units(np.arange(n) * 1_000_000),
                      timestamp=timestamps_ms([T0 + i for i in range(n)]), histogram_value=value)


def test_histograms_uniform_exact_and_non_uniform_kept_and_counted(fake_pluto, tmp_path):
    uniform = _hist("R-1", "h/u", [list(np.linspace(-1, 1, 5))] * 2, [[1, 2, 3, 4], [0, 0, 1, 0]])
    skewed = _hist("R-1", "h/s", [[0.0, 0.001, 0.1, 10.0]], [[5, 6, 7]])
    run, report = loaded(fake_pluto, tmp_path, "R-1", uniform, skewed)
    rows = run.histograms["h/u"]
    assert [(r.step, r.time) for r in rows] == [(0, T0), (1, T0 + 1)]
    first = rows[0].value
    assert first["freq"] == [1, 2, 3, 4] and first["bins"] == {"min": -1, "max": 1, "num": 4}
    assert "edges" not in first and first["maxFreq"] == 4
    odd = run.histograms["h/s"][0].value
    assert odd["edges"] == [0, 0.001, 0.1, 10] and odd["freq"] == [5, 6, 7]
    assert list(report.losses.values()) == [1] and "non-uniform" in next(iter(report.losses))
    assert run.log_names["h/u"] == "HISTOGRAM"


# ------------------------------------------------------------------------------------------- files


def test_files_keep_names_and_bytes(fake_pluto, tmp_path):
    big = bytes(np.random.default_rng(1).integers(0, 256, 3 << 20, dtype=np.uint8))
    storage = one_run(tmp_path, "R-1", params("R-1", [("a", "int", "int_value", 1)]),
                      files=[("files/model", "model.bin", big), ("files/cfg", "config.yaml", b"lr: 1\n")])
    report = load(make_sink(fake_pluto), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    got = {(f.log_name, f.file_name): f for f in run.files}
    assert set(got) == {("files/model", "model.bin"), ("files/cfg", "config.yaml")}
    assert got[("files/model", "model.bin")].content == big and got[("files/cfg", "config.yaml")].content == b"lr: 1\n"
    assert report.files == 2 and report.bytes == len(big) + 6
    assert run.log_names["files/model"] == "ARTIFACT"


def test_file_series_and_file_sets_through_local_fs(fake_pluto, tmp_path):
    from migrate_core.api import RunContext, RunReport
    from migrate_local_fs.storage import LocalFsStorage

    storage = LocalFsStorage(tmp_path / "data", tmp_path / "files")
    writer = storage.begin_run(P, "R-1", {"plugin": "neptune2"})
    paths = [writer.write_file("images/s", f"{i}.png", bytes([i]) * 10) for i in range(3)]
    writer.write(make_batch(P, "R-1", "images/s", "file_series", 3, step=steps_from_units(np.arange(3) * 1_000_000),
                            timestamp=timestamps_ms([T0, T0 + 1, T0 + 2]), file_value=[{"path": p} for p in paths]))
    root = tmp_path / "files"
    set_dir = next(root.iterdir()) / "R-set" / "model"
    (set_dir / "sub").mkdir(parents=True)
    (set_dir / "a.txt").write_bytes(b"a")
    (set_dir / "sub" / "b.txt").write_bytes(b"bb")
    writer.write(make_batch(P, "R-1", "model", "file_set", 1, file_value=[{"path": "R-set/model"}]))
    writer.commit(report=RunReport())
    import threading

    from migrate_core.api import RunReader

    report = RunReport()
    make_sink(fake_pluto).load_run(RunReader(storage, storage.get_run(P, "R-1")), RunContext(report, threading.Event()))
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    got = sorted((f.log_name, f.file_name, f.step, f.caption, f.content) for f in run.files)
    assert got == [
        ("images/s", "0.png", 0, paths[0], b"\x00" * 10),
        ("images/s", "1.png", 1, paths[1], b"\x01" * 10),
        ("images/s", "2.png", 2, paths[2], b"\x02" * 10),
        ("model", "a.txt", 0, "R-set/model/a.txt", b"a"),
        ("model", "sub%2Fb.txt", 0, "R-set/model/sub/b.txt", b"bb"),
    ]
    assert not report.losses and report.files == 5
    assert run.log_names["images/s"] == "IMAGE" and run.log_names["model"] == "ARTIFACT"


# ------------------------------------------------------------------------------------------- forks


def test_fork_points_at_the_loaded_parent_and_its_step(fake_pluto, tmp_path):
    parent = MemoryRun(P, "R-1", pa.Table.from_batches([series("R-1", "m", [0, 500_000, 1_000_000], [1.0, 2.0, 3.0])]))
    fork = MemoryRun(P, "R-2", pa.Table.from_batches([
        params("R-2", [("sys/forking/parent", "string", "string_value", "R-1"),
                       ("sys/forking/step", "float", "float_value", 0.5)]),
        series("R-2", "m", [1_000_000, 2_000_000], [4.0, 5.0])]), parent_run_id="R-1")
    storage = neptune_storage(tmp_path, [parent, fork])
    sink = make_sink(fake_pluto)
    load(sink, storage, P, "R-1")
    load(sink, storage, P, "R-2")
    p = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    f = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-2")
    assert f.fork_run_id == p.id and f.fork_step == 5  # parent plan: scale 10
    assert sorted(f.metric("m")) == [10, 20] and f.config["_migrate"]["step_scale"] == 10
    assert "parent" not in json.dumps(f.config.get("cfg", {}))


def test_a_fork_finer_than_its_parent_links_on_the_parents_scale_and_says_so(fake_pluto, tmp_path):
    parent = MemoryRun(P, "R-1", pa.Table.from_batches([series("R-1", "m", [0, 1_000_000, 2_000_000], [1.0, 2.0, 3.0])]))
    fork = MemoryRun(P, "R-2", pa.Table.from_batches([
        params("R-2", [("sys/forking/parent", "string", "string_value", "R-1"),
                       ("sys/forking/step", "float", "float_value", 2.0)]),
        series("R-2", "m", [2_500_000, 3_000_000], [4.0, 5.0])]), parent_run_id="R-1")
    storage = neptune_storage(tmp_path, [parent, fork])
    sink = make_sink(fake_pluto)
    load(sink, storage, P, "R-1")
    report = load(sink, storage, P, "R-2")
    f = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-2")
    assert f.fork_step == 2  # step 2 of the parent, which Pluto holds at scale 1 (the fork's own scale is 10)
    assert f.config["_migrate"]["step_scale"] == 10 and sorted(f.metric("m")) == [25, 30]
    assert report.losses == {"forks on a finer step scale than their parent (forkStep is on the parent's scale; "
                             "both scales are in config _migrate)": 1}


def test_blank_names_and_pre_1970_times_have_a_clear_outcome(fake_pluto, tmp_path):
    run, report = loaded(fake_pluto, tmp_path, "R-1", series("R-1", " ", [0, 1_000_000], [1.0, 2.0], [-5, 10]))
    assert run.config["_migrate"]["names"] == {"%20": " "}
    assert run.metric("%20") == {0: (1.0, 0), 1: (2.0, 10)}
    assert report.losses == {"points timed before 1970 (Pluto times are unsigned: sent as 1970-01-01)": 1}


def test_series_logged_together_share_lines_and_land_the_same(fake_pluto, tmp_path):
    n = 500
    units = list(np.arange(n) * 1_000_000)
    same = [series("R-1", f"m/{k}", units, [float(i * k) for i in range(n)]) for k in range(3)]
    other = series("R-1", "m/odd", units[::2], [float(i) for i in range(0, n, 2)])
    run, report = loaded(fake_pluto, tmp_path, "R-1", *same, other)
    for k in range(3):
        assert run.metric(f"m/{k}") == {i: (float(i * k), T0 + i) for i in range(n)}
    assert run.metric("m/odd") == {i: (float(i), T0 + i // 2) for i in range(0, n, 2)}
    bodies = [r.body for r in fake_pluto.requests_to("/ingest/metrics")]
    lines = sum(body.count(b"\n") for body in bodies)
    assert lines == n + n // 2  # one line per step for the three series, one per point for the fourth
    assert report.rows == 3 * n + n // 2


def test_the_scan_trusts_no_manifest_count_over_the_rows(fake_pluto, tmp_path):
    """The scan reads only the value columns of the parameter types a manifest counts; a manifest that
    misses one (hand-edited) must not turn that parameter into an absent one."""
    storage = one_run(tmp_path, "R-1", params("R-1", [("p/lr", "float", "float_value", 0.25),
                                                      ("p/name", "string", "string_value", "x")]),
                      series("R-1", "m", [0, 1_000_000], [1.0, 2.0]))
    manifest = storage.runs[(P, "R-1")][2]
    assert manifest["rows_by_type"]["float"] == 1
    del manifest["rows_by_type"]["float"]
    load(make_sink(fake_pluto), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert run.config["p"] == {"lr": 0.25, "name": "x"}
