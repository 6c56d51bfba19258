"""verify_run on series longer than one read-back page: exact counts, few requests."""

from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa
from migrate_core.api import RunContext, RunReader, RunReport
from migrate_core.testing import MemoryRun

from .helpers import load, make_sink, run_of
from .test_mapping import P, neptune_storage, series


def _verify(sink, storage):
    return sink.verify_run(RunReader(storage, storage.get_run(P, "R-1")), RunContext(RunReport(), threading.Event()))


def test_long_series_are_counted_exactly_in_few_requests(fake_pluto, tmp_path):
    n = 45_000
    units = (np.arange(n, dtype=np.int64) * 3_000_000) - 6_000_000  # negative start, stride 3
    storage = neptune_storage(tmp_path, [MemoryRun(P, "R-1", pa.Table.from_batches([
        series("R-1", "long", list(units), list(np.linspace(0, 1, n)), [1_700_000_000_000 + i for i in range(n)])]))])
    sink = make_sink(fake_pluto)
    load(sink, storage, P, "R-1")
    fake_pluto.reset_counters()
    result = _verify(sink, storage)
    assert result.ok, result.mismatches
    assert fake_pluto.count("GET /api/runs/metrics") <= 20
    with fake_pluto.state.lock:
        metric = run_of(fake_pluto, "ws-proj", f"neptune:{P}:R-1").metrics["long"]
        steps, values, times = metric.raw()
        keep = np.ones(len(steps), dtype=bool)
        keep[20_000] = False
        metric._steps, metric._values, metric._times = [steps[keep]], [values[keep]], [times[keep]]
        metric._raw_cache = metric._dedup_cache = None
    result = _verify(sink, storage)
    assert not result.ok and result.mismatches == [f"long: points: expected {n}, got {n - 1}"]
