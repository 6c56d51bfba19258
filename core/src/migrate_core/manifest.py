"""The run manifest: our side file that says what a stored run holds and whether it is complete.

neptune-exporter's only completeness marker is `part_0`; it has no counts, no checksums and marks crashed
runs complete. A manifest is written with status "writing" when a run starts and rewritten with status
"complete" after every part is committed, so a crash at any moment leaves a run that is visibly incomplete.
Per attribute it records type, row count, step range and first/last value; `verify` reconciles against it.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import __version__
from .format import VALUE_COLUMN, plain, step_units

FORMAT = "migrate.run-manifest"
SCHEMA_VERSION = 1
STRING_PREVIEW = 200
LINEAGE_PARENT = "sys/forking/parent"
LINEAGE_STEP = "sys/forking/step"

_FIRST_LAST_COLUMNS = ("float_value", "int_value", "string_value", "bool_value", "datetime_value")


def json_value(value: Any) -> Any:
    """A JSON-safe rendering of a cell: non-finite floats as strings, decimals and datetimes as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and len(value) > STRING_PREVIEW:
        return {"prefix": value[:STRING_PREVIEW], "length": len(value)}
    return value


def _only_value(column: pa.ChunkedArray) -> Any:
    """The value every row of `column` holds, or None if rows differ or any is null. A dictionary chunk with
    a one-entry dictionary (what `make_batch` builds) answers without looking at its rows."""
    value = None
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            return None
        if pa.types.is_dictionary(chunk.type):
            if len(chunk.dictionary) == 1:
                current = chunk.dictionary[0].as_py()
                if value is not None and current != value:
                    return None
                value = current
                continue
            chunk = chunk.dictionary_decode()
        current = chunk[0].as_py() if value is None else value
        if not pc.all(pc.equal(chunk, current)).as_py():
            return None
        value = current
    return value


SMALL_TABLE_ROWS = 256
_STEP_DECIMALS = "_step_decimals"


def step_decimals(steps: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row, how many of the step's six decimal places are used (0 for an integer step or a null one).
    A loader maps the steps of a run injectively onto integers by the run's largest count, so the manifest
    records it per attribute and the loader needs no pass over the rows to find it."""
    units = step_units(steps)
    out = np.zeros(units.size, dtype=np.int8)
    if units.size and np.any(units % 1_000_000):
        for exponent in range(1, 7):  # divisibility by 10**j is nested: count the powers that do not divide
            out += (units % 10**exponent != 0).astype(np.int8)
    return out


def _decimals_of(step: Any) -> int:
    """`step_decimals` of one Decimal step (None: 0)."""
    if step is None:
        return 0
    exponent = Decimal(step).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _small_groups(table: pa.Table) -> list[dict[str, Any]]:
    """What the hash group-by in `AttributeStats.update` returns, computed in Python for a few rows: groups in
    order of first appearance, null steps and values skipped by min/max/first/last as Arrow skips them."""
    columns = table.select(["attribute_path", "attribute_type", "step", *_FIRST_LAST_COLUMNS]).to_pydict()
    groups: dict[tuple[Any, Any], dict[str, Any]] = {}
    for i, key in enumerate(zip(columns["attribute_path"], columns["attribute_type"], strict=True)):
        row = groups.get(key)
        if row is None:
            row = groups[key] = {"attribute_path": key[0], "attribute_type": key[1], "count_all": 0,
                                 "step_min": None, "step_max": None, f"{_STEP_DECIMALS}_max": 0}
            for column in _FIRST_LAST_COLUMNS:
                row[f"{column}_first"] = row[f"{column}_last"] = None
        row["count_all"] += 1
        step = columns["step"][i]
        if step is not None:
            row["step_min"] = step if row["step_min"] is None else min(row["step_min"], step)
            row["step_max"] = step if row["step_max"] is None else max(row["step_max"], step)
            row[f"{_STEP_DECIMALS}_max"] = max(row[f"{_STEP_DECIMALS}_max"], _decimals_of(step))
        for column in _FIRST_LAST_COLUMNS:
            value = columns[column][i]
            if value is not None:
                if row[f"{column}_first"] is None:
                    row[f"{column}_first"] = value
                row[f"{column}_last"] = value
    return list(groups.values())


class AttributeStats:
    """Accumulates per-attribute statistics over the batches of one run, vectorised per batch."""

    def __init__(self) -> None:
        self.attributes: dict[str, dict[str, Any]] = {}
        self.rows = 0
        self.rows_by_type: Counter[str] = Counter()

    def update(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self.rows += table.num_rows
        single = self._single_attribute(table)
        if single is not None:
            self._merge(single)
            return
        if table.num_rows <= SMALL_TABLE_ROWS:  # a run's parameters: a few rows, where Arrow's setup dominates
            for row in _small_groups(table):
                self._merge(row)
            return
        aggregations: list[tuple[Any, str]] = [([], "count_all"), ("step", "min"), ("step", "max"),
                                               (_STEP_DECIMALS, "max")]
        aggregations += [(column, "first") for column in _FIRST_LAST_COLUMNS]
        aggregations += [(column, "last") for column in _FIRST_LAST_COLUMNS]
        keys = table.select(["attribute_path", "attribute_type"])
        if any(pa.types.is_dictionary(t) for t in keys.schema.types):
            table = plain(table)
        table = table.append_column(_STEP_DECIMALS, pa.array(step_decimals(table.column("step")), pa.int8()))
        grouped = table.group_by(["attribute_path", "attribute_type"], use_threads=False).aggregate(aggregations)
        for row in grouped.to_pylist():
            self._merge(row)

    @staticmethod
    def _single_attribute(table: pa.Table) -> dict[str, Any] | None:
        """The aggregate row for a batch of one attribute (the common case: sources write series by
        series), computed with a few scalar kernels instead of a hash group-by over six columns."""
        path = _only_value(table.column("attribute_path"))
        type_ = _only_value(table.column("attribute_type")) if path is not None else None
        if path is None or type_ is None:
            return None
        steps = pc.min_max(table.column("step"))
        row: dict[str, Any] = {
            "attribute_path": path,
            "attribute_type": type_,
            "count_all": table.num_rows,
            "step_min": steps["min"].as_py(),
            "step_max": steps["max"].as_py(),
            f"{_STEP_DECIMALS}_max": int(step_decimals(table.column("step")).max(initial=0)),
        }
        column = VALUE_COLUMN.get(type_)
        if column in _FIRST_LAST_COLUMNS:
            values = table.column(column)
            row[f"{column}_first"] = pc.first(values).as_py()
            row[f"{column}_last"] = pc.last(values).as_py()
        return row

    def _merge(self, row: dict[str, Any]) -> None:
        path, type_ = row["attribute_path"], row["attribute_type"]
        count = row["count_all"]
        self.rows_by_type[type_] += count
        column = VALUE_COLUMN.get(type_)
        first = row.get(f"{column}_first") if column in _FIRST_LAST_COLUMNS else None
        last = row.get(f"{column}_last") if column in _FIRST_LAST_COLUMNS else None
        entry = self.attributes.get(path)
        if entry is None:
            self.attributes[path] = {
                "type": type_,
                "rows": count,
                "step_min": row["step_min"],
                "step_max": row["step_max"],
                "step_decimals": int(row.get(f"{_STEP_DECIMALS}_max") or 0),
                "first": first,
                "last": last,
            }
            return
        if entry["type"] != type_:
            entry.setdefault("other_types", Counter())[type_] += count
            return
        entry["rows"] += count
        entry["step_min"] = _pick(min, entry["step_min"], row["step_min"])
        entry["step_max"] = _pick(max, entry["step_max"], row["step_max"])
        entry["step_decimals"] = max(entry["step_decimals"], int(row.get(f"{_STEP_DECIMALS}_max") or 0))
        if last is not None or column not in _FIRST_LAST_COLUMNS:
            entry["last"] = last
        if entry["first"] is None:
            entry["first"] = first

    def value_of(self, path: str) -> Any:
        entry = self.attributes.get(path)
        return None if entry is None else entry["first"]

    def lineage(self) -> dict[str, Any]:
        step = self.value_of(LINEAGE_STEP)
        return {"parent_run_id": self.value_of(LINEAGE_PARENT), "fork_step": step}

    def as_json(self) -> dict[str, Any]:
        out = {}
        for path, entry in sorted(self.attributes.items()):
            item = {key: json_value(value) for key, value in entry.items() if key != "other_types"}
            if "other_types" in entry:
                item["other_types"] = dict(entry["other_types"])
            out[path] = item
        return out


def _pick(fn: Any, a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return fn(a, b)


def new_manifest(project_id: str, run_id: str, source: dict[str, Any], writer: str) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "status": "writing",
        "project_id": project_id,
        "run_id": run_id,
        "source": dict(source),
        "writer": {"name": writer, "migrate_core": __version__},
        "started_at": _now(),
    }


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def finish_manifest(
    manifest: dict[str, Any],
    stats: AttributeStats,
    parts: list[dict[str, Any]],
    files: list[dict[str, Any]],
    lineage: dict[str, Any] | None,
    report: dict[str, Any] | None,
) -> dict[str, Any]:
    done = dict(manifest)
    merged = stats.lineage()
    merged.update({k: v for k, v in (lineage or {}).items() if v is not None})
    done.update(
        status="complete",
        completed_at=_now(),
        lineage={key: json_value(value) for key, value in merged.items()},
        rows=stats.rows,
        rows_by_type=dict(sorted(stats.rows_by_type.items())),
        parts=parts,
        files=files,
        attributes=stats.as_json(),
        losses=dict((report or {}).get("losses", {})),
        notes=list((report or {}).get("notes", [])),
    )
    return done


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    """tmp + fsync + rename, so a reader sees the old file or the new one, never half of one.

    `durable=False` skips both fsyncs: after a power loss the file may be the old one, or new but empty. Only
    for files whose every such state is safe: a run manifest, written after everything it points at is
    durable, reads as complete, as "writing" or as corrupt, and the last two mean "export it again"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # default=str: source info may carry datetimes or other plain objects; they become text. No indent: only
    # then does json use its C encoder (5x faster, and a manifest is written twice per run); `jq . <file>`
    # shows one readably.
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, default=str, separators=(",", ":"))
    # One fixed temporary name per file (one writer per file at a time): a process killed mid-write leaves it
    # behind, and the next write of the same file truncates and renames it away instead of adding another.
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.write(b"\n")
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)


def sync_filesystem(path: Path) -> None:
    """Flush everything written to the filesystem holding `path` (Linux `syncfs`; elsewhere `os.sync`)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            if libc.syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        pass
    os.sync()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at `path`, or None if absent; a corrupt one reads as a run with status "corrupt"."""
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"format": FORMAT, "status": "corrupt", "error": f"unreadable manifest {path.name}: {exc}"}
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return {"format": FORMAT, "status": "corrupt", "error": f"{path.name} is not a migrate run manifest"}
    return data
