"""`dqn-tune tune` (also plain `dqn-tune --trials N`): run an Optuna study over DQN hyperparameters."""

from __future__ import annotations

import argparse
from contextlib import nullcontext

from dqn_tune.cli.arguments import (
    add_artifact_dir_flag,
    add_checkpoint_flag,
    add_device_flag,
    add_env_flag,
    add_hidden_alias,
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
from dqn_tune.cli.config_flags import add_config_flags, config_overrides, flag_error
from dqn_tune.cli.executor_flags import add_executor_flags, chosen_executor
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.runner.defaults import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S
from dqn_tune.tuning import defaults
from dqn_tune.tuning.presets import EVALS_PER_RUN, load_presets
from dqn_tune.tuning.search_space import ENQUEUE_FIELD, SEARCH_SPACE_FIELD

USES_STORAGE = True
HELP = "tune DQN hyperparameters: run trials into an Optuna study (resumes an existing one), then validate the best"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune tune`."""
    budgets = ", ".join(f"{preset.env_id} {preset.trial_timesteps}" for preset in load_presets().values())
    parser.add_argument(
        "--trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="trials to run now, shared by the workers; a resumed study gets N more (required unless "
        "--total-trials or --timeout is given)",
    )
    add_hidden_alias(parser, "--n-trials", "trials", positive_int)  # Optuna's CLI and RL Zoo's name
    parser.add_argument(
        "--total-trials",
        type=positive_int,
        default=None,
        metavar="N",
        help="stop when the study holds N trials, counting every machine's (for shared studies)",
    )
    add_env_flag(
        parser,
        f"gymnasium env id with Discrete actions (default: {defaults.ENV_ID}, or the study's when "
        "resuming: every setting left out is read from the study)",
    )
    parser.add_argument("--study-name", type=study_name, default=None, help="study name (default: dqn-<ENV_ID>)")
    parser.add_argument(
        "--timesteps",
        "--total-timesteps",
        dest="timesteps",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"environment steps per training run (default by env: {budgets}; else 50000)",
    )
    parser.add_argument(
        "--trial-seeds",
        type=seed_count,
        default=None,
        metavar="K",
        help="training runs per trial, each with its own tuning seed; the trial's value is their mean "
        f"(default: {defaults.TRIAL_SEEDS})",
    )
    add_hidden_alias(parser, "--seeds", "trial_seeds", seed_count)
    parser.add_argument(
        "--eval-episodes",
        type=positive_int,
        default=None,
        metavar="N",
        help="greedy episodes of each run's final evaluation "
        f"(default: {DQNConfig.__dataclass_fields__['eval_episodes'].default})",
    )
    parser.add_argument(
        "--eval-freq",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"steps between learning-curve evaluations, the points the pruner sees "
        f"(default: timesteps / {EVALS_PER_RUN})",
    )
    parser.add_argument(
        "--objective",
        choices=defaults.OBJECTIVES,
        default=None,
        help="what a run scores: the final evaluation of its kept weights (see keep_best), its best "
        "evaluation, or the area under its evaluation curve divided by its length "
        f"(default: {defaults.OBJECTIVE})",
    )
    add_device_flag(parser, "the networks of trials and validation runs")
    add_workers_flag(parser, remote=True)
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=None,
        metavar="SECONDS",
        help="time budget of this command: no new trial starts after it, running ones finish; "
        "alone, trials run until then, as Optuna's optimize(timeout=...) (default: none)",
    )
    parser.add_argument(
        "--sampler", choices=defaults.SAMPLERS, default=None, help=f"Optuna sampler (default: {defaults.SAMPLER})"
    )
    parser.add_argument(
        "--pruner", choices=defaults.PRUNERS, default=None, help=f"Optuna pruner (default: {defaults.PRUNER})"
    )
    parser.add_argument(
        "--seed",
        type=seed,
        default=None,
        help=f"study seed: of the sampler and of every trial's runs (default: {defaults.STUDY_SEED})",
    )
    add_preset_flag(parser)
    parser.add_argument(
        "--search-space",
        type=text,
        default=None,
        metavar="FILE.toml",
        help="TOML file changing the search space: ranges, fixed values, more hyperparameters "
        "(a hyperparameter flag below, e.g. --gamma 0.99, fixes that one for every trial)",
    )
    parser.add_argument(
        "--enqueue",
        type=text,
        action="append",
        default=None,
        metavar="FILE.toml",
        help="a config file (as 'dqn-tune best --out' writes) whose values of the sampled hyperparameters the "
        "study runs as a trial before sampling, e.g. a known good config to start from; once per study; "
        "repeatable",
    )
    parser.add_argument(
        "--no-artifacts",
        dest="artifacts",
        action="store_false",
        help="do not save each trial's learning-curve PNG to the artifact store",
    )
    add_artifact_dir_flag(parser, "where each trial's learning-curve PNG is saved (stored on the study)")
    add_checkpoint_flag(parser, "each trial's runs (and validation's)")
    add_validation_flags(parser.add_argument_group("validation of the top configs on held-out seeds"), tune=True)
    faults = parser.add_argument_group("fault tolerance")
    faults.add_argument(
        "--heartbeat-interval",
        type=seconds,
        default=HEARTBEAT_INTERVAL_S,
        metavar="S",
        help=f"seconds between a running trial's heartbeats (default: {HEARTBEAT_INTERVAL_S})",
    )
    faults.add_argument(
        "--grace-period",
        type=seconds,
        default=GRACE_PERIOD_S,
        metavar="S",
        help="seconds without a heartbeat after which a trial counts as dead and is retried "
        f"(default: {GRACE_PERIOD_S})",
    )
    add_storage_retry_flag(faults)
    add_executor_flags(parser)
    add_config_flags(parser, skip=("env_id", "total_timesteps", "eval_episodes", "eval_freq"))


def add_validation_flags(group: argparse._ActionsContainer, *, tune: bool) -> None:
    """`--validate-top K` and `--validation-seeds N`, the same in `tune` (after tuning) and `validate`."""
    top_default = (
        f"one per 10 complete trials, 1 to {defaults.VALIDATE_TOP_MAX}; 0 turns validation off"
        if tune
        else str(defaults.VALIDATE_TOP_MAX)
    )
    group.add_argument(
        "--validate-top",
        type=non_negative_int if tune else positive_int,
        default=None if tune else defaults.VALIDATE_TOP_MAX,
        metavar="K",
        help=f"validate the K best complete trials: retrain each config on held-out seeds and recommend "
        f"one (default: {top_default})",
    )
    group.add_argument(
        "--validation-seeds",
        type=validation_seed_count,
        default=defaults.VALIDATION_SEEDS,
        metavar="N",
        help=f"held-out seeds per validated config, at least 2 (default: "
        f"{defaults.VALIDATION_SEEDS}); raising it later runs only the new seeds",
    )


def queued_config(path: str) -> DQNConfig:
    """The config of an --enqueue file; ConfigError (field ENQUEUE_FIELD) naming the flag, the file and the key."""
    from dqn_tune.results.export import read_config_file

    try:
        return read_config_file(path)
    except ConfigError as exc:
        raise ConfigError(f"--enqueue: {exc}", field=ENQUEUE_FIELD) from None


def run(args: argparse.Namespace) -> int:
    """Build the request, run the study and its validation; 130 if interrupted, 1 if a worker failed."""
    import optuna  # torch and optuna load when a command runs, not for --help

    from dqn_tune.tuning.request import TuneRequest, run_tune

    hyperparameters = {name: value for name, value in config_overrides(args).items() if name != "env_id"}
    enqueue = {path: queued_config(path) for path in args.enqueue or ()}
    try:
        plan = TuneRequest(
            trials=args.trials,
            total_trials=args.total_trials,
            timeout_s=args.timeout,
            env_id=args.env_id,
            study_name=args.study_name,
            storage=args.storage,
            timesteps=args.timesteps,
            trial_seeds=args.trial_seeds,
            objective=args.objective,
            seed=args.seed,
            sampler=args.sampler,
            pruner=args.pruner,
            preset=not args.no_preset,
            search_space=args.search_space,
            enqueue=enqueue,
            hyperparameters=hyperparameters,
            device=args.device,
            artifacts=args.artifacts,
            artifact_dir=args.artifact_dir,
            checkpoint_every=args.checkpoint_every,
            validate_top=args.validate_top,
            validation_seeds=args.validation_seeds,
            heartbeat_interval_s=args.heartbeat_interval,
            grace_period_s=args.grace_period,
            storage_retry_timeout_s=args.storage_retry_timeout,
            executor=args.executor,
            ray_address=args.ray_address,
            worker_gpus=args.worker_gpus,
        ).plan()
    except ConfigError as exc:
        files = (ENQUEUE_FIELD, SEARCH_SPACE_FIELD)  # errors naming a file's keys, not flags
        raise (exc if exc.field in files else flag_error(exc, args)) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given, args.workers = args.workers, chosen_workers(args.workers, args.trials)
    executor = chosen_executor(args)
    pending = [plan.origin, *plan.notes, *[line for line in [workers_line(given, args.workers)] if line]]

    def echo(message: str) -> None:  # the origin, the study's line, then the worker count: once every check passed
        if pending:
            print(pending.pop(0), flush=True)
            print(message, flush=True)
            while pending:
                print(pending.pop(0), flush=True)
            return
        print(message, flush=True)

    with executor or nullcontext():  # one Ray connection for tuning and validation
        return run_tune(plan, workers=args.workers, echo=echo, executor=executor).exit_status
