"""The study objective: sample a config, train it on several seeds, report, record, return one number.

A trial's seeds train together as one batched computation (`train_seeds`). Intermediate values:
at each evaluation step `s` the mean over seeds is reported at step `s` (the plain environment
step), and the mean of their final evaluations at `total_timesteps`, so a step means the same
point of training in every trial and the pruner compares like with like.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.artifacts import FileSystemArtifactStore

from dqn_tune.dqn.checkpoint import Checkpoint
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.device import check_device
from dqn_tune.dqn.run_record import RunRecord, curve_auc
from dqn_tune.dqn.trainer import GroupEvalCallback, TrainResult, train_seeds
from dqn_tune.errors import ConfigError
from dqn_tune.runner import attributes
from dqn_tune.runner.interrupts import raise_if_interrupted
from dqn_tune.runner.trial_queue import first_try
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import upload_learning_curve
from dqn_tune.tuning.checkpoints import TrialCheckpoints, train_checkpointed
from dqn_tune.tuning.defaults import OBJECTIVE, OBJECTIVES, STUDY_SEED, TRIAL_SEEDS
from dqn_tune.tuning.presets import base_config, preset_for
from dqn_tune.tuning.progress import EvalLines, eval_line
from dqn_tune.tuning.search_space import SearchSpace, suggest_config
from dqn_tune.tuning.seeds import trial_seeds


@dataclass(frozen=True, slots=True)
class ObjectiveSettings:
    """Everything that decides a trial's value besides its sampled hyperparameters (picklable)."""

    base: DQNConfig
    """Budget and every hyperparameter the space does not sample."""
    space: SearchSpace
    seeds: int = TRIAL_SEEDS
    """Training runs per trial; the trial's value is the mean of their scores."""
    objective: str = OBJECTIVE
    study_seed: int = STUDY_SEED
    device: str = "cpu"
    """Where the networks of a trial's seeds train ("cuda" on a GPU machine); envs and replay stay on the CPU."""

    def __post_init__(self) -> None:
        check_device(self.device)
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {self.objective!r}; expected one of {', '.join(OBJECTIVES)}")
        if self.seeds < 1:
            raise ConfigError(f"seeds = {self.seeds} is invalid: expected an integer >= 1")


def trial_base_config(env_id: str, *, timesteps: int | None = None, preset: bool = True, **overrides: Any) -> DQNConfig:
    """The config a trial starts from: the env's preset (its tuned config and per-trial budget) or, without one
    or with `preset=False`, DQNConfig's defaults; EVALS_PER_RUN evaluations; then `overrides` (command-line
    fields). `timesteps` replaces the budget."""
    chosen = preset_for(env_id) if preset else None
    if chosen is None:
        return base_config(env_id, timesteps or DQNConfig().total_timesteps, overrides)
    return chosen.base_config(timesteps=timesteps or chosen.trial_timesteps, **overrides)


def run_score(result: TrainResult, objective: str) -> float:
    """The score of one training run under `objective` (one of OBJECTIVES)."""
    if objective == "final":
        return result.mean_return
    returns = [point.mean_return for point in result.curve]
    if objective == "best":
        return max(returns)
    return curve_auc([point.step for point in result.curve], returns)


def make_objective(
    settings: ObjectiveSettings,
    artifact_store: FileSystemArtifactStore | None = None,
    checkpoints: TrialCheckpoints | None = None,
    show: Callable[[str], None] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective for `settings`: sample a config, then `run_config` on the trial's seeds (`show`: see
    there)."""

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, settings.base, settings.space)
        seeds = trial_seeds(settings.study_seed, first_try(trial), settings.seeds)  # a retry repeats its trial
        return run_config(
            trial,
            config,
            seeds,
            objective=settings.objective,
            artifact_store=artifact_store,
            device=settings.device,
            checkpoints=checkpoints,
            show=show,
        )

    return objective


def run_config(
    trial: optuna.Trial,
    config: DQNConfig,
    seeds: Sequence[int],
    *,
    objective: str = "final",
    artifact_store: FileSystemArtifactStore | None = None,
    device: str = "cpu",
    checkpoints: TrialCheckpoints | None = None,
    show: Callable[[str], None] | None = None,
) -> float:
    """Train `config` on every seed at once (`train_seeds`) as `trial`; return the mean of the runs' scores.

    Each evaluation's mean over seeds is reported to the trial; when the pruner says so the trial
    stops (TrialPruned). A diverging run (NaN/inf loss) stops the group and prunes the trial with
    attributes.FAIL_REASON set: a re-run would only diverge again. Config and runs are stored on every
    trial, pruned ones included; with `artifact_store`, the runs' learning curves are uploaded as a PNG.
    With `checkpoints`, the run is checkpointed, and a retry resumes from its predecessor's checkpoint
    (tuning/checkpoints.py), first reporting the evaluations the checkpoint holds. With `show`, evaluations are
    also shown as lines (`EvalLines`: at most one a minute).
    """
    records.store_config(trial, config)
    results = train_checkpointed(
        [trial],
        config,
        seeds,
        checkpoints,
        lambda checkpointing: train_seeds(
            config,
            seeds,
            on_eval=_reporter(trial, config.total_timesteps, show),
            device=device,
            checkpoints=checkpointing,
        ),
        on_resume=lambda checkpoint: _report_curves(trial, checkpoint),
    )
    # a diverged run's figures describe weights it never finished training: not recorded
    _record(trial, [result for result in results if result.diverged is None], artifact_store)
    diverged = next((result.diverged for result in results if result.diverged is not None), None)
    if diverged is not None:
        trial.set_user_attr(attributes.FAIL_REASON, str(diverged))
        raise optuna.TrialPruned(str(diverged))
    if results[0].stopped_early:
        raise optuna.TrialPruned(f"pruned at step {results[0].steps}")
    trial.report(float(np.mean([result.mean_return for result in results])), config.total_timesteps)
    return float(np.mean([run_score(result, objective) for result in results]))


def run_seed_trials(
    trials: Sequence[optuna.Trial],
    config: DQNConfig,
    seeds: Sequence[int],
    *,
    artifact_store: FileSystemArtifactStore | None = None,
    device: str = "cpu",
    checkpoints: TrialCheckpoints | None = None,
    show: Callable[[str], None] | None = None,
    what: str = "",
) -> list[float | None]:
    """Train `config` on `seeds` as one batched group (`train_seeds`) where each seed is a trial of its own (a
    validation cell): trial k gets seed k's run, learning curve and final return, None (pruned, with
    attributes.FAIL_REASON) if that run diverged. Nothing is pruned early; a stop signal stops the group.
    With `checkpoints`, the group is checkpointed; retries of the same group resume from its checkpoint. With
    `show`, the group's evaluations are shown as lines naming it as `what` (`EvalLines`: at most one a minute)."""
    for trial in trials:
        records.store_config(trial, config)
    results = train_checkpointed(
        trials,
        config,
        seeds,
        checkpoints,
        lambda checkpointing: train_seeds(
            config,
            seeds,
            on_eval=_watcher(what, config.total_timesteps, show),
            device=device,
            checkpoints=checkpointing,
        ),
    )
    values: list[float | None] = []
    for trial, result in zip(trials, results, strict=True):
        if result.diverged is not None:
            trial.set_user_attr(attributes.FAIL_REASON, str(result.diverged))
            values.append(None)
            continue
        _record(trial, [result], artifact_store)
        for point in result.curve:
            if point.step < config.total_timesteps:
                trial.report(point.mean_return, point.step)
        trial.report(result.mean_return, config.total_timesteps)
        values.append(result.mean_return)
    return values


def _report_curves(trial: optuna.Trial, checkpoint: Checkpoint) -> None:
    """Report the evaluations a checkpoint holds, as the run that wrote it reported them (`_reporter`)."""
    for points in zip(*checkpoint.curves(), strict=True):
        trial.report(float(np.mean([point.mean_return for point in points])), points[0].step)


def _watcher(what: str, total_timesteps: int, show: Callable[[str], None] | None) -> GroupEvalCallback:
    """train_seeds' on_eval for a group never pruned: stop on a signal; show each seed's return (`EvalLines`)."""
    lines = EvalLines(show)

    def on_eval(step: int, mean_returns: Sequence[float | None]) -> bool:
        raise_if_interrupted()
        lines(lambda: eval_line(what, step, total_timesteps, mean_returns))
        return False

    return on_eval


def _reporter(trial: optuna.Trial, total_timesteps: int, show: Callable[[str], None] | None) -> GroupEvalCallback:
    """train_seeds' on_eval: report the mean over seeds at the step (and show it: `EvalLines`); stop the group when
    the pruner says so, a seed diverged, or a stop signal arrived."""
    lines = EvalLines(show)

    def on_eval(step: int, mean_returns: Sequence[float | None]) -> bool:
        raise_if_interrupted()
        if any(value is None for value in mean_returns):
            return True
        value = float(np.mean(mean_returns))  # type: ignore[arg-type]
        trial.report(value, step)
        lines(lambda: eval_line(f"trial {trial.number}", step, total_timesteps, [value]))
        return trial.should_prune()

    return on_eval


def _record(
    trial: optuna.Trial, results: Sequence[TrainResult], artifact_store: FileSystemArtifactStore | None
) -> None:
    records.store_runs(trial, results)
    if artifact_store is not None and results:
        upload_learning_curve(trial, [RunRecord.from_result(r) for r in results], artifact_store)
