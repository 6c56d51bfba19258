"""`migrate config show`: every key with its origin, secrets masked, and TOML that reads back to the same."""

import re
import tomllib
import types

from migrate_core import PluginConfig, SinkSpec, cli, hookimpl
from migrate_core.config import RunConfig
from pydantic import Field, SecretStr

from tests import memory_plugin


class VaultConfig(PluginConfig):
    """A third-party sink's table with a secret, an unset key, a list and a nested table."""

    url: str = "https://vault.example"
    token: SecretStr = SecretStr("")
    project: str | None = None
    tags: list[str] = Field(default_factory=lambda: ["a", "b"])
    limits: dict[str, int] = Field(default_factory=lambda: {"rps": 10})


vault_plugin = types.ModuleType("vault_plugin")


@hookimpl
def _register_sinks() -> list[SinkSpec]:
    return [SinkSpec(name="vault", description="test sink with a secret", factory=lambda c: None,
                     config_model=VaultConfig)]


vault_plugin.migrate_register_sinks = _register_sinks


def _dropped_unset(values):
    return {k: _dropped_unset(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}


def test_every_key_with_where_it_came_from(migrate, monkeypatch, tmp_path):
    (tmp_path / "migrate.toml").write_text("[run]\nstrict = true\n\n[source.demo]\nruns = 5\n")
    monkeypatch.setenv("MIGRATE__SOURCE__DEMO__SEED", "9")
    result = migrate("config", "show", "--json", "--set", "run.workers=3", "--data-path", "/tmp/d")
    assert result.code == 0, result.err
    shown = result.json()
    config, origins = shown["config"], shown["origins"]
    # complete: all of [run] and of the chosen plugins' models, set or not
    assert set(config["run"]) == set(RunConfig.model_fields)
    assert config["run"]["sink"] is None and origins["run.sink"] == "default"
    demo_keys = set(config["source"]["demo"])
    assert {"seed", "project", "runs", "points_per_series", "fork", "batch_rows"} <= demo_keys
    assert set(config["storage"]["local_fs"]) >= {"data_path", "files_path", "state_path", "compression"}
    assert config["executor"] == {"name": "threads", "address": None}  # [executor] too, defaults included
    assert set(origins) == {f"run.{k}" for k in config["run"]} | {f"source.demo.{k}" for k in demo_keys} | {
        f"storage.local_fs.{k}" for k in config["storage"]["local_fs"]} | {"executor.name", "executor.address"}
    file = str(tmp_path / "migrate.toml")
    assert origins["run.strict"] == f"file {file} line 2" and origins["source.demo.runs"] == f"file {file} line 5"
    assert origins["source.demo.seed"] == "env MIGRATE__SOURCE__DEMO__SEED" and config["source"]["demo"]["seed"] == 9
    assert origins["run.workers"] == "--set" and origins["storage.local_fs.data_path"] == "flag --data-path"
    assert origins["source.demo.points_per_series"] == "default" and origins["run.source"] == "default"

    text = migrate("config", "show", "--set", "run.workers=3", "--data-path", "/tmp/d").out
    assert re.search(r"^workers = 3 +# --set$", text, re.M)
    assert re.search(r"^seed = 9 +# env MIGRATE__SOURCE__DEMO__SEED$", text, re.M)
    assert re.search(rf"^runs = 5 +# file {re.escape(file)} line 5$", text, re.M)
    assert re.search(r'^data_path = "/tmp/d" +# flag --data-path$', text, re.M)
    assert re.search(r"^# sink = +# default: not set$", text, re.M)  # unset: a commented-out line
    # the TOML reads back to the same effective config (TOML has no null: unset keys are comments)
    assert tomllib.loads(text) == _dropped_unset(config)


def test_the_output_is_a_usable_migrate_toml(migrate, tmp_path):
    shown = migrate("config", "show", "--source", "demo", "--set", "source.demo.runs=2", "--sink", "memory",
                    "--set", 'run.projects=["demo/project"]', "--set", "run.since=2025-01-06T10:00")
    assert shown.code == 0, shown.err
    (tmp_path / "saved.toml").write_text(shown.out)
    again = migrate("config", "show", "--json", "-c", str(tmp_path / "saved.toml")).json()
    first = migrate("config", "show", "--json", "--source", "demo", "--set", "source.demo.runs=2", "--sink", "memory",
                    "--set", 'run.projects=["demo/project"]', "--set", "run.since=2025-01-06T10:00").json()
    assert again["config"] == first["config"]
    assert again["origins"]["source.demo.runs"].startswith(f"file {tmp_path / 'saved.toml'} line ")
    run = migrate("export", "-c", str(tmp_path / "saved.toml"), "--json")  # and a command runs on it
    assert run.code == 0 and [r["run_id"] for r in run.json()["runs"]] == ["DEMO-2"], run.err


def test_secrets_are_masked_and_commented_out(migrate, monkeypatch):
    monkeypatch.setattr(cli, "EXTRA_PLUGINS", [memory_plugin, vault_plugin])
    monkeypatch.setenv("MIGRATE__SINK__VAULT__TOKEN", "s3cr3t-value")
    args = ("config", "show", "--sink", "vault", "--set", "sink.vault.limits.rps=20")
    shown = migrate(*args, "--json")
    assert shown.code == 0, shown.err
    assert "s3cr3t-value" not in shown.out
    vault, origins = shown.json()["config"]["sink"]["vault"], shown.json()["origins"]
    assert vault["token"] == "********" and origins["sink.vault.token"] == "env MIGRATE__SINK__VAULT__TOKEN"
    assert vault["limits"] == {"rps": 20} and origins["sink.vault.limits.rps"] == "--set"
    text = migrate(*args).out
    assert "s3cr3t-value" not in text
    assert re.search(r'^# token = "\*{8}" +# env MIGRATE__SINK__VAULT__TOKEN \(secret, masked\)$', text, re.M)
    assert re.search(r"^\[sink\.vault\.limits\]\nrps = 20 +# --set$", text, re.M)
    parsed = tomllib.loads(text)["sink"]["vault"]
    assert "token" not in parsed and parsed["tags"] == ["a", "b"] and parsed["limits"] == {"rps": 20}
