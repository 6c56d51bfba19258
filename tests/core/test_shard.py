"""`--shard I/N`: N export processes split one export into one storage, never overlapping, never missing a run."""

from __future__ import annotations

import os
import subprocess
import sys

import pyarrow as pa
import pytest
from migrate_core.api import Selection
from migrate_core.config import parse_shard
from migrate_core.format import plain
from migrate_core.testing import tables_equal
from migrate_local_fs.storage import LocalFsStorage

SMALL = ["--set", "source.demo.points_per_series=200", "--set", "source.demo.runs=12"]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_run_is_in_exactly_one_shard(count):
    keys = [(f"ws/p{i % 5}", f"RUN-{i}") for i in range(2000)]
    owners = [[i for i in range(count) if Selection(shard=(i, count)).in_shard(key)] for key in keys]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o == [i]) for i in range(count)]
    assert min(sizes) > len(keys) / count * 0.8  # spread evenly, not all in one
    assert Selection().in_shard(keys[0])


@pytest.mark.parametrize("text", ["", "1", "a/b", "2/2", "0/0", "-1/2", "0/2000", "1/2/3"])
def test_malformed_shards_say_how_to_write_one(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)
    assert parse_shard(" 1 / 3 ") == (1, 3)


def test_shards_export_disjoint_runs_that_together_are_the_whole_export(migrate):
    first = migrate("export", "--source", "demo", "--shard", "0/2", *SMALL, "--json").json()
    second = migrate("export", "--source", "demo", "--shard", "1/2", *SMALL, "--json").json()
    ids = [{r["run_id"] for r in data["runs"] if r["status"] == "ok"} for data in (first, second)]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    assert ids[0] | ids[1] == {f"DEMO-{i}" for i in range(1, 13)}
    again = migrate("export", "--source", "demo", *SMALL)
    assert "export: 0 ok, 0 failed, 12 skipped" in again.out
    plan = migrate("export", "--source", "demo", "--shard", "1/2", "--force", "--dry-run", *SMALL, "--json").json()
    assert {r["run_id"] for r in plan["export"]["runs"]} == ids[1]


def test_shards_refuse_load_and_run_and_bad_values(migrate):
    bad = migrate("export", "--source", "demo", "--shard", "2/2")
    assert bad.code == 2 and "0 <= I < N" in bad.err
    for command in (["load", "--sink", "memory"], ["run", "--source", "demo", "--sink", "memory"]):
        refused = migrate(*command, "--set", "run.shard=0/2")
        assert refused.code == 2 and "splits exports only" in refused.err, refused.err


@pytest.mark.slow
def test_shards_exported_at_the_same_time_equal_one_export(tmp_path):
    """Two processes write one storage at once; the result is what one export writes."""
    args = ["--source", "demo", *SMALL, "--set", "source.demo.fork=false"]

    def export(cwd, *extra):
        return subprocess.Popen([sys.executable, "-m", "migrate_core.cli", "--log-level", "warning", "export",
                                 *args, *extra], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})

    (tmp_path / "sharded").mkdir()
    (tmp_path / "whole").mkdir()
    procs = [export(tmp_path / "sharded", "--shard", f"{i}/2") for i in range(2)]
    whole = export(tmp_path / "whole")
    for proc in [*procs, whole]:
        assert proc.wait(timeout=120) == 0, proc.stderr.read().decode()

    def runs(root):
        storage = LocalFsStorage(root / "exports" / "data", root / "exports" / "files")
        return storage, {r.run_id: r for r in storage.list_runs()}

    (s_storage, sharded), (w_storage, wholes) = runs(tmp_path / "sharded"), runs(tmp_path / "whole")
    assert sorted(sharded) == sorted(wholes) and len(sharded) == 12
    for run_id, run in sharded.items():
        assert run.complete
        got = plain(pa.Table.from_batches(list(s_storage.read(run))))
        want = plain(pa.Table.from_batches(list(w_storage.read(wholes[run_id]))))
        assert tables_equal(got, want), run_id
