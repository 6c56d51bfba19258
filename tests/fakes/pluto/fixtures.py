"""Pytest fixtures for the fake Pluto server.

Import them into a test module (no conftest edits needed)::

    from tests.fakes.pluto.fixtures import fake_pluto, pluto_client_env  # noqa: F401
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .server import FakePluto


@pytest.fixture
def fake_pluto() -> Iterator[FakePluto]:
    """A started fake on an ephemeral 127.0.0.1 port, stopped after the test."""
    with FakePluto() as srv:
        yield srv


@pytest.fixture(scope="module")
def fake_pluto_module() -> Iterator[FakePluto]:
    """One fake shared by a whole test module (state accumulates across its tests)."""
    with FakePluto() as srv:
        yield srv


@pytest.fixture
def pluto_client_env(fake_pluto: FakePluto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakePluto:
    """Point the unmodified ``pluto-ml`` client (and its sync subprocess) at ``fake_pluto``.

    Sets the env from ``client_env()`` with ``HOME`` and ``PLUTO_DIR`` under ``tmp_path`` (the
    client writes its keyring file, login marker and ``sync.db`` there), and patches
    ``pluto.auth.LOGIN_MARKER_PATH``, which the client computes once at import time.
    Returns the fake for convenience.
    """
    home = tmp_path / "home"
    run_dir = tmp_path / "pluto"
    home.mkdir(exist_ok=True)
    run_dir.mkdir(exist_ok=True)
    for key, value in fake_pluto.client_env(home=home, pluto_dir=run_dir).items():
        monkeypatch.setenv(key, value)
    for key in ("PLUTO_RUN_ID", "MLOP_RUN_ID", "PLUTO_PROJECT", "XDG_DATA_HOME"):
        monkeypatch.delenv(key, raising=False)
    auth = sys.modules.get("pluto.auth")
    if auth is not None:
        monkeypatch.setattr(auth, "LOGIN_MARKER_PATH", str(home / ".pluto" / ".login_ok"))
    return fake_pluto


@pytest.fixture
def pluto_sink_args(pluto_client_env: FakePluto) -> list[str]:
    """CLI `--set` flags pointing the Pluto sink at the fake (credentials through ``pluto_client_env``), with
    short retries so fault tests stay fast."""
    url = pluto_client_env.url
    return ["--set", f"sink.pluto.url_api={url}", "--set", f"sink.pluto.url_ingest={url}",
            "--set", f"sink.pluto.url_py={url}", "--set", "sink.pluto.retries=2", "--set", "sink.pluto.backoff=0.01"]
