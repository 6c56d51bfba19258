"""Attribute groups read by several workers: rows come out in one fixed order, bounded, and a failing group
stops the others without hanging."""

from __future__ import annotations

import re

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.api import Selection
from migrate_core.format import plain
from migrate_core.testing import MemoryStorage, export_into, tables_equal
from migrate_neptune3.errors import AttributeFetchError

from tests.fakes.neptune3.server import FakeNeptune3
from tests.plugins.neptune3.conftest import make_source

pytestmark = pytest.mark.timeout(90)


def _declare(fake: FakeNeptune3) -> None:
    run = fake.data.run("many-groups")
    for i in range(120):
        run.metric(f"m/{i:03d}", steps=np.arange(300.0) / 4, values=np.arange(300.0) + i)
    for i in range(15):
        run.string_series(f"log/{i:02d}", steps=[0, 1, 2], values=["a", "b", f"c{i}"])


def _export(source, path) -> pa.Table:
    storage = MemoryStorage(path)
    export_into(storage, source, Selection(runs=re.compile("^many-groups$")))
    run = storage.list_runs()[0]
    return plain(pa.Table.from_batches(list(storage.read(run))))


def test_concurrent_groups_give_the_sequential_result(fake_neptune3: FakeNeptune3, tmp_path):
    _declare(fake_neptune3)
    sequential = _export(make_source(attribute_workers=1, series_per_request=7, page_points=1000), tmp_path / "a")
    parallel = _export(make_source(attribute_workers=6, series_per_request=7, page_points=1000), tmp_path / "b")
    again = _export(make_source(attribute_workers=6, series_per_request=7, page_points=1000), tmp_path / "c")
    assert sequential.num_rows == 120 * 300 + 15 * 3 + parallel.filter(pa.compute.is_null(parallel["step"])).num_rows
    assert tables_equal(sequential, parallel) and tables_equal(parallel, again)


def test_a_failing_group_stops_the_others(fake_neptune3: FakeNeptune3, tmp_path):
    _declare(fake_neptune3)
    fake_neptune3.faults.add(r"/series/float$", "5xx", times=None, status=500)
    source = make_source(attribute_workers=6, series_per_request=7, page_points=1000, retry_budget=1)
    with pytest.raises(AttributeFetchError, match="retry budget ran out"):
        _export(source, tmp_path)


class _FailingWriter:
    """A storage writer whose third batch fails, as a full disk would."""

    def __init__(self, inner) -> None:
        self.inner, self.batches = inner, 0

    def write(self, batch) -> None:
        self.batches += 1
        if self.batches == 3:
            raise OSError(28, "No space left on device")
        self.inner.write(batch)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize(("workers", "inline_rows"), [(1, 0), (4, 0), (1, 10**9)])
def test_a_storage_failure_fails_the_run_even_when_skipping_attributes(fake_neptune3: FakeNeptune3, tmp_path,
                                                                       monkeypatch, workers, inline_rows):
    """Batches are written in a writer thread (after a run's first rows, written inline); a write failure
    is the run's, never counted as an attribute's."""
    import threading

    import migrate_neptune3.source as source_module
    from migrate_core.api import RunContext, RunReport

    monkeypatch.setattr(source_module, "INLINE_WRITE_ROWS", inline_rows)

    _declare(fake_neptune3)
    source = make_source(attribute_workers=workers, series_per_request=7, page_points=1000,
                         skip_failed_attributes=True)
    run = next(iter(source.list_runs(Selection())))
    storage = MemoryStorage(tmp_path)
    writer = _FailingWriter(storage.begin_run(run.project_id, run.run_id, {"plugin": "neptune3"}))
    report = RunReport()
    with pytest.raises(OSError, match="No space left"):
        source.export_run(run, Selection(), writer, RunContext(report, threading.Event()))
    assert not report.losses
    assert threading.active_count() < 20  # the writer thread is gone, nothing left blocked
    assert not [t for t in threading.enumerate() if t.name == "neptune3-write"]


def test_threaded_and_inline_writes_give_the_same_rows(fake_neptune3: FakeNeptune3, tmp_path, monkeypatch):
    import migrate_neptune3.source as source_module

    _declare(fake_neptune3)
    monkeypatch.setattr(source_module, "INLINE_WRITE_ROWS", 0)
    threaded = _export(make_source(series_per_request=7, page_points=1000), tmp_path / "a")
    monkeypatch.setattr(source_module, "INLINE_WRITE_ROWS", 10**9)
    inline = _export(make_source(series_per_request=7, page_points=1000), tmp_path / "b")
    assert threaded.num_rows > 120 * 300 and tables_equal(threaded, inline)
