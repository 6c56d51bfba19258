"""The report as one self-contained HTML file: tables, and Plotly plots with plotly.js embedded once.

The file needs no network (a Content-Security-Policy forbids it) and stays small: plotly.js (~4.7 MB) is
inlined once, and each plotted series holds at most `POINTS_PER_SERIES` points. Every string from the source
is escaped: in the page with `html.escape`, and in plot labels too (Plotly draws labels from a small HTML
subset, and decodes the entities back for display); the figure JSON itself is escaped by Plotly.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any

from .markdown import yes_no
from .model import POINTS_PER_SERIES, Report, Series

# no network at all (the file works offline and cannot call home); inline scripts and styles only
CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; font-src data:"

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00020; font-weight: 600; } .good { color: #1b7f3b; font-weight: 600; }
.note { color: #555; font-style: italic; }
"""

PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def esc(value: Any) -> str:
    return "—" if value is None else html.escape(str(value))


def label(value: Any) -> str:
    """A plot label: Plotly reads `<`/`&` as its markup and decodes &lt; &gt; &amp; back, but not &quot;."""
    return html.escape(str(value), quote=False)


def render_html(report: Report) -> str:
    import plotly.offline

    data = report.data
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        "<title>migrate report</title>",
        f"<style>{STYLE}</style>",
        f"<script>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        "<h1>migrate report</h1>",
        _header(data),
        _summary(data),
        _losses(data),
        _projects(data),
        _runs(data),
        '<section id="sizes"><h2>Run sizes</h2>', _sizes(data), "</section>",
        '<section id="timeline"><h2>Timeline</h2>', _timeline(data), "</section>",
        '<section id="series"><h2>Series: source vs sink</h2>', _series(report), "</section>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(data: dict[str, Any]) -> str:
    sink = data["sink"]
    where = (esc(sink["target"]) if sink else
             '<span class="note">none given: storage only (<code>--sink NAME</code> reads the sink back)</span>')
    return (f"<p>Storage: {esc(data['storage'])}<br>Sink: {where}<br>"
            f"Generated: {esc(data['generated_at'])}</p>")


def _summary(data: dict[str, Any]) -> str:
    s = data["summary"]
    lossless = ('<span class="good">yes</span>' if s["lossless"] else
                '<span class="bad">no</span>: ' + esc("; ".join(s["not_lossless_because"])))
    rows = [
        ("projects", s["projects"]), ("runs", s["runs"]), ("exported", s["exported"]), ("loaded", s["loaded"]),
        ("verified", s["verified"] if s["verified"] is not None else "not checked (no sink given)"),
        ("skipped", s["skipped"]), ("failed", s["failed"]),
        ("rows in storage", f"{s['rows']:,}"), ("rows loaded", f"{s['rows_loaded']:,}"),
        ("values not carried", f"{sum(s['losses'].values()):,}"),
    ]
    body = "".join(f"<tr><th>{name}</th><td>{esc(value)}</td></tr>" for name, value in rows)
    body += f'<tr><th>lossless</th><td id="lossless">{lossless}</td></tr>'
    return f'<section id="summary"><h2>Summary</h2><table>{body}</table></section>'


def _losses(data: dict[str, Any]) -> str:
    losses = data["summary"]["losses"]
    if not losses:
        return '<section id="losses"><h2>Not carried</h2><p>Nothing counted.</p></section>'
    body = "".join(f'<tr><td class="n">{n:,}</td><td>{esc(what)}</td></tr>' for what, n in losses.items())
    return (f'<section id="losses"><h2>Not carried</h2><table><tr><th>count</th><th>what</th></tr>{body}'
            "</table></section>")


def _projects(data: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("project", "runs", "exported", "loaded", "skipped", "rows",
                                              "not carried"))
    body = "".join(
        f"<tr><td>{esc(p['project_id'])}</td><td class='n'>{p['runs']}</td><td class='n'>{p['exported']}</td>"
        f"<td class='n'>{p['loaded']}</td><td class='n'>{p['skipped']}</td><td class='n'>{p['rows']:,}</td>"
        f"<td class='n'>{sum(p['losses'].values()):,}</td></tr>"
        for p in data["projects"])
    return f'<section id="projects"><h2>Projects</h2><table><tr>{head}</tr>{body}</table></section>'


def _runs(data: dict[str, Any]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("project", "run", "status", "exported", "loaded", "verified", "rows",
                                              "not carried", "skip reason", "read-back"))
    body = []
    for r in data["runs"]:
        losses = "<br>".join(f"{n:,} {esc(what)}" for what, n in r["losses"].items()) or "0"
        status = r["status"]
        cls = "bad" if status in ("failed", "mismatch", "incomplete", "deferred", "interrupted") else ""
        body.append(
            f'<tr class="run"><td>{esc(r["project_id"])}</td><td class="run-id">{esc(r["run_id"])}</td>'
            f'<td class="{cls}">{esc(status)}</td><td>{esc(r["export"]["state"])}</td>'
            f"<td>{yes_no(r['loaded'])}</td><td>{yes_no(r['verified'])}</td>"
            f"<td class='n'>{r['export']['rows']:,}</td><td>{losses}</td><td>{esc(r['skip_reason'])}</td>"
            f"<td>{esc(r['read_back'])}</td></tr>")
    return (f'<section id="runs"><h2>Runs</h2><table id="run-table"><tr>{head}</tr>{"".join(body)}</table>'
            "</section>")


def _figure(fig: Any, div_id: str) -> str:
    fig.update_layout(margin={"l": 60, "r": 20, "t": 50, "b": 40}, template="plotly_white")
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=PLOT_CONFIG)


def _sizes(data: dict[str, Any]) -> str:
    import plotly.graph_objects as go

    rows = [r["export"]["rows"] for r in data["runs"]]
    if not rows:
        return '<p class="note">No runs.</p>'
    fig = go.Figure(go.Histogram(x=rows, nbinsx=min(40, max(5, len(rows))), name="runs"))
    fig.update_layout(title="Rows per run", xaxis_title="rows", yaxis_title="runs", height=320, bargap=0.05)
    return _figure(fig, "plot-sizes")


def _when(iso: str | None) -> datetime | None:
    if not iso:
        return None
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _timeline(data: dict[str, Any]) -> str:
    """Exports (manifest started/completed) and loads (ledger started/last changed) per run, on UTC time."""
    import plotly.graph_objects as go

    bars: dict[str, tuple[list[str], list[str], list[float], list[str]]] = {}
    for r in data["runs"]:
        name = label(f"{r['project_id']} {r['run_id']}")
        spans = [("export", r["export"]["started_at"], r["export"]["completed_at"], r["export"]["state"])]
        spans += [("load", load["started_at"], load["updated_at"], load["state"]) for load in r["loads"]]
        for kind, start, end, state in spans:
            a, b = _when(start), _when(end)
            if a is None or b is None:
                continue
            ys, bases, widths, texts = bars.setdefault(kind, ([], [], [], []))
            ys.append(name)
            bases.append(a.strftime("%Y-%m-%d %H:%M:%S.%f"))
            widths.append(max((b - a).total_seconds() * 1000, 1.0))
            texts.append(label(state))
    if not bars:
        return '<p class="note">No timestamps recorded (a ledger from before loads recorded them).</p>'
    fig = go.Figure()
    for kind, (ys, bases, widths, texts) in bars.items():
        fig.add_trace(go.Bar(y=ys, base=bases, x=widths, orientation="h", name=kind, hovertext=texts))
    rows = len({y for ys, *_ in bars.values() for y in ys})
    fig.update_layout(title="Migration timeline (UTC)", xaxis_type="date", barmode="overlay",
                      height=min(1200, 160 + 22 * rows), yaxis={"autorange": "reversed"})
    return _figure(fig, "plot-timeline")


def _series(report: Report) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not report.series:
        return '<p class="note">No float series in the plotted runs.</p>'
    out = [f'<p class="note">At most {POINTS_PER_SERIES} points per series, spread over each series.'
           + (f" Sink side: not available ({esc(report.series_note)})." if report.series_note else "") + "</p>"]
    for n, (key, paths) in enumerate(sorted(report.series.items())):
        names = sorted(paths)
        fig = make_subplots(rows=len(names), cols=1, subplot_titles=[label(p) for p in names], vertical_spacing=0.08)
        for row, path in enumerate(names, start=1):
            source, sink = paths[path]["source"], paths[path]["sink"]
            assert source is not None
            fig.add_trace(_line(go, source, "storage (source)", "#1f77b4", row == 1, "solid"), row=row, col=1)
            if sink is not None:
                fig.add_trace(_line(go, sink, "sink read-back", "#ff7f0e", row == 1, "dash"), row=row, col=1)
        run = f"{key[0]} {key[1]}"
        title = label(run) + ("" if not report.series_note else " — storage only")
        fig.update_layout(title=title, height=120 + 200 * len(names), legend={"orientation": "h"})
        out.append(f'<h3 class="series-run">{esc(run)}</h3>')
        if report.series_note:
            out.append(f'<p class="note">Storage only: {esc(report.series_note)}.</p>')
        elif all(p["sink"] is None for p in paths.values()):
            out.append('<p class="note">The sink returned none of these series.</p>')
        out.append(_figure(fig, f"plot-series-{n}"))
    return "\n".join(out)


def _line(go: Any, series: Series, name: str, color: str, legend: bool, dash: str) -> Any:
    return go.Scatter(x=series.steps, y=series.values, name=name, legendgroup=name, showlegend=legend,
                      mode="lines" if dash == "solid" else "lines+markers",
                      line={"color": color, "dash": dash}, marker={"size": 3})
