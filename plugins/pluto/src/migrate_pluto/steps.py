"""Neptune steps (decimal(18, 6), possibly negative) -> Pluto steps (u64), injectively.

One plan per run: `pluto_step = (step - offset) * scale`, where `scale = 10**k` and k is the largest
number of decimal places any series step of the run uses, and `offset` is the most negative step
(0 when none is negative). Both are recorded in the run config, so the original step is
`pluto_step / scale + offset`. A fork shares its parent's plan when the parent's is finer, so the
fork step means the same on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
from migrate_core.format import STEP_SCALE, step_units

_DIVISORS = [10**e for e in range(6, -1, -1)]  # 1_000_000 ... 1


@dataclass
class StepPlan:
    divisor: int = STEP_SCALE  # pluto step = (units - offset_units) // divisor
    offset_units: int = 0  # in millionths, <= 0

    @property
    def scale(self) -> int:
        return STEP_SCALE // self.divisor

    @property
    def offset(self) -> str:
        return _units_text(self.offset_units)

    def to_pluto(self, units: np.ndarray) -> np.ndarray:
        return ((units - self.offset_units) // self.divisor).astype(np.uint64)

    def unit_to_pluto(self, units: int) -> int:
        return (units - self.offset_units) // self.divisor

    def merged(self, other: StepPlan) -> StepPlan:
        return StepPlan(min(self.divisor, other.divisor), min(self.offset_units, other.offset_units))

    def as_json(self) -> dict[str, object]:
        return {"divisor": self.divisor, "offset_units": self.offset_units}

    @classmethod
    def from_json(cls, data: dict[str, object] | None) -> StepPlan | None:
        if not data:
            return None
        return cls(int(data["divisor"]), int(data["offset_units"]))  # type: ignore[arg-type]


class StepPlanner:
    """Fed the step column of every series batch once, it yields the run's plan."""

    def __init__(self) -> None:
        self.divisor = STEP_SCALE
        self.min_units = 0

    def add(self, steps: pa.Array) -> None:
        if len(steps) == 0:
            return
        units = step_units(steps)
        self.min_units = min(self.min_units, int(units.min()))
        while self.divisor > 1 and np.any(units % self.divisor):
            self.divisor = _DIVISORS[_DIVISORS.index(self.divisor) + 1]

    def plan(self) -> StepPlan:
        offset = self.min_units if self.min_units < 0 else 0
        offset -= offset % self.divisor  # a multiple of the divisor, rounded towards -inf
        return StepPlan(self.divisor, offset)


def _units_text(units: int) -> str:
    value = Decimal(units) / STEP_SCALE
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


def units_of(value: float | str | Decimal) -> int:
    """A step given as a number (e.g. `sys/forking/step`) in millionths, exactly for decimals."""
    return int((Decimal(str(value)) * STEP_SCALE).to_integral_value())
