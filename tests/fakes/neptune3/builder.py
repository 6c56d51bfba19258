"""Data builder: declare projects, runs and series straight in the fake's store.

Writing through neptune-scale is the faithful path but takes seconds per run; benchmarks need a 10M-point
run and a thousand small runs, so this builder writes numpy columns directly. The read side cannot tell
the difference: both paths end in the same ``Store`` objects.

Example::

    run = fake.data.run("bench-1", experiment_name="exp", configs={"lr": 0.1, "opt": "adam"}, tags=["a"])
    run.metric("train/loss", steps=np.arange(10_000_000, dtype=float), values=np.random.rand(10_000_000))
    child = fake.data.run("bench-1-fork", fork_of="bench-1", fork_step=500.0)
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from ..common import to_ms
from .store import FileRef, Histogram, Project, Run, Store, now_ms

DEFAULT_START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z: deterministic timestamps for builder data


def _atom(value: Any) -> tuple[str, Any]:
    """Infer the backend type of a config value the way neptune-scale's ``log_configs`` would send it."""
    if isinstance(value, bool):
        return "bool", value
    if isinstance(value, (int, np.integer)):
        return "int", int(value)
    if isinstance(value, (float, np.floating)):
        return "float", float(value)
    if isinstance(value, str):
        return "string", value
    if isinstance(value, datetime):
        return "datetime", to_ms(value)
    if isinstance(value, FileRef):
        return "fileRef", value
    if isinstance(value, (set, frozenset, list, tuple)) and all(isinstance(v, str) for v in value):
        return "stringSet", frozenset(value)
    raise TypeError(f"cannot store {value!r} as an attribute")


class RunBuilder:
    """Adds attributes and series to one run; every method returns ``self`` for chaining."""

    def __init__(self, store: Store, run: Run) -> None:
        self.store = store
        self.run = run

    @property
    def sys_id(self) -> str:
        return self.run.sys_id

    def _timestamps(self, n: int, timestamps: Any) -> np.ndarray:
        if timestamps is not None:
            return np.asarray(
                [to_ms(t) for t in timestamps] if not isinstance(timestamps, np.ndarray) else timestamps
            )
        start = int(self.run.get("sys/creation_time").value)  # type: ignore[union-attr]
        return start + np.arange(n, dtype=np.int64) * 1000

    def configs(self, values: Mapping[str, Any]) -> RunBuilder:
        with self.store.lock:
            for path, value in values.items():
                attr_type, stored = _atom(value)
                self.run.set_atom(path, attr_type, stored)
        return self

    def tags(self, tags: Iterable[str], *, group: bool = False) -> RunBuilder:
        path = "sys/group_tags" if group else "sys/tags"
        with self.store.lock:
            current = self.run.get(path)
            self.run.set_atom(
                path, "stringSet", frozenset(current.value if current else ()) | frozenset(tags)
            )
        return self

    def archive(self, archived: bool = True) -> RunBuilder:
        with self.store.lock:
            self.run.set_atom("sys/archived", "bool", archived)
        return self

    def trash(self, trashed: bool = True) -> RunBuilder:
        with self.store.lock:
            self.run.set_atom("sys/trashed", "bool", trashed)
        return self

    def metric(
        self,
        path: str,
        steps: Sequence[float] | np.ndarray,
        values: Sequence[float] | np.ndarray,
        *,
        timestamps: Any = None,
        previews: Sequence[bool] | np.ndarray | None = None,
        completion: Sequence[float] | np.ndarray | None = None,
    ) -> RunBuilder:
        """A float series from columns (numpy arrays are stored without per-point Python objects)."""
        steps_arr = np.asarray(steps, dtype=np.float64)
        with self.store.lock:
            series = self.run.series(path, "floatSeries")
        series.extend(
            steps_arr,
            np.asarray(values, dtype=np.float64),
            self._timestamps(len(steps_arr), timestamps),
            None if previews is None else np.asarray(previews, dtype=bool),
            None if completion is None else np.asarray(completion, dtype=np.float32),
        )
        return self

    def string_series(
        self, path: str, steps: Sequence[float] | np.ndarray, values: Sequence[str], *, timestamps: Any = None
    ) -> RunBuilder:
        steps_arr = np.asarray(steps, dtype=np.float64)
        with self.store.lock:
            series = self.run.series(path, "stringSeries")
        series.extend(steps_arr, list(values), self._timestamps(len(steps_arr), timestamps))
        return self

    def histogram_series(
        self,
        path: str,
        steps: Sequence[float] | np.ndarray,
        histograms: Sequence[Histogram | tuple[Sequence[float], Sequence[float]]],
        *,
        timestamps: Any = None,
    ) -> RunBuilder:
        """Histograms given as ``Histogram`` or ``(edges, counts)`` pairs (stored as type ``COUNTING``)."""
        items = [
            h
            if isinstance(h, Histogram)
            else Histogram("COUNTING", tuple(map(float, h[0])), tuple(map(float, h[1])))
            for h in histograms
        ]
        steps_arr = np.asarray(steps, dtype=np.float64)
        with self.store.lock:
            series = self.run.series(path, "histogramSeries")
        series.extend(steps_arr, items, self._timestamps(len(steps_arr), timestamps))
        return self

    def _blob(
        self, attribute: str, content: bytes, mime_type: str | None, name: str, step: float | None
    ) -> FileRef:
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        suffix = "none" if step is None else f"{step:f}"
        path = f"{self.run.custom_run_id or self.run.sys_id}/{attribute}/{suffix}/{name}"
        with self.store.lock:
            self.store.blobs[(self.run.project.name, path)] = bytes(content)
        return FileRef(path, len(content), mime)

    def file(
        self, path: str, content: bytes, *, mime_type: str | None = None, name: str = "file.bin"
    ) -> RunBuilder:
        """A ``fileRef`` atom plus its bytes in the fake's blob storage."""
        ref = self._blob(path, content, mime_type, name, None)
        with self.store.lock:
            self.run.set_atom(path, "fileRef", ref)
        return self

    def file_series(
        self,
        path: str,
        steps: Sequence[float],
        contents: Sequence[bytes],
        *,
        mime_type: str | None = None,
        name: str = "file.bin",
        timestamps: Any = None,
    ) -> RunBuilder:
        refs = [self._blob(path, c, mime_type, name, float(s)) for s, c in zip(steps, contents, strict=True)]
        steps_arr = np.asarray(steps, dtype=np.float64)
        with self.store.lock:
            series = self.run.series(path, "fileRefSeries")
        series.extend(steps_arr, refs, self._timestamps(len(steps_arr), timestamps))
        return self


class DataBuilder:
    """Entry point: ``fake.data.run(...)`` creates runs in the fake's default project (or ``project=``)."""

    def __init__(self, store: Store, default_project: str) -> None:
        self.store = store
        self.default_project = default_project

    def project(self, name: str | None = None) -> Project:
        proj = self.store.project(name or self.default_project, create=True)
        assert proj is not None
        return proj

    def run(
        self,
        custom_run_id: str | None,
        *,
        project: str | None = None,
        experiment_name: str | None = None,
        creation_time: datetime | int | None = None,
        fork_of: str | None = None,
        fork_step: float | None = None,
        family: str | None = None,
        configs: Mapping[str, Any] | None = None,
        tags: Iterable[str] = (),
        archived: bool = False,
        sys_id: str | None = None,
    ) -> RunBuilder:
        """Create a run. ``custom_run_id=None`` makes a run without ``sys/custom_run_id``.

        ``fork_of`` names the parent's custom run id in the same project; ``creation_time`` defaults to a
        deterministic instant one second after the previous run's.
        """
        proj = self.project(project)
        with self.store.lock:
            if creation_time is None:
                created = DEFAULT_START_MS + 1000 * len(proj.runs)
            else:
                created = to_ms(creation_time)
            parent = None
            if fork_of is not None:
                parent = proj.by_custom_id.get(fork_of)
                if parent is None:
                    raise KeyError(f"fork parent {fork_of!r} not found in {proj.name}")
            run = proj.new_run(
                custom_run_id,
                experiment_name=experiment_name,
                creation_time_ms=created,
                family=family,
                parent=parent,
                fork_step=fork_step,
                sys_id=sys_id,
            )
        builder = RunBuilder(self.store, run)
        if configs:
            builder.configs(configs)
        if tags:
            builder.tags(tags)
        if archived:
            builder.archive()
        return builder

    def get(self, custom_run_id: str, project: str | None = None) -> RunBuilder:
        run = self.project(project).by_custom_id[custom_run_id]
        return RunBuilder(self.store, run)


__all__ = ["DataBuilder", "RunBuilder", "FileRef", "Histogram", "now_ms", "to_ms"]
