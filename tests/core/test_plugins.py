import sys
import textwrap
import types

import pytest
from migrate_core import SinkSpec, hookimpl
from migrate_core.errors import PluginError
from migrate_core.plugins import discover


def _sink_plugin(dist: str, name: str = "dup"):
    module = types.ModuleType(f"plugin_{dist.replace('-', '_')}")
    module.DISTRIBUTION = dist

    @hookimpl
    def migrate_register_sinks():
        return [SinkSpec(name=name, description=f"from {dist}", factory=lambda c: None)]

    module.migrate_register_sinks = migrate_register_sinks
    return module


@pytest.fixture
def broken_distribution(tmp_path, monkeypatch):
    """An installed distribution whose plugin module raises on import (a real entry point)."""
    dist = tmp_path / "migrate_broken-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: migrate-broken\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[migrate.plugins]\nbroken = migrate_broken_mod\n")
    (tmp_path / "migrate_broken_mod.py").write_text("raise ImportError('needs libfoo 9')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("migrate_broken_mod", None)


def test_builtin_components_are_discovered():
    registry = discover()
    assert "demo" in registry.names("source")
    assert "local_fs" in registry.names("storage")
    spec = registry.get("storage", "local_fs")
    assert spec.distribution == "migrate-ml-local-fs" and spec.version


def test_unknown_name_lists_valid_choices():
    with pytest.raises(PluginError, match=r"unknown source 'nope'; choose one of: .*demo"):
        discover().get("source", "nope")


def test_two_distributions_claiming_one_name_is_an_error_naming_both():
    registry = discover([_sink_plugin("dist-one"), _sink_plugin("dist-two")])
    with pytest.raises(PluginError, match="dist-one, dist-two"):
        registry.get("sink", "dup")
    assert any(f.name == "dup" for f in registry.failed)


def test_failed_import_is_skipped_and_an_error_only_when_selected(broken_distribution):
    registry = discover()
    failure = next(f for f in registry.failed if f.name == "broken")
    assert failure.distribution == "migrate-broken" and "needs libfoo 9" in failure.error
    assert "demo" in registry.names("source")  # the others still work
    with pytest.raises(PluginError, match="plugin 'broken' failed to load: ImportError: needs libfoo 9"):
        registry.get("sink", "broken")


def test_disable_env_blocks_by_name():
    registry = discover(env={"MIGRATE_DISABLE_PLUGINS": "demo, other"})
    assert "demo" not in registry.names("source")
    with pytest.raises(PluginError, match="disabled by MIGRATE_DISABLE_PLUGINS"):
        registry.get("source", "demo")


def test_plugins_list_json(migrate, broken_distribution):
    result = migrate("plugins", "list", "--json")
    assert result.code == 0, result.err
    data = result.json()
    assert set(data) >= {"sources", "storages", "sinks", "failed"}
    assert {"name": "demo", "kind": "source"}.items() <= data["sources"][0].items()
    assert any(s["name"] == "local_fs" for s in data["storages"])
    assert any(f["name"] == "broken" and "libfoo" in f["error"] for f in data["failed"])
    human = migrate("plugins", "list")
    assert "failed to load" in human.out and "local_fs" in human.out


def test_every_hook_is_documented():
    from pathlib import Path

    from migrate_core import hookspecs

    doc = (Path(__file__).parents[2] / "docs" / "plugin-hooks.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("migrate_")]
    assert len(hooks) == 7
    for name in hooks:
        section = doc.split(f"## `{name}`", 1)
        assert len(section) == 2, f"{name} has no section in docs/plugin-hooks.md"
        body = section[1].split("\n## ", 1)[0]
        assert "Signature" in body and "```python" in body and "Example" in body, name


def test_plugins_import_lazily():
    """`migrate --help` must not import heavy SDKs or the data modules of plugins.

    (`pluto` itself is left out: pluto-ml installs a .pth hook that imports it in every interpreter.)"""
    import subprocess

    code = textwrap.dedent("""
        import sys
        from migrate_core.plugins import discover
        discover()
        heavy = [m for m in ("neptune", "neptune_query", "neptune_scale", "migrate_local_fs.storage",
                             "migrate_core.demo_source") if m in sys.modules]
        print(",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
