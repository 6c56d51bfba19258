"""Parameters -> run metadata and config.

Every parameter goes into the config, nested by its `/` path (`parameters/optim/lr` ->
`{"parameters": {"optim": {"lr": ...}}}`); a path that is both a value and a namespace keeps the value
under `_value`, and a parameter key that looks like one of ours (`_value`, `_migrate`, `_migrate_file`)
gets one more leading `_`. Datetimes become ISO-8601 UTC strings, string sets lists, non-finite floats
the strings "NaN"/"Infinity"/"-Infinity" (JSON has no such numbers). `sys/*` also feeds the run itself:
name, tags, created/updated times, failed status and fork lineage.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
from migrate_core.format import VALUE_COLUMN

NAME = "sys/name"
TAGS = "sys/tags"
CREATED = "sys/creation_time"
MODIFIED = "sys/modification_time"
FAILED = "sys/failed"
STATE = "sys/state"
FORK_PARENT = "sys/forking/parent"
FORK_STEP = "sys/forking/step"


@dataclass
class RunMeta:
    config: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    tags: list[str] = field(default_factory=list)
    created_ms: int | None = None
    updated_ms: int | None = None
    failed: bool = False
    fork_parent: str | None = None
    fork_step: Any = None
    big_strings: list[tuple[str, str]] = field(default_factory=list)  # (path, value) too long for config
    params: int = 0
    repeated: int = 0  # parameter rows whose path an earlier row already had


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def config_value(type_: str, value: Any) -> Any:
    if value is None:
        return None
    if type_ == "float":
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if type_ == "datetime":
        return iso(value)
    if type_ == "string_set":
        return list(value)
    return value


# keys the config uses itself: `_value` (a path's own value beside its namespace), `_migrate` (our record) and
# `_migrate_file` (an over-long string sent as a file). A parameter key of that form gets one more `_`, so
# `a/_value` -> `__value`, `a/__value` -> `___value`: the mapping is injective and nothing is overwritten.
_OURS = re.compile(r"_+(?:value|migrate|migrate_file)")


def config_key(part: str) -> str:
    return "_" + part if _OURS.fullmatch(part) else part


class _Node:
    """One config key: its own value (if the path is a parameter) and its children (if a namespace)."""

    __slots__ = ("children", "has_value", "value")

    def __init__(self) -> None:
        self.has_value = False
        self.value: Any = None
        self.children: dict[str, _Node] = {}

    def render(self) -> Any:
        if not self.children:
            return self.value
        out = {key: child.render() for key, child in self.children.items()}
        if self.has_value:
            out["_value"] = self.value
        return out


def nested(items: list[tuple[str, Any]]) -> dict[str, Any]:
    """`(path, value)` pairs -> the config, nested by `/`; the same whatever the order of the pairs."""
    root = _Node()
    for path, value in items:
        node = root
        for part in path.split("/"):
            node = node.children.setdefault(config_key(part), _Node())
        node.has_value, node.value = True, value
    return root.render() if root.children else {}


def run_meta(rows: pa.Table, max_string: int) -> RunMeta:
    """`rows`: parameter rows only (plain strings), absent rows already dropped."""
    meta = RunMeta(params=rows.num_rows)
    paths = rows.column("attribute_path").to_pylist()
    types = rows.column("attribute_type").to_pylist()
    columns = {name: rows.column(name).to_pylist() for name in set(VALUE_COLUMN[t] for t in set(types))}
    items: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for i, (path, type_) in enumerate(zip(paths, types, strict=True)):
        raw = columns[VALUE_COLUMN[type_]][i]
        if path in seen:  # a dump may hold a path twice; the config keeps one value, the last
            meta.repeated += 1
        seen.add(path)
        if type_ == "string" and raw is not None and len(raw) > max_string:
            meta.big_strings.append((path, raw))
            items.append((path, {"_migrate_file": path, "length": len(raw)}))
            continue
        items.append((path, config_value(type_, raw)))
        if path == NAME and raw:
            meta.name = str(raw)
        elif path == TAGS and raw is not None:
            meta.tags = [str(t) for t in raw]
        elif path == CREATED and isinstance(raw, datetime):
            meta.created_ms = to_ms(raw)
        elif path == MODIFIED and isinstance(raw, datetime):
            meta.updated_ms = to_ms(raw)
        elif path == FAILED and raw is True or path == STATE and isinstance(raw, str) and raw.lower() == "failed":
            meta.failed = True
        elif path == FORK_PARENT and raw:
            meta.fork_parent = str(raw)
        elif path == FORK_STEP and raw is not None:
            meta.fork_step = raw
    meta.config = nested(items)
    return meta
