"""In-memory source, storage and sink: real implementations of the interfaces, just without I/O."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from ..api import (
    RunContext,
    RunReader,
    RunReport,
    RunWriter,
    Selection,
    Sink,
    Source,
    SourceRun,
    Storage,
    StoredRun,
    VerifyResult,
)
from ..errors import UnsafePathError
from ..format import SCHEMA, conform, drop_absent, make_batch, plain
from ..manifest import AttributeStats, finish_manifest, new_manifest
from ..paths import safe_relative, safe_segment


@dataclass
class MemoryRun:
    """A run for MemorySource: its rows (canonical schema), files to attach, and an optional fork parent."""

    project_id: str
    run_id: str
    table: pa.Table
    files: list[tuple[str, str, bytes]] = field(default_factory=list)  # (attribute_path, name, data)
    parent_run_id: str | None = None


class MemorySource(Source):
    name = "memory"
    version = "0"

    def __init__(self, runs: Iterable[MemoryRun], fail: Mapping[str, Exception] | None = None) -> None:
        self.runs = list(runs)
        self.fail = dict(fail or {})

    def list_runs(self, selection: Selection) -> Iterator[SourceRun]:
        for run in self.runs:
            if selection.wants_project(run.project_id) and selection.wants_run(run.run_id):
                yield SourceRun(run.project_id, run.run_id, parent_run_id=run.parent_run_id,
                                estimated_rows=run.table.num_rows)

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        data = next(r for r in self.runs if (r.project_id, r.run_id) == run.key)
        if run.run_id in self.fail:
            raise self.fail[run.run_id]
        for batch in data.table.to_batches(max_chunksize=1000):
            ctx.check_cancelled()
            writer.write(batch)
            ctx.report.add(rows=batch.num_rows)
        for attribute_path, name, content in data.files:
            stored = writer.write_file(attribute_path, name, content)
            writer.write(make_batch(run.project_id, run.run_id, attribute_path, "file", 1,
                                    file_value=[{"path": stored}]))
            ctx.report.add(rows=1, files=1, bytes=len(content))


class _MemoryWriter(RunWriter):
    def __init__(self, storage: MemoryStorage, project_id: str, run_id: str, source: dict[str, Any]) -> None:
        self.storage, self.project_id, self.run_id = storage, project_id, run_id
        self.tables: list[pa.Table] = []
        self.files: dict[str, bytes] = {}
        self.stats = AttributeStats()
        self.manifest = new_manifest(project_id, run_id, source, "memory")

    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        table = conform(data)
        self.stats.update(table)
        self.tables.append(table)

    def write_file(self, attribute_path: str, name: str, data: bytes | IO[bytes] | Path) -> str:
        if isinstance(data, bytes | bytearray):
            content = bytes(data)
        elif isinstance(data, str | Path):
            content = Path(data).read_bytes()
        else:
            content = data.read()
        path = f"{safe_segment(self.run_id)}/{safe_relative(attribute_path)}/{safe_segment(name)}"
        while path in self.files:
            path += "-1"
        self.files[path] = content
        return path

    def commit(self, lineage: Mapping[str, Any] | None = None, report: RunReport | None = None) -> None:
        table = pa.concat_tables(self.tables) if self.tables else SCHEMA.empty_table()
        files = [{"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()} for p, b in self.files.items()]
        manifest = finish_manifest(self.manifest, self.stats, [{"name": "memory", "rows": table.num_rows}], files,
                                   dict(lineage) if lineage else None, report.as_dict() if report else None)
        with self.storage.lock:
            self.storage.runs[(self.project_id, self.run_id)] = (table, dict(self.files), manifest)
            self.storage.partial.discard((self.project_id, self.run_id))

    def abort(self) -> None:
        with self.storage.lock:
            self.storage.partial.add((self.project_id, self.run_id))


class MemoryStorage(Storage):
    name = "memory"

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = Path(state_dir)
        self.lock = threading.Lock()
        self.runs: dict[tuple[str, str], tuple[pa.Table, dict[str, bytes], dict[str, Any]]] = {}
        self.partial: set[tuple[str, str]] = set()

    def list_runs(self, projects: Iterable[str] = ()) -> list[StoredRun]:
        wanted = set(projects)
        keys = sorted(self.runs.keys() | self.partial)
        return [self._stored(k) for k in keys if not wanted or k[0] in wanted]

    def _stored(self, key: tuple[str, str]) -> StoredRun:
        if key in self.runs and key not in self.partial:
            return StoredRun(key[0], key[1], True, self.runs[key][2], parts=("memory",))
        return StoredRun(key[0], key[1], False, None, problem="interrupted export")

    def get_run(self, project_id: str, run_id: str) -> StoredRun | None:
        key = (project_id, run_id)
        return self._stored(key) if key in self.runs or key in self.partial else None

    def begin_run(self, project_id: str, run_id: str, source: Mapping[str, Any]) -> RunWriter:
        with self.lock:
            self.partial.add((project_id, run_id))
        return _MemoryWriter(self, project_id, run_id, dict(source))

    def read(self, run: StoredRun, columns: Iterable[str] | None = None, batch_rows: int = 262_144
             ) -> Iterator[pa.RecordBatch]:
        table = self.runs[run.key][0]
        if columns is not None:
            table = table.select(list(columns))
        yield from table.to_batches(max_chunksize=batch_rows)

    def open_file(self, run: StoredRun, path: str) -> IO[bytes]:
        if path.startswith("/") or ".." in path.split("/"):
            raise UnsafePathError(f"refused file path {path!r}")
        return io.BytesIO(self.runs[run.key][1][path])

    def iter_files(self, run: StoredRun, path: str) -> Iterator[tuple[str, int]]:
        self.open_file(run, path) if path in self.runs[run.key][1] else None  # same path checks
        files = self.runs[run.key][1]
        for name in sorted(files):
            if name == path or name.startswith(path.rstrip("/") + "/"):
                yield name, len(files[name])

    def lineage(self, run: StoredRun) -> dict[str, Any]:
        return dict((run.manifest or {}).get("lineage") or {})

    def state_dir(self) -> Path:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        return self._state_dir


class MemorySink(Sink):
    """Keeps loaded runs in a dict; loading a run again replaces it, so it is idempotent by construction."""

    name = "memory"
    version = "0"

    def __init__(self, fail: Mapping[str, Exception] | None = None) -> None:
        self.loaded: dict[tuple[str, str], dict[str, Any]] = {}
        self.load_calls: list[tuple[str, str]] = []
        self.fail = dict(fail or {})
        self.lock = threading.Lock()

    def target(self) -> str:
        return "memory:"

    def load_run(self, reader: RunReader, ctx: RunContext) -> None:
        key = (reader.project_id, reader.run_id)
        with self.lock:
            self.load_calls.append(key)
            parent = reader.lineage.get("parent_run_id")
            if parent and (reader.project_id, parent) not in self.loaded:
                raise RuntimeError(f"fork {reader.run_id} loaded before its parent {parent}")
        if reader.run_id in self.fail:
            raise self.fail[reader.run_id]
        batches = list(reader.batches())
        table = plain(pa.Table.from_batches(batches)) if batches else SCHEMA.empty_table()
        table, absent = drop_absent(table)
        files = {}
        for path in table.column("file_value").combine_chunks().field("path").to_pylist():
            if path is None:
                continue
            try:
                with reader.open_file(path) as handle:
                    files[path] = handle.read()
            except UnsafePathError:
                ctx.report.lost("files with escaping paths")
        ctx.report.add(rows=table.num_rows, files=len(files), bytes=sum(len(b) for b in files.values()))
        with self.lock:
            self.loaded[key] = {"table": table, "files": files, "parent": reader.lineage.get("parent_run_id")}

    def verify_run(self, reader: RunReader, ctx: RunContext) -> VerifyResult:
        key = (reader.project_id, reader.run_id)
        result = VerifyResult(reader.project_id, reader.run_id, ok=True)
        if key not in self.loaded:
            return VerifyResult(reader.project_id, reader.run_id, False, ["run missing in sink"])
        expected = (reader.manifest or {}).get("rows")
        got = self.loaded[key]["table"].num_rows
        result.checked["rows"] = got
        if expected is not None and expected != got:
            result.ok = False
            result.mismatches.append(f"rows: expected {expected}, got {got}")
        return result


def sample_runs(project_id: str = "ws/proj", n: int = 3, points: int = 50) -> list[MemoryRun]:
    """Small runs with parameters, a float series with decimal steps, strings and a file; run 3 forks run 1."""
    import numpy as np

    from ..format import steps_from_units, timestamps_ms

    runs = []
    for i in range(n):
        run_id = f"RUN-{i + 1}"
        k = np.arange(points, dtype=np.int64)
        params = make_batch(project_id, run_id, pa.array(["sys/name", "params/lr"]), pa.array(["string", "float"]), 2,
                            string_value=[f"run {i}", None], float_value=[None, 0.1 * (i + 1)])
        series = make_batch(project_id, run_id, "metrics/loss", "float_series", points,
                            step=steps_from_units(k * 500_000), timestamp=timestamps_ms(1_700_000_000_000 + k),
                            float_value=pa.array(np.linspace(1, 0, points)))
        tables = [pa.Table.from_batches([params]), pa.Table.from_batches([series])]
        parent = None
        if i == 2:
            parent = "RUN-1"
            tables.append(pa.Table.from_batches([make_batch(
                project_id, run_id, pa.array(["sys/forking/parent", "sys/forking/step"]), pa.array(["string", "float"]),
                2, string_value=["RUN-1", None], float_value=[None, 10.0])]))
        runs.append(MemoryRun(project_id, run_id, plain(pa.concat_tables(tables)),
                              files=[("files/readme", "readme.txt", f"hello {i}".encode())], parent_run_id=parent))
    return runs


def export_into(storage: Storage, source: Source, selection: Selection | None = None) -> list[RunReport]:
    """Export every run of `source` into `storage` directly (no orchestrator), for sink tests."""
    reports = []
    selection = selection or Selection()
    for run in source.list_runs(selection):
        writer = storage.begin_run(run.project_id, run.run_id, {"plugin": source.name})
        report = RunReport()
        source.export_run(run, selection, writer, RunContext(report, threading.Event()))
        writer.commit(lineage={"parent_run_id": run.parent_run_id} if run.parent_run_id else None, report=report)
        reports.append(report)
    return reports


def tables_equal(left: pa.Table, right: pa.Table) -> bool:
    """Table equality where NaN equals NaN (Arrow's `equals` says NaN != NaN), per column and type."""
    import pyarrow.compute as pc

    if left.schema != right.schema or left.num_rows != right.num_rows:
        return False
    for name in left.column_names:
        a, b = left[name], right[name]
        if pa.types.is_floating(a.type):
            if not pc.is_nan(a).equals(pc.is_nan(b)):
                return False
            a = pc.if_else(pc.is_nan(a), 0.0, a)
            b = pc.if_else(pc.is_nan(b), 0.0, b)
        if not a.equals(b):
            return False
    return True
