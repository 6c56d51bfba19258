"""The `demo` source: deterministic, Neptune-shaped runs with every attribute type, generated vectorised.

It is the embedded default for the quickstart, the reference input of the contract tests, and the data
generator for benchmarks (100M points come out in bounded batches, numpy only, no per-point Python).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from . import __version__
from .api import RunContext, RunWriter, Selection, Source, SourceRun
from .format import HISTOGRAM_TYPE, make_batch, steps_from_units, timestamps_ms

BASE_TIME = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
BASE_MS = int(BASE_TIME.timestamp() * 1000)


class DemoSource(Source):
    name = "demo"
    version = __version__

    def __init__(self, config) -> None:  # config: demo.DemoConfig
        self.config = config

    # ------------------------------------------------------------------ listing

    def run_ids(self) -> list[str]:
        return [f"{self.config.run_prefix}-{i + 1}" for i in range(self.config.runs)]

    def _fork_index(self) -> int | None:
        return self.config.runs - 1 if self.config.fork and self.config.runs >= 2 else None

    def list_runs(self, selection: Selection) -> Iterator[SourceRun]:
        if not selection.wants_project(self.config.project):
            return
        ids = self.run_ids()
        fork = self._fork_index()
        for index, run_id in enumerate(ids):
            if not selection.wants_run(run_id):
                continue
            yield SourceRun(
                project_id=self.config.project,
                run_id=run_id,
                parent_run_id=ids[0] if index == fork else None,
                modification_time=BASE_TIME + timedelta(hours=index, minutes=30),
                estimated_rows=self._estimated_rows(index == fork),
                estimated_file_bytes=self._estimated_file_bytes(run_id),
            )

    def _estimated_rows(self, fork: bool) -> int:
        """Exactly what `export_run` writes (without an attribute filter): a fork starts at the fork step and
        has two parameters more (sys/forking/*)."""
        c = self.config
        points = c.points_per_series - (self._fork_step() if fork else 0)
        return (18 + (2 if fork else 0) + c.series_per_run * points + 3 * c.string_series_lines
                + 2 * c.histogram_steps + (5 if c.files else 0))

    def _estimated_file_bytes(self, run_id: str) -> int:
        if not self.config.files:
            return 0
        return len(f"run: {run_id}\nlr: 0.001\n".encode()) + self.config.file_bytes + 3 * (8 + 256)

    # ------------------------------------------------------------------ export

    def export_run(self, run: SourceRun, selection: Selection, writer: RunWriter, ctx: RunContext) -> None:
        index = self.run_ids().index(run.run_id)
        generators = [
            self._parameters(run, index),
            self._float_series(run, index),
            self._string_series(run, index),
            self._histograms(run, index),
        ]
        for generator in generators:
            for batch in generator:
                ctx.check_cancelled()
                if selection.attributes is not None:
                    batch = _filter_attributes(batch, selection)
                if batch.num_rows:
                    writer.write(batch)
                    ctx.report.add(rows=batch.num_rows)
                    ctx.progress(batch.num_rows)
        if self.config.files:
            for batch in self._files(run, index, writer, selection, ctx):
                writer.write(batch)
                ctx.report.add(rows=batch.num_rows)
                ctx.progress(batch.num_rows)

    def _rng(self, index: int, salt: str) -> np.random.Generator:
        digest = hashlib.blake2b(f"{self.config.seed}:{index}:{salt}".encode(), digest_size=8).digest()
        return np.random.default_rng(int.from_bytes(digest, "little"))

    def _fork_step(self) -> int:
        return self.config.points_per_series // 2

    def _parameters(self, run: SourceRun, index: int) -> Iterator[pa.RecordBatch]:
        created = BASE_TIME + timedelta(hours=index)
        rng = self._rng(index, "params")
        rows: list[tuple[str, str, str, object]] = [
            ("sys/id", "string", "string_value", run.run_id),
            ("sys/custom_run_id", "string", "string_value", run.run_id),
            ("sys/name", "string", "string_value", f"demo run {index + 1}"),
            ("sys/owner", "string", "string_value", "demo-user"),
            ("sys/creation_time", "datetime", "datetime_value", created),
            ("sys/modification_time", "datetime", "datetime_value", created + timedelta(minutes=30)),
            ("sys/tags", "string_set", "string_set_value", ["demo", f"group-{index % 2}", "ünïcode tag"]),
            ("sys/failed", "bool", "bool_value", index % 3 == 2),
            ("sys/hostname", "string", "string_value", "demo-host"),
            ("parameters/learning_rate", "float", "float_value", float(rng.choice([1e-4, 3e-4, 1e-3]))),
            ("parameters/epochs", "int", "int_value", int(rng.integers(1, 100))),
            ("parameters/batch_size", "int", "int_value", 2**40 + index),
            ("parameters/optimizer", "string", "string_value", ["adam", "sgd", "adamw"][index % 3]),
            ("parameters/use_amp", "bool", "bool_value", index % 2 == 0),
            ("parameters/started_at", "datetime", "datetime_value", created + timedelta(seconds=5)),
            ("parameters/layers", "string_set", "string_set_value", ["conv", "relu", "linear"]),
            ("parameters/nested/dropout", "float", "float_value", 0.1),
            ("parameters/empty_string", "string", "string_value", ""),
        ]
        if index == self._fork_index():
            rows += [
                ("sys/forking/parent", "string", "string_value", self.run_ids()[0]),
                ("sys/forking/step", "float", "float_value", float(self._fork_step())),
            ]
        n = len(rows)
        columns: dict[str, list[object]] = {}
        for i, (_path, _type, column, value) in enumerate(rows):
            columns.setdefault(column, [None] * n)[i] = value
        yield make_batch(
            run.project_id,
            run.run_id,
            pa.array([r[0] for r in rows]),
            pa.array([r[1] for r in rows]),
            n,
            **columns,
        )

    def _float_series(self, run: SourceRun, index: int) -> Iterator[pa.RecordBatch]:
        c = self.config
        start = self._fork_step() if index == self._fork_index() else 0
        total = c.points_per_series - start
        for s in range(c.series_per_run):
            rng = self._rng(index, f"series-{s}")
            level = 0.0
            # even series: integer steps; odd series: quarter steps (exact decimals, not integers)
            unit = 1_000_000 if s % 2 == 0 else 250_000
            for offset in range(0, total, c.batch_rows):
                k = np.arange(start + offset, start + min(offset + c.batch_rows, total), dtype=np.int64)
                noise = rng.standard_normal(k.size)
                values = level + np.cumsum(noise) * 0.01
                level = float(values[-1]) if values.size else level
                if s == 0 and offset == 0 and k.size > 7:
                    values[3], values[5], values[7] = np.nan, np.inf, -np.inf
                yield make_batch(
                    run.project_id,
                    run.run_id,
                    f"metrics/series_{s}",
                    "float_series",
                    k.size,
                    step=steps_from_units(k * unit),
                    timestamp=timestamps_ms(BASE_MS + index * 3_600_000 + k * 250),
                    float_value=pa.array(values, type=pa.float64()),
                )

    def _string_series(self, run: SourceRun, index: int) -> Iterator[pa.RecordBatch]:
        lines = self.config.string_series_lines
        if not lines:
            return
        monitor = hashlib.sha1(run.run_id.encode()).hexdigest()[:8]
        k = np.arange(lines, dtype=np.int64)
        for path, make in (
            (f"monitoring/{monitor}/stdout", lambda i: f"epoch {i}: loss={1 / (i + 1):.4f}"),
            (f"monitoring/{monitor}/stderr", lambda i: f"warning {i}: ünïcode ✓ line"),
            ("train/notes", lambda i: "" if i == 1 else f"note {i} " + "x" * (i % 7)),
        ):
            yield make_batch(
                run.project_id,
                run.run_id,
                path,
                "string_series",
                lines,
                step=steps_from_units(k * 1_000_000),
                timestamp=timestamps_ms(BASE_MS + index * 3_600_000 + k * 1000 + 7),
                string_value=pa.array([make(int(i)) for i in k], type=pa.string()),
            )

    def _histograms(self, run: SourceRun, index: int) -> Iterator[pa.RecordBatch]:
        steps = self.config.histogram_steps
        if not steps:
            return
        k = np.arange(steps, dtype=np.int64)
        for path, edges in (
            ("histograms/weights", np.linspace(-1.0, 1.0, 11)),
            ("histograms/activations", np.array([0.0, 0.001, 0.01, 0.1, 1.0, 10.0])),
        ):
            # one generator per series: a run with more steps continues the shorter one (a resumed run)
            rng = self._rng(index, f"hist:{path}")
            counts = rng.integers(0, 1000, size=(steps, edges.size - 1)).astype(np.float64)
            edges_list = pa.ListArray.from_arrays(
                pa.array(np.arange(0, steps * edges.size + 1, edges.size), type=pa.int32()),
                pa.array(np.tile(edges, steps), type=pa.float64()),
            )
            values_list = pa.ListArray.from_arrays(
                pa.array(np.arange(0, steps * (edges.size - 1) + 1, edges.size - 1), type=pa.int32()),
                pa.array(counts.ravel(), type=pa.float64()),
            )
            hist = pa.StructArray.from_arrays(
                [pa.repeat(pa.scalar("COUNTING"), steps), edges_list, values_list],
                fields=list(HISTOGRAM_TYPE),
            )
            yield make_batch(
                run.project_id,
                run.run_id,
                path,
                "histogram_series",
                steps,
                step=steps_from_units(k * 1_000_000),
                timestamp=timestamps_ms(BASE_MS + index * 3_600_000 + k * 5000),
                histogram_value=hist,
            )

    def _files(
        self, run: SourceRun, index: int, writer: RunWriter, selection: Selection, ctx: RunContext
    ) -> Iterator[pa.RecordBatch]:
        rng = self._rng(index, "files")
        singles = [
            ("files/config.yaml", "config.yaml", f"run: {run.run_id}\nlr: 0.001\n".encode()),
            ("files/checkpoint", "model.bin", rng.bytes(self.config.file_bytes)),
        ]
        for path, name, data in singles:
            if not selection.wants_attribute(path):
                continue
            ctx.check_cancelled()
            stored = writer.write_file(path, name, data)
            ctx.report.add(files=1, bytes=len(data))
            yield make_batch(run.project_id, run.run_id, path, "file", 1, file_value=[{"path": stored}])
        path = "images/samples"
        if not selection.wants_attribute(path):
            return
        stored_paths, steps = [], [0, 5, 10]
        for step in steps:
            data = b"\x89PNG\r\n\x1a\n" + rng.bytes(256)
            stored_paths.append({"path": writer.write_file(path, f"sample_{step}.png", data)})
            ctx.report.add(files=1, bytes=len(data))
        k = np.array(steps, dtype=np.int64)
        yield make_batch(
            run.project_id,
            run.run_id,
            path,
            "file_series",
            len(steps),
            step=steps_from_units(k * 1_000_000),
            timestamp=timestamps_ms(BASE_MS + index * 3_600_000 + k * 1000),
            file_value=stored_paths,
        )


def _filter_attributes(batch: pa.RecordBatch, selection: Selection) -> pa.RecordBatch:
    paths = batch.column(batch.schema.get_field_index("attribute_path")).to_pylist()
    unique = set(paths)
    keep = {p for p in unique if selection.wants_attribute(p)}
    if keep == unique:
        return batch
    if not keep:
        return batch.slice(0, 0)
    mask = pa.array([p in keep for p in paths])
    return batch.filter(mask)
