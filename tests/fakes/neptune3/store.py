"""In-memory data model of the fake: projects, runs, typed attributes and columnar series.

Attribute types use the backend (wire) names: ``float``, ``int``, ``string``, ``bool``, ``datetime``,
``stringSet``, ``fileRef``, ``floatSeries``, ``stringSeries``, ``histogramSeries``, ``fileRefSeries``.

Series are stored as numpy columns so that a 10M-point series pages cheaply; appends coming one by one
from the ingest endpoint are buffered in lists and folded into the arrays on the next read.
"""

from __future__ import annotations

import math
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..common import now_ms

SERIES_TYPES = frozenset({"floatSeries", "stringSeries", "histogramSeries", "fileRefSeries"})
ATOM_TYPES = frozenset({"float", "int", "string", "bool", "datetime", "stringSet", "fileRef"})
ALL_TYPES = SERIES_TYPES | ATOM_TYPES


@dataclass(frozen=True)
class FileRef:
    """What a ``fileRef`` atom or a ``fileRefSeries`` point holds; ``path`` keys the blob store."""

    path: str
    size_bytes: int
    mime_type: str


@dataclass(frozen=True)
class Histogram:
    """A histogram point. ``type`` is the read-side label: ``COUNTING`` for counts, ``DENSITY`` for densities."""

    type: str
    edges: tuple[float, ...]
    values: tuple[float, ...]


@dataclass
class Columns:
    """A frozen, step-sorted view of a series. ``values`` is float64 for floats, an object array otherwise."""

    steps: np.ndarray
    timestamps: np.ndarray
    values: np.ndarray
    is_preview: np.ndarray | None
    completion: np.ndarray | None

    def __len__(self) -> int:
        return int(len(self.steps))

    def slice(self, start: int, stop: int) -> Columns:
        return Columns(
            self.steps[start:stop],
            self.timestamps[start:stop],
            self.values[start:stop],
            None if self.is_preview is None else self.is_preview[start:stop],
            None if self.completion is None else self.completion[start:stop],
        )

    def mask(self, keep: np.ndarray) -> Columns:
        return Columns(
            self.steps[keep],
            self.timestamps[keep],
            self.values[keep],
            None if self.is_preview is None else self.is_preview[keep],
            None if self.completion is None else self.completion[keep],
        )

    @staticmethod
    def concat(parts: Sequence[Columns], is_float: bool) -> Columns:
        if len(parts) == 1:
            return parts[0]
        any_preview = any(p.is_preview is not None for p in parts)

        def flags(p: Columns) -> np.ndarray:
            return p.is_preview if p.is_preview is not None else np.zeros(len(p), dtype=bool)

        def ratios(p: Columns) -> np.ndarray:
            return p.completion if p.completion is not None else np.ones(len(p), dtype=np.float32)

        values = (
            np.concatenate([p.values for p in parts])
            if is_float
            else np.concatenate([p.values for p in parts]).astype(object)
        )
        return Columns(
            np.concatenate([p.steps for p in parts]),
            np.concatenate([p.timestamps for p in parts]),
            values,
            np.concatenate([flags(p) for p in parts]) if any_preview else None,
            np.concatenate([ratios(p) for p in parts]) if any_preview else None,
        )


class SeriesRejected(ValueError):
    """A point was refused; the ingest endpoint reports ``code`` (an IngestCode number) in the request status."""

    TYPE_CONFLICTING = 21  # IngestCode.FIELD_TYPE_CONFLICTING
    POINT_DUPLICATE = 24  # IngestCode.SERIES_POINT_DUPLICATE
    STEP_NON_INCREASING = 25  # IngestCode.SERIES_STEP_NON_INCREASING
    PREVIEW_NOT_AFTER_COMMITTED = 42  # IngestCode.SERIES_PREVIEW_STEP_NOT_AFTER_LAST_COMMITTED_STEP

    def __init__(self, message: str, code: int = STEP_NON_INCREASING) -> None:
        super().__init__(message)
        self.code = code


class Series:
    """One series attribute. Points are kept ordered by step; steps are unique.

    Step rules applied on append (the fake's reading of the ingest error codes, not a documented contract):
    a committed (non-preview) point must come after the last committed step and discards any trailing
    preview points; re-sending the last committed point unchanged is a no-op (a retried request), a
    different value at that step is ``SERIES_POINT_DUPLICATE``, an earlier step ``SERIES_STEP_NON_INCREASING``.
    A preview point must come after the last committed step and replaces previews at or after its step.
    """

    def __init__(self, attr_type: str) -> None:
        self.attr_type = attr_type
        self.is_float = attr_type == "floatSeries"
        self._frozen = Columns(
            np.empty(0, dtype=np.float64),
            np.empty(0, dtype=np.int64),
            np.empty(0, dtype=np.float64 if self.is_float else object),
            None,
            None,
        )
        self._buf_steps: list[float] = []
        self._buf_ts: list[int] = []
        self._buf_values: list[Any] = []
        self._buf_preview: list[bool] = []
        self._buf_ratio: list[float] = []
        self._buf_has_preview = False
        self._last_step: float | None = None
        self._committed_step: float | None = None
        self._committed_value: Any = None
        self._trailing_previews = 0
        self._aggregates: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # -- writing ---------------------------------------------------------------------------------------
    def append(
        self, step: float, value: Any, timestamp_ms: int, is_preview: bool = False, ratio: float = 1.0
    ) -> None:
        """Append one point with the step rules described on the class."""
        step = float(step)
        with self._lock:
            committed = self._committed_step
            if committed is not None and step <= committed:
                if is_preview:
                    raise SeriesRejected(
                        f"preview step {step} is not after the last committed step {committed}",
                        SeriesRejected.PREVIEW_NOT_AFTER_COMMITTED,
                    )
                if step == committed and _same(value, self._committed_value):
                    return
                if step == committed:
                    raise SeriesRejected(f"another value at step {step}", SeriesRejected.POINT_DUPLICATE)
                raise SeriesRejected(f"step {step} is not after the last step {committed}")
            if self._trailing_previews:
                self._drop_trailing_previews(None if not is_preview else step)
            self._buf_steps.append(step)
            self._buf_ts.append(int(timestamp_ms))
            self._buf_values.append(value)
            self._buf_preview.append(bool(is_preview))
            self._buf_ratio.append(float(ratio))
            self._buf_has_preview = self._buf_has_preview or bool(is_preview)
            self._last_step = step
            if is_preview:
                self._trailing_previews += 1
            else:
                self._committed_step, self._committed_value = step, value
            self._aggregates = None

    def _drop_trailing_previews(self, from_step: float | None) -> None:
        """Remove trailing previews (all of them, or those at or after ``from_step``). Caller holds the lock."""
        cols = self._fold()
        keep = len(cols) - self._trailing_previews
        if from_step is not None:
            keep = max(keep, int(np.searchsorted(cols.steps, from_step, side="left")))
        self._trailing_previews -= len(cols) - keep
        self._frozen = cols.slice(0, keep)
        self._last_step = float(cols.steps[keep - 1]) if keep else None

    def extend(
        self,
        steps: np.ndarray,
        values: Any,
        timestamps_ms: np.ndarray,
        is_preview: np.ndarray | None = None,
        completion: np.ndarray | None = None,
    ) -> None:
        """Bulk append (the data-builder path); ``steps`` must be strictly increasing and after the last step."""
        steps = np.asarray(steps, dtype=np.float64)
        if len(steps) == 0:
            return
        if np.any(np.diff(steps) <= 0):
            raise ValueError("steps must be strictly increasing")
        with self._lock:
            cols = self._fold()
            if len(cols) and steps[0] <= cols.steps[-1]:
                raise ValueError("steps must start after the last stored step")
            vals = np.asarray(values, dtype=np.float64) if self.is_float else _object_array(values)
            part = Columns(
                steps,
                np.asarray(timestamps_ms, dtype=np.int64),
                vals,
                None if is_preview is None else np.asarray(is_preview, dtype=bool),
                None
                if is_preview is None
                else (
                    np.asarray(completion, dtype=np.float32)
                    if completion is not None
                    else np.where(np.asarray(is_preview, dtype=bool), 0.0, 1.0).astype(np.float32)
                ),
            )
            if not (len(part.steps) == len(part.timestamps) == len(part.values)):
                raise ValueError("steps, values and timestamps must have the same length")
            self._frozen = part if len(cols) == 0 else Columns.concat([cols, part], self.is_float)
            self._last_step = float(steps[-1])
            flags = part.is_preview if part.is_preview is not None else np.zeros(len(part), dtype=bool)
            committed = np.flatnonzero(~flags)
            if len(committed):
                self._committed_step = float(steps[committed[-1]])
                self._committed_value = part.values[committed[-1]]
                self._trailing_previews = int(len(part) - committed[-1] - 1)
            else:
                self._trailing_previews += len(part)
            self._aggregates = None

    # -- reading ---------------------------------------------------------------------------------------
    def _fold(self) -> Columns:
        """Move buffered appends into the numpy columns (caller holds the lock)."""
        if not self._buf_steps:
            return self._frozen
        n = len(self._buf_steps)
        part_values = (
            np.asarray(self._buf_values, dtype=np.float64)
            if self.is_float
            else _object_array(self._buf_values)
        )
        has_preview = self._buf_has_preview or self._frozen.is_preview is not None
        part = Columns(
            np.asarray(self._buf_steps, dtype=np.float64),
            np.asarray(self._buf_ts, dtype=np.int64),
            part_values,
            np.asarray(self._buf_preview, dtype=bool) if has_preview else None,
            np.asarray(self._buf_ratio, dtype=np.float32) if has_preview else None,
        )
        assert len(part) == n
        self._frozen = part if len(self._frozen) == 0 else Columns.concat([self._frozen, part], self.is_float)
        self._buf_steps, self._buf_ts, self._buf_values = [], [], []
        self._buf_preview, self._buf_ratio = [], []
        self._buf_has_preview = False
        return self._frozen

    def columns(self) -> Columns:
        with self._lock:
            return self._fold()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frozen) + len(self._buf_steps)

    @property
    def last_step(self) -> float | None:
        return self._last_step

    def aggregates(self) -> dict[str, Any]:
        """Values shown in tables: last/min/max/average/variance for floats, last + last_step otherwise.

        Computed over non-preview points (over all points if there are only previews).
        """
        with self._lock:
            if self._aggregates is not None:
                return self._aggregates
            cols = self._fold()
            has_preview = cols.is_preview is not None and bool(cols.is_preview.any())
            if has_preview and not bool(cols.is_preview.all()):
                cols = cols.mask(~cols.is_preview)
            agg: dict[str, Any] = {"has_preview": has_preview, "count": len(cols)}
            if len(cols):
                agg["last_step"] = float(cols.steps[-1])
                agg["last"] = cols.values[-1] if not self.is_float else float(cols.values[-1])
                if self.is_float:
                    vals = cols.values
                    finite = vals[np.isfinite(vals)]
                    agg["min"] = float(finite.min()) if len(finite) else math.nan
                    agg["max"] = float(finite.max()) if len(finite) else math.nan
                    agg["average"] = float(finite.mean()) if len(finite) else math.nan
                    agg["variance"] = float(finite.var()) if len(finite) else math.nan
            self._aggregates = agg
            return agg


def _same(a: Any, b: Any) -> bool:
    """Equality that treats NaN as equal to NaN (a retried NaN point is still the same point)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


def _object_array(values: Iterable[Any]) -> np.ndarray:
    items = list(values)
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr


@dataclass
class Attribute:
    """A typed attribute. ``value`` is a python value for atoms and a ``Series`` for series types."""

    type: str
    value: Any


@dataclass
class Run:
    """A run (the read side calls it an experiment when it holds an experiment name)."""

    project: Project
    sys_id: str
    internal_id: str
    custom_run_id: str | None
    seq: int
    attributes: dict[str, Attribute] = field(default_factory=dict)
    parent: Run | None = None
    fork_step: float | None = None
    is_experiment_head: bool = False

    @property
    def identifier(self) -> str:
        """``<ws>/<proj>/<sys/id>``: the form used in ``experimentIdsFilter`` and as a series holder."""
        return f"{self.project.name}/{self.sys_id}"

    def get(self, name: str) -> Attribute | None:
        return self.attributes.get(name)

    def set_atom(self, name: str, attr_type: str, value: Any) -> None:
        if attr_type not in ATOM_TYPES:
            raise ValueError(f"not an atom type: {attr_type}")
        self.attributes[name] = Attribute(attr_type, value)

    def series(self, name: str, attr_type: str) -> Series:
        """The series at ``name``, created on first use; a type clash is refused like the server does."""
        attr = self.attributes.get(name)
        if attr is None or attr.type != attr_type:
            if attr is not None and attr.type in SERIES_TYPES:
                raise SeriesRejected(
                    f"{name} is a {attr.type}, not a {attr_type}", SeriesRejected.TYPE_CONFLICTING
                )
            attr = Attribute(attr_type, Series(attr_type))
            self.attributes[name] = attr
        return attr.value

    @property
    def archived(self) -> bool:
        attr = self.attributes.get("sys/archived")
        return bool(attr and attr.value)

    @property
    def trashed(self) -> bool:
        attr = self.attributes.get("sys/trashed")
        return bool(attr and attr.value)

    def touch(self, when_ms: int | None = None) -> None:
        ts = now_ms() if when_ms is None else when_ms
        self.attributes["sys/modification_time"] = Attribute("datetime", ts)
        self.attributes["sys/ping_time"] = Attribute("datetime", ts)

    def lineage(self) -> list[tuple[Run, float]]:
        """This run and its ancestors as (run, max inherited step), root first. Fork steps are inclusive."""
        chain: list[tuple[Run, float]] = []
        limit = math.inf
        run: Run | None = self
        while run is not None:
            chain.append((run, limit))
            if run.fork_step is not None:
                limit = min(limit, run.fork_step)
            run = run.parent
        chain.reverse()
        return chain


class Project:
    """``<workspace>/<project>`` with its runs, in creation order."""

    def __init__(self, name: str, key: str | None = None) -> None:
        if name.count("/") != 1:
            raise ValueError(f"project must be '<workspace>/<project>', got {name!r}")
        self.name = name
        self.key = key or re.sub(r"[^A-Z0-9]", "", name.split("/")[1].upper())[:10] or "PROJ"
        self.uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"neptune3-fake:{name}"))
        self.runs: list[Run] = []
        self.by_custom_id: dict[str, Run] = {}
        self.by_sys_id: dict[str, Run] = {}
        self._next = 1

    def new_run(
        self,
        custom_run_id: str | None,
        *,
        experiment_name: str | None = None,
        creation_time_ms: int | None = None,
        family: str | None = None,
        parent: Run | None = None,
        fork_step: float | None = None,
        owner: str = "fake-user",
        sys_id: str | None = None,
    ) -> Run:
        """Create a run with the system attributes a Neptune 3 server exposes."""
        n = self._next
        self._next += 1
        sys_id = sys_id or f"{self.key}-{n}"
        run = Run(
            project=self,
            sys_id=sys_id,
            internal_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{sys_id}")),
            custom_run_id=custom_run_id,
            seq=n,
        )
        created = now_ms() if creation_time_ms is None else creation_time_ms
        a = run.attributes
        a["sys/id"] = Attribute("string", sys_id)
        if custom_run_id is not None:
            a["sys/custom_run_id"] = Attribute("string", custom_run_id)
        a["sys/name"] = Attribute("string", "")
        a["sys/creation_time"] = Attribute("datetime", created)
        a["sys/modification_time"] = Attribute("datetime", created)
        a["sys/ping_time"] = Attribute("datetime", created)
        a["sys/archived"] = Attribute("bool", False)
        a["sys/trashed"] = Attribute("bool", False)
        a["sys/failed"] = Attribute("bool", False)
        a["sys/owner"] = Attribute("string", owner)
        a["sys/tags"] = Attribute("stringSet", frozenset())
        a["sys/group_tags"] = Attribute("stringSet", frozenset())
        a["sys/family"] = Attribute("string", family or custom_run_id or sys_id)
        a["sys/diagnostics/project_uuid"] = Attribute("string", self.uuid)
        a["sys/diagnostics/run_uuid"] = Attribute("string", run.internal_id)
        a["sys/forking/depth"] = Attribute("int", 0)
        a["sys/experiment/is_head"] = Attribute("bool", False)
        if parent is not None:
            run.parent = parent
            run.fork_step = parent_last_step(parent) if fork_step is None else float(fork_step)
            depth = parent.get("sys/forking/depth")
            a["sys/forking/depth"] = Attribute("int", (depth.value if depth else 0) + 1)
            # Not in neptune-query's list of known sys attributes; neptune-exporter reads them (see report).
            a["sys/forking/parent"] = Attribute("string", parent.custom_run_id or parent.sys_id)
            a["sys/forking/step"] = Attribute("float", float(run.fork_step))
        self.runs.append(run)
        self.by_sys_id[sys_id] = run
        if custom_run_id is not None:
            self.by_custom_id[custom_run_id] = run
        if experiment_name:
            self.assign_experiment(run, experiment_name)
        return run

    def assign_experiment(self, run: Run, name: str) -> None:
        """Give ``run`` the experiment name; a previous holder stops being the experiment head."""
        for other in self.runs:
            if other is not run and other.is_experiment_head and other.get("sys/name").value == name:
                other.is_experiment_head = False
                other.attributes["sys/experiment/is_head"] = Attribute("bool", False)
        run.is_experiment_head = True
        run.attributes["sys/name"] = Attribute("string", name)
        run.attributes["sys/experiment/name"] = Attribute("string", name)
        run.attributes["sys/experiment/is_head"] = Attribute("bool", True)

    def resolve_holder(self, identifier: str) -> Run | None:
        """Resolve ``CUSTOM/<ws>/<proj>/<custom id>`` or ``<ws>/<proj>/<sys/id>`` (project already matched)."""
        if identifier.startswith("CUSTOM/"):
            rest = identifier[len("CUSTOM/") :]
            prefix = self.name + "/"
            return self.by_custom_id.get(rest[len(prefix) :]) if rest.startswith(prefix) else None
        prefix = self.name + "/"
        return self.by_sys_id.get(identifier[len(prefix) :]) if identifier.startswith(prefix) else None


def parent_last_step(run: Run) -> float:
    """Default fork step: the last step the parent has logged in any series (0 if none)."""
    steps = [a.value.last_step for a in run.attributes.values() if a.type in SERIES_TYPES]
    steps = [s for s in steps if s is not None]
    return max(steps) if steps else 0.0


class Store:
    """All projects, the uploaded blobs and the ingest request log; shared by the HTTP handlers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.projects: dict[str, Project] = {}
        self.blobs: dict[tuple[str, str], bytes] = {}
        self.request_status: dict[str, list[tuple[int, int, int]]] = {}  # id -> (code, count, IngestCode)
        self.rejected: list[tuple[str, str, str]] = []  # (project, run, message) for refused writes

    def project(self, name: str, *, create: bool = False) -> Project | None:
        with self.lock:
            proj = self.projects.get(name)
            if proj is None and create:
                proj = Project(name)
                self.projects[name] = proj
            return proj

    def find_run(self, identifier: str) -> Run | None:
        """Find a run from either holder identifier form, in any project."""
        with self.lock:
            body = identifier[len("CUSTOM/") :] if identifier.startswith("CUSTOM/") else identifier
            parts = body.split("/")
            if len(parts) < 3:
                return None
            proj = self.projects.get("/".join(parts[:2]))
            return proj.resolve_holder(identifier) if proj else None
