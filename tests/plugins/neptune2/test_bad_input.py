"""Bad input and a hostile server: one-line errors, no run marked complete with holes, losses counted."""

from __future__ import annotations

import base64
import json
import threading

import pyarrow as pa
import pytest
from migrate_core.api import Selection
from migrate_core.orchestrator import Orchestrator
from migrate_core.testing import MemoryStorage
from migrate_neptune2 import client as client_module

from tests.fakes.neptune2 import FakeNeptune2Server
from tests.plugins.neptune2.conftest import FAST_SET, T0, make_source

pytestmark = pytest.mark.timeout(60)


def export(migrate, *args: str):
    return migrate("export", "--source", "neptune2", *FAST_SET, *args)


def orchestrate(tmp_path, source, runs=None):
    storage = MemoryStorage(tmp_path / "state")
    orch = Orchestrator(storage, source=source, cancel=threading.Event())
    outcomes = [orch.export_one(run) for run in (runs if runs is not None else source.list_runs(Selection()))]
    return storage, {o.run_id: o for o in outcomes}


# ------------------------------------------------------------------------------------------- credentials


def test_missing_token_says_which_variable(migrate, declared, monkeypatch):
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    result = export(migrate, "-p", "ws/proj")
    assert result.code == 2
    assert result.err.strip() == ("migrate: error: no Neptune API token: set $NEPTUNE_API_TOKEN (or point "
                                  "source.neptune2.api_token_env at the variable that holds it)")


def test_malformed_token(migrate, declared, monkeypatch):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", "not-a-token-s3cr3t")
    result = export(migrate, "-p", "ws/proj")
    assert result.code == 2
    assert "$NEPTUNE_API_TOKEN does not hold a valid Neptune API token" in result.err
    assert "s3cr3t" not in result.err + result.out


def test_revoked_token_is_rejected_and_never_printed(migrate, declared, fake_neptune2, monkeypatch):
    payload = {"api_address": fake_neptune2.base_url, "api_url": fake_neptune2.base_url, "api_key": "revoked-s3cr3t"}
    token = base64.b64encode(json.dumps(payload).encode()).decode()
    monkeypatch.setenv("MY_TOKEN", token)
    result = export(migrate, "-p", "ws/proj", "--set", "source.neptune2.api_token_env=MY_TOKEN")
    assert result.code == 2
    assert result.err.count("\n") == 1 and "rejected the API token in $MY_TOKEN" in result.err
    assert token not in result.err + result.out and "s3cr3t" not in result.err + result.out


def test_token_of_the_wrong_kind(migrate, declared, fake_neptune2: FakeNeptune2Server, monkeypatch):
    monkeypatch.setenv("NEPTUNE_API_TOKEN", fake_neptune2.make_api_token())  # fresh: the client caches per token
    fake_neptune2.faults.add("getClientConfig", "token_version")
    result = export(migrate, "-p", "ws/proj")
    assert result.code == 2 and "refused the API token in $NEPTUNE_API_TOKEN as missing or invalid" in result.err


# ------------------------------------------------------------------------------------------- projects


def test_unknown_project_lists_the_visible_ones(migrate, declared, fake_neptune2):
    fake_neptune2.add_project("team/other")
    result = export(migrate, "-p", "ws/nope")
    assert result.code == 2
    assert "Neptune project 'ws/nope' not found or not visible to this token; visible projects: " in result.err
    assert "ws/proj" in result.err and "team/other" in result.err


def test_legacy_project_is_refused_clearly(migrate, fake_neptune2):
    fake_neptune2.add_project("ws/old", version=1)
    result = export(migrate, "-p", "ws/old")
    assert result.code == 2 and "'ws/old' is a legacy (v1) project" in result.err


def test_workspace_discovery_with_a_pattern(migrate, declared, fake_neptune2):
    fake_neptune2.add_project("ws/scratch")
    fake_neptune2.add_run("ws/scratch")
    fake_neptune2.add_project("other/proj")
    fake_neptune2.add_run("other/proj")
    fake_neptune2.add_project("ws/proj-old")
    fake_neptune2.add_run("ws/proj-old")
    result = export(migrate, "--set", "source.neptune2.workspaces=[\"ws\"]",
                    "--set", "source.neptune2.include=[\"proj\"]", "--set", "source.neptune2.exclude=[\"-old$\"]",
                    "--json")
    assert result.code == 0, result.err
    assert {(r["project_id"], r["run_id"]) for r in result.json()["runs"]} == {("ws/proj", "PROJ-1"),
                                                                                 ("ws/proj", "PROJ-2")}


# ------------------------------------------------------------------------------------------- selection


def test_query_trashed_and_time_windows(declared, fake_neptune2):
    def ids(selection: Selection | None = None, **options) -> list[str]:
        source = make_source(**options)
        try:
            return [r.run_id for r in source.list_runs(selection or Selection())]
        finally:
            source.close()

    assert ids() == ["PROJ-1", "PROJ-2"]
    assert ids(trashed="include") == ["PROJ-1", "PROJ-2", "PROJ-3"]
    assert ids(trashed="only") == ["PROJ-3"]
    assert ids(query="`params/lr`:float < 0.05") == ["PROJ-2"]
    created = fake_neptune2.container("ws/proj", "PROJ-2").attrs["sys/creation_time"]
    assert ids(created_since=created) == ["PROJ-2"]
    assert ids(created_until=created) == ["PROJ-1"]
    assert ids(Selection(modified_since=created), trashed="include") == ["PROJ-2", "PROJ-3"]  # --since
    assert ids(Selection(modified_until=created)) == ["PROJ-1"]  # --until


def test_bad_query_is_one_line(migrate, declared):
    result = export(migrate, "-p", "ws/proj", "--set", "source.neptune2.query=`params/lr`:float <")
    assert result.code == 1 and "the server rejected the query" in result.err


def test_classes_select_attribute_kinds(declared, fake_neptune2, tmp_path):
    source = make_source(classes=["metrics"])
    storage, outcomes = orchestrate(tmp_path, source, runs=[r for r in source.list_runs(Selection())
                                                            if r.run_id == "PROJ-1"])
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    assert set(table["attribute_type"].to_pylist()) == {"float_series"}
    source.close()


# ------------------------------------------------------------------------------------------- runs that change


def test_run_trashed_mid_export_fails_and_is_not_complete(declared, fake_neptune2, tmp_path):
    source = make_source()
    runs = list(source.list_runs(Selection()))
    fake_neptune2.set_attr(fake_neptune2.container("ws/proj", "PROJ-1"), "sys/trashed", True)
    storage, outcomes = orchestrate(tmp_path, source, runs)
    assert outcomes["PROJ-1"].status == "failed" and "moved to the trash during the export" in outcomes["PROJ-1"].reason
    assert outcomes["PROJ-2"].status == "ok"
    assert not storage.get_run("ws/proj", "PROJ-1").complete
    source.close()


def test_attribute_that_fails_to_fetch_fails_the_run(declared, fake_neptune2, tmp_path):
    fake_neptune2.faults.add("getStringSeriesValues", "404", times=None)
    source = make_source()
    storage, outcomes = orchestrate(tmp_path, source)
    assert outcomes["PROJ-1"].status == "failed"
    assert "attribute 'logs/stdout' could not be read: Neptune getStringSeriesValues answered HTTP 404" in \
        outcomes["PROJ-1"].reason
    assert not storage.get_run("ws/proj", "PROJ-1").complete
    assert outcomes["PROJ-2"].status == "ok"
    source.close()


def test_lossy_option_counts_the_attribute_instead(declared, fake_neptune2, tmp_path):
    fake_neptune2.faults.add("downloadAttribute", "5xx", times=None)
    source = make_source(skip_failed_attributes=True, retry_budget=0.5)
    storage, outcomes = orchestrate(tmp_path, source)
    one = outcomes["PROJ-1"]
    assert one.status == "ok" and one.report.losses["attributes that failed to fetch"] == 1
    assert one.report.notes[0].startswith("model/ckpt: Neptune downloadAttribute kept failing (HTTP 500)")
    types = set(storage.runs[("ws/proj", "PROJ-1")][0]["attribute_type"].to_pylist())
    assert "file" not in types and "float_series" in types
    source.close()


def test_5xx_storms_dropped_connections_and_429_are_ridden_out(migrate, declared, fake_neptune2, monkeypatch):
    waits: list[float] = []
    real_sleep = client_module._sleep
    monkeypatch.setattr(client_module, "_sleep", lambda s, c: (waits.append(s), real_sleep(min(s, 0.01), c)))
    monkeypatch.setattr(client_module.RateLimiter, "pause", lambda self, s: waits.append(-s))
    srv = fake_neptune2
    srv.faults.add("searchLeaderboardEntries", "5xx", times=3, status=503)
    srv.faults.add("getExperimentAttributes", "5xx", times=4, status=502)
    srv.faults.add("getFloatSeriesValues", "drop", times=2)
    srv.faults.add("getStringSeriesValues", "429", times=1, retry_after="17")
    srv.faults.add("getImageSeriesValue", "5xx", times=2)
    srv.faults.add("downloadFileSetZip", "5xx", times=1)
    srv.faults.add("downloadAttribute", "token_expired", times=1)
    srv.faults.add("listArtifactFiles", "slow", times=1, delay=0.2)
    result = export(migrate, "-p", "ws/proj", "--json")
    assert result.code == 0, result.err
    assert result.json()["stages"]["export"]["ok"] == 2
    assert 17.0 in waits and -17.0 in waits  # the whole Retry-After, not its first digit, for every worker


def test_endless_5xx_gives_up_with_one_line(migrate, declared, fake_neptune2):
    fake_neptune2.faults.add("getFloatSeriesValues", "5xx", times=None)
    result = export(migrate, "-p", "ws/proj", "--set", "source.neptune2.retry_budget=0.5")
    assert result.code == 1
    assert "FAILED export ws/proj PROJ-1: attribute 'train/loss' could not be read: Neptune getFloatSeriesValues " \
           "kept failing (HTTP 500)" in result.out


def test_hostile_file_names_stay_inside_the_files_root(migrate, fake_neptune2, tmp_path):
    from migrate_local_fs.storage import LocalFsStorage

    from tests.fakes.neptune2 import File

    fake_neptune2.add_run("ws/proj", files={"../up/f": File(b"x", name="../../../etc/passwd", ext="")},
                          file_sets={"set": {"../../evil.txt": b"e", "/abs/a.txt": b"a", "ok/b.txt": b"b"}},
                          attrs={"ünï/çödé ✓": "v", "long": "y" * 100_000})
    result = export(migrate, "-p", "ws/proj")
    assert result.code == 0, result.err
    files_root = (tmp_path / "exports" / "files").resolve()
    written = [p for p in files_root.rglob("*") if p.is_file()]
    assert len(written) == 4 and all(p.resolve().is_relative_to(files_root) for p in written)
    storage = LocalFsStorage(tmp_path / "exports" / "data", tmp_path / "exports" / "files")
    run = storage.list_runs()[0]
    table = pa_table(storage, run)
    contents = sorted(storage.open_file(run, r["file_value"]["path"]).read() for r in table
                      if r["file_value"] is not None)
    assert contents == [b"a", b"b", b"e", b"x"]
    values = {r["attribute_path"]: r["string_value"] for r in table}
    assert values["ünï/çödé ✓"] == "v" and len(values["long"]) == 100_000


def pa_table(storage, run) -> list[dict]:
    return [row for batch in storage.read(run) for row in batch.to_pylist()]


@pytest.mark.parametrize("channel_api", [True, False])
def test_file_series_steps_from_the_channel_api_or_counted(declared, fake_neptune2, tmp_path, monkeypatch, channel_api):
    """A server whose image-series listing carries only the count: steps come from the channel API; without
    it the index is used and every such element is counted as `file_series_step_unknown`."""
    key = ("GET", "/api/leaderboard/v1/attributes/series/image")
    op, original, auth = fake_neptune2._routes[key]

    def count_only(req):
        response = original(req)
        response.body = json.dumps({"totalItemCount": json.loads(response.body)["totalItemCount"]}).encode()
        return response

    monkeypatch.setitem(fake_neptune2._routes, key, (op, count_only, auth))
    fake_neptune2.channel_api_enabled = channel_api
    source = make_source()
    storage, outcomes = orchestrate(tmp_path, source, runs=[r for r in source.list_runs(Selection())
                                                            if r.run_id == "PROJ-1"])
    table = storage.runs[("ws/proj", "PROJ-1")][0]
    preds = table.filter(pa.compute.equal(table["attribute_path"], "images/preds"))
    steps = [float(s) for s in preds["step"].to_pylist()]
    losses = outcomes["PROJ-1"].report.losses
    if channel_api:
        assert steps == [10.0, 20.5] and "file_series_step_unknown" not in losses
        assert fake_neptune2.count("getChannelValues") == 1
        assert preds["timestamp"].cast(pa.int64()).to_pylist() == [T0 + 5, T0 + 9]
    else:
        assert steps == [0.0, 1.0] and losses["file_series_step_unknown"] == 2
        assert preds["timestamp"].null_count == 2
    source.close()


def test_run_deleted_mid_export_fails_even_in_lossy_mode(declared, fake_neptune2, tmp_path):
    fake_neptune2.faults.add("getStringSeriesValues", "error", times=None, status=404,
                             body={"errorType": "EXPERIMENT_NOT_FOUND", "title": "Experiment not found"})
    source = make_source(skip_failed_attributes=True)
    storage, outcomes = orchestrate(tmp_path, source, runs=[r for r in source.list_runs(Selection())
                                                            if r.run_id == "PROJ-1"])
    assert outcomes["PROJ-1"].status == "failed"
    assert "deleted while it was being exported" in outcomes["PROJ-1"].reason
    assert not storage.get_run("ws/proj", "PROJ-1").complete
    source.close()


def test_unknown_attribute_types_are_counted(fake_neptune2, tmp_path):
    from tests.fakes.neptune2 import Raw

    fake_neptune2.add_run("ws/proj", attrs={"viz/plot": Raw("complexPlot", {"url": "x"}), "params/a": 1})
    source = make_source()
    storage, outcomes = orchestrate(tmp_path, source)
    report = outcomes["PROJ-1"].report
    assert outcomes["PROJ-1"].status == "ok"
    assert report.losses == {"attributes of type 'complexPlot' (unknown to the 2.x source)": 1}
    source.close()


def test_short_lived_access_tokens_are_refreshed(migrate, declared, fake_neptune2, monkeypatch):
    fake_neptune2.access_token_ttl = 1  # every request finds the token about to expire
    monkeypatch.setenv("NEPTUNE_API_TOKEN", fake_neptune2.make_api_token())  # fresh: no cached session
    result = export(migrate, "-p", "ws/proj", "--json")
    assert result.code == 0, result.err
    assert fake_neptune2.count("oauthRefresh") > 1
