"""Ctrl+C through the real CLI: prompt stop, exit 130, nothing marked complete that is not, resumable."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ARGS = ["--set", "source.demo.runs=3", "--set", "source.demo.points_per_series=400000",
        "--set", "source.demo.series_per_run=6", "--set", "source.demo.batch_rows=20000", "--workers", "2"]


def _cli(cwd, *args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "migrate_core.cli", "--log-level", "warning", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
def test_sigint_stops_promptly_and_resumes(tmp_path):
    proc = _cli(tmp_path, "export", "--source", "demo", *ARGS)
    data = tmp_path / "exports" / "data"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if data.exists() and any(p.name.endswith(".tmp") for p in data.rglob("*")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "export ended before it could be interrupted"
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out
    inspect = _cli(tmp_path, "inspect", "--json")
    runs = json.loads(inspect.communicate(timeout=60)[0])
    # it stopped at the next batch instead of finishing the export
    assert not all(r["complete"] for r in runs) or len(runs) < 3
    resumed = _cli(tmp_path, "export", "--source", "demo", *ARGS, "--json")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads(out)["stages"]["export"]["failed"] == 0
    runs = json.loads(_cli(tmp_path, "inspect", "--json").communicate(timeout=60)[0])
    assert len(runs) == 3 and all(r["complete"] for r in runs)
