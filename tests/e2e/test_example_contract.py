"""The example sink passes the SinkContract exactly as docs/writing-a-plugin.md shows it."""

import json
import sys
from pathlib import Path

import pytest
from migrate_core.testing import ReadBack, SinkContract

sys.path.insert(0, str(Path(__file__).parents[2] / "examples" / "ndjson_sink" / "src"))
from migrate_ndjson_sink import NdjsonConfig, NdjsonSink  # noqa: E402


class TestNdjsonSink(SinkContract):
    @pytest.fixture
    def sink(self, tmp_path):
        return NdjsonSink(NdjsonConfig(out_dir=tmp_path / "out"))

    def sink_state(self, sink, project_id, run_id):
        files = list(sink.out_dir.rglob("*.ndjson"))
        return sorted(f.read_text() for f in files) or None

    def read_back(self, sink, project_id, run_id):
        path = sink._path(type("R", (), {"project_id": project_id, "run_id": run_id})())
        if not path.exists():
            return None
        rows, files = [], []
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            file_path = (row.get("file_value") or {}).get("path")
            if file_path:
                files.append((row["attribute_path"], (path.with_suffix(".files") / file_path).read_bytes()))
                continue
            value = next((v for k, v in row.items() if k.endswith("_value")), None)
            rows.append((row["attribute_path"], row.get("step"), value))
        return ReadBack(rows, files)
