"""Re-export rules through the CLI: complete runs are skipped, changed runs come back with --refresh, failed
or interrupted runs are exported again."""

from __future__ import annotations

import pytest

from tests.fakes.neptune3.server import FakeNeptune3
from tests.plugins.neptune3.conftest import FAST_SET, PROJECT, T0

pytestmark = pytest.mark.timeout(90)


def export(migrate, *args: str):
    result = migrate("export", "--source", "neptune3", "-p", PROJECT, *FAST_SET, "--json", *args)
    return result.code, {r["run_id"]: r["status"] for r in result.json()["runs"]}


def test_refresh_exports_only_runs_changed_since(migrate, fake_neptune3: FakeNeptune3):
    a = fake_neptune3.data.run("a", creation_time=T0).metric("m", steps=[0, 1], values=[1.0, 2.0])
    fake_neptune3.data.run("b", creation_time=T0).metric("m", steps=[0], values=[1.0])
    assert export(migrate) == (0, {"a": "ok", "b": "ok"})
    assert export(migrate, "--refresh") == (0, {"a": "skipped", "b": "skipped"})
    a.metric("m", steps=[2], values=[3.0])
    a.run.touch(T0 + 3_600_000)  # the server moves sys/modification_time on every write
    assert export(migrate, "--refresh") == (0, {"a": "ok", "b": "skipped"})
    assert export(migrate) == (0, {"a": "skipped", "b": "skipped"})


def test_failed_run_is_exported_again_next_time(migrate, fake_neptune3: FakeNeptune3):
    fake_neptune3.data.run("a").metric("m", steps=[0, 1], values=[1.0, 2.0])
    fake_neptune3.faults.add(r"/series/float$", "5xx", times=None, status=500)
    code, runs = export(migrate, "--set", "source.neptune3.retry_budget=1")
    assert code == 1 and runs == {"a": "failed"}
    fake_neptune3.faults.clear()
    assert export(migrate) == (0, {"a": "ok"})
    assert export(migrate) == (0, {"a": "skipped"})
