"""The ingest side that neptune-scale talks to: ``RunOperation`` in, ``SubmitResponse`` out, status checks.

Conversion of writes into the read model (what a Neptune 3 server shows afterwards):

- ``create`` (``Run``): ``sys/custom_run_id`` = run id, ``sys/name`` = experiment id (which moves the
  experiment head to this run), ``sys/family``, ``sys/creation_time``, fork point -> lineage plus
  ``sys/forking/{depth,parent,step}``; with ``inherit_configs`` the parent's non-``sys/`` atoms are copied.
- ``assign``: atoms (``float64`` -> float, ``int64`` -> int, ``timestamp`` -> datetime, ``file_ref`` -> fileRef,
  ``string_set`` replaces a set).
- ``append``: series points at the snapshot's step/timestamp (float64/int64 -> floatSeries, string ->
  stringSeries, histogram -> histogramSeries, file_ref -> fileRefSeries), flagged with the snapshot's preview.
- ``modify_sets``: ADD/REMOVE on string sets (tags).

A refused point (non-increasing step) does not fail the request: it is recorded in ``Store.rejected`` and the
request status carries an error count, as the real ingest reports per-request error codes.
"""

from __future__ import annotations

import math
import secrets
from typing import Any

from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode

from .proto import client_pb2, code_pb2, common_pb2, ingest_pb2, request_status_pb2
from .store import FileRef, Histogram, Project, Run, SeriesRejected, Store, now_ms


class ForkParentMissing(Exception):
    """The fork parent named in a create does not exist (reported as RUN_FORK_PARENT_NOT_FOUND)."""


def step_to_float(step: Any) -> float:
    """``Step{whole, micro}`` -> float, correctly rounded (micro is in units of 1e-6)."""
    return (int(step.whole) * 1_000_000 + int(step.micro)) / 1_000_000


def timestamp_to_ms(ts: Any) -> int:
    return int(ts.seconds) * 1000 + int(ts.nanos) // 1_000_000


def _histogram(value: Any) -> Histogram:
    if value.HasField("densities"):
        return Histogram("DENSITY", tuple(value.bin_edges), tuple(float(v) for v in value.densities.values))
    return Histogram("COUNTING", tuple(value.bin_edges), tuple(float(v) for v in value.counts.values))


def _file_ref(value: Any) -> FileRef:
    return FileRef(value.path, int(value.size_bytes), value.mime_type)


def _create_run(store: Store, proj: Project, run_id: str, create: Any) -> Run:
    existing = proj.by_custom_id.get(run_id)
    if existing is not None:  # resuming an existing run: the server keeps it
        return existing
    parent = None
    fork_step = None
    if create.HasField("fork_point"):
        fp = create.fork_point
        parent_proj = store.project(fp.parent_project or proj.name, create=True)
        assert parent_proj is not None
        parent = parent_proj.by_custom_id.get(fp.parent_run_id)
        if parent is None:
            raise ForkParentMissing(f"fork parent {fp.parent_run_id!r} not found")
        if fp.HasField("step"):
            fork_step = step_to_float(fp.step)
    created = timestamp_to_ms(create.creation_time) if create.HasField("creation_time") else None
    run = proj.new_run(
        run_id,
        experiment_name=create.experiment_id
        if create.HasField("experiment_id") and create.experiment_id
        else None,
        creation_time_ms=created,
        family=create.family if create.HasField("family") else None,
        parent=parent,
        fork_step=fork_step,
    )
    inherit = create.inherit_configs if create.HasField("inherit_configs") else True
    if parent is not None and inherit:
        for name, attr in parent.attributes.items():
            if not name.startswith("sys/") and attr.type not in (
                "floatSeries",
                "stringSeries",
                "histogramSeries",
                "fileRefSeries",
            ):
                run.attributes.setdefault(name, attr)
    return run


def _apply_update(run: Run, update: Any) -> list[tuple[int, str]]:
    """Apply one ``UpdateRunSnapshot``; returns (IngestCode, message) of refused values."""
    errors: list[tuple[int, str]] = []
    ts = timestamp_to_ms(update.timestamp) if update.HasField("timestamp") else now_ms()
    if update.HasField("step"):
        step = step_to_float(update.step)
    else:
        last = [a.value.last_step for a in run.attributes.values() if hasattr(a.value, "last_step")]
        last = [s for s in last if s is not None]
        step = float(math.floor(max(last)) + 1) if last else 0.0
    is_preview = update.HasField("preview") and update.preview.is_preview
    ratio = 1.0
    if is_preview:
        ratio = float(update.preview.completion_ratio)
        ratio = 0.0 if math.isnan(ratio) else min(1.0, max(0.0, ratio))

    for path, value in update.assign.items():
        kind = value.WhichOneof("value")
        if kind == "float64":
            run.set_atom(path, "float", float(value.float64))
        elif kind == "int64":
            run.set_atom(path, "int", int(value.int64))
        elif kind == "bool":
            run.set_atom(path, "bool", bool(value.bool))
        elif kind == "string":
            run.set_atom(path, "string", value.string)
        elif kind == "timestamp":
            run.set_atom(path, "datetime", timestamp_to_ms(value.timestamp))
        elif kind == "string_set":
            run.set_atom(path, "stringSet", frozenset(value.string_set.values))
        elif kind == "file_ref":
            run.set_atom(path, "fileRef", _file_ref(value.file_ref))
        else:
            errors.append((IngestCode.FIELD_TYPE_UNSUPPORTED, f"{path}: unsupported atom value {kind}"))

    for path, modify in update.modify_sets.items():
        current = run.get(path)
        values = set(current.value) if current is not None and current.type == "stringSet" else set()
        for item, op in modify.string.values.items():
            if op == common_pb2.ADD:
                values.add(item)
            elif op == common_pb2.REMOVE:
                values.discard(item)
        run.set_atom(path, "stringSet", frozenset(values))

    for path, value in update.append.items():
        kind = value.WhichOneof("value")
        try:
            if kind in ("float64", "int64"):
                number = float(value.float64) if kind == "float64" else float(value.int64)
                run.series(path, "floatSeries").append(step, number, ts, is_preview, ratio)
            elif kind == "string":
                run.series(path, "stringSeries").append(step, value.string, ts, is_preview, ratio)
            elif kind == "histogram":
                run.series(path, "histogramSeries").append(
                    step, _histogram(value.histogram), ts, is_preview, ratio
                )
            elif kind == "file_ref":
                run.series(path, "fileRefSeries").append(
                    step, _file_ref(value.file_ref), ts, is_preview, ratio
                )
            else:
                errors.append((IngestCode.FIELD_TYPE_UNSUPPORTED, f"{path}: unsupported series value {kind}"))
        except SeriesRejected as e:
            errors.append((e.code, f"{path}: {e}"))
    run.touch(ts)
    return errors


def ingest(store: Store, payload: bytes) -> bytes:
    """POST /api/client/v1/ingest: apply a RunOperation, answer a SubmitResponse with one request id."""
    op = ingest_pb2.RunOperation.FromString(payload)
    errors: list[tuple[int, str]] = []
    with store.lock:
        proj = store.project(op.project, create=True)
        assert proj is not None
        kind = op.WhichOneof("operation")
        try:
            if kind == "create":
                _create_run(store, proj, op.run_id or op.create.run_id, op.create)
            else:
                run = proj.by_custom_id.get(op.run_id)
                if run is None:  # lenient: a snapshot before its create still lands somewhere visible
                    run = proj.new_run(op.run_id)
                snapshots = [op.update] if kind == "update" else list(op.update_batch.snapshots)
                for snapshot in snapshots:
                    errors.extend(_apply_update(run, snapshot))
        except ForkParentMissing as e:
            errors.append((IngestCode.RUN_FORK_PARENT_NOT_FOUND, str(e)))
        request_id = secrets.token_hex(12)
        for _, message in errors:
            store.rejected.append((op.project, op.run_id, message))
        codes: list[tuple[int, int, int]] = [(code_pb2.OK, 1, IngestCode.OK)]
        if errors:
            codes = [(code_pb2.INVALID_ARGUMENT, 1, code) for code, _ in errors]
        store.request_status[request_id] = codes
    return client_pb2.SubmitResponse(request_id=request_id, request_ids=[request_id]).SerializeToString()


def check_status(store: Store, payload: bytes) -> bytes:
    """POST /api/client/v1/ingest/check: one RequestStatus per requested id (everything is processed at once)."""
    ids = client_pb2.RequestIdList.FromString(payload)
    result = client_pb2.BulkRequestStatus()
    with store.lock:
        for rid in ids.ids:
            status = result.statuses.add()
            for code, count, detail in store.request_status.get(rid.value, [(code_pb2.OK, 1, IngestCode.OK)]):
                status.code_by_count.append(
                    request_status_pb2.RequestStatus.CodeByCount(code=code, count=count, detail=detail)
                )
    return result.SerializeToString()
