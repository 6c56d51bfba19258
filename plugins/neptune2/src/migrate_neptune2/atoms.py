"""Parameter rows from the one structure read per run (getExperimentAttributes carries every atom value).

String sets come with their values in the same answer (the neptune client's own `fetch()` reads them from
there too), so no per-attribute request is needed, and `sys/group_tags`, which answers 404 when fetched on
its own, is exported like any other string set.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from migrate_core.api import RunReport
from migrate_core.format import make_batch

from .listing import parse_time

# 2.x API type -> (canonical attribute_type, value column)
ATOM_TYPES: dict[str, tuple[str, str]] = {
    "float": ("float", "float_value"),
    "int": ("int", "int_value"),
    "bool": ("bool", "bool_value"),
    "string": ("string", "string_value"),
    "datetime": ("datetime", "datetime_value"),
    "stringSet": ("string_set", "string_set_value"),
    "experimentState": ("string", "string_value"),
    # structured references: kept whole, as a JSON string parameter, instead of being dropped
    "gitRef": ("string", "string_value"),
    "notebookRef": ("string", "string_value"),
}
SERIES_TYPES = {"floatSeries": "float_series", "stringSeries": "string_series"}
FILE_TYPES = {"file": "file", "imageSeries": "file_series", "fileSet": "file_set", "artifact": "artifact"}
CLASS_OF: dict[str, str] = {
    **dict.fromkeys(ATOM_TYPES, "parameters"),
    "floatSeries": "metrics",
    "stringSeries": "series",
    **dict.fromkeys(FILE_TYPES, "files"),
}


def properties(attribute: dict[str, Any]) -> dict[str, Any]:
    return attribute.get(f"{attribute.get('type')}Properties") or {}


def _float(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)  # "NaN" / "Infinity" strings included


def atom_value(api_type: str, props: dict[str, Any]) -> Any:
    if api_type == "stringSet":
        return sorted(str(v) for v in props.get("values") or [])
    if api_type in ("gitRef", "notebookRef"):
        rest = {k: v for k, v in props.items() if k not in ("attributeName", "attributeType")}
        return json.dumps(rest, sort_keys=True, ensure_ascii=False)
    value = props.get("value")
    if api_type == "float":
        return _float(value)
    if api_type == "int":
        return None if value is None else int(value)
    if api_type == "datetime":
        return parse_time(value) if isinstance(value, str) else value
    if api_type == "string" or api_type == "experimentState":
        return None if value is None else str(value)
    return value


UNPARSABLE_DATETIME = ("datetime parameters the server sent in a form that could not be parsed "
                       "(exported empty; raw text in notes)")


def parameter_batch(project_id: str, run_id: str, attributes: list[dict[str, Any]],
                    report: RunReport) -> pa.RecordBatch | None:
    """One batch with a row per atom attribute (columns filled per type, everything else null).

    A datetime the server sent as text that does not parse is exported empty; it is counted, and its text
    goes into the report's notes (kept in the run manifest), so nothing disappears quietly."""
    if not attributes:
        return None
    n = len(attributes)
    columns: dict[str, list[Any]] = {}
    paths, types = [], []
    for i, attribute in enumerate(attributes):
        api_type = attribute["type"]
        canonical, column = ATOM_TYPES[api_type]
        paths.append(attribute["name"])
        types.append(canonical)
        props = properties(attribute)
        value = atom_value(api_type, props)
        raw = props.get("value")
        if api_type == "datetime" and value is None and isinstance(raw, str):
            report.lost(UNPARSABLE_DATETIME)
            shown = repr(raw) if len(raw) <= 1000 else f"{raw[:1000]!r}... ({len(raw)} characters)"
            report.note(f"{attribute['name']}: unparsable datetime {shown}")
        columns.setdefault(column, [None] * n)[i] = value
    return make_batch(project_id, run_id, pa.array(paths, pa.string()), pa.array(types, pa.string()), n, **columns)
