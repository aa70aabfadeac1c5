"""The private-API adapter against the installed Optuna: each test fails when an upgrade changes what it relies on."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
from optuna.samplers import GridSampler
from optuna.trial import TrialState

from dqn_tune.runner import optuna_internals as internals
from dqn_tune.runner.attributes import FAIL_REASON
from dqn_tune.runner.coordination import DatabaseCoordinator
from dqn_tune.runner.storage import open_storage


def new_study(tmp_path: Path, *, heartbeat: bool = False, **kwargs: object) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=heartbeat, heartbeat_interval_s=1, grace_period_s=2)
    return optuna.create_study(study_name="s", storage=storage, **kwargs)  # type: ignore[arg-type]


def test_grid_sampler_stops_the_study_inside_the_optimize_loop(tmp_path: Path) -> None:
    study = new_study(tmp_path, sampler=GridSampler({"x": [1, 2]}, seed=0))
    cells = set()
    with internals.optimize_loop(study):
        while not internals.stop_requested(study):
            trial = study.ask()
            value = trial.suggest_categorical("x", [1, 2])
            study.tell(trial, float(value))
            cells.add(internals.grid_id(study.trials[-1]))
    assert cells == {0, 1} and len(study.trials) == 2
    assert not study._thread_local.in_optimize_loop  # the loop flag is reset on exit


def test_grid_id_is_none_for_a_trial_of_another_sampler(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert internals.grid_id(study.trials[0]) is None


def test_coordinator_is_that_of_the_storage_under_the_study(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    assert isinstance(internals.coordinator(study), DatabaseCoordinator)
    assert internals.storage(study) is study._storage
    with pytest.raises(TypeError, match=r"need a storage opened by dqn_tune\.runner\.storage"):
        internals.coordinator(optuna.create_study())


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_heartbeat_keeps_a_trial_alive_and_fail_stale_trials_fails_a_silent_one(tmp_path: Path) -> None:
    study = new_study(tmp_path, heartbeat=True)
    alive, silent = study.ask(), study.ask()
    internals.coordinator(study).record_heartbeat(internals.trial_id(silent))
    with internals.heartbeat(study, alive):
        time.sleep(3)  # past the 2 s grace period: only `silent` stopped sending heartbeats
        internals.fail_stale_trials(study)
    assert internals.frozen(study, alive).state == TrialState.RUNNING
    assert internals.frozen(study, silent).state == TrialState.FAIL
    assert internals.frozen(study, silent).user_attrs[FAIL_REASON] == (
        "no heartbeat for over 2s: its worker process died or hung"
    )
    assert internals.trial_id(alive) != internals.trial_id(silent)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_that_never_sent_a_heartbeat_is_failed_and_retried_after_the_grace_period(tmp_path: Path) -> None:
    study = new_study(tmp_path, heartbeat=True)
    study.enqueue_trial({"x": 3})
    orphan = study.ask()  # its process died before recording a first heartbeat
    internals.fail_stale_trials(study)
    assert internals.frozen(study, orphan).state == TrialState.RUNNING  # within the grace period: maybe alive
    time.sleep(2.5)
    internals.fail_stale_trials(study)
    assert internals.frozen(study, orphan).state == TrialState.FAIL
    assert internals.frozen(study, orphan).user_attrs[FAIL_REASON] == (
        "no heartbeat within 2s of starting: its worker process died first"
    )
    retry = study.get_trials(states=(TrialState.WAITING,))
    assert len(retry) == 1 and internals.queued_params(retry[0]) == {"x": 3}
    assert FAIL_REASON not in retry[0].user_attrs


def test_queued_params_are_those_given_to_enqueue_trial(tmp_path: Path) -> None:
    study = new_study(tmp_path)
    study.enqueue_trial({"x": 3})
    study.optimize(lambda trial: 0.0, n_trials=1)  # the queued trial never suggests x
    assert internals.queued_params(study.trials[0]) == {"x": 3} and study.trials[0].params == {}
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert internals.queued_params(study.trials[1]) == {}


def test_a_system_attribute_is_stored_and_a_finished_trial_gets_a_handle(tmp_path: Path) -> None:
    import optuna_dashboard
    from optuna_dashboard._note import get_note_from_system_attrs

    study = new_study(tmp_path)
    trial = study.ask()
    internals.set_trial_system_attr(trial, "runs", [{"seed": 1}])
    study.tell(trial, 1.0)
    [stored] = study.get_trials()
    assert stored.system_attrs["runs"] == [{"seed": 1}] and "runs" not in stored.user_attrs
    optuna_dashboard.save_note(internals.trial_handle(study, stored), "a note on a finished trial")
    system = study._storage.get_study_system_attrs(study._study_id)
    assert get_note_from_system_attrs(system, stored._trial_id)["body"] == "a note on a finished trial"
