"""`migrate report --sink pluto` after a real load into the fake Pluto: the losses are the load's, every run
is read back, and the HTML overlays storage and Pluto's read-back of the same series in Chromium."""

from __future__ import annotations

import json
from collections import Counter

from migrate_core.ledger import Ledger

from tests.browser import open_in_chromium  # noqa: F401 - fixture
from tests.fakes.pluto import FakePluto

DEMO = ["--set", "source.demo.points_per_series=300", "--set", "sink.pluto.retries=1",
        "--set", "sink.pluto.backoff=0.01"]
HISTOGRAMS = "histograms with non-uniform edges drawn as uniform bins (exact edges kept in the payload's `edges`)"


def test_report_after_a_load_into_pluto(migrate, fake_pluto: FakePluto, tmp_path, open_in_chromium):  # noqa: F811
    loaded = migrate("run", "--source", "demo", "--sink", "pluto", *DEMO, "--json")
    assert loaded.code == 0, loaded.err
    load_losses = loaded.json()["losses"]
    assert set(load_losses) == {HISTOGRAMS}

    result = migrate("report", "--sink", "pluto", *DEMO, "--format", "json")
    assert result.code == 0, result.err
    data = result.json()
    assert data["sink"]["sample_series"] is True and data["sink"]["target"].startswith("pluto:")
    s = data["summary"]
    assert (s["runs"], s["loaded"], s["verified"], s["mismatched"]) == (3, 3, 3, 0)
    assert [r["status"] for r in data["runs"]] == ["verified"] * 3
    # every loss is the one the load counted, with its count; and the ledger holds the same per run
    assert s["losses"] == load_losses and s["lossless"] is False
    ledger = Ledger(tmp_path / "exports" / "migrate-state")
    per_run = {e.run_id: e.counts["losses"] for e in ledger.entries()}
    ledger.close()
    assert {r["run_id"]: r["loads"][0]["losses"] for r in data["runs"]} == per_run
    assert sum((Counter(v) for v in per_run.values()), Counter()) == Counter(load_losses)

    md = migrate("report", "--sink", "pluto", *DEMO, "--format", "md").out
    assert f"| {load_losses[HISTOGRAMS]:,} | {HISTOGRAMS} |" in md
    assert "| demo/project | DEMO-3 | verified | complete | yes | yes |" in md

    html = migrate("report", "--sink", "pluto", *DEMO, "--output", "report.html")
    assert html.code == 0 and html.out.strip() == str(tmp_path / "report.html")
    opened = open_in_chromium(tmp_path / "report.html")
    assert opened.errors == [] and [u for u in opened.requests if not u.startswith("file://")] == []
    page = opened.page
    assert page.locator("#run-table td.run-id").all_inner_texts() == ["DEMO-1", "DEMO-2", "DEMO-3"]
    for plot, points in (("plot-series-0", 300), ("plot-series-2", 150)):  # DEMO-1, and DEMO-3 (a fork at 150)
        traces = json.loads(page.evaluate(f"() => JSON.stringify(document.getElementById('{plot}').data.map("
                                          "t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})))"))
        source = [t for t in traces if t["name"] == "storage (source)"]
        sink = [t for t in traces if t["name"] == "sink read-back"]
        assert len(source) == len(sink) == 4
        for a, b in zip(source, sink, strict=True):
            # Pluto's points, mapped back to the source's steps through the step plan the load recorded
            assert len(a["x"]) == points and a["x"] == b["x"] and a["y"] == b["y"]
        assert page.locator(f"#{plot} .scatterlayer .trace").count() == 8
