"""Loading one stored run into Pluto: find or create the run, decide what Pluto lacks, send only that.

Order: scan -> open the run (our cached id, or create by external id, following replacements) -> read
back what Pluto holds of it (`_migrate.load` in its config, the truth; our cache only fills in what
the server cannot say) -> decide: nothing, a resume, a delta of the changed export, or a replacement
that must be asked for (`--force`) -> names, tags, config -> over-long string parameters as files ->
one pass over the rows (metrics, data, logs, files per batch), skipping what Pluto already holds ->
the completed load record, then the final status, read back and repaired if a reaper got there first.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from migrate_core.api import RunContext, RunReader
from migrate_core.format import TIMESTAMP_TYPE, step_units

from . import encode, names
from .digest import MetricDigests, RowDigests
from .errors import PlutoError
from .params import RunMeta, run_meta
from .pipeline import Pipeline
from .scan import Scan, kind_of, scan, value_mask
from .settings import PlutoConfig
from .state import DIGEST, RECORD_KEY, LoadRecord, RunState, StateStore
from .steps import StepPlan, units_of
from .transport import Transport
from .uploads import BIG_KEY, FileUploads, big_payload

LOG_TYPES = {"float_series": "METRIC", "string_series": "DATA", "histogram_series": "HISTOGRAM"}
REPLACED_TAG = "migrate:replaced"
GROUP_POINTS = 500_000  # metric points buffered to share lines between series (~12 MB)


class NeedsReplacement(PlutoError):
    """Pluto holds an earlier load of this run that cannot be brought up to date in place."""


class RunLoader(FileUploads):
    """Loads one run; the file half lives in uploads.FileUploads."""

    def __init__(self, config: PlutoConfig, transport: Transport, store: StateStore, reader: RunReader,
                 ctx: RunContext, kind: str) -> None:
        self.config = config
        self.http = transport
        self.store = store
        self.reader = reader
        self.ctx = ctx
        self.project = names.project_name(reader.project_id, config.project)
        self.kind = kind
        self.external_id = self._external_id(0)
        self.export_id = reader.run.export_id
        self.state = RunState(self.external_id, self.project)
        self.meta = RunMeta()
        self.plan = StepPlan()
        self.fallback_ms = 0
        self.encoded: dict[str, str] = {}
        self._last_beat = 0.0
        self._pipe: Pipeline | None = None
        self._series_steps: dict[str, list[Any]] = {}
        self._series_sorted: dict[str, bool] = {}
        self._series_last: dict[str, int] = {}
        self._line_numbers: dict[str, int] = {}
        self._file_names: dict[str, set[str]] = {}
        self._registered: dict[str, str] = {}
        # what this load decided Pluto already holds
        self.have: dict[str, int] = {}  # tracked path -> leading rows already in Pluto
        self.skip_metrics: set[str] = set()  # encoded metric names Pluto holds unchanged
        self.have_points: dict[str, int] = {}  # encoded metric name -> leading points Pluto holds unchanged
        self.listed: dict[tuple[str, str], tuple[int, str | None]] | None = None  # (logName, fileName) -> size, url
        self.rows_digests = RowDigests()
        self.metric_digests = MetricDigests()
        self._touched: dict[str, list[Any]] = {}  # tracked paths handled since the last acknowledged request
        self._sending = True
        self._replaced = False
        self.resumed = False
        self._metric_buffer: dict[str, list[tuple[np.ndarray, np.ndarray, pa.Array]]] = {}
        self._buffered_points = 0
        self.expected_files: list[tuple[str, str, int]] = []  # (logName, fileName, size) a pass would upload

    def _external_id(self, generation: int) -> str:
        base = names.external_id(self.kind, self.reader.project_id, self.reader.run_id)
        return base if generation == 0 else names.with_generation(base, generation)

    # ================================================================== top level

    def load(self) -> None:
        cached = self.store.load(self.reader.project_id, self.reader.run_id)
        if cached is not None and cached.project == self.project \
                and cached.external_id == self._external_id(cached.generation):
            self.state = cached
        info = scan(self.reader, self.config.read_batch_rows)
        self.ctx.check_cancelled()
        self._prepare(info)
        while True:
            details = self._open()
            try:
                self._decide(details)
                break
            except NeedsReplacement as exc:
                if self._replaced:
                    raise
                if not self.ctx.force:
                    self._restore_status(details)
                    raise NeedsReplacement(
                        f"Pluto run {self.state.pluto_id} ({self.state.external_id!r}) holds an earlier load that "
                        f"cannot be brought up to date in place: {exc}. Nothing was sent. Either load it afresh into "
                        f"a new Pluto run with `migrate load --force -r '^{re.escape(self.reader.run_id)}$'` (the old run is "
                        f"kept, tagged {REPLACED_TAG}), or delete that Pluto run and load again") from None
                self._replace(details, str(exc))
        self.resumed = details is not None
        if self.state.record.complete and self.state.record.export == self.export_id:
            self._already_loaded(details)
            return
        self._save()
        self.ctx.report.add(rows=self.meta.params)  # parameters travel in the run config
        if details is not None:  # an existing run: bring config and tags up to date
            self.http.api_post("/api/runs/config/update", {"runId": self.state.pluto_id,
                                                           "config": json.dumps(self._config(), allow_nan=False)},
                               "config update")
            tags, _overflow = names.run_tags(self.meta.tags, self.reader.project_id)
            self.http.api_post("/api/runs/tags/update", {"runId": self.state.pluto_id, "tags": tags}, "tags update")
        self._reconcile(details)
        self._register_names()
        self._upload_big_strings()
        self._pipe = Pipeline(lambda item: self._send_metrics(*item))
        try:
            self._stream_rows()
            self._pipe.flush()
        finally:
            self._pipe.close()
        self._finish()

    # ================================================================== preparation

    def _prepare(self, info: Scan) -> None:
        if info.params is not None:
            self.meta = run_meta(info.params, self.config.max_config_string)
            self.ctx.report.lost("parameter rows repeating a path (the config keeps the last)", self.meta.repeated)
        for type_, count in info.unknown_types.items():
            self.ctx.report.lost(f"rows of unknown attribute type {type_!r}", count)
        self.plan = info.planner.plan()
        parent_plan = self._parent_state_plan()
        if parent_plan is not None:
            merged = self.plan.merged(parent_plan)
            if merged != parent_plan:
                # the parent's points are already in Pluto on its scale; this fork needs a finer one
                self.ctx.report.lost("forks on a finer step scale than their parent (forkStep is on the parent's "
                                     "scale; both scales are in config _migrate)")
            self.plan = merged
        self.fallback_ms = self.meta.created_ms or 0
        self.encoded = {path: names.encode_name(path) for path in info.attributes}
        self.info = info

    def _parent_id(self) -> str | None:
        parent = self.meta.fork_parent or self.reader.lineage.get("parent_run_id")
        return str(parent) if parent and str(parent) != self.reader.run_id else None

    def _parent_state(self) -> RunState | None:
        parent = self._parent_id()
        return self.store.load(self.reader.project_id, parent) if parent else None

    def _parent_state_plan(self) -> StepPlan | None:
        parent = self._parent_state()
        if parent is None:
            return None
        return StepPlan.from_json(parent.record.plan)

    def _config(self) -> dict[str, Any]:
        config = json.loads(json.dumps(self.meta.config))
        renamed = {enc: path for path, enc in self.encoded.items() if enc != path}
        migrate: dict[str, Any] = {
            "source": self.kind,
            "project_id": self.reader.project_id,
            "run_id": self.reader.run_id,
            "external_id": self.state.external_id,
            "step_scale": self.plan.scale,
            "step_offset": self.plan.offset,
            "step_rule": "pluto_step = (source_step - step_offset) * step_scale",
        }
        if renamed:
            migrate["names"] = renamed
        _tags, overflow = names.run_tags(self.meta.tags, self.reader.project_id)
        if overflow:
            migrate["tags_overflow"] = overflow
        logs = sorted(p for p, t in self.info.attributes.items() if kind_of(p, t) == "logs")
        if logs:
            migrate["console_logs"] = logs
        config["_migrate"] = migrate
        return config

    # ================================================================== the run itself

    def _details(self, run_id: int) -> dict[str, Any] | None:
        try:
            return self.http.api_get(f"/api/runs/details/{run_id}", {"projectName": self.project}, "run details")
        except PlutoError as exc:
            if exc.status == 404:
                return None
            raise

    def _exists(self, state: RunState) -> bool:
        return state.pluto_id is not None and self._details(state.pluto_id) is not None

    def _open(self) -> dict[str, Any] | None:
        """The run's details when Pluto already has it (None for a run created now), following replacements."""
        if self.state.pluto_id is not None:
            details = self._details(self.state.pluto_id)
            if details is not None:
                return details
            # the Pluto run was deleted: start over under the same external id
            self.state = RunState(self.state.external_id, self.project, generation=self.state.generation)
        while True:
            answer = self._create()
            if not answer.get("resumed"):
                return None
            details = self._details(self.state.pluto_id or 0)
            if details is None:
                raise PlutoError(f"Pluto resumed run {self.state.pluto_id} but cannot show it")
            successor = ((details.get("config") or {}).get("_migrate") or {}).get("replaced_by")
            if not successor or successor == self.state.external_id:
                return details
            # a replaced run: creating it again switched it back to RUNNING; put its status back and move on
            self._set_status(self.state.pluto_id or 0)
            generation = self.state.generation + 1
            if self._external_id(generation) != successor:
                raise PlutoError(f"Pluto run {self.state.external_id!r} says it was replaced by {successor!r}, "
                                 f"which is not this run's next generation")
            self.state = RunState(successor, self.project, generation=generation)

    def _create(self) -> dict[str, Any]:
        tags, overflow = names.run_tags(self.meta.tags, self.reader.project_id)
        if overflow:
            self.ctx.report.lost("tags over Pluto's limits (kept in config _migrate.tags_overflow)", len(overflow))
        config = self._config()
        # marks a run this load created, before anything is sent; on an existing run it merges in beside the
        # record of what was loaded and changes none of it
        config["_migrate"][RECORD_KEY] = {"created": self.export_id}
        body: dict[str, Any] = {
            "runName": self.meta.name or self.reader.run_id,
            "projectName": self.project,
            "externalId": self.state.external_id,
            "config": json.dumps(config, ensure_ascii=False, allow_nan=False),
            "tags": tags,
            "loggerSettings": json.dumps({"source": "migrate-pluto"}),
            "systemMetadata": None,
            "createdAt": self.meta.created_ms,
            "updatedAt": self.meta.updated_ms or self.meta.created_ms,
        }
        fork = self._fork()
        if fork is not None:
            body.update(forkRunId=fork[0], forkStep=fork[1], inheritConfig=False, inheritTags=False)
        answer = self.http.api_post("/api/runs/create", body, "run create")
        run_id = answer.get("runId")
        if not isinstance(run_id, int):
            raise PlutoError(f"Pluto's run create answer has no runId: {str(answer)[:200]}")
        self.state.pluto_id = run_id
        if not answer.get("resumed"):
            self.state.record = LoadRecord(export=self.export_id, plan=self.plan.as_json())
        self._beat(force=True)
        return answer

    def _fork(self) -> tuple[int, int] | None:
        parent = self._parent_id()
        if parent is None:
            return None
        parent_state = self._parent_state()
        if parent_state is None or parent_state.pluto_id is None or not self._exists(parent_state):
            # the orchestrator loads parents first and defers forks of parents it has in storage, so this
            # parent is nowhere to be had: the run loads unlinked, its lineage stays in config sys/forking/*
            self.ctx.report.lost("fork links to a parent run that is not in Pluto (kept in config)")
            self.ctx.report.note(f"fork parent {parent!r} is not loaded into Pluto: loaded without the link")
            return None
        step = self.meta.fork_step if self.meta.fork_step is not None else self.reader.lineage.get("fork_step")
        if step is None:
            self.ctx.report.note("fork without a fork step: linked at step 0")
            return parent_state.pluto_id, 0
        # the fork step is a step of the parent's history, so it is mapped with the plan the parent was sent with
        plan = StepPlan.from_json(parent_state.record.plan) or self.plan
        units = units_of(step)
        mapped = plan.unit_to_pluto(units)
        if (units - plan.offset_units) % plan.divisor:
            self.ctx.report.note(f"fork step {step} falls between the parent's steps; linked at {mapped}")
        return parent_state.pluto_id, max(0, mapped)

    def _register_names(self) -> None:
        by_type: dict[str, list[str]] = {}
        for path, type_ in self.info.attributes.items():
            log_type = LOG_TYPES.get(type_)  # files are registered as they upload (IMAGE or ARTIFACT)
            if log_type is None or kind_of(path, type_) == "logs":
                continue
            by_type.setdefault(log_type, []).append(self.encoded[path])
        for log_type, items in sorted(by_type.items()):
            for start in range(0, len(items), 1000):
                self.http.api_post(
                    "/api/runs/logName/add",
                    {"runId": self.state.pluto_id, "logType": log_type, "logName": sorted(items)[start : start + 1000]},
                    "log name registration",
                )

    def _status(self) -> str:
        return "FAILED" if self.meta.failed else "COMPLETED"

    def _set_status(self, run_id: int) -> None:
        body = {"runId": run_id, "status": self._status(), "statusMetadata": None, "statusUpdated": self.meta.updated_ms}
        self.http.api_post("/api/runs/status/update", body, "status update")

    def _restore_status(self, details: dict[str, Any] | None) -> None:
        """Opening an existing run by its external id switched it to RUNNING: give it its status back."""
        if details is not None and details.get("status") == "RUNNING" and self.state.pluto_id is not None:
            self._set_status(self.state.pluto_id)

    def _finish(self) -> None:
        record = self.state.record
        record.export = self.export_id
        record.plan = self.plan.as_json()
        record.tracked.update({p: [n, self.rows_digests.digest(p)] for p, n in self.rows_digests.rows.items()})
        record.complete = True
        record.pending = None
        # the record first: a load killed before the status reads as complete and only has its status put right
        self._checkpoint(record.as_config())
        self._set_status(self.state.pluto_id or 0)
        status = self._status()
        details = self._details(self.state.pluto_id or 0) or {}
        if details.get("status") != status:
            # a stale-run reaper (or an older load) set a stronger terminal state: resume, finish again
            self.http.api_post("/api/runs/resume", {"runId": self.state.pluto_id}, "run resume")
            self._set_status(self.state.pluto_id or 0)
            self.ctx.report.note(f"status repaired from {details.get('status')} to {status}")
        self.state.pending = None
        self._save()

    def _already_loaded(self, details: dict[str, Any] | None) -> None:
        self._restore_status(details)
        self._save()
        self.ctx.report.note("already loaded into Pluto (the same export); nothing sent")

    def _checkpoint(self, delta: dict[str, Any]) -> None:
        """Write (part of) the load record into the run's config, where any machine can read it back."""
        config = {"_migrate": {RECORD_KEY: delta}}
        self.http.api_post("/api/runs/config/update", {"runId": self.state.pluto_id,
                                                       "config": json.dumps(config, allow_nan=False)},
                           "load record update")

    # ================================================================== what Pluto holds, and what to send

    def _decide(self, details: dict[str, Any] | None) -> None:
        """Set `have`, `skip_metrics` and the state's record from what Pluto holds; raise NeedsReplacement
        when it holds an earlier load that cannot be brought up to date in place."""
        if details is None:  # created now: Pluto holds nothing of it
            self.have, self.skip_metrics = {}, set()
            return
        record = LoadRecord.from_config(details.get("config"))
        cached = self.state.record
        if self.ctx.force and not self._replaced:
            raise NeedsReplacement("--force asks for a fresh load")
        if record is None:
            self._decide_without_record(details)
            return
        if record.export == self.export_id and cached.export == self.export_id and not record.complete:
            # our cache saw the same load; it may be one acknowledged request ahead of the server's copy
            for path, entry in cached.tracked.items():
                if entry[0] > record.tracked.get(path, [0])[0]:
                    record.tracked[path] = entry
            record.lines = max(record.lines, cached.lines)
            record.pending = _unresolved(record.pending, record.tracked) or cached.pending
        self.state.record = record
        if record.export == self.export_id:
            self._check_plan(record)
            self.have = {path: int(entry[0]) for path, entry in record.tracked.items()}
            self.skip_metrics = set(record.metrics) if record.complete else set()
            return
        if not record.complete:
            raise NeedsReplacement("an earlier load of an older export of this run was interrupted, so Pluto holds "
                                   "an unknown part of it")
        if record.digest != DIGEST:
            raise NeedsReplacement(f"Pluto's record of the load was made with digests {record.digest!r}, which this "
                                   f"version cannot compare ({DIGEST!r})")
        self._check_plan(record)
        self._decide_delta(record, details)

    def _check_plan(self, record: LoadRecord) -> None:
        sent = StepPlan.from_json(record.plan)
        if sent is not None and sent != self.plan and (record.tracked or record.metrics or not record.complete):
            raise NeedsReplacement(
                f"the export needs step scale {self.plan.scale} and offset {self.plan.offset}, but Pluto holds "
                f"points sent with scale {sent.scale} and offset {sent.offset}")

    def _decide_without_record(self, details: dict[str, Any]) -> None:
        """A run with our external id but no load record (an older migrate, or an unknown writer)."""
        tracked = sorted(p for p, t in self.info.attributes.items() if kind_of(p, t) in ("data", "logs"))
        if tracked:
            raise NeedsReplacement(
                f"Pluto holds this run without a load record, so what it holds of {len(tracked)} series Pluto "
                f"cannot show back (histograms, string series, console lines: {', '.join(tracked[:3])}"
                f"{', ...' if len(tracked) > 3 else ''}) is unknown")
        # metrics are deduplicated by Pluto and files are listed: both are reconciled as they stream
        self.state.record = LoadRecord(export=self.export_id, plan=self.plan.as_json())
        self.have, self.skip_metrics = {}, set()

    def _decide_delta(self, record: LoadRecord, details: dict[str, Any]) -> None:
        """The export changed since Pluto's complete load of it: what changed must be new rows at the end of
        tracked series, new or changed metric series, new files or parameters; anything else is a replacement."""
        problems: list[str] = []
        old_config = {k: v for k, v in (details.get("config") or {}).items() if k != "_migrate"}
        new_config = {k: v for k, v in self._config().items() if k != "_migrate"}
        removed = sorted(set(_leaves(old_config)) - set(_leaves(new_config)))
        if removed:
            problems.append(f"parameters removed from the source: {', '.join(removed[:5])}")
        if details.get("name") not in (None, self.meta.name or self.reader.run_id):
            problems.append(f"the run name changed from {details.get('name')!r}")
        if details.get("status") == "FAILED" and not self.meta.failed:
            problems.append("the run is FAILED in Pluto, which no later status overrides")
        dry = self._dry_pass({path: int(entry[0]) for path, entry in record.tracked.items()},
                             {name: int(entry[0]) for name, entry in record.metrics.items()})
        for path, (rows, digest) in sorted(record.tracked.items()):
            now = dry.rows_digests.rows.get(path, 0)
            if now < int(rows):
                problems.append(f"{path}: {int(rows) - now} of its rows are gone from the export")
            elif dry.rows_digests.at_want.get(path) != digest:
                problems.append(f"{path}: rows Pluto holds changed in the export")
        points = dry.metric_digests.rows
        self.skip_metrics, self.have_points = set(), {}
        for name, (count, digest) in sorted(record.metrics.items()):
            if name not in points:
                problems.append(f"{name}: the metric is gone from the export")
            elif points[name] < int(count):
                problems.append(f"{name}: {int(count) - points[name]} of its points are gone from the export")
            elif dry.metric_digests.at_want.get(name) == digest:
                # the points Pluto holds are still the series' first points: send the rest
                self.have_points[name] = int(count)
                if points[name] == int(count):
                    self.skip_metrics.add(name)
            else:  # Pluto keeps the point with the latest time per step, so a changed point may not take
                problems.append(f"{name}: points Pluto holds changed in the export")

        if problems:
            raise NeedsReplacement("; ".join(problems[:8]) + (f"; and {len(problems) - 8} more" if len(problems) > 8
                                                              else ""))
        self.have = {path: int(entry[0]) for path, entry in record.tracked.items()}
        record.complete = False
        record.export = self.export_id
        self.ctx.report.note(f"the export changed since its load: sending the changes ({len(self.skip_metrics)} of "
                             f"{len(points)} metric series unchanged)")

    def predict(self) -> None:
        """Count in the report what a load would count as not carried, sending nothing (`--dry-run`)."""
        info = scan(self.reader, self.config.read_batch_rows)
        self._prepare(info)
        _tags, overflow = names.run_tags(self.meta.tags, self.reader.project_id)
        if overflow:
            self.ctx.report.lost("tags over Pluto's limits (kept in config _migrate.tags_overflow)", len(overflow))
        dry = self._dry_pass({}, report=self.ctx.report)
        dry._record_metrics()

    def _dry_pass(self, want: dict[str, int], want_points: dict[str, int] | None = None,
                  report: Any = None) -> RunLoader:
        """Read the run once without sending, for the digests of what it holds now. Its losses go to
        `report` (by default nowhere: the load that asked counts them as it sends)."""
        dry = RunLoader(self.config, self.http, self.store, self.reader, self.ctx, self.kind)
        dry.meta, dry.plan, dry.fallback_ms, dry.encoded, dry.info = (self.meta, self.plan, self.fallback_ms,
                                                                      self.encoded, self.info)
        dry.ctx = RunContext(report if report is not None else type(self.ctx.report)(), self.ctx.cancel_event)
        dry.rows_digests = RowDigests(want)
        dry.metric_digests = MetricDigests(want_points)
        dry._sending = False
        for path, value in self.meta.big_strings:
            dry._row_key(BIG_KEY, None, 0, big_payload(path, value), lines=False)
            dry.expected_files.append((names.encode_name(path), "value.txt", len(value.encode("utf-8"))))
        dry._stream_rows()
        return dry

    def counted_points(self) -> dict[str, int]:
        """Distinct steps per metric series seen by this pass (what Pluto keeps of it)."""
        return {name: entry["points"] for name, entry in self._series_summary().items()}

    def _replace(self, details: dict[str, Any] | None, why: str) -> None:
        """Start a fresh Pluto run for this source run; the old one is marked, never deleted (Pluto cannot)."""
        old = self.state.pluto_id
        generation = self.state.generation + 1
        successor = self._external_id(generation)
        if old is not None:
            self.http.api_post("/api/runs/config/update", {
                "runId": old, "config": json.dumps({"_migrate": {"replaced_by": successor, "replaced_because": why}})
            }, "config update (replaced)")
            tags = list((details or {}).get("tags") or [])
            if REPLACED_TAG not in tags and len(tags) < names.MAX_TAGS:
                self.http.api_post("/api/runs/tags/update", {"runId": old, "tags": [*tags, REPLACED_TAG]},
                                   "tags update (replaced)")
            self._restore_status(details)
        self.ctx.report.note(f"replaced Pluto run {old} ({why}): loading into a new run {successor!r}")
        self.state = RunState(successor, self.project, generation=generation)
        self._replaced = True
        self._save()

    # ================================================================== reconciliation of a killed request

    def _reconcile(self, details: dict[str, Any] | None) -> None:
        """A request sent but never acknowledged (a kill, a lost answer): ask Pluto what it kept."""
        pending = self.state.pending
        if pending is None and self.state.record.pending:
            try:
                pending = json.loads(self.state.record.pending)
            except ValueError:
                pending = None
        self.state.pending = None
        self.state.record.pending = None
        if not pending or details is None:
            return
        kind = pending.get("kind")
        if kind == "logs":
            landed = max(0, self._log_total() - self.state.record.lines)
            if landed >= pending["lines"]:
                self._acknowledged(pending)
            elif landed:  # a request cut short: those lines are in Pluto and will be sent again
                self.ctx.report.lost("console lines possibly sent twice (a request cut short)", landed)
        elif kind in ("files", "big"):
            if self._file_arrived(pending) or self._resume_upload(pending):
                self._file_done(pending)
        elif kind == "data":
            rows = sum(int(entry[0]) - self.have.get(path, 0) for path, entry in pending["acked"].items())
            self.ctx.report.lost("histogram and string series points possibly sent twice (a request whose answer "
                                 "never came; Pluto cannot show these back)", max(rows, 1))
        self._save()

    def _log_total(self) -> int:
        answer = self.http.api_get(
            "/api/runs/logs", {"runId": self.state.pluto_id, "projectName": self.project, "limit": 1}, "log count"
        )
        return int(answer.get("total") or 0)

    def _acknowledged(self, pending: dict[str, Any]) -> None:
        for path, entry in pending["acked"].items():
            self.state.record.tracked[path] = list(entry)
            self.have[path] = max(self.have.get(path, 0), int(entry[0]))
        if pending["kind"] == "logs":
            self.state.record.lines += int(pending["lines"])

    # ================================================================== helpers

    def _save(self) -> None:
        if self._sending:
            self.store.save(self.reader.project_id, self.reader.run_id, self.state)

    def _beat(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_beat < self.config.heartbeat:
            return
        self._last_beat = now
        if self.http.heartbeat(self.state.pluto_id or 0) == "CANCELLED":
            raise PlutoError("the run was cancelled in Pluto while loading")

    def _send(self, kind: str, body: bytes, what: str, landed: Callable[[], bool] | None = None) -> None:
        self.ctx.check_cancelled()
        self._beat()
        self.http.ingest(kind, body, self.state.pluto_id or 0, self.project, what, landed=landed)

    def _send_metrics(self, body: bytes, points: int) -> None:
        self._send("metrics", body, "metrics ingest")
        self.ctx.report.add(rows=points)  # counted once Pluto acknowledged them, never before

    def _tracked(self, kind: str, body: bytes, rows: int) -> None:
        """Send a body of a kind Pluto never deduplicates, with an intent written first (here and in Pluto)
        and the acknowledged rows recorded after, so a resume on any machine knows what Pluto holds."""
        self._pipe.flush()
        lines = body.count(b"\n")
        pending = {"kind": kind, "lines": lines, "acked": dict(self._touched)}
        self._touched = {}
        self.state.pending = pending
        self._save()
        self.state.record.pending = json.dumps(pending)
        self._checkpoint({"pending": self.state.record.pending})
        landed = None
        if kind == "logs":
            acked = self.state.record.lines
            landed = lambda: self._log_total() >= acked + lines  # noqa: E731 - an answer lost in transit
        self._send(kind, body, f"{kind} ingest", landed)
        self._acknowledged(pending)
        self.state.pending = None
        self.state.record.pending = None
        self._save()
        self._checkpoint({"tracked": pending["acked"], "lines": self.state.record.lines, "pending": None})
        self.ctx.report.add(rows=rows)

    def _row_key(self, path: str, step: int | None, time_ms: int, payload: bytes, lines: bool = True) -> bool:
        """Digest one tracked row; True when Pluto already holds it (it is among the path's leading rows).
        Rows of data and console lines join the next request's acknowledgement (`lines`); files record
        their own, one upload at a time."""
        index = self.rows_digests.row(path, step, time_ms, payload)
        if lines:
            self._touched[path] = [index + 1, self.rows_digests.digest(path)]
        return index < self.have.get(path, 0)

    # ================================================================== the rows

    def _stream_rows(self) -> None:
        for batch in self.reader.batches(columns=self._stream_columns(), batch_rows=self.config.read_batch_rows):
            self.ctx.check_cancelled()
            if batch.num_rows == 0:
                continue
            table = pa.Table.from_batches([batch])
            kinds = value_mask_kinds(table["attribute_path"], table["attribute_type"])
            for kind, handler in (("metrics", self._metrics), ("data", self._data), ("logs", self._logs),
                                  ("files", self._files)):
                mask = kinds[kind]
                n = pc.sum(mask).as_py() or 0
                if not n:
                    continue
                rows = table if n == table.num_rows else table.filter(mask)  # a run's batch is often one kind
                if kind == "files" and not self._sending:
                    self._file_digests(rows)
                    continue
                handler(rows)
            if self._sending:
                self.ctx.progress(batch.num_rows)
        if self._sending:
            self._flush_metrics()
            self._pipe.flush()
            self._record_metrics()
            self._save()

    def _stream_columns(self) -> list[str]:
        """Only the value columns this run's kinds use (the scan saw every type): a metrics-only run reads 5
        of the 14 columns."""
        types = set(self.info.attributes.values())
        columns = ["attribute_path", "attribute_type", "step", "timestamp"]
        if "float_series" in types:
            columns.append("float_value")
        if types & {"string_series", "histogram_series"}:
            columns += ["string_value", "histogram_value"]
        if types & {"file", "file_series", "file_set", "artifact"}:
            columns.append("file_value")
        return columns

    def _steps_times(self, rows: pa.Table) -> tuple[np.ndarray, np.ndarray, pa.Array]:
        """Pluto steps, ms times, and the mask of rows that have a step."""
        step = rows["step"].combine_chunks()
        has_step = pc.is_valid(step)
        units = step_units(step)
        ts = rows["timestamp"].combine_chunks()
        # a series point needs a time in Pluto: one without is sent at the run's creation time, and counted
        # (a plain file has no time of its own in Neptune, so giving it one loses nothing)
        series = value_mask(rows["attribute_type"], lambda t: t is not None and t.endswith("_series"))
        untimed = pc.sum(pc.and_(pc.is_null(ts), series)).as_py() or 0
        if untimed:
            self.ctx.report.lost("series points without a timestamp (sent with the run's creation time)"
                                 if self.meta.created_ms is not None else
                                 "series points without a timestamp (sent as 1970-01-01: the run has no "
                                 "creation time)", untimed)
        times = pc.cast(ts.cast(TIMESTAMP_TYPE), pa.int64()).fill_null(self.fallback_ms)
        times_np = times.to_numpy(zero_copy_only=False)
        early = int((times_np < 0).sum())
        if early:
            self.ctx.report.lost("points timed before 1970 (Pluto times are unsigned: sent as 1970-01-01)", early)
            times_np = np.maximum(times_np, 0)
        shifted = units - self.plan.offset_units
        below = int(((shifted < 0) & has_step.to_numpy(zero_copy_only=False)).sum())
        if below:  # the plan covers every step of the run, so only a defect gets here: say so, never clamp quietly
            self.ctx.report.lost("points below the run's step offset (sent at step 0)", below)
        if self.plan.divisor > 1:
            between = int(((shifted % self.plan.divisor != 0) & has_step.to_numpy(zero_copy_only=False)).sum())
            if between:  # only a manifest whose step summary disagrees with its rows gets here: say so
                self.ctx.report.lost("points between the steps of the run's step plan (its manifest's step "
                                     "summary disagrees with the rows: export the run again)", between)
        steps = np.maximum(shifted, 0) if below else shifted  # (rows without a step are masked by callers)
        if self.plan.divisor > 1:
            steps = steps // self.plan.divisor
        return steps.astype(np.uint64), times_np.astype(np.int64, copy=False), has_step

    # ---------------------------------------------------------------- metrics

    def _metrics(self, rows: pa.Table) -> None:
        steps, times, has_step = self._steps_times(rows)
        values = rows["float_value"].combine_chunks()
        keep = pc.and_(has_step, pc.is_valid(values))
        dropped = len(values) - (pc.sum(keep).as_py() or 0)
        if dropped:
            no_step = len(values) - (pc.sum(has_step).as_py() or 0)
            self.ctx.report.lost("float_series points without a step", no_step)
            self.ctx.report.lost("float_series points without a value", dropped - no_step)
        keep_np = keep.to_numpy(zero_copy_only=False)
        values_np = values.to_numpy(zero_copy_only=False)
        paths = rows["attribute_path"].combine_chunks()
        encoded_paths = paths if pa.types.is_dictionary(paths.type) else paths.dictionary_encode()
        codes = encoded_paths.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        for segment in np.split(order, bounds):
            if segment.size == 0:
                continue
            name = self.encoded.get(encoded_paths.dictionary[int(codes[segment[0]])].as_py())
            if name is None:
                name = names.encode_name(encoded_paths.dictionary[int(codes[segment[0]])].as_py())
            seg = segment[keep_np[segment]]
            if name in self.skip_metrics or seg.size == 0:
                continue
            # storage holds a series' points together, so a segment is usually one run of rows: views and
            # an Arrow slice instead of gathered copies
            first = int(seg[0])
            pick: slice | np.ndarray = slice(first, first + seg.size) if int(seg[-1]) - first + 1 == seg.size \
                else seg
            seg_steps, seg_times = steps[pick], times[pick]
            self._track_steps(name, seg_steps)
            before = self.metric_digests.rows.get(name, 0)
            self.metric_digests.add(name, seg_steps, seg_times, values_np[pick])
            if not self._sending:
                continue
            held = self.have_points.get(name, 0) - before  # the series' leading points Pluto holds unchanged
            if held >= seg.size:
                continue
            if isinstance(pick, slice):
                picked = values.slice(first + max(held, 0), seg.size - max(held, 0))
            else:
                picked = values.take(pa.array(seg[max(held, 0):]))
            held = max(held, 0)
            self._metric_buffer.setdefault(name, []).append((seg_steps[held:], seg_times[held:], picked))
            self._buffered_points += seg.size - held
        if self._buffered_points >= GROUP_POINTS:
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        """Send the buffered metric points, one line per step for the series that share steps and times.

        Storage holds a run's series one after another, so the buffer spans batches (up to GROUP_POINTS
        points): series logged together (the usual case) then share lines, as one `log()` of several keys
        would send them, and the server parses a fraction of the text. Nothing else changes: Pluto keeps
        one value per (series, step) either way."""
        buffered, self._metric_buffer, self._buffered_points = self._metric_buffer, {}, 0
        groups: list[tuple[np.ndarray, np.ndarray, list[tuple[str, pa.Array]]]] = []
        by_shape: dict[tuple[int, bytes], list[int]] = {}
        for name, chunks in buffered.items():
            steps = chunks[0][0] if len(chunks) == 1 else np.concatenate([c[0] for c in chunks])
            times = chunks[0][1] if len(chunks) == 1 else np.concatenate([c[1] for c in chunks])
            values = chunks[0][2] if len(chunks) == 1 else pa.concat_arrays([c[2] for c in chunks])
            key = (steps.size, hashlib.sha256(np.ascontiguousarray(steps)).digest()[:8])  # type: ignore[arg-type]
            for index in by_shape.get(key, []):
                if np.array_equal(groups[index][0], steps) and np.array_equal(groups[index][1], times):
                    groups[index][2].append((name, values))
                    break
            else:
                by_shape.setdefault(key, []).append(len(groups))
                groups.append((steps, times, [(name, values)]))
        pending: list[bytes] = []
        pending_points = 0
        for steps, times, members in groups:
            rows = max(1, self.config.request_points // len(members))
            for start in range(0, steps.size, rows):
                end = min(start + rows, steps.size)
                pending.append(encode.grouped_metric_body(
                    [name for name, _values in members], steps[start:end], times[start:end],
                    [values.slice(start, end - start) for _name, values in members]))
                pending_points += (end - start) * len(members)
                if pending_points >= self.config.request_points:
                    self._pipe.submit((b"".join(pending), pending_points))
                    pending, pending_points = [], 0
        if pending:
            self._pipe.submit((b"".join(pending), pending_points))

    def _track_steps(self, name: str, steps: np.ndarray) -> None:
        """Remember a series' steps for the duplicate count, compactly: an evenly spaced chunk (the usual
        case) is kept as (start, stride, count), anything else as its array."""
        if steps.size == 0:
            return
        diffs = np.diff(steps.astype(np.int64))
        if steps.size == 1 or bool(np.all(diffs == diffs[0])):
            stride = int(diffs[0]) if steps.size > 1 else 0
            self._series_steps.setdefault(name, []).append((int(steps[0]), stride, int(steps.size)))
        else:
            self._series_steps.setdefault(name, []).append(steps.copy())
        ordered = bool(np.all(diffs > 0)) and int(steps[0]) > self._series_last.get(name, -1)
        self._series_sorted[name] = self._series_sorted.get(name, True) and ordered
        self._series_last[name] = max(self._series_last.get(name, -1), int(steps.max()))

    def _series_summary(self) -> dict[str, dict[str, Any]]:
        series: dict[str, Any] = {}
        for name, chunks in self._series_steps.items():
            rows = sum(c[2] if isinstance(c, tuple) else c.size for c in chunks)
            if self._series_sorted.get(name):
                unique = rows
            else:
                steps = np.concatenate([np.arange(c[0], c[0] + c[1] * c[2], c[1], dtype=np.int64) if
                                        isinstance(c, tuple) and c[1] else
                                        np.full(c[2], c[0], dtype=np.int64) if isinstance(c, tuple) else
                                        c.astype(np.int64) for c in chunks])
                unique = int(np.unique(steps).size)
            series[name] = {"points": unique, "rows": rows}
        return series

    def _record_metrics(self) -> None:
        for name, entry in self._series_summary().items():
            if entry["rows"] > entry["points"]:
                self.ctx.report.lost("float_series points sharing a step with another point of the series "
                                     "(Pluto keeps one value per step)", entry["rows"] - entry["points"])
            self.state.record.metrics[name] = [self.metric_digests.rows.get(name, 0), self.metric_digests.digest(name)]
        self._series_steps.clear()

    # ---------------------------------------------------------------- data (string series, histograms)

    def _data(self, rows: pa.Table) -> None:
        steps, times, has_step = self._steps_times(rows)
        units = step_units(rows["step"].combine_chunks())
        paths = rows["attribute_path"].to_pylist()
        types = rows["attribute_type"].to_pylist()
        strings = rows["string_value"].to_pylist()
        hists = rows["histogram_value"].to_pylist()
        ok_step = has_step.to_numpy(zero_copy_only=False)
        out = _Lines(self, "data")
        approximated = 0
        for i, (path, type_) in enumerate(zip(paths, types, strict=True)):
            name = self.encoded.get(path, names.encode_name(path))
            payload: str | None = None
            if not ok_step[i]:
                self.ctx.report.lost(f"{type_} points without a step")
            elif type_ == "histogram_series":
                hist = hists[i]
                if not hist or hist.get("values") is None:
                    self.ctx.report.lost("histogram_series points without a value")
                else:
                    payload, uniform = encode.histogram_payload(hist.get("edges") or [], hist["values"])
                    data_type = "HISTOGRAM"
                    approximated += 0 if uniform else 1
            elif strings[i] is None:
                self.ctx.report.lost("string_series points without a value")
            else:
                payload, data_type = strings[i], "string-series"
            blob = b"" if payload is None else payload.encode()
            held = self._row_key(path, int(units[i]) if ok_step[i] else None, int(times[i]), blob)
            if payload is None or held or not self._sending:
                continue
            out.add(encode.data_lines(name, data_type, [int(steps[i])], [int(times[i])], [payload])[0])
        if approximated:
            self.ctx.report.lost("histograms with non-uniform edges drawn as uniform bins "
                                 "(exact edges kept in the payload's `edges`)", approximated)
        out.close()

    # ---------------------------------------------------------------- console logs

    def _logs(self, rows: pa.Table) -> None:
        _steps, times, _has = self._steps_times(rows)
        paths = rows["attribute_path"].to_pylist()
        messages = rows["string_value"].to_pylist()
        out = _Lines(self, "logs")
        for i, path in enumerate(paths):
            if messages[i] is None:
                self.ctx.report.lost("console lines without a value")
                self._row_key(path, None, int(times[i]), b"\x00")
                continue
            line_no = self._line_numbers.get(path, 0)
            self._line_numbers[path] = line_no + 1
            if self._row_key(path, None, int(times[i]), messages[i].encode()) or not self._sending:
                continue
            log_type = "ERROR" if path.endswith("stderr") else "INFO"
            out.add(encode.log_lines(log_type, [line_no], [int(times[i])], [messages[i]])[0])
        out.close()


class _Lines:
    """NDJSON lines of one tracked kind, sent as soon as they reach `request_bytes` (memory stays bounded
    whatever the strings weigh), and at the end of each batch."""

    def __init__(self, loader: RunLoader, kind: str) -> None:
        self.loader = loader
        self.kind = kind
        self.lines: list[bytes] = []
        self.size = 0

    def add(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        if self.size >= self.loader.config.request_bytes:
            self._send()

    def close(self) -> None:
        if self.lines:
            self._send()

    def _send(self) -> None:
        body = b"".join(self.lines)
        rows = len(self.lines)
        self.lines, self.size = [], 0
        self.loader._tracked(self.kind, body, rows)


def _unresolved(pending: str | None, tracked: dict[str, list[Any]]) -> str | None:
    """A pending request the cache already saw acknowledged is no longer pending."""
    if not pending:
        return None
    try:
        acked = json.loads(pending).get("acked") or {}
    except (ValueError, AttributeError):
        return None
    if acked and all(int(tracked.get(path, [0])[0]) >= int(entry[0]) for path, entry in acked.items()):
        return None
    return pending


def _leaves(config: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths of a nested config's values."""
    out: list[str] = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out += _leaves(value, path + "/")
        else:
            out.append(path)
    return out


def value_mask_kinds(paths: pa.ChunkedArray, types: pa.ChunkedArray) -> dict[str, pa.Array]:
    """Row masks of the four send streams, computed per distinct (path, type) value."""
    kind_by_type = {"float_series": "metrics", "histogram_series": "data", "file": "files", "file_series": "files",
                    "file_set": "files", "artifact": "files"}
    metrics = value_mask(types, lambda t: kind_by_type.get(t) == "metrics")
    files = value_mask(types, lambda t: kind_by_type.get(t) == "files")
    strings = value_mask(types, lambda t: t == "string_series")
    hist = value_mask(types, lambda t: t == "histogram_series")
    log_path = value_mask(paths, lambda p: p is not None and kind_of(p, "string_series") == "logs")
    logs = pc.and_(strings, log_path)
    data = pc.or_(hist, pc.and_(strings, pc.invert(log_path)))
    return {"metrics": metrics, "data": data, "logs": logs, "files": files}
