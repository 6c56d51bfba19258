"""The sink contract every migrate sink passes, run against the fake Pluto server."""

from __future__ import annotations

from typing import Any

import pytest
from migrate_core.testing import ReadBack, SinkContract

from tests.fakes.pluto import FakePluto

from .helpers import make_sink, snapshot


class TestPlutoSinkContract(SinkContract):
    @pytest.fixture
    def sink(self, fake_pluto: FakePluto):
        self.fake = fake_pluto
        return make_sink(fake_pluto)

    def sink_state(self, sink: Any, project_id: str, run_id: str) -> Any:
        return snapshot(self.fake, "ws-proj", f"memory:{project_id}:{run_id}")

    def read_back(self, sink: Any, project_id: str, run_id: str) -> ReadBack | None:
        """Parameters from the run's config (nested by `/`, less our `_migrate` record), metric points with
        Pluto's integer steps scaled back, files by their log name."""
        with self.fake.state.lock:
            run = self.fake.state.find_external("ws-proj", f"memory:{project_id}:{run_id}")
            if run is None:
                return None
            scale = run.config["_migrate"]["step_scale"]
            rows = []

            def flatten(prefix: str, node: Any) -> None:
                for key, value in node.items():
                    if isinstance(value, dict):
                        flatten(f"{prefix}{key}/", value)
                    else:
                        rows.append((f"{prefix}{key}", None, value))

            flatten("", {k: v for k, v in run.config.items() if k != "_migrate"})
            for name in run.metrics:
                rows += [(name, step / scale, value) for step, (value, _) in run.metric(name).items()]
            files = [(f.log_name, f.content) for f in run.files]
        return ReadBack(rows, files)
