"""The first, cheap pass over a stored run: parameters, the step plan, and every series name.

Run creation needs the name, times, tags, config and fork point before any point is sent, and the
step plan needs every step of the run, so one read of the narrow columns comes first.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from migrate_core.api import RunReader
from migrate_core.format import PARAMETER_TYPES, SERIES_TYPES, VALUE_COLUMN, drop_absent, plain

from .steps import StepPlanner, units_of

LOG_PATH = re.compile(r"^monitoring/(?:.*/)?(stdout|stderr)$")
_FALSE = pa.scalar(False, pa.bool_())  # typed: a Python False is converted (and tries an import) per call
SCAN_COLUMNS = [
    "attribute_path", "attribute_type", "step",
    "int_value", "float_value", "string_value", "bool_value", "datetime_value", "string_set_value",
]


def kind_of(path: str, type_: str) -> str | None:
    """Which of our send streams carries an attribute: metrics, data, logs, files (None: parameter)."""
    if type_ == "float_series":
        return "metrics"
    if type_ == "string_series":
        return "logs" if LOG_PATH.match(path) else "data"
    if type_ == "histogram_series":
        return "data"
    if type_ in ("file", "file_series", "file_set", "artifact"):
        return "files"
    return None


@dataclass
class Scan:
    params: pa.Table | None = None
    absent: int = 0
    attributes: dict[str, str] = field(default_factory=dict)  # path -> attribute_type
    planner: StepPlanner = field(default_factory=StepPlanner)
    rows: int = 0
    unknown_types: dict[str, int] = field(default_factory=dict)


def plain_strings(array: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    return array.cast(pa.string()) if pa.types.is_dictionary(array.type) else array


def value_mask(array: pa.Array | pa.ChunkedArray, predicate) -> pa.Array:
    """`predicate(value)` per row, evaluated once per distinct value of a dictionary-encoded column."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    per_value = pa.array([bool(predicate(v)) for v in array.dictionary.to_pylist()], type=pa.bool_())
    return pc.fill_null(pc.take(per_value, array.indices), _FALSE)


def pairs_with_counts(paths: pa.Array, types: pa.Array) -> list[tuple[str, str, int]]:
    """Distinct (path, type) pairs of a batch with their row counts; cheap on dictionary columns."""
    if pa.types.is_dictionary(paths.type) and pa.types.is_dictionary(types.type):
        width = max(len(types.dictionary), 1)
        keys = paths.indices.to_numpy(zero_copy_only=False).astype(np.int64) * width + \
            types.indices.to_numpy(zero_copy_only=False)
        unique, counts = np.unique(keys, return_counts=True)
        p_dict, t_dict = paths.dictionary.to_pylist(), types.dictionary.to_pylist()
        return [(p_dict[k // width], t_dict[k % width], int(c)) for k, c in zip(unique.tolist(), counts.tolist(),
                                                                              strict=True)]
    pairs = pa.Table.from_arrays([plain_strings(paths), plain_strings(types)], ["p", "t"]).group_by(
        ["p", "t"]).aggregate([([], "count_all")])
    return list(zip(pairs["p"].to_pylist(), pairs["t"].to_pylist(), pairs["count_all"].to_pylist(), strict=True))


def plain_identity(table: pa.Table) -> pa.Table:
    """The table with dictionary-encoded identity columns cast to plain strings."""
    for name in ("project_id", "run_id", "attribute_path", "attribute_type"):
        if name in table.column_names and pa.types.is_dictionary(table.schema.field(name).type):
            table = table.set_column(table.schema.get_field_index(name), name, plain_strings(table[name]))
    return table


log = structlog.get_logger("migrate.pluto")


def scan(reader: RunReader, batch_rows: int) -> Scan:
    started = time.perf_counter()
    result, source = from_manifest(reader, batch_rows), "manifest"
    if result is None:
        source, columns = "rows", scan_columns(reader)
        result = _scan(reader, batch_rows, columns)
        read = set(columns)
        if any(VALUE_COLUMN[t] not in read for t in result.attributes.values() if t in PARAMETER_TYPES):
            # the manifest's counts missed a parameter type (a hand-edited manifest): read it all, never guess
            result = _scan(reader, batch_rows, SCAN_COLUMNS)
    log.debug("run_scanned", project=reader.project_id, run=reader.run_id, rows=result.rows,
              attributes=len(result.attributes), plan_from=source, seconds=round(time.perf_counter() - started, 4))
    return result


def from_manifest(reader: RunReader, batch_rows: int) -> Scan | None:
    """The scan from the manifest's per-attribute summary (type, rows, smallest step, decimal places of the
    steps), reading only the parameter rows, and those without the step column; a metrics-only run reads
    nothing here. None when the manifest cannot stand in for the rows: none (a neptune-exporter dump), one
    written before it recorded step decimals, or an attribute stored under more than one type."""
    manifest = reader.manifest or {}
    attributes, by_type = manifest.get("attributes"), manifest.get("rows_by_type")
    if not isinstance(attributes, dict) or not isinstance(by_type, dict) or not isinstance(manifest.get("rows"), int):
        return None
    result = Scan(rows=manifest["rows"])
    divisor_decimals, min_units = 0, 0
    for path, entry in attributes.items():
        if not isinstance(entry, dict) or "other_types" in entry or not isinstance(entry.get("type"), str):
            return None
        type_, rows = entry["type"], entry.get("rows")
        if not isinstance(rows, int):
            return None
        if type_ not in PARAMETER_TYPES and kind_of(path, type_) is None:
            result.unknown_types[type_] = result.unknown_types.get(type_, 0) + rows
            continue
        result.attributes[path] = type_
        if type_ in SERIES_TYPES and entry.get("step_min") is not None:
            decimals = entry.get("step_decimals")
            if not isinstance(decimals, int) or not 0 <= decimals <= 6:
                return None
            divisor_decimals = max(divisor_decimals, decimals)
            try:
                min_units = min(min_units, units_of(entry["step_min"]))
            except (ArithmeticError, ValueError, TypeError):
                return None
    if sum(entry["rows"] for entry in attributes.values()) != result.rows:
        return None  # the summary does not add up to the run: read the rows
    result.planner.divisor = 10 ** (6 - divisor_decimals)
    result.planner.min_units = min_units
    if any(by_type.get(t) for t in PARAMETER_TYPES):
        wanted = {VALUE_COLUMN[t] for t in PARAMETER_TYPES if by_type.get(t)}
        columns = ["attribute_path", "attribute_type", *(c for c in SCAN_COLUMNS if c in wanted)]
        rows = _scan(reader, batch_rows, columns, steps=False)
        if rows.rows != result.rows or any(VALUE_COLUMN[t] not in wanted for t in rows.attributes.values()
                                           if t in PARAMETER_TYPES):
            return None
        result.params, result.absent = rows.params, rows.absent
    return result


def _scan(reader: RunReader, batch_rows: int, columns: list[str], steps: bool = True) -> Scan:
    result = Scan()
    params: list[pa.Table] = []
    for batch in reader.batches(columns=columns, batch_rows=batch_rows):
        if batch.num_rows == 0:
            continue
        result.rows += batch.num_rows
        types = batch.column("attribute_type")
        for path, type_, count in pairs_with_counts(batch.column("attribute_path"), types):
            if type_ not in PARAMETER_TYPES and kind_of(path, type_) is None:
                result.unknown_types[type_] = result.unknown_types.get(type_, 0) + count
                continue
            result.attributes.setdefault(path, type_)
        is_param = value_mask(types, PARAMETER_TYPES.__contains__)
        if pc.any(is_param).as_py():
            table = pa.Table.from_batches([batch]).filter(is_param)
            params.append(plain_identity(table))
        if not steps:
            continue
        is_series = pc.and_(value_mask(types, SERIES_TYPES.__contains__), pc.is_valid(batch.column("step")))
        if pc.any(is_series).as_py():
            result.planner.add(pc.filter(batch.column("step"), is_series))
    if params:
        table = pa.concat_tables(params)
        full = plain(table)
        result.params, result.absent = _drop_absent_params(full)
    return result


def scan_columns(reader: RunReader) -> list[str]:
    """The scan's columns: identity and step, plus the value columns of the parameter types the run has.
    A manifest counts rows per type, so a run with no float parameter never decodes its float series'
    values here (that is most of a metrics-heavy run); without a manifest every parameter column is read."""
    by_type = (reader.manifest or {}).get("rows_by_type")
    if not isinstance(by_type, dict):
        return SCAN_COLUMNS
    wanted = {VALUE_COLUMN[t] for t in PARAMETER_TYPES if by_type.get(t)}
    return [c for c in SCAN_COLUMNS if c in ("attribute_path", "attribute_type", "step") or c in wanted]


def _drop_absent_params(table: pa.Table) -> tuple[pa.Table, int]:
    """drop_absent needs every value column; parameter tables lack the columns the scan did not read."""
    from migrate_core.format import SCHEMA, VALUE_COLUMNS

    for name in VALUE_COLUMNS:
        if name not in table.column_names:
            table = table.append_column(SCHEMA.field(name), pa.nulls(table.num_rows, SCHEMA.field(name).type))
    return drop_absent(table)
