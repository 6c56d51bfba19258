"""Read a loaded run back from Pluto and reconcile it with the stored run (manifest or a fresh scan).

Checked through the API: the run exists, config, tags and status; per metric series the point count,
first/last step and, for series stored in step order, first/last value (paged step windows of
`/api/runs/metrics`, never the sampled or stale statistics); console line count; per file attribute
the file count and sizes. Histograms and string series cannot be read with an API key, so those are
reconciled with our own per-run record of what Pluto acknowledged and reported as such.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from migrate_core.api import RunContext, RunReader, VerifyResult
from migrate_core.manifest import AttributeStats

from . import names
from .errors import PlutoError
from .loader import REPLACED_TAG, RunLoader
from .scan import kind_of, scan
from .state import RECORD_KEY, LoadRecord
from .steps import StepPlan, units_of
from .transport import Transport

if TYPE_CHECKING:
    from .sink import PlutoSink

PAGE = 10_000


def verify_run(sink: PlutoSink, http: Transport, reader: RunReader, ctx: RunContext) -> VerifyResult:
    """Pluto's read-back against the stored export (the truth), never against our own record of the load."""
    store = sink.store(reader)
    loader = RunLoader(sink.config, http, store, reader, ctx, sink.kind(reader))
    result = VerifyResult(reader.project_id, reader.run_id, ok=True)
    cached = store.load(reader.project_id, reader.run_id)
    if cached is not None and cached.project == loader.project:
        loader.state = cached
    info = scan(reader, sink.config.read_batch_rows)
    loader._prepare(info)
    details = _current(http, loader.project, loader.external_id, cached.pluto_id if cached is not None else None)
    if details is None:
        return VerifyResult(reader.project_id, reader.run_id, False, [f"run {loader.external_id!r} missing in Pluto"])
    run_id = int(details["id"])
    check = _Checker(result)
    record = LoadRecord.from_config(details.get("config"))
    if record is None or record.export != loader.export_id or not record.complete:
        what = ("holds no load record of migrate" if record is None else
                "holds an unfinished load" if not record.complete else "holds an older export of this run")
        result.mismatches.append(f"Pluto {what}: run `migrate load` to bring it up to date")
    sent_plan = StepPlan.from_json(record.plan) if record is not None else None
    if sent_plan is not None:
        loader.plan = sent_plan
    # what Pluto should hold, from the stored rows (a pass that sends nothing)
    expected = loader._dry_pass({})

    expected_config = _without_bookkeeping(loader._config())
    check.equal("config", _normalise(_without_bookkeeping(details.get("config") or {})), _normalise(expected_config))
    tags, _overflow = names.run_tags(loader.meta.tags, reader.project_id)
    check.equal("tags", sorted(t for t in details.get("tags") or [] if t != REPLACED_TAG), sorted(tags))
    check.equal("status", details.get("status"), "FAILED" if loader.meta.failed else "COMPLETED")
    check.equal("name", details.get("name"), loader.meta.name or reader.run_id)
    _check_fork(check, http, loader, details)

    attributes = _attributes(reader)
    points = expected.counted_points()
    for path, entry in sorted(attributes.items()):
        kind = kind_of(path, entry["type"])
        name = loader.encoded.get(path, names.encode_name(path))
        if kind == "metrics":
            _check_series(check, http, loader, run_id, path, name, entry, points.get(name, 0),
                          bool(expected._series_sorted.get(name)))
        elif kind == "data":
            held = (record.tracked.get(path) if record is not None else None) or [0, None]
            want = [expected.rows_digests.rows.get(path, 0), expected.rows_digests.digest(path)]
            check.equal(f"{path}: points and their digest (per the load record Pluto holds; Pluto cannot show "
                        "these back)", list(held), want)
    logs_expected = sum(expected._line_numbers.values())
    if logs_expected or any(kind_of(p, e["type"]) == "logs" for p, e in attributes.items()):
        answer = http.api_get("/api/runs/logs", {"runId": run_id, "projectName": loader.project, "limit": 1},
                              "log count")
        check.equal("console lines", int(answer.get("total") or 0), logs_expected)
        result.checked["log_lines"] = logs_expected
    _check_files(check, http, loader, run_id, expected.expected_files)
    result.checked["attributes"] = len(attributes)
    result.ok = not result.mismatches
    return result


def _without_bookkeeping(config: dict[str, Any]) -> dict[str, Any]:
    """The config a user sees, less what loads keep there for themselves (`_migrate.load`, replacements)."""
    out = dict(config)
    migrate = out.get("_migrate")
    if isinstance(migrate, dict):
        out["_migrate"] = {k: v for k, v in migrate.items() if k not in (RECORD_KEY, "replaced_by", "replaced_because")}
    return out


def _current(http: Transport, project: str, external_id: str, pluto_id: int | None) -> dict[str, Any] | None:
    """A run's newest generation in Pluto: by our cached id, else by external id, following replacements."""
    details = _details(http, pluto_id, project) if pluto_id is not None else None
    if details is None:
        details = _find(http, project, external_id)
    for _ in range(1000):
        successor = ((details or {}).get("config") or {}).get("_migrate", {}).get("replaced_by")
        if not successor:
            break
        details = _find(http, project, successor)
    return details


def _check_fork(check: _Checker, http: Transport, loader: RunLoader, details: dict[str, Any]) -> None:
    parent = loader._parent_id()
    if parent is None:
        return
    parent_state = loader._parent_state()
    parent_details = _current(http, loader.project, names.external_id(loader.kind, loader.reader.project_id, parent),
                              parent_state.pluto_id if parent_state is not None else None)
    if parent_details is None:  # loaded unlinked, and counted so, because the parent was nowhere to be had
        check.equal("fork parent in Pluto", details.get("forkedFromRunId"), None)
        return
    check.equal("fork parent", details.get("forkedFromRunId"), parent_details.get("id"))


class _Checker:
    def __init__(self, result: VerifyResult) -> None:
        self.result = result

    def equal(self, what: str, got: Any, expected: Any) -> None:
        self.result.checked[what.split(":")[0]] = self.result.checked.get(what.split(":")[0], 0) + 1
        if got != expected:
            self.result.mismatches.append(f"{what}: expected {_short(expected)}, got {_short(got)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _details(http: Transport, run_id: int, project: str) -> dict[str, Any] | None:
    try:
        return http.api_get(f"/api/runs/details/{run_id}", {"projectName": project}, "run details")
    except PlutoError as exc:
        if exc.status == 404:
            return None
        raise


def _find(http: Transport, project: str, external_id: str) -> dict[str, Any] | None:
    """Without our state file (verify on another machine): page the project's runs for the external id."""
    offset = 0
    while offset <= 100_000:
        page = http.api_get("/api/runs/list", {"projectName": project, "limit": 200, "offset": offset,
                                               "sort": "createdAt"}, "run list").get("runs") or []
        for run in page:
            if run.get("externalId") == external_id:
                return _details(http, int(run["id"]), project)
        if len(page) < 200:
            return None
        offset += 200
    return None


def _attributes(reader: RunReader) -> dict[str, dict[str, Any]]:
    manifest = reader.manifest or {}
    if manifest.get("attributes"):
        return manifest["attributes"]
    stats = AttributeStats()
    from migrate_core.format import plain

    for batch in reader.batches():
        stats.update(plain(batch))
    return stats.as_json()


def _check_series(check: _Checker, http: Transport, loader: RunLoader, run_id: int, path: str, name: str,
                  entry: dict[str, Any], expected_points: int, ordered: bool) -> None:
    span = None
    if entry.get("step_min") is not None:
        span = (loader.plan.unit_to_pluto(units_of(entry["step_min"])),
                loader.plan.unit_to_pluto(units_of(entry["step_max"])))
    seen = _read_series(http, run_id, loader.project, name, span, expected_points)
    check.equal(f"{path}: points", seen.count, expected_points)
    if not seen.count:
        return
    plan = loader.plan
    if entry.get("step_min") is not None:
        check.equal(f"{path}: first step", seen.first[0], plan.unit_to_pluto(units_of(entry["step_min"])))
        check.equal(f"{path}: last step", seen.last[0], plan.unit_to_pluto(units_of(entry["step_max"])))
    if ordered and expected_points == entry.get("rows"):
        check.equal(f"{path}: first value", _value(seen.first[1]), _value(entry.get("first")))
        check.equal(f"{path}: last value", _value(seen.last[1]), _value(entry.get("last")))


def _value(value: Any) -> Any:
    """JSON has no NaN/Inf: the server answers null, the manifest a string; both mean 'non-finite'."""
    if value is None or isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value)):
        return "non-finite"
    return float(value)


class _Seen:
    """Count and the (step, value) at both ends of a series, without holding its points."""

    def __init__(self) -> None:
        self.count = 0
        self.first: tuple[int, Any] = (2**64, None)
        self.last: tuple[int, Any] = (-1, None)

    def add(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            step = int(row["step"])
            self.count += 1
            if step < self.first[0]:
                self.first = (step, row.get("value"))
            if step > self.last[0]:
                self.last = (step, row.get("value"))


def _read_series(http: Transport, run_id: int, project: str, name: str, span: tuple[int, int] | None,
                 expected: int) -> _Seen:
    """Every deduplicated point, by step windows small enough never to be sampled: the expected step range
    cut into windows of about half a page each, plus everything outside it; a full window is cut again."""
    seen = _Seen()
    top = 2**63 - 1
    windows: list[tuple[int, int]] = []
    if span is None or span[0] > span[1]:
        windows.append((0, top))
    else:
        lo, hi = max(span[0], 0), max(span[1], 0)
        parts = min(max(1, (2 * expected) // PAGE + 1), hi - lo + 1)
        width = (hi - lo + 1) // parts
        edges = [lo + i * width for i in range(parts)] + [hi + 1]
        windows += [(a, b - 1) for a, b in zip(edges, edges[1:], strict=False) if b > a]
        if lo > 0:
            windows.append((0, lo - 1))
        if hi < top:
            windows.append((hi + 1, top))
    while windows:
        lo, hi = windows.pop()
        rows = http.api_get("/api/runs/metrics", {"runId": run_id, "projectName": project, "logName": name,
                                                  "limit": PAGE, "stepMin": lo, "stepMax": hi},
                            "metric read-back").get("metrics") or []
        if len(rows) >= PAGE and hi > lo:
            quarter = max((hi - lo + 1) // 4, 1)
            cuts = sorted({lo, *(min(lo + k * quarter, hi + 1) for k in (1, 2, 3)), hi + 1})
            windows += [(a, b - 1) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
            continue
        seen.add(rows)
    return seen


def _check_files(check: _Checker, http: Transport, loader: RunLoader, run_id: int,
                 expected: list[tuple[str, str, int]]) -> None:
    """Every file the stored run has, by log name, file name and size, once; and no other."""
    if not expected and not any(kind_of(p, t) == "files" for p, t in loader.info.attributes.items()):
        return
    answer = http.api_get("/api/runs/files", {"runId": run_id, "projectName": loader.project}, "file listing")
    got = Counter((str(row.get("logName")), str(row.get("fileName")), int(row.get("fileSize") or 0))
                  for row in answer.get("files") or [])
    want = Counter(expected)
    for key in sorted(set(got) | set(want)):
        if got.get(key, 0) != want.get(key, 0):
            check.equal(f"{key[0]}: file {key[1]!r} ({key[2]} bytes) held", got.get(key, 0), want.get(key, 0))
    check.result.checked["files"] = sum(want.values())
