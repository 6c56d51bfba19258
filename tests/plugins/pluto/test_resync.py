"""The second day, through the real CLI against the fake Pluto: a changed source re-synced, a failed parent
retried, local state lost. Each time Pluto must end up as one fresh load of what storage holds now,
nothing twice, and `verify` must say so."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa

from tests.fakes.pluto import FakePluto

from .helpers import record, snapshot

QUIET = ["--set", "sink.pluto.retries=1", "--set", "sink.pluto.backoff=0.01"]
V1 = ["--set", "source.demo.points_per_series=300", "--set", "source.demo.string_series_lines=20",
      "--set", "source.demo.histogram_steps=10"]
V2 = ["--set", "source.demo.points_per_series=400", "--set", "source.demo.string_series_lines=30",
      "--set", "source.demo.histogram_steps=14"]  # every series grows; the fork point of DEMO-3 moves
EXT = "demo:demo/project:DEMO-{}"
INTO = ["--set", "sink.pluto.project=p"]
REF = ["--set", "sink.pluto.project=ref"]


def _snap(srv: FakePluto, project: str, i: int, generation: str = "") -> dict:
    got = snapshot(srv, project, EXT.format(i) + generation)
    assert got is not None, (project, i, generation)
    got["config"]["_migrate"].pop("external_id")
    got["config"]["_migrate"].pop("replaced_by", None)
    got["config"]["_migrate"].pop("replaced_because", None)
    got["tags"] = [t for t in got["tags"] if t != "migrate:replaced"]
    return got


def _raw_writes(srv: FakePluto, project: str, i: int) -> int:
    with srv.state.lock:
        run = srv.state.find_external(project, EXT.format(i))
        return sum(len(series.raw()[0]) for series in run.metrics.values())


def test_a_reexported_run_loads_only_its_changes_and_equals_a_fresh_load(migrate, fake_pluto: FakePluto):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *V1, *QUIET, *INTO).code == 0
    writes_v1 = _raw_writes(fake_pluto, "p", 1)
    assert migrate("export", "--source", "demo", "--force", *V2).code == 0

    inspected = {r["run_id"]: r for r in migrate("inspect", "--json").json()}
    assert "older export" in json.dumps(inspected["DEMO-1"])
    # the ledger says "loaded", but for another export: the changes are loaded, the fork cannot be
    result = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--json")
    runs = {r["run_id"]: r for r in result.json()["runs"]}
    assert result.code == 1
    assert runs["DEMO-1"]["status"] == runs["DEMO-2"]["status"] == "ok", json.dumps(runs)[:3000]
    assert runs["DEMO-3"]["status"] == "failed"
    reason = runs["DEMO-3"]["reason"]
    assert "cannot be brought up to date" in reason and "--force" in reason and "points Pluto holds changed" in reason

    # a fresh load of the new export, elsewhere, is what the re-synced runs must equal
    assert migrate("load", "--sink", "pluto", *QUIET, *REF).code == 0
    for i in (1, 2):
        assert _snap(fake_pluto, "p", i) == _snap(fake_pluto, "ref", i), i
    # only what changed travelled: the 100 new points of each of the 4 series, not the 300 Pluto held
    assert _raw_writes(fake_pluto, "p", 1) == writes_v1 + 4 * 100
    assert record(fake_pluto, "p", EXT.format(1))["complete"] is True

    # the fork is replaced on request: a new Pluto run equal to a fresh load, the old one marked
    forced = migrate("load", "--sink", "pluto", *QUIET, *INTO, "-r", "DEMO-3", "--force", "--json")
    assert forced.code == 0, forced.out
    assert _snap(fake_pluto, "p", 3, "#1") == _snap(fake_pluto, "ref", 3)
    with fake_pluto.state.lock:
        old = fake_pluto.state.find_external("p", EXT.format(3))
        assert "migrate:replaced" in old.tags and old.config["_migrate"]["replaced_by"] == EXT.format(3) + "#1"
        assert old.status == "FAILED"  # demo run 3 failed: its status is back, not RUNNING

    verified = migrate("verify", "--sink", "pluto", *QUIET, *INTO, "--json")
    assert verified.code == 0 and verified.json()["ok"] is True, verified.out
    again = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--json").json()
    assert again["stages"]["load"]["skipped"] == 3


def test_verify_says_when_pluto_holds_an_older_export(migrate, fake_pluto: FakePluto):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *V1, *QUIET, *INTO).code == 0
    assert migrate("export", "--source", "demo", "--force", *V2, "-r", "DEMO-2").code == 0
    result = migrate("verify", "--sink", "pluto", *QUIET, *INTO, "--json")
    runs = {r["run_id"]: r for r in result.json()["runs"]}
    assert result.code == 1 and runs["DEMO-1"]["ok"] is True and runs["DEMO-2"]["ok"] is False
    assert any("older export" in m for m in runs["DEMO-2"]["mismatches"])


def test_lost_or_corrupt_state_sends_nothing_twice(migrate, fake_pluto: FakePluto, tmp_path):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *V1, *QUIET, *INTO).code == 0
    before = {i: _snap(fake_pluto, "p", i) for i in (1, 2, 3)}
    state = tmp_path / "exports" / "migrate-state"
    shutil.rmtree(state)  # a new machine with a copy of the dump: no ledger, no sink state
    fake_pluto.reset_counters()
    result = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--json")
    assert result.code == 0, result.out
    assert result.json()["stages"]["load"]["ok"] == 3
    sent = {k: n for k, n in fake_pluto.counts.items() if "/ingest/" in k or k.startswith(("POST /files", "PUT"))}
    assert sent == {}
    assert {i: _snap(fake_pluto, "p", i) for i in (1, 2, 3)} == before

    # corrupt sink state and a ledger that says nothing: the same
    for path in (state / "plugins" / "pluto").rglob("*.json"):
        path.write_text("{not json")
    (state / "migrate-ledger.sqlite").unlink()
    fake_pluto.reset_counters()
    assert migrate("load", "--sink", "pluto", *QUIET, *INTO).code == 0
    assert not any("/ingest/" in k for k in fake_pluto.counts)
    assert {i: _snap(fake_pluto, "p", i) for i in (1, 2, 3)} == before
    assert migrate("verify", "--sink", "pluto", *QUIET, *INTO).code == 0


def test_a_changed_export_on_a_new_machine_is_synced_from_what_pluto_holds(migrate, fake_pluto: FakePluto, tmp_path):
    assert migrate("run", "--source", "demo", "--sink", "pluto", *V1, *QUIET, *INTO, "-r", "DEMO-[12]").code == 0
    assert migrate("export", "--source", "demo", "--force", *V2, "-r", "DEMO-[12]").code == 0
    shutil.rmtree(tmp_path / "exports" / "migrate-state")
    assert migrate("load", "--sink", "pluto", *QUIET, *INTO, "-r", "DEMO-[12]").code == 0
    assert migrate("load", "--sink", "pluto", *QUIET, *REF, "-r", "DEMO-[12]").code == 0
    for i in (1, 2):
        assert _snap(fake_pluto, "p", i) == _snap(fake_pluto, "ref", i), i


def test_a_fork_waits_for_a_failed_parent_and_links_after_retry(migrate, fake_pluto: FakePluto):
    assert migrate("export", "--source", "demo", *V1).code == 0
    fake_pluto.faults.add(r"^/api/runs/create$", "422", times=1)  # the first create: DEMO-1's
    first = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--workers", "1", "--json")
    runs = {r["run_id"]: r for r in first.json()["runs"]}
    assert first.code == 1
    assert runs["DEMO-1"]["status"] == "failed" and runs["DEMO-2"]["status"] == "ok"
    assert runs["DEMO-3"]["status"] == "deferred" and "DEMO-1" in runs["DEMO-3"]["reason"]
    with fake_pluto.state.lock:
        assert fake_pluto.state.find_external("p", EXT.format(3)) is None  # never created unlinked

    plain = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--strict")
    assert plain.code == 1 and "DEFERRED load demo/project DEMO-3" in plain.out and "(lossless)" not in plain.out

    retried = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--retry-failed", "--json")
    assert retried.code == 0, retried.out
    assert {r["run_id"]: r["status"] for r in retried.json()["runs"]}["DEMO-3"] == "ok"
    with fake_pluto.state.lock:
        parent = fake_pluto.state.find_external("p", EXT.format(1))
        fork = fake_pluto.state.find_external("p", EXT.format(3))
        assert fork.fork_run_id == parent.id and fork.fork_step == 150 * 100  # the parent's step scale (x100)
    verified = migrate("verify", "--sink", "pluto", *QUIET, *INTO, "--json")
    assert verified.code == 0, json.dumps(verified.json()["runs"], indent=1)[:3000]


def test_dry_run_predicts_the_losses_the_load_reports(migrate, fake_pluto: FakePluto):
    from migrate_core.testing import MemoryRun

    from tests.memory_plugin import SOURCE_RUNS

    from .test_mapping import P, _hist, params, series

    hostile = MemoryRun(P, "H-1", pa.Table.from_batches([
        params("H-1", [("sys/tags", "string_set", "string_set_value", [f"t{i}" for i in range(60)])]),
        series("H-1", "m/dup", [0, 1_000_000, 1_000_000, 2_000_000], [1.0, 2.0, 3.0, 4.0]),
        series("H-1", "m/null", [0, 1_000_000, 2_000_000], [1.0, None, 3.0]),
        series("H-1", "m/early", [0, 1_000_000, 2_000_000], [1.0, 2.0, 3.0], times=[-5_000, -1, 10]),
        _hist("H-1", "h", [[0.0, 1.0, 5.0]] * 3, [[1, 2]] * 3),
    ]))
    SOURCE_RUNS.append(hostile)
    assert migrate("export", "--source", "memory").code == 0
    plan = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--dry-run", "--json").json()
    predicted = plan["load"]["not_representable"]
    assert fake_pluto.count("POST /api/runs/create") == 0  # a dry run reads storage only
    loaded = migrate("load", "--sink", "pluto", *QUIET, *INTO, "--json").json()
    assert loaded["stages"]["load"]["ok"] == 1
    assert predicted == loaded["losses"], (predicted, loaded["losses"])
    assert predicted["points timed before 1970 (Pluto times are unsigned: sent as 1970-01-01)"] == 2
    assert predicted["float_series points without a value"] == 1
    assert len(predicted) >= 5


def test_new_decimal_steps_after_a_load_never_collapse(fake_pluto: FakePluto, tmp_path):
    """A re-export that needs a finer step scale cannot reuse the one Pluto's points were sent with."""
    import pytest
    from migrate_core.testing import MemoryRun

    from .helpers import load, make_sink
    from .test_mapping import P, neptune_storage, series

    def storage(name, units):
        return neptune_storage(tmp_path / name, [MemoryRun(P, "R-1", pa.Table.from_batches(
            [series("R-1", "m", units, [float(i) for i in range(len(units))])]))])

    first = storage("v1", [0, 1_000_000, 2_000_000])
    sink = make_sink(fake_pluto)
    load(sink, first, P, "R-1")
    finer = storage("v2", [0, 1_000_000, 2_000_000, 2_500_000])  # 2.5: the run now needs scale 10
    with fake_pluto.state.lock:
        run = fake_pluto.state.find_external("ws-proj", f"neptune:{P}:R-1")
    with pytest.raises(Exception, match="step scale 10 .* scale 1 ") as failure:
        load(sink, finer, P, "R-1")
    assert "--force" in str(failure.value)
    assert sorted(run.metric("m")) == [0, 1, 2]  # nothing sent: 2.5 did not land on step 2
    assert run.status == "COMPLETED"

    import threading

    from migrate_core.api import RunContext, RunReader, RunReport

    report = RunReport()
    sink.load_run(RunReader(finer, finer.get_run(P, "R-1")), RunContext(report, threading.Event(), force=True))
    with fake_pluto.state.lock:
        new = fake_pluto.state.find_external("ws-proj", f"neptune:{P}:R-1#1")
    assert sorted(new.metric("m")) == [0, 10, 20, 25] and new.config["_migrate"]["step_scale"] == 10
