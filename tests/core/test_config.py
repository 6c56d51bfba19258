import pytest
from migrate_core import config as cfg
from migrate_core.errors import ConfigError


def test_precedence_cli_over_env_over_file_over_defaults(tmp_path):
    path = tmp_path / "migrate.toml"
    path.write_text('[run]\nworkers = 2\nsink = "memory"\n[source.demo]\nruns = 5\nseed = 7\n')
    env = {"MIGRATE__SOURCE__DEMO__RUNS": "6", "MIGRATE__RUN__WORKERS": "3"}
    config = cfg.load(path, sets=["source.demo.runs=8"], flags={"run.workers": 9}, env=env)
    assert config.run_config().workers == 9
    assert config.table("source", "demo") == {"runs": 8, "seed": 7}
    config = cfg.load(path, env=env)
    assert config.table("source", "demo")["runs"] == 6 and config.run_config().workers == 3
    assert cfg.load(path, env={}).run_config().workers == 2
    assert cfg.load(None, env={}, cwd=tmp_path / "none").run_config().workers == 4


def test_default_file_is_picked_up_from_cwd(tmp_path):
    (tmp_path / "migrate.toml").write_text("[run]\nworkers = 5\n")
    assert cfg.load(None, env={}, cwd=tmp_path).run_config().workers == 5


def test_unknown_key_names_dotted_path_and_line(tmp_path):
    from migrate_core.demo import DemoConfig

    path = tmp_path / "m.toml"
    path.write_text('# comment\n[source.demo]\nruns = 2\nrnus = 3\n')
    config = cfg.load(path, env={})
    with pytest.raises(ConfigError, match=r"unknown config key source\.demo\.rnus \(.*m\.toml line 4\); valid keys: .*runs"):
        cfg.validate(config, DemoConfig, ("source", "demo"))


def test_bad_value_names_path_line_and_value(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[run]\nworkers = "many"\n')
    with pytest.raises(ConfigError, match=r"config run\.workers \(.*m\.toml line 2\): .*integer.*\(got 'many'\)"):
        cfg.load(path, env={}).run_config()


def test_bad_value_from_set_and_env_says_so():
    with pytest.raises(ConfigError, match=r"run\.workers \(--set\)"):
        cfg.load(None, sets=["run.workers=0"], env={}, cwd=None).run_config()
    with pytest.raises(ConfigError, match=r"run\.runs \(env MIGRATE__RUN__RUNS\): .*regular expression"):
        cfg.load(None, env={"MIGRATE__RUN__RUNS": "(["}).run_config()


def test_malformed_toml(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[run\nworkers = 1\n")
    with pytest.raises(ConfigError, match=r"m\.toml: malformed TOML: .*line 1"):
        cfg.load(path, env={})


def test_unknown_table_and_bad_set(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text("[runn]\nworkers = 1\n")
    with pytest.raises(ConfigError, match=r"unknown config table \[runn\] \(.*line 1\)"):
        cfg.load(path, env={})
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        cfg.load(None, sets=["novalue"], env={})
    with pytest.raises(ConfigError, match="does not exist"):
        cfg.load(tmp_path / "missing.toml", env={})


def test_values_parse_as_toml_literals():
    assert cfg.parse_value("3") == 3
    assert cfg.parse_value("true") is True
    assert cfg.parse_value('["a", "b"]') == ["a", "b"]
    assert cfg.parse_value("plain text") == "plain text"


def test_secrets_are_masked():
    from pydantic import SecretStr

    shown = cfg.masked({"sink": {"pluto": {"api_key": "abc", "api_key_env": "PLUTO_API_KEY", "token": SecretStr("x")}}})
    assert shown == {"sink": {"pluto": {"api_key": "********", "api_key_env": "PLUTO_API_KEY", "token": "********"}}}
