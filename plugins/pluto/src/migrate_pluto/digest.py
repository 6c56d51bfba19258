"""Digests (sha256, cut to 64 bits) of what a run's series hold, so a reload can tell what changed since the last load.

Every digest is over canonical bytes and does not depend on how storage cut the rows into batches or
parts: a re-export of the same content gives the same digests. Tracked kinds (data lines, console lines,
files) digest row by row, so the digest of a series' first N rows can be taken on the way (`want`):
that is how a reload proves that the rows Pluto already holds are still the first rows of the series.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

SIZE = 8  # bytes kept: 64 bits tell changed from unchanged content; this is not a security boundary


class _Hash:
    """sha256 (hardware-accelerated on current CPUs: ~8x blake2b here, and metric points are hashed on every
    load) cut to SIZE bytes."""

    __slots__ = ("_h",)

    def __init__(self, h: hashlib._Hash | None = None) -> None:  # type: ignore[name-defined]
        self._h = h if h is not None else hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def copy(self) -> _Hash:
        return _Hash(self._h.copy())

    def digest(self) -> bytes:
        return self._h.digest()[:SIZE]

    def hexdigest(self) -> str:
        return self._h.hexdigest()[: 2 * SIZE]


def _new() -> _Hash:
    return _Hash()


EMPTY = _new().hexdigest()


class RowDigests:
    """Per path: rows seen, a running digest, and the digest at the row counts asked for in `want`."""

    def __init__(self, want: dict[str, int] | None = None) -> None:
        self.rows: dict[str, int] = {}
        self._hash: dict[str, _Hash] = {}
        self.want = dict(want or {})
        self.at_want: dict[str, str] = {path: EMPTY for path, n in self.want.items() if n == 0}

    def row(self, path: str, step_units: int | None, time_ms: int, payload: bytes) -> int:
        """Add one row of `path`; returns its index within the path (0 for the path's first row)."""
        index = self.rows.get(path, 0)
        h = self._hash.get(path)
        if h is None:
            h = self._hash[path] = _new()
        h.update(struct.pack("<?qqQ", step_units is not None, step_units or 0, time_ms, len(payload)))
        h.update(payload)
        self.rows[path] = index + 1
        if self.want.get(path) == index + 1:
            self.at_want[path] = h.hexdigest()
        return index

    def digest(self, path: str) -> str:
        h = self._hash.get(path)
        return h.hexdigest() if h is not None else EMPTY


class MetricDigests:
    """Per metric name, a digest of the points sent (steps, times, values), chunk by chunk, and the digest at
    the point counts asked for in `want` (a chunk that crosses one is cut there)."""

    def __init__(self, want: dict[str, int] | None = None) -> None:
        self._parts: dict[str, tuple[_Hash, _Hash, _Hash]] = {}
        self.rows: dict[str, int] = {}
        self.want = dict(want or {})
        self.at_want: dict[str, str] = {name: EMPTY for name, n in self.want.items() if n == 0}

    def add(self, name: str, steps: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        seen = self.rows.get(name, 0)
        cut = self.want.get(name, -1) - seen
        if 0 < cut < len(steps):
            self.add(name, steps[:cut], times[:cut], values[:cut])
            self.add(name, steps[cut:], times[cut:], values[cut:])
            return
        parts = self._parts.get(name)
        if parts is None:
            parts = self._parts[name] = (_new(), _new(), _new())
        values = np.ascontiguousarray(values, dtype=np.float64)
        nan = np.isnan(values)
        if nan.any():
            values = values.copy()
            values[nan] = np.nan  # one NaN bit pattern
        # numpy arrays hand hashlib their buffers directly: no byte copies
        parts[0].update(np.ascontiguousarray(steps, dtype=np.uint64))  # type: ignore[arg-type]
        parts[1].update(np.ascontiguousarray(times, dtype=np.int64))  # type: ignore[arg-type]
        parts[2].update(values)  # type: ignore[arg-type]
        self.rows[name] = seen + len(steps)
        if self.want.get(name) == self.rows[name] and len(steps):
            self.at_want[name] = self.digest(name)

    def digest(self, name: str) -> str:
        parts = self._parts.get(name)
        if parts is None:
            return EMPTY
        whole = _new()
        for h in parts:
            whole.update(h.copy().digest())
        return whole.hexdigest()
