"""Validation on real SQLite studies: held-out seeds, resume, faults, statistics, the recommendation rule, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import IntDistribution
from optuna.trial import TrialState, create_trial
from scipy import stats

from dqn_tune.cli import main
from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.dqn.trainer import train_seeds
from dqn_tune.errors import ConfigError
from dqn_tune.runner.storage import StorageSettings, sqlite_path
from dqn_tune.runner.trial_loop import BatchObjective, TrialQuota, run_trials
from dqn_tune.tuning import records
from dqn_tune.tuning.recommendation import ConfigStats, mean_interval, recommend
from dqn_tune.tuning.seeds import (
    RETRAIN,
    TUNING,
    VALIDATION,
    retrain_seeds,
    trial_seeds,
    validation_seeds,
)
from dqn_tune.tuning.study import TuneSettings, run_study
from dqn_tune.tuning.validation import (
    SEED,
    SOURCE_TRIAL,
    ValidationSettings,
    cell_of,
    run_validation,
    top_trials,
    validation_stats,
)


@pytest.fixture
def tuned(tune_settings: TuneSettings) -> TuneSettings:
    """A tuning study of 4 tiny trials (seed 3), each of 2 seeds."""
    settings = TuneSettings(
        study_name=tune_settings.study_name,
        storage=tune_settings.storage,
        objective=tune_settings.objective.__class__(
            base=tune_settings.objective.base, space=tune_settings.objective.space, seeds=2, study_seed=3
        ),
        pruner="none",
        artifacts=False,
    )
    run_study(settings, trials=4, echo=lambda _: None)
    return settings


def validation(tuned: TuneSettings, top_k: int = 2, seeds: int = 2) -> ValidationSettings:
    return ValidationSettings(tuned.study_name, tuned.storage, top_k, seeds, artifacts=False)


def load(settings: ValidationSettings) -> optuna.Study:
    return optuna.load_study(study_name=settings.study_name, storage=settings.storage.url)


def test_the_seed_sets_of_tuning_validation_and_retrain_are_disjoint() -> None:
    tuning = {seed for study_seed in range(3) for number in range(200) for seed in trial_seeds(study_seed, number, 4)}
    held_out, fresh = set(validation_seeds(50)), set(retrain_seeds(50))
    assert all(seed in TUNING for seed in tuning) and all(seed in VALIDATION for seed in held_out)
    assert all(seed in RETRAIN for seed in fresh)
    assert not tuning & held_out and not tuning & fresh and not held_out & fresh
    assert validation_seeds(3) == validation_seeds(5)[:3]  # more seeds keep the first ones


def source_budget(trial: optuna.trial.FrozenTrial) -> int:
    return records.trial_config(trial).total_timesteps


def test_validation_trains_the_top_configs_on_the_same_held_out_seeds_and_recommends(tuned: TuneSettings) -> None:
    settings = validation(tuned)
    summary = run_validation(settings, echo=lambda _: None)

    tuning = optuna.load_study(study_name=tuned.study_name, storage=tuned.storage_url)
    top = top_trials(tuning, 2)
    study = load(settings)
    assert summary.runs == 4 and summary.missing == 0 and summary.recommendation is not None
    assert sorted(cell_of(t) for t in study.trials) == sorted((t.number, s) for t in top for s in validation_seeds(2))
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for trial in study.trials:  # the source trial's config, as stored, trained on the held-out seed
        source = tuning.trials[trial.params[SOURCE_TRIAL]]
        assert records.trial_config(trial) == records.trial_config(source)
        assert [run.seed for run in records.trial_runs(trial)] == [trial.params[SEED]]
    tuning_seeds = {run.seed for t in tuning.trials for run in records.trial_runs(t)}
    assert tuning_seeds and not tuning_seeds & {t.params[SEED] for t in study.trials}
    for source in top:  # each config's seeds trained as one batched group: one wall time, train_seeds' results
        cells = sorted((t for t in study.trials if t.params[SOURCE_TRIAL] == source.number), key=lambda t: t.number)
        assert len({records.trial_runs(t)[0].wall_time_s for t in cells}) == 1
        group = train_seeds(records.trial_config(source), [t.params[SEED] for t in cells])
        assert [t.value for t in cells] == [result.mean_return for result in group]
        assert [t.intermediate_values[source_budget(source)] for t in cells] == [t.value for t in cells]
    stored = records.recommendation(tuning)
    assert stored is not None and stored["trial"] == summary.recommendation.trial
    assert {row["trial"] for row in stored["table"]} == {t.number for t in top}
    assert "recommended: trial" in "\n".join(summary.lines())


def test_two_workers_split_each_configs_seeds_between_them(tuned: TuneSettings) -> None:
    summary = run_validation(validation(tuned, seeds=2), workers=2, echo=lambda _: None)
    assert summary.runs == 4 and summary.missing == 0
    study = load(validation(tuned))
    for source in {t.params[SOURCE_TRIAL] for t in study.trials}:  # a group of one seed per worker, not one of two
        walls = [records.trial_runs(t)[0].wall_time_s for t in study.trials if t.params[SOURCE_TRIAL] == source]
        assert len(walls) == 2 and walls[0] != walls[1]


def test_re_running_runs_nothing_and_more_seeds_run_only_the_new_ones(tuned: TuneSettings) -> None:
    run_validation(validation(tuned, seeds=2), echo=lambda _: None)
    again = run_validation(validation(tuned, seeds=2), echo=lambda _: None)
    assert again.runs == 0 and len(load(validation(tuned)).trials) == 4

    more = run_validation(validation(tuned, seeds=3), echo=lambda _: None)

    assert more.runs == 2 and more.missing == 0
    trials = load(validation(tuned)).trials
    assert len(trials) == 6 and sorted(t.params[SEED] for t in trials[4:]) == [validation_seeds(3)[2]] * 2
    assert all(len(row.returns) == 3 for row in more.recommendation.table)  # type: ignore[union-attr]


def test_a_failed_run_is_run_again_and_only_it(tuned: TuneSettings) -> None:
    settings = validation(tuned)
    storage = settings.storage.open()
    plan = settings.prepare(storage, "first")
    objective = settings.trial_objective()
    calls: list[int] = []

    def crash_second(trials: Sequence[optuna.Trial]) -> list[float | None]:
        calls.append(trials[0].number)
        if len(calls) == 2:
            raise ConfigError("a run that crashed")
        return objective.run(trials)

    one_at_a_time = BatchObjective(crash_second, objective.key, 1)
    run_trials(settings.load(storage, 0), one_at_a_time, TrialQuota(None), total_trials=plan.total_trials)
    [failed] = load(settings).get_trials(states=(TrialState.FAIL,))

    summary = run_validation(settings, echo=lambda _: None)

    assert summary.runs == 1 and summary.missing == 0
    trials = load(settings).trials
    assert len(trials) == 5 and cell_of(trials[-1]) == cell_of(failed) and trials[-1].state == TrialState.COMPLETE


KILLED_CHILD = """
import sys
from dqn_tune.runner.storage import StorageSettings
from dqn_tune.tuning.validation import ValidationSettings, run_validation
settings = ValidationSettings("s", StorageSettings(sys.argv[1], 1, 2), 2, 2, artifacts=False)
run_validation(settings, workers=2)
"""


@pytest.mark.slow
def test_a_sigkilled_validation_loses_no_finished_run_and_the_next_command_completes_it(
    tune_settings: TuneSettings,
) -> None:
    slow = tune_settings.objective.base.replace(total_timesteps=3_000, eval_freq=1_000)
    settings = TuneSettings(
        "s",
        tune_settings.storage,
        tune_settings.objective.__class__(base=slow, space=tune_settings.objective.space, seeds=1),
        pruner="none",
        artifacts=False,
    )
    run_study(settings, trials=2, echo=lambda _: None)
    url = settings.storage_url
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, url], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    study_name = "s-validation"
    deadline = time.monotonic() + 120
    while True:  # wait until one run is complete and others are running
        trials = (
            optuna.load_study(study_name=study_name, storage=url).trials
            if study_name in optuna.get_all_study_names(url)
            else []
        )
        states = [t.state for t in trials]
        if TrialState.COMPLETE in states and TrialState.RUNNING in states:
            break
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.1)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    complete = {
        cell_of(t): t.value
        for t in optuna.load_study(study_name=study_name, storage=url).trials
        if t.state == TrialState.COMPLETE
    }
    time.sleep(3)  # the grace period passes without a heartbeat

    summary = run_validation(
        ValidationSettings("s", StorageSettings(url, 1, 2), 2, 2, artifacts=False), echo=lambda _: None
    )

    trials = optuna.load_study(study_name=study_name, storage=url).trials
    after = {cell_of(t): t.value for t in trials if t.state == TrialState.COMPLETE}
    assert summary.missing == 0 and len(after) == 4
    assert all(after[cell] == value for cell, value in complete.items())  # nothing finished was run again


def test_statistics_match_scipy_on_constructed_returns() -> None:
    returns = (480.0, 500.0, 120.0, 500.0, 460.0)
    row = ConfigStats(7, 500.0, tuple(validation_seeds(5)), returns)
    expected = stats.bootstrap(
        (np.array(returns),), np.mean, confidence_level=0.95, method="BCa", rng=np.random.default_rng(0)
    )
    assert row.mean == pytest.approx(np.mean(returns)) and row.min == 120.0
    assert row.iqm == pytest.approx(stats.trim_mean(returns, 0.25))
    assert row.std == pytest.approx(np.std(returns, ddof=1))
    assert (row.interval.low, row.interval.high) == pytest.approx(
        (expected.confidence_interval.low, expected.confidence_interval.high)
    )
    assert mean_interval([500.0] * 5) == mean_interval([500.0, 500.0])  # degenerate data: the point itself
    assert mean_interval([500.0]).low != mean_interval([500.0]).low  # NaN: one seed has no interval


def constructed_validation(
    study: optuna.Study, returns: dict[int, list[float]], curves: dict[int, list[float]] | None = None
) -> None:
    """Validation trials with given returns per source trial, on the held-out seeds; with `curves`, each run
    stores that learning curve (evaluations every 1,000 steps)."""
    seeds = validation_seeds(len(next(iter(returns.values()))))
    for source, values in returns.items():
        for seed, value in zip(seeds, values, strict=True):
            runs = (
                []
                if curves is None
                else [
                    RunRecord(
                        seed,
                        value,
                        tuple(range(1000, 1000 * len(curves[source]) + 1, 1000)),
                        tuple(curves[source]),
                        1.0,
                        1.0,
                        None,
                    ).to_dict()
                ]
            )
            study.add_trial(
                create_trial(
                    params={SOURCE_TRIAL: source, SEED: seed},
                    value=value,
                    user_attrs={records.RUNS: runs},
                    distributions={
                        SOURCE_TRIAL: IntDistribution(0, 2**31 - 1),
                        SEED: IntDistribution(VALIDATION.start, VALIDATION.stop - 1),
                    },
                )
            )


def test_the_rule_prefers_a_consistent_config_to_a_higher_mean_with_one_collapsed_seed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/rule.db"
    tuning = optuna.create_study(study_name="t", storage=url, direction="maximize")
    for value in (500.0, 499.0):
        tuning.add_trial(create_trial(value=value, params={}, distributions={}))
    validation_study = optuna.create_study(study_name="t-validation", storage=url, direction="maximize")
    constructed_validation(validation_study, {0: [500, 500, 500, 500, 300], 1: [440, 445, 450, 455, 450]})

    table = validation_stats(validation_study, top_trials(tuning, 2), validation_seeds(5))
    recommendation = recommend(table)

    collapsed, consistent = sorted(table, key=lambda row: row.trial)
    assert collapsed.mean > consistent.mean and collapsed.tuned_value > consistent.tuned_value
    assert recommendation.trial == 1
    comparison = recommendation.comparison
    assert comparison is not None and (comparison.seeds, comparison.wins, comparison.losses) == (5, 1, 4)
    assert recommend(list(reversed(table))).trial == 1  # the order of the input does not matter


def test_configs_tied_at_the_cap_go_to_the_one_whose_curves_learn_sooner(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tie.db"
    tuning = optuna.create_study(study_name="t", storage=url, direction="maximize")
    for _ in range(3):
        tuning.add_trial(create_trial(value=500.0, params={}, distributions={}))
    validation_study = optuna.create_study(study_name="t-validation", storage=url, direction="maximize")
    constructed_validation(
        validation_study,
        {0: [500.0] * 5, 1: [500.0] * 5, 2: [500.0] * 5},
        curves={0: [100.0, 300.0, 500.0, 500.0], 1: [300.0, 500.0, 500.0, 500.0], 2: [200.0, 300.0, 500.0, 500.0]},
    )

    recommendation = recommend(validation_stats(validation_study, top_trials(tuning, 3), validation_seeds(5)))

    assert [row.trial for row in recommendation.table] == [1, 2, 0]  # not trial order
    assert [row.curve_mean for row in recommendation.table] == [450.0, 375.0, 350.0]
    assert recommendation.reason().endswith(
        "tied on it and on the mean, so the higher mean learning curve on the "
        "held-out seeds (it learns sooner): 450.0 vs 375.0"
    )
    assert recommend([ConfigStats.from_dict(row.to_dict()) for row in recommendation.table]) == recommendation
    seeds = tuple(validation_seeds(5))  # stored without curves (NaN): the trial number decides, and the reason says so
    no_curves = recommend([ConfigStats(5, 500.0, seeds, (500.0,) * 5), ConfigStats(3, 500.0, seeds, (500.0,) * 5)])
    assert no_curves.trial == 3 and no_curves.reason().endswith(
        "tied on it, on the mean and on the learning curve, so the lower trial number"
    )


def test_a_config_whose_seeds_all_tie_is_flagged_as_measuring_no_spread() -> None:
    seeds = tuple(validation_seeds(5))
    capped = ConfigStats(4, 500.0, seeds, (500.0,) * 5)
    spread = ConfigStats(9, 500.0, seeds, (500.0, 500.0, 480.0, 500.0, 500.0))
    assert capped.no_spread and not spread.no_spread and not ConfigStats(2, 1.0, seeds[:1], (500.0,)).no_spread
    assert recommend([spread]).no_spread_warning(5) is None
    assert recommend([spread, capped]).no_spread_warning(5) == (
        "trial 4: every held-out seed returned the same value, so the interval has no width (no spread measured, "
        "not none); `--validation-seeds 10` runs 5 more seeds per config"
    )


def test_a_diverged_seed_ranks_a_config_last() -> None:
    seeds = tuple(validation_seeds(4))
    steady = ConfigStats(0, 100.0, seeds, (100.0, 101.0, 99.0, 100.0))
    diverged = ConfigStats(1, 300.0, seeds[:3], (300.0, 300.0, 300.0), diverged=1)
    assert recommend([diverged, steady]).trial == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--validate-top", "0"], "argument --validate-top: invalid value '0'; expected an integer >= 1"),
        (["--top-k", "0"], "argument --top-k: invalid value '0'; expected an integer >= 1"),
        (
            ["--validation-seeds", "1"],
            "argument --validation-seeds: invalid value '1'; expected an integer from 2 to 1000",
        ),
        (
            ["--validation-seeds", "1000000000"],
            "argument --validation-seeds: invalid value '1000000000'; expected an integer from 2 to 1000",
        ),
        (["--study-name", "typo"], "study 'typo' not found in"),
        (["--study-name", "empty"], "study 'empty' has no complete trial to validate"),
        (["--device", "tpu"], "argument --device: invalid choice: 'tpu' (choose from 'cpu', 'cuda')"),
        pytest.param(
            ["--device", "cuda"],
            "device = 'cuda' is invalid on this machine: torch sees no CUDA GPU",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present"),
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_leaves_the_storage_alone(
    tuned: TuneSettings, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    optuna.create_study(study_name="empty", storage=tuned.storage_url)
    path = sqlite_path(tuned.storage_url)
    assert path is not None
    before = path.read_bytes()
    code = main(["validate", "--storage", tuned.storage_url, "--study-name", "s", *args, "--no-artifacts"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert path.read_bytes() == before


def test_validate_command_prints_the_table_and_the_recommendation(
    tuned: TuneSettings, capfd: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "validate",
            "--storage",
            tuned.storage_url,
            "--study-name",
            "s",
            "--validate-top",
            "2",
            "--validation-seeds",
            "2",
            "--no-artifacts",
        ]
    )
    out = capfd.readouterr().out  # the per-run lines come from the worker processes
    assert code == 0
    assert "mean [95% CI]" in out and "recommended: trial" in out and "paired: trial" in out
    assert out.count("  validation: config of trial") == 4
