"""Hostile data: each case has a clear outcome in the run report, and the other runs do not suffer."""

from __future__ import annotations

import pyarrow as pa
from migrate_core.format import SCHEMA, make_batch, plain
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryRun

from .helpers import load, make_sink, run_of
from .test_mapping import P, neptune_storage, params, series, strings


def test_empty_run_is_created_and_completed(fake_pluto, tmp_path):
    storage = neptune_storage(tmp_path, [MemoryRun(P, "EMPTY", SCHEMA.empty_table())])
    report = load(make_sink(fake_pluto), storage, P, "EMPTY")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:EMPTY")
    assert run.name == "EMPTY" and run.status == "COMPLETED"
    assert run.metrics == {} and run.data == [] and run.logs == [] and run.files == []
    assert report.rows == 0 and not report.losses


def test_50_mb_strings_travel_whole(fake_pluto, tmp_path):
    huge = "é" + "y" * (50 * 1024 * 1024)
    storage = neptune_storage(tmp_path, [MemoryRun(P, "R-1", pa.Table.from_batches([
        params("R-1", [("cfg/blob", "string", "string_value", huge), ("cfg/small", "string", "string_value", "s")]),
        strings("R-1", "notes", [huge]),
    ]))])
    report = load(make_sink(fake_pluto), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert run.config["cfg"]["blob"] == {"_migrate_file": "cfg/blob", "length": len(huge)}
    assert run.config["cfg"]["small"] == "s"
    (blob,) = [f for f in run.files if f.log_name == "cfg/blob"]
    assert blob.file_name == "value.txt" and blob.content == huge.encode()
    assert run.string_series["notes"][0].data == huge
    assert not report.losses


def test_missing_and_escaping_file_paths_are_counted_and_the_rest_loads(fake_pluto, tmp_path):
    good = MemoryRun(P, "R-1", pa.Table.from_batches([params("R-1", [("a", "int", "int_value", 1)])]),
                     files=[("files/ok", "ok.txt", b"fine")])
    storage = neptune_storage(tmp_path, [good])
    table, files, manifest = storage.runs[(P, "R-1")]
    hostile = make_batch(P, "R-1", pa.array(["files/escape", "files/missing"]), pa.array(["file", "file"]), 2,
                         file_value=[{"path": "../../etc/passwd"}, {"path": "R-1/files/nothing-here"}])
    storage.runs[(P, "R-1")] = (pa.concat_tables([table, plain(hostile)]), files, manifest)
    original_open = storage.open_file

    def open_file(run, path):
        if path not in files and ".." not in path:
            raise FileNotFoundError(path)
        return original_open(run, path)

    storage.open_file = open_file
    report = load(make_sink(fake_pluto), storage, P, "R-1")
    assert report.losses == {"files with escaping paths": 1, "files missing from storage": 1}
    assert any("refused file path '../../etc/passwd'" in note for note in report.notes)
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert [(f.log_name, f.content) for f in run.files] == [("files/ok", b"fine")]
    assert run.status == "COMPLETED"


def test_a_bad_run_does_not_hurt_the_others(fake_pluto, tmp_path):
    ok = [MemoryRun(P, f"R-{i}", pa.Table.from_batches([series(f"R-{i}", "m", [0, 1_000_000], [1.0, 2.0])]))
          for i in (1, 3)]
    bad = MemoryRun(P, "R-2", pa.Table.from_batches([series("R-2", "m", [0], [1.0])]))
    storage = neptune_storage(tmp_path, [ok[0], bad, ok[1]])
    broken = storage.read

    def read(run, columns=None, batch_rows=262_144):
        if run.run_id == "R-2" and "timestamp" in (columns or ["timestamp"]):  # the rows pass, not the scan
            raise OSError("truncated parquet part")
        return broken(run, columns=columns, batch_rows=batch_rows)

    storage.read = read
    summary = Orchestrator(storage, sink=make_sink(fake_pluto), workers=2).load()
    status = {o.run_id: (o.status, o.reason) for o in summary.outcomes}
    assert status["R-2"] == ("failed", "OSError: truncated parquet part")
    assert status["R-1"][0] == status["R-3"][0] == "ok"
    for run_id in ("R-1", "R-3"):
        assert len(run_of(fake_pluto, "ws-proj", f"neptune:{P}:{run_id}").metric("m")) == 2
