"""Fixtures for the Pluto sink tests: the fake server, a client environment that can never reach the
internet, and a sink pointed at the fake with short retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.pluto import FakePluto
from tests.fakes.pluto.fixtures import fake_pluto  # noqa: F401 - re-exported fixture


@pytest.fixture(autouse=True)
def pluto_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_pluto: FakePluto) -> Iterator[FakePluto]:  # noqa: F811
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    for key, value in fake_pluto.client_env(home=home, pluto_dir=tmp_path / "pluto").items():
        monkeypatch.setenv(key, value)
    for key in ("PLUTO_RUN_ID", "PLUTO_PROJECT", "MLOP_API_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    yield fake_pluto
