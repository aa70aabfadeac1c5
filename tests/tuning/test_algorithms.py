"""Samplers and pruners by name: seeded, early-starting, and usable in a study."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
from optuna.pruners import HyperbandPruner, MedianPruner, NopPruner, PatientPruner
from optuna.samplers import QMCSampler, RandomSampler, TPESampler

from dqn_tune.errors import ConfigError
from dqn_tune.tuning.algorithms import STARTUP_TRIALS, make_pruner, make_sampler
from dqn_tune.tuning.study import TuneSettings, run_study


@pytest.mark.parametrize(("name", "kind"), [("tpe", TPESampler), ("random", RandomSampler), ("qmc", QMCSampler)])
def test_samplers_are_seeded(name: str, kind: type) -> None:
    def suggestions(seed: int) -> list[float]:
        study = optuna.create_study(sampler=make_sampler(name, seed))
        study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
        return [t.params["x"] for t in study.trials]

    assert isinstance(make_sampler(name, 0), kind)
    assert suggestions(1) == suggestions(1) != suggestions(2)


def test_tpe_models_after_few_trials() -> None:
    assert make_sampler("tpe", 0)._n_startup_trials == STARTUP_TRIALS == 5


def test_pruners_use_the_trial_budget() -> None:
    median = make_pruner("median", total_timesteps=20_000, eval_freq=2_000)
    assert isinstance(median, MedianPruner)
    assert (median._n_startup_trials, median._n_warmup_steps) == (STARTUP_TRIALS, 5_000)
    assert isinstance(make_pruner("patient", total_timesteps=20_000, eval_freq=2_000), PatientPruner)
    hyperband = make_pruner("hyperband", total_timesteps=20_000, eval_freq=2_000)
    assert isinstance(hyperband, HyperbandPruner)
    assert (hyperband._min_resource, hyperband._max_resource) == (2_000, 20_000)
    assert isinstance(make_pruner("none", total_timesteps=20_000, eval_freq=2_000), NopPruner)


def test_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown sampler 'grid'; expected one of tpe, random, qmc, cmaes"):
        make_sampler("grid", 0)
    with pytest.raises(ConfigError, match="unknown pruner 'sha'; expected one of median, patient, hyperband, none"):
        make_pruner("sha", total_timesteps=1, eval_freq=1)


@pytest.mark.parametrize(("sampler", "pruner"), [("qmc", "hyperband"), ("random", "patient")])
def test_study_runs_with_other_samplers_and_pruners(tune_settings: TuneSettings, sampler: str, pruner: str) -> None:
    settings = dataclasses.replace(tune_settings, sampler=sampler, pruner=pruner)
    summary = run_study(settings, trials=2, echo=lambda _: None)
    assert summary.counts["complete"] + summary.counts["pruned"] == 2
