"""Loading one stored run into Pluto: create (or find) the run, then stream every kind, resumably.

Order: scan -> create/resume the run -> reconcile an unfinished request from a killed load -> log
names, tags, config -> over-long string parameters as files -> one pass over the rows (metrics, data,
logs, files per batch) -> final status, read back and repaired if the stale-run reaper got there first.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from migrate_core.api import RunContext, RunReader
from migrate_core.format import TIMESTAMP_TYPE, step_units

from . import encode, names
from .errors import PlutoError
from .params import RunMeta, run_meta
from .pipeline import Pipeline
from .scan import Scan, kind_of, scan, value_mask
from .settings import PlutoConfig
from .state import RunState, StateStore
from .steps import StepPlan, units_of
from .transport import Transport
from .uploads import FileUploads

LOG_TYPES = {"float_series": "METRIC", "string_series": "DATA", "histogram_series": "HISTOGRAM"}


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
        self.external_id = names.external_id(kind, reader.project_id, reader.run_id)
        self.kind = kind
        self.state = RunState(self.external_id, self.project)
        self.meta = RunMeta()
        self.plan = StepPlan()
        self.fallback_ms = 0
        self.encoded: dict[str, str] = {}
        self._last_beat = 0.0
        self._pipe: Pipeline | None = None
        self._series_steps: dict[str, list[np.ndarray]] = {}
        self._series_sorted: dict[str, bool] = {}
        self._series_last: dict[str, int] = {}
        self._line_numbers: dict[str, int] = {}
        self._file_names: dict[str, set[str]] = {}
        self._registered: dict[str, str] = {}

    # ================================================================== top level

    def load(self) -> None:
        previous = self.store.load(self.reader.project_id, self.reader.run_id)
        if previous is not None and previous.external_id == self.external_id and previous.project == self.project:
            self.state = previous
        info = scan(self.reader, self.config.read_batch_rows)
        self.ctx.check_cancelled()
        self._prepare(info)
        if self.state.complete and self._still_there():
            self.ctx.report.add(rows=info.rows)
            self.ctx.report.note("already loaded into Pluto; nothing sent")
            return
        if self.state.complete:  # the Pluto run was deleted: start over
            self.state = RunState(self.external_id, self.project, plan=self.plan.as_json())
        self._create()
        self._reconcile()
        self._register_names()
        self._upload_big_strings()
        self._pipe = Pipeline(lambda body: self._send("metrics", body, "metrics ingest"))
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
        for type_, count in info.unknown_types.items():
            self.ctx.report.lost(f"rows of unknown attribute type {type_!r}", count)
        self.plan = info.planner.plan()
        parent_plan = self._parent_state_plan()
        if parent_plan is not None:
            self.plan = self.plan.merged(parent_plan)
        if self.state.plan:  # a resumed load keeps the plan its first part used
            self.plan = StepPlan.from_json(self.state.plan) or self.plan
        self.state.plan = self.plan.as_json()
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
        return StepPlan.from_json(parent.plan) if parent is not None else None

    def _config(self) -> dict[str, Any]:
        config = json.loads(json.dumps(self.meta.config))
        renamed = {enc: path for path, enc in self.encoded.items() if enc != path}
        migrate: dict[str, Any] = {
            "source": self.kind,
            "project_id": self.reader.project_id,
            "run_id": self.reader.run_id,
            "external_id": self.external_id,
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

    def _still_there(self) -> bool:
        return self._exists(self.state)

    def _exists(self, state: RunState) -> bool:
        if state.pluto_id is None:
            return False
        try:
            self.http.api_get(f"/api/runs/details/{state.pluto_id}", {"projectName": state.project},
                              "run details")
            return True
        except PlutoError as exc:
            if exc.status == 404:
                return False
            raise

    def _create(self) -> None:
        tags, overflow = names.run_tags(self.meta.tags, self.reader.project_id)
        if overflow:
            self.ctx.report.lost("tags over Pluto's limits (kept in config _migrate.tags_overflow)", len(overflow))
        config = self._config()
        body: dict[str, Any] = {
            "runName": self.meta.name or self.reader.run_id,
            "projectName": self.project,
            "externalId": self.external_id,
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
        self._save()
        self._beat(force=True)
        if answer.get("resumed"):
            # an existing run (an earlier, interrupted load): bring config and tags up to date
            self.http.api_post("/api/runs/config/update", {"runId": run_id, "config": body["config"]}, "config update")
        self.http.api_post("/api/runs/tags/update", {"runId": run_id, "tags": tags}, "tags update")

    def _fork(self) -> tuple[int, int] | None:
        parent = self._parent_id()
        if parent is None:
            return None
        parent_state = self._parent_state()
        if parent_state is None or parent_state.pluto_id is None or not self._exists(parent_state):
            # the orchestrator loads parents first, so the parent is not part of this load (not exported,
            # or not selected): the run loads unlinked, its lineage stays in config sys/forking/*
            self.ctx.report.lost("fork links to a parent run that is not in Pluto (kept in config)")
            self.ctx.report.note(f"fork parent {parent!r} is not loaded into Pluto: loaded without the link")
            return None
        step = self.meta.fork_step if self.meta.fork_step is not None else self.reader.lineage.get("fork_step")
        if step is None:
            self.ctx.report.note("fork without a fork step: linked at step 0")
            return parent_state.pluto_id, 0
        plan = StepPlan.from_json(parent_state.plan) or self.plan
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

    def _finish(self) -> None:
        status = "FAILED" if self.meta.failed else "COMPLETED"
        body = {"runId": self.state.pluto_id, "status": status, "statusMetadata": None,
                "statusUpdated": self.meta.updated_ms}
        self.http.api_post("/api/runs/status/update", body, "status update")
        details = self.http.api_get(f"/api/runs/details/{self.state.pluto_id}", {"projectName": self.project},
                                    "run details")
        if details.get("status") != status:
            # a stale-run reaper (or an older load) set a stronger terminal state: resume, finish again
            self.http.api_post("/api/runs/resume", {"runId": self.state.pluto_id}, "run resume")
            self.http.api_post("/api/runs/status/update", body, "status update")
            self.ctx.report.note(f"status repaired from {details.get('status')} to {status}")
        self.state.complete = True
        self._save()

    # ================================================================== reconciliation

    def _reconcile(self) -> None:
        pending = self.state.pending
        if not pending:
            return
        kind = pending.get("kind")
        if kind == "logs":
            acked = self.state.counts.get("logs_acked", 0)
            landed = max(0, min(self._log_total() - acked, pending["lines"]))
            if landed == pending["lines"]:
                self.state.sent["logs"] = pending["end"]
            elif landed:  # a request cut short (e.g. 422 mid-body): lines map to rows one to one
                self.state.sent["logs"] = pending["start"] + landed
            self.state.counts["logs_acked"] = acked + landed
        elif kind in ("files", "big"):
            if self._file_arrived(pending) or self._resume_upload(pending):
                self._file_done(pending)
        elif kind == "data":
            self.ctx.report.note(
                f"resumed after an unacknowledged data request of {pending['end'] - pending['start']} rows: "
                "re-sent (Pluto cannot be asked whether it arrived)"
            )
        self.state.pending = None
        self._save()

    def _log_total(self) -> int:
        answer = self.http.api_get(
            "/api/runs/logs", {"runId": self.state.pluto_id, "projectName": self.project, "limit": 1}, "log count"
        )
        return int(answer.get("total") or 0)

    # ================================================================== helpers

    def _save(self) -> None:
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

    def _tracked(self, kind: str, start: int, end: int, body: bytes) -> None:
        """Send rows [start, end) of a non-deduplicated kind with an intent written first."""
        self._pipe.flush()
        lines = body.count(b"\n")
        self.state.pending = {"kind": kind, "start": start, "end": end, "lines": lines}
        self._save()
        landed = None
        if kind == "logs":
            acked = self.state.counts.get("logs_acked", 0)
            landed = lambda: self._log_total() >= acked + lines  # noqa: E731 - an answer lost in transit
        self._send(kind, body, f"{kind} ingest", landed)
        self.state.sent[kind] = end
        if kind == "logs":
            self.state.counts["logs_acked"] = self.state.counts.get("logs_acked", 0) + lines
        self.state.pending = None
        self._save()

    # ================================================================== the rows

    def _stream_rows(self) -> None:
        base = dict.fromkeys(("metrics", "data", "logs", "files"), 0)
        for batch in self.reader.batches(batch_rows=self.config.read_batch_rows):
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
                handler(table.filter(mask), base[kind])
                base[kind] += n
            self.ctx.report.add(rows=batch.num_rows)
            self.ctx.progress(batch.num_rows)
        self._pipe.flush()
        self.state.sent["metrics"] = base["metrics"]
        self._count_series()
        self._save()

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
        steps = np.where(units - self.plan.offset_units >= 0, units - self.plan.offset_units, 0) // self.plan.divisor
        return steps.astype(np.uint64), times_np.astype(np.int64), has_step

    # ---------------------------------------------------------------- metrics

    def _metrics(self, rows: pa.Table, base: int) -> None:
        steps, times, has_step = self._steps_times(rows)
        values = rows["float_value"].combine_chunks()
        keep = pc.and_(has_step, pc.is_valid(values))
        dropped = len(values) - (pc.sum(keep).as_py() or 0)
        if dropped:
            no_step = len(values) - (pc.sum(has_step).as_py() or 0)
            self.ctx.report.lost("float_series points without a step", no_step)
            self.ctx.report.lost("float_series points without a value", dropped - no_step)
        global_no = np.arange(base, base + len(values), dtype=np.int64)
        keep_np = keep.to_numpy(zero_copy_only=False)
        paths = rows["attribute_path"].combine_chunks()
        encoded_paths = paths if pa.types.is_dictionary(paths.type) else paths.dictionary_encode()
        codes = encoded_paths.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        pending: list[bytes] = []
        pending_points = 0
        for segment in np.split(order, bounds):
            if segment.size == 0:
                continue
            name = encoded_paths.dictionary[int(codes[segment[0]])].as_py()
            seg = segment[keep_np[segment]]
            self._track_steps(name, steps[seg])
            seg = seg[global_no[seg] >= self.state.sent["metrics"]]
            if seg.size == 0:
                continue
            take = pa.array(seg)
            for start in range(0, seg.size, self.config.request_points):
                part = seg[start : start + self.config.request_points]
                body = encode.metric_body(self.encoded.get(name, names.encode_name(name)), steps[part], times[part],
                                          values.take(take[start : start + self.config.request_points]))
                pending.append(body)
                pending_points += part.size
                if pending_points >= self.config.request_points:
                    self._pipe.submit(b"".join(pending))
                    pending, pending_points = [], 0
        if pending:
            self._pipe.submit(b"".join(pending))

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

    def _count_series(self) -> None:
        series: dict[str, Any] = {}
        for name, chunks in self._series_steps.items():
            rows = sum(c[2] if isinstance(c, tuple) else c.size for c in chunks)
            ends = [v for c in chunks for v in ((c[0], c[0] + c[1] * (c[2] - 1)) if isinstance(c, tuple)
                                                 else (int(c.min()), int(c.max())))]
            if self._series_sorted.get(name):
                unique = rows
            else:
                steps = np.concatenate([np.arange(c[0], c[0] + c[1] * c[2], c[1], dtype=np.int64) if
                                        isinstance(c, tuple) and c[1] else
                                        np.full(c[2], c[0], dtype=np.int64) if isinstance(c, tuple) else
                                        c.astype(np.int64) for c in chunks])
                unique = int(np.unique(steps).size)
            if rows > unique:
                self.ctx.report.lost("float_series points sharing a step with another point of the series "
                                     "(Pluto keeps one value per step)", rows - unique)
            series[name] = {"points": unique, "rows": rows, "step_min": min(ends), "step_max": max(ends),
                            "sorted": bool(self._series_sorted.get(name))}
        self._series_steps.clear()
        self.state.counts["metrics"] = series

    # ---------------------------------------------------------------- data (string series, histograms)

    def _data(self, rows: pa.Table, base: int) -> None:
        steps, times, has_step = self._steps_times(rows)
        paths = rows["attribute_path"].to_pylist()
        types = rows["attribute_type"].to_pylist()
        strings = rows["string_value"].to_pylist()
        hists = rows["histogram_value"].to_pylist()
        ok_step = has_step.to_numpy(zero_copy_only=False)
        out = _Lines(self, "data")
        approximated = 0
        counts = self.state.counts.setdefault("data", {})
        for i, (path, type_) in enumerate(zip(paths, types, strict=True)):
            number = base + i
            name = self.encoded.get(path, names.encode_name(path))
            if not ok_step[i]:
                self.ctx.report.lost(f"{type_} points without a step")
                continue
            if type_ == "histogram_series":
                hist = hists[i]
                if not hist or hist.get("values") is None:
                    self.ctx.report.lost("histogram_series points without a value")
                    continue
                payload, uniform = encode.histogram_payload(hist.get("edges") or [], hist["values"])
                data_type = "HISTOGRAM"
                approximated += 0 if uniform else 1
            else:
                if strings[i] is None:
                    self.ctx.report.lost("string_series points without a value")
                    continue
                payload, data_type = strings[i], "string-series"
            counts[name] = counts.get(name, 0) + 1
            if number < self.state.sent["data"]:
                continue
            out.add(number, encode.data_lines(name, data_type, [int(steps[i])], [int(times[i])], [payload])[0])
        if approximated:
            self.ctx.report.lost("histograms with non-uniform edges drawn as uniform bins "
                                 "(exact edges kept in the payload's `edges`)", approximated)
        out.close(base + len(paths))

    # ---------------------------------------------------------------- console logs

    def _logs(self, rows: pa.Table, base: int) -> None:
        _steps, times, _has = self._steps_times(rows)
        paths = rows["attribute_path"].to_pylist()
        messages = rows["string_value"].to_pylist()
        out = _Lines(self, "logs")
        for i, path in enumerate(paths):
            number = base + i
            if messages[i] is None:
                self.ctx.report.lost("console lines without a value")
                continue
            line_no = self._line_numbers.get(path, 0)
            self._line_numbers[path] = line_no + 1
            if number < self.state.sent["logs"]:
                continue
            log_type = "ERROR" if path.endswith("stderr") else "INFO"
            out.add(number, encode.log_lines(log_type, [line_no], [int(times[i])], [messages[i]])[0])
        self.state.counts["logs"] = sum(self._line_numbers.values())
        out.close(base + len(paths))

class _Lines:
    """NDJSON lines of one tracked kind, sent as soon as they reach `request_bytes` (memory stays bounded
    whatever the strings weigh). `sent` advances to the row after the last one sent, or to the batch end."""

    def __init__(self, loader: RunLoader, kind: str) -> None:
        self.loader = loader
        self.kind = kind
        self.lines: list[bytes] = []
        self.size = 0
        self.last = -1

    def add(self, number: int, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line)
        self.last = number
        if self.size >= self.loader.config.request_bytes:
            self._send(self.last + 1)

    def close(self, batch_end: int) -> None:
        if self.lines:
            self._send(batch_end)
        elif self.loader.state.sent[self.kind] < batch_end:
            self.loader._pipe.flush()
            self.loader.state.sent[self.kind] = batch_end
            self.loader._save()

    def _send(self, end: int) -> None:
        body = b"".join(self.lines)
        self.lines, self.size = [], 0
        self.loader._tracked(self.kind, self.loader.state.sent[self.kind], end, body)


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


