"""The report's facts: per project and per run what was exported, loaded, verified, skipped and why.

Sources of truth, and nothing else: each run's manifest (its export: status, rows, files, bytes, the losses
the export counted), the ledger (each load: state, error, counts, losses, when it started and last changed)
and, with a sink, the sink's own read-back. A value the report cannot know is None and labelled so, never
guessed.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..api import RunContext, RunReader, RunReport, Selection, Sink, Storage, StoredRun
from ..format import plain, step_units
from ..inventory import describe_run
from ..ledger import LEDGER_FILE, Entry, Ledger
from ..orchestrator import describe_error

FORMAT = "migrate.report"
VERSION = 1
#: plotted per run: the first float series by path, each sampled to at most POINTS_PER_SERIES points
SERIES_PER_RUN = 4
POINTS_PER_SERIES = 500
#: runs whose series are plotted (the first ones of the selection; choose others with -p/-r)
RUNS_PLOTTED = 20

NO_SINK = "no sink given: storage only"


@dataclass
class Series:
    """A sampled series: at most POINTS_PER_SERIES (step, value) pairs of `points` in all."""

    steps: list[float]
    values: list[float | None]
    points: int


@dataclass
class Report:
    data: dict[str, Any]
    #: (project_id, run_id) -> path -> {"source": Series, "sink": Series | None}; only for the HTML report
    series: dict[tuple[str, str], dict[str, dict[str, Series | None]]] = field(default_factory=dict)
    #: why there is no sink side in the series plots ("" when there is one)
    series_note: str = ""


def build(storage: Storage, selection: Selection, sink: Sink | None = None, *, sink_name: str = "",
          workers: int = 4, series: bool = False, max_points: int = POINTS_PER_SERIES,
          series_per_run: int = SERIES_PER_RUN, runs_plotted: int = RUNS_PLOTTED) -> Report:
    stored = [r for r in storage.list_runs(selection.projects)
              if selection.wants_project(r.project_id) and selection.wants_run(r.run_id)]
    target = sink.target() if sink is not None else None
    entries = _ledger_entries(storage, target)
    any_load = bool(entries) or sink is not None
    runs = [_run_row(storage, run, entries.get(run.key, []), target, any_load) for run in stored]
    can_verify = sink is not None and type(sink).verify_run is not Sink.verify_run
    can_sample = sink is not None and type(sink).sample_series is not Sink.sample_series
    by_key = {run.key: run for run in stored}
    if sink is not None:
        _verify(storage, sink, sink_name, can_verify, by_key, runs, workers)
    report = Report(data={
        "format": FORMAT,
        "version": VERSION,
        "generated_at": _iso(datetime.now(UTC).timestamp()),
        "storage": storage.describe(),
        "sink": None if sink is None else {
            "name": sink_name or sink.name, "target": target, "verify": can_verify, "sample_series": can_sample},
        "summary": _summary(runs, sink is not None),
        "projects": _projects(runs),
        "runs": runs,
    })
    if series:
        report.series_note = (NO_SINK if sink is None else "" if can_sample else
                              f"sink {sink_name or sink.name!r} cannot read series back (no sample_series)")
        _sample(storage, sink if can_sample else None, by_key, runs, report, workers, max_points, series_per_run,
                runs_plotted)
    return report


# ------------------------------------------------------------------------------------------- per run


def _ledger_entries(storage: Storage, target: str | None) -> dict[tuple[str, str], list[Entry]]:
    """The ledger's rows by run (only `target`'s when given); no ledger file is no loads, and is not created."""
    if not (storage.state_dir() / LEDGER_FILE).exists():
        return {}
    ledger = Ledger(storage.state_dir())
    try:
        rows = ledger.entries(target)
    finally:
        ledger.close()
    out: dict[tuple[str, str], list[Entry]] = {}
    for entry in rows:
        out.setdefault((entry.project_id, entry.run_id), []).append(entry)
    return out


def _run_row(storage: Storage, run: StoredRun, entries: list[Entry], target: str | None,
             any_load: bool) -> dict[str, Any]:
    described = describe_run(storage, run)
    manifest = run.manifest or {}
    if not run.has_manifest:
        export_state = "foreign" if described["complete"] else "incomplete"
    elif manifest.get("status") == "corrupt":
        export_state = "corrupt"
    else:
        export_state = "complete" if described["complete"] else "incomplete"
    export = {
        "state": export_state,
        "problem": described["problem"] or manifest.get("error"),
        "source": (manifest.get("source") or {}).get("plugin") if run.has_manifest else "neptune-exporter",
        "started_at": manifest.get("started_at"),
        "completed_at": manifest.get("completed_at"),
        "rows": described["rows"],
        "rows_by_type": described["rows_by_type"],
        "files": described["files"],
        "bytes": described["bytes"],
        "losses": dict(manifest.get("losses") or {}),
        "notes": list(manifest.get("notes") or []),
    }
    loads = [_load_row(entry, run) for entry in entries]
    losses: Counter[str] = Counter(export["losses"])
    for load in loads:
        losses.update(load["losses"])
    row = {
        "project_id": run.project_id,
        "run_id": run.run_id,
        "parent_run_id": described["parent_run_id"],
        "export": export,
        "loads": loads,
        "loaded": (any(load["state"] == "done" and load["current"] is not False for load in loads)
                   if any_load else None),
        "verified": None,
        "verify_mismatches": [],
        "read_back": NO_SINK if target is None else "not read back",
        "losses": dict(sorted(losses.items())),
    }
    row["skip_reason"] = _skip_reason(row, target, any_load)
    row["status"] = _status(row)
    return row


def _load_row(entry: Entry, run: StoredRun) -> dict[str, Any]:
    counts = entry.counts or {}
    current = None if entry.state != "done" or entry.export_id is None else entry.export_id == run.export_id
    return {
        "target": entry.target,
        "state": entry.state,
        "error": entry.error,
        "current": current,  # False: loaded an export older than the one in storage now
        "started_at": _iso(entry.started_at),
        "updated_at": _iso(entry.updated_at),
        "rows": int(counts.get("rows") or 0),
        "files": int(counts.get("files") or 0),
        "bytes": int(counts.get("bytes") or 0),
        "losses": dict(counts.get("losses") or {}),
        "notes": list(counts.get("notes") or []),
    }


def _skip_reason(row: dict[str, Any], target: str | None, any_load: bool) -> str | None:
    """Why the run is not (fully, currently) in the sink, in the words the commands use; None if it is."""
    export = row["export"]
    if export["state"] in ("incomplete", "corrupt"):
        return f"incomplete export: {export['problem'] or 'no part_0'}"
    if not any_load:
        return None  # nothing was loaded anywhere yet, and no sink was asked about: not a skip
    loads = row["loads"]
    if not loads:
        where = f"into {target}" if target else "into any sink"
        return f"not loaded {where} yet (run `migrate load`)"
    reasons = []
    for load in loads:
        state = load["state"]
        prefix = f"{load['target']}: " if len(loads) > 1 else ""
        if state == "failed":
            reasons.append(f"{prefix}load failed: {load['error']} (use --retry-failed)")
        elif state == "deferred":
            reasons.append(f"{prefix}deferred: {load['error']}")
        elif state in ("pending", "in_progress"):
            reasons.append(f"{prefix}load interrupted (re-run `migrate load` to resume)")
        elif load["current"] is False:
            reasons.append(f"{prefix}loaded an older export (the next load sends the changes)")
    return "; ".join(reasons) or None


def _status(row: dict[str, Any]) -> str:
    """One word for the run table."""
    states = {load["state"] for load in row["loads"]}
    if row["export"]["state"] in ("incomplete", "corrupt"):
        return "incomplete"
    if row["verified"] is False:
        return "mismatch"
    if "failed" in states:
        return "failed"
    if "deferred" in states:
        return "deferred"
    if states & {"pending", "in_progress"}:
        return "interrupted"
    if row["verified"]:
        return "verified"
    if row["loaded"]:
        return "loaded"
    return "exported"


# ------------------------------------------------------------------------------------------- the sink


def _verify(storage: Storage, sink: Sink, sink_name: str, can_verify: bool, stored: dict[tuple[str, str], StoredRun],
            runs: list[dict[str, Any]], workers: int) -> None:
    """Each loaded run read back from the sink through its `verify_run`; the others say why they were not."""
    todo = []
    for row in runs:
        if not row["loaded"]:
            row["read_back"] = "not loaded: nothing to read back"
        elif not can_verify:
            row["read_back"] = f"sink {sink_name or sink.name!r} cannot read runs back (no verify_run)"
        else:
            todo.append(row)

    def one(row: dict[str, Any]) -> None:
        run = stored[(row["project_id"], row["run_id"])]
        try:
            result = sink.verify_run(RunReader(storage, run), RunContext(RunReport(), threading.Event()))
            row["verified"], row["verify_mismatches"] = result.ok, list(result.mismatches)
        except Exception as exc:  # noqa: BLE001 - one run's read-back failing must not hide the others
            row["verified"], row["verify_mismatches"] = False, [f"read-back failed: {describe_error(exc)}"]
        row["read_back"] = "verified" if row["verified"] else "mismatch"
        row["status"] = _status(row)

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="migrate-report") as pool:
        list(pool.map(one, todo))


# ------------------------------------------------------------------------------------------- totals


def _summary(runs: list[dict[str, Any]], with_sink: bool) -> dict[str, Any]:
    losses: Counter[str] = Counter()
    for row in runs:
        losses.update(row["losses"])
    statuses = Counter(row["status"] for row in runs)
    verified = [row["verified"] for row in runs if row["verified"] is not None]
    why_not: list[str] = []
    if losses:
        why_not.append(f"{sum(losses.values()):,} values not carried")
    for status, words in (("incomplete", "incompletely exported"), ("failed", "failed to load"),
                          ("deferred", "deferred"), ("interrupted", "interrupted mid-load"),
                          ("mismatch", "differing in the sink")):
        if statuses.get(status):
            why_not.append(f"{statuses[status]} runs {words}")
    return {
        "projects": len({row["project_id"] for row in runs}),
        "runs": len(runs),
        "exported": sum(1 for row in runs if row["export"]["state"] in ("complete", "foreign")),
        "loaded": sum(1 for row in runs if row["loaded"]),
        "verified": sum(1 for v in verified if v) if with_sink else None,
        "mismatched": sum(1 for v in verified if not v) if with_sink else None,
        "skipped": sum(1 for row in runs if row["skip_reason"]),
        "failed": statuses.get("failed", 0),
        "rows": sum(row["export"]["rows"] for row in runs),
        "rows_loaded": sum(load["rows"] for row in runs for load in row["loads"] if load["state"] == "done"),
        "losses": dict(sorted(losses.items())),
        "lossless": not why_not,
        "not_lossless_because": why_not,
    }


def _projects(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in runs:
        p = out.setdefault(row["project_id"], {"project_id": row["project_id"], "runs": 0, "exported": 0,
                                               "loaded": 0, "skipped": 0, "rows": 0, "losses": Counter()})
        p["runs"] += 1
        p["exported"] += row["export"]["state"] in ("complete", "foreign")
        p["loaded"] += bool(row["loaded"])
        p["skipped"] += bool(row["skip_reason"])
        p["rows"] += row["export"]["rows"]
        p["losses"].update(row["losses"])
    return [{**p, "losses": dict(sorted(p["losses"].items()))} for _, p in sorted(out.items())]


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ------------------------------------------------------------------------------------------- series samples


def _sample(storage: Storage, sink: Sink | None, stored: dict[tuple[str, str], StoredRun],
            runs: list[dict[str, Any]], report: Report, workers: int, max_points: int, per_run: int,
            runs_plotted: int) -> None:
    """Up to `per_run` float series of the first `runs_plotted` exported runs: from storage, and from the sink
    (its `sample_series`) for the runs it holds."""
    chosen = [row for row in runs if row["export"]["state"] in ("complete", "foreign")][:runs_plotted]

    def one(row: dict[str, Any]) -> None:
        run = stored[(row["project_id"], row["run_id"])]
        source = stored_series(storage, run, _float_series_paths(run, per_run), per_run, max_points)
        if not source:
            return
        sampled: dict[str, Series] = {}
        if sink is not None and row["loaded"]:
            try:
                answer = sink.sample_series(RunReader(storage, run), sorted(source), max_points)
            except Exception as exc:  # noqa: BLE001 - labelled in the plot, the rest of the report stands
                row["read_back"] += f"; series read-back failed: {describe_error(exc)}"
            else:
                sampled = {path: _as_series(steps, values, len(steps)) for path, (steps, values) in answer.items()}
        report.series[run.key] = {path: {"source": s, "sink": sampled.get(path)} for path, s in source.items()}

    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="migrate-report") as pool:
        list(pool.map(one, chosen))


def _float_series_paths(run: StoredRun, limit: int) -> list[str] | None:
    attributes = (run.manifest or {}).get("attributes")
    if not isinstance(attributes, dict):
        return None  # a foreign dump: found while reading
    return sorted(path for path, a in attributes.items() if a.get("type") == "float_series")[:limit]


def stored_series(storage: Storage, run: StoredRun, paths: Sequence[str] | None, limit: int,
                  max_points: int) -> dict[str, Series]:
    """The float series `paths` (None: the first `limit` found) of a stored run, each sampled evenly by step to
    at most `max_points` points; reads four columns of the run once."""
    if paths is not None and not paths:
        return {}
    wanted = pa.array(list(paths)) if paths is not None else None
    steps: dict[str, list[np.ndarray]] = {}
    values: dict[str, list[np.ndarray]] = {}
    columns = ["attribute_path", "attribute_type", "step", "float_value"]
    for batch in storage.read(run, columns=columns):
        table = plain(batch)
        mask = pc.equal(table["attribute_type"], "float_series")
        if wanted is not None:
            mask = pc.and_(mask, pc.is_in(table["attribute_path"], value_set=wanted))
        table = table.filter(pc.and_(mask, pc.is_valid(table["step"])))
        if table.num_rows == 0:
            continue
        for path in pc.unique(table["attribute_path"]).to_pylist():
            if path not in steps and len(steps) >= limit:
                continue
            rows = table.filter(pc.equal(table["attribute_path"], path))
            steps.setdefault(path, []).append(step_units(rows["step"]) / 1e6)
            values.setdefault(path, []).append(rows["float_value"].to_numpy(zero_copy_only=False).astype(float))
    out = {}
    for path in sorted(steps):
        s, v = np.concatenate(steps[path]), np.concatenate(values[path])
        order = np.argsort(s, kind="stable")
        s, v = s[order], v[order]
        idx = _even(len(s), max_points)
        out[path] = _as_series(s[idx].tolist(), v[idx].tolist(), len(s))
    return out


def _even(n: int, limit: int) -> np.ndarray:
    """Indices of at most `limit` points spread evenly over n, first and last included."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, num=limit).round().astype(np.int64))


def _as_series(steps: Iterable[float], values: Iterable[Any], points: int) -> Series:
    clean = [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
    return Series([float(s) for s in steps], clean, points)
