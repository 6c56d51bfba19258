"""The sink contract every migrate sink passes, run against the fake Pluto server."""

from __future__ import annotations

from typing import Any

import pytest
from migrate_core.testing import SinkContract

from tests.fakes.pluto import FakePluto

from .helpers import make_sink, snapshot


class TestPlutoSinkContract(SinkContract):
    @pytest.fixture
    def sink(self, fake_pluto: FakePluto):
        self.fake = fake_pluto
        return make_sink(fake_pluto)

    def sink_state(self, sink: Any, project_id: str, run_id: str) -> Any:
        return snapshot(self.fake, "ws-proj", f"memory:{project_id}:{run_id}")
