"""`migrate doctor` end to end through the real CLI: core's checks, local_fs's, and a third-party plugin's."""

from __future__ import annotations

import re
import sys
import types

import pytest
from migrate_core import SinkSpec, cli, hookimpl
from migrate_core.api import Sink
from migrate_core.checks import passed, warned

from tests import memory_plugin

KEYS = {"plugin", "kind", "check", "ok", "status", "detail", "fix"}


def rows(result, kind=None, plugin=None):
    return {r["check"]: r for r in result.json()["checks"]
            if (kind is None or r["kind"] == kind) and (plugin is None or r["plugin"] == plugin)}


class _Sink(Sink):
    def target(self) -> str:
        return "thirdparty:"

    def load_run(self, reader, ctx) -> None:  # pragma: no cover - doctor never loads
        raise AssertionError


def _third_party() -> types.ModuleType:
    """An out-of-tree plugin: one sink with two checks of its own, and a checks hook that raises for the other."""
    plugin = types.ModuleType("thirdparty_plugin")
    plugin.DISTRIBUTION = "migrate-thirdparty"

    @hookimpl
    def migrate_register_sinks():
        return [SinkSpec(name="thirdparty", description="a sink with doctor checks", factory=lambda c: _Sink()),
                SinkSpec(name="fragile", description="a sink whose checks raise", factory=lambda c: _Sink())]

    @hookimpl
    def migrate_doctor_checks(kind, name, context):
        if (kind, name) == ("sink", "thirdparty"):
            return [passed("bucket", f"bucket found; source is {context.components['source']}"),
                    warned("quota", "90% of the quota used", "ask for more quota")]
        if (kind, name) == ("sink", "fragile"):
            raise RuntimeError("the check itself broke")
        return None

    plugin.migrate_register_sinks = migrate_register_sinks
    plugin.migrate_doctor_checks = migrate_doctor_checks
    return plugin


@pytest.fixture
def third_party(monkeypatch):
    monkeypatch.setattr(cli, "EXTRA_PLUGINS", [memory_plugin, _third_party()])


def test_defaults_all_green_in_plain_lines(migrate, tmp_path):
    result = migrate("doctor")
    assert result.code == 0, result.out + result.err
    lines = result.out.splitlines()
    assert all(len(line) <= 80 for line in lines), result.out
    assert lines[-1] == "doctor: 9 passed, 0 warnings, 0 failed"
    assert any(line.startswith("✓  source demo") and "export plan" in line and "3 of 3 runs to export" in line
               for line in lines)
    assert any(line.startswith("✓  storage local_fs free disk") for line in lines)
    assert list(tmp_path.iterdir()) == [], "the write probes left something behind"


def test_json_shape_and_export_estimate(migrate, tmp_path):
    result = migrate("doctor", "--set", "source.demo.runs=5", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) == {"ok", "checks"} and data["ok"] is True
    assert all(set(r) == KEYS for r in data["checks"])
    assert [(r["kind"], r["check"]) for r in data["checks"]] == [
        ("source", "installed"), ("source", "config"), ("source", "export plan"),
        ("storage", "installed"), ("storage", "config"), ("storage", "data path"), ("storage", "files path"),
        ("storage", "state path"), ("storage", "free disk")]
    plan = migrate("export", "--dry-run", "--set", "source.demo.runs=5", "--json").json()["export"]
    rows_est = plan["estimated_rows"]
    assert f"5 of 5 runs to export, ~{rows_est:,} rows" in rows(result)["export plan"]["detail"]
    assert f"({5} runs, {rows_est:,} rows, dry-run estimate)" in rows(result)["free disk"]["detail"]
    assert list(tmp_path.iterdir()) == []


def test_free_disk_warns_below_the_estimate_and_fails_below_a_tenth(migrate, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    need = migrate("export", "--dry-run", "--json").json()["export"]["estimated_rows"] * 16
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 9 * need, need // 2))
    low = rows(migrate("doctor", "--json"))["free disk"]
    assert low["status"] == "warn" and low["fix"]
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 * need, 9 * need, need // 20))
    result = migrate("doctor", "--json")
    assert result.code == 1 and rows(result)["free disk"]["status"] == "fail"


def test_unwritable_storage_path_fails_with_a_fix(migrate, tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    result = migrate("doctor", "--data-path", "afile/data", "--json")
    assert result.code == 1
    check = rows(result)["data path"]
    assert check["status"] == "fail" and "afile is a file, not a folder" in check["detail"] and check["fix"]
    assert rows(result)["files path"]["ok"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.skipif(sys.platform == "win32" or __import__("os").geteuid() == 0, reason="root writes anywhere")
def test_read_only_folder_fails(migrate, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = migrate("doctor", "--files-path", str(ro / "files"), "--json")
    finally:
        ro.chmod(0o755)
    assert result.code == 1 and "cannot write in" in rows(result)["files path"]["detail"]


def test_third_party_checks_come_through_the_hook(migrate, third_party):
    result = migrate("doctor", "--sink", "thirdparty", "--json")
    assert result.code == 0, result.out  # a warning passes
    sink = rows(result, kind="sink")
    assert sink["installed"]["detail"] == "migrate-thirdparty"
    assert sink["bucket"] == {"plugin": "thirdparty", "kind": "sink", "check": "bucket", "ok": True,
                              "status": "ok", "detail": "bucket found; source is demo", "fix": ""}
    assert sink["quota"]["status"] == "warn" and sink["quota"]["fix"] == "ask for more quota"


def test_a_check_that_raises_is_a_failed_check(migrate, third_party):
    result = migrate("doctor", "--sink", "fragile")
    assert result.code == 1
    assert "Traceback" not in result.out + result.err
    assert "✗  sink fragile" in result.out
    assert "the checks of plugin migrate-thirdparty:thirdparty_plugin raised RuntimeError: the check" in \
        " ".join(result.out.split())
    assert "fix: a bug in that plugin" in result.out
    assert result.out.splitlines()[-1].endswith("1 failed")


def test_unknown_plugin_and_bad_config_are_failed_checks(migrate, tmp_path):
    (tmp_path / "migrate.toml").write_text("[storage.local_fs]\npart_size_mb = -1\n[sink.nosuch]\nx = 1\n")
    result = migrate("doctor", "--sink", "memory", "--source", "nope", "--json")
    assert result.code == 1
    checks = result.json()["checks"]
    bad = {(r["kind"], r["plugin"], r["check"]): r for r in checks if not r["ok"]}
    assert set(bad) == {("sink", "nosuch", "config"), ("source", "nope", "installed"),
                        ("storage", "local_fs", "config")}
    assert "choose one of: demo, memory" in bad[("source", "nope", "installed")]["detail"]
    assert "part_size_mb" in bad[("storage", "local_fs", "config")]["detail"]
    assert rows(result, kind="sink", plugin="memory")["installed"]["ok"]


def test_a_plugin_that_failed_to_load(migrate, monkeypatch):
    from migrate_core import plugins

    real = plugins.discover

    def discover(extra, env=None):
        registry = real(extra, env)
        registry.failed.append(plugins.FailedPlugin("broken", "migrate-broken", "1.0", "ImportError: no sdk"))
        return registry

    monkeypatch.setattr(plugins, "discover", discover)
    unused = migrate("doctor", "--json")
    assert unused.code == 0  # not chosen: a warning
    assert rows(unused, plugin="broken")["installed"]["status"] == "warn"
    chosen = migrate("doctor", "--sink", "broken", "--json")
    assert chosen.code == 1
    row = rows(chosen, kind="sink", plugin="broken")["installed"]
    assert "failed to load: ImportError: no sdk" in row["detail"] and "reinstall migrate-broken" in row["fix"]


def test_unreadable_config_file_is_a_usage_error(migrate, tmp_path):
    (tmp_path / "migrate.toml").write_text("[run\n")
    result = migrate("doctor")
    assert result.code == 2 and result.err.startswith("migrate: error:")


def test_a_terminal_gets_a_table_that_fits_80_columns(migrate, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    result = migrate("doctor", "--sink", "nope")
    assert result.code == 1
    lines = re.sub(r"\x1b\[[0-9;]*m", "", result.out).splitlines()  # rich colours the terminal
    assert any("┃" in line and "component" in line and "result" in line for line in lines), result.out
    assert max(len(line) for line in lines) <= 80
    assert "fix: install the plugin that provides sink 'nope'" in " ".join(
        line.strip("│ ") for line in lines if "│" in line)
    assert lines[-1] == "doctor: 9 passed, 0 warnings, 1 failed"
