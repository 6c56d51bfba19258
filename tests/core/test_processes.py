"""`migrate export --processes N`: one command, N shard processes, one merged summary; Ctrl+C and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest
from migrate_core.format import plain
from migrate_core.processes import exit_code, merge
from migrate_core.testing import tables_equal
from migrate_local_fs.storage import LocalFsStorage

SMALL = ["--set", "source.demo.points_per_series=200", "--set", "source.demo.runs=12",
         "--set", "source.demo.fork=false"]


def stored(root):
    storage = LocalFsStorage(root / "exports" / "data", root / "exports" / "files")
    return storage, {r.run_id: r for r in storage.list_runs()}


@pytest.mark.slow
def test_processes_export_what_one_process_exports_with_one_summary(migrate, tmp_path):
    result = migrate("export", "--source", "demo", *SMALL, "--processes", "2", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["stages"]["export"]["ok"] == 12 and data["losses"] == {}
    assert sorted(r["run_id"] for r in data["runs"]) == sorted(f"DEMO-{i}" for i in range(1, 13))
    assert [p["exit_code"] for p in data["processes"]] == [0, 0]
    # the children's log lines come through, tagged with their shard
    assert '"shard": 0' in result.err and '"shard": 1' in result.err and "run_done" in result.err
    (tmp_path / "one").mkdir()
    one = subprocess.run([sys.executable, "-m", "migrate_core", "--log-level", "warning", "export", "--source", "demo",
                          *SMALL], cwd=tmp_path / "one", capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    (split_storage, split), (one_storage, whole) = stored(tmp_path), stored(tmp_path / "one")
    assert sorted(split) == sorted(whole)
    for run_id, run in split.items():
        got = plain(pa.Table.from_batches(list(split_storage.read(run))))
        assert run.complete and tables_equal(got, plain(pa.Table.from_batches(list(one_storage.read(whole[run_id])))))
    again = migrate("export", "--source", "demo", *SMALL, "--processes", "2")
    assert again.code == 0 and "export: 0 ok, 0 failed, 12 skipped" in again.out


def test_processes_refuse_a_shard_and_other_commands_ignore_them(migrate):
    both = migrate("export", "--source", "demo", "--processes", "2", "--shard", "0/2")
    assert both.code == 2 and "choose one" in both.err
    dry = migrate("export", "--source", "demo", *SMALL, "--set", "run.processes=3", "--dry-run", "--json")
    assert dry.code == 0 and len(dry.json()["export"]["runs"]) == 12  # a plan needs no processes
    bad = migrate("export", "--source", "demo", "--processes", "0")
    assert bad.code == 2


@pytest.mark.slow
def test_ctrl_c_stops_every_process_and_a_rerun_resumes(tmp_path):
    many = ["--set", "source.demo.runs=400", "--set", "source.demo.points_per_series=2000", "--set",
            "source.demo.fork=false"]
    argv = [sys.executable, "-m", "migrate_core", "--log-level", "warning", "export", "--source", "demo", *many,
            "--processes", "2", "--json"]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    data_dir = tmp_path / "exports" / "data"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(data_dir.rglob("*.manifest.json"))) < 10:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does: every process of the group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    import json

    summary = json.loads(out)
    assert summary["interrupted"] and 0 < summary["stages"]["export"]["ok"] < 400
    again = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(again.stdout)["stages"]["export"]
    assert resumed["ok"] + resumed["skipped"] == 400 and resumed["failed"] == 0
    storage, runs = stored(tmp_path)
    assert len(runs) == 400 and all(r.complete for r in runs.values())


def test_a_process_that_dies_without_a_summary_fails_the_command():
    good = ('{"command": "export", "interrupted": false, "seconds": 1, "stages": {"export": {"ok": 2, "failed": 0, '
            '"skipped": 0, "cancelled": 0, "rows": 10, "files": 0, "bytes": 0}}, "losses": {"x": 1}, '
            '"runs": [{"run_id": "a", "status": "ok"}, {"run_id": "b", "status": "ok"}]}')
    merged = merge([good, ""], [0, -9], [[], ["Traceback ...", "MemoryError"]], 2.0)
    assert merged["stages"]["export"]["ok"] == 2 and merged["losses"] == {"x": 1}
    assert "shard 1/2 ended with exit code -9" in merged["processes"][1]["error"]
    assert "MemoryError" in merged["processes"][1]["error"]
    assert exit_code(merged, strict=False) == 1
    fine = merge([good, good], [0, 0], [[], []], 2.0)
    assert fine["stages"]["export"]["ok"] == 4 and fine["losses"] == {"x": 2}
    assert exit_code(fine, strict=False) == 0 and exit_code(fine, strict=True) == 1


@pytest.mark.slow
def test_an_error_every_process_meets_is_said_once_with_exit_code_2(migrate, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    result = migrate("export", "--source", "neptune3", "-p", "ws/proj", "--processes", "2")
    assert result.code == 2, result.out + result.err
    errors = [line for line in result.err.splitlines() if line.startswith("migrate: error:")]
    assert len(errors) == 1 and "no Neptune API token" in errors[0], result.err
    assert result.out == ""


@pytest.mark.slow
def test_progress_counts_every_run_at_any_log_level(migrate, monkeypatch):
    from migrate_core.progress import Progress

    class Counting(Progress):
        done = 0

        def run_done(self, ok: bool) -> None:
            Counting.done += 1

    monkeypatch.setattr("migrate_core.cli._progress", lambda json_out: Counting())
    result = migrate("--log-level", "warning", "export", "--source", "demo", *SMALL, "--processes", "2")
    assert result.code == 0, result.err
    assert Counting.done == 12  # the children still send their run events; nothing of info level is shown
    assert "run_done" not in result.err


def test_a_childs_log_lines_drive_the_progress_and_are_relayed(capsys):
    import io
    import threading

    from migrate_core.processes import _relay, _Totals
    from migrate_core.progress import Counters

    lines = [
        '{"runs": 2, "final": false, "event": "progress_total", "level": "info"}',
        '{"stage": "export", "rows": 10, "estimate": true, "event": "progress_rows_total", "level": "info"}',
        '{"stage": "export", "run": "a", "rows": 7, "bytes": 5, "event": "run_done", "level": "info"}',
        '{"stage": "export", "run": "b", "rows": 0, "reason": "x", "event": "run_failed", "level": "warning"}',
        '{"name": "retries", "count": 2, "event": "progress_event", "level": "info"}',
        '{"runs": 2, "final": true, "event": "progress_total", "level": "info"}',
        "a library's own warning line",
        "migrate: error: said once, by the parent",
    ]
    progress, tail, totals = Counters(), [], _Totals(2)
    progress.start("export", None)
    _relay(io.StringIO("\n".join(lines) + "\n"), 1, progress, tail, threading.Lock(), totals)
    assert progress.runs_done == 2 and progress.stages["export"].rows == 7 and progress.stages["export"].bytes == 5
    assert progress._events.counts == {"retries": 2}
    assert progress.stages["export"].total == 10 and progress.stages["export"].estimate
    assert (progress.runs_total, progress.runs_final) == (2, False)  # the other shard has not said its total yet
    totals.set(0, 3, True, progress)
    assert (progress.runs_total, progress.runs_final) == (5, True)
    err = capsys.readouterr().err
    assert "a library's own warning line" in err and "said once" not in err
    assert "progress_total" not in err and "progress_rows_total" not in err
    assert tail[-1] == "migrate: error: said once, by the parent"
