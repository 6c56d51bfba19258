"""A test-only plugin module: in-memory `memory` source and sink, plus odd sinks for error paths."""

from __future__ import annotations

from migrate_core import SinkSpec, SourceSpec, hookimpl
from migrate_core.api import RunContext, RunReader, Sink
from migrate_core.testing import MemoryRun, MemorySink, MemorySource

DISTRIBUTION = "migrate-tests"
_sink = MemorySink()
SOURCE_RUNS: list[MemoryRun] = []


def reset(**kwargs) -> MemorySink:
    global _sink
    _sink = MemorySink(**kwargs)
    SOURCE_RUNS.clear()
    return _sink


def _make_broken(config):
    raise RuntimeError("cannot reach the target")


class NoVerifySink(Sink):
    name = "noverify"

    def target(self) -> str:
        return "noverify:"

    def load_run(self, reader: RunReader, ctx: RunContext) -> None:
        for batch in reader.batches():
            ctx.report.add(rows=batch.num_rows)


@hookimpl
def migrate_register_sinks() -> list[SinkSpec]:
    return [
        SinkSpec(name="memory", description="in-memory sink for tests", factory=lambda config: _sink),
        SinkSpec(name="broken_sink", description="a sink whose factory fails", factory=_make_broken),
        SinkSpec(name="noverify", description="a sink without verification", factory=lambda c: NoVerifySink()),
    ]


@hookimpl
def migrate_register_sources() -> list[SourceSpec]:
    return [SourceSpec(name="memory", description="runs from tests.memory_plugin.SOURCE_RUNS",
                       factory=lambda config: MemorySource(list(SOURCE_RUNS)))]
