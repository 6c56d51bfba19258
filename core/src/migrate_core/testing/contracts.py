"""Contract suites. Subclass one in a test module and provide its fixture; every test then runs on
your component. They check the promises the orchestrator relies on, not implementation details."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pytest

from ..api import RunContext, RunReader, RunReport, Selection, Sink, Source, Storage
from ..errors import UnsafePathError
from ..format import ATTRIBUTE_TYPES, SCHEMA, make_batch, plain
from .fakes import MemoryRun, MemorySource, MemoryStorage, export_into, sample_runs, tables_equal


@dataclass
class ReadBack:
    """What a sink's target holds for one run, as `SinkContract.read_back` returns it.

    `rows`: one `(attribute_path, step, value)` per value the target holds, files excluded: a parameter has
    step None, a series point its step (a number, a Decimal or its text). Values may come back as text
    (a CSV, a JSON API): the kit compares numbers as numbers, so `"0.1"` matches `0.1` and `"True"` matches
    True. `files`: one `(attribute_path, content bytes)` per file the target holds.
    """

    rows: Iterable[tuple[str, Any, Any]] = ()
    files: Iterable[tuple[str, bytes]] = field(default_factory=list)


def _number(value: Any) -> Any:
    """A comparable form of a value or step: numbers (and numeric text) as a float to 12 digits, bools and
    their text as 'true'/'false', lists as sorted tuples, other values as text."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or str(value).lower() in ("true", "false"):
        return str(value).lower()
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(sorted(str(v) for v in value))
    try:
        return float(f"{float(value):.12g}")
    except (TypeError, ValueError):
        return str(value)


_VALUE_COLUMNS = ("float_value", "int_value", "string_value", "bool_value", "datetime_value", "string_set_value")


def _expected(storage: Storage, run: Any) -> tuple[Counter, Counter]:
    """The rows and files of a stored run, in ReadBack's comparable form."""
    rows: Counter = Counter()
    files: Counter = Counter()
    for row in _read_all(storage, run).to_pylist():
        path = (row.get("file_value") or {}).get("path")
        if path:
            with storage.open_file(run, path) as handle:
                files[(row["attribute_path"], hashlib.sha256(handle.read()).hexdigest())] += 1
            continue
        value = next((row[c] for c in _VALUE_COLUMNS if row.get(c) is not None), None)
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        rows[(row["attribute_path"], _number(row["step"]), _number(value))] += 1
    return rows, files


def _difference(name: str, want: Counter, got: Counter) -> list[str]:
    missing, extra = want - got, got - want
    out = []
    if missing:
        out.append(f"{sum(missing.values())} {name} missing in the target, e.g. {sorted(missing, key=str)[:3]}")
    if extra:
        out.append(f"{sum(extra.values())} {name} in the target that the run does not hold, e.g. "
                   f"{sorted(extra, key=str)[:3]}")
    return out


def _ctx() -> RunContext:
    return RunContext(RunReport(), threading.Event())


def _read_all(storage: Storage, run: Any) -> pa.Table:
    batches = list(storage.read(run))
    return plain(pa.Table.from_batches(batches)) if batches else SCHEMA.empty_table()


class StorageContract:
    """Provide a `storage` fixture returning a fresh, empty Storage."""

    @pytest.fixture
    def storage(self, tmp_path: Any) -> Storage:  # pragma: no cover - subclasses override
        raise NotImplementedError("override the `storage` fixture")

    def test_empty_storage_lists_nothing(self, storage: Storage) -> None:
        assert storage.list_runs() == []
        assert storage.get_run("ws/proj", "RUN-1") is None

    def test_roundtrip_keeps_rows_exactly(self, storage: Storage) -> None:
        runs = sample_runs()
        export_into(storage, MemorySource(runs))
        stored = {r.run_id: r for r in storage.list_runs()}
        assert sorted(stored) == ["RUN-1", "RUN-2", "RUN-3"]
        for run in runs:
            got = stored[run.run_id]
            assert got.complete and got.has_manifest
            table = _read_all(storage, got)
            assert table.schema.equals(SCHEMA)
            rows_without_files = table.filter(pa.compute.not_equal(table["attribute_type"], "file"))
            assert rows_without_files.equals(run.table)
            assert got.manifest["rows"] == table.num_rows

    def test_reads_only_requested_columns(self, storage: Storage) -> None:
        export_into(storage, MemorySource(sample_runs(n=1)))
        run = storage.list_runs()[0]
        batches = list(storage.read(run, columns=["attribute_path", "step"]))
        assert batches and all(b.schema.names == ["attribute_path", "step"] for b in batches)

    def test_uncommitted_run_is_not_complete_and_restart_replaces_it(self, storage: Storage) -> None:
        run = sample_runs(n=1)[0]
        writer = storage.begin_run(run.project_id, run.run_id, {"plugin": "test"})
        writer.write(run.table)
        writer.abort()
        stored = storage.get_run(run.project_id, run.run_id)
        assert stored is None or not stored.complete
        export_into(storage, MemorySource([run]))
        export_into(storage, MemorySource([run]))  # a forced re-export must not duplicate rows
        stored = storage.get_run(run.project_id, run.run_id)
        assert stored is not None and stored.complete
        assert _read_all(storage, stored).num_rows == run.table.num_rows + len(run.files)

    def test_files_roundtrip_and_escaping_paths_are_refused(self, storage: Storage) -> None:
        run = sample_runs(n=1)[0]
        export_into(storage, MemorySource([run]))
        stored = storage.get_run(run.project_id, run.run_id)
        table = _read_all(storage, stored)
        paths = [p for p in table["file_value"].combine_chunks().field("path").to_pylist() if p]
        assert len(paths) == 1
        with storage.open_file(stored, paths[0]) as handle:
            assert handle.read() == run.files[0][2]
        for hostile in ("../../etc/passwd", "/etc/passwd", "a/../../x"):
            with pytest.raises(UnsafePathError):
                storage.open_file(stored, hostile)

    def test_hostile_ids_keep_their_identity(self, storage: Storage) -> None:
        odd = [("ws/pröject x", "run/with space"), ("ws/p", "Ünï/ç o"), ("ws/p", "..")]
        runs = []
        for project_id, run_id in odd:
            table = pa.Table.from_batches([make_batch(project_id, run_id, "p", "int", 1, int_value=[1])])
            runs.append(MemoryRun(project_id, run_id, table))
        export_into(storage, MemorySource(runs))
        assert sorted(r.key for r in storage.list_runs()) == sorted(odd)

    def test_empty_run_is_complete(self, storage: Storage) -> None:
        export_into(storage, MemorySource([MemoryRun("ws/p", "EMPTY", SCHEMA.empty_table())]))
        stored = storage.get_run("ws/p", "EMPTY")
        assert stored is not None and stored.complete
        assert _read_all(storage, stored).num_rows == 0

    def test_lineage_comes_from_fork_rows(self, storage: Storage) -> None:
        export_into(storage, MemorySource(sample_runs()))
        lineage = storage.lineage(storage.get_run("ws/proj", "RUN-3"))
        assert lineage["parent_run_id"] == "RUN-1"
        assert not storage.lineage(storage.get_run("ws/proj", "RUN-1")).get("parent_run_id")


class SourceContract:
    """Provide a `source` fixture returning a Source with at least one run in the default selection."""

    @pytest.fixture
    def source(self) -> Source:  # pragma: no cover - subclasses override
        raise NotImplementedError("override the `source` fixture")

    def _export(self, source: Source, selection: Selection, tmp_path: Any) -> MemoryStorage:
        storage = MemoryStorage(tmp_path)
        export_into(storage, source, selection)
        return storage

    def test_lists_runs(self, source: Source) -> None:
        runs = list(source.list_runs(Selection()))
        assert runs
        assert len({r.key for r in runs}) == len(runs)
        assert all(r.project_id and r.run_id for r in runs)

    def test_exports_canonical_rows(self, source: Source, tmp_path: Any) -> None:
        storage = self._export(source, Selection(), tmp_path)
        for stored in storage.list_runs():
            table = _read_all(storage, stored)
            assert table.schema.equals(SCHEMA)
            assert table.num_rows > 0
            assert set(table["project_id"].unique().to_pylist()) == {stored.project_id}
            assert set(table["run_id"].unique().to_pylist()) == {stored.run_id}
            assert set(table["attribute_type"].unique().to_pylist()) <= set(ATTRIBUTE_TYPES)

    def test_export_is_deterministic(self, source: Source, tmp_path: Any) -> None:
        a = self._export(source, Selection(), tmp_path / "a")
        b = self._export(source, Selection(), tmp_path / "b")
        for run in a.list_runs():
            left = _read_all(a, run).drop_columns(["file_value"])
            right = _read_all(b, b.get_run(*run.key)).drop_columns(["file_value"])
            assert tables_equal(left, right)

    def test_attribute_selection_is_honoured(self, source: Source, tmp_path: Any) -> None:
        selection = Selection(attributes=re.compile(r"^sys/"))
        storage = self._export(source, selection, tmp_path)
        for stored in storage.list_runs():
            paths = set(_read_all(storage, stored)["attribute_path"].to_pylist())
            assert paths and all(p.startswith("sys/") for p in paths)

    def test_run_selection_is_honoured(self, source: Source) -> None:
        first = next(iter(source.list_runs(Selection())))
        only = Selection(runs=re.compile("^" + re.escape(first.run_id) + "$"))
        assert [r.run_id for r in source.list_runs(only)] == [first.run_id]

    def test_prepared_runs_export_the_same_rows(self, source: Source, tmp_path: Any) -> None:
        """`prepare` (announcing runs in groups, as the orchestrator does) never changes what is exported."""
        alone = self._export(source, Selection(), tmp_path / "alone")
        prepared = MemoryStorage(tmp_path / "prepared")
        runs = list(source.list_runs(Selection()))
        size = max(1, int(getattr(source, "prepare_runs", 1) or 1))
        for i in range(0, len(runs), size):
            group = runs[i:i + size]
            if size > 1:
                source.prepare(group, Selection())
            for run in group:
                writer = prepared.begin_run(run.project_id, run.run_id, {"plugin": source.name})
                report = RunReport()
                source.export_run(run, Selection(), writer, RunContext(report, threading.Event()))
                writer.commit(report=report)
        for run in alone.list_runs():
            left = _read_all(alone, run).drop_columns(["file_value"])
            right = _read_all(prepared, prepared.get_run(*run.key)).drop_columns(["file_value"])
            assert tables_equal(left, right), run.key


class SinkContract:
    """Provide a `sink` fixture, `sink_state(sink, project_id, run_id)` returning a comparable snapshot
    of what the target holds for one run (None when absent), and `read_back(sink, project_id, run_id)`
    returning a `ReadBack` of it: every value and file of the run must arrive (`test_every_value_and_file_arrives`).
    """

    @pytest.fixture
    def sink(self, tmp_path: Any) -> Sink:  # pragma: no cover - subclasses override
        raise NotImplementedError("override the `sink` fixture")

    def sink_state(self, sink: Sink, project_id: str, run_id: str) -> Any:  # pragma: no cover
        raise NotImplementedError("override sink_state")

    def read_back(self, sink: Sink, project_id: str, run_id: str) -> ReadBack:  # pragma: no cover
        raise NotImplementedError("override read_back(sink, project_id, run_id) -> ReadBack: the kit compares it "
                                  "with the stored run, so a sink that drops rows or files fails")

    @pytest.fixture
    def stored(self, tmp_path: Any) -> MemoryStorage:
        storage = MemoryStorage(tmp_path / "state")
        export_into(storage, MemorySource(sample_runs()))
        return storage

    def _load(self, sink: Sink, storage: Storage, run_id: str) -> RunReport:
        ctx = _ctx()
        sink.load_run(RunReader(storage, storage.get_run("ws/proj", run_id)), ctx)
        return ctx.report

    def test_target_is_a_stable_string(self, sink: Sink) -> None:
        assert isinstance(sink.target(), str) and sink.target() == sink.target()

    def test_loads_a_run(self, sink: Sink, stored: MemoryStorage) -> None:
        report = self._load(sink, stored, "RUN-1")
        assert report.rows > 0
        assert self.sink_state(sink, "ws/proj", "RUN-1") is not None

    def test_loading_twice_changes_nothing(self, sink: Sink, stored: MemoryStorage) -> None:
        self._load(sink, stored, "RUN-1")
        once = self.sink_state(sink, "ws/proj", "RUN-1")
        self._load(sink, stored, "RUN-1")
        assert self.sink_state(sink, "ws/proj", "RUN-1") == once

    def test_fork_loads_after_parent(self, sink: Sink, stored: MemoryStorage) -> None:
        self._load(sink, stored, "RUN-1")
        self._load(sink, stored, "RUN-3")
        assert self.sink_state(sink, "ws/proj", "RUN-3") is not None

    def test_every_value_and_file_arrives(self, sink: Sink, stored: MemoryStorage) -> None:
        """Every parameter, series point and file of the run is in the target, and nothing else is:
        a sink may only leave out what it reports as lost (`ctx.report.lost`)."""
        for run_id in ("RUN-1", "RUN-2"):
            report = self._load(sink, stored, run_id)
            back = self.read_back(sink, "ws/proj", run_id)
            assert back is not None, f"read_back found no {run_id} after its load"
            want_rows, want_files = _expected(stored, stored.get_run("ws/proj", run_id))
            got_rows = Counter((path, _number(step), _number(value)) for path, step, value in back.rows)
            got_files = Counter((path, hashlib.sha256(content).hexdigest()) for path, content in back.files)
            problems = _difference("values", want_rows, got_rows) + _difference("files", want_files, got_files)
            missing = sum((want_rows - got_rows).values()) + sum((want_files - got_files).values())
            extra = sum((got_rows - want_rows).values()) + sum((got_files - want_files).values())
            # what the sink reported as lost, and no more, may be missing; nothing may be made up
            assert not extra and missing <= sum(report.losses.values()), f"{run_id}: " + "; ".join(problems)
