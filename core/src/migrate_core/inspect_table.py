"""`migrate inspect`'s terminal table: one line per run, compact enough for 100 columns.

Columns: project, run, state, rows, the largest row type with its share, and the load state per sink
(the sink's name, not its whole target). Long cells end in an ellipsis instead of wrapping; `--json` has
everything in full, and every problem (why a run is incomplete) is also printed whole under the table, one
line per run that has one: a truncated cell never hides what is wrong.
"""

from __future__ import annotations

from typing import Any


def short_state(row: dict[str, Any]) -> str:
    state = "complete" if row["complete"] else "INCOMPLETE"
    if not row["has_manifest"]:
        state += " (foreign)"
    if row["problem"]:
        state += f": {row['problem']}"
    return state


def top_type(rows_by_type: dict[str, int]) -> str:
    total = sum(rows_by_type.values())
    if not total:
        return "—"
    name, count = max(rows_by_type.items(), key=lambda item: (item[1], item[0]))
    return f"{name} {count * 100 // total}%"


def short_loads(loads: dict[str, str]) -> str:
    """`pluto done`: the sink name before the target's first `:`, and its state in one word or two."""
    if not loads:
        return "—"
    parts = []
    for target, state in loads.items():
        name = target.split(":", 1)[0] or target
        parts.append(f"{name} {'done (old export)' if state.startswith('done, older') else state}")
    return ", ".join(parts)


def render(rows: list[dict[str, Any]], where: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    cells = [(r["project_id"], r["run_id"], short_state(r), f"{r['rows']:,}", top_type(r["rows_by_type"]),
              short_loads(r["loads"])) for r in rows]
    table = Table(title=f"{len(rows)} runs in {where}", box=box.SIMPLE_HEAD, pad_edge=False)
    # ids, counts, the top type and the loads keep their width (up to a bound); a long state gives way
    for i, (column, justify, keep) in enumerate((("project", "left", 40), ("run", "left", 40), ("state", "left", 0),
                                                 ("rows", "right", 15), ("top type", "left", 22),
                                                 ("loads", "left", 24))):
        width = min(keep, max([len(column), *(len(c[i]) for c in cells)])) if keep else None
        table.add_column(column, justify=justify, no_wrap=True, overflow="ellipsis",  # type: ignore[arg-type]
                         min_width=width, max_width=None if keep else 24)
    for row in cells:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for r in rows:
        if r["problem"]:
            console.print(f"{r['project_id']} {r['run_id']}: {r['problem']}", markup=False, highlight=False,
                          soft_wrap=True)
