"""Runs read in groups (`Source.prepare`, `group_runs`): the same rows as run by run, fewer requests, and every
way a group can fall short (longer series, type conflicts, failing group requests, deleted runs, memory)."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from migrate_core.api import RunContext, RunReport, Selection, SourceRun
from migrate_core.format import SCHEMA, plain
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryStorage, tables_equal
from migrate_neptune3 import grouped
from migrate_neptune3.grouped import GROUP_FLOAT_POINTS, HELD_GROUPS

from tests.fakes.neptune3.server import FakeNeptune3
from tests.plugins.neptune3.conftest import PROJECT, T0, declare, forget_run, make_source

pytestmark = pytest.mark.timeout(120)

READS = r"attributes/definitions|attributes/query|series"  # the per-run reads (not listing, not files)


def populate(fake: FakeNeptune3) -> None:
    """Every attribute type (declare), plus runs that need more than their group's first page, a name with
    two types in one group, and small runs with their own parameter names."""
    declare(fake)
    long = fake.data.run("long", configs={"only/here": 1.5})
    steps = np.arange(3 * GROUP_FLOAT_POINTS + 7, dtype=np.float64) * 0.25
    long.metric("m/long", steps=steps, values=np.sin(steps), timestamps=T0 + np.arange(len(steps)))
    long.metric("m/short", steps=[0.0, 1.0], values=[1.0, 2.0])
    words = [f"line {i}" for i in range(25)]
    long.string_series("logs/long", steps=np.arange(25.0), values=words)  # the fake pages series by 10
    fake.data.run("conflict-f").metric("x/y", steps=[1.0, 2.0], values=[3.0, 4.0])
    fake.data.run("conflict-s").string_series("x/y", steps=[1.0], values=["text"])
    for i in range(7):
        run = fake.data.run(f"small-{i}", configs={f"p/{i}": i, "shared/lr": 0.1 * i}, tags=[f"t{i}"])
        run.metric("train/loss", steps=np.arange(30.0), values=np.arange(30.0) * i)


def export(source, tmp_path, workers: int = 4, storage: MemoryStorage | None = None):
    storage = storage or MemoryStorage(tmp_path)
    summary = Orchestrator(storage, source=source, workers=workers).export()
    source.close()
    return storage, summary


def tables(storage: MemoryStorage) -> dict[str, pa.Table]:
    out = {}
    for run in storage.list_runs():
        if not run.complete:
            continue
        batches = list(storage.read(run))
        table = plain(pa.Table.from_batches(batches)) if batches else SCHEMA.empty_table()
        keys = [("attribute_path", "ascending"), ("step", "ascending")]
        out[run.run_id] = table.take(pc.sort_indices(table, sort_keys=keys))
    return out


def reads(fake: FakeNeptune3) -> int:
    return len(fake.requests_to(READS))


@pytest.fixture
def small_pages(fake_neptune3: FakeNeptune3):
    fake_neptune3.series_page_points = 10  # string / histogram / file series come in pages of 10 points
    return fake_neptune3


def test_groups_export_the_same_rows_as_run_by_run_with_fewer_requests(small_pages: FakeNeptune3, tmp_path):
    fake = small_pages
    populate(fake)
    fake.reset_log()
    alone, summary = export(make_source(group_runs=1), tmp_path / "alone")
    assert summary.count("export") == {"ok": 13, "failed": 0, "skipped": 0, "cancelled": 0, "deferred": 0}
    alone_reads = reads(fake)
    expected = tables(alone)
    assert len(expected) == 13
    for size, workers in ((16, 4), (3, 1), (2, 3)):
        fake.reset_log()
        storage, summary = export(make_source(group_runs=size), tmp_path / f"g{size}", workers=workers)
        assert summary.count("export")["ok"] == 13, [o.reason for o in summary.outcomes]
        got = tables(storage)
        assert got.keys() == expected.keys()
        for run_id, table in expected.items():
            assert tables_equal(got[run_id], table), (size, run_id)
        assert reads(fake) < alone_reads, (size, reads(fake), alone_reads)
    # the long run's series went past the group's first page and were finished by the run itself
    assert expected["long"].filter(pc.equal(expected["long"]["attribute_path"], "m/long")).num_rows == len(
        np.arange(3 * GROUP_FLOAT_POINTS + 7))
    assert expected["long"].filter(pc.equal(expected["long"]["attribute_path"], "logs/long")).num_rows == 25
    types = {run_id: set(t.filter(pc.equal(t["attribute_path"], "x/y"))["attribute_type"].to_pylist())
             for run_id, t in got.items() if run_id.startswith("conflict")}
    assert types == {"conflict-f": {"float_series"}, "conflict-s": {"string_series"}}


def test_small_runs_cost_a_fraction_of_a_request_each(fake_neptune3: FakeNeptune3, tmp_path):
    for i in range(32):
        run = fake_neptune3.data.run(f"r{i}", configs={"lr": 0.1, "n": i})
        run.metric("loss", steps=np.arange(100.0), values=np.ones(100))
        run.string_series("log", steps=[0.0, 1.0], values=["a", "b"])
    fake_neptune3.reset_log()
    _, summary = export(make_source(), tmp_path)
    assert summary.count("export")["ok"] == 32
    # per group of 16: definitions, values, float series, series, and the check that every run still exists
    assert reads(fake_neptune3) == 2 * 5


def test_a_failing_group_request_falls_back_to_each_run(small_pages: FakeNeptune3, tmp_path):
    fake = small_pages
    populate(fake)
    expected = tables(export(make_source(group_runs=1), tmp_path / "alone")[0])
    # every values request that names two or more runs fails for good: the group's step gives up after the
    # retry budget, grouping is switched off, and every run reads its values itself
    fake.faults.add(r"attributes/query$", "5xx", status=500, times=None,
                    body_regex=r'"experimentIdsFilter":\s*\["[^"]*",\s*"')
    source = make_source(retry_budget=1.0)
    storage, summary = export(source, tmp_path / "grouped")
    assert summary.count("export")["ok"] == 13, [o.reason for o in summary.outcomes]
    assert source._groups is not None and source._groups.disabled
    got = tables(storage)
    assert got.keys() == expected.keys()
    assert all(tables_equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("when", ["attribute_values_by_run", "float_series_page"])
def test_a_run_deleted_while_its_group_is_read_fails_and_is_not_complete(fake_neptune3: FakeNeptune3, tmp_path,
                                                                        when: str):
    for name in ("first", "doomed", "third"):
        configs = {"a": 1, f"only/{name}": 2}  # doomed's own name: after its deletion no run answers it
        fake_neptune3.data.run(name, configs=configs).metric("m", steps=[0.0, 1.0], values=[1.0, 2.0])
    source = make_source()
    client = source.client
    original = getattr(client, when)

    def deleting(*args: Any) -> Any:
        # the group read the union of definitions (values) or the values too (float series) before this
        forget_run(fake_neptune3, "doomed")
        setattr(client, when, original)
        return original(*args)

    setattr(client, when, deleting)
    storage, summary = export(source, tmp_path)
    outcomes = {o.run_id: o for o in summary.outcomes}
    assert outcomes["first"].status == outcomes["third"].status == "ok"
    assert outcomes["doomed"].status == "failed" and "no longer exists" in outcomes["doomed"].reason
    assert not storage.get_run(PROJECT, "doomed").complete
    assert tables(storage)["first"].num_rows > 2  # parameters, sys/*, both points of m


def test_held_groups_are_bounded_and_dropped_runs_read_alone(fake_neptune3: FakeNeptune3):
    for i in range(4 * (HELD_GROUPS + 2)):
        fake_neptune3.data.run(f"r{i}", configs={"i": i})
    source = make_source(group_runs=4)
    runs = list(source.list_runs(Selection()))
    reader = source._groups
    assert reader is not None
    for i in range(0, len(runs), 4):  # prepared, never exported: a cancel, or storage failing at begin_run
        reader.add(runs[i:i + 4], Selection())
    assert len(reader._groups) <= HELD_GROUPS
    ctx = RunContext(RunReport(), threading.Event())
    assert reader.take(runs[0], ctx) is None  # its group was dropped: the run reads everything itself
    part = reader.take(runs[-1], ctx)
    assert part is not None and part.values["i"].int_properties.value == len(runs) - 1
    source.close()
    assert not reader._groups and not reader._by_run


def test_cancel_while_waiting_for_a_group(fake_neptune3: FakeNeptune3):
    for i in range(2):
        fake_neptune3.data.run(f"r{i}", configs={"i": i})
    fake_neptune3.faults.add(r"attributes/definitions", "slow", delay=2.0, times=1)
    source = make_source()
    runs = list(source.list_runs(Selection()))
    run: SourceRun = runs[0]
    source.prepare(runs, Selection())
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    from migrate_core.errors import Cancelled

    with pytest.raises(Cancelled):
        source._groups.take(run, RunContext(RunReport(), cancel))  # type: ignore[union-attr]
    source.close()


def test_wide_runs_are_read_alone(fake_neptune3: FakeNeptune3, tmp_path, monkeypatch):
    for i in range(3):
        fake_neptune3.data.run(f"w{i}", configs={f"p/{k}": k for k in range(30)}).metric(
            "m", steps=[0.0, 1.0], values=[1.0, 2.0])
    expected = tables(export(make_source(group_runs=1), tmp_path / "alone")[0])
    monkeypatch.setattr(grouped, "GROUP_VALUES", 50)  # 3 runs x ~50 names: over the group's budget
    fake_neptune3.reset_log()
    storage, summary = export(make_source(), tmp_path / "grouped")
    assert summary.count("export")["ok"] == 3
    got = tables(storage)
    assert all(tables_equal(got[k], expected[k]) for k in expected)
    # the group asked for the union of definitions only; every run then read alone (definitions and values)
    assert len(fake_neptune3.requests_to(r"attributes/definitions")) == 1 + 3 + 3  # + each run's final check
    assert len(fake_neptune3.requests_to(r"attributes/query")) == 3


def test_exports_use_two_workers_unless_the_user_chooses(tmp_path, monkeypatch):
    from migrate_core import cli

    monkeypatch.chdir(tmp_path)
    default = cli.Session(cli._options(source="neptune3"))
    assert cli._export_workers(default, make_source()) == 2
    assert cli._export_workers(default, make_source(group_runs=1)) is None  # runs read alone wait on requests
    chosen = cli.Session(cli._options(source="neptune3", workers=4))
    assert cli._export_workers(chosen, make_source()) is None


def test_a_group_of_one_is_read_alone(fake_neptune3: FakeNeptune3):
    fake_neptune3.data.run("only", configs={"i": 0})
    source = make_source()
    runs = list(source.list_runs(Selection()))
    source.prepare(runs, Selection())
    assert source._groups is not None and not source._groups._by_run
    source.close()


def test_unselected_attributes_are_never_asked_for_in_a_group(small_pages: FakeNeptune3, tmp_path):
    import re

    fake = small_pages
    populate(fake)
    for classes, pattern in ((["metrics"], None), (None, r"^(train|m)/")):
        overrides = {"classes": classes} if classes else {}
        selection = Selection(attributes=re.compile(pattern)) if pattern else Selection()
        fake.reset_log()
        storage = MemoryStorage(tmp_path / str(classes))
        summary = Orchestrator(storage, source=make_source(**overrides), selection=selection).export()
        assert summary.count("export")["ok"] == 13
        asked = {name for r in fake.requests_to(r"attributes/query$") for name in r.body["attributeNamesFilter"]}
        assert asked and not any(name.startswith(("params/", "logs/", "hist/")) for name in asked - {"sys/id"})
        alone = MemoryStorage(tmp_path / f"alone-{classes}")
        Orchestrator(alone, source=make_source(group_runs=1, **overrides), selection=selection).export()
        got, expected = tables(storage), tables(alone)
        assert got.keys() == expected.keys() and all(tables_equal(got[k], expected[k]) for k in expected)


@pytest.mark.slow
def test_export_in_processes_writes_what_one_process_writes(migrate, small_pages: FakeNeptune3, tmp_path):
    from migrate_local_fs.storage import LocalFsStorage

    from tests.plugins.neptune3.conftest import FAST_SET

    populate(small_pages)
    stores = {}
    for name, extra in (("one", []), ("two", ["--processes", "2"])):
        root = tmp_path / name
        result = migrate("export", "--source", "neptune3", "-p", PROJECT, *FAST_SET, *extra, "--data-path",
                         str(root / "data"), "--files-path", str(root / "files"), "--json")
        assert result.code == 0, result.err[-2000:]
        assert result.json()["stages"]["export"]["ok"] == 13
        stores[name] = tables(LocalFsStorage(root / "data", root / "files"))
    assert stores["one"].keys() == stores["two"].keys()
    for run_id, table in stores["one"].items():  # file paths are per storage: the same relative names
        assert tables_equal(table, stores["two"][run_id]), run_id
