"""`dqn-tune tune` (also plain `dqn-tune --trials N`): run an Optuna study over DQN hyperparameters."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import optuna

from dqn_tune.cli.arguments import (
    add_artifact_dir_flag,
    add_device_flag,
    add_preset_flag,
    add_storage_retry_flag,
    add_workers_flag,
    chosen_workers,
    non_negative_int,
    positive_int,
    seconds,
    seed,
    seed_count,
    study_name,
    text,
    validation_seed_count,
    workers_line,
)
from dqn_tune.cli.config_flags import (
    add_config_flags,
    check_fits_memory,
    config_overrides,
    env_dims,
    flag_name,
    with_flag_names,
)
from dqn_tune.cli.executor_flags import add_executor_flags, chosen_executor
from dqn_tune.cli.validate import validate
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import (
    DEFAULT_STORAGE,
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    StorageSettings,
    prepare_url,
    public_url,
)
from dqn_tune.tuning.algorithms import PRUNERS, SAMPLERS
from dqn_tune.tuning.objective import (
    OBJECTIVES,
    ObjectiveSettings,
    trial_base_config,
)
from dqn_tune.tuning.presets import EVALS_PER_RUN, load_presets, preset_for
from dqn_tune.tuning.resume import stored_settings
from dqn_tune.tuning.search_space import DEFAULT_SPACE, SearchSpace, load_search_space
from dqn_tune.tuning.study import TuneSettings, default_study_name, run_study
from dqn_tune.tuning.validation import DEFAULT_SEEDS as VALIDATION_SEEDS
from dqn_tune.tuning.validation import DEFAULT_TOP_K, ValidationSettings, auto_top_k

USES_STORAGE = True
HELP = "tune DQN hyperparameters: run trials into an Optuna study (resumes an existing one)"
DEFAULT_SEEDS = 4
"""Runs per trial: 4 seeds trained together (`train_seeds`, 0.58-0.71x of 4 sequential runs' CPU time) cost
1.2-1.4x what the former default of 2 sequential runs did, for twice the seeds behind each value."""
_BUDGETS = ", ".join(f"{preset.env_id} {preset.trial_timesteps}" for preset in load_presets().values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune tune`."""
    parser.add_argument("--n-trials", dest="trials", type=positive_int, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)  # Optuna's CLI and RL Zoo's name: errors name the flag typed
    parser.add_argument("--trials", type=positive_int, default=None, metavar="N",
                        help="trials to run now, shared by the workers (required unless --total-trials or --timeout is given)")
    parser.add_argument("--total-trials", type=positive_int, default=None, metavar="N",
                        help="stop when the study holds N trials, counting every machine's (for shared studies)")
    parser.add_argument("--env", "--env-id", dest="env_id", type=text, default=None, metavar="ENV_ID",
                        help="gymnasium env id with Discrete actions (default: CartPole-v1, or the study's when "
                             "resuming: every setting left out is read from the study)")
    parser.add_argument("--study-name", type=study_name, default=None, help="study name (default: dqn-<ENV_ID>)")
    parser.add_argument("--timesteps", "--total-timesteps", dest="timesteps", type=positive_int, default=None, metavar="N",
                        help=f"environment steps per training run (default by env: {_BUDGETS}; else 50000)")
    parser.add_argument("--seeds", type=seed_count, default=None, metavar="K",
                        help=f"training runs per trial, each with its own seed; the value is their mean "
                             f"(default: {DEFAULT_SEEDS})")
    parser.add_argument("--eval-episodes", type=positive_int, default=None, metavar="N",
                        help="greedy episodes of each run's final evaluation (default: 20)")
    parser.add_argument("--eval-freq", type=positive_int, default=None, metavar="N",
                        help=f"steps between learning-curve evaluations, the points the pruner sees "
                             f"(default: timesteps / {EVALS_PER_RUN})")
    parser.add_argument("--objective", choices=OBJECTIVES, default=None,
                        help="what a run scores: its final evaluation, its best evaluation, or the area under "
                             "its evaluation curve divided by its length (default: final)")
    add_device_flag(parser, "the networks of trials and validation runs")
    add_workers_flag(parser, remote=True)
    parser.add_argument("--timeout", type=seconds, default=None, metavar="SECONDS",
                        help="time budget of this command: no new trial starts after it, running ones finish; "
                             "alone, trials run until then, as Optuna's optimize(timeout=...) (default: none)")
    parser.add_argument("--sampler", choices=SAMPLERS, default=None, help="Optuna sampler (default: tpe)")
    parser.add_argument("--pruner", choices=PRUNERS, default=None, help="Optuna pruner (default: median)")
    parser.add_argument("--seed", type=seed, default=None, help="seed of the sampler and of every trial's runs (default: 0)")
    add_preset_flag(parser)
    parser.add_argument("--search-space", type=text, default=None, metavar="FILE.toml",
                        help="TOML file changing the search space: ranges, fixed values, more hyperparameters "
                             "(a hyperparameter flag below, e.g. --gamma 0.99, fixes that one for every trial)")
    parser.add_argument("--no-artifacts", dest="artifacts", action="store_false",
                        help="do not save each trial's learning-curve PNG to the artifact store")
    add_artifact_dir_flag(parser, "where each trial's learning-curve PNG is saved (stored on the study)")
    checks = parser.add_argument_group("validation of the top configs on held-out seeds")
    checks.add_argument("--validate-top", type=non_negative_int, default=None, metavar="K",
                        help=f"after tuning, retrain the K best complete trials on held-out seeds and recommend one "
                             f"(default: one per 10 complete trials, 1 to {DEFAULT_TOP_K}; 0 turns it off)")
    checks.add_argument("--validation-seeds", type=validation_seed_count, default=VALIDATION_SEEDS, metavar="N",
                        help=f"held-out seeds per validated config, at least 2 (default: {VALIDATION_SEEDS})")
    faults = parser.add_argument_group("fault tolerance")
    faults.add_argument("--heartbeat-interval", type=seconds, default=HEARTBEAT_INTERVAL_S, metavar="S",
                        help=f"seconds between a running trial's heartbeats (default: {HEARTBEAT_INTERVAL_S})")
    faults.add_argument("--grace-period", type=seconds, default=GRACE_PERIOD_S, metavar="S",
                        help="seconds without a heartbeat after which a trial counts as dead and is retried "
                             f"(default: {GRACE_PERIOD_S})")
    add_storage_retry_flag(faults)
    add_executor_flags(parser)
    add_config_flags(parser, skip=("env_id", "total_timesteps", "eval_episodes", "eval_freq"))


def run(args: argparse.Namespace) -> int:
    """Build the settings, run the study, print the summary; 130 if interrupted, 1 if a worker failed."""
    if args.trials is None and args.total_trials is None and args.timeout is None:
        raise ConfigError("give --trials N (trials to run now), --total-trials N (the study's total), "
                          "--timeout SECONDS (trials until then), or several")
    command = command_line(args)  # as typed: the flags left out are filled in next
    stored = fill_from_study(args)
    preset = None if args.no_preset else preset_for(args.env_id)
    try:
        base = (resumed_base(stored, args) if stored is not None else
                trial_base_config(args.env_id, timesteps=args.timesteps, preset=preset is not None,
                                  **hyperparameter_flags(args)))
    except ConfigError as exc:
        raise ConfigError(with_flag_names(str(exc)), field=exc.field) from None
    dims = env_dims(base.env_id)
    if stored is not None and args.search_space is None:
        space = SearchSpace.from_mapping(stored["search_space"], source="the study's stored search space")
    else:
        space = load_search_space(args.search_space, base=preset.space if preset else DEFAULT_SPACE)
    space = space.without(hyperparameter_flags(args))
    origin = ("resuming with the study's stored settings (a flag given must agree with them)" if stored is not None
              else f"starting from the {args.env_id} preset ({preset.source})" if preset else
              "starting from the global defaults" + ("" if args.no_preset else f" ({args.env_id} has no preset)"))
    space.check(base)
    check_fits_memory(space.largest_config(base, *dims), dims, members=args.seeds,
                      context="the largest config of the search space does not fit in memory: ")
    if stored is not None:
        check_fixed(stored, args)
    settings = TuneSettings(
        study_name=default_study_name(base.env_id) if args.study_name is None else args.study_name,
        storage=StorageSettings(prepare_url(args.storage), args.heartbeat_interval, args.grace_period,
                                args.storage_retry_timeout),
        objective=ObjectiveSettings(base=base, space=space, seeds=args.seeds, objective=args.objective,
                                    study_seed=args.seed, device=args.device),
        sampler=args.sampler, pruner=args.pruner, artifacts=args.artifacts, artifact_dir=args.artifact_dir,
        total_trials=args.total_trials)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given, args.workers = args.workers, chosen_workers(args.workers, args.trials)
    executor = chosen_executor(args)
    announce, pending = after_first(origin), [line for line in [workers_line(given, args.workers)] if line]

    def echo(message: str) -> None:  # the origin, the study's line, then the worker count
        announce(message)
        while pending:
            print(pending.pop(), flush=True)

    with executor or nullcontext():  # one Ray connection for tuning and validation
        summary = run_study(settings, trials=args.trials, workers=args.workers, command=command, echo=echo,
                            timeout_s=args.timeout, executor=executor)
        print("\n".join(summary.lines()), flush=True)
        if summary.interrupted:
            return 130
        if summary.worker_error:
            return 1
        if args.validate_top == 0 or summary.best_value is None:
            return 0
        top_k = args.validate_top or auto_top_k(summary.counts.get("complete", 0))
        validation = ValidationSettings(settings.study_name, settings.storage, top_k, args.validation_seeds,
                                        settings.artifacts, artifact_dir=args.artifact_dir, device=args.device)
        return validate(validation, workers=args.workers, command=command, executor=executor)


RESUMED = {"env_id": "env_id", "timesteps": "total_timesteps", "eval_episodes": "eval_episodes", "seeds": "seeds",
           "objective": "objective", "seed": "seed", "sampler": "sampler", "pruner": "pruner"}
"""Flags (their dest) that a resumed study reads from its stored settings (TuneSettings.to_attr keys) when left out."""
DEFAULTS = {"env_id": "CartPole-v1", "seeds": DEFAULT_SEEDS, "objective": "final", "seed": 0, "sampler": "tpe",
            "pruner": "median"}
"""The values of those flags for a new study (the others default by env)."""


def fill_from_study(args: argparse.Namespace) -> dict[str, Any] | None:
    """Set every RESUMED flag left out (None) from the stored settings of the study this command resumes, or to its
    default for a new study; return the stored settings (None for a new study). Only reads the storage."""
    name = args.study_name or default_study_name(args.env_id or DEFAULTS["env_id"])
    stored = stored_settings(args.storage or DEFAULT_STORAGE, name, retry=RetryPolicy(args.storage_retry_timeout))
    if stored is not None and not {"base_config", "search_space"} <= stored.keys():
        stored = None  # made by an older dqn-tune: the flags decide, and the study's check refuses a mismatch
    for flag, key in RESUMED.items():
        if getattr(args, flag) is None:
            setattr(args, flag, stored[key] if stored is not None and key in stored else DEFAULTS.get(flag))
    return stored


def resumed_base(stored: dict[str, Any], args: argparse.Namespace) -> DQNConfig:
    """The resumed study's stored base config with the flags given (filled by `fill_from_study`)."""
    return DQNConfig.from_dict(stored["base_config"]).replace(
        env_id=args.env_id, total_timesteps=args.timesteps, **hyperparameter_flags(args))


def check_fixed(stored: dict[str, Any], args: argparse.Namespace) -> None:
    """Refuse a flag that changes a hyperparameter the resumed study fixed (its trials would not be comparable)."""
    base = DQNConfig.from_dict(stored["base_config"])
    for name, value in hyperparameter_flags(args).items():
        if name not in stored["search_space"] and value != getattr(base, name):
            raise ConfigError(f"study {args.study_name or default_study_name(args.env_id)!r} fixes {flag_name(name)} = "
                              f"{getattr(base, name)!r}, this command asks for {value!r}; leave the flag out, give "
                              "the same value or another --study-name", field=name)


def command_line(args: argparse.Namespace) -> str:
    """The command, every setting spelled out, as stored in the study and shown in its note."""
    words = ["dqn-tune", "tune"]
    for name in ("trials", "total_trials", "env_id", "study_name", "storage", "timesteps", "seeds", "objective",
                 "workers", "sampler", "pruner", "seed", "search_space", "timeout", "ray_address", "worker_gpus"):
        value = getattr(args, name)
        if name == "storage" and value is not None:
            value = public_url(value)  # the command is stored in the study and shown by the dashboard
        if value is not None:
            text_value = f"{value:g}" if isinstance(value, float) else str(value)  # --timeout 3, as typed
            words += ["--env" if name == "env_id" else flag_name(name), text_value]
    if args.no_preset:
        words.append("--no-preset")
    if args.executor != "local":
        words += ["--executor", args.executor]
    words += ["--device", args.device]
    if args.validate_top is not None:
        words += ["--validate-top", str(args.validate_top)]
    if args.validate_top != 0:
        words += ["--validation-seeds", str(args.validation_seeds)]
    if not args.artifacts:
        words.append("--no-artifacts")
    if args.artifact_dir is not None:
        words += ["--artifact-dir", args.artifact_dir]
    for name, value in hyperparameter_flags(args).items():
        if isinstance(value, bool):
            words.append(flag_name(name) if value else flag_name(name).replace("--", "--no-", 1))
        else:
            words += [flag_name(name), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
    return shlex.join(words)


def hyperparameter_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The DQNConfig fields set by the hyperparameter flags (they fix those fields for every trial)."""
    return {name: value for name, value in config_overrides(args).items() if name != "env_id"}


def after_first(line: str) -> Callable[[str], None]:
    """An echo that prints `line` before the first message (once every check has passed), then each message."""
    pending = [line]

    def echo(message: str) -> None:
        while pending:
            print(pending.pop(), flush=True)
        print(message, flush=True)

    return echo
