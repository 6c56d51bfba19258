"""Tests of the fake Pluto server: the unmodified pluto-ml client end to end, plus raw-HTTP
tests of every validation rule, storage rule, read-back endpoint and fault kind."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.fakes.pluto import FakePluto
from tests.fakes.pluto.fixtures import fake_pluto, pluto_client_env  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000  # a fixed epoch-ms base keeps every assertion deterministic


# ---------------------------------------------------------------------------------------------
# raw-HTTP helper
# ---------------------------------------------------------------------------------------------


class Api:
    """Thin raw-HTTP client (what the pluto client would hide: status codes and bodies)."""

    def __init__(self, srv: FakePluto, key: str | None = None) -> None:
        self.srv = srv
        self.key = srv.api_key if key is None else key
        self.http = httpx.Client(base_url=srv.url, timeout=10, trust_env=False)

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def post(self, path: str, body: Any = None, **headers: str) -> httpx.Response:
        h = {**self.auth(), "Content-Type": "application/json", **headers}
        return self.http.post(path, content=json.dumps(body).encode() if body is not None else b"", headers=h)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params, headers=self.auth())

    def create(self, project: str = "proj", name: str = "run", **fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"runName": name, "projectName": project, "loggerSettings": "{}"}
        body.update(fields)
        r = self.post("/api/runs/create", body)
        assert r.status_code == 200, r.text
        return r.json()

    def ingest(self, kind: str, run_id: int, body: bytes | str, project: str = "proj") -> httpx.Response:
        if isinstance(body, str):
            body = body.encode()
        h = {
            **self.auth(),
            "Content-Type": "application/x-ndjson",
            "X-Run-Id": str(run_id),
            "X-Project-Name": project,
        }
        return self.http.post(f"/ingest/{kind}", content=body, headers=h)

    def presign(
        self, run_id: int, files: list[dict[str, Any]], project: str = "proj", **headers: str
    ) -> httpx.Response:
        h = {
            **self.auth(),
            "Content-Type": "application/json",
            "X-Run-Id": str(run_id),
            "X-Project-Name": project,
        }
        h.update(headers)
        return self.http.post("/files", content=json.dumps({"files": files}).encode(), headers=h)


def ndjson(*objs: Any) -> str:
    return "".join(json.dumps(o) + "\n" for o in objs)


def mline(step: Any, data: dict[str, Any], t: Any = T0) -> dict[str, Any]:
    return {"time": t, "step": step, "data": data}


@pytest.fixture
def api(fake_pluto: FakePluto) -> Any:  # noqa: F811
    client = Api(fake_pluto)
    yield client
    client.http.close()
    assert fake_pluto.errors == []


# ---------------------------------------------------------------------------------------------
# the real client end to end
# ---------------------------------------------------------------------------------------------


def _wait(pred: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_pluto_client_end_to_end(pluto_client_env: FakePluto, tmp_path: Any) -> None:  # noqa: F811
    import pluto
    import pluto.query

    srv = pluto_client_env
    created, updated = T0 - 3_600_000, T0 + 60_000
    op = pluto.init(
        project="proj",
        name="run-a",
        run_id="neptune::RUN-1",
        config={"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}},
        tags=["t1", "group:g1"],
        settings=srv.client_settings(compat={"createdAt": created, "updatedAt": updated}),
    )
    try:
        op.log({"e2e/loss": 1.0, "e2e/acc": 0.5}, step=0, timestamp=T0 / 1000)
        op.log({"e2e/loss": 0.9}, step=1, timestamp=(T0 + 1000) / 1000)
        op.log({"e2e/loss": 0.8}, step=1, timestamp=(T0 + 2000) / 1000)  # same step, later time wins
        op.log({"e2e/loss": float("nan"), "e2e/inf": float("inf")}, step=2, timestamp=(T0 + 3000) / 1000)
        op.log({"e2e/phase": "warmup"}, step=2, timestamp=(T0 + 3000) / 1000)
        op.log(
            {"e2e/hist": pluto.Histogram([1, 2, 2, 3, 3, 3], bins=3)}, step=3, timestamp=(T0 + 4000) / 1000
        )
        op.log({"e2e/model": pluto.Artifact(b"weights-bytes", caption="model")}, step=3)
        op._log_metrics_batch(
            [({"e2e/batch": float(i)}, 10 + i, (T0 + 10_000 + i) / 1000) for i in range(50)]
        )
        op.update_config({"opt": {"name": "sgd"}, "epochs": 3})
        op.add_tags("t2")
        op.remove_tags("t1")
    finally:
        op.finish()
    assert op._status_update_error is None

    run = srv.run_by_external("proj", "neptune::RUN-1")
    assert run.id == op.id and run.name == "run-a" and run.display_id == op.settings._display_id
    assert run.status == "COMPLETED"
    assert run.created_at == created and run.status_updated == updated
    assert run.config == {"lr": 0.1, "opt": {"name": "sgd", "betas": [0.9, 0.99]}, "epochs": 3}
    assert run.tags == ["group:g1", "t2"]
    assert run.metric("e2e/loss")[0] == (1.0, T0)
    assert run.metric("e2e/loss")[1] == (0.8, T0 + 2000)
    assert math.isnan(run.metric("e2e/loss")[2][0])
    assert run.metric("e2e/inf") == {2: (math.inf, T0 + 3000)}
    assert run.metrics["e2e/loss"].raw_count == 4
    assert run.metric("e2e/batch") == {10 + i: (float(i), T0 + 10_000 + i) for i in range(50)}
    assert [(r.step, r.data) for r in run.string_series["e2e/phase"]] == [(2, "warmup")]
    (hist,) = run.histograms["e2e/hist"]
    assert hist.step == 3 and hist.value["freq"] == [1, 2, 3] and hist.value["type"] == "Histogram"
    (f,) = run.files
    assert f.log_name == "e2e/model" and f.caption == "model" and f.file_name.startswith("model.")
    assert f.content == b"weights-bytes" and f.step == 3
    assert run.log_names["e2e/loss"] == "METRIC" and run.log_names["e2e/hist"] == "HISTOGRAM"
    assert run.log_names["e2e/phase"] == "DATA" and run.log_names["e2e/model"] == "ARTIFACT"
    assert srv.count("/api/slug") == 1 and srv.count("/api/runs/create") == 1
    assert srv.count("/api/runs/status/update") == 1
    assert srv.errors == []
    # the login wrote its marker into the temp HOME, never into the real one
    assert (tmp_path / "home" / ".pluto" / ".login_ok").exists()

    # read-back through the client's own query module
    with pluto.query.Client() as q:
        details = q.get_run("proj", run.id)
        assert details["externalId"] == "neptune::RUN-1" and details["status"] == "COMPLETED"
        assert {"logName": "e2e/loss", "logType": "METRIC", "logGroup": "e2e"} in details["logNames"]
        assert q.get_run("proj", run.display_id)["id"] == run.id
        assert "e2e/loss" in q.get_metric_names("proj", run_ids=[run.id])
        rows = q.get_metrics("proj", run.id, metric_names=["e2e/batch"], step_min=20, step_max=29)
        assert sorted(rows["step"].tolist()) == list(range(20, 30))
        stats = q.get_statistics("proj", run.id, metric_names=["e2e/batch"])
        assert stats["metrics"][0]["count"] == 50 and stats["metrics"][0]["max"] == 49.0
        dest = q.download_file("proj", run.id, "e2e/model", destination=tmp_path)
        assert dest.read_bytes() == b"weights-bytes"
        assert [r["id"] for r in q.list_runs("proj")] == [run.id]


def test_pluto_client_externalid_collision_and_resume(pluto_client_env: FakePluto) -> None:  # noqa: F811
    import pluto
    from pluto.op import RunExistsError

    srv = pluto_client_env
    settings = srv.client_settings()
    op = pluto.init(project="proj", name="first", run_id="ext-A", config={"a": 1}, settings=settings)
    op.log({"res/x": 1.0}, step=1)
    op.finish()
    assert srv.run_by_external("proj", "ext-A").status == "COMPLETED"

    with pytest.raises(RunExistsError):
        pluto.init(project="proj", name="second", run_id="ext-A", settings=srv.client_settings())
    run = srv.run_by_external("proj", "ext-A")
    assert run.status == "RUNNING"  # the server already switched it back, like production

    op2 = pluto.init(
        project="proj", name="ignored", run_id="ext-A", resume=True, settings=srv.client_settings()
    )
    assert op2.resumed and op2.id == run.id
    op2.log({"res/x": 2.0}, step=2)
    op2.finish()
    assert run.name == "first" and run.status == "COMPLETED" and len(srv.runs) == 1
    assert run.metric("res/x") == {1: (1.0, run.metric("res/x")[1][1]), 2: (2.0, run.metric("res/x")[2][1])}


def test_pluto_client_retries_through_injected_5xx(pluto_client_env: FakePluto) -> None:  # noqa: F811
    import pluto

    srv = pluto_client_env
    fault = srv.faults.add(r"^/ingest/metrics$", "5xx", times=1, status=502)
    op = pluto.init(project="proj", name="flaky", settings=srv.client_settings())
    op.log({"retry/m": 1.0}, step=5, timestamp=T0 / 1000)
    op.finish()
    assert fault.hits == 1
    assert srv.count("POST /ingest/metrics") >= 2
    assert srv.run(op.id).metric("retry/m") == {5: (1.0, T0)}


def test_pluto_client_float_step_poisons_its_batch(pluto_client_env: FakePluto) -> None:  # noqa: F811
    """The client sends steps as given; the fake's u64 rule rejects 3.5 like production does:
    lines before it are kept, the rest of that batch is lost (the client still reports success)."""
    import pluto

    srv = pluto_client_env
    op = pluto.init(project="proj", name="steps", settings=srv.client_settings(sync_process_retry_max=1))
    groups = [({"fs/a": 1.0}, 1, T0 / 1000), ({"fs/a": 2.0}, 2.0, T0 / 1000), ({"fs/a": 3.0}, 3.5, T0 / 1000)]
    groups.append(({"fs/a": 4.0}, 4, T0 / 1000))
    op._log_metrics_batch(groups)  # one SQLite transaction -> one upload batch
    op.log({"fs/art": pluto.Artifact(b"xyz", caption="ckpt/model v1.pt")}, step=7)
    op.finish()
    run = srv.run(op.id)
    assert run.metric("fs/a") == {1: (1.0, T0), 2: (2.0, T0)}  # 2.0 arrives as 2 (SQLite INTEGER affinity)
    assert {r.status for r in srv.requests_to("/ingest/metrics")} == {422}
    (f,) = run.files
    # the caption is kept verbatim, but the fileName is sanitised (and, for in-memory bytes,
    # the client derives a junk extension / fileType from its staging file name)
    assert f.caption == "ckpt/model v1.pt" and f.file_name.startswith("ckpt-model-v1.pt.")
    assert f.content == b"xyz"


def test_pluto_query_upload_file_needs_a_step(pluto_client_env: FakePluto, tmp_path: Any) -> None:  # noqa: F811
    """``pluto.query.upload_file`` defaults to ``step=None``, which the server's u64 rule rejects."""
    import pluto.query

    srv = pluto_client_env
    api = Api(srv)
    rid = api.create(name="attach")["runId"]
    src = tmp_path / "config.yaml"
    src.write_text("lr: 0.1\n")
    with pluto.query.Client() as q:
        with pytest.raises(pluto.query.QueryError) as exc:
            q.upload_file("proj", rid, "hydra/config.yaml", src)
        assert exc.value.status_code == 422
        q.upload_file("proj", rid, "hydra/config.yaml", src, step=0, caption="cfg")
    (f,) = srv.run(rid).files
    assert (f.file_name, f.log_name, f.caption, f.content) == (
        "config.yaml",
        "hydra/config.yaml",
        "cfg",
        b"lr: 0.1\n",
    )
    api.http.close()


# ---------------------------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------------------------


def test_auth_rules(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    assert api.post("/api/slug").json() == {"organization": {"slug": "fake-org"}}
    bad = Api(fake_pluto, key="mlpi_wrong")
    r = bad.post("/api/runs/create", {"runName": "r", "projectName": "p"})
    assert r.status_code == 401 and r.json() == {"error": "Unauthorized", "message": "Invalid API key"}
    assert bad.ingest("metrics", 1, ndjson(mline(1, {"a": 1}))).json()["code"] == "INVALID_TOKEN"
    anon = api.http.post("/ingest/metrics", content=b"", headers={"X-Run-Id": "1", "X-Project-Name": "p"})
    assert anon.status_code == 401 and anon.json()["code"] == "MISSING_TOKEN"
    # ingest accepts any known token; the web API also needs the mlps_/mlpi_ prefix
    fake_pluto.add_api_key("plain-token")
    plain = Api(fake_pluto, key="plain-token")
    assert plain.ingest("metrics", 1, ndjson(mline(1, {"a": 1}))).status_code == 200
    assert plain.post("/api/slug").status_code == 401
    assert bad.get("/api/runs/list", projectName="p").status_code == 401
    # storage URLs carry no auth (presigned)
    assert api.http.put("/s3/x/y", content=b"1").status_code == 200


# ---------------------------------------------------------------------------------------------
# runs: create / resume / config / tags / status
# ---------------------------------------------------------------------------------------------


def test_create_and_externalid_resume(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    a = api.create(
        name="a",
        externalId="ext-1",
        config=json.dumps({"x": {"y": 1, "z": [1, 2]}}),
        tags=["t"],
        createdAt=T0,
        updatedAt=T0 + 5,
        systemMetadata=json.dumps({"host": "h"}),
    )
    assert a["resumed"] is False and a["displayId"] == "PRO-1" and a["number"] == 1
    run = fake_pluto.run(a["runId"])
    assert (run.created_at, run.updated_at, run.system_metadata) == (T0, T0 + 5, {"host": "h"})
    api.post("/api/runs/status/update", {"runId": a["runId"], "status": "COMPLETED", "statusUpdated": T0 + 9})
    again = api.create(name="other", externalId="ext-1", config=json.dumps({"x": {"z": [3]}, "w": 1}))
    assert again["resumed"] is True and again["runId"] == a["runId"]
    assert run.status == "RUNNING" and run.name == "a"
    assert run.config == {"x": {"y": 1, "z": [3]}, "w": 1}
    # same externalId in another project is another run; no externalId never collides
    other = api.create(project="proj2", externalId="ext-1")
    assert other["runId"] != a["runId"] and other["resumed"] is False
    assert api.create(name="a")["runId"] != api.create(name="a")["runId"]
    assert len(fake_pluto.projects["proj"].runs) == 3


def test_resume_endpoint(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    a = api.create(externalId="ext-9")
    for body in (
        {"runId": a["runId"]},
        {"displayId": a["displayId"]},
        {"externalId": "ext-9", "projectName": "proj"},
    ):
        r = api.post("/api/runs/resume", body)
        assert r.status_code == 200 and r.json()["resumed"] is True and r.json()["runId"] == a["runId"]
    assert api.post("/api/runs/resume", {"runId": 999}).status_code == 404
    assert api.post("/api/runs/resume", {"displayId": "ZZ-1"}).json() == {"error": "Run not found"}


def test_fork(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    parent = api.create(config=json.dumps({"a": 1, "b": {"c": 2}}), tags=["p"])
    child = api.create(
        forkRunId=parent["runId"], forkStep=10, config=json.dumps({"b": {"d": 3}}), inheritTags=True
    )
    assert child["forkedFromRunId"] == parent["runId"] and child["forkStep"] == 10
    run = fake_pluto.run(child["runId"])
    assert run.config == {"a": 1, "b": {"c": 2, "d": 3}} and run.tags == ["p"]
    assert (
        api.post(
            "/api/runs/create", {"runName": "r", "projectName": "proj", "forkRunId": 99, "forkStep": 1}
        ).status_code
        == 404
    )


def test_tag_limits(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    r = api.post(
        "/api/runs/create", {"runName": "r", "projectName": "proj", "tags": [f"t{i}" for i in range(51)]}
    )
    assert r.status_code == 400
    r = api.post("/api/runs/create", {"runName": "r", "projectName": "proj", "tags": ["group:a", "group:b"]})
    assert r.status_code == 400 and r.json() == {"error": "A run can have at most one group:* tag."}
    rid = api.create(tags=[f"t{i}" for i in range(50)])["runId"]
    assert api.post("/api/runs/tags/update", {"runId": rid, "tags": ["group:a", "x"]}).status_code == 200
    assert fake_pluto.run(rid).tags == ["group:a", "x"]  # replaced, not merged
    assert (
        api.post("/api/runs/tags/update", {"runId": rid, "tags": ["group:a", "group:b"]}).status_code == 400
    )
    assert (
        api.post("/api/runs/tags/update", {"runId": rid, "tags": [str(i) for i in range(51)]}).status_code
        == 400
    )
    assert api.post("/api/runs/tags/update", {"runId": 12345, "tags": []}).status_code == 404
    assert fake_pluto.run(rid).tags == ["group:a", "x"]


def test_config_deep_merge_and_log_names(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    rid = api.create(config=json.dumps({"a": {"b": 1, "c": [1, 2]}, "k": 1}))["runId"]
    r = api.post("/api/runs/config/update", {"runId": rid, "config": json.dumps({"a": {"c": [9], "d": 2}})})
    assert r.status_code == 200 and r.json() == {"success": True}
    assert api.post("/api/runs/config/update", {"runId": rid, "config": None}).status_code == 200
    assert fake_pluto.run(rid).config == {"a": {"b": 1, "c": [9], "d": 2}, "k": 1}
    assert (
        api.post(
            "/api/runs/logName/add", {"runId": rid, "logType": "METRIC", "logName": ["a/b", "c"]}
        ).status_code
        == 200
    )
    assert (
        api.post("/api/runs/logName/add", {"runId": rid, "logType": "GRAPH", "logName": ["g"]}).status_code
        == 400
    )
    assert fake_pluto.run(rid).log_names == {"a/b": "METRIC", "c": "METRIC"}
    assert api.post("/api/runs/config/update", {"runId": 777, "config": "{}"}).status_code == 404


def test_status_precedence(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    rid = api.create()["runId"]
    run = fake_pluto.run(rid)

    def status(s: str, **extra: Any) -> None:
        assert api.post("/api/runs/status/update", {"runId": rid, "status": s, **extra}).status_code == 200

    status("COMPLETED", statusUpdated=T0)
    assert (run.status, run.status_updated) == ("COMPLETED", T0)
    status("FAILED")
    status("TERMINATED")  # lower than FAILED: ignored with 200
    status("COMPLETED")
    assert run.status == "FAILED"
    assert api.post("/api/runs/status/update", {"runId": rid, "status": "BOGUS"}).status_code == 400
    api.post("/api/runs/resume", {"runId": rid})
    assert run.status == "RUNNING"
    status("COMPLETED", statusUpdated=T0 + 1)
    assert run.status == "COMPLETED" and run.status_updated == T0 + 1
    hist = api.get("/api/runs/status/history", runId=rid).json()["history"]
    assert [h["status"] for h in hist] == ["RUNNING", "COMPLETED", "FAILED", "RUNNING", "COMPLETED"]


def test_reaper_marks_stale_runs_failed_and_resume_repairs(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    rid = api.create(createdAt=T0)["runId"]
    assert fake_pluto.reap_stale_runs() == []  # just created: fresh
    api.post("/api/runs/trigger", {"runId": rid})
    later = fake_pluto.run(rid).last_heartbeat_ms + 151_000
    assert fake_pluto.reap_stale_runs(now=later) == [rid]
    run = fake_pluto.run(rid)
    assert run.status == "FAILED"
    api.post("/api/runs/status/update", {"runId": rid, "status": "COMPLETED"})
    assert run.status == "FAILED"  # the finish of a reaped run is ignored...
    api.post("/api/runs/resume", {"runId": rid})
    api.post("/api/runs/status/update", {"runId": rid, "status": "COMPLETED", "statusUpdated": T0 + 5})
    assert (run.status, run.status_updated) == ("COMPLETED", T0 + 5)  # ...resume + finish repairs it


def test_trigger(fake_pluto: FakePluto, api: Api) -> None:  # noqa: F811
    rid = api.create()["runId"]
    assert api.post("/api/runs/trigger", {"runId": rid}).json() == {"status": "RUNNING", "triggers": None}
    fake_pluto.cancel_run(rid)
    assert api.post("/api/runs/trigger", {"runId": rid}).json()["status"] == "CANCELLED"
    assert fake_pluto.run(rid).heartbeats == 2
    assert api.post("/api/runs/trigger", {"runId": 4242}).status_code == 404


# ---------------------------------------------------------------------------------------------
# ingest validation
# ---------------------------------------------------------------------------------------------

BAD_METRIC_LINES = [
    pytest.param(b'{"time": 1, "step": -1, "data": {"m": 1}}', 422, id="negative-step"),
    pytest.param(b'{"time": 1, "step": 1.5, "data": {"m": 1}}', 422, id="fractional-step"),
    pytest.param(b'{"time": 1, "step": 2.0, "data": {"m": 1}}', 422, id="float-step"),
    pytest.param(b'{"time": 1, "step": 18446744073709551616, "data": {"m": 1}}', 422, id="step-above-u64"),
    pytest.param(b'{"time": 1, "step": "3", "data": {"m": 1}}', 422, id="string-step"),
    pytest.param(b'{"time": 1, "step": null, "data": {"m": 1}}', 422, id="null-step"),
    pytest.param(b'{"time": -5, "step": 1, "data": {"m": 1}}', 422, id="negative-time"),
    pytest.param(b'{"time": 1.5, "step": 1, "data": {"m": 1}}', 422, id="fractional-time"),
    pytest.param(b'{"step": 1, "data": {"m": 1}}', 422, id="missing-time"),
    pytest.param(b'{"time": 1, "data": {"m": 1}}', 422, id="missing-step"),
    pytest.param(b'{"time": 1, "step": 1}', 422, id="missing-data"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": 1}, "extra": 0}', 422, id="unknown-field"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": true}}', 422, id="bool-value"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": "abc"}}', 422, id="string-value"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": [1]}}', 422, id="list-value"),
    pytest.param(b'{"time": 1, "step": 1, "data": [1]}', 422, id="data-not-object"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": 1}', 422, id="truncated-json"),
    pytest.param(b"[1, 2]", 422, id="not-an-object"),
    pytest.param(b'{"time": 1, "step": 1, "data": {}}', 400, id="empty-data"),
    pytest.param(b'{"time": 1, "step": 1, "data": {"m": null}}', 400, id="only-null-values"),
    pytest.param(b'{"time": 1, "step": 1, "data": {" ": 1}}', 400, id="blank-name"),
]


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "exact"])
@pytest.mark.parametrize(("bad", "status"), BAD_METRIC_LINES)
def test_metrics_bad_line_stops_request_and_keeps_earlier_lines(bad: bytes, status: int, fast: bool) -> None:
    with FakePluto(fast_ingest=fast) as srv:
        api = Api(srv)
        good1 = json.dumps(mline(1, {"m": 1.0})).encode()
        good2 = json.dumps(mline(2, {"m": 2.0})).encode()
        r = api.ingest("metrics", 7, good1 + b"\n" + bad + b"\n" + good2 + b"\n")
        assert r.status_code == status, r.text
        body = r.json()
        if status == 422:
            assert body["code"] == "STREAM_DECODING_ERROR"
            assert body["message"].startswith("Failed to parse JSON line")
        else:
            assert body["code"] == "INVALID_METRIC_FORMAT"
        assert srv.ingested("proj", 7).metric("m") == {1: (1.0, T0)}
        assert srv.errors == []


def test_metrics_accepted_edge_values(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    body = (
        b'\n{"time": 0, "step": 18446744073709551615, "data": {"m": 1}}\n'
        b"   \n"
        b'{"time": 1, "step": 0, "data": {"nan": NaN, "inf": Infinity, "ninf": -Infinity, "skip": null, "m": 5}}\n'
        b'{"time": 2, "step": 1, "data": {"nan": "NaN", "inf": "Infinity", "ninf": "-Infinity", "big": 12345678901234567890}}'
    )
    r = api.ingest("metrics", 3, body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text == "Stream processed successfully: 9 records"
    d = fake_pluto.ingested("proj", 3)
    assert d.metric("m") == {2**64 - 1: (1.0, 0), 0: (5.0, 1)}
    assert math.isnan(d.metric("nan")[0][0]) and math.isnan(d.metric("nan")[1][0])
    assert d.metric("inf") == {0: (math.inf, 1), 1: (math.inf, 2)}
    assert d.metric("ninf") == {0: (-math.inf, 1), 1: (-math.inf, 2)}
    assert d.metric("big") == {1: (12345678901234567890.0, 2)}
    assert "skip" not in d.metrics
    assert api.ingest("metrics", 3, b"").text == "Stream processed successfully: 0 records"


def test_fast_and_exact_metric_parsers_agree() -> None:
    rng = np.random.default_rng(7)
    lines = []
    for _ in range(3000):
        data: dict[str, Any] = {f"m{j}": float(rng.normal()) for j in range(5) if rng.random() < 0.7}
        if rng.random() < 0.1:
            data["n"] = None
        data["always"] = int(rng.integers(0, 100))
        lines.append(mline(int(rng.integers(0, 500)), data, T0 + int(rng.integers(0, 10_000))))
    body = ndjson(*lines).encode()
    results = []
    for fast in (True, False):
        with FakePluto(fast_ingest=fast) as srv:
            assert Api(srv).ingest("metrics", 1, body).status_code == 200
            d = srv.ingested("proj", 1)
            results.append({n: (s.raw_count, s.points()) for n, s in d.metrics.items()})
    assert results[0] == results[1]


def test_missing_headers_and_unknown_run(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    line = ndjson(mline(1, {"m": 1}))
    r = api.http.post("/ingest/metrics", content=line, headers={**api.auth(), "X-Project-Name": "p"})
    assert r.status_code == 400 and r.json()["code"] == "INVALID_HEADER_FORMAT"
    r = api.http.post("/ingest/logs", content=line, headers={**api.auth(), "X-Run-Id": "1"})
    assert r.status_code == 400
    # a non-numeric run id becomes 0 and the run is never checked, like production
    r = api.http.post(
        "/ingest/metrics", content=line, headers={**api.auth(), "X-Run-Id": "abc", "X-Project-Name": "p"}
    )
    assert r.status_code == 200
    assert fake_pluto.ingested("p", 0).metric("m") == {1: (1.0, T0)}


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ({"time": 1, "data": "x", "step": 1, "dataType": "HISTOGRAM", "logName": "h", "extra": 1}, 422),
        ({"time": 1, "data": "x", "step": -1, "dataType": "HISTOGRAM", "logName": "h"}, 422),
        ({"time": 1, "data": {"not": "a string"}, "step": 1, "dataType": "HISTOGRAM", "logName": "h"}, 422),
        ({"time": 1, "data": "x", "dataType": "HISTOGRAM", "logName": "h"}, 422),
        ({"time": 1, "data": "x", "step": 1, "dataType": " ", "logName": "h"}, 400),
        ({"time": 1, "data": "x", "step": 1, "dataType": "HISTOGRAM", "logName": ""}, 400),
    ],
)
def test_data_line_validation(api: Api, fake_pluto: FakePluto, line: dict[str, Any], status: int) -> None:  # noqa: F811
    good = {"time": 1, "data": "warmup", "step": 1, "dataType": "string-series", "logName": "phase"}
    r = api.ingest("data", 5, ndjson(good, line, good))
    assert r.status_code == status
    assert len(fake_pluto.ingested("proj", 5).data) == 1


@pytest.mark.parametrize(
    ("line", "status"),
    [
        ({"time": 1, "message": "m", "lineNumber": 1, "logType": "INFO", "step": 3}, 422),
        ({"time": 1, "message": "m", "lineNumber": -1, "logType": "INFO"}, 422),
        ({"time": 1, "message": None, "lineNumber": 1, "logType": "INFO"}, 422),
        ({"time": 1, "message": "m", "lineNumber": 1, "logType": ""}, 400),
    ],
)
def test_log_line_validation(api: Api, fake_pluto: FakePluto, line: dict[str, Any], status: int) -> None:  # noqa: F811
    good = {"time": 1, "message": "", "lineNumber": 1, "logType": "INFO"}  # empty message is fine
    r = api.ingest("logs", 5, ndjson(good, line))
    assert r.status_code == status
    assert len(fake_pluto.ingested("proj", 5).logs) == 1


# ---------------------------------------------------------------------------------------------
# storage rules
# ---------------------------------------------------------------------------------------------


def test_metric_dedup_latest_time_wins(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    rid = api.create()["runId"]
    api.ingest("metrics", rid, ndjson(mline(1, {"m": 1.0}, T0 + 10), mline(2, {"m": 2.0}, T0)))
    api.ingest("metrics", rid, ndjson(mline(1, {"m": 9.0}, T0 + 5)))  # older time: loses
    api.ingest("metrics", rid, ndjson(mline(2, {"m": 3.0}, T0 + 1)))  # newer time: wins
    api.ingest("metrics", rid, ndjson(mline(1, {"m": 4.0}, T0 + 10)))  # same time: later write wins
    api.ingest("metrics", rid, ndjson(mline(1, {"m": 4.0}, T0 + 10)))  # identical re-send: harmless
    run = fake_pluto.run(rid)
    assert run.metric("m") == {1: (4.0, T0 + 10), 2: (3.0, T0 + 1)}
    assert run.metrics["m"].raw_count == 6
    raw = api.get("/api/runs/metrics/raw", runId=rid, projectName="proj", logName="m").json()
    assert [(x["step"], x["value"]) for x in raw["rows"]] == [
        (1, 9.0),
        (1, 1.0),
        (1, 4.0),
        (1, 4.0),
        (2, 2.0),
        (2, 3.0),
    ]
    assert raw["truncated"] is False
    dedup = api.get("/api/runs/metrics", runId=rid, projectName="proj", logName="m").json()["metrics"]
    assert [(x["step"], x["value"], x["time"]) for x in dedup] == [
        (1, 4.0, "2023-11-14T22:13:20.010Z"),
        (2, 3.0, "2023-11-14T22:13:20.001Z"),
    ]


def test_data_logs_and_files_are_never_deduplicated(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    rid = api.create()["runId"]
    hist = {"time": T0, "data": '{"freq":[1]}', "step": 1, "dataType": "HISTOGRAM", "logName": "h"}
    log = {"time": T0, "message": "hello", "lineNumber": 1, "logType": "INFO"}
    entry = {"fileName": "a.txt", "logName": "f", "fileSize": 1, "fileType": "txt", "step": 0, "time": T0}
    for _ in range(2):
        assert api.ingest("data", rid, ndjson(hist)).status_code == 200
        assert api.ingest("logs", rid, ndjson(log)).status_code == 200
        assert api.presign(rid, [entry]).status_code == 200
    run = fake_pluto.run(rid)
    assert len(run.histograms["h"]) == 2 and len(run.logs) == 2 and len(run.files) == 2


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------


def test_files_presign_put_get_and_readback(api: Api, fake_pluto: FakePluto, tmp_path: Any) -> None:  # noqa: F811
    rid = api.create()["runId"]
    entries = [
        {
            "fileName": "n.1.txt",
            "logName": "notes/txt",
            "fileSize": 5,
            "fileType": "txt",
            "step": 2,
            "time": T0,
            "sampleIndex": 0,
            "caption": "n",
        },
        {
            "fileName": "m.bin",
            "logName": "models/m",
            "fileSize": 3,
            "fileType": "bin",
            "step": 3,
            "time": T0 + 1,
        },
    ]
    r = api.presign(rid, entries)
    assert r.status_code == 200
    urls = r.json()
    assert set(urls) == {"notes/txt", "models/m"}
    put_url = urls["notes/txt"][0]["n.1.txt"]
    assert put_url.startswith(fake_pluto.url + "/s3/fake-org/proj/")
    assert httpx.put(put_url, content=b"hello", headers={"Content-Type": "text/plain"}).status_code == 200
    assert httpx.get(put_url).content == b"hello"
    run = fake_pluto.run(rid)
    assert [(f.file_name, f.content) for f in run.files] == [("n.1.txt", b"hello"), ("m.bin", None)]
    listed = api.get("/api/runs/files", runId=rid, projectName="proj", logName="notes/txt").json()["files"]
    assert len(listed) == 1 and listed[0]["caption"] == "n" and listed[0]["logGroup"] == "notes"
    assert httpx.get(listed[0]["url"]).content == b"hello"
    assert httpx.get(fake_pluto.url + "/s3/nope").status_code == 404


def test_files_validation(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    rid = api.create()["runId"]
    ok = {"fileName": "a", "logName": "l", "fileSize": 1, "fileType": "txt", "step": 0, "time": 0}
    for missing in ("fileName", "logName", "fileSize", "fileType", "step", "time"):
        bad = {k: v for k, v in ok.items() if k != missing}
        r = api.presign(rid, [bad])
        assert r.status_code == 422 and f"missing field `{missing}`" in r.text
    assert (
        api.presign(rid, [{**ok, "step": None}]).status_code == 422
    )  # what query.upload_file(step=None) sends
    assert api.presign(rid, [{**ok, "step": -1}]).status_code == 422
    assert api.presign(rid, [{**ok, "fileSize": 1.5}]).status_code == 422
    assert api.presign(rid, [ok], **{"Content-Type": "text/plain"}).status_code == 415
    h = {**api.auth(), "Content-Type": "application/json", "X-Run-Id": str(rid), "X-Project-Name": "proj"}
    assert api.http.post("/files", content=b"{not json", headers=h).status_code == 400
    big = {**ok, "caption": "x" * (2 * 1024 * 1024)}
    assert api.presign(rid, [big]).status_code == 413
    assert api.presign(rid, [{**ok, "unknownField": 1}]).status_code == 200  # unknown fields are ignored
    assert len(fake_pluto.run(rid).files) == 1
    assert Api(fake_pluto, key="mlpi_bad").presign(rid, [ok]).status_code == 401


# ---------------------------------------------------------------------------------------------
# read-back endpoints
# ---------------------------------------------------------------------------------------------


def test_readback_endpoints(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    a = api.create(name="alpha", tags=["x", "y"], createdAt=T0)
    b = api.create(name="beta", tags=["x"], createdAt=T0 + 1)
    api.post("/api/runs/logName/add", {"runId": a["runId"], "logType": "METRIC", "logName": ["train/loss"]})
    api.ingest(
        "metrics",
        a["runId"],
        ndjson(*(mline(s, {"train/loss": float(s), "acc": 1.0}, T0 + s) for s in range(100))),
    )
    api.ingest("metrics", b["runId"], ndjson(mline(0, {"other": 1.0})))
    api.ingest(
        "logs",
        a["runId"],
        ndjson(
            *(
                {"time": T0 + i, "message": f"l{i}", "lineNumber": i, "logType": "ERROR" if i % 2 else "INFO"}
                for i in range(10)
            )
        ),
    )

    details = api.get(f"/api/runs/details/{a['runId']}", projectName="proj").json()
    assert details["name"] == "alpha" and details["createdAt"] == "2023-11-14T22:13:20.000Z"
    assert details["logNames"] == [{"logName": "train/loss", "logType": "METRIC", "logGroup": "train"}]
    by_display = api.get(f"/api/runs/details/by-display-id/{a['displayId']}", projectName="proj").json()
    assert by_display["id"] == a["runId"]
    assert api.get("/api/runs/details/999").status_code == 404
    assert api.get(f"/api/runs/details/{a['runId']}", projectName="elsewhere").status_code == 404

    runs = api.get("/api/runs/list", projectName="proj").json()["runs"]
    assert [r["name"] for r in runs] == ["beta", "alpha"]  # createdAt desc by default
    assert [r["name"] for r in api.get("/api/runs/list", projectName="proj", tags="x,y").json()["runs"]] == [
        "alpha"
    ]
    assert [
        r["name"] for r in api.get("/api/runs/list", projectName="proj", search="ALP").json()["runs"]
    ] == ["alpha"]
    assert len(api.get("/api/runs/list", projectName="proj", limit=1, offset=1).json()["runs"]) == 1
    assert api.get("/api/runs/list", projectName="proj", limit=201).status_code == 400
    assert api.get("/api/runs/list", projectName="proj", filter="{}").status_code == 400
    projects = api.get("/api/runs/projects").json()["projects"]
    assert [(p["name"], p["runCount"]) for p in projects] == [("proj", 2)]

    names = api.get("/api/runs/metric-names", projectName="proj").json()["metricNames"]
    assert names == ["acc", "other", "train/loss"]
    assert api.get("/api/runs/metric-names", projectName="proj", runIds=str(b["runId"])).json()[
        "metricNames"
    ] == ["other"]

    pts = api.get(
        "/api/runs/metrics",
        runId=a["runId"],
        projectName="proj",
        logName="train/loss",
        stepMin=10,
        stepMax=19,
    )
    assert [p["step"] for p in pts.json()["metrics"]] == list(range(10, 20))
    sampled = api.get(
        "/api/runs/metrics", runId=a["runId"], projectName="proj", logName="train/loss", limit=10
    ).json()
    assert (
        len(sampled["metrics"]) == 10
        and sampled["metrics"][0]["step"] == 0
        and sampled["metrics"][-1]["step"] == 99
    )
    assert api.get("/api/runs/metrics", runId=a["runId"], projectName="proj", limit=10001).status_code == 400
    both = api.get("/api/runs/metrics", runId=a["runId"], projectName="proj").json()["metrics"]
    assert len(both) == 200

    stats = api.get("/api/runs/statistics", runId=a["runId"], projectName="proj", logName="train/loss").json()
    (s,) = stats["metrics"]
    assert (s["count"], s["min"], s["max"], s["mean"]) == (100, 0.0, 99.0, 49.5)
    assert s["last"] == {"step": 99, "value": 99.0} and s["logGroup"] == "train"

    logs = api.get("/api/runs/logs", runId=a["runId"], projectName="proj", limit=3, offset=2).json()
    assert logs["total"] == 10 and [x["message"] for x in logs["logs"]] == ["l2", "l3", "l4"]
    errors = api.get("/api/runs/logs", runId=a["runId"], projectName="proj", logType="error").json()
    assert errors["total"] == 5

    state = api.http.get("/_fake/state").json()
    assert {r["name"] for r in state["runs"]} == {"alpha", "beta"}


# ---------------------------------------------------------------------------------------------
# fault injection
# ---------------------------------------------------------------------------------------------


def test_fault_5xx_and_times(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    fault = fake_pluto.faults.add(r"^/ingest/metrics$", "5xx", times=2, status=500)
    body = ndjson(mline(1, {"m": 1.0}))
    assert [api.ingest("metrics", 1, body).status_code for _ in range(3)] == [500, 500, 200]
    assert fault.hits == 2 and fault.exhausted and len(fake_pluto.faults) == 0
    assert fake_pluto.count("POST /ingest/metrics") == 3
    assert fake_pluto.ingested("proj", 1).metrics["m"].raw_count == 1  # failed attempts stored nothing


def test_fault_429_with_retry_after(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    fake_pluto.faults.add(r"/api/runs/create", "429", retry_after=7)
    r = api.post("/api/runs/create", {"runName": "r", "projectName": "proj"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert len(fake_pluto.runs) == 0
    assert api.post("/api/runs/create", {"runName": "r", "projectName": "proj"}).status_code == 200


def test_fault_drop_connection(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    fake_pluto.faults.add(r"^/api/runs/create$", "drop")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("/api/runs/create", {"runName": "r", "projectName": "proj"})
    assert len(fake_pluto.runs) == 0
    # process=True: the server commits, then the response is lost -> a client retry duplicates
    fake_pluto.faults.add(r"^/ingest/data$", "drop", process=True)
    line = ndjson({"time": 1, "data": "x", "step": 1, "dataType": "string-series", "logName": "s"})
    with pytest.raises(httpx.RemoteProtocolError):
        api.ingest("data", 1, line)
    assert api.ingest("data", 1, line).status_code == 200
    assert len(fake_pluto.ingested("proj", 1).data) == 2


def test_fault_slow_response(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    fake_pluto.faults.add(r"^/files$", "slow", delay=0.3, method="POST")
    rid = api.create()["runId"]
    start = time.monotonic()
    r = api.presign(
        rid, [{"fileName": "a", "logName": "l", "fileSize": 1, "fileType": "txt", "step": 0, "time": 0}]
    )
    assert r.status_code == 200 and time.monotonic() - start >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        fake_pluto.faults.add(r"^/api/slug$", "slow", delay=0.5)
        api.http.post("/api/slug", headers=api.auth(), timeout=0.1)


def test_fault_422_and_method_filter(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    fake_pluto.faults.add(r"^/ingest/", "422", times=None)
    r = api.ingest("metrics", 1, ndjson(mline(1, {"m": 1})))
    assert r.status_code == 422 and r.json()["code"] == "STREAM_DECODING_ERROR"
    assert (
        api.ingest(
            "logs", 1, ndjson({"time": 1, "message": "", "lineNumber": 1, "logType": "INFO"})
        ).status_code
        == 422
    )
    fake_pluto.faults.clear()
    fake_pluto.faults.add(r"/s3/", "5xx", method="GET")
    assert api.http.put("/s3/k", content=b"v").status_code == 200
    assert api.http.get("/s3/k").status_code == 503
    assert api.http.get("/s3/k").content == b"v"
    with pytest.raises(ValueError):
        fake_pluto.faults.add("x", "explode")


# ---------------------------------------------------------------------------------------------
# transport and throughput
# ---------------------------------------------------------------------------------------------


def test_keepalive_without_nagle_delay(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    rid = api.create()["runId"]
    start = time.monotonic()
    for i in range(200):
        r = api.post("/api/runs/logName/add", {"runId": rid, "logType": "METRIC", "logName": [f"m{i}"]})
        assert r.status_code == 200
    # with Nagle + delayed ACK each POST would cost ~40 ms (8 s in total)
    assert time.monotonic() - start < 4
    assert len(fake_pluto.run(rid).log_names) == 200


def test_stop_closes_connections() -> None:
    srv = FakePluto().start()
    client = httpx.Client(base_url=srv.url, timeout=2, trust_env=False)
    assert client.post("/api/slug", headers={"Authorization": f"Bearer {srv.api_key}"}).status_code == 200
    srv.stop()
    with pytest.raises(httpx.TransportError):
        client.post("/api/slug", headers={"Authorization": f"Bearer {srv.api_key}"})
    client.close()


def test_metrics_ingest_throughput(api: Api, fake_pluto: FakePluto) -> None:  # noqa: F811
    lines = [mline(i, {f"m{j}": i + j * 0.5 for j in range(10)}, T0 + i) for i in range(5000)]
    body = ndjson(*lines).encode()
    start = time.perf_counter()
    for _ in range(20):
        assert api.ingest("metrics", 1, body).status_code == 200
    rate = 20 * 5000 * 10 / (time.perf_counter() - start)
    assert fake_pluto.total_metric_rows() == 1_000_000
    assert len(fake_pluto.ingested("proj", 1).metrics["m3"]) == 5000
    assert rate > 250_000, f"{rate:.0f} points/s"  # measured ~3-4M points/s; generous floor for CI noise
