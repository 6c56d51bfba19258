"""Transient errors are retried (honouring Retry-After); permanent ones fail the run with the server's words."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.api import RunReport
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryRun
from migrate_pluto.errors import PlutoError
from migrate_pluto.transport import MAX_RETRY_AFTER, Transport

from .helpers import load, make_sink, run_of, snapshot
from .test_mapping import P, neptune_storage, series, strings


def _run(run_id: str, n: int = 50, files=()) -> MemoryRun:
    return MemoryRun(P, run_id, pa.Table.from_batches([
        series(run_id, "m", list(np.arange(n) * 1_000_000), [float(i) for i in range(n)]),
        strings(run_id, "monitoring/x/stdout", [f"line {i}" for i in range(5)]),
        strings(run_id, "notes", ["a", "b"]),
    ]), files=list(files))


FILES = [("files/model", "model.bin", b"\x00weights" * 1000), ("files/cfg", "config.yaml", b"lr: 1\n")]


@pytest.fixture
def sleeps(monkeypatch):
    waited: list[float] = []
    monkeypatch.setattr(Transport, "_sleep", lambda self, seconds: waited.append(seconds))
    return waited


@pytest.mark.parametrize("path", ["/api/runs/create", "/ingest/metrics", "/ingest/data", "/ingest/logs", "/files"])
def test_5xx_is_retried_and_nothing_is_lost(fake_pluto, tmp_path, sleeps, path):
    storage = neptune_storage(tmp_path, [_run("R-1", files=FILES)])
    reference = neptune_storage(tmp_path / "ref", [_run("R-1", files=FILES)])
    fault = fake_pluto.faults.add(f"^{path}$", "5xx", times=2, status=502)
    load(make_sink(fake_pluto, project="faulty"), storage, P, "R-1")
    assert fault.hits == 2  # the fault fired on this path (the files presign included), and only there
    load(make_sink(fake_pluto, project="clean"), reference, P, "R-1")
    got = snapshot(fake_pluto, "faulty", f"neptune:{P}:R-1")
    want = snapshot(fake_pluto, "clean", f"neptune:{P}:R-1")
    for key in ("metrics", "data", "logs", "tags", "status", "files"):
        assert got[key] == want[key], key
    assert len(got["files"]) == len(FILES)  # each file once: none lost, none presigned twice
    assert len(sleeps) == 2


def test_429_honours_retry_after(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "429", times=1, retry_after=7)
    load(make_sink(fake_pluto), storage, P, "R-1")
    assert sleeps == [7.0]
    assert len(run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").metric("m")) == 50


def test_429_honours_an_http_date_retry_after(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fault = fake_pluto.faults.add("^/ingest/metrics$", "429", times=1, retry_after=when)
    load(make_sink(fake_pluto), storage, P, "R-1")
    assert fault.hits == 1 and len(sleeps) == 1 and 20 <= sleeps[0] <= 30
    assert len(run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").metric("m")) == 50


def test_429_with_an_http_date_in_the_past_retries_at_once(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "429", times=1, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    load(make_sink(fake_pluto), storage, P, "R-1")
    assert sleeps == [0.0]


def test_a_retry_after_longer_than_10_min_is_waited_10_min(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "429", times=1, retry_after=86400)
    load(make_sink(fake_pluto), storage, P, "R-1")
    assert sleeps == [MAX_RETRY_AFTER] == [600.0]  # clamped, as documented, not a day


def test_backoff_is_jittered_within_its_bounds(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "5xx", times=None, status=503)
    sink = make_sink(fake_pluto, retries=30, backoff=0.01, backoff_max=0.04)
    with pytest.raises(PlutoError, match="31 attempts"):
        load(sink, storage, P, "R-1")
    assert len(sleeps) == 30
    assert 0.005 <= sleeps[0] <= 0.01 and 0.01 <= sleeps[1] <= 0.02  # doubling, partial jitter
    assert all(0.02 <= s <= 0.04 for s in sleeps[3:])  # capped at backoff_max
    assert len(set(sleeps[3:])) > 20  # and the capped delays still vary


def test_retries_are_counted_live(fake_pluto, tmp_path, sleeps):
    from migrate_core.api import RunContext, RunReader

    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "5xx", times=2, status=503)
    fake_pluto.faults.add("^/ingest/data$", "429", times=1, retry_after=0)
    events: list[tuple[str, int]] = []
    ctx = RunContext(RunReport(), threading.Event(), on_event=lambda name, n: events.append((name, n)))
    make_sink(fake_pluto).load_run(RunReader(storage, storage.get_run(P, "R-1")), ctx)
    assert events.count(("retries", 1)) == 3


def test_cancel_during_a_retry_wait_stops_promptly(fake_pluto, tmp_path):
    from migrate_core.api import RunContext, RunReader
    from migrate_core.errors import Cancelled

    storage = neptune_storage(tmp_path, [_run("R-1")])
    fault = fake_pluto.faults.add("^/ingest/metrics$", "5xx", times=None, status=503)
    cancel = threading.Event()
    sink = make_sink(fake_pluto, retries=5, backoff=60, backoff_max=60)
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        sink.load_run(RunReader(storage, storage.get_run(P, "R-1")), RunContext(RunReport(), cancel))
    assert time.monotonic() - started < 0.5 + 1.0  # not the 30-60 s backoff
    assert fault.hits == 1


def test_lost_answer_on_logs_is_not_sent_twice(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fault = fake_pluto.faults.add("^/ingest/logs$", "drop", times=1, process=True)
    load(make_sink(fake_pluto), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert [x.message for x in sorted(run.logs, key=lambda x: x.line_number)] == [f"line {i}" for i in range(5)]
    # landed() found the first attempt had arrived: after the wait, nothing was sent again
    assert fault.hits == 1 and len(sleeps) == 1 and len(fake_pluto.requests_to("/ingest/logs")) == 1


def test_lost_answer_on_metrics_is_harmless(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "drop", times=1, process=True)
    load(make_sink(fake_pluto), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert len(run.metric("m")) == 50 and run.metrics["m"].raw_count == 100


def test_giving_up_fails_the_run_with_the_server_message(fake_pluto, tmp_path, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    fake_pluto.faults.add("^/ingest/metrics$", "5xx", times=None, status=503)
    with pytest.raises(PlutoError, match=r"Pluto answered 503 to metrics ingest: .*injected fault.* 3 attempts"):
        load(make_sink(fake_pluto), storage, P, "R-1")


def test_wrong_api_key_fails_at_once_with_a_clear_message(fake_pluto, tmp_path, monkeypatch, sleeps):
    monkeypatch.setenv("PLUTO_API_KEY", "mlpi_wrong")
    storage = neptune_storage(tmp_path, [_run("R-1")])
    with pytest.raises(PlutoError, match="Pluto answered 401 to run create: Unauthorized: Invalid API key") as err:
        load(make_sink(fake_pluto), storage, P, "R-1")
    assert "mlpi_wrong" not in str(err.value) and sleeps == []


def test_missing_api_key_is_a_config_error(fake_pluto, monkeypatch, tmp_path):
    from migrate_core.errors import PluginError

    monkeypatch.delenv("PLUTO_API_KEY")
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty-home"))
    with pytest.raises(PluginError, match="no Pluto API key: set PLUTO_API_KEY or run `pluto login`"):
        make_sink(fake_pluto)


def test_unreachable_server(fake_pluto, tmp_path, sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    storage = neptune_storage(tmp_path, [_run("R-1")])
    sink = make_sink(fake_pluto, url_api=url, url_ingest=url, url_py=url)
    with pytest.raises(PlutoError, match=rf"cannot reach Pluto for run create \(http://127.0.0.1:{port}\): ConnectError"):
        load(sink, storage, P, "R-1")
    assert len(sleeps) == 2


def test_a_422_fails_that_run_only_and_retry_failed_completes_it(fake_pluto, tmp_path, sleeps):
    runs = [_run("R-1"), _run("R-2"), _run("R-3")]
    storage = neptune_storage(tmp_path, runs)
    fake_pluto.faults.add("^/ingest/metrics$", "422", times=1)
    sink = make_sink(fake_pluto)
    summary = Orchestrator(storage, sink=sink, workers=1).load()
    status = {o.run_id: (o.status, o.reason) for o in summary.outcomes}
    assert status["R-1"] == ("failed", "Pluto answered 422 to metrics ingest: STREAM_DECODING_ERROR: "
                                       "Failed to parse JSON line (bytes): injected fault")
    assert status["R-2"][0] == status["R-3"][0] == "ok"
    again = Orchestrator(storage, sink=sink, workers=1, retry_failed=True).load()
    assert {o.run_id: o.status for o in again.outcomes} == {"R-1": "ok", "R-2": "skipped", "R-3": "skipped"}
    for run_id in ("R-1", "R-2", "R-3"):
        run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:{run_id}")
        assert len(run.metric("m")) == 50 and len(run.logs) == 5 and run.status == "COMPLETED"


def test_status_reaped_to_failed_is_repaired(fake_pluto, tmp_path, monkeypatch, sleeps):
    storage = neptune_storage(tmp_path, [_run("R-1")])
    original = Transport.api_post

    def reaping(self, path, body, what):
        if path == "/api/runs/status/update" and not reaping.done:
            reaping.done = True
            fake_pluto.reap_stale_runs(now=10**13)
        return original(self, path, body, what)

    reaping.done = False
    monkeypatch.setattr(Transport, "api_post", reaping)
    report = load(make_sink(fake_pluto), storage, P, "R-1")
    assert run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").status == "COMPLETED"
    assert any("repaired from FAILED" in note for note in report.notes)


def test_cancel_stops_between_requests(fake_pluto, tmp_path):
    from migrate_core.api import RunContext, RunReader
    from migrate_core.errors import Cancelled

    storage = neptune_storage(tmp_path, [_run("R-1")])
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        make_sink(fake_pluto).load_run(RunReader(storage, storage.get_run(P, "R-1")), RunContext(RunReport(), cancel))


def test_a_dead_server_is_not_hammered_by_every_run(fake_pluto, tmp_path, sleeps):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    storage = neptune_storage(tmp_path, [_run(f"R-{i}") for i in range(6)])
    summary = Orchestrator(storage, sink=make_sink(fake_pluto, url_api=url, url_ingest=url, url_py=url),
                           workers=1).load()
    reasons = [o.reason for o in summary.outcomes]
    assert all(o.status == "failed" for o in summary.outcomes)
    assert sum("not retried" in r for r in reasons) == 4  # two runs tried (3 attempts each), four did not
    assert len(sleeps) == 4
    assert all("cannot reach Pluto for run create" in r for r in reasons)


def test_heartbeats_keep_the_run_alive_and_a_cancel_in_pluto_stops_the_load(fake_pluto, tmp_path, monkeypatch):
    storage = neptune_storage(tmp_path, [_run("R-1"), _run("R-2")])
    load(make_sink(fake_pluto, heartbeat=0.001), storage, P, "R-1")
    run = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1")
    assert run.heartbeats >= 2
    monkeypatch.setattr(Transport, "heartbeat", lambda self, run_id: "CANCELLED")
    with pytest.raises(PlutoError, match="the run was cancelled in Pluto while loading"):
        load(make_sink(fake_pluto), storage, P, "R-2")
