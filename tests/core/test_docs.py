"""The docs stay true: every config key of every shipped component is in docs/configuration.md."""

import os
import re
import tomllib
from pathlib import Path

import pytest
from migrate_core.config import RunConfig
from migrate_core.plugins import discover

DOC = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()


def _section(title: str) -> str:
    parts = DOC.split(f"## `{title}`", 1)
    assert len(parts) == 2, f"docs/configuration.md has no section {title}"
    return parts[1].split("\n## ", 1)[0]


def test_run_table_is_documented():
    body = _section("[run]")
    for name in RunConfig.model_fields:
        assert f"| `{name}` |" in body, name


@pytest.mark.parametrize(("kind", "name"), [("source", "demo"), ("storage", "local_fs")])
def test_plugin_tables_are_documented(kind, name):
    spec = discover().get(kind, name)
    body = _section(f"[{kind}.{name}]")
    for field in spec.config_model.model_fields:
        assert f"| `{field}` |" in body, f"{kind}.{name}.{field}"


@pytest.mark.parametrize(("kind", "name", "docs"), [
    ("source", "neptune2", ["docs/neptune2.md", "plugins/neptune2/README.md"]),
    ("source", "neptune3", ["docs/neptune3.md", "plugins/neptune3/README.md"]),
    ("sink", "pluto", ["docs/pluto-mapping.md", "plugins/pluto/README.md"]),
])
def test_shipped_plugin_options_are_documented(kind, name, docs):
    root = Path(__file__).parents[2]
    text = "".join((root / doc).read_text() for doc in docs)
    spec = discover().get(kind, name)
    missing = [field for field in spec.config_model.model_fields if f"`{field}`" not in text]
    assert not missing, f"{kind}.{name} options missing from {docs}: {missing}"


TOML_EXAMPLES = re.findall(r"```toml\n(.*?)```", DOC, flags=re.S)


@pytest.mark.parametrize("example", range(len(TOML_EXAMPLES)))
def test_toml_examples_validate_against_the_installed_plugins(example, tmp_path, monkeypatch, capsys):
    """Each example is a working migrate.toml with what `uv sync` installs: every table names an installed
    plugin and validates against its config model, and so do the plugins `[run]` selects."""
    from migrate_core import cli

    text = TOML_EXAMPLES[example]
    (tmp_path / "migrate.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("MIGRATE"):
            monkeypatch.delenv(name)
    code = cli.main(["config", "show", "-c", str(tmp_path / "migrate.toml")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    registry = discover()
    run = tomllib.loads(text).get("run", {})
    for kind in ("source", "storage", "sink"):
        if kind in run:
            assert run[kind] in registry.names(kind), f"[run] {kind} = {run[kind]!r} is not installed"


def test_readme_quickstart_is_a_whole_migration_ending_in_a_report(migrate, tmp_path):
    """The README's first command, run as written (its `migrate` steps, in-process): a demo export, then the
    report, whose path it prints, with every demo run in it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    first = readme.split("## Quickstart", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    assert "\n" not in first.strip(), "the quickstart's first command is one copy-pasteable line"
    steps = [part.strip().split()[5:] for part in first.split("&&") if " uv run migrate " in part]
    assert steps[0][:3] == ["export", "--source", "demo"] and steps[-1] == ["report"], steps
    for step in steps:
        result = migrate(*step)
        assert result.code == 0, (step, result.out, result.err)
    report = Path(result.out.strip().splitlines()[-1])
    assert report == tmp_path / "migrate-report.html" and report.exists()
    text = report.read_text()
    assert all(f">DEMO-{i}<" in text for i in (1, 2, 3))
