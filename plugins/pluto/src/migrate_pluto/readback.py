"""`sample_series` for `migrate report`: a loaded run's float series read back from Pluto, sampled.

It finds the run as `verify` does (by our cached id, else by external id, following replacements) and asks
`/api/runs/metrics` for at most `max_points` points per series, which Pluto samples itself. Steps go back
to the source's terms through the step plan the load recorded in the run (`pluto_step * divisor + offset`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from migrate_core.api import RunContext, RunReader
from migrate_core.format import STEP_SCALE

from . import names
from .loader import RunLoader
from .state import LoadRecord
from .steps import StepPlan
from .transport import Transport
from .verify import PAGE, _current

if TYPE_CHECKING:
    from .sink import PlutoSink


def sample_series(sink: PlutoSink, http: Transport, reader: RunReader, ctx: RunContext, paths: Sequence[str],
                  max_points: int) -> dict[str, tuple[list[float], list[float | None]]]:
    store = sink.store(reader)
    loader = RunLoader(sink.config, http, store, reader, ctx, sink.kind(reader))
    cached = store.load(reader.project_id, reader.run_id)
    pluto_id = cached.pluto_id if cached is not None and cached.project == loader.project else None
    details = _current(http, loader.project, loader.external_id, pluto_id)
    if details is None:
        return {}
    record = LoadRecord.from_config(details.get("config"))
    plan = (StepPlan.from_json(record.plan) if record is not None else None) or StepPlan()
    out: dict[str, tuple[list[float], list[float | None]]] = {}
    for path in paths:
        rows = http.api_get("/api/runs/metrics", {"runId": int(details["id"]), "projectName": loader.project,
                                                  "logName": names.encode_name(path),
                                                  "limit": max(1, min(max_points, PAGE))},
                            "metric sample").get("metrics") or []
        if not rows:
            continue
        points = sorted((int(row["step"]), _value(row.get("value"))) for row in rows)
        out[path] = ([(step * plan.divisor + plan.offset_units) / STEP_SCALE for step, _ in points],
                     [value for _, value in points])
    return out


def _value(value: Any) -> float | None:
    """JSON has no NaN/Inf: Pluto answers null for them."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
