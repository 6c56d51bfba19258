"""Packaging: the entry point registers the sink, and importing the plugin stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest
from migrate_core.errors import ConfigError


def test_plugins_list_shows_the_pluto_sink(migrate):
    result = migrate("plugins", "list", "--json")
    sinks = {row["name"]: row for row in result.json()["sinks"]}
    assert sinks["pluto"]["distribution"] == "migrate-ml-pluto"


def test_importing_the_plugin_does_not_import_the_loader():
    # pluto-ml's .pth hook already imports `pluto` and `httpx` at interpreter start; we add nothing heavy
    code = ("import sys; before = set(sys.modules); import migrate_pluto; "
            "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
            "('httpx', 'pyarrow', 'numpy', 'keyring') or m in ('migrate_pluto.sink', 'migrate_pluto.loader')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_config_keys_are_refused(migrate):
    result = migrate("load", "--sink", "pluto", "--set", "sink.pluto.api_key=mlpi_secret")
    assert result.code == 2
    assert "unknown config key sink.pluto.api_key" in result.err and "mlpi_secret" not in result.err
    assert ConfigError.exit_code == 2


@pytest.mark.parametrize("value", ["0", "-1"])
def test_invalid_values_name_their_key(migrate, value):
    result = migrate("load", "--sink", "pluto", "--set", f"sink.pluto.timeout={value}")
    assert result.code == 2 and "sink.pluto.timeout" in result.err
