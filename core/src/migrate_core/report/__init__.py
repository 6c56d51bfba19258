"""`migrate report`: what a migration did, per project and per run, from what it left behind.

Nothing here re-runs the migration: the report reads the run manifests (what each export wrote and dropped),
the ledger (what each load did, when, and what it could not carry) and, when a sink is given, the sink
itself (a `verify_run` per loaded run and, where the sink can, a sample of each plotted series read back).
`build()` gathers that into one JSON-ready dict; `markdown.py` and `html.py` render it.
"""

from __future__ import annotations

from .model import POINTS_PER_SERIES, RUNS_PLOTTED, SERIES_PER_RUN, Report, build

__all__ = ["POINTS_PER_SERIES", "RUNS_PLOTTED", "SERIES_PER_RUN", "Report", "build", "render"]


def render(report: Report, fmt: str) -> str:
    """The report as `fmt` (html, md or json) text."""
    if fmt == "json":
        import json

        return json.dumps(report.data, indent=2, ensure_ascii=False, default=str) + "\n"
    if fmt == "md":
        from .markdown import render_markdown

        return render_markdown(report.data)
    if fmt == "html":
        from .html import render_html

        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}")
