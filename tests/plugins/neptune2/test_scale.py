"""Scale: runs-table paging past the 10k window with ties, and a 100k-point series in bounded batches."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.api import Selection
from migrate_core.testing import MemoryStorage, export_into
from migrate_neptune2.listing import search_entries

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.plugins.neptune2.conftest import T0, make_source

pytestmark = pytest.mark.timeout(120)


def test_ties_across_many_small_windows_are_listed_exactly_once(fake_neptune2: FakeNeptune2Server):
    """A 50-row window (instead of 10 000) with runs sharing creation times across page and window edges."""
    srv = fake_neptune2
    srv.max_offset = 50
    created = [T0 + (i // 7) * 1000 for i in range(300)]  # groups of 7 runs share one creation time
    created[40:75] = [T0 + 5_000_000] * 35  # one tie group straddles the first window edge
    for ms in sorted(created):
        srv.add_run("ws/p", creation_time=ms)
    source = make_source(projects=["ws/p"])
    project = source._project("ws/p")
    for page in (7, 10, 13, 50):
        ids = [e.sys_id for e in search_entries(source.client, project["id"], ["run"], "", page, max_offset=50)]
        assert len(ids) == 300 and len(set(ids)) == 300, page
    source.close()


@pytest.mark.slow
def test_twelve_thousand_runs_with_ties_at_the_window_edge(fake_neptune2: FakeNeptune2Server):
    srv = fake_neptune2
    for i in range(12_000):
        created = T0 + (i if i < 9_990 else 9_990) * 1000  # runs 9990..10049+ share one timestamp at the edge
        created = created if i < 10_050 else T0 + i * 1000
        srv.add_run("ws/big", creation_time=created, trashed=(i % 1000 == 999))
    source = make_source(projects=["ws/big"], runs_page_size=1000)
    srv.reset_counters()
    runs = list(source.list_runs(Selection()))
    ids = [r.run_id for r in runs]
    assert len(ids) == 12_000 - 12 and len(set(ids)) == len(ids)  # every live run, exactly once
    assert srv.count("searchLeaderboardEntries") <= 14
    trashed = list(make_source(projects=["ws/big"], trashed="only").list_runs(Selection()))
    assert len(trashed) == 12
    source.close()


@pytest.mark.slow
def test_hundred_thousand_point_series_in_bounded_batches(fake_neptune2: FakeNeptune2Server, tmp_path):
    n = 100_000
    rng = np.random.default_rng(7)
    steps = np.arange(n, dtype=np.float64) * 0.5
    values = rng.standard_normal(n)
    stamps = T0 + np.arange(n, dtype=np.int64) * 7
    fake_neptune2.add_run("ws/proj", float_series={"train/loss": (steps, values, stamps)})
    source = make_source(batch_rows=20_000)
    storage = MemoryStorage(tmp_path)
    fake_neptune2.reset_counters()
    export_into(storage, source)
    assert fake_neptune2.count("getFloatSeriesValues") == 100
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    loss = table.filter(pa.compute.equal(table["attribute_path"], "train/loss"))
    np.testing.assert_array_equal(loss["float_value"].to_numpy(), values)
    assert loss["timestamp"].cast(pa.int64()).to_numpy().tolist() == stamps.tolist()
    units = np.array([int(s * 1_000_000) for s in loss["step"].to_pylist()[:5]])
    assert units.tolist() == [0, 500_000, 1_000_000, 1_500_000, 2_000_000]
    assert max(chunk.num_rows for chunk in loss.to_batches()) <= 20_000  # one batch per 20k points, not 100k
    source.close()


def test_non_finite_values_sent_as_strings_are_kept(fake_neptune2: FakeNeptune2Server, tmp_path, monkeypatch):
    """Some servers write NaN/Infinity as JSON strings; the slow path casts them instead of failing."""
    from tests.fakes.neptune2 import server as fake_server

    original = fake_server._series_page

    def stringly(s, sl):
        page = original(s, sl)
        for point in page["values"]:
            if point["value"] != point["value"] or abs(point["value"]) == float("inf"):
                point["value"] = {float("inf"): "Infinity", float("-inf"): "-Infinity"}.get(point["value"], "NaN")
        return page

    monkeypatch.setattr(fake_server, "_series_page", stringly)
    fake_neptune2.add_run("ws/proj", float_series={"m": [1.0, float("nan"), float("inf"), float("-inf")]})
    source = make_source()
    storage = MemoryStorage(tmp_path)
    export_into(storage, source)
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    got = table.filter(pa.compute.equal(table["attribute_path"], "m"))["float_value"].to_numpy()
    np.testing.assert_array_equal(got, [1.0, np.nan, np.inf, -np.inf])
    source.close()


@pytest.mark.parametrize("prefetch", [1, 3])
def test_series_that_grows_while_read_is_read_to_its_end(fake_neptune2: FakeNeptune2Server, tmp_path, prefetch):
    """A running run's series grows between pages: every point present at the last page is exported, in order."""
    from tests.fakes.neptune2 import server as fake_server

    n = 2_500
    fake_neptune2.add_run("ws/proj", float_series={"m": (np.arange(n), np.arange(n, dtype=float))})
    series = fake_neptune2.container("ws/proj", "PROJ-1").attrs["m"]
    original = fake_server._series_page
    grown = []

    def growing(s, sl):
        if not grown and sl.start == 1000:  # after the first page: 700 more points arrive
            grown.append(True)
            s.steps = np.arange(n + 700, dtype=np.float64)
            s.values = np.arange(n + 700, dtype=np.float64)
            s.timestamps = T0 + np.arange(n + 700, dtype=np.int64)
        return original(s, sl)

    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(fake_server, "_series_page", growing)
    try:
        source = make_source(series_prefetch=prefetch)
        storage = MemoryStorage(tmp_path)
        export_into(storage, source)
    finally:
        monkeypatch.undo()
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    got = table.filter(pa.compute.equal(table["attribute_path"], "m"))["float_value"].to_numpy()
    assert len(series) == n + 700
    np.testing.assert_array_equal(got, np.arange(n + 700, dtype=float))
    source.close()
