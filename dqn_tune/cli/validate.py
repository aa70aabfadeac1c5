"""`dqn-tune validate`: retrain a study's top configs on held-out seeds, recommend one with confidence intervals."""

from __future__ import annotations

import argparse
import shlex

import optuna

from dqn_tune.cli.arguments import (
    add_artifact_dir_flag,
    add_device_flag,
    add_storage_retry_flag,
    add_study_flags,
    add_workers_flag,
    chosen_study,
    chosen_workers,
    flag_error,
    positive_int,
    validation_seed_count,
)
from dqn_tune.errors import ConfigError
from dqn_tune.runner.executor import Executor
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import (
    StorageSettings,
    open_existing_storage,
    prepare_url,
    public_url,
)
from dqn_tune.tuning.validation import (
    DEFAULT_SEEDS,
    DEFAULT_TOP_K,
    ValidationSettings,
    run_validation,
)

USES_STORAGE = True
FLAGS = {"top_k": "--top-k", "seeds": "--seeds"}
"""ValidationSettings' fields as the flags that set them (error messages name the flag)."""
HELP = "retrain a study's top configs on held-out seeds and recommend one (mean, IQM, min, 95% CI)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune validate`."""
    add_study_flags(parser, "the tuning study to validate")
    parser.add_argument("--top-k", type=positive_int, default=DEFAULT_TOP_K, metavar="K",
                        help=f"how many of the best complete trials to validate (default: {DEFAULT_TOP_K})")
    parser.add_argument("--seeds", type=validation_seed_count, default=DEFAULT_SEEDS, metavar="N",
                        help=f"held-out seeds per config, at least 2 (default: {DEFAULT_SEEDS}); raising it later "
                             "runs only the new seeds")
    add_workers_flag(parser)
    add_device_flag(parser, "the runs' networks")
    add_storage_retry_flag(parser)
    parser.add_argument("--no-artifacts", dest="artifacts", action="store_false",
                        help="do not save each run's learning-curve PNG to the artifact store")
    add_artifact_dir_flag(parser, "where each run's learning-curve PNG is saved")


def run(args: argparse.Namespace) -> int:
    """Validate, print the table and the recommendation; 130 if interrupted, 1 if a worker failed."""
    study_name = chosen_study(args)
    open_existing_storage(args.storage, retry=RetryPolicy(args.storage_retry_timeout)).close()  # never creates a database
    try:
        storage = StorageSettings(prepare_url(args.storage), retry_timeout_s=args.storage_retry_timeout)
        settings = ValidationSettings(study_name, storage, args.top_k, args.seeds,
                                      args.artifacts, artifact_dir=args.artifact_dir, device=args.device)
    except ConfigError as exc:
        raise flag_error(exc, FLAGS) from None
    return validate(settings, workers=chosen_workers(args.workers, args.top_k * args.seeds),
                    command=shlex.join(["dqn-tune", "validate", "--study-name", study_name, "--top-k",
                                        str(args.top_k), "--seeds", str(args.seeds)]
                                       + (["--device", args.device] if args.device != "cpu" else [])
                                       + (["--storage", public_url(args.storage)] if args.storage else [])))


def validate(settings: ValidationSettings, *, workers: int, command: str, executor: Executor | None = None) -> int:
    """Run a validation (on `executor`'s workers; None: local processes) and print its summary; the exit status."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    summary = run_validation(settings, workers=workers, command=command, executor=executor)
    print("\n".join(summary.lines()), flush=True)
    if summary.interrupted:
        return 130
    return 1 if summary.worker_error else 0
