"""Shared helpers for the Pluto sink tests: a sink pointed at the fake, snapshots of what the fake holds."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
from migrate_core.api import RunContext, RunReader, RunReport, Storage
from migrate_core.testing import MemoryRun, MemorySource, MemoryStorage, export_into
from migrate_pluto.settings import PlutoConfig
from migrate_pluto.sink import PlutoSink

from tests.fakes.pluto import FakePluto

FAST = {"retries": 2, "backoff": 0.01, "backoff_max": 0.05, "timeout": 10.0}


def make_sink(srv: FakePluto, **overrides: Any) -> PlutoSink:
    values = {"url_api": srv.url, "url_ingest": srv.url, "url_py": srv.url, **FAST, **overrides}
    return PlutoSink(PlutoConfig(**values))


def load(sink: PlutoSink, storage: Storage, project_id: str, run_id: str) -> RunReport:
    report = RunReport()
    sink.load_run(RunReader(storage, storage.get_run(project_id, run_id)), RunContext(report, threading.Event()))
    return report


def memory_storage(tmp: Path, runs: list[MemoryRun]) -> MemoryStorage:
    storage = MemoryStorage(tmp)
    export_into(storage, MemorySource(runs))
    return storage


def run_of(srv: FakePluto, project: str, external_id: str):
    return srv.state.find_external(project, external_id)


def snapshot(srv: FakePluto, project: str, external_id: str) -> dict[str, Any] | None:
    """Everything a user could see of one run, as comparable plain data (duplicates stay visible)."""
    with srv.state.lock:
        run = srv.state.find_external(project, external_id)
        if run is None:
            return None
        parent = srv.state.runs.get(run.fork_run_id) if run.fork_run_id else None
        return {
            "name": run.name,
            "config": without_record(run.config),
            "tags": sorted(run.tags),
            "status": run.status,
            "created_at": run.created_at,
            "status_updated": run.status_updated,
            "fork": (parent.external_id if parent else None, run.fork_step),
            "log_names": dict(run.log_names),
            "metrics": {name: _points(run.metric(name)) for name in sorted(run.metrics)},
            "data": sorted((d.log_name, d.data_type, d.step, d.time, d.data) for d in run.data),
            "logs": sorted((x.time, x.line_number, x.log_type, x.message) for x in run.logs),
            "files": sorted((f.log_name, f.file_name, f.file_size, f.step, f.caption,
                             hashlib.sha256(f.content).hexdigest() if f.content is not None else None)
                            for f in run.files),
        }


def without_record(config: dict[str, Any]) -> dict[str, Any]:
    """A run config less the load record (`_migrate.load`): it names the stored export, which differs between
    two storages of the same runs. Tests of the record itself read it whole."""
    out = dict(config)
    if isinstance(out.get("_migrate"), dict):
        out["_migrate"] = {k: v for k, v in out["_migrate"].items() if k != "load"}
    return out


def record(srv: FakePluto, project: str, external_id: str) -> dict[str, Any]:
    """The load record a run's config holds."""
    with srv.state.lock:
        return dict(srv.state.find_external(project, external_id).config["_migrate"]["load"])


def _points(points: dict[int, tuple[float, int]]) -> dict[int, tuple[str, int]]:
    return {step: (repr(value), time) for step, (value, time) in points.items()}  # repr: NaN == NaN


def table(*batches: pa.RecordBatch) -> pa.Table:
    return pa.Table.from_batches(list(batches))
