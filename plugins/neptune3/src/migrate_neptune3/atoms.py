"""Single-value attributes (parameters, `sys/*`) -> one canonical batch per run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
from migrate_core.format import TIMESTAMP_TYPE, make_batch

# wire type -> (canonical attribute_type, value column, proto properties field)
PARAMETER_TYPES: dict[str, tuple[str, str, str]] = {
    "int": ("int", "int_value", "int_properties"),
    "float": ("float", "float_value", "float_properties"),
    "string": ("string", "string_value", "string_properties"),
    "bool": ("bool", "bool_value", "bool_properties"),
    "datetime": ("datetime", "datetime_value", "datetime_properties"),
    "stringSet": ("string_set", "string_set_value", "string_set_properties"),
}
SERIES_TYPES: dict[str, str] = {
    "floatSeries": "float_series",
    "stringSeries": "string_series",
    "histogramSeries": "histogram_series",
    "fileRefSeries": "file_series",
}
FILE_TYPES: dict[str, str] = {"fileRef": "file"}
CLASS_OF: dict[str, str] = {
    **{t: "parameters" for t in PARAMETER_TYPES},
    "floatSeries": "metrics",
    "stringSeries": "series",
    "histogramSeries": "series",
    "fileRef": "files",
    "fileRefSeries": "files",
}


def parameter_batch(project_id: str, run_id: str, attributes: Iterable[Any]) -> pa.RecordBatch | None:
    """One batch for the run's parameter attributes (ProtoAttributeDTO), in name order."""
    rows = sorted(((a.name, a.type, a) for a in attributes if a.type in PARAMETER_TYPES), key=lambda r: r[0])
    if not rows:
        return None
    n = len(rows)
    columns: dict[str, list[Any]] = {}
    types = []
    for i, (_name, wire, attr) in enumerate(rows):
        kind, column, field = PARAMETER_TYPES[wire]
        types.append(kind)
        props = getattr(attr, field)
        value: Any = list(props.value) if wire == "stringSet" else props.value
        columns.setdefault(column, [None] * n)[i] = value
    arrays: dict[str, Any] = {}
    for column, values in columns.items():
        if column == "datetime_value":
            arrays[column] = pa.array(values, type=pa.int64()).cast(TIMESTAMP_TYPE)
        else:
            arrays[column] = values
    return make_batch(project_id, run_id, pa.array([r[0] for r in rows], pa.string()),
                      pa.array(types, pa.string()), n, **arrays)


def file_ref(attr: Any) -> tuple[str, int, str] | None:
    """(path, size, mime type) of a fileRef attribute's value."""
    props = attr.file_ref_properties
    return (props.path, int(props.sizeBytes), props.mimeType) if props.path else None


NAME_BYTES_PER_REQUEST = 50_000


def name_chunks(names: list[str], limit: int) -> Iterator[list[str]]:
    """Name lists that keep each request under ~50 kB (attribute paths may be up to 1 kB each)."""
    chunk: list[str] = []
    size = 0
    for name in names:
        cost = len(name.encode("utf-8")) + 4
        if chunk and (len(chunk) >= limit or size + cost > NAME_BYTES_PER_REQUEST):
            yield chunk
            chunk, size = [], 0
        chunk.append(name)
        size += cost
    if chunk:
        yield chunk
