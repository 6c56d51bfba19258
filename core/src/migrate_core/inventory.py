"""What is in storage: per-run row counts by type and bytes, from manifests or, for foreign dumps, data."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from typing import Any

import pyarrow.compute as pc

from .api import Storage, StoredRun


def rows_by_type(storage: Storage, run: StoredRun) -> dict[str, int]:
    """From the manifest when we wrote the run; otherwise counted from the attribute_type column only."""
    if run.manifest is not None and run.manifest.get("status") == "complete":
        return dict(run.manifest.get("rows_by_type") or {})
    counts: Counter[str] = Counter()
    for batch in storage.read(run, columns=["attribute_type"], batch_rows=1 << 20):
        for item in pc.value_counts(batch.column(0)).to_pylist():
            counts[str(item["values"])] += item["counts"]
    return dict(sorted(counts.items()))


def stored_bytes(run: StoredRun) -> int:
    if run.manifest is not None and run.manifest.get("parts"):
        return sum(int(p.get("bytes", 0)) for p in run.manifest["parts"])
    total = 0
    for part in run.parts:
        with contextlib.suppress(OSError):
            total += os.path.getsize(part)
    return total


def describe_run(storage: Storage, run: StoredRun, ledger_states: dict[str, str] | None = None) -> dict[str, Any]:
    """One row of `inspect --json`. A run whose data cannot be read says why in `problem`."""
    problem = run.problem
    try:
        counts = rows_by_type(storage, run) if run.parts else {}
    except Exception as exc:  # a corrupt part must not hide the other runs
        counts, problem = {}, str(exc)
    return {
        "project_id": run.project_id,
        "run_id": run.run_id,
        "complete": run.complete and problem is None,
        "has_manifest": run.has_manifest,
        "foreign": not run.has_manifest,
        "status": (run.manifest or {}).get("status") if run.has_manifest else ("complete" if run.complete else "partial"),
        "rows": sum(counts.values()),
        "rows_by_type": counts,
        "files": len((run.manifest or {}).get("files") or []) if run.has_manifest else None,
        "parts": len(run.parts),
        "bytes": stored_bytes(run),
        "parent_run_id": ((run.manifest or {}).get("lineage") or {}).get("parent_run_id"),
        "problem": problem,
        "loads": ledger_states or {},
    }
