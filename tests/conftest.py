"""Shared fixtures: run the CLI in-process with test-only plugins (in-memory sink) registered."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from migrate_core import cli

from tests import memory_plugin


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def memory_sink() -> memory_plugin.MemorySink:
    """The instance the `memory` sink plugin hands out; fresh for every test."""
    return memory_plugin.reset()


@pytest.fixture
def migrate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path, memory_sink
            ) -> Callable[..., CliResult]:
    """`migrate("export", "--source", "demo")` runs the real CLI in this process, in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "EXTRA_PLUGINS", [memory_plugin])
    for name in list(__import__("os").environ):
        if name.startswith("MIGRATE__") or name == "MIGRATE_DISABLE_PLUGINS":
            monkeypatch.delenv(name)

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = cli.main(["--log-format", "json", *args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def pytest_unconfigure(config: pytest.Config) -> None:
    """SDK atexit hooks (neptune's container shutdown) log into streams pytest has closed by then; keep
    their "--- Logging error ---" tracebacks from burying the test summary, which must be the last line."""
    import logging

    logging.raiseExceptions = False
