"""`dqn-tune validate`: retrain a study's top configs on held-out seeds, recommend one with confidence intervals."""

from __future__ import annotations

import argparse
import shlex

from dqn_tune.cli.arguments import (
    add_artifact_dir_flag,
    add_checkpoint_flag,
    add_device_flag,
    add_hidden_alias,
    add_storage_retry_flag,
    add_study_flags,
    add_workers_flag,
    chosen_study,
    chosen_workers,
    flag_error,
    positive_int,
    validation_seed_count,
)
from dqn_tune.cli.tune import add_validation_flags
from dqn_tune.errors import ConfigError

USES_STORAGE = True
FLAGS = {"top_k": "--validate-top", "seeds": "--validation-seeds"}
"""ValidationSettings' fields as the flags that set them (error messages name the flag)."""
HELP = "retrain a study's top configs on held-out seeds and recommend one (mean, IQM, min, 95% CI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune validate`: `tune`'s validation flags, named as in `tune`."""
    add_study_flags(parser, "the tuning study to validate")
    add_validation_flags(parser, tune=False)
    add_hidden_alias(parser, "--top-k", "validate_top", positive_int)  # the names before `tune`'s were shared
    add_hidden_alias(parser, "--seeds", "validation_seeds", validation_seed_count)
    add_workers_flag(parser)
    add_device_flag(parser, "the runs' networks")
    add_storage_retry_flag(parser)
    parser.add_argument(
        "--no-artifacts",
        dest="artifacts",
        action="store_false",
        help="do not save each run's learning-curve PNG to the artifact store",
    )
    add_artifact_dir_flag(parser, "where each run's learning-curve PNG is saved")
    add_checkpoint_flag(parser, "each batch of runs")


def run(args: argparse.Namespace) -> int:
    """Validate, print the table and the recommendation; 130 if interrupted, 1 if a worker failed."""
    import optuna  # torch and optuna load when a command runs, not for --help

    from dqn_tune.runner.retry import RetryPolicy
    from dqn_tune.runner.storage import StorageSettings, open_existing_storage, prepare_url, public_url
    from dqn_tune.tuning.validation import ValidationSettings, run_validation

    study_name = chosen_study(args)
    open_existing_storage(
        args.storage, retry=RetryPolicy(args.storage_retry_timeout)
    ).close()  # never creates a database
    try:
        settings = ValidationSettings(
            study_name,
            StorageSettings(prepare_url(args.storage), retry_timeout_s=args.storage_retry_timeout),
            args.validate_top,
            args.validation_seeds,
            args.artifacts,
            artifact_dir=args.artifact_dir,
            device=args.device,
            checkpoint_every=args.checkpoint_every,
        )
    except ConfigError as exc:
        raise flag_error(exc, FLAGS) from None
    command = shlex.join(
        [
            "dqn-tune",
            "validate",
            "--study-name",
            study_name,
            "--validate-top",
            str(args.validate_top),
            "--validation-seeds",
            str(args.validation_seeds),
        ]
        + (["--device", args.device] if args.device != "cpu" else [])
        + (["--storage", public_url(args.storage)] if args.storage else [])
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = run_validation(
        settings, workers=chosen_workers(args.workers, args.validate_top * args.validation_seeds), command=command
    )
    print("\n".join(summary.lines()), flush=True)
    if summary.interrupted:
        return 130
    return 1 if summary.worker_error else 0
