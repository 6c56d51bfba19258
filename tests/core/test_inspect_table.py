"""`migrate inspect` on a terminal: one line per run that fits 100 columns; `--json` keeps every detail."""

from __future__ import annotations

import json

import pyarrow as pa
from migrate_core.format import make_batch
from migrate_core.testing import MemoryRun

from tests.memory_plugin import SOURCE_RUNS

PROJECT = "my-workspace/my-project"


def test_inspect_prints_one_line_per_run_within_100_columns(migrate, memory_sink, monkeypatch, tmp_path):
    for i in range(3):
        run_id = f"SAN-1234{i}"
        SOURCE_RUNS.append(MemoryRun(PROJECT, run_id, pa.Table.from_batches([
            make_batch(PROJECT, run_id, "metrics/loss", "float_series", 90, step=list(range(90)),
                       float_value=[0.5] * 90),
            make_batch(PROJECT, run_id, "parameters/lr", "float", 1, float_value=[0.1])])))
    assert migrate("run", "--source", "memory", "--sink", "memory").code == 0
    # one run's export interrupted: its manifest says "writing" again, as a killed re-export leaves it
    manifest = next((tmp_path / "exports" / "data").rglob("SAN-12342-*.manifest.json"))
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "status": "writing"}))

    monkeypatch.setenv("COLUMNS", "100")
    out = migrate("inspect").out
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines), out
    table, problems = lines[:-1], lines[-1:]  # under the table, each problem in full, one line per run
    for i, state in ((0, "complete"), (1, "complete"), (2, "INCOMPLETE")):
        (line,) = [line for line in table if f"SAN-1234{i}" in line]  # one line per run, never wrapped
        assert PROJECT in line and state in line, line
    assert problems[0].startswith(f"{PROJECT} SAN-12342: ") and "…" not in problems[0], out
    (done,) = [line for line in lines if "SAN-12340" in line]
    assert "91" in done and "float_series 98%" in done and "memory done" in done
    assert "3 runs in" in out

    full = {r["run_id"]: r for r in migrate("inspect", "--json").json()}
    assert full["SAN-12340"]["rows_by_type"] == {"float": 1, "float_series": 90}
    assert full["SAN-12340"]["loads"] == {"memory:": "done"}
