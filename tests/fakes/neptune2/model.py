"""Data model of the fake Neptune 2.x backend: projects, containers and typed attribute values.

Series are stored columnar (numpy arrays) so that a benchmark can serve a 1M-point series or thousands of runs
without building per-point Python objects up front.  Attribute values are plain Python values for atoms
(``float``, ``int``, ``bool``, ``str``, ``datetime``, ``set``) and the small wrapper classes below for the rest.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ..common import to_ms
from .spec import ATTRIBUTE_PROPERTY_FIELDS

JSON = dict[str, Any]


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def format_datetime(value: datetime) -> str:
    """ISO-8601 with milliseconds and ``Z``, the shape the client's ``parse_iso_date`` expects in tables."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --------------------------------------------------------------------------------------------- value types


@dataclass
class FloatSeries:
    """Float series as three aligned arrays; timestamps are epoch milliseconds."""

    steps: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray
    _stats: dict[str, float] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.steps.shape[0])

    def stats(self) -> dict[str, float]:
        """last/min/max/average/variance, computed once: attribute listings repeat them for every request."""
        if self._stats is None:
            vals = self.values
            self._stats = {
                "last": float(vals[-1]),
                "lastStep": float(self.steps[-1]),
                "min": float(np.min(vals)),
                "max": float(np.max(vals)),
                "average": float(np.mean(vals)),
                "variance": float(np.var(vals)),
            }
        return self._stats


@dataclass
class StringSeries:
    """String series: steps/timestamps as arrays, values as a numpy object array."""

    steps: np.ndarray
    values: np.ndarray
    timestamps: np.ndarray

    def __len__(self) -> int:
        return int(self.steps.shape[0])


@dataclass
class File:
    """A single uploaded file; ``name``/``ext`` are reported in ``fileProperties`` and Content-Disposition."""

    content: bytes
    name: str = "file"
    ext: str = "bin"


@dataclass
class FileSeriesItem:
    """One element of a file (image) series; ``step`` may differ from the element's index."""

    content: bytes
    step: float | None = None
    timestamp_ms: int | None = None
    mime: str = "image/png"
    name: str = ""
    description: str = ""


@dataclass
class FileSeries:
    items: list[FileSeriesItem]
    channel_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class FileSet:
    """A file set: relative path -> content; downloaded as a ZIP archive."""

    files: dict[str, bytes]
    mtime_ms: int = 1_700_000_000_000


@dataclass
class ArtifactFile:
    file_path: str
    file_hash: str = ""
    type: str = "S3"
    size: int = 0
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {
            "filePath": self.file_path,
            "fileHash": self.file_hash or hashlib.sha256(self.file_path.encode()).hexdigest(),
            "type": self.type,
            "size": self.size,
            "metadata": [{"key": k, "value": v} for k, v in sorted(self.metadata.items())],
        }


@dataclass
class Artifact:
    """An artifact attribute: the hash is derived from the file list unless given."""

    files: list[ArtifactFile]
    hash: str = ""

    def __post_init__(self) -> None:
        if not self.hash:
            digest = hashlib.sha256()
            for f in self.files:
                digest.update(repr(f.to_json()).encode())
            self.hash = digest.hexdigest()


@dataclass
class GitRef:
    commit_id: str = "0" * 40
    message: str = "commit"
    author_name: str = "Fake Author"
    author_email: str = "author@example.com"
    commit_date: datetime = datetime(2024, 1, 1, tzinfo=UTC)
    branch: str = "main"
    dirty: bool = False
    remotes: list[str] = field(default_factory=list)


@dataclass
class NotebookRef:
    notebook_id: str = "nb-1"
    notebook_name: str = "notebook.ipynb"
    checkpoint_id: str = "cp-1"
    checkpoint_name: str = "checkpoint"


@dataclass
class RunState:
    """``sys/state``: API values are ``running`` or ``idle``."""

    value: str = "idle"


@dataclass
class Raw:
    """An attribute with an arbitrary ``type`` and properties, e.g. a type unknown to the client."""

    type: str
    properties: JSON = field(default_factory=dict)


def attr_type(value: Any) -> str:
    """The 2.x API type name of an attribute value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | np.integer):
        return "int"
    if isinstance(value, float | np.floating):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, datetime):
        return "datetime"
    if isinstance(value, set | frozenset):
        return "stringSet"
    if isinstance(value, FloatSeries):
        return "floatSeries"
    if isinstance(value, StringSeries):
        return "stringSeries"
    if isinstance(value, File):
        return "file"
    if isinstance(value, FileSeries):
        return "imageSeries"
    if isinstance(value, FileSet):
        return "fileSet"
    if isinstance(value, Artifact):
        return "artifact"
    if isinstance(value, GitRef):
        return "gitRef"
    if isinstance(value, NotebookRef):
        return "notebookRef"
    if isinstance(value, RunState):
        return "experimentState"
    if isinstance(value, Raw):
        return value.type
    raise TypeError(f"unsupported attribute value {value!r} ({type(value).__name__})")


def _opt_float(x: Any) -> float | None:
    return None if x is None else float(x)


def attribute_properties(name: str, value: Any) -> JSON:
    """The ``<type>Properties`` object of an attribute, as the 2.x API returns it."""
    t = attr_type(value)
    props: JSON = {"attributeName": name, "attributeType": t}
    if t in ("float", "string", "bool"):
        props["value"] = value if t != "float" else float(value)
    elif t == "int":
        props["value"] = int(value)
    elif t == "datetime":
        props["value"] = format_datetime(value)
    elif t == "stringSet":
        props["values"] = sorted(value)
    elif t == "floatSeries":
        if len(value):
            props.update(value.stats())
    elif t == "stringSeries":
        if len(value):
            props.update(last=str(value.values[-1]), lastStep=float(value.steps[-1]))
    elif t == "imageSeries":
        props["channelId"] = value.channel_id
        if value.items:
            last = value.items[-1]
            props["lastStep"] = _opt_float(last.step if last.step is not None else len(value.items) - 1)
    elif t == "file":
        props.update(name=value.name, ext=value.ext, size=len(value.content))
    elif t == "fileSet":
        props["size"] = sum(len(c) for c in value.files.values())
    elif t == "artifact":
        props["hash"] = value.hash
    elif t == "gitRef":
        props.update(
            commit={
                "commitId": value.commit_id,
                "message": value.message,
                "authorName": value.author_name,
                "authorEmail": value.author_email,
                "commitDate": format_datetime(value.commit_date),
            },
            repositoryDirty=value.dirty,
            currentBranch=value.branch,
            remotes=list(value.remotes),
        )
    elif t == "notebookRef":
        props.update(
            notebookId=value.notebook_id,
            notebookName=value.notebook_name,
            notebookDeleted=False,
            checkpointId=value.checkpoint_id,
            checkpointName=value.checkpoint_name,
            checkpointDeleted=False,
        )
    elif t == "experimentState":
        props["value"] = value.value
    elif isinstance(value, Raw):
        props.update(value.properties)
    return props


def attribute_dto(name: str, value: Any) -> JSON:
    """AttributeDTO: ``{name, type, <type>Properties}``."""
    t = attr_type(value)
    return {"name": name, "type": t, f"{t}Properties": attribute_properties(name, value)}


KNOWN_TYPES = frozenset(ATTRIBUTE_PROPERTY_FIELDS)


# --------------------------------------------------------------------------------------------- builders


def _as_array(x: Any, dtype: Any) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, dtype=dtype))


def make_float_series(
    spec: FloatSeries | Sequence[Any] | np.ndarray | tuple[Any, ...], base_ms: int
) -> FloatSeries:
    """Accepts a FloatSeries, a values array, or ``(steps, values[, timestamps_ms])``."""
    if isinstance(spec, FloatSeries):
        return spec
    steps, values, ts = _split_series_spec(spec)
    values_arr = _as_array(values, np.float64)
    return FloatSeries(*_complete(steps, values_arr, ts, base_ms))


def make_string_series(spec: StringSeries | Sequence[Any] | tuple[Any, ...], base_ms: int) -> StringSeries:
    if isinstance(spec, StringSeries):
        return spec
    steps, values, ts = _split_series_spec(spec)
    values_arr = np.empty(len(values), dtype=object)
    values_arr[:] = [str(v) for v in values]
    return StringSeries(*_complete(steps, values_arr, ts, base_ms))


def _split_series_spec(spec: Any) -> tuple[Any, Any, Any]:
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        steps, values = spec[0], spec[1]
        ts = spec[2] if len(spec) == 3 else None
        return steps, values, ts
    return None, spec, None


def _complete(
    steps: Any, values: np.ndarray, ts: Any, base_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = values.shape[0]
    steps_arr = np.arange(n, dtype=np.float64) if steps is None else _as_array(steps, np.float64)
    if ts is None:
        ts_arr = base_ms + np.arange(n, dtype=np.int64) * 1000
    else:
        ts_arr = _as_array([to_ms(t) for t in ts] if not isinstance(ts, np.ndarray) else ts, np.int64)
    if not (steps_arr.shape[0] == n == ts_arr.shape[0]):
        raise ValueError(f"series arrays differ in length: {steps_arr.shape[0]}, {n}, {ts_arr.shape[0]}")
    return steps_arr, values, ts_arr


def make_file(spec: File | bytes | str) -> File:
    if isinstance(spec, File):
        return spec
    if isinstance(spec, str):
        spec = spec.encode()
    return File(content=spec)


def make_file_series(spec: FileSeries | Iterable[Any], base_ms: int) -> FileSeries:
    """Accepts a FileSeries or a list of FileSeriesItem / bytes / (bytes, step)."""
    if isinstance(spec, FileSeries):
        items = spec.items
        result = spec
    else:
        items = []
        for elem in spec:
            if isinstance(elem, FileSeriesItem):
                items.append(elem)
            elif isinstance(elem, tuple):
                items.append(FileSeriesItem(content=elem[0], step=elem[1]))
            else:
                items.append(FileSeriesItem(content=elem))
        result = FileSeries(items=items)
    for i, item in enumerate(items):
        if item.step is None:
            item.step = float(i)
        if item.timestamp_ms is None:
            item.timestamp_ms = base_ms + i * 1000
        if not item.name:
            item.name = f"{i}"
    return result


def make_file_set(spec: FileSet | Mapping[str, bytes | str]) -> FileSet:
    if isinstance(spec, FileSet):
        return spec
    return FileSet(files={k: v.encode() if isinstance(v, str) else v for k, v in spec.items()})


def make_artifact(spec: Artifact | Iterable[ArtifactFile | str]) -> Artifact:
    if isinstance(spec, Artifact):
        return spec
    return Artifact(files=[f if isinstance(f, ArtifactFile) else ArtifactFile(file_path=f) for f in spec])


# --------------------------------------------------------------------------------------------- containers


@dataclass
class Project:
    """A 2.x project (``version`` must be >= 2 for the client to accept it)."""

    id: str
    workspace: str
    name: str
    key: str
    organization_id: str
    version: int = 2
    containers: list[Container] = field(default_factory=list)
    by_sys_id: dict[str, Container] = field(default_factory=dict)
    next_run_number: int = 1
    container: Container | None = None

    @property
    def qualified_name(self) -> str:
        return f"{self.workspace}/{self.name}"


@dataclass
class Container:
    """A run, model, model version or the project itself; ``attrs`` maps attribute path -> value."""

    id: str
    sys_id: str
    type: str
    project: Project
    attrs: dict[str, Any]
    parent_id: str | None = None
    insertion: int = 0
    group_tags_404: bool = True

    @property
    def trashed(self) -> bool:
        return bool(self.attrs.get("sys/trashed", False))

    @property
    def qualified_id(self) -> str:
        return f"{self.project.qualified_name}/{self.sys_id}"
