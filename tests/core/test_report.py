"""`migrate report` end to end through the CLI: its facts equal the manifests and the ledger, reasons for
failed, deferred and incomplete runs appear, the HTML works in a real browser and escapes hostile names."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
from migrate_core.format import make_batch, steps_from_float
from migrate_core.ledger import LEDGER_FILE, Ledger
from migrate_core.testing import MemoryRun

from tests.browser import open_in_chromium  # noqa: F401 - fixture
from tests.memory_plugin import SOURCE_RUNS

SMALL = ["--set", "source.demo.points_per_series=200"]
STATE = Path("exports") / "migrate-state"


def _manifest(tmp_path: Path, run_id: str) -> tuple[Path, dict]:
    path = next((tmp_path / "exports" / "data").rglob(f"{run_id}-*.manifest.json"))
    return path, json.loads(path.read_text())


def test_report_names_failed_deferred_and_incomplete_runs_as_the_ledger_does(migrate, memory_sink, tmp_path):
    memory_sink.fail["DEMO-1"] = RuntimeError("server said no")
    assert migrate("run", "--source", "demo", "--sink", "memory", *SMALL).code == 1
    # DEMO-2's export is made incomplete by hand, as an export killed mid-write leaves it
    path, manifest = _manifest(tmp_path, "DEMO-2")
    path.write_text(json.dumps({**manifest, "status": "writing"}))

    result = migrate("report", "--format", "json")
    assert result.code == 0, result.err
    data = result.json()
    runs = {r["run_id"]: r for r in data["runs"]}
    assert runs["DEMO-1"]["status"] == "failed"
    assert runs["DEMO-1"]["skip_reason"] == "load failed: RuntimeError: server said no (use --retry-failed)"
    assert runs["DEMO-3"]["status"] == "deferred"
    assert runs["DEMO-3"]["skip_reason"].startswith("deferred: waiting for its parent run 'DEMO-1'")
    assert runs["DEMO-2"]["status"] == "incomplete" and runs["DEMO-2"]["skip_reason"].startswith("incomplete export")
    s = data["summary"]
    # DEMO-2's load carried the export that storage no longer holds complete: not counted as loaded
    assert runs["DEMO-2"]["loads"][0]["current"] is False and runs["DEMO-2"]["loaded"] is False
    assert (s["runs"], s["exported"], s["loaded"], s["failed"], s["skipped"]) == (3, 2, 0, 1, 3)
    assert s["lossless"] is False and "1 runs failed to load" in s["not_lossless_because"]
    assert s["verified"] is None and runs["DEMO-1"]["read_back"] == "no sink given: storage only"

    # every load row is the ledger's row, and every export the manifest's
    ledger = Ledger(tmp_path / STATE)
    entries = {e.run_id: e for e in ledger.entries()}
    ledger.close()
    for run_id, row in runs.items():
        (load,) = row["loads"]
        entry = entries[run_id]
        assert (load["target"], load["state"], load["error"]) == (entry.target, entry.state, entry.error)
        assert load["rows"] == entry.counts.get("rows", 0) and load["losses"] == entry.counts.get("losses", {})
    for run_id in ("DEMO-1", "DEMO-3"):
        _, manifest = _manifest(tmp_path, run_id)
        export = runs[run_id]["export"]
        assert (export["rows"], export["rows_by_type"]) == (manifest["rows"], manifest["rows_by_type"])
        assert (export["started_at"], export["completed_at"]) == (manifest["started_at"], manifest["completed_at"])
        assert export["losses"] == manifest["losses"] and export["files"] == len(manifest["files"])
    assert entries["DEMO-2"].started_at is not None  # the ledger stamps the start of a load
    assert runs["DEMO-2"]["loads"][0]["started_at"] is not None

    md = migrate("report", "--format", "md")
    assert md.code == 0, md.err
    assert "| demo/project | DEMO-1 | failed | complete | no | — | " in md.out
    assert "load failed: RuntimeError: server said no (use --retry-failed)" in md.out
    assert "deferred: waiting for its parent run 'DEMO-1'" in md.out
    assert "| lossless | no: " in md.out

    # with the sink: the loaded run is read back (verified), the others say why they were not
    checked = migrate("report", "--sink", "memory", "--format", "json").json()
    runs = {r["run_id"]: r for r in checked["runs"]}
    assert runs["DEMO-2"]["verified"] is None  # incomplete: not loaded since
    assert runs["DEMO-1"]["read_back"] == "not loaded: nothing to read back"
    assert checked["summary"]["verified"] == 0


def test_report_of_a_verified_load_and_output_files(migrate, memory_sink, tmp_path):
    assert migrate("run", "--source", "demo", "--sink", "memory", *SMALL).code == 0
    data = migrate("report", "--sink", "memory", "--format", "json").json()
    assert [r["status"] for r in data["runs"]] == ["verified"] * 3
    s = data["summary"]
    assert (s["loaded"], s["verified"], s["mismatched"], s["lossless"]) == (3, 3, 0, True)
    assert s["rows_loaded"] == s["rows"] == sum(r["export"]["rows"] for r in data["runs"])

    written = migrate("report", "--format", "md", "--output", "out/report.md")
    assert written.code == 0, written.err
    target = tmp_path / "out" / "report.md"
    assert written.out.strip() == str(target)
    assert target.read_text().startswith("# migrate report") and "| demo/project | DEMO-2 | loaded |" in target.read_text()
    as_json = migrate("report", "--format", "json", "-o", "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["runs"] == 3 and as_json.out.strip()

    bad = migrate("report", "--format", "pdf")
    assert bad.code == 2 and "pdf" in bad.err


def test_old_ledgers_gain_the_start_time_column(tmp_path):
    db = sqlite3.connect(tmp_path / LEDGER_FILE)
    db.execute("""CREATE TABLE loads (project_id TEXT NOT NULL, run_id TEXT NOT NULL, target TEXT NOT NULL,
                  state TEXT NOT NULL, error TEXT, counts TEXT NOT NULL DEFAULT '{}', updated_at REAL NOT NULL,
                  export_id TEXT, PRIMARY KEY (project_id, run_id, target))""")
    db.execute("INSERT INTO loads VALUES ('p', 'r', 't', 'done', NULL, '{}', 1700000000.0, 'x')")
    db.commit()
    db.close()
    ledger = Ledger(tmp_path)
    (old,) = ledger.entries()
    assert old.state == "done" and old.started_at is None and old.updated_at == 1700000000.0
    ledger.set("p", "r", "t", "in_progress")
    started = ledger.get("p", "r", "t").started_at
    assert started is not None
    ledger.set("p", "r", "t", "done", counts={"rows": 1})
    entry = ledger.get("p", "r", "t")
    assert entry.started_at == started and entry.updated_at >= started and entry.export_id == "x"
    ledger.close()


HOSTILE_RUN = '</script><script>alert("run")</script><img src=x onerror=alert("img")>'
HOSTILE_PATH = 'metrics/<b onmouseover=alert("path")>loss</b>'


def test_html_report_in_chromium_storage_only_and_hostile_names(migrate, open_in_chromium, tmp_path):  # noqa: F811
    steps = np.arange(2000, dtype=float)
    SOURCE_RUNS.append(MemoryRun("ws/p", HOSTILE_RUN, pa.Table.from_batches([
        make_batch("ws/p", HOSTILE_RUN, HOSTILE_PATH, "float_series", len(steps),
                   step=steps_from_float(steps), float_value=np.sin(steps / 100))])))
    SOURCE_RUNS.append(MemoryRun("ws/p", "plain-run", pa.Table.from_batches([
        make_batch("ws/p", "plain-run", "x", "int", 1, int_value=[1])])))
    assert migrate("export", "--source", "memory").code == 0

    result = migrate("report")  # html to ./migrate-report.html by default, its absolute path on stdout
    assert result.code == 0, result.err
    path = tmp_path / "migrate-report.html"
    assert result.out.strip() == str(path)
    text = path.read_text()
    assert HOSTILE_RUN not in text and "<img" not in text
    assert text.count("* plotly.js v") == 1  # plotly.js embedded, once
    assert "<script src" not in text.replace(" ", "")  # nothing loaded from elsewhere

    opened = open_in_chromium(path)
    page = opened.page
    assert opened.errors == [] and opened.dialogs == []
    assert [url for url in opened.requests if not url.startswith("file://")] == []
    assert page.locator("img").count() == 0 and page.locator("b[onmouseover]").count() == 0
    ids = page.locator("#run-table td.run-id").all_inner_texts()
    assert sorted(ids) == sorted([HOSTILE_RUN, "plain-run"])
    assert page.locator("#run-table tr.run").count() == 2
    assert "storage only" in page.locator("#series").inner_text().lower()
    traces = page.evaluate("() => document.getElementById('plot-series-0').data.map("
                           "t => ({name: t.name, n: t.x.length}))")
    assert traces == [{"name": "storage (source)", "n": 500}]  # sampled to 500 of 2000 points, no sink side
    # the plot's title shows the path as text, not as markup
    titles = page.locator("#plot-series-0 .annotation-text").all_text_contents()
    assert titles == [HOSTILE_PATH]
    assert page.locator("#plot-sizes .main-svg").count() > 0 and page.locator("#plot-timeline .bars path").count() == 2
