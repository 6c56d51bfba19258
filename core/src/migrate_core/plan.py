"""`--dry-run`: what would move, how much, and what the sink cannot represent; nothing is written."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .api import RunReader, Selection, Sink, Source, SourceRun, Storage, StoredRun
from .inventory import rows_by_type, stored_bytes


def make_plan(
    command: str, storage: Storage, selection: Selection, source: Source | None = None, sink: Sink | None = None,
    decide: Callable[[SourceRun, StoredRun | None], str | None] = lambda run, existing: None,
) -> dict[str, Any]:
    """`decide(run, existing)` is the orchestrator's export rule: a skip reason or None."""
    plan: dict[str, Any] = {"command": command, "dry_run": True}
    if source is not None:
        runs = []
        for run in source.list_runs(selection):
            if not selection.wants_modified(run.modification_time) or not selection.in_shard(run.key):
                continue
            skip = decide(run, storage.get_run(run.project_id, run.run_id))
            runs.append({
                "project_id": run.project_id,
                "run_id": run.run_id,
                "action": f"skip ({skip})" if skip else "export",
                "estimated_rows": run.estimated_rows,
                "parent_run_id": run.parent_run_id,
            })
        plan["export"] = {
            "runs": runs,
            "to_export": sum(1 for r in runs if r["action"] == "export"),
            "estimated_rows": sum(r["estimated_rows"] or 0 for r in runs if r["action"] == "export"),
        }
    if sink is not None:
        stored = [
            r for r in storage.list_runs(selection.projects)
            if selection.wants_project(r.project_id) and selection.wants_run(r.run_id)
        ]
        runs, totals, losses = [], {}, {}
        for run in stored:
            entry: dict[str, Any] = {"project_id": run.project_id, "run_id": run.run_id}
            if not run.complete:
                entry["action"] = f"skip (incomplete: {run.problem})"
                runs.append(entry)
                continue
            counts = rows_by_type(storage, run)
            entry.update(action="load", rows_by_type=counts, bytes=stored_bytes(run),
                         unsupported=dict(sorted(sink.predict_losses(RunReader(storage, run)).items())))
            for t, n in counts.items():
                totals[t] = totals.get(t, 0) + n
            for what, n in entry["unsupported"].items():
                losses[what] = losses.get(what, 0) + n
            runs.append(entry)
        plan["load"] = {
            "sink": sink.target(),
            "runs": runs,
            "rows_by_type": dict(sorted(totals.items())),
            "bytes": sum(r.get("bytes", 0) for r in runs),
            "not_representable": losses,
        }
        if source is not None:
            plan["load"]["note"] = "runs not yet exported are planned after export; counts cover stored runs only"
    return plan


def render_plan(plan: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"plan for `{plan['command']}` (dry run, nothing written)\n")
    if "export" in plan:
        e = plan["export"]
        out(f"export: {e['to_export']} of {len(e['runs'])} runs, ~{e['estimated_rows']:,} rows\n")
        for r in e["runs"]:
            fork = f" (fork of {r['parent_run_id']})" if r["parent_run_id"] else ""
            out(f"  {r['project_id']} {r['run_id']}{fork}: {r['action']}\n")
    if "load" in plan:
        lo = plan["load"]
        loadable = sum(1 for r in lo["runs"] if r["action"] == "load")
        out(f"load into {lo['sink']}: {loadable} of {len(lo['runs'])} stored runs, {lo['bytes']:,} bytes\n")
        for t, n in lo["rows_by_type"].items():
            out(f"  {t}: {n:,} rows\n")
        if lo["not_representable"]:
            for what, n in lo["not_representable"].items():
                out(f"  cannot carry: {n:,} {what}\n")
        else:
            out("  cannot carry: nothing\n")
        for r in lo["runs"]:
            if r["action"] != "load":
                out(f"  {r['project_id']} {r['run_id']}: {r['action']}\n")
