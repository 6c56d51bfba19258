"""Live progress: neptune-query's retries reach `RunContext.event` as they happen, attributed to their run."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from migrate_core.api import RunContext, RunReport, Selection
from migrate_core.testing import MemoryStorage

from tests.fakes.neptune3.server import FakeNeptune3
from tests.plugins.neptune3.conftest import make_source

pytestmark = pytest.mark.timeout(90)


def export_with_events(source, storage: MemoryStorage) -> dict[str, tuple[Counter[str], RunReport]]:
    out = {}
    for run in source.list_runs(Selection()):
        events: Counter[str] = Counter()
        report = RunReport()
        ctx = RunContext(report, threading.Event(), on_event=lambda name, n, e=events: e.update({name: n}))
        writer = storage.begin_run(run.project_id, run.run_id, {"plugin": "neptune3"})
        source.export_run(run, Selection(), writer, ctx)
        writer.commit(report=report)
        out[run.run_id] = (events, report)
    return out


@pytest.mark.parametrize("workers", [1, 3])
def test_5xx_and_429_retries_are_live_events_of_their_run(fake_neptune3: FakeNeptune3, tmp_path, workers):
    busy = fake_neptune3.data.run("busy")
    for i in range(4):
        busy.metric(f"m/{i}", steps=[0.0, 1.0], values=[1.0, 2.0])
    busy.string_series("logs/out", steps=[0.0], values=["x"])
    quiet = fake_neptune3.data.run("quiet")
    quiet.metric("m/0", steps=[0.0], values=[1.0])
    storage = MemoryStorage(tmp_path)
    source = make_source(series_per_request=1, attribute_workers=workers)  # several groups, threads, prefetch
    runs = list(source.list_runs(Selection()))
    fake_neptune3.faults.add(r"/series/float$", "5xx", times=2)
    fake_neptune3.faults.add(r"/attributes/series$", "429", times=1, retry_after=0.1)
    got = export_with_events(source, storage)
    assert [r.run_id for r in runs] == ["busy", "quiet"]
    events, report = got["busy"]
    assert events == Counter({"retries": 3})
    assert any("neptune-query retried 3 requests" in n for n in report.notes), report.notes
    assert got["quiet"][0] == Counter() and not got["quiet"][1].notes
    assert all(r.complete for r in storage.list_runs())


def test_retries_show_in_the_orchestrators_progress_lines(fake_neptune3: FakeNeptune3, tmp_path):
    from migrate_core.orchestrator import Orchestrator
    from migrate_core.progress import LineProgress
    from structlog.testing import capture_logs

    fake_neptune3.data.run("r").metric("m", steps=[0.0, 1.0], values=[1.0, 2.0])
    fake_neptune3.faults.add(r"/series/float$", "5xx", times=2)
    orch = Orchestrator(MemoryStorage(tmp_path), source=make_source(), workers=1, progress=LineProgress(interval=0.0))
    with capture_logs() as logs:
        summary = orch.export()
    assert summary.count("export")["ok"] == 1
    lines = [entry for entry in logs if entry.get("event") == "progress"]
    assert lines and max(entry.get("retries", 0) for entry in lines) == 2, lines
