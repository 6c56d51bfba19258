"""The report as Markdown: summary, losses, projects, runs, and per run what was not carried and why.

Every string from the source (project and run ids, reasons, loss names) is escaped: Markdown renderers pass
raw HTML through, and a `|` would break a table.
"""

from __future__ import annotations

import html
from typing import Any


def cell(value: Any) -> str:
    """One table cell: HTML escaped, pipes and line breaks neutralised."""
    if value is None:
        return "—"
    text = html.escape(str(value), quote=False)
    return " ".join(text.replace("|", "\\|").split())


def yes_no(value: bool | None, unknown: str = "—") -> str:
    return unknown if value is None else ("yes" if value else "no")


def render_markdown(data: dict[str, Any]) -> str:
    s = data["summary"]
    sink = data["sink"]
    out = ["# migrate report", ""]
    out.append(f"Storage: {cell(data['storage'])}  ")
    out.append(f"Sink: {cell(sink['target']) if sink else 'none given (storage only; `--sink NAME` reads it back)'}  ")
    out.append(f"Generated: {data['generated_at']}")
    out += ["", "## Summary", "", "| | |", "|---|---|"]
    lossless = "yes" if s["lossless"] else "no: " + "; ".join(s["not_lossless_because"])
    rows = [
        ("projects", s["projects"]), ("runs", s["runs"]), ("exported", s["exported"]), ("loaded", s["loaded"]),
        ("verified", s["verified"] if s["verified"] is not None else "not checked (no sink given)"),
        ("mismatched", s["mismatched"] if s["mismatched"] is not None else "not checked"),
        ("skipped", s["skipped"]), ("failed", s["failed"]),
        ("rows in storage", f"{s['rows']:,}"), ("rows loaded", f"{s['rows_loaded']:,}"),
        ("values not carried", f"{sum(s['losses'].values()):,}"), ("lossless", lossless),
    ]
    out += [f"| {name} | {cell(value)} |" for name, value in rows]
    out += ["", "## Not carried", ""]
    if s["losses"]:
        out += ["| count | what |", "|---:|---|"]
        out += [f"| {n:,} | {cell(what)} |" for what, n in s["losses"].items()]
    else:
        out.append("Nothing counted.")
    out += ["", "## Projects", "", "| project | runs | exported | loaded | skipped | rows | not carried |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for p in data["projects"]:
        out.append(f"| {cell(p['project_id'])} | {p['runs']} | {p['exported']} | {p['loaded']} | {p['skipped']} "
                   f"| {p['rows']:,} | {sum(p['losses'].values()):,} |")
    out += ["", "## Runs", "",
            "| project | run | status | exported | loaded | verified | rows | not carried | skip reason |",
            "|---|---|---|---|---|---|---:|---:|---|"]
    for r in data["runs"]:
        out.append(
            f"| {cell(r['project_id'])} | {cell(r['run_id'])} | {r['status']} | {cell(r['export']['state'])} "
            f"| {yes_no(r['loaded'])} | {yes_no(r['verified'])} | {r['export']['rows']:,} "
            f"| {sum(r['losses'].values()):,} | {cell(r['skip_reason'])} |")
    details = [r for r in data["runs"] if r["losses"] or r["verify_mismatches"] or r["export"]["notes"]
               or any(load["notes"] for load in r["loads"])]
    if details:
        out += ["", "## Per run", ""]
    for r in details:
        out += [f"### {cell(r['project_id'])} {cell(r['run_id'])}", ""]
        for what, n in r["export"]["losses"].items():
            out.append(f"- export: {n:,} {cell(what)}")
        for load in r["loads"]:
            for what, n in load["losses"].items():
                out.append(f"- load into {cell(load['target'])}: {n:,} {cell(what)}")
            for note in load["notes"]:
                out.append(f"- load note: {cell(note)}")
        for note in r["export"]["notes"]:
            out.append(f"- export note: {cell(note)}")
        for mismatch in r["verify_mismatches"]:
            out.append(f"- read-back mismatch: {cell(mismatch)}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
