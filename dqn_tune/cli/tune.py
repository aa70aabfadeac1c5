"""`dqn-tune tune` (also plain `dqn-tune --trials N`): run an Optuna study over DQN hyperparameters."""

from __future__ import annotations

import argparse
import shlex
from typing import Any

import optuna

from dqn_tune.cli.arguments import (
    positive_int,
    seconds,
    seed,
    seed_count,
    study_name,
    text,
    workers,
)
from dqn_tune.cli.config_flags import (
    add_config_flags,
    check_fits_memory,
    config_overrides,
    env_dims,
    flag_name,
    with_flag_names,
)
from dqn_tune.errors import ConfigError
from dqn_tune.tuning.algorithms import PRUNERS, SAMPLERS
from dqn_tune.tuning.objective import (
    DEFAULT_TIMESTEPS,
    EVALS_PER_RUN,
    OBJECTIVES,
    ObjectiveSettings,
    trial_base_config,
)
from dqn_tune.tuning.search_space import load_search_space
from dqn_tune.tuning.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    StorageSettings,
    prepare_url,
    public_url,
)
from dqn_tune.tuning.study import TuneSettings, default_study_name, run_study

USES_STORAGE = True
HELP = "tune DQN hyperparameters: run trials into an Optuna study (resumes an existing one)"
DEFAULT_SEEDS = 2
_BUDGETS = ", ".join(f"{env} {steps}" for env, steps in DEFAULT_TIMESTEPS.items())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune tune`."""
    parser.add_argument("--trials", type=positive_int, default=None, metavar="N",
                        help="trials to run now, shared by the workers (required unless --total-trials is given)")
    parser.add_argument("--total-trials", type=positive_int, default=None, metavar="N",
                        help="stop when the study holds N trials, counting every machine's (for shared studies)")
    parser.add_argument("--env", "--env-id", dest="env_id", type=text, default="CartPole-v1", metavar="ENV_ID",
                        help="gymnasium env id with Discrete actions (default: CartPole-v1)")
    parser.add_argument("--study-name", type=study_name, default=None, help="study name (default: dqn-<ENV_ID>)")
    parser.add_argument("--timesteps", "--total-timesteps", dest="timesteps", type=positive_int, default=None, metavar="N",
                        help=f"environment steps per training run (default by env: {_BUDGETS}; else 50000)")
    parser.add_argument("--seeds", type=seed_count, default=DEFAULT_SEEDS, metavar="K",
                        help=f"training runs per trial, each with its own seed; the value is their mean "
                             f"(default: {DEFAULT_SEEDS})")
    parser.add_argument("--eval-episodes", type=positive_int, default=None, metavar="N",
                        help="greedy episodes of each run's final evaluation (default: 20)")
    parser.add_argument("--eval-freq", type=positive_int, default=None, metavar="N",
                        help=f"steps between learning-curve evaluations, the points the pruner sees "
                             f"(default: timesteps / {EVALS_PER_RUN})")
    parser.add_argument("--objective", choices=OBJECTIVES, default="final",
                        help="what a run scores: its final evaluation, its best evaluation, or the area under "
                             "its evaluation curve divided by its length (default: final)")
    parser.add_argument("--workers", type=workers, default=1, metavar="W",
                        help="worker processes on this machine, one torch thread each (default: 1)")
    parser.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default: tpe)")
    parser.add_argument("--pruner", choices=PRUNERS, default="median", help="Optuna pruner (default: median)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the sampler and of every trial's runs (default: 0)")
    parser.add_argument("--search-space", type=text, default=None, metavar="FILE.toml",
                        help="TOML file changing the search space: ranges, fixed values, more hyperparameters "
                             "(a hyperparameter flag below, e.g. --gamma 0.99, fixes that one for every trial)")
    parser.add_argument("--no-artifacts", dest="artifacts", action="store_false",
                        help="do not save each trial's learning-curve PNG to the artifact store")
    faults = parser.add_argument_group("fault tolerance")
    faults.add_argument("--heartbeat-interval", type=seconds, default=HEARTBEAT_INTERVAL_S, metavar="S",
                        help=f"seconds between a running trial's heartbeats (default: {HEARTBEAT_INTERVAL_S})")
    faults.add_argument("--grace-period", type=seconds, default=GRACE_PERIOD_S, metavar="S",
                        help="seconds without a heartbeat after which a trial counts as dead and is retried "
                             f"(default: {GRACE_PERIOD_S})")
    add_config_flags(parser, skip=("env_id", "total_timesteps", "eval_episodes", "eval_freq"))


def run(args: argparse.Namespace) -> int:
    """Build the settings, run the study, print the summary; 130 if interrupted, 1 if a worker failed."""
    if args.trials is None and args.total_trials is None:
        raise ConfigError("give --trials N (trials to run now), --total-trials N (the study's total), or both")
    try:
        base = trial_base_config(args.env_id, timesteps=args.timesteps, **hyperparameter_flags(args))
    except ConfigError as exc:
        raise ConfigError(with_flag_names(str(exc)), field=exc.field) from None
    dims = env_dims(base.env_id)
    space = load_search_space(args.search_space).without(hyperparameter_flags(args))
    space.check(base)
    check_fits_memory(space.largest_config(base, *dims), dims,
                      context="the largest config of the search space does not fit in memory: ")
    settings = TuneSettings(
        study_name=default_study_name(base.env_id) if args.study_name is None else args.study_name,
        storage=StorageSettings(prepare_url(args.storage), args.heartbeat_interval, args.grace_period),
        objective=ObjectiveSettings(base=base, space=space, seeds=args.seeds, objective=args.objective,
                                    study_seed=args.seed),
        sampler=args.sampler, pruner=args.pruner, artifacts=args.artifacts, total_trials=args.total_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = run_study(settings, trials=args.trials, workers=args.workers, command=command_line(args))
    print("\n".join(summary.lines()))
    if summary.interrupted:
        return 130
    return 1 if summary.worker_error else 0


def command_line(args: argparse.Namespace) -> str:
    """The command, every setting spelled out, as stored in the study and shown in its note."""
    words = ["dqn-tune", "tune"]
    for name in ("trials", "total_trials", "env_id", "study_name", "storage", "timesteps", "seeds", "objective",
                 "workers", "sampler", "pruner", "seed", "search_space"):
        value = getattr(args, name)
        if name == "storage" and value is not None:
            value = public_url(value)  # the command is stored in the study and shown by the dashboard
        if value is not None:
            words += ["--env" if name == "env_id" else flag_name(name), str(value)]
    if not args.artifacts:
        words.append("--no-artifacts")
    for name, value in hyperparameter_flags(args).items():
        if isinstance(value, bool):
            words.append(flag_name(name) if value else flag_name(name).replace("--", "--no-", 1))
        else:
            words += [flag_name(name), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return shlex.join(words)


def hyperparameter_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The DQNConfig fields set by the hyperparameter flags (they fix those fields for every trial)."""
    return {name: value for name, value in config_overrides(args).items() if name != "env_id"}
