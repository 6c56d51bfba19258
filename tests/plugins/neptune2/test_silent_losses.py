"""A server answer that cannot be carried as it was is counted or fails the run, never passed on quietly:
an unparsable datetime parameter, and a series shorter than the server said."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from migrate_core.api import Selection
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryStorage

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.plugins.neptune2.conftest import T0, make_source

pytestmark = pytest.mark.timeout(60)

UNPARSABLE = "datetime parameters the server sent in a form that could not be parsed (exported empty; raw text in notes)"


def _export(tmp_path, source):
    storage = MemoryStorage(tmp_path / "state")
    orch = Orchestrator(storage, source=source, cancel=threading.Event())
    outcomes = {o.run_id: o for o in (orch.export_one(run) for run in source.list_runs(Selection()))}
    return storage, outcomes


def _rewrite(srv: FakeNeptune2Server, monkeypatch, op_name: str, change) -> None:
    """Route `op_name` through `change(answer) -> answer` (the JSON the real handler gave)."""
    key = next(k for k, (op, _h, _a) in srv._routes.items() if op == op_name)
    op, original, auth = srv._routes[key]

    def rewritten(req):
        response = original(req)
        response.body = json.dumps(change(json.loads(response.body))).encode()
        return response

    monkeypatch.setitem(srv._routes, key, (op, rewritten, auth))


def test_an_unparsable_datetime_is_counted_and_its_text_kept_in_the_notes(fake_neptune2, tmp_path, monkeypatch):
    fake_neptune2.add_project("ws/proj")
    good = datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC)
    fake_neptune2.add_run("ws/proj", attrs={"params/started": good, "params/ended": good, "params/other": good,
                                            "params/lr": 0.1})
    bad = {"params/ended": "yesterday, around noon", "params/other": "2024-13-45T99:00:00Z"}

    def garble(answer):
        for attribute in answer["attributes"]:
            if attribute["name"] in bad:
                attribute["datetimeProperties"]["value"] = bad[attribute["name"]]
        return answer

    _rewrite(fake_neptune2, monkeypatch, "getExperimentAttributes", garble)
    source = make_source()
    storage, outcomes = _export(tmp_path, source)
    source.close()
    outcome = outcomes["PROJ-1"]
    assert outcome.status == "ok", outcome.reason
    assert outcome.report.losses == {UNPARSABLE: 2}
    assert sorted(outcome.report.notes) == [
        "params/ended: unparsable datetime 'yesterday, around noon'",
        "params/other: unparsable datetime '2024-13-45T99:00:00Z'",
    ]
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    values = {r["attribute_path"]: r["datetime_value"] for r in table.to_pylist() if r["attribute_type"] == "datetime"}
    assert values["params/started"] == good
    assert values["params/ended"] is None and values["params/other"] is None


def _short(answer):
    answer["totalItemCount"] = int(answer["totalItemCount"]) + 3  # claims 3 points it never serves
    return answer


@pytest.mark.parametrize("page_size,prefetch", [(100, 4), (2, 1), (2, 4)])
def test_a_series_shorter_than_the_server_said_fails_the_run(fake_neptune2, tmp_path, monkeypatch, page_size,
                                                            prefetch):
    fake_neptune2.add_project("ws/proj")
    fake_neptune2.add_run("ws/proj", float_series={"train/loss": ([0, 1, 2, 3, 4], [0.5, 0.4, 0.3, 0.2, 0.1],
                                                                  [T0 + i for i in range(5)])})
    _rewrite(fake_neptune2, monkeypatch, "getFloatSeriesValues", _short)
    source = make_source(series_page_size=page_size, series_prefetch=prefetch)
    storage, outcomes = _export(tmp_path, source)
    source.close()
    outcome = outcomes["PROJ-1"]
    assert outcome.status == "failed"
    assert outcome.reason == "train/loss: the server announced 8 points but served 5"
    assert not storage.get_run("ws/proj", "PROJ-1").complete


def test_a_short_series_in_lossy_mode_is_counted(fake_neptune2, tmp_path, monkeypatch):
    fake_neptune2.add_project("ws/proj")
    fake_neptune2.add_run("ws/proj", attrs={"params/lr": 0.1},
                          float_series={"train/loss": ([0, 1, 2], [0.5, 0.4, 0.3], [T0, T0 + 1, T0 + 2])})
    _rewrite(fake_neptune2, monkeypatch, "getFloatSeriesValues", _short)
    source = make_source(skip_failed_attributes=True)
    storage, outcomes = _export(tmp_path, source)
    source.close()
    outcome = outcomes["PROJ-1"]
    assert outcome.status == "ok", outcome.reason
    assert outcome.report.losses == {"attributes that failed to fetch": 1}
    assert outcome.report.notes == ["train/loss: train/loss: the server announced 6 points but served 3"]
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    assert pa.compute.sum(pa.compute.equal(table["attribute_path"], "params/lr")).as_py() == 1
