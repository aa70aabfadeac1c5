"""The objective: seeds, scores, intermediate values, stored records, pruning and divergence."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.artifacts import get_all_artifact_meta
from optuna.trial import TrialState

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import EvalPoint, train
from dqn_tune.errors import ConfigError
from dqn_tune.runner import attributes
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import make_artifact_store
from dqn_tune.tuning.objective import (
    ObjectiveSettings,
    make_objective,
    run_score,
    trial_base_config,
)
from dqn_tune.tuning.search_space import DEFAULT_SPACE, Fixed, SearchSpace
from dqn_tune.tuning.seeds import trial_seeds


def test_run_score_final_best_and_area(tiny_config: DQNConfig) -> None:
    result = train(tiny_config, seed=0)
    result = dataclasses.replace(
        result, curve=(EvalPoint(200, 10.0, 0.0), EvalPoint(400, 40.0, 0.0), EvalPoint(600, 20.0, 0.0))
    )
    assert run_score(result, "final") == result.mean_return
    assert run_score(result, "best") == 40.0
    assert run_score(result, "auc") == pytest.approx((10 + 40 + 20) / 3)


def test_trial_seeds_depend_on_study_seed_and_trial_number() -> None:
    assert trial_seeds(0, 3, 3) == trial_seeds(0, 3, 3)
    assert len(set(trial_seeds(0, 3, 3))) == 3
    assert trial_seeds(0, 3, 2) != trial_seeds(0, 4, 2) != trial_seeds(1, 3, 2)


def test_trial_base_config_uses_the_env_budget_and_trainer_defaults() -> None:
    config = trial_base_config("CartPole-v1")
    assert (config.total_timesteps, config.eval_freq) == (20_000, 2_000)
    assert config.replace(total_timesteps=DQNConfig().total_timesteps, eval_freq=DQNConfig().eval_freq) == DQNConfig()
    assert trial_base_config("Acrobot-v1", timesteps=3_000, learning_starts=10).total_timesteps == 3_000


def study_in(tmp_path: Path, pruner: optuna.pruners.BasePruner | None = None) -> optuna.Study:
    return optuna.create_study(
        storage=f"sqlite:///{tmp_path}/s.db",
        direction="maximize",
        pruner=pruner,
        sampler=optuna.samplers.RandomSampler(seed=0),
    )


def test_objective_trains_each_seed_reports_and_records(tmp_path: Path, tiny_config: DQNConfig) -> None:
    study = study_in(tmp_path)
    store = make_artifact_store(f"sqlite:///{tmp_path}/s.db")
    settings = ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=2, objective="final", study_seed=7)
    study.optimize(make_objective(settings, store), n_trials=1)
    trial = study.trials[0]
    runs = records.trial_runs(trial)
    assert trial.state == TrialState.COMPLETE
    assert [run.seed for run in runs] == trial_seeds(7, 0, 2)
    assert trial.value == pytest.approx((runs[0].mean_return + runs[1].mean_return) / 2)
    assert records.trial_config(trial) == tiny_config.replace(**trial.params)
    # The seeds train together: at each step the mean over seeds is reported, at the end their final evaluations'.
    assert sorted(trial.intermediate_values) == [200, 400, 600]
    assert trial.intermediate_values[200] == pytest.approx((runs[0].curve_returns[0] + runs[1].curve_returns[0]) / 2)
    assert trial.intermediate_values[600] == pytest.approx(trial.value)
    assert [a.filename for a in get_all_artifact_meta(trial, storage=study._storage)] == ["learning_curve.png"]
    assert all(run.selected_step in run.curve_steps for run in runs)
    assert trial.user_attrs[records.RUNS_SUMMARY] == "; ".join(
        f"seed {run.seed}: {run.mean_return:.1f} (weights of step {run.selected_step})" for run in runs
    )
    assert trial.user_attrs[records.CONFIG_SUMMARY].startswith(
        f"{tiny_config.env_id}, {tiny_config.total_timesteps} steps; learning_rate="
    )


def test_pruned_trial_keeps_its_config_and_partial_run(tmp_path: Path, tiny_config: DQNConfig) -> None:
    study = study_in(tmp_path, pruner=optuna.pruners.ThresholdPruner(lower=1e9))
    settings = ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=2)
    study.optimize(make_objective(settings), n_trials=1)
    trial = study.trials[0]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [200]
    assert [run.curve_steps[-1] for run in records.trial_runs(trial)] == [200, 200]  # both seeds stopped together
    assert records.CONFIG in trial.system_attrs and attributes.FAIL_REASON not in trial.user_attrs


def test_diverging_trial_is_pruned_with_a_reason_and_the_study_goes_on(tmp_path: Path, tiny_config: DQNConfig) -> None:
    diverging = ObjectiveSettings(
        base=tiny_config.replace(max_grad_norm=None, loss="mse"), space=SearchSpace({"learning_rate": Fixed(1e30)})
    )
    study = study_in(tmp_path)
    study.optimize(make_objective(diverging), n_trials=1)
    study.optimize(make_objective(ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE)), n_trials=1)
    diverged, healthy = study.trials
    assert diverged.state == TrialState.PRUNED
    assert diverged.user_attrs[attributes.FAIL_REASON].startswith("training diverged at step")
    assert records.trial_runs(diverged) == []
    assert healthy.state == TrialState.COMPLETE


def test_objective_settings_are_validated(tiny_config: DQNConfig) -> None:
    with pytest.raises(ConfigError, match="unknown objective 'mean'; expected one of final, best, auc"):
        ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, objective="mean")
    with pytest.raises(ConfigError, match="seeds = 0 is invalid"):
        ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=0)
    with pytest.raises(ConfigError, match="device = 'tpu' is invalid: expected one of cpu, cuda"):
        ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, device="tpu")
