"""The neptune3 source: list runs with one paged search, export each run attribute class by class.

Request budget per run: definitions (1 per 10k attributes), parameter values (1 per `max_attribute_values`
names or 50 kB of names), float series (1 per `series_per_request` series per `page_points` points), other
series (1 per group per server page), files (1 signing call per 100 files plus one GET per file), and one
final search to make sure the run was not deleted while it was being read.
"""

from __future__ import annotations

import os
import queue
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
from migrate_core.api import RunContext, RunWriter, Selection, Source, SourceRun
from migrate_core.errors import Cancelled, UsageError
from migrate_core.format import make_batch, steps_from_float, timestamps_ms

from . import __version__
from .atoms import CLASS_OF, PARAMETER_TYPES, file_ref, name_chunks, parameter_batch
from .client import (
    CURRENT_RUN,
    NQ_VERSION,
    Neptune3Client,
    RetryCounter,
    RunRetries,
    check_token,
    set_retry_budget,
)
from .config import Neptune3Config
from .errors import AttributeFetchError, AuthError, Neptune3Error, ProjectError, RunGone
from .grouped import GroupReader, Prefetched
from .pipeline import Emit, run_ordered
from .series import FloatPage, float_batches, float_pages, histogram_batch, series_pages, string_batch

LIST_ATTRIBUTES = ["sys/id", "sys/custom_run_id", "sys/modification_time", "sys/forking/parent",
                   "sys/forking/step", "sys/archived"]
FILES_PER_SIGNING = 100
WRITE_QUEUE_DEPTH = 4  # batches waiting for the writer thread
INLINE_WRITE_ROWS = 50_000  # a run's first rows are written inline: small runs start no writer thread
_RETRIES = RetryCounter()
_RETRIES_INSTALLED = threading.Lock()


class Neptune3Source(Source):
    name = "neptune3"
    version = __version__

    def __init__(self, config: Neptune3Config, client: Neptune3Client | None = None) -> None:
        self.config = config
        self._client = client
        self._client_lock = threading.Lock()
        self.retry_budget = set_retry_budget(config.retry_budget)
        self._groups = GroupReader(lambda: self.client, config) if config.group_runs > 1 else None
        self.prepare_runs = config.group_runs  # the orchestrator announces a group's worth of runs at once
        # groups keep the requests in flight, so runs are CPU-bound: more export threads only contend for the
        # GIL (1000 small runs: 181 runs/s with 1 worker, 165 with 2, 146 with 4); 2 keeps one slow run from
        # holding up the rest
        self.workers_hint = 2 if config.group_runs > 1 else None
        with _RETRIES_INSTALLED:
            if not getattr(_RETRIES, "installed", False):
                _RETRIES.install()
                _RETRIES.installed = True  # type: ignore[attr-defined]

    # ------------------------------------------------------------------------------------------ setup

    @property
    def client(self) -> Neptune3Client:
        with self._client_lock:
            if self._client is None:
                env = self.config.api_token_env
                token = os.environ.get(env, "").strip()
                if not token:
                    raise AuthError(f"no Neptune API token: set ${env} (or point source.neptune3.api_token_env "
                                    "at the variable that holds it)")
                check_token(token, env)
                self._client = Neptune3Client(token, env)
            return self._client

    def prepare(self, runs: Sequence[SourceRun], selection: Selection) -> None:
        if self._groups is not None:
            self._groups.add(runs, selection)

    def close(self) -> None:
        if self._groups is not None:
            self._groups.close()

    @property
    def retries(self) -> int:
        """Requests neptune-query retried in this process (5xx, 429, dropped connections)."""
        return _RETRIES.count

    def _project_ids(self, selection: Selection) -> list[str]:
        if selection.projects:
            names = list(selection.projects)
        elif self.config.projects:
            names = list(self.config.projects)
        else:
            names = [name for workspace in self.config.workspaces for name in self.client.list_projects(workspace)]
            if self.config.include:
                names = [n for n in names if any(re.search(p, n) for p in self.config.include)]
            names = [n for n in names if not any(re.search(p, n) for p in self.config.exclude)]
            if not self.config.workspaces:
                raise UsageError("no Neptune project selected: pass -p workspace/project, or set "
                                 "source.neptune3.projects or source.neptune3.workspaces")
        for name in names:
            if name.count("/") != 1 or not all(name.split("/")):
                raise ProjectError(f"project {name!r} is not of the form workspace/project")
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------------------------------ listing

    def _query(self, selection: Selection) -> str | None:
        parts = [self.config.query.strip()] if self.config.query and self.config.query.strip() else []
        if self.config.archived == "exclude":
            parts.append('`sys/archived`:bool != "True"')
        elif self.config.archived == "only":
            parts.append('`sys/archived`:bool == "True"')
        for op, value in ((">=", selection.modified_since), ("<", selection.modified_until)):
            if value is not None:
                stamp = value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                parts.append(f'`sys/modification_time`:datetime {op} "{stamp}"')
        return " AND ".join(f"({p})" for p in parts) or None

    def list_runs(self, selection: Selection) -> Iterator[SourceRun]:
        names = [n for n in self._project_ids(selection) if selection.wants_project(n)]
        query = self._query(selection)
        client = self.client
        # read the first page of every project first, so a bad project fails before any run moves
        heads = [(name, client.search_runs(name, query, LIST_ATTRIBUTES, self.config.runs_page_size)) for name in names]
        firsts = [(name, it, next(it, None)) for name, it in heads]
        for name, entries, first in firsts:
            if first is None:
                continue
            for entry in _chain(first, entries):
                run = self._source_run(name, entry)
                if run is not None and (selection.wants_run(run.run_id) or selection.wants_run(run.info["sys_id"])):
                    yield run

    def _source_run(self, project: str, entry: Any) -> SourceRun | None:
        attrs = {a.name: a for a in entry.attributes}
        sys_id = _string(attrs.get("sys/id"))
        if not sys_id:
            return None
        custom = _string(attrs.get("sys/custom_run_id"))
        modified = attrs.get("sys/modification_time")
        mod_time = (datetime.fromtimestamp(modified.datetime_properties.value / 1000, tz=UTC)
                    if modified is not None and modified.HasField("datetime_properties") else None)
        parent = _string(attrs.get("sys/forking/parent")) or None
        step = attrs.get("sys/forking/step")
        info: dict[str, Any] = {
            "sys_id": sys_id,
            "run_id_from": "sys/custom_run_id" if custom else "sys/id",
            "neptune_query": NQ_VERSION,
        }
        if parent:
            info["fork_step"] = step.float_properties.value if step is not None and step.HasField(
                "float_properties") else None
            info["lineage"] = "materialised" if self.config.materialise_lineage else "own points only"
        return SourceRun(project_id=project, run_id=custom or sys_id, parent_run_id=parent,
                         modification_time=mod_time, info=info)

    # ------------------------------------------------------------------------------------------ export

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        retries = RunRetries(ctx)
        scope = CURRENT_RUN.set(retries)  # neptune-query's retries for this run show up live (ctx.event)
        try:
            self._export_run(run, selection, writer, ctx, retries)
        finally:
            CURRENT_RUN.reset(scope)
            if retries.count:
                ctx.report.note(f"neptune-query retried {retries.count} requests while this run was exported")

    def _export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext,
                    retries: RunRetries) -> None:
        client = self.client
        # what the run's group read for it (None: read alone); a group checked at its end that the run still
        # existed after its reads, as the definitions request below does for a run read alone
        pre = self._groups.take(run, ctx) if self._groups is not None else None
        if pre is not None and pre.retries:
            if pre.count_retries:
                ctx.event("retries", pre.retries)
            ctx.report.note(f"neptune-query retried {pre.retries} requests while this run's group of runs was read")
        if pre is not None and pre.gone:
            raise RunGone(f"run {run.run_id} no longer exists in {run.project_id}")
        sys_id = run.info.get("sys_id") or self._lookup(run)
        if pre is not None and pre.definitions is not None:
            definitions = pre.definitions  # the group saw the run's attributes, and the run existing after
        else:
            definitions = client.attribute_definitions(run.project_id, sys_id)
            if not definitions:
                raise RunGone(f"run {run.run_id} no longer exists in {run.project_id}")
        read_before = retries.requests
        classes = set(self.config.classes)
        params, files, floats, others = [], [], [], []
        for name, wire in definitions:
            if not selection.wants_attribute(name):
                continue  # not asked for: not lost either
            cls = CLASS_OF.get(wire)
            if cls is None:
                if wire == "experimentState":  # sys/state: its value has no field in the 3.x query answers
                    ctx.report.lost("run state values (experimentState: the 3.x query API serves no value)")
                else:
                    ctx.report.lost(f"attributes of type {wire!r} (unknown to the 3.x source)")
                continue
            if cls not in classes:
                continue
            if wire in PARAMETER_TYPES:
                params.append(name)
            elif wire == "fileRef":
                files.append(name)
            elif wire == "floatSeries":
                floats.append(name)
            else:
                others.append((name, wire))
        out = _Output(writer, ctx)
        try:
            self._attributes(run, sys_id, params, files, floats, others, out, ctx, pre or Prefetched())
            out.close()  # every queued batch is in storage
        except _StorageFailed as failed:
            raise failed.original from None
        finally:
            out.abandon()
        # anything read after the definitions above may come from a run deleted meanwhile: check it still exists
        if retries.requests != read_before and not client.attribute_definitions(run.project_id, sys_id):
            raise RunGone(f"run {run.run_id} was deleted while it was being exported")

    def _attributes(self, run: SourceRun, sys_id: str, params: list[str], files: list[str], floats: list[str],
                    others: list[tuple[str, str]], out: _Output, ctx: RunContext, pre: Prefetched) -> None:
        client = self.client
        with _Downloader(client, run, out, ctx) as downloader:
            self._guarded(ctx, params + files, lambda: self._atoms(run, sys_id, params, files, out, downloader, pre))
            tasks: list[Callable[[Emit], None]] = []
            size = self.config.series_per_request
            for i in range(0, len(floats), size):
                group = floats[i:i + size]
                tasks.append(self._task(ctx, group, lambda emit, g=group: self._floats(
                    run, sys_id, g, emit, ctx, pre)))
            for wire in ("stringSeries", "histogramSeries", "fileRefSeries"):
                names = [n for n, w in others if w == wire]
                for i in range(0, len(names), size):
                    group = names[i:i + size]
                    tasks.append(self._task(ctx, group, lambda emit, g=group, w=wire: self._series(
                        run, sys_id, g, w, emit, ctx, downloader, pre)))
            run_ordered(tasks, out.write, workers=self.config.attribute_workers, cancelled=lambda: ctx.cancelled)

    def _lookup(self, run: SourceRun) -> str:
        for field in ("sys/custom_run_id", "sys/id"):
            query = f'`{field}`:string == "{_nql_string(run.run_id)}"'
            for entry in self.client.search_runs(run.project_id, query, ["sys/id"], 2):
                return _string({a.name: a for a in entry.attributes}.get("sys/id"))
        raise RunGone(f"run {run.run_id} no longer exists in {run.project_id}")

    def _task(self, ctx: RunContext, names: list[str], work: Callable[[Emit], None]) -> Callable[[Emit], None]:
        return lambda emit: self._guarded(ctx, names, lambda: work(emit))

    def _guarded(self, ctx: RunContext, names: list[str], work: Callable[[], None]) -> None:
        """One attribute group's export; a failure fails the run unless the user chose to skip and count it."""
        if not names:
            return
        ctx.check_cancelled()
        try:
            work()
        except (Cancelled, AuthError, RunGone, ProjectError):
            raise
        except (Neptune3Error, ValueError, OSError) as exc:
            label = names[0] if len(names) == 1 else f"{names[0]} (and {len(names) - 1} more in its request)"
            if not self.config.skip_failed_attributes:
                raise AttributeFetchError(f"attribute {label!r} could not be read: {exc}") from exc
            ctx.report.lost("attributes that failed to fetch", len(names))
            ctx.report.note(f"{label}: {' '.join(str(exc).split())[:300]}")

    def _atoms(self, run: SourceRun, sys_id: str, params: list[str], files: list[str], out: _Output,
               downloader: _Downloader, pre: Prefetched) -> None:
        names = params + files
        ready = [pre.values[n] for n in names if n in pre.values]
        rest = [n for n in names if n not in pre.values]
        if ready:
            self._write_atoms(run, ready, out, downloader)
        for chunk in name_chunks(rest, self.config.max_attribute_values):
            attributes = list(self.client.attribute_values(run.project_id, sys_id, chunk,
                                                           self.config.max_attribute_values))
            out.ctx.check_cancelled()
            self._write_atoms(run, attributes, out, downloader)

    def _write_atoms(self, run: SourceRun, attributes: list[Any], out: _Output, downloader: _Downloader) -> None:
        batch = parameter_batch(run.project_id, run.run_id, attributes)
        if batch is not None:
            out.write(batch)
        refs = [(a.name, file_ref(a)) for a in attributes if a.type == "fileRef"]
        stored = downloader.fetch([(name, ref) for name, ref in refs if ref is not None])
        rows = [(name, path) for (name, _ref), path in zip(refs, stored, strict=True) if path is not None]
        for name, path in rows:
            out.write(make_batch(run.project_id, run.run_id, name, "file", 1, file_value=[{"path": path}]))

    def _floats(self, run: SourceRun, sys_id: str, names: list[str], out: Emit, ctx: RunContext,
                pre: Prefetched) -> None:
        lost = 0

        def emit(page: FloatPage) -> None:
            nonlocal lost
            ctx.check_cancelled()
            batches, skipped = float_batches(run.project_id, run.run_id, page, self.config.previews)
            lost += skipped
            for batch in batches:
                out.write(batch)

        ready, rest, after = _split(names, pre.float_names, pre.floats, pre.float_after)
        for _name, page in ready:
            emit(page)
        if rest:
            for page in float_pages(self.client, run.project_id, sys_id, rest, lineage=self.config.materialise_lineage,
                                    page_points=self.config.page_points, after=after):
                emit(page)
        ctx.report.lost("metric preview points (set source.neptune3.previews=true to export them)", lost)

    def _series(self, run: SourceRun, sys_id: str, names: list[str], wire: str, out: Emit, ctx: RunContext,
                downloader: _Downloader, pre: Prefetched) -> None:
        def emit(path: str, values: Any) -> None:
            ctx.check_cancelled()
            if wire == "stringSeries":
                out.write(string_batch(run.project_id, run.run_id, path, values))
            elif wire == "histogramSeries":
                out.write(histogram_batch(run.project_id, run.run_id, path, values))
            else:
                self._file_series(run, path, values.values, out, downloader)  # one download per point anyway

        ready, rest, after = _split(names, pre.series_names, pre.series, pre.series_after)
        for name, values in ready:
            emit(name, values)
        if rest:
            for path, values in series_pages(self.client, run.project_id, sys_id, rest,
                                             lineage=self.config.materialise_lineage, after=after):
                emit(path, values)

    def _file_series(self, run: SourceRun, path: str, values: Any, out: Emit, downloader: _Downloader) -> None:
        refs = [(path, (v.object.fileRef.path, int(v.object.fileRef.sizeBytes), v.object.fileRef.mimeType))
                for v in values]
        stored = downloader.fetch(refs)
        keep = np.array([p is not None for p in stored], dtype=bool)
        if not keep.any():
            return
        steps = np.fromiter((v.step for v in values), np.float64, len(values))[keep]
        stamps = np.fromiter((v.timestamp_millis for v in values), np.int64, len(values))[keep]
        paths = [{"path": p} for p in stored if p is not None]
        out.write(make_batch(run.project_id, run.run_id, path, "file_series", len(paths),
                             step=steps_from_float(steps), timestamp=timestamps_ms(stamps), file_value=paths))


class _StorageFailed(Exception):
    """A batch could not be written (raised where the next batch is queued; never an attribute's failure)."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(str(original))
        self.original = original


_STOP = object()


class _Output:
    """The run's writer shared by attribute workers: batches go to storage in one writer thread, in order.

    Writing (Arrow checks, statistics, parquet encoding) overlaps with fetching and decoding the next pages;
    at most `depth` batches wait in the queue. The first `INLINE_WRITE_ROWS` rows are written inline, so
    small runs start no thread. Rows are counted once written. Files are written by the
    caller, under the same lock as the batches.
    """

    def __init__(self, writer: RunWriter, ctx: RunContext, depth: int = WRITE_QUEUE_DEPTH) -> None:
        self.writer = writer
        self.ctx = ctx
        self.lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._failure: BaseException | None = None
        self._skip = False
        self._thread: threading.Thread | None = None
        self._inline_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if self._thread is None:
            if self._inline_rows < INLINE_WRITE_ROWS:  # a small run: no thread to start and join
                self._inline_rows += batch.num_rows
                try:
                    with self.lock:
                        self.writer.write(batch)
                except BaseException as exc:  # noqa: BLE001 - the same path as the writer thread's failures
                    self._failure = exc
                    raise _StorageFailed(exc) from None
                self.ctx.report.add(rows=batch.num_rows)
                self.ctx.progress(batch.num_rows)
                return
            self._thread = threading.Thread(target=self._run, name="neptune3-write", daemon=True)
            self._thread.start()
        while True:
            if self._failure is not None:
                raise _StorageFailed(self._failure)
            try:
                self._queue.put(batch, timeout=0.1)
                return
            except queue.Full:
                self.ctx.check_cancelled()

    def _run(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is _STOP:
                return
            if self._skip or self._failure is not None:
                continue
            try:
                with self.lock:
                    self.writer.write(batch)
            except BaseException as exc:  # noqa: BLE001 - raised in the exporting thread
                self._failure = exc
                continue
            self.ctx.report.add(rows=batch.num_rows)
            self.ctx.progress(batch.num_rows)

    def close(self) -> None:
        """Wait until every queued batch is written; raise the first write failure."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None
        if self._failure is not None:
            raise _StorageFailed(self._failure)

    def abandon(self) -> None:
        """Stop the writer thread without writing what is still queued (the run failed or was cancelled)."""
        if self._thread is not None:
            self._skip = True
            self._queue.put(_STOP)
            self._thread.join()
            self._thread = None

    def write_file(self, attribute: str, name: str, data: Path) -> str:
        with self.lock:
            return self.writer.write_file(attribute, name, data)


class _Downloader:
    """Signs and downloads file refs in batches; returns the stored `file_value.path` (None if gone)."""

    def __init__(self, client: Neptune3Client, run: SourceRun, out: _Output, ctx: RunContext) -> None:
        self.client, self.run, self.out, self.ctx = client, run, out, ctx
        self._tmp: tempfile.TemporaryDirectory[str] | None = None  # made for the first file: most runs have none
        self._n = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _Downloader:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()

    def fetch(self, refs: list[tuple[str, tuple[str, int, str]]]) -> list[str | None]:
        out: list[str | None] = []
        for i in range(0, len(refs), FILES_PER_SIGNING):
            chunk = refs[i:i + FILES_PER_SIGNING]
            signed = self.client.signed_urls(self.run.project_id, [ref[0] for _, ref in chunk])
            for (attribute, (path, _size, _mime)), sig in zip(chunk, signed, strict=True):
                self.ctx.check_cancelled()
                out.append(self._one(attribute, path, sig))
        return out

    def _one(self, attribute: str, path: str, signed: Any) -> str | None:
        with self._lock:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="migrate-neptune3-")
            self._n += 1
            target = Path(self._tmp.name) / f"f{self._n}"
        try:
            got = self.client.download(signed, target)
            if got is None:
                self.ctx.report.lost("files missing from the server's storage (HTTP 404)")
                self.ctx.report.note(f"{attribute}: file {PurePosixPath(path).name!r} is gone from storage")
                return None
            size = target.stat().st_size
            stored = self.out.write_file(attribute, PurePosixPath(path).name or "file", target)
            self.ctx.report.add(files=1, bytes=size)
            return stored
        finally:
            target.unlink(missing_ok=True)


def _split(names: list[str], covered: frozenset[str], pages: dict[str, list[Any]], after: dict[str, Any]
           ) -> tuple[list[tuple[str, Any]], list[str], dict[str, Any]]:
    """What a group read of these series (name, page), the series still to read, and where each goes on."""
    ready = [(name, page) for name in names if name in covered for page in pages.get(name, ())]
    rest = [name for name in names if name not in covered or name in after]
    return ready, rest, {name: after[name] for name in rest if name in after}


def _chain(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield first
    yield from rest


def _string(attr: Any) -> str:
    if attr is None or not attr.HasField("string_properties"):
        return ""
    return str(attr.string_properties.value)


def _nql_string(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
