"""An out-of-tree migrate sink: one NDJSON file per run, files copied beside it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from migrate_core import PluginConfig, SinkSpec, hookimpl
from migrate_core.api import RunContext, RunReader, Sink, VerifyResult
from migrate_core.errors import UnsafePathError
from migrate_core.format import sanitize_path_part
from migrate_core.manifest import json_value
from pydantic import Field

__version__ = "0.1.0"


class NdjsonConfig(PluginConfig):
    out_dir: Path = Field(Path("./ndjson"), description="Where the .ndjson files go.")


class NdjsonSink(Sink):
    name = "ndjson"

    def __init__(self, config: NdjsonConfig) -> None:
        self.out_dir = config.out_dir

    def target(self) -> str:
        return f"ndjson:{self.out_dir.resolve()}"

    def _path(self, reader: RunReader) -> Path:
        return self.out_dir / sanitize_path_part(reader.project_id) / f"{sanitize_path_part(reader.run_id)}.ndjson"

    def load_run(self, reader: RunReader, ctx: RunContext) -> None:
        path = self._path(reader)
        files_dir = path.with_suffix(".files")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".ndjson.tmp")
        with tmp.open("w", encoding="utf-8") as out:  # whole file rewritten: loading twice is idempotent
            for batch in reader.batches():
                ctx.check_cancelled()
                for row in batch.to_pylist():
                    values = {k: json_value(v) for k, v in row.items() if v is not None}
                    out.write(json.dumps(values, ensure_ascii=False) + "\n")
                    file_path = (row.get("file_value") or {}).get("path")
                    if file_path:
                        self._copy(reader, file_path, files_dir, ctx)
                ctx.report.add(rows=batch.num_rows)
                ctx.progress(batch.num_rows)
        os.replace(tmp, path)

    def _copy(self, reader: RunReader, file_path: str, files_dir: Path, ctx: RunContext) -> None:
        try:
            source = reader.open_file(file_path)
        except UnsafePathError:
            ctx.report.lost("files with escaping paths")
            return
        except (FileNotFoundError, IsADirectoryError):
            ctx.report.lost("files missing from storage")
            return
        target = files_dir / file_path
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out)
        ctx.report.add(files=1, bytes=target.stat().st_size)

    def verify_run(self, reader: RunReader, ctx: RunContext) -> VerifyResult:
        path = self._path(reader)
        if not path.exists():
            return VerifyResult(reader.project_id, reader.run_id, False, [f"{path} is missing"])
        with path.open(encoding="utf-8") as handle:
            lines = sum(1 for _ in handle)
        expected = (reader.manifest or {}).get("rows")
        ok = expected is None or expected == lines
        mismatches = [] if ok else [f"rows: expected {expected}, found {lines}"]
        return VerifyResult(reader.project_id, reader.run_id, ok, mismatches, {"rows": lines})


@hookimpl
def migrate_register_sinks() -> list[SinkSpec]:
    return [SinkSpec(name="ndjson", description="One NDJSON file per run (example plugin)",
                     factory=NdjsonSink, config_model=NdjsonConfig)]
