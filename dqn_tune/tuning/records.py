"""What a trial stores about its training runs, as Optuna user attributes.

Written by the tuning objective and the ablation; read by retrain, reports and the dashboard.
This module is the one place that knows the attribute names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.errors import StorageError

CONFIG = "config"
"""DQNConfig.to_dict() of the trial: retraining reads this back instead of re-deriving it."""
RUNS = "runs"
"""One RunRecord dict per training seed."""
SEED_RETURNS = "seed_returns"
"""Final mean greedy return of each seed (the trial's value is their mean)."""
STEPS_PER_SECOND = "steps_per_second"
WALL_TIME_S = "wall_time_s"
FAIL_REASON = "fail_reason"
"""Why a trial failed or was pruned for a reason other than the pruner (e.g. divergence)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """The stored summary of one training run of a trial."""

    seed: int
    mean_return: float
    curve_steps: tuple[int, ...]
    curve_returns: tuple[float, ...]
    steps_per_second: float
    wall_time_s: float

    @classmethod
    def from_result(cls, result: TrainResult) -> RunRecord:
        """Summarise a training run."""
        return cls(result.seed, result.mean_return, tuple(p.step for p in result.curve),
                   tuple(p.mean_return for p in result.curve), result.steps_per_second, result.wall_time_s)

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives for a user attribute."""
        return {"seed": self.seed, "mean_return": self.mean_return, "curve_steps": list(self.curve_steps),
                "curve_returns": list(self.curve_returns), "steps_per_second": self.steps_per_second,
                "wall_time_s": self.wall_time_s}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Inverse of to_dict."""
        return cls(int(data["seed"]), float(data["mean_return"]), tuple(data["curve_steps"]),
                   tuple(data["curve_returns"]), float(data["steps_per_second"]), float(data["wall_time_s"]))


def curve_auc(steps: Sequence[int], returns: Sequence[float]) -> float:
    """Step-function area under an evaluation curve over [0, last step], divided by the last step."""
    edges = np.array([0, *steps], dtype=float)
    if len(returns) == 0:
        return math.nan
    if edges[-1] <= 0:
        return float(returns[-1])
    return float(np.sum(np.asarray(returns, dtype=float) * np.diff(edges)) / edges[-1])


def store_config(trial: optuna.Trial, config: DQNConfig) -> None:
    """Record the trial's full config."""
    trial.set_user_attr(CONFIG, config.to_dict())


def store_runs(trial: optuna.Trial, results: Sequence[TrainResult]) -> None:
    """Record the finished runs of a trial: per-seed summaries, returns, speed and time."""
    records = [RunRecord.from_result(result) for result in results]
    trial.set_user_attr(RUNS, [record.to_dict() for record in records])
    trial.set_user_attr(SEED_RETURNS, [record.mean_return for record in records])
    trial.set_user_attr(STEPS_PER_SECOND, float(np.mean([r.steps_per_second for r in records])) if records else 0.0)
    trial.set_user_attr(WALL_TIME_S, float(sum(r.wall_time_s for r in records)))


def trial_config(trial: FrozenTrial) -> DQNConfig:
    """The config a trial trained with, as stored (StorageError if the trial has none)."""
    if CONFIG not in trial.user_attrs:
        raise StorageError(f"trial {trial.number} has no stored '{CONFIG}' attribute; was it made by dqn-tune?")
    return DQNConfig.from_dict(trial.user_attrs[CONFIG])


def trial_runs(trial: FrozenTrial) -> list[RunRecord]:
    """The per-seed run records of a trial (empty if it stored none)."""
    return [RunRecord.from_dict(data) for data in trial.user_attrs.get(RUNS, [])]
