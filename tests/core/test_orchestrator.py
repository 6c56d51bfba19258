import threading

import pyarrow as pa
from migrate_core.api import RunContext, RunWriter, Selection, SourceRun
from migrate_core.format import make_batch
from migrate_core.ledger import Ledger
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryRun, MemorySink, MemorySource, MemoryStorage, export_into, sample_runs


class CancellingSource(MemorySource):
    """Presses Ctrl+C (sets the cancel flag) after the first batch of the second run."""

    def __init__(self, runs, cancel: threading.Event):
        super().__init__(runs)
        self.cancel_event = cancel

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        if run.run_id == "RUN-2":
            writer.write(make_batch(run.project_id, run.run_id, "x", "int", 1, int_value=[1]))
            self.cancel_event.set()
            ctx.check_cancelled()
        super().export_run(run, selection, writer, ctx)


def test_cancel_leaves_no_run_marked_complete_that_is_not(tmp_path):
    cancel = threading.Event()
    storage = MemoryStorage(tmp_path)
    orch = Orchestrator(storage, source=CancellingSource(sample_runs(), cancel), workers=1, cancel=cancel)
    summary = orch.export()
    assert summary.interrupted and summary.exit_code(False) == 130
    statuses = {o.run_id: o.status for o in summary.outcomes}
    assert statuses["RUN-1"] == "ok" and statuses["RUN-2"] == "cancelled"
    assert not storage.get_run("ws/proj", "RUN-2").complete
    # resume: a new process with no cancel completes the rest, skipping what is done
    resumed = Orchestrator(storage, source=MemorySource(sample_runs()), workers=2).export()
    assert {o.run_id: o.status for o in resumed.outcomes} == {"RUN-1": "skipped", "RUN-2": "ok", "RUN-3": "ok"}


def test_in_progress_rows_from_a_dead_process_are_loaded_again(tmp_path):
    storage = MemoryStorage(tmp_path)
    export_into(storage, MemorySource(sample_runs()))
    sink = MemorySink()
    ledger = Ledger(storage.state_dir())
    ledger.set("ws/proj", "RUN-1", sink.target(), "in_progress")
    ledger.set("ws/proj", "RUN-2", sink.target(), "done")
    ledger.close()
    summary = Orchestrator(storage, sink=sink, workers=2).load()
    statuses = {o.run_id: o.status for o in summary.outcomes}
    assert statuses == {"RUN-1": "ok", "RUN-2": "skipped", "RUN-3": "ok"}
    assert Ledger(storage.state_dir()).get("ws/proj", "RUN-1", sink.target()).state == "done"


def test_lineage_cycle_is_reported_not_hung(tmp_path):
    storage = MemoryStorage(tmp_path)
    runs = []
    for run_id, parent in (("A", "B"), ("B", "A")):
        table = pa.Table.from_batches([make_batch("ws/p", run_id, "sys/forking/parent", "string", 1,
                                                  string_value=[parent])])
        runs.append(MemoryRun("ws/p", run_id, table))
    export_into(storage, MemorySource(runs))
    summary = Orchestrator(storage, sink=MemorySink(), workers=2).load()
    assert {o.status for o in summary.outcomes} == {"failed"}
    assert all("never loaded" in o.reason for o in summary.outcomes)


def test_export_failure_is_isolated_and_nothing_partial_is_kept(tmp_path):
    storage = MemoryStorage(tmp_path)
    source = MemorySource(sample_runs(), fail={"RUN-2": ValueError("attribute fetch failed")})
    summary = Orchestrator(storage, source=source, workers=3).export()
    assert summary.count("export") == {"ok": 2, "failed": 1, "skipped": 0, "cancelled": 0, "deferred": 0}
    assert not storage.get_run("ws/proj", "RUN-2").complete
    failed = next(o for o in summary.outcomes if o.status == "failed")
    assert failed.reason == "ValueError: attribute fetch failed"


def test_many_runs_with_bounded_workers(tmp_path):
    storage = MemoryStorage(tmp_path)
    runs = [MemoryRun("ws/p", f"R{i}", pa.Table.from_batches([make_batch("ws/p", f"R{i}", "x", "int", 1,
                                                                         int_value=[i])])) for i in range(200)]
    sink = MemorySink()
    summary = Orchestrator(storage, source=MemorySource(runs), sink=sink, workers=4).run()
    assert summary.count("load")["ok"] == 200 and len(sink.loaded) == 200


class DatedSource(MemorySource):
    """A MemorySource whose runs carry modification times, as real trackers list them."""

    def __init__(self, runs, modified):
        super().__init__(runs)
        self.modified = modified

    def list_runs(self, selection):
        for run in super().list_runs(selection):
            yield SourceRun(run.project_id, run.run_id, run.parent_run_id,
                            modification_time=self.modified[run.run_id])


def test_refresh_reexports_only_runs_changed_since_their_export(tmp_path):
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    storage = MemoryStorage(tmp_path)
    times = {"RUN-1": t0, "RUN-2": t0, "RUN-3": t0}
    Orchestrator(storage, source=DatedSource(sample_runs(), dict(times))).export()
    times["RUN-2"] = t0 + timedelta(hours=1)
    plain = Orchestrator(storage, source=DatedSource(sample_runs(), dict(times))).export()
    assert {o.status for o in plain.outcomes} == {"skipped"}
    refreshed = Orchestrator(storage, source=DatedSource(sample_runs(), dict(times)), refresh=True).export()
    assert {o.run_id: o.status for o in refreshed.outcomes} == {"RUN-1": "skipped", "RUN-2": "ok", "RUN-3": "skipped"}
    again = Orchestrator(storage, source=DatedSource(sample_runs(), dict(times)), refresh=True).export()
    assert {o.status for o in again.outcomes} == {"skipped"}


def test_fork_listed_before_its_parent_still_loads_after_it(tmp_path):
    runs = sample_runs()
    fork_first = [runs[2], runs[1], runs[0]]  # RUN-3 forks RUN-1 and is listed first
    sink = MemorySink()  # raises if a fork is loaded before its parent
    summary = Orchestrator(MemoryStorage(tmp_path), source=MemorySource(fork_first), sink=sink, workers=3).run()
    assert summary.count("load")["ok"] == 3, summary.as_json()
    assert sink.load_calls.index(("ws/proj", "RUN-1")) < sink.load_calls.index(("ws/proj", "RUN-3"))


def test_fork_of_an_unselected_parent_loads_once_the_listing_ends(tmp_path):
    import re

    runs = sample_runs()
    storage = MemoryStorage(tmp_path)
    sink = MemorySink()
    export_into(storage, MemorySource(runs[:1]))
    Orchestrator(storage, source=MemorySource(runs[:1]), sink=sink).run()  # parent loaded earlier
    only_fork = Selection(runs=re.compile("^RUN-3$"))
    summary = Orchestrator(storage, source=MemorySource(runs), sink=sink, selection=only_fork).run()
    assert [(o.stage, o.run_id, o.status) for o in summary.outcomes] == [("export", "RUN-3", "ok"),
                                                                         ("load", "RUN-3", "ok")]


def test_events_reach_the_progress_display(tmp_path):
    from migrate_core.progress import LineProgress

    class RetryingSource(MemorySource):
        def export_run(self, run, selection, writer, ctx):
            ctx.event("retries", 2)
            super().export_run(run, selection, writer, ctx)

    progress = LineProgress(interval=3600)
    Orchestrator(MemoryStorage(tmp_path), source=RetryingSource(sample_runs()), progress=progress).export()
    assert progress._events.counts == {"retries": 6}


class PreparingSource(MemorySource):
    """Records `prepare` calls and the order of prepares and exports; optionally fails in `prepare`."""

    prepare_runs = 3

    def __init__(self, runs, fail_prepare: bool = False):
        super().__init__(runs)
        self.fail_prepare = fail_prepare
        self.prepared: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def prepare(self, runs, selection) -> None:
        with self._lock:
            self.prepared.append([r.run_id for r in runs])
            self.events += [("prepare", r.run_id) for r in runs]
        if self.fail_prepare:
            raise RuntimeError("prepare broke")

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        with self._lock:
            self.events.append(("export", run.run_id))
        super().export_run(run, selection, writer, ctx)


def test_prepare_gets_the_runs_to_export_in_groups_before_their_export(tmp_path):
    runs = sample_runs(n=8, points=5)
    storage = MemoryStorage(tmp_path)
    export_into(storage, MemorySource([runs[1], runs[4]]))  # complete already: skipped, never prepared
    source = PreparingSource(runs)
    summary = Orchestrator(storage, source=source, workers=2).export()
    statuses = {o.run_id: o.status for o in summary.outcomes}
    assert statuses == {r.run_id: "skipped" if r in (runs[1], runs[4]) else "ok" for r in runs}
    exported = [r.run_id for r in runs if r not in (runs[1], runs[4])]
    assert [run_id for group in source.prepared for run_id in group] == exported  # listing order
    assert all(1 <= len(group) <= 3 for group in source.prepared)
    for run_id in exported:  # every run was announced before its export started
        assert source.events.index(("prepare", run_id)) < source.events.index(("export", run_id))


def test_prepare_respects_the_shard_and_a_failing_prepare_fails_no_run(tmp_path):
    runs = sample_runs(n=10, points=5)
    selection = Selection(shard=(0, 2))
    source = PreparingSource(runs, fail_prepare=True)
    summary = Orchestrator(MemoryStorage(tmp_path), source=source, workers=2, selection=selection).export()
    mine = [r.run_id for r in runs if selection.in_shard((r.project_id, r.run_id))]
    assert 0 < len(mine) < len(runs)
    assert [run_id for group in source.prepared for run_id in group] == mine
    assert {o.run_id: o.status for o in summary.outcomes} == {run_id: "ok" for run_id in mine}


def test_unreadable_stored_state_fails_that_run_only(tmp_path):
    class Flaky(MemoryStorage):
        def get_run(self, project_id, run_id):
            if run_id == "RUN-2":
                raise OSError("disk says no")
            return super().get_run(project_id, run_id)

    summary = Orchestrator(Flaky(tmp_path), source=MemorySource(sample_runs()), workers=2).export()
    outcomes = {o.run_id: o for o in summary.outcomes}
    assert outcomes["RUN-2"].status == "failed" and "disk says no" in outcomes["RUN-2"].reason
    assert outcomes["RUN-1"].status == outcomes["RUN-3"].status == "ok"


def test_export_workers_bound_concurrent_exports(tmp_path):
    class Counting(MemorySource):
        def __init__(self, runs):
            super().__init__(runs)
            self.now = self.peak = 0
            self.lock = threading.Lock()

        def export_run(self, run, selection, writer, ctx):
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            __import__("time").sleep(0.02)
            try:
                super().export_run(run, selection, writer, ctx)
            finally:
                with self.lock:
                    self.now -= 1

    for export_workers, peak in ((1, 1), (None, 4)):
        source = Counting(sample_runs(n=8, points=5))
        Orchestrator(MemoryStorage(tmp_path / str(export_workers)), source=source, workers=4,
                     export_workers=export_workers).export()
        assert source.peak == peak


def test_run_holds_a_fork_listed_before_its_parent_until_the_parent_loaded(tmp_path):
    """The lazy listing may list a fork first: it must wait for a parent the listing has not produced yet."""
    def one(run_id, parent=None):
        rows = [make_batch("ws/p", run_id, "m", "float_series", 3, float_value=[1.0, 2.0, 3.0],
                           step=pa.array([0, 1, 2], type=pa.decimal128(18, 6)))]
        if parent:
            rows.append(make_batch("ws/p", run_id, "sys/forking/parent", "string", 1, string_value=[parent]))
        return MemoryRun("ws/p", run_id, pa.Table.from_batches(rows), parent_run_id=parent)

    runs = [one("FORK", "ROOT"), *[one(f"OTHER-{i}") for i in range(6)], one("ROOT")]
    storage = MemoryStorage(tmp_path)
    sink = MemorySink()  # raises when a fork loads before its parent
    summary = Orchestrator(storage, source=MemorySource(runs), sink=sink, workers=1).run()
    statuses = {(o.stage, o.run_id): o.status for o in summary.outcomes}
    assert statuses[("load", "FORK")] == "ok", summary.as_json()
    order = list(sink.loaded)
    assert order.index(("ws/p", "ROOT")) < order.index(("ws/p", "FORK"))
