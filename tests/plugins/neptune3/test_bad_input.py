"""Bad input and hostile conditions: tokens, projects, deleted runs, server errors, huge names, wide runs."""

from __future__ import annotations

import threading
import time
from importlib.metadata import version
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from migrate_core.api import RunContext, RunReport, Selection
from migrate_core.format import plain
from migrate_core.testing import MemoryStorage, export_into
from migrate_neptune3.series import PREFETCH_PAGES

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.fakes.neptune3.server import FakeNeptune3
from tests.plugins.neptune3.conftest import FAST_SET, PROJECT, T0, forget_run, make_source

pytestmark = pytest.mark.timeout(90)


def export(migrate, *args: str):
    return migrate("export", "--source", "neptune3", *FAST_SET, *args)


def one_line_error(result, text: str) -> None:
    assert result.code == 2, result.out + result.err
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], result.err


def read_run(storage: MemoryStorage, run_id: str) -> pa.Table:
    run = next(r for r in storage.list_runs() if r.run_id == run_id)
    return plain(pa.Table.from_batches(list(storage.read(run))))


# ------------------------------------------------------------------------------------------- tokens


def test_missing_token(migrate, fake_neptune3, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    one_line_error(export(migrate, "-p", PROJECT), "no Neptune API token: set $NEPTUNE_API_TOKEN")


def test_garbage_token_is_not_echoed(migrate, fake_neptune3, monkeypatch):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "s3cr3t-not-a-token")
    result = export(migrate, "-p", PROJECT)
    one_line_error(result, "$NEPTUNE_API_TOKEN does not hold a Neptune API token")
    assert "s3cr3t" not in result.out + result.err


def test_rejected_token_in_a_configured_variable(migrate, fake_neptune3: FakeNeptune3, monkeypatch):
    token = fake_neptune3.make_api_token(valid=False)
    monkeypatch.setenv("MY_TOKEN", token)
    result = export(migrate, "-p", PROJECT, "--set", "source.neptune3.api_token_env=MY_TOKEN")
    one_line_error(result, "Neptune rejected the API token in $MY_TOKEN")
    assert token not in result.out + result.err


def test_token_of_a_neptune_2_server_says_so(migrate, fake_neptune3, monkeypatch):
    with FakeNeptune2Server() as old:
        old.add_project("ws/proj")
        old.add_run("ws/proj")
        monkeypatch.setenv("NEPTUNE_API_TOKEN", old.make_api_token())
        result = export(migrate, "-p", "ws/proj")
    one_line_error(result, "if it is a Neptune 2.x token; use --source neptune2")


# ------------------------------------------------------------------------------------------- projects


def test_unknown_project(migrate, fake_neptune3):
    one_line_error(export(migrate, "-p", "fake-workspace/nope"),
                   "Neptune project 'fake-workspace/nope' not found or not visible")


def test_malformed_project_name(migrate, fake_neptune3):
    one_line_error(export(migrate, "-p", "no-slash"), "project 'no-slash' is not of the form workspace/project")


def test_no_project_selected(migrate, fake_neptune3):
    one_line_error(export(migrate), "no Neptune project selected")


def test_project_with_no_runs_exports_nothing(migrate, fake_neptune3: FakeNeptune3):
    fake_neptune3.data.project("fake-workspace/empty")
    result = export(migrate, "-p", "fake-workspace/empty", "--json")
    assert result.code == 0, result.err
    assert result.json()["runs"] == []


def test_access_denied_project(migrate, fake_neptune3: FakeNeptune3):
    fake_neptune3.data.run("r1")
    fake_neptune3.faults.add(r"entries/search", "access_denied", times=None)
    one_line_error(export(migrate, "-p", PROJECT), f"Neptune project '{PROJECT}' is not accessible")


# ------------------------------------------------------------------------------------------- runs


def test_run_deleted_during_export_fails_and_is_not_complete(fake_neptune3: FakeNeptune3, tmp_path):
    from migrate_neptune3.errors import RunGone

    run = fake_neptune3.data.run("doomed", configs={"a": 1})
    for i in range(3):
        run.metric(f"m/{i}", steps=[0, 1], values=[1.0, 2.0])
    source = make_source(series_per_request=1, attribute_workers=1)
    client = source.client
    original = client.float_series_page
    calls = []

    def deleting(params: dict[str, Any]) -> Any:
        calls.append(params)
        if len(calls) == 2:
            forget_run(fake_neptune3, "doomed")  # the server now answers empty series for it
        return original(params)

    client.float_series_page = deleting  # type: ignore[method-assign]
    storage = MemoryStorage(tmp_path)
    with pytest.raises(RunGone, match="run doomed was deleted while it was being exported"):
        export_into(storage, source, Selection())
    assert all(not r.complete for r in storage.list_runs())


def test_runs_without_custom_id_archived_and_selection(fake_neptune3: FakeNeptune3, declared):
    runs = {r.run_id: r for r in make_source().list_runs(Selection())}
    assert sorted(runs) == sorted(["run-a", declared["anon_id"], "run-fork"])  # archived excluded
    assert runs[declared["anon_id"]].info["run_id_from"] == "sys/id"
    assert runs["run-a"].info["run_id_from"] == "sys/custom_run_id"
    assert runs["run-fork"].parent_run_id == "run-a" and runs["run-fork"].info["fork_step"] == 2.0
    only = [r.run_id for r in make_source(archived="only").list_runs(Selection())]
    assert only == ["run-archived"]
    assert len(list(make_source(archived="include").list_runs(Selection()))) == 4
    import re

    by_sys_id = [r.run_id for r in make_source().list_runs(Selection(runs=re.compile(f"^{declared['anon_id']}$")))]
    assert by_sys_id == [declared["anon_id"]]


def test_query_flag_is_evaluated_by_the_server(migrate, fake_neptune3: FakeNeptune3, declared):
    result = export(migrate, "-p", PROJECT, "--query", "`params/lr`:float > 0.05", "--classes", "parameters", "--json")
    assert result.code == 0, result.err
    assert [r["run_id"] for r in result.json()["runs"]] == ["run-a"]  # lr 0.1; the anonymous run has 0.01
    query = fake_neptune3.requests_to(r"entries/search")[-1].body["query"]["query"]
    assert "`params/lr`:float > 0.05" in query and "sys/archived" in query


def test_modification_window_is_sent_to_the_server(fake_neptune3: FakeNeptune3):
    from datetime import UTC, datetime

    fake_neptune3.data.run("old", creation_time=datetime(2020, 1, 1, tzinfo=UTC))
    fake_neptune3.data.run("new", creation_time=datetime(2024, 1, 1, tzinfo=UTC))
    fake_neptune3.reset_log()
    selection = Selection(modified_since=datetime(2023, 1, 1, tzinfo=UTC), modified_until=datetime(2025, 1, 1, tzinfo=UTC))
    assert [r.run_id for r in make_source().list_runs(selection)] == ["new"]
    query = fake_neptune3.requests_to(r"entries/search")[-1].body["query"]["query"]
    assert "sys/modification_time" in query


def test_attribute_regex_and_classes(fake_neptune3, declared, tmp_path):
    storage = MemoryStorage(tmp_path / "a")
    export_into(storage, make_source(), Selection(runs=__import__("re").compile("^run-a$"),
                                                  attributes=__import__("re").compile("^(train|params)/")))
    paths = set(read_run(storage, "run-a")["attribute_path"].to_pylist())
    assert paths == {"train/loss", "params/lr", "params/epochs", "params/big", "params/amp", "params/optimizer",
                     "params/classes"}
    storage = MemoryStorage(tmp_path / "b")
    export_into(storage, make_source(classes=["metrics"]), Selection(runs=__import__("re").compile("^run-a$")))
    assert set(read_run(storage, "run-a")["attribute_type"].to_pylist()) == {"float_series"}


# ------------------------------------------------------------------------------------------- server errors


def test_transient_5xx_and_429_are_retried_and_counted(migrate, fake_neptune3: FakeNeptune3, declared, tmp_path):
    fake_neptune3.faults.add(r"/series/float$", "5xx", times=2)
    fake_neptune3.faults.add(r"/attributes/series$", "429", times=1, retry_after=0.1)
    result = export(migrate, "-p", PROJECT, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["stages"]["export"]["ok"] == 3 and summary["losses"] == {}
    notes = [n for r in summary["runs"] for n in r.get("notes", [])]
    assert any("neptune-query retried" in n for n in notes), summary["runs"]


def test_persistent_server_errors_fail_the_run_not_mark_it_complete(migrate, fake_neptune3: FakeNeptune3, declared):
    fake_neptune3.faults.add(r"/attributes/series$", "5xx", times=None, status=500)
    result = export(migrate, "-p", PROJECT, "-r", "^run-a$", "--set", "source.neptune3.retry_budget=1", "--json")
    assert result.code == 1, result.err
    run = result.json()["runs"][0]
    assert run["status"] == "failed"
    assert "could not be read" in run["reason"] and "retry budget ran out" in run["reason"]
    again = export(migrate, "-p", PROJECT, "-r", "^run-a$", "--set", "source.neptune3.retry_budget=1", "--json")
    assert again.json()["runs"][0]["status"] == "failed"  # never skipped as complete


def test_lossy_option_counts_the_failed_attributes(migrate, fake_neptune3: FakeNeptune3, declared):
    fake_neptune3.faults.add(r"/attributes/series$", "5xx", times=None, status=500)
    result = export(migrate, "-p", PROJECT, "-r", "^run-a$", "--set", "source.neptune3.retry_budget=1",
                    "--set", "source.neptune3.skip_failed_attributes=true", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["runs"][0]["status"] == "ok"
    assert summary["losses"] == {"attributes that failed to fetch": 3}  # string, histogram and file series


def test_expired_token_mid_export_is_a_clear_failure(migrate, fake_neptune3: FakeNeptune3, declared):
    fake_neptune3.faults.add(r"/series/float$", "expired_token", times=None)
    result = export(migrate, "-p", PROJECT, "-r", "^run-a$", "--json")
    assert result.code == 1
    assert "expired or was revoked" in result.json()["runs"][0]["reason"]


def test_file_gone_from_storage_is_counted(migrate, fake_neptune3: FakeNeptune3, declared):
    fake_neptune3.faults.add(r"^/_fake_storage/.*ckpt", "http_error", status=404, times=None, method="GET")
    result = export(migrate, "-p", PROJECT, "-r", "^run-a$", "--json")
    assert result.code == 0, result.err
    assert result.json()["losses"] == {"files missing from the server's storage (HTTP 404)": 1}


# ------------------------------------------------------------------------------------------- size


def test_huge_attribute_names(fake_neptune3: FakeNeptune3, tmp_path):
    names = [f"params/{'ü' * 300}{'x' * (400 + i)}" for i in range(120)]  # ~1 kB of UTF-8 each
    run = fake_neptune3.data.run("wide-names", configs={n: i for i, n in enumerate(names)})
    metric = "metrics/" + "m" * 1000
    run.metric(metric, steps=[0, 1], values=[1.0, 2.0])
    storage = MemoryStorage(tmp_path)
    export_into(storage, make_source(), Selection())
    table = read_run(storage, "wide-names")
    params = {r["attribute_path"]: r["int_value"] for r in table.to_pylist() if r["attribute_path"] in names}
    assert params == {n: i for i, n in enumerate(names)}
    assert table.filter(pa.compute.equal(table["attribute_path"], metric))["float_value"].to_pylist() == [1.0, 2.0]
    # requests stay small: names are split over several attribute-values calls
    assert fake_neptune3.count(r"/attributes/query$") >= 2


def test_ten_thousand_attributes_in_one_run(fake_neptune3: FakeNeptune3, tmp_path):
    run = fake_neptune3.data.run("wide", configs={f"cfg/p{i:05d}": float(i) for i in range(5000)})
    for i in range(5000):
        run.metric(f"m/s{i:05d}", steps=[0.0, 1.5], values=[i, -i], timestamps=[T0, T0 + 1])
    fake_neptune3.reset_log()
    storage = MemoryStorage(tmp_path)
    reports = export_into(storage, make_source(), Selection())
    assert all(not r.losses for r in reports)
    table = read_run(storage, "wide")
    floats = table.filter(pa.compute.equal(table["attribute_type"], "float_series"))
    assert floats.num_rows == 10_000 and len(set(floats["attribute_path"].to_pylist())) == 5000
    assert np.array_equal(np.sort(floats["float_value"].to_numpy()),
                          np.sort(np.concatenate([np.arange(5000.0), -np.arange(5000.0)])))
    cfg = table.filter(pa.compute.starts_with(table["attribute_path"], "cfg/"))
    assert cfg.num_rows == 5000
    assert fake_neptune3.count(r"/series/float$") == 50  # 100 series per request


def test_cancel_between_pages(fake_neptune3: FakeNeptune3, tmp_path):
    fake_neptune3.data.run("long").metric("m", steps=np.arange(50_000, dtype=float), values=np.zeros(50_000))
    source = make_source(page_points=1000)
    run = next(iter(source.list_runs(Selection())))
    cancel = threading.Event()
    ctx = RunContext(RunReport(), cancel, on_rows=lambda n: cancel.set())
    storage = MemoryStorage(tmp_path)
    writer = storage.begin_run(run.project_id, run.run_id, {"plugin": "neptune3"})
    from migrate_core.errors import Cancelled

    with pytest.raises(Cancelled):
        source.export_run(run, Selection(), writer, ctx)
    writer.abort()
    # the first page, the answers fetched ahead, and at most one request in flight when the cancel came
    assert fake_neptune3.count(r"/series/float$") <= 1 + PREFETCH_PAGES + 1


def test_server_failing_after_the_first_pages_fails_the_run_and_stops_the_fetcher(fake_neptune3: FakeNeptune3,
                                                                                  tmp_path):
    fake_neptune3.data.run("long").metric("m", steps=np.arange(50_000, dtype=float), values=np.zeros(50_000))
    source = make_source(page_points=1000)
    run = next(iter(source.list_runs(Selection())))
    broken = threading.Event()

    def first_rows(_n: int) -> None:  # the fetcher is running ahead by now: break the server under it
        if not broken.is_set():
            broken.set()
            fake_neptune3.faults.add(r"/series/float$", "5xx", times=None, status=500)

    ctx = RunContext(RunReport(), threading.Event(), on_rows=first_rows)
    storage = MemoryStorage(tmp_path)
    writer = storage.begin_run(run.project_id, run.run_id, {"plugin": "neptune3"})
    from migrate_neptune3.errors import AttributeFetchError

    with pytest.raises(AttributeFetchError, match="'m' could not be read"):
        source.export_run(run, Selection(), writer, ctx)
    writer.abort()
    deadline = time.monotonic() + 10
    while any(t.name == "neptune3-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "neptune3-prefetch" for t in threading.enumerate())


# ------------------------------------------------------------------------------------------- discovery


@pytest.mark.skipif(tuple(int(p) for p in version("neptune-query").split(".")[:2]) < (1, 10),
                    reason="neptune-query < 1.10 signs in through the 3.x client config, which the 2.x fake lacks")
def test_workspace_discovery_with_include_and_exclude(fake_neptune3, monkeypatch):
    """The project listing is the backend API that Neptune 2.x also serves; the 2.x fake has it."""
    with FakeNeptune2Server() as backend:
        for name in ("ws/proj", "ws/scratch", "ws/proj-old", "other/proj"):
            backend.add_project(name)
        monkeypatch.setenv("NEPTUNE_API_TOKEN", backend.make_api_token())
        source = make_source(projects=[], workspaces=["ws"], include=["proj"], exclude=["-old$"])
        assert source._project_ids(Selection()) == ["ws/proj"]


def test_server_without_project_listing_says_so(migrate, fake_neptune3):
    one_line_error(export(migrate, "--set", 'source.neptune3.workspaces=["fake-workspace"]'),
                   "this Neptune server offers no project listing (workspace 'fake-workspace')")


def test_runs_deleted_while_listing_do_not_hide_others(fake_neptune3: FakeNeptune3):
    for i in range(40):
        fake_neptune3.data.run(f"r{i:02d}", creation_time=T0 + i * 1000)
    source = make_source(runs_page_size=10)
    listed = []
    for run in source.list_runs(Selection()):
        listed.append(run.run_id)
        if run.run_id == "r05":  # page 1 is read; delete two runs it held before page 2 is asked for
            forget_run(fake_neptune3, "r01")
            forget_run(fake_neptune3, "r02")
    assert listed == [f"r{i:02d}" for i in range(40)]  # each exactly once, none skipped
