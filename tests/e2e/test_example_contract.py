"""The example sink passes the SinkContract exactly as docs/writing-a-plugin.md shows it."""

import sys
from pathlib import Path

import pytest
from migrate_core.testing import SinkContract

sys.path.insert(0, str(Path(__file__).parents[2] / "examples" / "ndjson_sink" / "src"))
from migrate_ndjson_sink import NdjsonConfig, NdjsonSink  # noqa: E402


class TestNdjsonSink(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path):
        return NdjsonSink(NdjsonConfig(out_dir=tmp_path / "out"))

    def sink_state(self, sink, project_id, run_id):
        files = list(sink.out_dir.rglob("*.ndjson"))
        return sorted(f.read_text() for f in files) or None
