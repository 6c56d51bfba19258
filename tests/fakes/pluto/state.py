"""In-memory storage of the fake Pluto server.

The layout mirrors the real deployment so that tests observe the same semantics:
Postgres-like objects (projects, runs) live in plain dataclasses, while the
ClickHouse-like tables (metrics, data, logs, files) are kept per
``(project, runId)`` -- the real ingest keys rows by the request headers only and
never checks that the run exists, so data for unknown runs is kept too.

Metrics are stored columnar (numpy chunks per series) because a benchmark pushes
tens of millions of points through the fake; deduplication ("one value per
(run, name, integer step), latest time wins") is applied lazily on read, exactly
like ``ReplacingMergeTree(time)`` read with ``FINAL``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common import now_ms

#: Terminal-status precedence of the real backend: a lower state never overwrites a higher one.
STATUS_RANK: dict[str, int] = {"RUNNING": 0, "COMPLETED": 1, "TERMINATED": 2, "CANCELLED": 3, "FAILED": 4}

#: Log types accepted by ``/api/runs/logName/add`` (the server enum lacks GRAPH).
LOG_TYPES: frozenset[str] = frozenset(
    {"METRIC", "DATA", "HISTOGRAM", "TABLE", "TEXT", "ARTIFACT", "IMAGE", "AUDIO", "VIDEO"}
)

#: Bits of ``nonFiniteFlags`` in ``/api/runs/metrics/raw`` rows (the fake's own encoding).
NONFINITE_NAN, NONFINITE_POS_INF, NONFINITE_NEG_INF = 1, 2, 4


def log_group(name: str) -> str:
    """Part of a log name before the last ``/`` ("" without a slash), like the real server."""
    idx = name.rfind("/")
    return name[:idx] if idx >= 0 else ""


def deep_merge(base: dict[str, Any], delta: dict[str, Any]) -> dict[str, Any]:
    """Merge ``delta`` into a copy of ``base``: dicts merge recursively, everything else (lists too) is replaced."""
    out = dict(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class MetricSeries:
    """All writes of one metric name of one run, as appended numpy chunks.

    Appending is O(1) per batch; ``points()`` compacts and deduplicates on demand and caches
    the result until the next write.
    """

    __slots__ = ("name", "_lock", "_steps", "_values", "_times", "_count", "_raw_cache", "_dedup_cache")

    def __init__(self, name: str, lock: threading.RLock | None = None) -> None:
        self.name = name
        # The server's state lock: reads compact the chunk lists, which must not race an append.
        self._lock = lock if lock is not None else threading.RLock()
        self._steps: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._times: list[np.ndarray] = []
        self._count = 0
        self._raw_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._dedup_cache: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def append(self, steps: np.ndarray, values: np.ndarray, times: np.ndarray) -> None:
        """Add one batch of rows (arrays of equal length; uint64, float64, uint64)."""
        if len(steps) == 0:
            return
        with self._lock:
            self._steps.append(steps)
            self._values.append(values)
            self._times.append(times)
            self._count += len(steps)
            self._raw_cache = None
            self._dedup_cache = None

    @property
    def raw_count(self) -> int:
        """Number of rows ever written, duplicates included (what ``metrics/raw`` counts)."""
        return self._count

    def raw(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All written rows in insertion order as ``(steps, values, times)``."""
        with self._lock:
            return self._raw_locked()

    def _raw_locked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._raw_cache is None:
            if not self._steps:
                self._raw_cache = (
                    np.empty(0, np.uint64),
                    np.empty(0, np.float64),
                    np.empty(0, np.uint64),
                )
            else:
                if len(self._steps) > 1:
                    # Compact so that repeated reads and later appends stay cheap.
                    self._steps = [np.concatenate(self._steps)]
                    self._values = [np.concatenate(self._values)]
                    self._times = [np.concatenate(self._times)]
                self._raw_cache = (self._steps[0], self._values[0], self._times[0])
        return self._raw_cache

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Deduplicated ``(steps, values, times)`` sorted by step: per step the latest time wins,
        and among equal times the later write wins."""
        with self._lock:
            return self._arrays_locked()

    def _arrays_locked(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._dedup_cache is None:
            steps, values, times = self._raw_locked()
            if len(steps) == 0:
                self._dedup_cache = (steps, values, times)
            else:
                order = np.lexsort((np.arange(len(steps)), times, steps))
                s = steps[order]
                last = np.ones(len(s), dtype=bool)
                last[:-1] = s[1:] != s[:-1]
                keep = order[last]
                self._dedup_cache = (steps[keep], values[keep], times[keep])
        return self._dedup_cache

    def points(self) -> dict[int, tuple[float, int]]:
        """Deduplicated series as ``{step: (value, time_ms)}`` (convenient for assertions)."""
        steps, values, times = self.arrays()
        return {
            int(s): (float(v), int(t))
            for s, v, t in zip(steps.tolist(), values.tolist(), times.tolist(), strict=True)
        }

    def __len__(self) -> int:
        return len(self.arrays()[0])

    def __repr__(self) -> str:
        return f"MetricSeries({self.name!r}, raw={self._count})"


@dataclass
class DataRow:
    """One ``mlop_data`` row: histogram, table, graph or string-series point (never deduplicated)."""

    log_name: str
    data_type: str
    data: str
    step: int
    time: int

    @property
    def value(self) -> Any:
        """The decoded payload: raw text for string series, the parsed JSON object otherwise."""
        if self.data_type == "string-series":
            return self.data
        import json

        try:
            return json.loads(self.data)
        except ValueError:
            return self.data


@dataclass
class LogRow:
    """One console line (``mlop_logs``), never deduplicated."""

    time: int
    message: str
    line_number: int
    log_type: str


@dataclass
class FileRow:
    """One ``mlop_files`` metadata row, written at presign time (so retried presigns duplicate it)."""

    file_name: str
    file_type: str
    file_size: int
    log_name: str
    step: int
    time: int
    key: str
    caption: str | None = None
    sample_index: int | None = None
    annotations: Any = None
    store: ObjectStore | None = field(default=None, repr=False, compare=False)

    @property
    def content(self) -> bytes | None:
        """Bytes PUT to the presigned URL, or None when the upload never arrived."""
        return None if self.store is None else self.store.get(self.key)


class ObjectStore:
    """The S3 bucket: object key -> bytes, plus the content type of the last PUT."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}

    def get(self, key: str) -> bytes | None:
        return self.objects.get(key)


class RunData:
    """The ClickHouse side of one ``(project, runId)``: metrics, data, logs and files."""

    def __init__(self, lock: threading.RLock | None = None) -> None:
        self.lock = lock if lock is not None else threading.RLock()
        self.metrics: dict[str, MetricSeries] = {}
        self.data: list[DataRow] = []
        self.logs: list[LogRow] = []
        self.files: list[FileRow] = []
        self.last_ingest_ms: int | None = None

    def series_for_write(self, name: str) -> MetricSeries:
        """The series to append to, created on first use (inspection should use ``metric()``)."""
        s = self.metrics.get(name)
        if s is None:
            s = self.metrics[name] = MetricSeries(name, self.lock)
        return s

    def metric(self, name: str) -> dict[int, tuple[float, int]]:
        """Deduplicated points of one metric as ``{step: (value, time_ms)}`` ({} when absent)."""
        s = self.metrics.get(name)
        return {} if s is None else s.points()

    def data_of(self, data_type: str | None = None) -> dict[str, list[DataRow]]:
        """Data rows grouped by log name, optionally filtered by ``dataType``."""
        out: dict[str, list[DataRow]] = {}
        for row in self.data:
            if data_type is None or row.data_type == data_type:
                out.setdefault(row.log_name, []).append(row)
        return out


@dataclass
class Run:
    """A run row of the backend (Postgres) plus convenient access to its ingested data."""

    id: int
    number: int
    project: str
    name: str
    display_id: str
    external_id: str | None
    config: dict[str, Any]
    tags: list[str]
    status: str
    created_at: int
    updated_at: int
    status_updated: int | None = None
    status_metadata: Any = None
    system_metadata: Any = None
    logger_settings: Any = None
    fork_run_id: int | None = None
    fork_step: int | None = None
    log_names: dict[str, str] = field(default_factory=dict)
    status_history: list[tuple[str, int]] = field(default_factory=list)
    heartbeats: int = 0
    last_heartbeat_ms: int | None = None
    resume_count: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    model_graphs: list[dict[str, Any]] = field(default_factory=list)
    cancel_requested: bool = False
    _data: RunData | None = field(default=None, repr=False, compare=False)

    # -- ingested data ---------------------------------------------------------------------
    @property
    def store(self) -> RunData:
        assert self._data is not None
        return self._data

    @property
    def metrics(self) -> dict[str, MetricSeries]:
        """Metric series by name; ``run.metrics['loss'].points()`` gives ``{step: (value, time)}``."""
        return self.store.metrics

    def metric(self, name: str) -> dict[int, tuple[float, int]]:
        """Deduplicated points of one metric as ``{step: (value, time_ms)}`` ({} when absent)."""
        return self.store.metric(name)

    @property
    def data(self) -> list[DataRow]:
        """Every ``/ingest/data`` row in arrival order (histograms, tables, graphs, string series)."""
        return self.store.data

    @property
    def histograms(self) -> dict[str, list[DataRow]]:
        return self.store.data_of("HISTOGRAM")

    @property
    def tables(self) -> dict[str, list[DataRow]]:
        return self.store.data_of("TABLE")

    @property
    def string_series(self) -> dict[str, list[DataRow]]:
        return self.store.data_of("string-series")

    @property
    def logs(self) -> list[LogRow]:
        return self.store.logs

    @property
    def files(self) -> list[FileRow]:
        return self.store.files

    def log_group_of(self, name: str) -> str:
        return log_group(name)


@dataclass
class Project:
    """A project: run prefix for display ids and a per-project run counter."""

    id: int
    name: str
    prefix: str
    created_at: int
    counter: int = 0
    runs: list[Run] = field(default_factory=list)


def project_prefix(name: str) -> str:
    """Display-id prefix of a project: up to 3 upper-case alphanumerics (matches ``^[A-Z0-9]{1,4}$``)."""
    chars = [c for c in name.upper() if c.isascii() and c.isalnum()]
    return "".join(chars[:3]) or "RUN"


class State:
    """Everything the fake stores, guarded by one re-entrant lock."""

    def __init__(self, org_slug: str) -> None:
        self.lock = threading.RLock()
        self.org_slug = org_slug
        self.projects: dict[str, Project] = {}
        self.runs: dict[int, Run] = {}
        self.run_data: dict[tuple[str, int], RunData] = {}
        self.objects = ObjectStore()
        self._next_run_id = 1
        self._next_project_id = 1

    def project(self, name: str, create: bool = True) -> Project | None:
        p = self.projects.get(name)
        if p is None and create:
            p = Project(self._next_project_id, name, project_prefix(name), now_ms())
            self._next_project_id += 1
            self.projects[name] = p
        return p

    def data_for(self, project: str, run_id: int) -> RunData:
        with self.lock:
            key = (project, run_id)
            d = self.run_data.get(key)
            if d is None:
                d = self.run_data[key] = RunData(self.lock)
            return d

    def new_run(self, project: Project, **kwargs: Any) -> Run:
        project.counter += 1
        run = Run(
            id=self._next_run_id,
            number=project.counter,
            project=project.name,
            display_id=f"{project.prefix}-{project.counter}",
            **kwargs,
        )
        self._next_run_id += 1
        run._data = self.data_for(project.name, run.id)
        project.runs.append(run)
        self.runs[run.id] = run
        return run

    def find_external(self, project: str, external_id: str) -> Run | None:
        p = self.projects.get(project)
        if p is None:
            return None
        for run in p.runs:
            if run.external_id == external_id:
                return run
        return None

    def find_display(self, display_id: str, project: str | None = None) -> Run | None:
        for run in self.runs.values():
            if run.display_id == display_id and (project is None or run.project == project):
                return run
        return None
