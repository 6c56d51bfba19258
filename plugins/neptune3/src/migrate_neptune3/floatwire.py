"""Float-series points (repeated ProtoFloatPointValueDTO) -> numpy columns."""

from __future__ import annotations

from typing import Any

import numpy as np


def decode_float_points(values: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps ms, steps, values, is_preview, completion ratio) of one page of points."""
    n = len(values)
    return (
        np.fromiter((p.timestamp_millis for p in values), np.int64, n),
        np.fromiter((p.step for p in values), np.float64, n),
        np.fromiter((p.value for p in values), np.float64, n),
        np.fromiter((p.is_preview for p in values), np.bool_, n),
        np.fromiter((p.completion_ratio for p in values), np.float32, n),
    )
