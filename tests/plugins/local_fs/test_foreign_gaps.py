"""A neptune-exporter dump (no manifest) with a hole in its numbered parts is incomplete, never counted
complete because part_0 is there: the exporter numbers parts from part_0 up without a gap, so a missing
one is data gone. `inspect` names the missing part and `load` skips the run with that reason."""

from __future__ import annotations

from migrate_core.format import sanitize_path_part as S
from migrate_local_fs.storage import LocalFsStorage

from . import exporter_dump

GAP = "part_1 missing (a neptune-exporter dump numbers its parts from part_0 without a gap)"


def _dump_with_a_gap(root):
    """The reference dump, with run-a's parts renamed part_0, part_2: part_1 is gone."""
    dump = exporter_dump.build(root)
    project_dir = dump["data"] / S(exporter_dump.PROJECT)
    (project_dir / f"{S('run-a')}_part_1.parquet").rename(project_dir / f"{S('run-a')}_part_2.parquet")
    return dump


def test_a_gap_in_the_parts_is_incomplete_with_the_missing_part_named(tmp_path):
    dump = _dump_with_a_gap(tmp_path)
    storage = LocalFsStorage(dump["data"], dump["files"])
    runs = {r.run_id: r for r in storage.list_runs()}
    assert not runs["run-a"].complete and runs["run-a"].problem == GAP
    assert runs["SAN-1"].complete and runs["SAN-1"].problem is None
    again = storage.get_run(exporter_dump.PROJECT, "run-a")
    assert not again.complete and again.problem == GAP


def test_several_missing_parts_are_all_named(tmp_path):
    dump = exporter_dump.build(tmp_path)
    project_dir = dump["data"] / S(exporter_dump.PROJECT)
    (project_dir / f"{S('run-a')}_part_1.parquet").rename(project_dir / f"{S('run-a')}_part_4.parquet")
    run = LocalFsStorage(dump["data"], dump["files"]).get_run(exporter_dump.PROJECT, "run-a")
    assert not run.complete
    assert run.problem == ("part_1, part_2, part_3 missing (a neptune-exporter dump numbers its parts from part_0 "
                           "without a gap)")


def test_inspect_shows_the_gap_and_load_skips_the_run(tmp_path, migrate, memory_sink):
    dump = _dump_with_a_gap(tmp_path / "dump")
    paths = ["--data-path", str(dump["data"]), "--files-path", str(dump["files"])]
    inspected = migrate("inspect", "--json", *paths)
    assert inspected.code == 0, inspected.err
    rows = {r["run_id"]: r for r in inspected.json()}
    assert not rows["run-a"]["complete"] and rows["run-a"]["problem"] == GAP
    assert rows["SAN-1"]["complete"]
    shown = migrate("inspect", *paths)
    assert "part_1 missing" in shown.out
    loaded = migrate("load", "--sink", "memory", *paths, "--json")
    status = {r["run_id"]: r for r in loaded.json()["runs"]}
    assert status["run-a"]["status"] == "skipped"
    assert GAP in status["run-a"]["reason"]
    assert (exporter_dump.PROJECT, "run-a") not in memory_sink.load_calls
    assert (exporter_dump.PROJECT, "SAN-1") in memory_sink.load_calls  # the complete run is still loaded
