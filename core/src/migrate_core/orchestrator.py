"""The orchestrator: source -> storage -> sink, per run, in bounded worker pools.

- export: list -> select -> per run: storage writer -> commit (manifest last). Complete runs are skipped,
  partial ones redone from scratch.
- load: stored runs -> parents before forks -> worker pool -> sink.load_run -> ledger.
- run: both, pipelined: a run is loaded as soon as its export commits.
One failing run never stops the others. Ctrl+C sets a cancel flag that every worker checks between
batches, so state stays resumable (parts stay `.tmp`, ledger rows go back to pending).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from .api import RunContext, RunReader, RunReport, Selection, Sink, Source, SourceRun, Storage, StoredRun
from .errors import Cancelled, MigrateError
from .executors import Executor, ThreadExecutor
from .ledger import Ledger
from .progress import Progress

log = structlog.get_logger("migrate")

Key = tuple[str, str]


@dataclass
class Outcome:
    project_id: str
    run_id: str
    stage: str
    status: str  # ok | failed | skipped | cancelled | deferred (a fork waiting for its parent)
    reason: str | None = None
    report: RunReport = field(default_factory=RunReport)
    seconds: float = 0.0
    worker: str | None = None  # host:pid of the process that did it, when not this one (--executor)

    def as_json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "run_id": self.run_id,
            "stage": self.stage,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            **({"worker": self.worker} if self.worker else {}),
            **self.report.as_dict(),
        }


@dataclass
class Summary:
    command: str
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    interrupted: bool = False

    def count(self, stage: str | None = None) -> dict[str, int]:
        counts = {"ok": 0, "failed": 0, "skipped": 0, "cancelled": 0, "deferred": 0}
        for o in self.outcomes:
            if stage is None or o.stage == stage:
                counts[o.status] += 1
        return counts

    def losses(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for o in self.outcomes:
            for name, n in o.report.losses.items():
                total[name] = total.get(name, 0) + n
        return dict(sorted(total.items()))

    def exit_code(self, strict: bool) -> int:
        if self.interrupted:
            return 130
        if any(o.status == "failed" for o in self.outcomes):
            return 1
        if strict and (self.losses() or any(o.status == "deferred" for o in self.outcomes)):
            return 1
        return 0

    def lossless(self) -> bool:
        """Only when every selected run finished (none failed, deferred or interrupted) and nothing was dropped:
        a run that did not finish may hold values nobody counted yet."""
        return not self.interrupted and not self.losses() and not any(
            o.status in ("failed", "deferred", "cancelled") for o in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        stages = sorted({o.stage for o in self.outcomes})
        elapsed = (self.finished or time.monotonic()) - self.started
        return {
            "command": self.command,
            "interrupted": self.interrupted,
            "seconds": round(elapsed, 3),
            "stages": {
                s: {
                    **self.count(s),
                    "rows": sum(o.report.rows for o in self.outcomes if o.stage == s),
                    "files": sum(o.report.files for o in self.outcomes if o.stage == s),
                    "bytes": sum(o.report.bytes for o in self.outcomes if o.stage == s),
                }
                for s in stages
            },
            "losses": self.losses(),
            "lossless": self.lossless(),
            "runs": [o.as_json() for o in self.outcomes],
        }


def describe_error(exc: BaseException) -> str:
    """One line: our errors speak for themselves, others get their type name."""
    text = str(exc) if isinstance(exc, MigrateError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:2000]


class Orchestrator:
    def __init__(
        self,
        storage: Storage,
        *,
        source: Source | None = None,
        sink: Sink | None = None,
        source_name: str = "",
        selection: Selection | None = None,
        workers: int = 4,
        export_workers: int | None = None,
        force: bool = False,
        refresh: bool = False,
        retry_failed: bool = False,
        progress: Progress | None = None,
        hooks: Any = None,
        cancel: threading.Event | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.storage = storage
        self.source = source
        self.sink = sink
        self.source_name = source_name or getattr(source, "name", "")
        self.selection = selection or Selection()
        self.workers = max(1, workers)
        # runs exported at once; a source may work best with fewer than `workers` (the load side's pool)
        self.export_workers = max(1, export_workers) if export_workers else self.workers
        self.force = force
        self.refresh = refresh
        self.retry_failed = retry_failed
        self.progress = progress or Progress()
        self.hooks = hooks
        self.cancel = cancel or threading.Event()
        self._ledger: Ledger | None = None
        self.executor = executor or ThreadExecutor()

    # ----------------------------------------------------------------- public commands

    def export(self) -> Summary:
        return self._execute("export", export=True, load=False)

    def load(self) -> Summary:
        return self._execute("load", export=False, load=True)

    def run(self) -> Summary:
        return self._execute("run", export=True, load=True)

    def verify(self) -> Summary:
        assert self.sink is not None
        summary = Summary("verify")
        runs = [r for r in self._stored_runs() if r.complete]
        self.progress.start("verify", len(runs))
        try:
            for outcome in self._pool_map(self._verify_one, runs):
                summary.outcomes.append(outcome)
                self.progress.run_done(outcome.status == "ok")
        except KeyboardInterrupt:
            self.cancel.set()
            summary.interrupted = True
        finally:
            self.progress.stop()
        summary.finished = time.monotonic()
        return summary

    def close(self) -> None:
        """Close the ledger if a decision opened it (the commands close it themselves)."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # ----------------------------------------------------------------- the engine

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            self._ledger = Ledger(self.storage.state_dir())
        return self._ledger

    def _stored_runs(self) -> list[StoredRun]:
        runs = self.storage.list_runs(self.selection.projects)
        return [r for r in runs if self.selection.wants_project(r.project_id) and self.selection.wants_run(r.run_id)]

    def _execute(self, command: str, export: bool, load: bool) -> Summary:
        summary = Summary(command)
        job = _Job(self, summary, load=load)
        try:
            if export:
                assert self.source is not None
                job.run_exports(self.source.list_runs(self.selection))
            else:
                job.run_loads(self._stored_runs())
        except KeyboardInterrupt:
            self.cancel.set()
            summary.interrupted = True
            job.shutdown()
        finally:
            self.progress.stop()
            if self._ledger is not None:
                self._ledger.close()
                self._ledger = None
        if any(o.status == "cancelled" for o in summary.outcomes):
            summary.interrupted = True
        summary.finished = time.monotonic()
        return summary

    # ----------------------------------------------------------------- per-run work (worker threads)

    def export_one(self, run: SourceRun, decided: bool = False) -> Outcome:
        """Export one run; unless `decided` (by `skip_outcome`), first decide whether it is skipped."""
        if not decided:
            skipped = self.skip_outcome(run)
            if skipped is not None:
                return skipped
        started = time.monotonic()
        report = RunReport()
        out = Outcome(run.project_id, run.run_id, "export", "ok", report=report)
        source_info: dict[str, Any] = {"plugin": self.source_name, "version": getattr(self.source, "version", "")}
        if run.modification_time is not None:
            source_info["modification_time"] = run.modification_time.isoformat()
        if run.info:
            source_info["info"] = dict(run.info)
        writer = None
        live = _LiveRows(self.progress, "export", report)
        try:
            self._check_cancel()
            writer = self.storage.begin_run(run.project_id, run.run_id, source_info)
            ctx = self._context(live)
            assert self.source is not None
            self.source.export_run(run, self.selection, writer, ctx)
            ctx.check_cancelled()
            lineage = {"parent_run_id": run.parent_run_id} if run.parent_run_id else None
            writer.commit(lineage=lineage, report=report)
        except BaseException as exc:  # noqa: BLE001 - every failure is per run
            if writer is not None:
                try:
                    writer.abort()
                except Exception as abort_exc:  # pragma: no cover - reported, not fatal
                    report.note(f"cleanup after failure failed: {describe_error(abort_exc)}")
            out.status = "cancelled" if isinstance(exc, Cancelled | KeyboardInterrupt) else "failed"
            out.reason = "interrupted" if out.status == "cancelled" else describe_error(exc)
        out.seconds = time.monotonic() - started
        live.settle()
        return out

    def _context(self, live: _LiveRows, force: bool = False) -> RunContext:
        """One run's context, its rows and bytes counted live on its stage's lines of the progress."""
        live.report.on_bytes = lambda n: self.progress.bytes(n, live.stage)
        return RunContext(live.report, self.cancel, live, self.progress.event, force=force)

    def skip_outcome(self, run: SourceRun) -> Outcome | None:
        """The outcome of a run that is not exported now (skipped, or failed to read its stored state), else None."""
        try:
            existing = self.storage.get_run(run.project_id, run.run_id)
        except Exception as exc:  # noqa: BLE001 - one run's unreadable state must not stop the others
            return Outcome(run.project_id, run.run_id, "export", "failed",
                           f"could not read its stored state: {describe_error(exc)}")
        reason = self.export_decision(run, existing)
        if reason is None:
            return None
        return Outcome(run.project_id, run.run_id, "export", "skipped", reason)

    def export_decision(self, run: SourceRun, existing: StoredRun | None) -> str | None:
        """Why `run` is not exported now (a skip reason), or None to export it (again)."""
        if existing is None or not existing.complete or not existing.has_manifest or self.force:
            return None
        if self.refresh and run.modification_time is not None:
            stored = (existing.manifest or {}).get("source", {}).get("modification_time")
            if stored is None or datetime.fromisoformat(stored) < run.modification_time:
                return None
            return "unchanged since its export"
        return "already exported (use --refresh for changed runs, --force for all)"

    def load_one(self, stored: StoredRun) -> Outcome:
        """Load one run and keep the ledger: in progress while it loads, then its outcome."""
        if not self.cancel.is_set():
            self.load_started(stored)
        out = self.load_work(stored)
        self.load_finished(stored, out)
        return out

    def load_started(self, stored: StoredRun) -> None:
        assert self.sink is not None
        self.ledger.set(stored.project_id, stored.run_id, self.sink.target(), "in_progress")

    def load_finished(self, stored: StoredRun, out: Outcome) -> None:
        """The ledger row of a finished load (written here only: a worker process never opens the ledger)."""
        assert self.sink is not None
        target, counts = self.sink.target(), out.report.as_dict()
        if out.status == "ok":
            self.ledger.set(stored.project_id, stored.run_id, target, "done", counts=counts,
                            export_id=stored.export_id)
        elif out.status == "cancelled":
            self.ledger.set(stored.project_id, stored.run_id, target, "pending", counts=counts)
        else:
            self.ledger.set(stored.project_id, stored.run_id, target, "failed", out.reason, counts)

    def load_work(self, stored: StoredRun) -> Outcome:
        """Load one run into the sink; no ledger (the caller keeps it), so a worker process can run it."""
        assert self.sink is not None
        started = time.monotonic()
        report = RunReport()
        out = Outcome(stored.project_id, stored.run_id, "load", "ok", report=report)
        live = _LiveRows(self.progress, "load", report)
        try:
            self._check_cancel()
            ctx = self._context(live, force=self.force)
            self.sink.load_run(RunReader(self.storage, stored), ctx)
            ctx.check_cancelled()
        except BaseException as exc:  # noqa: BLE001 - every failure is per run
            if isinstance(exc, Cancelled | KeyboardInterrupt):
                out.status, out.reason = "cancelled", "interrupted"
            else:
                out.status, out.reason = "failed", describe_error(exc)
        out.seconds = time.monotonic() - started
        live.settle()
        return out

    def load_decision(self, stored: StoredRun) -> str | None:
        """Why `stored` is not loaded now (a skip reason), or None to load it."""
        if not stored.complete:
            return f"incomplete export: {stored.problem or 'no part_0'}"
        assert self.sink is not None
        entry = self.ledger.get(stored.project_id, stored.run_id, self.sink.target())
        if entry is None or self.force:
            return None
        if entry.state == "done":
            # a ledger from before loads recorded their export (export_id None) counts as this export
            if entry.export_id is None or entry.export_id == stored.export_id:
                return "already loaded (use --force to load again)"
            log.info("run_export_changed", project=stored.project_id, run=stored.run_id,
                     note="exported again since its load: loading the changes")
            return None
        if entry.state == "failed" and not self.retry_failed:
            return f"failed before: {entry.error} (use --retry-failed)"
        return None

    def parent_holdup(self, project_id: str, parent: str) -> str | None:
        """Why a fork whose parent is not part of this command cannot load now, or None when it can: the parent
        is in the sink (its load is done), or is nowhere in storage (the sink then loads the fork unlinked
        and counts that)."""
        assert self.sink is not None
        entry = self.ledger.get(project_id, parent, self.sink.target())
        if entry is not None and entry.state == "done":
            return None
        try:
            stored = self.storage.get_run(project_id, parent)
        except Exception as exc:  # noqa: BLE001 - unreadable: do not guess, wait
            return f"its parent run {parent!r} could not be read from storage: {describe_error(exc)}"
        if stored is None and entry is None:
            return None
        if entry is not None and entry.state == "failed":
            return f"waiting for its parent run {parent!r}, which failed to load: {entry.error} (use --retry-failed)"
        if stored is None or not stored.complete:
            return f"waiting for its parent run {parent!r}, which is not completely exported"
        return f"waiting for its parent run {parent!r}, which is not loaded into this sink (it was not selected)"

    def _verify_one(self, stored: StoredRun) -> Outcome:
        assert self.sink is not None
        report = RunReport()
        out = Outcome(stored.project_id, stored.run_id, "verify", "ok", report=report)
        started = time.monotonic()
        try:
            result = self.sink.verify_run(RunReader(self.storage, stored), RunContext(report, self.cancel))
            report.add(rows=sum(result.checked.values()) if result.checked else 0)
            if not result.ok:
                out.status = "failed"
                out.reason = "; ".join(result.mismatches) or "mismatch"
            for mismatch in result.mismatches:
                report.note(mismatch)
        except Exception as exc:
            out.status, out.reason = "failed", describe_error(exc)
        out.seconds = time.monotonic() - started
        return out

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _pool_map(self, fn: Callable[[Any], Outcome], items: Iterable[Any]) -> Iterator[Outcome]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="migrate") as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for future in futures:
                    while True:
                        try:
                            yield future.result(timeout=0.2)
                            break
                        except TimeoutError:
                            continue
            except BaseException:
                self.cancel.set()
                for future in futures:
                    future.cancel()
                raise

    def notify_error(self, command: str, outcome: Outcome) -> None:
        if self.hooks is not None:
            self.hooks.migrate_on_run_error(
                command=command,
                project_id=outcome.project_id,
                run_id=outcome.run_id,
                stage=outcome.stage,
                error=outcome.reason or "",
                report=outcome.report,
            )


def run_line_level(status: str, progress: Progress) -> str:
    """The level of a run's outcome line: failed and deferred runs warn; a run done or skipped is debug while
    bars show it (one info line per run floods a terminal), else info (logs, CI, `--no-progress`)."""
    if status in ("failed", "deferred"):
        return "warning"
    return "debug" if progress.shows_runs and status in ("ok", "skipped") else "info"


def stored_rows(run: StoredRun) -> int | None:
    """A stored run's rows as its manifest counts them (what a load reads); None for a foreign run."""
    manifest = run.manifest or {}
    rows = manifest.get("rows") if manifest.get("status") == "complete" else None
    return int(rows) if isinstance(rows, int) else None


class _LiveRows:
    """A run's `ctx.progress(rows)`: counted on its stage's rows line as they come; a plugin that reports no
    live progress still moves that line, by its run's count once the run ends (`settle`)."""

    def __init__(self, progress: Progress, stage: str, report: RunReport) -> None:
        self.progress, self.stage, self.report, self.seen = progress, stage, report, 0

    def __call__(self, rows: int) -> None:
        self.seen += rows
        self.progress.rows(rows, self.stage)

    def settle(self) -> None:
        if self.report.rows > self.seen:
            self.progress.rows(self.report.rows - self.seen, self.stage)
            self.seen = self.report.rows


class _Job:
    """One command's scheduling state: exports feed loads, forks wait for their parents."""

    def __init__(self, orch: Orchestrator, summary: Summary, load: bool) -> None:
        self.orch = orch
        self.summary = summary
        self.load_enabled = load
        self.executor = orch.executor
        self.executor.start(orch)
        self.futures: dict[Future[Outcome], str] = {}
        self.items: dict[Future[Outcome], SourceRun | StoredRun] = {}  # what each future works on
        self.expected: set[Key] = set()
        self.loaded: dict[Key, bool] = {}
        self.waiting: dict[Key, list[StoredRun]] = {}
        self.submitted = 0
        self.listing_done = False

    def shutdown(self) -> None:
        for future in self.futures:
            future.cancel()
        self.executor.shutdown()

    # -- exports (run, export)
    def run_exports(self, runs: Iterator[SourceRun]) -> None:
        """Pull the listing lazily, decide skips here, hand the rest to the export pool.

        Runs to export are announced to the source in groups of `prepare_runs` (`Source.prepare`) before they
        are submitted, so a source can read a group with one request; at most `limit` runs are in flight
        (submitted or waiting to form a group: 2 per worker, or 3 groups so two can be read ahead of the one
        exporting), so a 100k-run listing is never held at once.
        """
        source = self.orch.source
        assert source is not None
        group = max(1, int(getattr(source, "prepare_runs", 1) or 1))
        limit = max(self.orch.export_workers * 2, group * 3 if group > 1 else 0)
        batch: list[SourceRun] = []
        self.orch.progress.start(self.summary.command, None)
        try:
            pending = iter(runs)
            exhausted = False
            while True:
                # loads started by skipped runs (`run` resuming) count too, so they cannot pile up unbounded
                while not exhausted and self._in_flight("export") + len(batch) < limit \
                        and self._in_flight("load") < max(limit, self.orch.workers * 2) * 4:
                    run = next(pending, None)
                    if run is None:
                        exhausted = True
                        break
                    if not self.orch.selection.wants_modified(run.modification_time):
                        continue
                    if not self.orch.selection.in_shard(run.key):
                        continue
                    if self.load_enabled:
                        self.expected.add(run.key)
                    self.submitted += 1
                    self.orch.progress.set_total(self.submitted, final=False)
                    skipped = self.orch.skip_outcome(run)
                    if skipped is not None:
                        self._record(skipped)
                        self._after_export(skipped)
                        continue
                    batch.append(run)
                    self.orch.progress.expect_rows(run.estimated_rows, "export", estimate=True)
                    if len(batch) >= group:
                        self._submit_exports(batch)
                        batch = []
                if exhausted:
                    if batch:
                        self._submit_exports(batch)
                        batch = []
                    if not self.listing_done:
                        self._listing_finished()
                if not self.futures:
                    if exhausted:
                        break
                    continue
                self._collect()
            self._fail_stranded()
        except BaseException:
            self.orch.cancel.set()  # before shutdown() waits: workers stop at their next batch
            raise
        finally:
            self.shutdown()

    def _submit_exports(self, runs: list[SourceRun]) -> None:
        source = self.orch.source
        assert source is not None
        # a worker process exports with its own source: what this one would prepare does not reach it
        if getattr(source, "prepare_runs", 1) > 1 and not self.executor.remote:
            try:
                source.prepare(list(runs), self.orch.selection)
            except Exception as exc:  # noqa: BLE001 - a shortcut failed; each run is still exported alone
                log.warning("prepare_failed", runs=len(runs), error=describe_error(exc))
        for run in runs:
            future = self.executor.submit_export(run)
            self.futures[future], self.items[future] = "export", run

    def _listing_finished(self) -> None:
        """Every run is known now: forks parked for a parent that was never listed can load."""
        self.listing_done = True
        self.orch.progress.set_total(self.submitted)
        for parent in [p for p in self.waiting if p not in self.expected and p not in self.loaded]:
            for child in self.waiting.pop(parent):
                self._submit_load(child)

    # -- loads (load)
    def run_loads(self, stored: list[StoredRun]) -> None:
        self.orch.progress.start(self.summary.command, len(stored))
        try:
            candidates = []
            for run in stored:
                reason = self.orch.load_decision(run)
                if reason is not None:
                    self._record(Outcome(run.project_id, run.run_id, "load", "skipped", reason))
                    if reason.startswith("already loaded"):
                        self.loaded[run.key] = True
                    continue
                self.expected.add(run.key)
                candidates.append(run)
                self.orch.progress.expect_rows(stored_rows(run), "load")
            self.listing_done = True
            for run in candidates:
                self._ready(run)
            while self.futures:
                self._collect()
            self._fail_stranded()
        except BaseException:
            self.orch.cancel.set()
            raise
        finally:
            self.shutdown()

    def _in_flight(self, kind: str) -> int:
        return sum(1 for k in self.futures.values() if k == kind)

    def _collect(self) -> None:
        done, _ = wait(list(self.futures), timeout=0.2, return_when=FIRST_COMPLETED)
        for future in done:
            kind = self.futures.pop(future)
            item = self.items.pop(future)
            outcome = self._remote_outcome(kind, item, future) if self.executor.remote else future.result()
            self._record(outcome)
            if kind == "export":
                self._after_export(outcome)
            else:
                self._after_load(outcome)

    def _remote_outcome(self, kind: str, item: SourceRun | StoredRun, future: Future[Outcome]) -> Outcome:
        """A worker process's outcome: its rows and bytes counted here, its load written to the ledger here."""
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker or an unpicklable value fails that run only
            outcome = Outcome(item.project_id, item.run_id, kind, "failed",
                              f"{self.executor.name} task failed: {describe_error(exc)}")
        self.orch.progress.rows(outcome.report.rows, kind)
        if outcome.report.bytes:
            self.orch.progress.bytes(outcome.report.bytes, kind)
        if kind == "load":
            assert isinstance(item, StoredRun)
            self.orch.load_finished(item, outcome)
        return outcome

    def _record(self, outcome: Outcome) -> None:
        self.summary.outcomes.append(outcome)
        event = {"ok": "run_done", "failed": "run_failed", "skipped": "run_skipped", "cancelled": "run_cancelled",
                 "deferred": "run_deferred"}
        fields: dict[str, Any] = {
            "stage": outcome.stage,
            "project": outcome.project_id,
            "run": outcome.run_id,
            "rows": outcome.report.rows,
        }
        if outcome.report.bytes:
            fields["bytes"] = outcome.report.bytes
        if outcome.reason:
            fields["reason"] = outcome.reason
        if outcome.report.losses:
            fields["losses"] = dict(outcome.report.losses)
        level = run_line_level(outcome.status, self.orch.progress)
        getattr(log, level)(event[outcome.status], **fields)
        if outcome.status == "failed":
            self.orch.notify_error(self.summary.command, outcome)
        final = outcome.stage == "load" or not self.load_enabled or outcome.status in ("failed", "cancelled")
        if final:
            self.orch.progress.run_done(outcome.status in ("ok", "skipped"))

    def _after_export(self, outcome: Outcome) -> None:
        if not self.load_enabled:
            return
        key = (outcome.project_id, outcome.run_id)
        if outcome.status not in ("ok", "skipped"):
            self.expected.discard(key)
            self._loaded(key, False)
            return
        stored = self.orch.storage.get_run(*key)
        if stored is None:
            self._record(Outcome(*key, "load", "failed", "storage lost the run right after export"))
            self._loaded(key, False)
            return
        reason = self.orch.load_decision(stored)
        if reason is not None:
            self._record(Outcome(*key, "load", "skipped", reason))
            self._loaded(key, reason.startswith("already loaded"))
            return
        self.orch.progress.expect_rows(stored_rows(stored), "load")
        self._ready(stored)

    def _after_load(self, outcome: Outcome) -> None:
        self._loaded((outcome.project_id, outcome.run_id), outcome.status == "ok")

    def _ready(self, run: StoredRun) -> None:
        """Submit a load now, or park it until its parent's load finished (parents before forks)."""
        try:
            parent = self.orch.storage.lineage(run).get("parent_run_id")
        except Exception as exc:
            self._record(Outcome(run.project_id, run.run_id, "load", "failed", describe_error(exc)))
            self._loaded(run.key, False)
            return
        if parent and parent != run.run_id:
            parent_key = (run.project_id, str(parent))
            # wait for a parent of this job, or for one the lazy listing may still produce
            if parent_key not in self.loaded and (parent_key in self.expected or not self.listing_done):
                self.waiting.setdefault(parent_key, []).append(run)
                return
            # a fork is never created before its parent is in the sink: it would lose its link for good
            if self.loaded.get(parent_key) is False:
                self._defer(run, f"waiting for its parent run {parent!r}, which did not load in this command")
                return
            if parent_key not in self.loaded:
                holdup = self.orch.parent_holdup(run.project_id, str(parent))
                if holdup is not None:
                    self._defer(run, holdup)
                    return
        self._submit_load(run)

    def _defer(self, run: StoredRun, reason: str) -> None:
        """Park a fork for a later command: reported as deferred (never as loaded) and kept pending in the ledger."""
        assert self.orch.sink is not None
        self.orch.ledger.set(run.project_id, run.run_id, self.orch.sink.target(), "deferred", reason)
        self._record(Outcome(run.project_id, run.run_id, "load", "deferred", reason))
        self._loaded(run.key, False)

    def _submit_load(self, run: StoredRun) -> None:
        future = self.executor.submit_load(run)
        self.futures[future], self.items[future] = "load", run

    def _loaded(self, key: Key, ok: bool) -> None:
        self.loaded[key] = ok
        for child in self.waiting.pop(key, []):
            self._ready(child)

    def _fail_stranded(self) -> None:
        """Forks whose parent never finished (a lineage cycle, or an interrupted parent) are reported."""
        stranded = [(parent, child) for parent, children in self.waiting.items() for child in children]
        self.waiting.clear()
        for parent, child in stranded:
            if self.orch.cancel.is_set():
                self._record(Outcome(child.project_id, child.run_id, "load", "cancelled", "interrupted"))
            else:  # every load has finished, so the parent waits on this fork's line: a lineage cycle
                self._record(Outcome(child.project_id, child.run_id, "load", "failed",
                                     f"parent run {parent[1]!r} never loaded (a lineage cycle)"))
            self.loaded[child.key] = False
