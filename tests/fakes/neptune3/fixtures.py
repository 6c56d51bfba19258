"""Pytest fixtures for the fake Neptune 3.x backend.

Import them into a test module (no conftest changes needed)::

    from tests.fakes.neptune3 import fixtures

    fake_neptune3 = fixtures.fake_neptune3  # binding it by name makes pytest find it (and keeps ruff quiet)

    def test_something(fake_neptune3):
        fake_neptune3.data.run("r1", configs={"lr": 0.1})
        import neptune_query.runs as nq_runs
        assert list(nq_runs.list_runs()) == ["r1"]

``fake_neptune3`` is function-scoped: a fresh server with its own port and token, and ``client_env()``
applied to ``os.environ`` (so neptune-scale's spawned sync process inherits it) for the duration of the test.
For data shared by many tests, build a module-scoped fixture on ``running_fake_neptune3()``, or use
``fake_neptune3_golden`` (module-scoped): the runs of ``golden.py`` written with the real neptune-scale.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator

import pytest

from ..common import apply_env, restore_env
from .server import FakeNeptune3


def reload_neptune_query_context() -> None:
    """neptune-query reads NEPTUNE_PROJECT / NEPTUNE_API_TOKEN once, at import; re-read them now."""
    try:
        from neptune_query.internal.context import set_context
    except ImportError:  # pragma: no cover - neptune-query not installed
        return
    set_context()


def forget_neptune_query_clients() -> None:
    """neptune-query caches one HTTP client per API token for the whole process; drop those of a stopped fake."""
    try:
        from neptune_query.internal.client import clear_cache
    except ImportError:  # pragma: no cover - older layout or not installed
        return
    clear_cache()


@contextlib.contextmanager
def running_fake_neptune3(
    project: str = "fake-workspace/fake-project", **kwargs: object
) -> Iterator[FakeNeptune3]:
    """Start a fake, export its client environment, and undo both on exit."""
    with tempfile.TemporaryDirectory(prefix="neptune3-fake-logs-") as log_dir:
        fake = FakeNeptune3(project, **kwargs).start()  # type: ignore[arg-type]
        previous = apply_env(fake.client_env(log_directory=log_dir))
        reload_neptune_query_context()
        try:
            yield fake
        finally:
            restore_env(previous)
            reload_neptune_query_context()
            fake.stop()
            forget_neptune_query_clients()


@pytest.fixture(scope="module")
def fake_neptune3_golden() -> Iterator[FakeNeptune3]:
    """A fake holding the golden runs of ``golden.py``, written once per module with the real neptune-scale.

    Read-only by convention: tests that add data or faults should use ``fake_neptune3`` instead.
    """
    pytest.importorskip("neptune_scale")
    from .golden import write_golden_data

    with running_fake_neptune3(project="golden-ws/golden-proj") as fake:
        write_golden_data()
        yield fake


@pytest.fixture
def fake_neptune3() -> Iterator[FakeNeptune3]:
    """A started ``FakeNeptune3`` with NEPTUNE_API_TOKEN / NEPTUNE_PROJECT & co. pointing at it."""
    with running_fake_neptune3() as fake:
        yield fake
