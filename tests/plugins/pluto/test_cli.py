"""End to end through the CLI: `migrate run --source demo --sink pluto`, then `migrate verify --sink pluto`."""

from __future__ import annotations

from tests.fakes.pluto import FakePluto

DEMO = ["--set", "source.demo.points_per_series=300", "--set", "sink.pluto.retries=1",
        "--set", "sink.pluto.backoff=0.01"]
EXT = "demo:demo/project:DEMO-{}"


def test_run_then_verify_through_the_cli(migrate, fake_pluto: FakePluto):
    result = migrate("run", "--source", "demo", "--sink", "pluto", "--workers", "3", *DEMO, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["stages"]["load"]["ok"] == 3
    assert set(summary["losses"]) == {
        "histograms with non-uniform edges drawn as uniform bins (exact edges kept in the payload's `edges`)"}
    runs = {i: fake_pluto.run_by_external("demo-project", EXT.format(i)) for i in (1, 2, 3)}
    assert runs[3].fork_run_id == runs[1].id and runs[3].fork_step == 150 * 100
    assert [runs[i].status for i in (1, 2, 3)] == ["COMPLETED", "COMPLETED", "FAILED"]  # demo run 3 failed
    assert all(len(runs[1].metric(f"metrics/series_{s}")) == 300 for s in range(4))

    verified = migrate("verify", "--sink", "pluto", *DEMO, "--json")
    assert verified.code == 0, verified.out + verified.err
    assert verified.json()["ok"] is True and len(verified.json()["runs"]) == 3

    # --force replaces: every run is loaded afresh into a new Pluto run, the old ones are marked, not deleted
    again = migrate("load", "--sink", "pluto", *DEMO, "--force", "--json")
    assert again.code == 0 and again.json()["stages"]["load"]["ok"] == 3
    assert again.json()["stages"]["load"]["rows"] == summary["stages"]["load"]["rows"]  # all of it, sent again
    new = {i: fake_pluto.run_by_external("demo-project", EXT.format(i) + "#1") for i in (1, 2, 3)}
    assert all(len(new[1].metric(f"metrics/series_{s}")) == 300 for s in range(4))
    assert new[3].fork_run_id == new[1].id and new[3].fork_step == 150 * 100
    for i in (1, 2, 3):
        assert "migrate:replaced" in runs[i].tags and runs[i].config["_migrate"]["replaced_by"] == EXT.format(i) + "#1"
        assert runs[i].status == new[i].status  # opening the old run did not leave it RUNNING
    assert migrate("verify", "--sink", "pluto", *DEMO, "--json").json()["ok"] is True
    # and a plain load now sends nothing
    assert migrate("load", "--sink", "pluto", *DEMO, "--json").json()["stages"]["load"]["skipped"] == 3


def test_verify_finds_what_is_missing_or_changed(migrate, fake_pluto: FakePluto):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *DEMO).code == 0
    with fake_pluto.state.lock:
        run = fake_pluto.run_by_external("demo-project", EXT.format(2))
        series = run.metrics["metrics/series_0"]
        steps, values, times = series.raw()
        series._steps, series._values, series._times = [steps[:-1]], [values[:-1]], [times[:-1]]
        series._raw_cache = series._dedup_cache = None
        run.tags = [t for t in run.tags if t != "demo"]
        run.config["parameters"]["epochs"] = -1
        run.store.logs.pop()
        run.store.files.pop()
    result = migrate("verify", "--sink", "pluto", *DEMO)
    assert result.code == 1
    out = result.out
    assert "ok       demo/project DEMO-1" in out and "MISMATCH demo/project DEMO-2" in out
    assert "metrics/series_0: points: expected 300, got 299" in out
    assert "metrics/series_0: last step: expected 29900, got 29800" in out
    assert "tags: expected" in out and "config: expected" in out
    assert "console lines: expected 40, got 39" in out
    assert "images/samples: file 'sample_10.png' (264 bytes) held: expected 1, got 0" in out
    assert "verify: 2 ok, 1 mismatched" in out


def test_verify_without_our_state_finds_runs_by_external_id(migrate, fake_pluto: FakePluto, tmp_path):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *DEMO).code == 0
    import shutil

    shutil.rmtree(tmp_path / "exports" / "migrate-state" / "plugins" / "pluto")
    result = migrate("verify", "--sink", "pluto", *DEMO, "--json")
    # the load record lives in Pluto: a machine without our state verifies everything, histograms included
    assert result.code == 0 and result.json()["ok"] is True, result.out


def test_config_show_never_shows_the_key(migrate, monkeypatch):
    monkeypatch.setenv("PLUTO_API_KEY", "mlpi_supersecret")
    result = migrate("config", "show", "--sink", "pluto", "--json")
    assert result.code == 0, result.err
    assert "mlpi_supersecret" not in result.out
    assert result.json()["config"]["sink"]["pluto"]["api_key_env"] == "PLUTO_API_KEY"
