"""RunRecord: the JSON-ready summary of one training run (no weights), and its curve's area.

Stored on trials (tuning/records.py puts it under the `runs` attribute), drawn by plots.py, read
by reports and retrain: the one serialised form of a TrainResult.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dqn_tune.dqn.trainer import TrainResult


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The stored summary of one training run."""

    seed: int
    mean_return: float
    curve_steps: tuple[int, ...]
    curve_returns: tuple[float, ...]
    steps_per_second: float
    wall_time_s: float
    selected_step: int | None = None
    """Step whose weights `mean_return` scores (None in records stored before it was kept)."""

    @classmethod
    def from_result(cls, result: TrainResult) -> RunRecord:
        """Summarise a training run."""
        return cls(
            result.seed,
            result.mean_return,
            tuple(p.step for p in result.curve),
            tuple(p.mean_return for p in result.curve),
            result.steps_per_second,
            result.wall_time_s,
            result.selected_step,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives for a user attribute."""
        return {
            "seed": self.seed,
            "mean_return": self.mean_return,
            "curve_steps": list(self.curve_steps),
            "curve_returns": list(self.curve_returns),
            "steps_per_second": self.steps_per_second,
            "wall_time_s": self.wall_time_s,
            "selected_step": self.selected_step,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Inverse of to_dict (records stored before `selected_step` existed read it as None)."""
        selected = data.get("selected_step")
        return cls(
            int(data["seed"]),
            float(data["mean_return"]),
            tuple(data["curve_steps"]),
            tuple(data["curve_returns"]),
            float(data["steps_per_second"]),
            float(data["wall_time_s"]),
            None if selected is None else int(selected),
        )


def curve_auc(steps: Sequence[int], returns: Sequence[float]) -> float:
    """Step-function area under an evaluation curve over [0, last step], divided by the last step."""
    edges = np.array([0, *steps], dtype=float)
    if len(returns) == 0:
        return math.nan
    if edges[-1] <= 0:
        return float(returns[-1])
    return float(np.sum(np.asarray(returns, dtype=float) * np.diff(edges)) / edges[-1])
