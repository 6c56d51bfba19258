"""Fixtures for the neptune3 source tests: the fake Neptune 3.x backend with builder-declared runs, and a
source with short retry budgets so nothing can hang."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from migrate_neptune3 import Neptune3Config
from migrate_neptune3.source import Neptune3Source

from tests.fakes.neptune3 import fixtures
from tests.fakes.neptune3.server import FakeNeptune3
from tests.fakes.pluto.fixtures import (  # noqa: F401 - fixture for the Pluto end-to-end tests
    fake_pluto,
    pluto_client_env,
    pluto_sink_args,
)

fake_neptune3 = fixtures.fake_neptune3

PROJECT = "fake-workspace/fake-project"
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
FAST: dict[str, Any] = {"retry_budget": 3.0}
FAST_SET = [arg for key, value in FAST.items() for arg in ("--set", f"source.neptune3.{key}={value}")]


def make_source(**overrides: Any) -> Neptune3Source:
    return Neptune3Source(Neptune3Config(**{"projects": [PROJECT], **FAST, **overrides}))


def forget_run(fake: FakeNeptune3, custom_id: str) -> None:
    """Delete a run from the fake's store, as if someone removed it on the server."""
    with fake.store.lock:
        project = fake.store.project(PROJECT)
        run = project.by_custom_id.pop(custom_id)
        project.by_sys_id.pop(run.sys_id, None)
        project.runs.remove(run)


def declare(fake: FakeNeptune3) -> dict[str, Any]:
    """Runs covering every attribute type: a full run, a run without custom id, a fork and an archived run."""
    steps = np.array([0.0, 0.5, 2.0, 3.25, 1e6, 1e6 + 0.000001], dtype=np.float64)
    values = np.array([0.9, float("nan"), float("inf"), -1.5, 1e-300, -0.0])
    stamps = T0 + np.array([0, 1000, 1500, 86_400_000, 86_400_001, 86_400_002], dtype=np.int64)
    declared: dict[str, Any] = {
        "float": (steps, values, stamps),
        "string": ([1.0, 2.0, 7.5], ["hello", "x" * 5000, "ünïcode ✓"], [T0, T0 + 1, T0 + 2]),
        "hist": ([1.0, 2.0], [([0.0, 1.0, 2.0], [3.0, 4.0]), ([-1.0, 0.5, 1e300], [0.0, 7.0])], [T0 + 3, T0 + 4]),
        "file": b"\x00weights\x01" * 100,
        "file_series": ([10.0, 20.5], [b"png-a", b"png-b"], [T0 + 5, T0 + 9]),
    }
    run = fake.data.run("run-a", experiment_name="exp-a", tags=["baseline", "ünï"],
                        configs={"params/lr": 0.1, "params/epochs": 10, "params/big": 2**40, "params/amp": True,
                                 "params/optimizer": "adam", "params/classes": ["cat", "dog"]})
    run.metric("train/loss", steps=steps, values=values, timestamps=stamps)
    s_steps, s_values, s_stamps = declared["string"]
    run.string_series("logs/stdout", steps=s_steps, values=s_values, timestamps=s_stamps)
    h_steps, h_values, h_stamps = declared["hist"]
    run.histogram_series("hist/w", steps=h_steps, histograms=h_values, timestamps=h_stamps)
    run.file("model/ckpt", declared["file"], name="ckpt.pt")
    f_steps, f_contents, f_stamps = declared["file_series"]
    run.file_series("images/preds", steps=f_steps, contents=f_contents, name="pred.png", timestamps=f_stamps)
    anon = fake.data.run(None, configs={"params/lr": 0.01})
    anon.metric("train/loss", steps=[0, 1], values=[0.5, 0.25], timestamps=[T0, T0 + 10])
    declared["anon_id"] = anon.sys_id
    fork = fake.data.run("run-fork", fork_of="run-a", fork_step=2.0)
    fork.metric("train/loss", steps=[2.5, 3.0], values=[7.0, 8.0], timestamps=[T0 + 20, T0 + 30])
    fake.data.run("run-archived", configs={"params/lr": 0.5}, archived=True)
    return declared


@pytest.fixture
def declared(fake_neptune3: FakeNeptune3) -> dict[str, Any]:
    return declare(fake_neptune3)
