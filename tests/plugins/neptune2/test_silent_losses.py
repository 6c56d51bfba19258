"""A server answer that cannot be carried as it was is counted or fails the run, never passed on quietly:
an unparsable datetime parameter."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from migrate_core.api import Selection
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryStorage

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.plugins.neptune2.conftest import make_source

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
