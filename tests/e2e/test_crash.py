"""Crash safety: kill -9 an export at random moments, resume, and compare with an uninterrupted export."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest
from migrate_core.format import plain
from migrate_core.testing import tables_equal
from migrate_local_fs.storage import LocalFsStorage

ARGS = ["--set", "source.demo.runs=4", "--set", "source.demo.points_per_series=150000",
        "--set", "source.demo.series_per_run=6", "--set", "storage.local_fs.part_size_mb=0.5",
        "--set", "source.demo.batch_rows=20000", "--workers", "2"]


def _export(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "migrate_core.cli", "--log-level", "warning", "export",
                             "--source", "demo", *ARGS], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _storage(cwd: Path) -> LocalFsStorage:
    return LocalFsStorage(cwd / "exports" / "data", cwd / "exports" / "files")


def _table(storage: LocalFsStorage, run) -> pa.Table:
    return plain(pa.Table.from_batches(list(storage.read(run))))


def _files(run) -> list[tuple[str, int, str]]:
    return sorted((f["path"], f["size"], f["sha256"]) for f in run.manifest["files"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("reference")
    proc = _export(cwd)
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    storage = _storage(cwd)
    runs = {r.key: r for r in storage.list_runs()}
    assert len(runs) == 4 and all(r.complete for r in runs.values())
    return storage, runs


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_kill_9_then_resume_equals_an_uninterrupted_export(tmp_path, reference, seed):
    ref_storage, ref_runs = reference
    rng = random.Random(seed)
    proc = _export(tmp_path)
    # kill at a random point of the export's own progress (not of interpreter start-up): after a random
    # number of part files appeared, plus a random fraction of a second
    data = tmp_path / "exports" / "data"
    target = rng.randint(1, 14)
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if data.exists() and sum(1 for p in data.rglob("*_part_*")) >= target:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0, 0.3))
    assert proc.poll() is None, "the export finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    storage = _storage(tmp_path)

    # nothing is marked complete that is not: every complete run already equals the reference
    for run in storage.list_runs():
        if run.complete:
            assert tables_equal(_table(storage, run), _table(ref_storage, ref_runs[run.key]))
            assert _files(run) == _files(ref_runs[run.key])

    resumed = _export(tmp_path)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    runs = {r.key: r for r in storage.list_runs()}
    assert set(runs) == set(ref_runs)
    for key, run in runs.items():
        assert run.complete and run.manifest["rows"] == ref_runs[key].manifest["rows"]
        assert tables_equal(_table(storage, run), _table(ref_storage, ref_runs[key]))
        assert _files(run) == _files(ref_runs[key])
    leftovers = [p for p in (tmp_path / "exports" / "data").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
