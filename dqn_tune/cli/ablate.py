"""`dqn-tune ablate`: grid ablation of replay-buffer size x target-update interval, with its report."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from dqn_tune.cli.arguments import (
    add_hidden_alias,
    add_workers_flag,
    chosen_workers,
    flag_error,
    positive_int,
    study_name,
    text,
)
from dqn_tune.cli.config_flags import (
    add_config_flags,
    build_config,
    check_fits_memory,
    env_dims,
)
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.output_paths import check_writable
from dqn_tune.tuning.presets import eval_freq_for

if TYPE_CHECKING:  # torch and optuna load when the command runs, not for --help
    from dqn_tune.tuning.ablation import AblationSpec

USES_STORAGE = True
HELP = "grid ablation of buffer size x target-update interval (an Optuna grid study), with a report"
DEFAULT_BUFFER_SIZES = "1000,10000,100000"
DEFAULT_TARGET_INTERVALS = "1,10,100,1000"
DEFAULT_SEEDS = 3
SPEC_FLAGS = {"buffer_sizes": "--buffer-sizes", "target_intervals": "--target-intervals", "seeds": "--cell-seeds"}


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers (range and duplicate checks are AblationSpec's)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list {text!r}; expected comma-separated integers such as "
                                         f"{DEFAULT_BUFFER_SIZES}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune ablate`."""
    parser.add_argument("--env", "--env-id", dest="env_id", type=text, default=None, metavar="ENV_ID",
                        help="gymnasium env id (default: the base study's, else CartPole-v1)")
    parser.add_argument("--buffer-sizes", type=int_list, default=int_list(DEFAULT_BUFFER_SIZES), metavar="N,N,...",
                        help=f"replay-buffer capacities to compare (default: {DEFAULT_BUFFER_SIZES})")
    parser.add_argument("--target-intervals", type=int_list, default=int_list(DEFAULT_TARGET_INTERVALS),
                        metavar="C,C,...",
                        help=f"target-network update intervals in steps (default: {DEFAULT_TARGET_INTERVALS})")
    parser.add_argument("--cell-seeds", type=positive_int, default=DEFAULT_SEEDS, metavar="K",
                        help=f"training seeds per cell, each its own trial (default: {DEFAULT_SEEDS})")
    add_hidden_alias(parser, "--seeds", "cell_seeds", positive_int)
    parser.add_argument("--timesteps", "--total-timesteps", dest="total_timesteps", type=positive_int, default=None,
                        metavar="N", help="environment steps per run (default: the base study's budget, else 50000)")
    parser.add_argument("--base-study", type=study_name, default=None, metavar="STUDY",
                        help="take every other hyperparameter from this study's best trial (default: the defaults)")
    parser.add_argument("--study-name", type=study_name, default=None,
                        help="name of the ablation study (default: ablation-<ENV_ID>-<hash of the settings>, "
                             "so the same command resumes the same study)")
    add_workers_flag(parser)
    parser.add_argument("--out-dir", type=text, default=None, metavar="DIR",
                        help="where the report goes (default: studies/ablations/<ablation study name>/)")
    add_config_flags(parser, skip=("env_id", "total_timesteps", "buffer_size", "target_update_interval"))


def run(args: argparse.Namespace) -> int:
    """Check everything, run the missing cells, write the report; 130 if interrupted, 1 if a worker failed."""
    import optuna

    from dqn_tune.results.ablation_report import CSV_NAME, default_report_dir, write_ablation_report
    from dqn_tune.runner.storage import load_study, open_existing_storage
    from dqn_tune.tuning.ablation import run_ablation

    spec = build_spec(args)
    dims = env_dims(spec.base.env_id)
    try:
        check_fits_memory(spec.largest_config, dims, context="the grid's largest cell does not fit in memory: ")
    except ConfigError as exc:
        raise ConfigError(re.sub(r"--buffer-size\b", "--buffer-sizes", str(exc)), field=exc.field) from None
    study_name = spec.default_study_name if args.study_name is None else args.study_name
    out_dir = default_report_dir(study_name) if args.out_dir is None else args.out_dir
    check_writable(Path(out_dir) / CSV_NAME)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outcome = run_ablation(spec=spec, storage=args.storage, study_name=args.study_name,
                           workers=chosen_workers(args.workers, len(spec.cells)),
                           verbose=True)
    study = load_study(open_existing_storage(args.storage), outcome.study_name)
    files = write_ablation_report(study, out_dir)
    print(f"ran {len(outcome.ran)} cells ({outcome.done_before} were done before); "
          + (f"{len(outcome.left)} not done yet: run the same command again" if outcome.left else "all cells done"))
    print(f"report: {files.table} (table), {files.csv}, {files.heatmap}, {files.curves}")
    if outcome.worker_error:
        print(f"a worker failed: {outcome.worker_error}")
    return 130 if outcome.interrupted else 1 if outcome.worker_error else 0


def build_spec(args: argparse.Namespace) -> AblationSpec:
    """The ablation's spec from the flags and the base study; errors name the flags."""
    from dqn_tune.tuning.ablation import AblationSpec

    base = base_config(args)
    total = args.total_timesteps or base.total_timesteps  # tune's rule: EVALS_PER_RUN evaluations at any budget
    base = build_config(args, base, total_timesteps=total, eval_freq=eval_freq_for(total))
    try:
        return AblationSpec(base, args.buffer_sizes, args.target_intervals, args.cell_seeds, args.base_study)
    except ConfigError as exc:
        raise flag_error(exc, SPEC_FLAGS) from None


def base_config(args: argparse.Namespace) -> DQNConfig:
    """The best trial's config of --base-study, else the defaults; --env must agree with the base study."""
    from dqn_tune.tuning.selection import best_config

    if args.base_study is None:
        return DQNConfig(env_id=args.env_id or DQNConfig().env_id)
    config = best_config(args.storage, args.base_study)
    if args.env_id is not None and args.env_id != config.env_id:
        raise ConfigError(f"--env {args.env_id} differs from the env of --base-study {args.base_study!r} "
                          f"({config.env_id}); drop --env or choose a study of that env")
    return config
