import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from migrate_core.errors import DataError, UnsafePathError
from migrate_core.format import SCHEMA, make_batch, steps_from_units
from migrate_core.format import sanitize_path_part as S
from migrate_core.testing import MemoryRun, MemorySource, StorageContract, export_into, sample_runs
from migrate_local_fs.storage import LocalFsStorage

from . import exporter_dump


class TestLocalFsContract(StorageContract):
    @pytest.fixture
    def storage(self, tmp_path):
        return LocalFsStorage(tmp_path / "data", tmp_path / "files")


def _storage(tmp_path: Path, **kwargs) -> LocalFsStorage:
    return LocalFsStorage(tmp_path / "data", tmp_path / "files", **kwargs)


def test_names_schema_and_compression_match_the_exporter(tmp_path):
    storage = _storage(tmp_path)
    written = sample_runs(project_id="my-org/my-project", n=1)[0].table
    export_into(storage, MemorySource(sample_runs(project_id="my-org/my-project", n=1)))
    data_root = tmp_path / "data"
    assert [p.name for p in data_root.iterdir() if p.is_dir()] == ["my-org_my-project-de40b447a2778f2b"]
    names = sorted(p.name for p in (data_root / "my-org_my-project-de40b447a2778f2b").iterdir())
    stem = S("RUN-1")
    assert names == [f"{stem}.manifest.json", f"{stem}_part_0.parquet"]
    part = data_root / "my-org_my-project-de40b447a2778f2b" / f"{stem}_part_0.parquet"
    pf = pq.ParquetFile(part)
    assert pf.schema_arrow.equals(SCHEMA, check_metadata=False)
    group = pf.metadata.row_group(0)
    assert {group.column(i).compression for i in range(group.num_columns)} == {"SNAPPY"}
    # what any reader sees with no options (neptune-exporter's loader, pandas): the exact plain schema, no
    # key-value metadata (no Arrow schema telling readers the identity columns were dictionaries)
    assert pf.metadata.metadata is None
    table = pq.read_table(part)
    assert table.schema.equals(SCHEMA) and table.schema.metadata is None
    assert table.filter(pa.compute.not_equal(table["attribute_type"], "file")).equals(written)
    # side files never look like parts, and no directory was added at the data root
    assert all("_part_" not in n for n in names if not n.endswith(".parquet"))


def test_pandas_reads_plain_strings_not_categories(tmp_path):
    pytest.importorskip("pandas", reason="pandas is not part of local_fs's own dependencies")
    storage = _storage(tmp_path)
    export_into(storage, MemorySource(sample_runs(n=1)))
    frame = pq.read_table(storage.list_runs()[0].parts[0]).to_pandas()
    assert frame["run_id"].dtype.name != "category" and set(frame["run_id"]) == {"RUN-1"}
    assert frame["attribute_path"].dtype.name != "category"


def test_parts_rotate_inside_one_huge_batch(tmp_path):
    target = 256 * 1024
    storage = _storage(tmp_path, part_target_bytes=target, row_group_rows=10_000_000)
    n = 400_000
    k = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(1)
    batch = make_batch("p/x", "big", "m", "float_series", n, step=steps_from_units(k * 1_000_000),
                       timestamp=pa.array(k, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
                       float_value=rng.standard_normal(n))
    export_into(storage, MemorySource([MemoryRun("p/x", "big", pa.Table.from_batches([batch]))]))
    run = storage.get_run("p/x", "big")
    assert run.complete and len(run.parts) > 3
    sizes = [os.path.getsize(p) for p in run.parts]
    assert max(sizes) <= 2 * target, sizes
    assert [int(Path(p).name.rsplit("_part_", 1)[1].split(".")[0]) for p in run.parts] == list(range(len(sizes)))
    table = pa.Table.from_batches(list(storage.read(run)))
    assert table.num_rows == n
    assert table["float_value"].to_numpy().tolist() == batch.column("float_value").to_numpy().tolist()
    assert run.manifest["rows"] == n and len(run.manifest["parts"]) == len(sizes)


def test_reads_stream_in_bounded_batches(tmp_path):
    storage = _storage(tmp_path)
    export_into(storage, MemorySource(sample_runs(points=5000, n=1)))
    run = storage.list_runs()[0]
    sizes = [b.num_rows for b in storage.read(run, batch_rows=1000)]
    assert max(sizes) <= 1000 and sum(sizes) == run.manifest["rows"]


def test_reads_an_exporter_dump(tmp_path):
    expected = exporter_dump.build(tmp_path)
    storage = LocalFsStorage(expected["data"], expected["files"])
    runs = {r.run_id: r for r in storage.list_runs()}
    assert set(runs) == set(expected["runs"]) | set(expected["incomplete"])
    for run_id, rows in expected["runs"].items():
        run = runs[run_id]
        assert run.complete and not run.has_manifest
        assert run.project_id == exporter_dump.PROJECT
        assert sum(b.num_rows for b in storage.read(run)) == rows
    assert not runs["SAN-2"].complete and "interrupted" in runs["SAN-2"].problem
    assert storage.lineage(runs["run-a"]) == {"parent_run_id": "run-root", "fork_step": 2.0}
    for path, content in expected["file_bytes"].items():
        owner = runs["run-a"] if path.startswith("run-a") else runs["SAN-1"]
        with storage.open_file(owner, path) as handle:
            assert handle.read() == content
    listed = dict(storage.iter_files(runs["SAN-1"], "my-org/my-project/SAN-1/source_code/files"))
    assert sorted(listed) == [
        "my-org/my-project/SAN-1/source_code/files/README.md",
        "my-org/my-project/SAN-1/source_code/files/src/train.py",
    ]


def test_foreign_runs_are_reported_by_inspect(tmp_path, migrate):
    expected = exporter_dump.build(tmp_path / "dump")
    result = migrate("inspect", "--json", "--data-path", str(expected["data"]), "--files-path", str(expected["files"]))
    assert result.code == 0, result.err
    rows = {r["run_id"]: r for r in result.json()}
    assert rows["run-a"]["complete"] and not rows["run-a"]["has_manifest"]
    assert rows["run-a"]["rows_by_type"]["histogram_series"] == 1
    assert rows["SAN-1"]["rows_by_type"]["file_set"] == 1 and rows["SAN-1"]["rows_by_type"]["artifact"] == 1
    assert not rows["SAN-2"]["complete"]


def test_truncated_part_is_a_clear_error_for_that_run_only(tmp_path):
    storage = _storage(tmp_path)
    export_into(storage, MemorySource(sample_runs(n=2)))
    broken = storage.get_run("ws/proj", "RUN-1")
    with open(broken.parts[0], "r+b") as handle:
        handle.truncate(100)
    with pytest.raises(DataError, match=r"RUN-1.*_part_0\.parquet: not a readable parquet file"):
        list(storage.read(broken))
    assert sum(b.num_rows for b in storage.read(storage.get_run("ws/proj", "RUN-2"))) > 0


def test_non_parquet_and_wrong_schema_parts_are_named(tmp_path):
    storage = _storage(tmp_path)
    folder = tmp_path / "data" / S("ws/p")
    folder.mkdir(parents=True)
    (folder / f"{S('junk')}_part_0.parquet").write_text("this is not parquet")
    pq.write_table(pa.table({"project_id": ["ws/p"], "run_id": ["odd"], "step": [1.5]}),
                   folder / f"{S('odd')}_part_0.parquet")
    runs = {r.run_id: r for r in storage.list_runs()}
    with pytest.raises(DataError, match="not a readable parquet file"):
        list(storage.read(runs[S("junk")]))
    with pytest.raises(DataError, match="wrong schema: column 'step' is double"):
        list(storage.read(runs["odd"]))


def test_leftover_tmp_parts_are_incomplete_and_cleaned_on_reexport(tmp_path):
    storage = _storage(tmp_path)
    run = sample_runs(n=1)[0]
    export_into(storage, MemorySource([run]))
    folder = tmp_path / "data" / S("ws/proj")
    # simulate a crash in a second export: a stale .tmp part and a "writing" manifest
    writer = storage.begin_run("ws/proj", "RUN-1", {"plugin": "test"})
    writer.write(run.table)
    writer._flush()
    assert any(p.name.endswith(".tmp") for p in folder.iterdir())
    assert not storage.get_run("ws/proj", "RUN-1").complete
    export_into(storage, MemorySource([run]))
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    stored = storage.get_run("ws/proj", "RUN-1")
    assert stored.complete
    assert sum(b.num_rows for b in storage.read(stored)) == run.table.num_rows + 1


def test_leftover_parts_without_a_manifest_are_cleaned(tmp_path):
    # a power loss can keep fsynced .tmp parts but lose the never-fsynced "writing" manifest
    storage = _storage(tmp_path)
    run = sample_runs(n=1)[0]
    folder = tmp_path / "data" / S("ws/proj")
    folder.mkdir(parents=True)
    for n in (0, 1):
        pq.write_table(run.table, folder / f"{S('RUN-1')}_part_{n}.parquet.tmp")
    export_into(storage, MemorySource([run]))
    assert sorted(p.name for p in folder.iterdir() if "part" in p.name) == [f"{S('RUN-1')}_part_0.parquet"]
    assert sum(b.num_rows for b in storage.read(storage.get_run("ws/proj", "RUN-1"))) == run.table.num_rows + 1


def test_a_new_run_does_not_list_the_project_directory(tmp_path, monkeypatch):
    import migrate_local_fs.storage as module

    storage = _storage(tmp_path)
    runs = sample_runs(n=3)
    export_into(storage, MemorySource(runs[:2]))
    listed = []
    real = module.os.listdir
    monkeypatch.setattr(module.os, "listdir", lambda path=".": listed.append(path) or real(path))
    export_into(storage, MemorySource(runs[2:]))  # new: no manifest, no part_0, nothing to clean
    assert listed == []
    export_into(storage, MemorySource(runs[:1]))  # again: its old parts must go
    assert len(listed) == 1


def test_escaping_and_symlinked_paths_are_refused(tmp_path):
    storage = _storage(tmp_path)
    export_into(storage, MemorySource(sample_runs(n=1)))
    run = storage.list_runs()[0]
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    project_files = tmp_path / "files" / S("ws/proj")
    (project_files / "link").symlink_to(outside)
    (project_files / "dirlink").symlink_to(tmp_path)
    for hostile in ("../secret.txt", "../../secret.txt", str(outside), "link", "dirlink/secret.txt", "a\x00b", "C:/x"):
        with pytest.raises(UnsafePathError):
            storage.open_file(run, hostile)


def test_hostile_attribute_paths_cannot_write_outside(tmp_path):
    storage = _storage(tmp_path)
    writer = storage.begin_run("ws/p", "r", {})
    stored = writer.write_file("../../../escape", "../../x.txt", b"data")
    writer.commit()
    assert ".." not in stored.split("/")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x.txt").exists()
    with storage.open_file(storage.get_run("ws/p", "r"), stored) as handle:
        assert handle.read() == b"data"


def test_empty_storage(tmp_path):
    assert _storage(tmp_path).list_runs() == []


def test_huge_values_come_in_byte_bounded_batches(tmp_path):
    from migrate_local_fs import storage as module

    storage = _storage(tmp_path)
    n = 40
    rng = np.random.default_rng(3)
    values = [rng.bytes(512 * 1024).hex() for _ in range(n)]  # 1 MB each, all different
    batch = make_batch("ws/p", "big", "notes", "string_series", n, step=steps_from_units(np.arange(n) * 1_000_000),
                       string_value=values)
    export_into(storage, MemorySource([MemoryRun("ws/p", "big", pa.Table.from_batches([batch]))]))
    run = storage.get_run("ws/p", "big")
    old = module.READ_BATCH_BYTES
    module.READ_BATCH_BYTES = 8 * 1024 * 1024
    try:
        sizes = [b.num_rows for b in storage.read(run, columns=["string_value"])]
    finally:
        module.READ_BATCH_BYTES = old
    assert sum(sizes) == n and max(sizes) <= 8


def test_state_lives_outside_the_data_root(tmp_path):
    storage = _storage(tmp_path)
    assert storage.state_dir() == tmp_path / "migrate-state"
    assert storage.plugin_state_dir("pluto") == tmp_path / "migrate-state" / "plugins" / "pluto"
    assert not (tmp_path / "data").exists()


def test_get_run_trusts_a_complete_manifest_only_while_its_parts_are_there(tmp_path):
    storage = _storage(tmp_path, part_target_bytes=4096)
    export_into(storage, MemorySource(sample_runs(points=3000, n=2)))
    listed = {r.run_id: r for r in storage.list_runs()}
    fast = storage.get_run("ws/proj", "RUN-1")
    assert fast == listed["RUN-1"] and len(fast.parts) > 1  # the manifest's answer equals the directory's
    # a listed part goes missing: the full look names it, and the run is not complete
    Path(fast.parts[-1]).unlink()
    broken = storage.get_run("ws/proj", "RUN-1")
    assert not broken.complete and "missing" in broken.problem
    # a manifest still "writing" (an interrupted re-export) is never taken at its word
    manifest_path = Path(listed["RUN-2"].location + ".manifest.json")
    manifest_path.write_text(manifest_path.read_text().replace('"complete"', '"writing"'))
    assert not storage.get_run("ws/proj", "RUN-2").complete
    assert storage.get_run("ws/proj", "RUN-404") is None and storage.get_run("other/proj", "RUN-1") is None
    # a manifest that parses but whose parts list is not what we write never breaks get_run
    good = json.loads(manifest_path.read_text())
    for parts in ("x", ["x"], [{"name": "../../evil_part_0.parquet"}], [{"rows": 1}]):
        manifest_path.write_text(json.dumps({**good, "status": "complete", "parts": parts}))
        stored = storage.get_run("ws/proj", "RUN-2")
        assert stored is not None and not stored.complete and stored.problem, parts


def test_everything_a_manifest_points_at_is_durable_before_it(tmp_path, monkeypatch):
    import migrate_local_fs.storage as module

    storage = _storage(tmp_path)
    calls: list[tuple[str, str]] = []
    real_fsync_dir, real_write = module.fsync_dir, module.write_json_atomic
    monkeypatch.setattr(module, "fsync_dir", lambda path: calls.append(("fsync_dir", str(path))) or real_fsync_dir(path))
    monkeypatch.setattr(module, "write_json_atomic", lambda path, data, durable=True: calls.append(
        ("manifest", data["status"] + (" durable" if durable else ""))) or real_write(path, data, durable=durable))
    synced: list[str] = []
    monkeypatch.setattr(module, "sync_filesystem", lambda path: synced.append(str(path)))
    writer = storage.begin_run("ws/p", "r", {})
    stored = writer.write_file("model/ckpt", "w.pt", b"weights")
    writer.write(make_batch("ws/p", "r", "model/ckpt", "file", 1, file_value=[{"path": stored}]))
    writer.commit()
    final = calls.index(("manifest", "complete"))
    durable_dirs = {path for kind, path in calls[:final] if kind == "fsync_dir"}
    folder = tmp_path / "files" / S("ws/p") / stored
    expected = {str(p) for p in [folder.parent, *folder.parent.parents] if tmp_path in p.parents or p == tmp_path}
    assert {str(tmp_path / "data" / S("ws/p"))} | expected <= durable_dirs
    assert synced == []
    storage.close()  # the manifests are flushed once, at the end
    assert synced == [str(tmp_path / "data")]
    storage.close()
    assert len(synced) == 1


def test_a_manifest_write_killed_midway_leaves_nothing_after_the_next_export(tmp_path):
    storage = _storage(tmp_path)
    run = sample_runs(n=1)[0]
    folder = tmp_path / "data" / S("ws/proj")
    folder.mkdir(parents=True)
    stray = folder / f".{S('RUN-1')}.manifest.json.tmp"  # what a kill -9 inside the manifest write leaves
    stray.write_text('{"format": "migrate.run-manif')
    export_into(storage, MemorySource([run]))
    assert not stray.exists() and storage.get_run("ws/proj", "RUN-1").complete
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
