"""Samplers and pruners by name, seeded, and set up for short, noisy RL trials.

Optuna's defaults wait 10 trials before TPE models anything and before the median pruner prunes;
with trials of tens of seconds that is a long random phase, so both start after 5 here.
"""

from __future__ import annotations

import warnings

from optuna.exceptions import ExperimentalWarning
from optuna.pruners import BasePruner, HyperbandPruner, MedianPruner, NopPruner, PatientPruner
from optuna.samplers import BaseSampler, CmaEsSampler, QMCSampler, RandomSampler, TPESampler

from dqn_tune.errors import ConfigError
from dqn_tune.tuning.defaults import PRUNERS, SAMPLERS

STARTUP_TRIALS = 5
"""Trials before TPE / CMA-ES model the results and before the median pruner prunes."""
PATIENCE = 2
"""Evaluations without improvement the patient pruner waits before consulting the median rule."""


def make_sampler(name: str, seed: int) -> BaseSampler:
    """A seeded sampler: tpe (multivariate, constant liar for parallel workers), random, qmc (Sobol) or cmaes.

    qmc and cmaes handle numeric parameters; categorical ones (batch_size and buffer_size in the
    default space) are sampled at random by their independent sampler.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        if name == "tpe":
            return TPESampler(n_startup_trials=STARTUP_TRIALS, multivariate=True, constant_liar=True, seed=seed)
        if name == "random":
            return RandomSampler(seed=seed)
        if name == "qmc":
            return QMCSampler(
                qmc_type="sobol",
                scramble=True,
                seed=seed,
                independent_sampler=RandomSampler(seed=seed),
                warn_asynchronous_seeding=False,
                warn_independent_sampling=False,
            )
        if name == "cmaes":
            return CmaEsSampler(
                n_startup_trials=STARTUP_TRIALS,
                seed=seed,
                independent_sampler=RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )
    raise ConfigError(f"unknown sampler {name!r}; expected one of {', '.join(SAMPLERS)}")


def make_pruner(name: str, *, total_timesteps: int, eval_freq: int) -> BasePruner:
    """A pruner over intermediate values reported at each evaluation step (the mean over a trial's seeds).

    median: prune below the median of earlier trials at the same step, after the first quarter of
    training. patient: the same, but only after PATIENCE evaluations without improvement (RL
    curves dip and recover). hyperband: successive halving from one evaluation to the whole trial.
    """
    median = MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=total_timesteps // 4)
    if name == "median":
        return median
    if name == "patient":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            return PatientPruner(median, patience=PATIENCE)
    if name == "hyperband":
        return HyperbandPruner(
            min_resource=max(1, eval_freq or total_timesteps // 10), max_resource=total_timesteps, reduction_factor=3
        )
    if name == "none":
        return NopPruner()
    raise ConfigError(f"unknown pruner {name!r}; expected one of {', '.join(PRUNERS)}")
