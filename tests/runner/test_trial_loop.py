"""The ask/tell loop: quotas, caps, errors that fail one trial, trials failed elsewhere, samplers that stop it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.errors import ConfigError
from dqn_tune.runner import attributes
from dqn_tune.runner.optuna_internals import queued_params
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_loop import BatchObjective, TrialQuota, run_trials


def new_study(tmp_path: Path, sampler: optuna.samplers.BaseSampler | None = None) -> optuna.Study:
    return optuna.create_study(
        study_name="s", storage=open_storage(f"sqlite:///{tmp_path}/s.db"), direction="maximize", sampler=sampler
    )


def test_quota_and_total_cap_stop_the_loop(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    quota = TrialQuota(3)
    run_trials(study, lambda trial: trial.suggest_float("x", 0, 1), quota)
    assert (len(study.trials), quota.finished, quota.take()) == (3, 3, False)
    run_trials(study, lambda trial: trial.suggest_float("x", 0, 1), TrialQuota(None), total_trials=5)
    assert len(study.trials) == 5


def test_project_errors_fail_one_trial_and_bugs_stop_the_loop(tmp_path: Path) -> None:
    study = new_study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 0:
            raise ConfigError("gamma = 2 is invalid")
        if trial.number == 2:
            raise ZeroDivisionError("a bug")
        return 1.0

    with pytest.raises(ZeroDivisionError):
        run_trials(study, objective, TrialQuota(5))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL]
    assert study.trials[0].user_attrs[attributes.FAIL_REASON] == "gamma = 2 is invalid"
    assert study.trials[2].user_attrs[attributes.FAIL_REASON] == "ZeroDivisionError: a bug"


def test_a_trial_failed_by_another_process_is_dropped_and_the_loop_goes_on(tmp_path: Path) -> None:
    study = new_study(tmp_path)

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 0:  # what another worker's stale-trial check does when our heartbeat stalls
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        return 1.0

    run_trials(study, objective, TrialQuota(2))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]


def test_grid_sampler_stops_the_loop_when_the_grid_is_done(tmp_path: Path) -> None:
    study = new_study(tmp_path, sampler=optuna.samplers.GridSampler({"x": [1, 2, 3]}, seed=0))
    run_trials(study, lambda trial: trial.suggest_categorical("x", [1, 2, 3]), TrialQuota(None))
    assert sorted(t.params["x"] for t in study.trials) == [1, 2, 3]


def test_a_batch_objective_runs_neighbouring_queued_trials_of_one_key_together_within_the_quota(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    for key in ("a", "a", "a", "b", "a"):
        study.enqueue_trial({"key": key, "x": 0.5})
    batches: list[list[int]] = []

    def run(trials: list[optuna.Trial]) -> list[float | None]:
        batches.append([trial.number for trial in trials])
        keys = {trial.suggest_categorical("key", ["a", "b"]) for trial in trials}
        assert len(keys) == 1  # one key per batch
        return [None if trial.number == 1 else trial.suggest_float("x", 0, 1) for trial in trials]

    def key_of(trial: optuna.trial.FrozenTrial) -> object:
        return queued_params(trial)["key"]

    quota = TrialQuota(4)
    run_trials(study, BatchObjective(run, key_of, limit=2), quota)
    # limit 2 splits the first three "a"s; "b" breaks the run of "a"s; the quota of 4 stops before trial 4
    assert batches == [[0, 1], [2], [3]]
    assert [t.state for t in study.trials[:4]] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert study.trials[4].state == TrialState.WAITING and quota.finished == 4 and not quota.take()
