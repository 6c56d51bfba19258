"""Fixtures for the neptune2 source tests: the fake Neptune 2.x server with declared runs, and a source with
short retry budgets so nothing can hang."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from migrate_neptune2 import Neptune2Config
from migrate_neptune2.source import Neptune2Source

from tests.fakes.neptune2 import ArtifactFile, FakeNeptune2Server, File, FileSeriesItem, GitRef, fixtures
from tests.fakes.pluto.fixtures import (  # noqa: F401 - fixture for the Pluto end-to-end test
    fake_pluto,
    pluto_client_env,
    pluto_sink_args,
)

fake_neptune2 = fixtures.fake_neptune2

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z: shows any time-zone shift
FAST: dict[str, Any] = {"retry_budget": 5.0, "retry_backoff": 0.01, "timeout": 10.0, "requests_per_minute": 0}
FAST_SET = [arg for key, value in FAST.items() for arg in ("--set", f"source.neptune2.{key}={value}")]


def make_source(**overrides: Any) -> Neptune2Source:
    return Neptune2Source(Neptune2Config(**{"projects": ["ws/proj"], **FAST, **overrides}))


def declare(srv: FakeNeptune2Server) -> dict[str, Any]:
    """Two runs covering every attribute type, plus a trashed one; returns what was declared."""
    srv.add_project("ws/proj")
    steps = np.array([0, 0.5, 2, 3.25, 1e6], dtype=np.float64)
    values = np.array([0.9, float("nan"), float("inf"), -1.5, 1e-300])
    stamps = T0 + np.array([0, 1000, 1500, 86_400_000, 86_400_001], dtype=np.int64)
    declared = {
        "float": (steps, values, stamps),
        "string": ([1, 2, 7], ["hello", "x" * 5000, "ünïcode ✓"], [T0, T0 + 1, T0 + 2]),
        "file": File(b"\x00weights\x01" * 100, name="ckpt", ext="pt"),
        "file_series": [FileSeriesItem(b"png-a", step=10, timestamp_ms=T0 + 5),
                        FileSeriesItem(b"png-b", step=20.5, timestamp_ms=T0 + 9, mime="image/jpeg")],
        "file_set": {"main.py": b"print(1)\n", "pkg/util.py": b"X = 1\n"},
        "artifact": [ArtifactFile("data/train.csv", file_hash="h1", size=42, metadata={"a": "1"})],
        "started": datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC),
    }
    srv.add_run(
        "ws/proj",
        attrs={"params/lr": 0.1, "params/epochs": 10, "params/use_bn": True, "params/optimizer": "adam",
               "params/started": declared["started"], "params/classes": {"cat", "dog"}, "params/big": 2**40,
               "source_code/git": GitRef(commit_id="abc123", branch="main")},
        tags=["baseline"],
        name="first run",
        float_series={"train/loss": declared["float"]},
        string_series={"logs/stdout": declared["string"]},
        files={"model/ckpt": declared["file"]},
        file_series={"images/preds": declared["file_series"]},
        file_sets={"source_code/files": declared["file_set"]},
        artifacts={"datasets/train": declared["artifact"]},
    )
    srv.add_run("ws/proj", attrs={"params/lr": 0.01, "params/optimizer": "sgd"}, tags=["tuned"],
                float_series={"train/loss": ([0, 1], [0.5, 0.25], [T0, T0 + 10])})
    srv.add_run("ws/proj", attrs={"params/lr": 0.5}, trashed=True)
    return declared


@pytest.fixture
def declared(fake_neptune2: FakeNeptune2Server) -> dict[str, Any]:
    return declare(fake_neptune2)
