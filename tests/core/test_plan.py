"""`--dry-run`: one shape for export, load and run, and estimates that match what the real command reports."""

from __future__ import annotations

from migrate_core.plan import SECTION_KEYS

from tests.core.test_cli import SMALL

RUN_KEYS = {"project_id", "run_id", "parent_run_id", "action", "estimated_rows", "rows_by_type", "estimated_bytes",
            "not_representable"}


def shape(plan: dict) -> dict:
    return {stage: (set(plan[stage]), {k for r in plan[stage]["runs"] for k in r})
            for stage in ("export", "load") if stage in plan}


def test_export_load_and_run_plans_have_one_shape(migrate):
    plans = {
        "export": migrate("export", "--source", "demo", *SMALL, "--dry-run", "--json").json(),
        "run": migrate("run", "--source", "demo", "--sink", "memory", *SMALL, "--dry-run", "--json").json(),
    }
    migrate("export", "--source", "demo", *SMALL)
    plans["load"] = migrate("load", "--sink", "memory", "--dry-run", "--json").json()
    for command, plan in plans.items():
        assert plan["command"] == command and plan["dry_run"] is True
        for sections, runs in shape(plan).values():
            assert sections == set(SECTION_KEYS) and runs == RUN_KEYS, (command, sections, runs)
    assert set(plans["export"]) == {"command", "dry_run", "export"}
    assert set(plans["load"]) == {"command", "dry_run", "load"}
    assert set(plans["run"]) == {"command", "dry_run", "export", "load"}
    assert [r["action"] for r in plans["run"]["load"]["runs"]] == ["load after export"] * 3
    assert plans["run"]["load"]["estimated_rows"] == plans["run"]["export"]["estimated_rows"]
    text = migrate("run", "--source", "demo", "--sink", "memory", *SMALL, "--dry-run").out
    assert "export into local_fs:" in text and "load into memory:" in text
    assert "0 of 3 runs" in text and "3 of 3 runs" in text  # exported: the run plan loads what is stored
    assert "float_series:" in text and "cannot carry: nothing" in text


def test_a_load_plan_counts_the_rows_the_load_then_reports(migrate):
    assert migrate("export", "--source", "demo", "--set", "source.demo.runs=4").code == 0
    for args in (["-r", "DEMO-[13]"], []):  # then the rest: the plan leaves out what is loaded already
        plan = migrate("load", "--sink", "memory", *args, "--dry-run", "--json").json()["load"]
        real = migrate("load", "--sink", "memory", *args, "--json").json()
        assert plan["estimated_rows"] == real["stages"]["load"]["rows"], (plan["runs"], real["runs"])
        assert plan["to_move"] == real["stages"]["load"]["ok"]
        assert sum(plan["rows_by_type"].values()) == plan["estimated_rows"]
    assert plan["to_move"] == 2 and {r["action"] for r in plan["runs"]} == {
        "load", "skip (already loaded (use --force to load again))"}
    nothing = migrate("load", "--sink", "memory", "--dry-run", "--json").json()["load"]
    assert nothing["to_move"] == 0 and nothing["estimated_rows"] == 0 and nothing["estimated_bytes"] == 0


def test_an_export_plan_estimates_rows_and_bytes_of_the_real_export(migrate, tmp_path):
    plan = migrate("export", "--source", "demo", "--dry-run", "--json").json()["export"]
    assert not (tmp_path / "exports").exists()
    real = migrate("export", "--source", "demo", "--json").json()
    assert plan["estimated_rows"] == real["stages"]["export"]["rows"]  # the demo knows its rows exactly
    by_run = {r["run_id"]: r["rows"] for r in real["runs"]}
    assert {r["run_id"]: r["estimated_rows"] for r in plan["runs"]} == by_run  # a fork's too (half the points)
    stored = sum(r["bytes"] for r in migrate("inspect", "--json").json()) + real["stages"]["export"]["bytes"]
    assert stored / 2 <= plan["estimated_bytes"] <= stored * 2, (plan["estimated_bytes"], stored)
    assert sum(r["estimated_bytes"] for r in plan["runs"]) == plan["estimated_bytes"]
    again = migrate("export", "--source", "demo", "--dry-run", "--json").json()["export"]
    assert again["to_move"] == 0 and again["estimated_bytes"] == 0  # everything is exported already
