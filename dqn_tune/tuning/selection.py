"""Which trial of a study to take forward: a chosen number, validation's recommendation, or the best."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import StorageError
from dqn_tune.runner.retry import DEFAULT_RETRY, RetryPolicy
from dqn_tune.runner.storage import load_study, open_existing_storage
from dqn_tune.tuning import records
from dqn_tune.tuning.records import trial_config


def choose_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial `number` of the study (default: `default_trial`); it must be COMPLETE."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StorageError(
            f"study {study.study_name!r} has no complete trial "
            f"({len(study.trials)} trial(s) in other states); run or resume the study first"
        )
    if number is None:
        return default_trial(study)[0]
    trials = {trial.number: trial for trial in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StorageError(
            f"trial {number} not found in study {study.study_name!r}; its trials are numbered 0 to {max(trials)}"
        )
    if trials[number].state != TrialState.COMPLETE:
        raise StorageError(
            f"trial {number} of study {study.study_name!r} is {trials[number].state.name}; "
            f"only COMPLETE trials can be retrained (the best is trial {study.best_trial.number})"
        )
    return trials[number]


def default_trial(study: optuna.Study) -> tuple[FrozenTrial, str]:
    """The trial to take forward and why: validation's recommended trial if the study was validated, else the
    trial with the best tuning value (StorageError without a complete trial)."""
    recommended = records.recommendation(study)
    if recommended is not None:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        for trial in trials:
            if trial.number == recommended["trial"]:
                return trial, "recommended by validation on held-out seeds"
    try:
        return study.best_trial, "best tuning value; the study has no validation: run 'dqn-tune validate'"
    except ValueError:
        raise StorageError(f"study {study.study_name!r} has no complete trial; run or resume the study first") from None


def recommended_config(
    storage_url: str | None, study_name: str, retry: RetryPolicy = DEFAULT_RETRY
) -> tuple[DQNConfig, int, str]:
    """The config of the trial an existing study recommends (see `default_trial`), that trial's number and why."""
    trial, why = default_trial(load_study(open_existing_storage(storage_url, retry=retry), study_name))
    return trial_config(trial), trial.number, why
