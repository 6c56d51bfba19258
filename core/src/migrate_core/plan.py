"""`--dry-run`: what would move, how much, and what the sink cannot represent; nothing is written.

One shape for `export`, `load` and `run` (README, "Dry runs"): the plan has a section per stage the command
runs (`export`, `load`), and every section, and every run in it, has the same keys:

- section: `target`, `runs`, `to_move` (runs that would move), `estimated_rows` (None when a run to move has
  no estimate), `rows_by_type` (the counts known: from storage), `estimated_bytes`, `not_representable`
  (predicted losses by name), `notes`.
- run: `project_id`, `run_id`, `parent_run_id`, `action` (`export`, `load`, `load after export` or
  `skip (why)`), `estimated_rows`, `rows_by_type`, `estimated_bytes`, `not_representable`.

Rows are counted the way the real command reports them: a load plan counts only the runs the load would send
(runs already loaded, failed before or incomplete are skipped, with the reason, as the load itself decides),
from their manifests, which is the sum of the load summary's rows. An export plan takes the source's per-run
row estimate. Bytes are bytes in storage (parquet parts plus files): for a stored run, what it holds; for a
run to export, `estimated_rows * BYTES_PER_ROW` plus the source's estimate of its file bytes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .api import RunReader, Selection, Sink, Source, SourceRun, Storage, StoredRun
from .inventory import rows_by_type, stored_bytes

#: bytes a row takes in the stored parquet, for export estimates: zstd parquet of float series (step,
#: timestamp, value; paths dictionary-encoded) takes 10-20 bytes a row (the demo's: 11-14)
BYTES_PER_ROW = 16

SECTION_KEYS = ("target", "runs", "to_move", "estimated_rows", "rows_by_type", "estimated_bytes",
                "not_representable", "notes")


def _entry(project_id: str, run_id: str, parent: str | None, action: str, rows: int | None = None,
           by_type: dict[str, int] | None = None, size: int | None = None,
           losses: dict[str, int] | None = None) -> dict[str, Any]:
    return {"project_id": project_id, "run_id": run_id, "parent_run_id": parent, "action": action,
            "estimated_rows": rows, "rows_by_type": by_type or {}, "estimated_bytes": size,
            "not_representable": losses or {}}


def _section(target: str, runs: list[dict[str, Any]], moving: tuple[str, ...], notes: list[str]
             ) -> dict[str, Any]:
    moved = [r for r in runs if r["action"] in moving]
    by_type: dict[str, int] = {}
    losses: dict[str, int] = {}
    for r in moved:
        for t, n in r["rows_by_type"].items():
            by_type[t] = by_type.get(t, 0) + n
        for what, n in r["not_representable"].items():
            losses[what] = losses.get(what, 0) + n
    rows = [r["estimated_rows"] for r in moved]
    return {
        "target": target,
        "runs": runs,
        "to_move": len(moved),
        "estimated_rows": None if any(n is None for n in rows) else sum(rows),
        "rows_by_type": dict(sorted(by_type.items())),
        # unknown when any run's size is: never a total that silently counts unknown runs as empty
        "estimated_bytes": None if any(r["estimated_bytes"] is None for r in moved)
        else sum(r["estimated_bytes"] for r in moved),
        "not_representable": dict(sorted(losses.items())),
        "notes": notes,
    }


def export_bytes(run: SourceRun) -> int | None:
    """Storage bytes a run to export is expected to take (the documented rule above); None when the source
    estimates neither its rows nor its files."""
    if run.estimated_rows is None and run.estimated_file_bytes is None:
        return None
    return (run.estimated_rows or 0) * BYTES_PER_ROW + (run.estimated_file_bytes or 0)


def stored_size(run: StoredRun) -> int:
    """What a stored run holds: its parquet parts plus its files (as the manifest lists them)."""
    files = (run.manifest or {}).get("files") or []
    return stored_bytes(run) + sum(int(f.get("size") or 0) for f in files)


def _stored_entry(storage: Storage, sink: Sink, run: StoredRun, skip: str | None) -> dict[str, Any]:
    parent = ((run.manifest or {}).get("lineage") or {}).get("parent_run_id")
    if skip is not None:
        return _entry(run.project_id, run.run_id, parent, f"skip ({skip})")
    counts = rows_by_type(storage, run)
    losses = dict(sorted(sink.predict_losses(RunReader(storage, run)).items()))
    return _entry(run.project_id, run.run_id, parent, "load", sum(counts.values()), counts, stored_size(run),
                  losses)


def make_plan(
    command: str, storage: Storage, selection: Selection, source: Source | None = None, sink: Sink | None = None,
    decide: Callable[[SourceRun, StoredRun | None], str | None] = lambda run, existing: None,
    load_decide: Callable[[StoredRun], str | None] | None = None,
) -> dict[str, Any]:
    """`decide(run, existing)` is the orchestrator's export rule and `load_decide(stored)` its load rule (None:
    nothing was loaded yet, so every complete run loads): each a skip reason or None."""
    def load_skip(run: StoredRun) -> str | None:
        if not run.complete:
            return f"incomplete export: {run.problem or 'no part_0'}"
        return load_decide(run) if load_decide is not None else None

    plan: dict[str, Any] = {"command": command, "dry_run": True}
    exporting: list[tuple[SourceRun, bool]] = []
    if source is not None:
        runs = []
        for run in source.list_runs(selection):
            if not selection.wants_modified(run.modification_time) or not selection.in_shard(run.key):
                continue
            skip = decide(run, storage.get_run(run.project_id, run.run_id))
            exporting.append((run, skip is None))
            if skip:
                runs.append(_entry(run.project_id, run.run_id, run.parent_run_id, f"skip ({skip})"))
            else:
                runs.append(_entry(run.project_id, run.run_id, run.parent_run_id, "export", run.estimated_rows,
                                   size=export_bytes(run)))
        notes = ["rows: the source's estimate" + ("" if all(r.estimated_rows is not None for r, _ in exporting)
                                                   else "; it gives none for some runs")]
        plan["export"] = _section(storage.describe(), runs, ("export",), notes)
    if sink is not None:
        runs, notes = [], []
        if source is not None:  # `run`: the runs the source lists, loaded once exported
            for run, export_now in exporting:
                if export_now:
                    runs.append(_entry(run.project_id, run.run_id, run.parent_run_id, "load after export",
                                       run.estimated_rows, size=export_bytes(run)))
                    continue
                stored = storage.get_run(run.project_id, run.run_id)
                if stored is None:  # pragma: no cover - skipped as exported, so it is stored
                    continue
                runs.append(_stored_entry(storage, sink, stored, load_skip(stored)))
            if any(now for _, now in exporting):
                notes.append("runs exported by this command: rows estimated by the source, losses known once "
                             "they are exported")
        else:
            for stored in storage.list_runs(selection.projects):
                if selection.wants_project(stored.project_id) and selection.wants_run(stored.run_id):
                    runs.append(_stored_entry(storage, sink, stored, load_skip(stored)))
        plan["load"] = _section(sink.target(), runs, ("load", "load after export"), notes)
    return plan


def render_plan(plan: dict[str, Any]) -> None:
    out = sys.stdout.write
    out(f"plan for `{plan['command']}` (dry run, nothing written)\n")
    for stage, verb in (("export", "export into"), ("load", "load into")):
        if stage not in plan:
            continue
        s = plan[stage]
        approx = "~" if any(r["action"] in ("export", "load after export") for r in s["runs"]) else ""
        rows = "rows unknown" if s["estimated_rows"] is None else f"{approx}{s['estimated_rows']:,} rows"
        size = "bytes unknown" if s["estimated_bytes"] is None else f"{approx}{s['estimated_bytes']:,} bytes"
        out(f"{verb} {s['target']}: {s['to_move']} of {len(s['runs'])} runs, {rows}, {size}\n")
        for t, n in s["rows_by_type"].items():
            out(f"  {t}: {n:,} rows\n")
        if s["not_representable"]:
            for what, n in s["not_representable"].items():
                out(f"  cannot carry: {n:,} {what}\n")
        elif stage == "load":
            out("  cannot carry: nothing" + (" known yet" if s["notes"] else "") + "\n")
        for note in s["notes"]:
            out(f"  note: {note}\n")
        for r in s["runs"]:
            fork = f" (fork of {r['parent_run_id']})" if r["parent_run_id"] else ""
            size = f", ~{r['estimated_rows']:,} rows" if r["estimated_rows"] is not None and stage == "export" else ""
            out(f"  {r['project_id']} {r['run_id']}{fork}: {r['action']}{size}\n")
