"""Pytest fixture and environment helper for the fake Neptune 2.x backend.

In a test module::

    from tests.fakes.neptune2 import fixtures
    fake_neptune2 = fixtures.fake_neptune2   # makes the fixture visible in the module

Outside pytest (benchmarks)::

    with FakeNeptune2Server() as srv, neptune2_client_env(srv):
        ...
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from ..common import restore_env
from .server import FakeNeptune2Server

RETRIES_TIMEOUT = 5
_CLEARED_VARS = ("NEPTUNE_PROJECT", "NEPTUNE_MODE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


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


@contextmanager
def neptune2_client_env(server: FakeNeptune2Server, retries_timeout: int = RETRIES_TIMEOUT) -> Iterator[None]:
    """Point the in-process neptune client at ``server`` and restore everything afterwards.

    Sets the variables of ``server.client_env()`` (token, OAUTHLIB_INSECURE_TRANSPORT, NO_PROXY, TZ=UTC with
    ``time.tzset()``), removes NEPTUNE_PROJECT/NEPTUNE_MODE/proxies, and patches the client's retry budget:
    ``NEPTUNE_RETRIES_TIMEOUT`` is read once when neptune is imported, so setting the variable is not enough.
    """
    env = server.client_env(retries_timeout=retries_timeout)
    saved = {key: os.environ.get(key) for key in (*env, *_CLEARED_VARS)}
    retry_utils = None
    old_retries = None
    try:
        import neptune.common.backends.utils as retry_utils

        old_retries = retry_utils.retries_timeout
    except ImportError:  # pragma: no cover - neptune not installed
        pass
    try:
        for key in _CLEARED_VARS:
            os.environ.pop(key, None)
        os.environ.update(env)
        time.tzset()
        if retry_utils is not None:
            retry_utils.retries_timeout = retries_timeout
        yield
    finally:
        restore_env(saved)
        time.tzset()
        if retry_utils is not None:
            retry_utils.retries_timeout = old_retries
        clear_neptune_client_caches()


@contextmanager
def stop_neptune_containers_on_exit() -> Iterator[list[Any]]:
    """Stop every neptune Run/Project/Model/ModelVersion started inside the block.

    Containers left open are otherwise stopped by neptune's atexit hook, which logs into streams pytest has
    already closed ("--- Logging error ---").  Wraps ``MetadataContainer._startup`` at class level, so it works
    however the code under test imports ``neptune``.
    """
    try:
        from neptune.metadata_containers.metadata_container import MetadataContainer
    except ImportError:  # pragma: no cover - neptune not installed
        yield []
        return
    started: list[Any] = []
    original = MetadataContainer._startup

    def recording_startup(self: Any, *args: Any, **kwargs: Any) -> Any:
        started.append(self)
        return original(self, *args, **kwargs)

    MetadataContainer._startup = recording_startup  # type: ignore[method-assign]
    try:
        yield started
    finally:
        MetadataContainer._startup = original  # type: ignore[method-assign]
        for container in reversed(started):
            with contextlib.suppress(Exception):
                container.stop()


@pytest.fixture
def fake_neptune2() -> Iterator[FakeNeptune2Server]:
    """A started, empty FakeNeptune2Server with the process environment pointing the neptune client at it.

    Function-scoped: every test gets its own server, port, token and data.  Afterwards the neptune containers
    opened during the test are stopped, the server is stopped and the environment restored.
    """
    server = FakeNeptune2Server().start()
    try:
        with neptune2_client_env(server), stop_neptune_containers_on_exit():
            yield server
    finally:
        server.stop()
