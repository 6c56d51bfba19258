"""Pytest fixtures for the fake Neptune 2.x backend.

Import into a test module (or a conftest you own) with
``from tests.fakes.neptune2.fixtures import fake_neptune2  # noqa: F401``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from .server import FakeNeptune2Server

RETRIES_TIMEOUT = 5


def clear_neptune_client_caches() -> None:
    """Drop the neptune client's per-process HTTP client caches (they are keyed by token, so they only grow)."""
    try:
        from neptune.internal.backends import hosted_client
    except ImportError:  # pragma: no cover - neptune not installed
        return
    for name in (
        "_get_token_client",
        "get_client_config",
        "create_http_client_with_auth",
        "create_backend_client",
        "create_leaderboard_client",
        "create_artifacts_client",
    ):
        fn = getattr(hosted_client, name, None)
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


def apply_client_env(
    monkeypatch: pytest.MonkeyPatch, server: FakeNeptune2Server, retries_timeout: int = RETRIES_TIMEOUT
) -> None:
    """Point the in-process neptune client at ``server``.

    ``NEPTUNE_RETRIES_TIMEOUT`` is read by the client at import time, so the module global is patched too;
    ``TZ`` is handled by the caller because ``time.tzset()`` must run after the variable is restored.
    """
    for key, value in server.client_env(retries_timeout=retries_timeout).items():
        if key != "TZ":
            monkeypatch.setenv(key, value)
    for key in ("NEPTUNE_PROJECT", "NEPTUNE_MODE"):
        monkeypatch.delenv(key, raising=False)
    try:
        import neptune.common.backends.utils as retry_utils
    except ImportError:  # pragma: no cover
        return
    monkeypatch.setattr(retry_utils, "retries_timeout", retries_timeout)


@pytest.fixture
def fake_neptune2(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNeptune2Server]:
    """A started FakeNeptune2Server with the process environment pointing the neptune client at it.

    Sets NEPTUNE_API_TOKEN, OAUTHLIB_INSECURE_TRANSPORT=1, NO_PROXY, TZ=UTC and a 5 s retry budget; stops the
    server and clears the client's caches afterwards.
    """
    server = FakeNeptune2Server().start()
    old_tz = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    try:
        apply_client_env(monkeypatch, server)
        yield server
    finally:
        server.stop()
        clear_neptune_client_caches()
        if old_tz is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old_tz
        time.tzset()
