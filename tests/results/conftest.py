"""A small finished study with everything dqn-tune stores per trial, for the dashboard and report tests."""

from __future__ import annotations

import optuna
import pytest

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.dqn.trainer import train
from dqn_tune.runner.storage import open_storage
from dqn_tune.tuning.artifacts import make_artifact_store, upload_learning_curve
from dqn_tune.tuning.records import store_config, store_runs

TRIAL_VALUES = (12.0, 30.0, 21.0)
"""Values told for the complete trials 0-2 (distinct, so importances are defined); trial 3 is pruned."""


@pytest.fixture(scope="session")
def curve_study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of study 'curves' in a fresh SQLite file: 3 complete trials and 1 pruned, each with two params,
    intermediate values (the evaluation curve) and config; the complete ones also real two-seed runs
    and an uploaded learning-curve PNG."""
    config = DQNConfig(
        total_timesteps=400,
        learning_starts=100,
        batch_size=32,
        buffer_size=1_000,
        hidden_sizes=(16,),
        target_update_interval=50,
        eval_freq=200,
        eval_curve_episodes=2,
        eval_episodes=2,
    )
    results = [train(config, seed=seed) for seed in (0, 1)]
    url = f"sqlite:///{tmp_path_factory.mktemp('curves') / 'study.db'}"
    study = optuna.create_study(study_name="curves", storage=open_storage(url, heartbeat=False), direction="maximize")
    store = make_artifact_store(url)
    for value in (*TRIAL_VALUES, None):
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        trial.suggest_int("batch_size", 16, 128)
        store_config(trial, config)
        for point in results[0].curve:
            trial.report(point.mean_return, point.step)
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        store_runs(trial, results)
        upload_learning_curve(trial, [RunRecord.from_result(r) for r in results], store)
        study.tell(trial, value)
    return url


@pytest.fixture(scope="session")
def validated_study_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """URL of tuning study 'validated' (3 tiny trials, seed 1) whose top 2 configs were validated on 2 held-out
    seeds: the study stores a recommendation, and 'validated-validation' holds the runs."""
    from dqn_tune.runner.storage import StorageSettings
    from dqn_tune.tuning.objective import ObjectiveSettings
    from dqn_tune.tuning.search_space import DEFAULT_SPACE
    from dqn_tune.tuning.study import TuneSettings, run_study
    from dqn_tune.tuning.validation import ValidationSettings, run_validation

    tiny = DQNConfig(
        total_timesteps=600,
        learning_starts=100,
        batch_size=32,
        buffer_size=1_000,
        hidden_sizes=(16,),
        target_update_interval=50,
        eval_freq=200,
        eval_curve_episodes=2,
        eval_episodes=2,
    )
    storage = StorageSettings(f"sqlite:///{tmp_path_factory.mktemp('validated') / 'study.db'}")
    run_study(
        TuneSettings(
            study_name="validated",
            storage=storage,
            pruner="none",
            artifacts=False,
            objective=ObjectiveSettings(base=tiny, space=DEFAULT_SPACE, seeds=1, study_seed=1),
        ),
        trials=3,
        echo=lambda _: None,
    )
    run_validation(ValidationSettings("validated", storage, top_k=2, seeds=2, artifacts=False), echo=lambda _: None)
    return storage.url
