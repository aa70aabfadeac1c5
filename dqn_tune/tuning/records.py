"""What a trial stores about its training runs, as Optuna user attributes.

Written by the tuning objective and the ablation; read by retrain, reports and the dashboard.
This module is the one place that knows the attribute names.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.run_record import RunRecord
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
