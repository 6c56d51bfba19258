"""The objects plugins implement and receive: sources, storages, sinks, and what passes between them.

Hooks only *register* (hookspecs.py); these objects *work*. Rows never pass through the plugin manager:
a source writes Arrow batches into a `RunWriter` that storage hands out, and a sink reads them back
through a `RunReader`.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

import pyarrow as pa

from .errors import Cancelled


@dataclass(frozen=True)
class Selection:
    """What the user asked to move: projects, a run id regex, an attribute path regex."""

    projects: tuple[str, ...] = ()
    runs: re.Pattern[str] | None = None
    attributes: re.Pattern[str] | None = None
    # modification-time window for incremental re-exports; sources push it to the server where they can,
    # and the orchestrator also drops listed runs outside it when their modification time is known
    modified_since: datetime | None = None
    modified_until: datetime | None = None
    # (I, N): only the runs whose key hashes to shard I of N (`--shard`), so N processes can split an export
    shard: tuple[int, int] | None = None

    def wants_project(self, project_id: str) -> bool:
        return not self.projects or project_id in self.projects

    def wants_run(self, run_id: str) -> bool:
        return self.runs is None or self.runs.search(run_id) is not None

    def wants_modified(self, modified: datetime | None) -> bool:
        if modified is None:
            return True
        if self.modified_since is not None and modified < self.modified_since:
            return False
        return not (self.modified_until is not None and modified >= self.modified_until)

    def in_shard(self, key: tuple[str, str]) -> bool:
        """Whether run `key` (project_id, run_id) belongs to this selection's shard: a stable hash, the same
        in every process and on every machine, so the N shards of one export never overlap or miss a run."""
        if self.shard is None:
            return True
        index, count = self.shard
        digest = hashlib.blake2b(f"{key[0]}\0{key[1]}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % count == index

    def wants_attribute(self, path: str) -> bool:
        return self.attributes is None or self.attributes.search(path) is not None


@dataclass(frozen=True)
class SourceRun:
    """A run a source can export. `parent_run_id` names a fork's parent in the same project."""

    project_id: str
    run_id: str
    parent_run_id: str | None = None
    modification_time: datetime | None = None
    estimated_rows: int | None = None
    #: bytes of the run's files, when the source knows them before exporting (`--dry-run`'s byte estimate)
    estimated_file_bytes: int | None = None
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.project_id, self.run_id)


class RunReport:
    """Counts for one run and one stage: rows, files, bytes, and every loss by name.

    Thread-safe, because a sink may upload from several threads. `lost()` is the one way to drop a
    value: whatever is not carried must be named here, so the summary and `--strict` can see it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows = 0
        self.files = 0
        self.bytes = 0
        self.losses: Counter[str] = Counter()
        self.notes: list[str] = []
        #: called with the bytes of each `add()` (the orchestrator's live bytes bar); plugins leave it alone
        self.on_bytes: Any = None

    def __getstate__(self) -> dict[str, Any]:
        """A report crosses to the orchestrator from a worker process (`--executor processes|dask`): its
        counts and notes do, its lock and live-bytes callback stay behind."""
        state = dict(self.__dict__)
        del state["_lock"]
        state["on_bytes"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def add(self, rows: int = 0, files: int = 0, bytes: int = 0) -> None:
        with self._lock:
            self.rows += rows
            self.files += files
            self.bytes += bytes
        if bytes and self.on_bytes is not None:
            self.on_bytes(bytes)

    def lost(self, what: str, count: int = 1) -> None:
        """Record `count` values that could not be carried, e.g. `lost("files with escaping paths")`."""
        if count:
            with self._lock:
                self.losses[what] += count

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "files": self.files,
            "bytes": self.bytes,
            "losses": dict(self.losses),
            "notes": list(self.notes),
        }


class RunContext:
    """Handed to a source or sink for one run: its report, cancellation, and progress."""

    def __init__(self, report: RunReport, cancel: threading.Event, on_rows: Any = None, on_event: Any = None,
                 force: bool = False) -> None:
        self.report = report
        #: the user asked to redo the run (`--force`): a sink re-sends it, or replaces what the target holds
        self.force = force
        self._cancel = cancel
        self._on_rows = on_rows
        self._on_event = on_event

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the user pressed Ctrl+C; call it between batches and requests."""
        if self._cancel.is_set():
            raise Cancelled()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        """The Ctrl+C flag itself, for waits that must end early (`cancel_event.wait(backoff)`)."""
        return self._cancel

    def progress(self, rows: int) -> None:
        if self._on_rows is not None and rows:
            self._on_rows(rows)

    def event(self, name: str, count: int = 1) -> None:
        """Count something the user should see live, e.g. `ctx.event("retries")` for a retried request;
        shown beside the progress bars and in the periodic progress log lines."""
        if self._on_event is not None and count:
            self._on_event(name, count)


class RunWriter(abc.ABC):
    """Storage's side of one run being exported. Nothing is visible as complete until `commit()`."""

    project_id: str
    run_id: str

    @abc.abstractmethod
    def write(self, data: pa.RecordBatch | pa.Table) -> None:
        """Append rows in the canonical schema (format.SCHEMA); any size, the storage splits them."""

    @abc.abstractmethod
    def write_file(self, attribute_path: str, name: str, data: bytes | IO[bytes] | Path) -> str:
        """Store one file's bytes for `attribute_path` and return the `file_value.path` to put in its row.

        `data` may be bytes, a readable binary stream (copied in chunks, never read whole) or a path.
        """

    @abc.abstractmethod
    def commit(self, lineage: Mapping[str, Any] | None = None, report: RunReport | None = None) -> None:
        """Make the run complete: parts renamed (`part_0` last), manifest written last."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Forget the partial run; a later export redoes it from scratch."""


@dataclass
class StoredRun:
    """A run as storage holds it. `manifest` is None for foreign (neptune-exporter) dumps."""

    project_id: str
    run_id: str
    complete: bool
    manifest: dict[str, Any] | None
    location: str = ""
    problem: str | None = None
    parts: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.project_id, self.run_id)

    @property
    def has_manifest(self) -> bool:
        return self.manifest is not None

    @property
    def parent_run_id(self) -> str | None:
        if self.manifest:
            return (self.manifest.get("lineage") or {}).get("parent_run_id")
        return None

    @property
    def export_id(self) -> str:
        """The identity of this stored export: a digest of its manifest (which names its parts, files with their
        sha256, per-attribute counts and when the export completed), or, for a foreign dump, of its parts'
        names, sizes and modification times. A re-export changes it, so a sink can tell that the content it
        loaded is no longer the content in storage; equal ids mean the same export."""
        digest = hashlib.sha256()
        if self.manifest is not None:
            digest.update(json.dumps(self.manifest, sort_keys=True, default=str).encode())
        else:
            for part in self.parts:
                try:
                    info = os.stat(part)
                    digest.update(f"{Path(part).name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
                except OSError:
                    digest.update(f"{part}\n".encode())
        return digest.hexdigest()[:32]


class Storage(abc.ABC):
    """Where exported runs live between source and sink."""

    name: str = ""

    @abc.abstractmethod
    def list_runs(self, projects: Iterable[str] = ()) -> list[StoredRun]:
        """Every run in storage (complete or not), in a stable order."""

    @abc.abstractmethod
    def get_run(self, project_id: str, run_id: str) -> StoredRun | None:
        """The stored state of one run, or None if storage has never seen it."""

    @abc.abstractmethod
    def begin_run(self, project_id: str, run_id: str, source: Mapping[str, Any]) -> RunWriter:
        """Start (or restart from scratch) writing one run."""

    @abc.abstractmethod
    def read(
        self, run: StoredRun, columns: Iterable[str] | None = None, batch_rows: int = 262_144
    ) -> Iterator[pa.RecordBatch]:
        """Stream the run's rows in part order, in bounded batches, reading only `columns`."""

    @abc.abstractmethod
    def open_file(self, run: StoredRun, path: str) -> IO[bytes]:
        """Open a stored file by its `file_value.path`; refuses paths that escape the files root."""

    def iter_files(self, run: StoredRun, path: str) -> Iterator[tuple[str, int]]:
        """(path, size) of the file at `path`, or of every file below it when it is a directory
        (2.x file sets are stored as directories). Same path safety as `open_file`."""
        raise NotImplementedError(f"storage {self.name!r} cannot list directories")

    @abc.abstractmethod
    def lineage(self, run: StoredRun) -> dict[str, Any]:
        """`{"parent_run_id": ..., "fork_step": ...}` (values may be None), from the manifest or rows."""

    @abc.abstractmethod
    def state_dir(self) -> Path:
        """A directory the orchestrator may keep its ledger in (it may not exist yet; writers create it)."""

    def plugin_state_dir(self, name: str) -> Path:
        """A directory of its own for plugin `name` (e.g. a sink's record of what the target acknowledged)."""
        path = self.state_dir() / "plugins" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def describe(self) -> str:
        return self.name

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class RunReader:
    """A sink's view of one stored run: bounded batches, files, manifest, lineage."""

    def __init__(self, storage: Storage, run: StoredRun) -> None:
        self.storage = storage
        self.run = run
        self.project_id = run.project_id
        self.run_id = run.run_id
        self.manifest = run.manifest
        self._lineage: dict[str, Any] | None = None

    def batches(self, columns: Iterable[str] | None = None, batch_rows: int = 262_144) -> Iterator[pa.RecordBatch]:
        return self.storage.read(self.run, columns=columns, batch_rows=batch_rows)

    def open_file(self, path: str) -> IO[bytes]:
        return self.storage.open_file(self.run, path)

    def iter_files(self, path: str) -> Iterator[tuple[str, int]]:
        return self.storage.iter_files(self.run, path)

    @property
    def lineage(self) -> dict[str, Any]:
        if self._lineage is None:
            self._lineage = self.storage.lineage(self.run)
        return self._lineage


class Source(abc.ABC):
    """Reads runs from a tracker and writes them, in the canonical format, into a RunWriter."""

    name: str = ""
    version: str = ""

    @abc.abstractmethod
    def list_runs(self, selection: Selection) -> Iterator[SourceRun]:
        """The selected runs; cheap (no data read)."""

    @abc.abstractmethod
    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        """Write every selected attribute of `run` into `writer` (the orchestrator commits)."""

    #: How many runs the orchestrator announces at once through `prepare`; 1 (the default) never calls it.
    prepare_runs: int = 1

    #: Runs to export at once when the user did not choose `--workers` (None: the orchestrator's default).
    #: A source that keeps its own requests in flight (e.g. by reading runs in groups) is CPU-bound per run,
    #: and more threads then only contend for the interpreter.
    workers_hint: int | None = None

    def prepare(self, runs: Sequence[SourceRun], selection: Selection) -> None:  # noqa: B027 - optional hook
        """Optional: `runs` (up to `prepare_runs`, in listing order) are about to be exported.

        Called before their `export_run` calls, with skips (complete runs, `--shard`, the time window)
        already decided, so a source can read several runs with one request. It must not raise (a failure
        belongs to `export_run`), `export_run` must write the same rows whether or not its run was prepared,
        and a source must bound what it holds: a prepared run may never reach `export_run` (a cancel, or a
        storage failure before the export starts).
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and pools."""


VerifyStatus = Literal["ok", "mismatch", "missing"]


@dataclass
class VerifyResult:
    project_id: str
    run_id: str
    ok: bool
    mismatches: list[str] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)


class Sink(abc.ABC):
    """Loads stored runs into a target tracker."""

    name: str = ""
    version: str = ""

    @abc.abstractmethod
    def target(self) -> str:
        """A stable id of where this sink writes (e.g. `pluto:https://host/project`): the ledger's key."""

    @abc.abstractmethod
    def load_run(self, reader: RunReader, ctx: RunContext) -> None:
        """Load one run. Must be idempotent: a re-run after a crash sends nothing twice."""

    def verify_run(self, reader: RunReader, ctx: RunContext) -> VerifyResult:
        """Read the run back from the target and reconcile it; sinks that cannot raise NotImplementedError."""
        raise NotImplementedError

    def sample_series(self, reader: RunReader, paths: Sequence[str], max_points: int
                      ) -> dict[str, tuple[list[float], list[float | None]]]:
        """Optional, for `migrate report`: read float series `paths` of a loaded run back from the target,
        each as (steps, values) of at most `max_points` points spread over the series (the target may sample;
        steps in the source's terms, non-finite values as None). A path the target does not hold is left out.
        Sinks that cannot raise NotImplementedError (the default); the report then says the sink side is not
        available."""
        raise NotImplementedError

    def unsupported(self, rows_by_type: Mapping[str, int]) -> dict[str, int]:
        """For `--dry-run`: what this sink cannot represent, as {loss name: count}, from counts alone."""
        return {}

    def predict_losses(self, reader: RunReader) -> dict[str, int]:
        """For `--dry-run`: what loading this run would report as not carried, by the names and counts the
        load itself uses. Reads storage only, never the target. The default asks `unsupported()`; a sink
        whose losses depend on values (decimal steps, nulls, over-long names) reads the run instead."""
        from .inventory import rows_by_type

        return self.unsupported(rows_by_type(reader.storage, reader.run))

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release clients."""
