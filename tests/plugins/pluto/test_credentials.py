"""The API key `pluto login` stored is found without pluto-ml installed in the plugin: the real `pluto login`
(pluto-ml, in the dev group) logs in against the fake, then the sink reads the key from where it was put."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from migrate_pluto import credentials
from migrate_pluto.settings import PlutoConfig


@pytest.fixture
def logged_in(fake_pluto, tmp_path, monkeypatch):
    home = tmp_path / "login-home"
    home.mkdir()
    env = fake_pluto.client_env(home=home, pluto_dir=tmp_path / "login-pluto")
    del env["PLUTO_API_KEY"]  # the key comes from the command line, as a user types it
    base = {k: v for k, v in os.environ.items() if k not in ("PLUTO_API_KEY", "MLOP_API_TOKEN", "XDG_DATA_HOME")}
    subprocess.run([sys.executable, "-m", "pluto", "login", fake_pluto.api_key], env={**base, **env},
                   check=True, capture_output=True, timeout=60)
    monkeypatch.setenv("HOME", str(home))
    for name in ("PLUTO_API_KEY", "MLOP_API_TOKEN", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    return fake_pluto.api_key


def test_the_key_pluto_login_stored_is_used(logged_in):
    assert credentials.api_key(PlutoConfig()) == logged_in


@pytest.mark.skipif(sys.platform == "darwin", reason="on macOS pluto-ml keeps the key in the system keyring")
def test_a_system_keyring_does_not_hide_the_stored_key(logged_in):
    """pluto-ml writes to keyrings.alt's plaintext file on every platform but macOS, even when a system
    keyring exists; so that file is where we read, not the system keyring's empty entry."""
    import keyring
    from keyring.backend import KeyringBackend

    class Empty(KeyringBackend):
        priority = 10  # type: ignore[assignment]

        def get_password(self, service, username):
            return None

        def set_password(self, service, username, password):
            raise NotImplementedError

        def delete_password(self, service, username):
            raise NotImplementedError

    previous = keyring.get_keyring()
    keyring.set_keyring(Empty())
    try:
        assert credentials.api_key(PlutoConfig()) == logged_in
    finally:
        keyring.set_keyring(previous)


def test_an_env_key_wins_over_the_stored_one(logged_in, monkeypatch):
    monkeypatch.setenv("PLUTO_API_KEY", "mlpi_from_env")
    assert credentials.api_key(PlutoConfig()) == "mlpi_from_env"
