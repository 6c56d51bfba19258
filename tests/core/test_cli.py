import re

import pyarrow as pa
from migrate_core.format import make_batch
from migrate_core.testing import MemoryRun

from tests.memory_plugin import SOURCE_RUNS

SMALL = ["--set", "source.demo.points_per_series=200"]


def test_export_then_inspect(migrate):
    result = migrate("export", "--source", "demo", *SMALL)
    assert result.code == 0, result.err
    assert "export: 3 ok, 0 failed, 0 skipped" in result.out
    assert "not carried: nothing" in result.out
    runs = migrate("inspect", "--json").json()
    assert [r["run_id"] for r in runs] == ["DEMO-1", "DEMO-2", "DEMO-3"]
    for r in runs:
        assert r["complete"] and r["has_manifest"] and r["project_id"] == "demo/project"
        assert set(r["rows_by_type"]) >= {"float_series", "string_series", "histogram_series", "file", "string_set"}
    assert runs[2]["parent_run_id"] == "DEMO-1"
    again = migrate("export", "--source", "demo", *SMALL)
    assert "export: 0 ok, 0 failed, 3 skipped" in again.out


def test_run_pipelines_into_a_sink_parents_first_and_resumes(migrate, memory_sink):
    result = migrate("run", "--source", "demo", "--sink", "memory", "--workers", "3", *SMALL, "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["stages"]["load"]["ok"] == 3 and summary["stages"]["export"]["ok"] == 3
    assert set(memory_sink.loaded) == {("demo/project", f"DEMO-{i}") for i in (1, 2, 3)}
    assert memory_sink.loaded[("demo/project", "DEMO-3")]["parent"] == "DEMO-1"
    calls = len(memory_sink.load_calls)
    again = migrate("run", "--source", "demo", "--sink", "memory", *SMALL, "--json").json()
    assert again["stages"]["load"]["skipped"] == 3 and len(memory_sink.load_calls) == calls
    states = {r["run_id"]: r["loads"] for r in migrate("inspect", "--json").json()}
    assert states["DEMO-2"] == {"memory:": "done"}


def test_one_failing_run_does_not_stop_the_others(migrate, memory_sink):
    memory_sink.fail["DEMO-2"] = RuntimeError("server said no")
    migrate("export", "--source", "demo", *SMALL)
    result = migrate("load", "--sink", "memory")
    assert result.code == 1
    assert "FAILED load demo/project DEMO-2: RuntimeError: server said no" in result.out
    assert ("demo/project", "DEMO-1") in memory_sink.loaded and ("demo/project", "DEMO-3") in memory_sink.loaded
    skipped = migrate("load", "--sink", "memory", "--json").json()
    reasons = {r["run_id"]: r["reason"] for r in skipped["runs"]}
    assert "use --retry-failed" in reasons["DEMO-2"]
    del memory_sink.fail["DEMO-2"]
    retried = migrate("load", "--sink", "memory", "--retry-failed", "--json").json()
    assert retried["stages"]["load"]["ok"] == 1 and ("demo/project", "DEMO-2") in memory_sink.loaded


def test_fork_of_a_failed_parent_is_deferred_then_loads_after_it(migrate, memory_sink):
    memory_sink.fail["DEMO-1"] = RuntimeError("boom")
    result = migrate("run", "--source", "demo", "--sink", "memory", *SMALL, "--json")
    assert result.code == 1
    runs = {(r["stage"], r["run_id"]): r for r in result.json()["runs"]}
    assert runs[("load", "DEMO-3")]["status"] == "deferred"
    assert "parent run 'DEMO-1'" in runs[("load", "DEMO-3")]["reason"]
    assert runs[("load", "DEMO-2")]["status"] == "ok"
    assert ("demo/project", "DEMO-3") not in memory_sink.loaded  # never loaded without its parent
    assert not result.json()["lossless"]

    # a plain load keeps waiting: the parent failed before, so the fork is deferred again, and named
    plain = migrate("load", "--sink", "memory")
    assert plain.code == 0 and "DEFERRED load demo/project DEMO-3" in plain.out  # nothing failed now
    assert "(lossless)" not in plain.out
    assert ("demo/project", "DEMO-3") not in memory_sink.loaded
    strict = migrate("load", "--sink", "memory", "--strict")
    assert strict.code == 1

    del memory_sink.fail["DEMO-1"]
    retried = migrate("load", "--sink", "memory", "--retry-failed", "--json").json()
    order = [key[1] for key in memory_sink.loaded]
    assert order.index("DEMO-1") < order.index("DEMO-3")
    assert {r["run_id"]: r["status"] for r in retried["runs"]} == {"DEMO-1": "ok", "DEMO-2": "skipped",
                                                                  "DEMO-3": "ok"}


def test_a_deferred_fork_of_an_unselected_parent_says_why(migrate, memory_sink):
    migrate("export", "--source", "demo", *SMALL)
    only_fork = migrate("load", "--sink", "memory", "-r", "DEMO-3", "--json")
    (run,) = only_fork.json()["runs"]
    assert run["status"] == "deferred" and "not selected" in run["reason"]
    assert only_fork.code == 0  # nothing failed; --strict makes a deferred run an error
    assert migrate("load", "--sink", "memory", "-r", "DEMO-3", "--strict").code == 1
    both = migrate("load", "--sink", "memory", "--json").json()
    assert {r["run_id"]: r["status"] for r in both["runs"]} == {"DEMO-1": "ok", "DEMO-2": "ok", "DEMO-3": "ok"}


def test_corrupt_part_fails_only_that_run(migrate, memory_sink, tmp_path):
    migrate("export", "--source", "demo", *SMALL)
    part = next((tmp_path / "exports" / "data").glob("*/DEMO-2-*_part_0.parquet"))
    part.write_bytes(part.read_bytes()[:200])
    result = migrate("load", "--sink", "memory")
    assert result.code == 1
    assert "DEMO-2" in result.out and "not a readable parquet file" in result.out
    assert len(memory_sink.loaded) == 2


def test_hostile_run_ids_and_strict_losses(migrate, memory_sink):
    for run_id in ("a/b c", "Ünï ç/ö", "../up"):
        SOURCE_RUNS.append(MemoryRun("ws/p", run_id, pa.Table.from_batches([
            make_batch("ws/p", run_id, "x", "int", 1, int_value=[1])])))
    SOURCE_RUNS.append(MemoryRun("ws/p", "evil", pa.Table.from_batches([
        make_batch("ws/p", "evil", "f", "file", 1, file_value=[{"path": "../../../etc/passwd"}])])))
    result = migrate("run", "--source", "memory", "--sink", "memory")
    assert result.code == 0, result.out + result.err
    assert "not carried: 1 files with escaping paths" in result.out
    assert {k[1] for k in memory_sink.loaded} == {"a/b c", "Ünï ç/ö", "../up", "evil"}
    strict = migrate("load", "--sink", "memory", "--force", "--strict")
    assert strict.code == 1


def test_dry_run_writes_nothing(migrate, tmp_path, memory_sink):
    plan = migrate("export", "--source", "demo", "--dry-run", "--json", *SMALL).json()
    assert plan["export"]["to_move"] == 3 and plan["export"]["estimated_rows"] > 0
    assert not (tmp_path / "exports").exists()
    migrate("export", "--source", "demo", *SMALL)
    plan = migrate("load", "--sink", "memory", "--dry-run", "--json").json()
    assert plan["load"]["rows_by_type"]["float_series"] > 0 and plan["load"]["estimated_bytes"] > 0
    assert memory_sink.loaded == {}
    human = migrate("load", "--sink", "memory", "--dry-run")
    assert "cannot carry: nothing" in human.out


def test_verify(migrate, memory_sink):
    migrate("run", "--source", "demo", "--sink", "memory", *SMALL)
    result = migrate("verify", "--sink", "memory", "--json")
    assert result.code == 0 and all(r["ok"] for r in result.json()["runs"])
    memory_sink.loaded.pop(("demo/project", "DEMO-2"))
    bad = migrate("verify", "--sink", "memory", "--json")
    assert bad.code == 1
    assert {r["run_id"]: r["ok"] for r in bad.json()["runs"]}["DEMO-2"] is False
    none = migrate("verify", "--sink", "noverify")
    assert none.code == 2 and "has no verification" in none.err


def test_usage_errors_exit_2_with_one_line(migrate, tmp_path):
    assert migrate("frobnicate").code == 2
    unknown = migrate("export", "--source", "nope")
    assert unknown.code == 2 and "unknown source 'nope'; choose one of:" in unknown.err
    assert "demo" in unknown.err and len(unknown.err.strip().splitlines()) == 1
    broken = migrate("load", "--sink", "broken_sink")
    assert broken.code == 2 and "could not start: RuntimeError: cannot reach the target" in broken.err
    no_sink = migrate("load")
    assert no_sink.code == 2 and "no sink chosen" in no_sink.err
    (tmp_path / "bad.toml").write_text("[run\n")
    malformed = migrate("export", "-c", str(tmp_path / "bad.toml"))
    assert malformed.code == 2 and "malformed TOML" in malformed.err
    (tmp_path / "migrate.toml").write_text("[source.demo]\nruns = 1\nbogus = 2\n")
    unknown_key = migrate("export")
    assert unknown_key.code == 2 and "source.demo.bogus" in unknown_key.err and "line 3" in unknown_key.err
    (tmp_path / "migrate.toml").write_text("[sink.plutto]\n")
    typo = migrate("export")
    assert typo.code == 2 and "no sink plugin named 'plutto'" in typo.err


def test_version_and_config_show(migrate, monkeypatch):
    version = migrate("--version")
    assert version.code == 0 and version.out.startswith("migrate ")
    monkeypatch.setenv("MIGRATE__SOURCE__DEMO__RUNS", "7")
    shown = migrate("config", "show", "--json", "--data-path", "/tmp/x").json()["config"]
    assert shown["run"]["source"] == "demo" and shown["source"]["demo"]["runs"] == 7
    assert shown["storage"]["local_fs"]["data_path"] == "/tmp/x"
    assert shown["source"]["demo"]["points_per_series"] == 1000  # defaults are shown
    text = migrate("config", "show")
    assert "[source.demo]" in text.out and re.search(r"^runs = 7 +# env MIGRATE__SOURCE__DEMO__RUNS$", text.out, re.M)


def test_help_answers_questions(migrate):
    for args in (["--help"], ["run", "--help"], ["load", "--help"], ["plugins", "list", "--help"]):
        result = migrate(*args)
        assert result.code == 0
    assert "--retry-failed" in migrate("load", "--help").out
    assert "--attributes" in migrate("export", "--help").out


def test_empty_storage(migrate, memory_sink, tmp_path):
    assert "is empty" in migrate("inspect").out
    assert not (tmp_path / "exports").exists()  # inspect only reads
    result = migrate("load", "--sink", "memory")
    assert result.code == 0 and "nothing selected" in result.out


def test_since_until_window(migrate):
    # demo runs are modified at 09:30, 10:30 and 11:30 UTC on 2025-01-06
    result = migrate("export", "--source", "demo", *SMALL, "--since", "2025-01-06T10:00", "--until",
                     "2025-01-06T11:00:00+00:00", "--json")
    assert result.code == 0, result.err
    assert [r["run_id"] for r in result.json()["runs"]] == ["DEMO-2"]
    plan = migrate("export", "--source", "demo", *SMALL, "--since", "2025-01-06T10:00", "--dry-run", "--json").json()
    assert {r["run_id"]: r["action"] for r in plan["export"]["runs"]} == {
        "DEMO-2": "skip (already exported (use --refresh for changed runs, --force for all))", "DEMO-3": "export"}
    bad = migrate("export", "--source", "demo", "--since", "yesterday")
    assert bad.code == 2 and "run.since" in bad.err


def test_source_flags_map_to_the_chosen_sources_table(migrate):
    unsupported = migrate("export", "--source", "demo", "--query", "`sys/id`:string = \"X\"")
    assert unsupported.code == 2 and "--query is not supported by source 'demo'" in unsupported.err
    shown = migrate("config", "show", "--json", "--source", "neptune2").json()["config"]
    assert shown["source"]["neptune2"]["trashed"] == "exclude"


def test_source_flags_reach_neptune_sources(migrate, monkeypatch):
    from migrate_core import cli

    seen = {}
    real = cli.Session.build

    def spy(self, kind, name):
        if kind == "source":
            seen.update(self.config.table("source", name))
            raise cli.UsageError("stop here")
        return real(self, kind, name)

    monkeypatch.setattr(cli.Session, "build", spy)
    migrate("export", "--source", "neptune2", "--query", "`a`:int > 1", "--archived", "include",
            "--classes", "parameters", "--classes", "metrics", "--skip-failed-attributes")
    assert seen == {"query": "`a`:int > 1", "trashed": "include", "classes": ["parameters", "metrics"],
                    "skip_failed_attributes": True}
    migrate("export", "--source", "neptune3", "--archived", "only")
    assert seen["archived"] == "only"


def test_an_sdk_logging_to_stdout_never_breaks_json(migrate, capsys):
    """The `neptune` client adds a stdout handler to the `neptune` logger at import; neptune-query logs
    through that logger. Whatever an SDK logs must reach stderr, or `--json` is no longer JSON."""
    import logging
    import sys

    from tests.memory_plugin import SOURCE_RUNS

    class Chatty(logging.StreamHandler):
        @property  # like neptune's GrabbableStdoutHandler: whatever sys.stdout is now
        def stream(self):
            return sys.stdout

        @stream.setter
        def stream(self, _value):
            pass

    sdk = logging.getLogger("neptune")
    sdk.addHandler(Chatty())
    sdk.setLevel(logging.INFO)
    try:
        SOURCE_RUNS.append(MemoryRun("ws/p", "R-1", pa.Table.from_batches(
            [make_batch("ws/p", "R-1", "x", "int", 1, int_value=[1])])))
        result = migrate("export", "--source", "memory", "--json")
        sdk.info("Downloading file from aws storage")  # as neptune-query does while a run exports
        assert result.code == 0
        assert result.json()["stages"]["export"]["ok"] == 1
        assert "Downloading" not in capsys.readouterr().out
    finally:
        for handler in list(sdk.handlers):
            sdk.removeHandler(handler)
