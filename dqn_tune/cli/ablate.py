"""`dqn-tune ablate`: a grid ablation over any hyperparameters (an Optuna grid study), with its report."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dqn_tune.cli.arguments import (
    add_checkpoint_flag,
    add_hidden_alias,
    add_preset_flag,
    add_storage_retry_flag,
    add_workers_flag,
    chosen_workers,
    positive_int,
    study_name,
    text,
)
from dqn_tune.cli.config_flags import (
    add_config_flags,
    build_config,
    check_fits_memory,
    config_overrides,
    env_dims,
    flag_name,
)
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError, shown
from dqn_tune.output_paths import check_writable
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.tuning.presets import eval_freq_for, preset_for
from dqn_tune.tuning.search_space import FIELD_TYPES, Value

if TYPE_CHECKING:  # torch and optuna load when the command runs, not for --help
    from dqn_tune.tuning.ablation import AblationSpec

USES_STORAGE = True
HELP = (
    "grid ablation over any hyperparameters (default: replay-buffer size x target-update interval), "
    "an Optuna grid study, with its report"
)
DEFAULT_BUFFER_SIZES = "1000,10000,100000"
DEFAULT_TARGET_INTERVALS = "1,10,100,1000"
DEFAULT_SEEDS = 3
LEGACY_FLAGS = {"buffer_size": "--buffer-sizes", "target_update_interval": "--target-intervals"}
"""The default grid's axes and the flags that set their values when --grid is not given."""
GRID_VALUES: dict[str, tuple[Callable[[str], Value], str]] = {
    "int": (int, "an integer"),
    "float": (float, "a number"),
    "float | None": (float, "a number"),
    "bool": (lambda word: {"true": True, "false": False}[word.lower()], "true or false"),
    "str": (text, "a word such as huber"),
    "tuple[int, ...]": (
        lambda word: tuple(int(width) for width in word.split("x")),
        "layer widths such as 64x64 (one layer: 64)",
    ),
}
"""How a --grid value of each DQNConfig field type is read, and how it is written (for errors)."""


def int_list(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated integers (range and duplicate checks are AblationSpec's)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid list {text!r}; expected comma-separated integers such as {DEFAULT_BUFFER_SIZES}"
        ) from None


def grid_axis(text: str) -> tuple[str, tuple[str, ...]]:
    """argparse type: NAME=V1,V2,... (the values are read by the field's type once the name is known)."""
    name, equals, values = text.partition("=")
    if not equals or not name.strip() or not values:
        raise argparse.ArgumentTypeError(f"invalid axis {shown(text)}; expected NAME=V1,V2,... such as n_steps=1,3,5")
    return name.strip(), tuple(values.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune ablate`."""
    parser.add_argument(
        "--env",
        "--env-id",
        dest="env_id",
        type=text,
        default=None,
        metavar="ENV_ID",
        help="gymnasium env id (default: the base study's, else CartPole-v1)",
    )
    parser.add_argument(
        "--grid",
        type=grid_axis,
        action="append",
        default=None,
        metavar="NAME=V1,V2,...",
        help="one axis of the grid: a hyperparameter (a DQNConfig field, as in a search-space file) "
        "and its values, comma-separated; repeat for more axes, e.g. --grid n_steps=1,3,5 "
        "--grid dueling=false,true. Values: numbers, true/false, words (loss=huber,mse), layer "
        "widths as 64x64 (hidden_sizes=64,64x64,128x128). The first axis "
        "gives the rows of the report. Without --grid: --buffer-sizes x --target-intervals",
    )
    parser.add_argument(
        "--buffer-sizes",
        type=int_list,
        default=None,
        metavar="N,N,...",
        help=f"without --grid: replay-buffer capacities to compare (default: {DEFAULT_BUFFER_SIZES}); "
        "the same as --grid buffer_size=...",
    )
    parser.add_argument(
        "--target-intervals",
        type=int_list,
        default=None,
        metavar="C,C,...",
        help="without --grid: target-network update intervals in steps (default: "
        f"{DEFAULT_TARGET_INTERVALS}); the same as --grid target_update_interval=...",
    )
    parser.add_argument(
        "--cell-seeds",
        type=positive_int,
        default=DEFAULT_SEEDS,
        metavar="K",
        help=f"training seeds per setting of the grid, each its own trial (default: {DEFAULT_SEEDS})",
    )
    add_hidden_alias(parser, "--seeds", "cell_seeds", positive_int)
    parser.add_argument(
        "--timesteps",
        "--total-timesteps",
        dest="total_timesteps",
        type=positive_int,
        default=None,
        metavar="N",
        help="environment steps per run (default: the base study's budget, else the preset's, else 50000)",
    )
    parser.add_argument(
        "--base-study",
        type=study_name,
        default=None,
        metavar="STUDY",
        help="take every other hyperparameter from this study's recommended trial (validation's "
        "pick, else the best; default: the env's preset, see 'dqn-tune presets')",
    )
    parser.add_argument(
        "--study-name",
        type=study_name,
        default=None,
        help="name of the ablation study (default: ablation-<ENV_ID>-<hash of the settings>, "
        "so the same command resumes the same study)",
    )
    add_preset_flag(parser)
    add_workers_flag(parser)
    add_checkpoint_flag(parser, "each cell's run")
    add_storage_retry_flag(parser)
    parser.add_argument(
        "--out-dir",
        type=text,
        default=None,
        metavar="DIR",
        help="where the report goes (default: studies/ablations/<ablation study name>/)",
    )
    add_config_flags(parser, skip=("env_id", "total_timesteps"))


def run(args: argparse.Namespace) -> int:
    """Check everything, run the missing cells, write and print the report; 130 if interrupted, 1 if a worker
    failed."""
    import optuna

    from dqn_tune.results.ablation_report import CSV_NAME, default_report_dir, write_ablation_report
    from dqn_tune.runner.storage import load_study, open_existing_storage
    from dqn_tune.tuning.ablation import ablation_study_name, run_ablation

    spec = build_spec(args)
    dims = env_dims(spec.base.env_id)
    try:
        check_fits_memory(
            spec.largest_config(*dims), dims, context="the grid's largest setting does not fit in memory: "
        )
    except ConfigError as exc:
        message = str(exc)
        for name, flag in axis_flags(args, spec.grid).items():
            message = re.sub(rf"{re.escape(flag_name(name))}\b", flag, message)
        raise ConfigError(message, field=exc.field) from None
    retry = RetryPolicy(args.storage_retry_timeout)
    study_name = args.study_name or ablation_study_name(spec, args.storage, retry)
    out_dir = default_report_dir(study_name) if args.out_dir is None else args.out_dir
    check_writable(Path(out_dir) / CSV_NAME)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    outcome = run_ablation(
        spec=spec,
        storage=args.storage,
        study_name=study_name,
        workers=chosen_workers(args.workers, len(spec.cells)),
        verbose=True,
        checkpoint_every=args.checkpoint_every,
        storage_retry_timeout_s=args.storage_retry_timeout,
    )
    study = load_study(open_existing_storage(args.storage, retry=retry), outcome.study_name)
    files = write_ablation_report(study, out_dir)
    print(
        f"ran {len(outcome.ran)} cells ({outcome.done_before} were done before); "
        + (f"{len(outcome.left)} not done yet: run the same command again" if outcome.left else "all cells done")
    )
    print()
    print(files.table.read_text(encoding="utf-8"))
    print("report: " + ", ".join(str(path) for path in files.paths))
    if outcome.worker_error:
        print(f"a worker failed: {outcome.worker_error}")
    return 130 if outcome.interrupted else 1 if outcome.worker_error else 0


def build_spec(args: argparse.Namespace) -> AblationSpec:
    """The ablation's spec from the flags and the base study; errors name the flags."""
    from dqn_tune.tuning.ablation import AblationSpec, value_text

    base, base_study, base_trial, base_reason = base_config(args)
    grid = chosen_grid(args)
    flags = axis_flags(args, grid)
    fixed = [name for name in config_overrides(args) if name in grid and name in FIELD_TYPES]
    if fixed:
        raise ConfigError(
            f"{flag_name(fixed[0])} fixes {fixed[0]}, which {flags[fixed[0]]} varies; drop one of them", field=fixed[0]
        )
    total = args.total_timesteps or base.total_timesteps  # tune's rule: EVALS_PER_RUN evaluations at any budget
    implied = {"total_timesteps": total, "eval_freq": eval_freq_for(total)}
    try:
        base = build_config(args, base, **implied)
    except ConfigError as exc:  # e.g. --timesteps 500 and the default learning_starts, which the grid varies
        first = {name: values[0] for name, values in grid.items() if name in FIELD_TYPES}
        try:
            base = build_config(args, base, **implied, **first)
        except ConfigError as again:
            if again.field not in grid:
                raise exc from None
            raise ConfigError(
                f"{flags[again.field]}={value_text(first[again.field])} gives an invalid config: {again}",
                field=again.field,
            ) from None
    try:
        return AblationSpec(base, grid, args.cell_seeds, base_study, base_trial, base_reason)
    except ConfigError as error:
        message = str(error)
        for name, flag in flags.items():
            message = re.sub(rf"^grid {name}\b", flag, message)
        message = re.sub(r"^grid\b", "--grid" if args.grid else "--buffer-sizes/--target-intervals", message)
        raise ConfigError(message, field=error.field) from None


def chosen_grid(args: argparse.Namespace) -> dict[str, tuple[Any, ...]]:
    """The axes of --grid, with their values read by each field's type, else the default grid."""
    if args.grid is None:
        return {
            "buffer_size": args.buffer_sizes or int_list(DEFAULT_BUFFER_SIZES),
            "target_update_interval": args.target_intervals or int_list(DEFAULT_TARGET_INTERVALS),
        }
    if args.buffer_sizes or args.target_intervals:
        raise ConfigError(
            "--buffer-sizes and --target-intervals set the default grid, not an axis of --grid; use "
            "--grid buffer_size=... or --grid target_update_interval=... instead"
        )
    grid: dict[str, tuple[Any, ...]] = {}
    for name, words in args.grid:
        if name in grid:
            raise ConfigError(
                f"--grid {name} is given twice; give each axis once with all its values (--grid {name}=V1,V2,...)",
                field=name,
            )
        grid[name] = tuple(grid_value(name, word) for word in words) if name in FIELD_TYPES else words
    return grid


def grid_value(name: str, word: str) -> Value:
    """One --grid value as its field's type (FIELD_TYPES); DQNConfig checks its range."""
    kind = FIELD_TYPES[name]
    if kind not in GRID_VALUES:
        raise ConfigError(f"--grid {name}: a field of type {kind} cannot be an axis", field=name)
    read, written = GRID_VALUES[kind]
    try:
        return read(word)
    except (KeyError, ValueError, argparse.ArgumentTypeError):
        raise ConfigError(f"--grid {name}: invalid value {shown(word)}; expected {written}", field=name) from None


def axis_flags(args: argparse.Namespace, grid: Mapping[str, object]) -> dict[str, str]:
    """The flag each axis's values came from, as error messages name it."""
    return LEGACY_FLAGS if args.grid is None else {name: f"--grid {name}" for name in grid}


def base_config(args: argparse.Namespace) -> tuple[DQNConfig, str | None, int | None, str | None]:
    """The base config, and the study, trial and reason it came from: --base-study's recommended trial (see
    `recommended_config`), else the env's preset at its training budget (as `train` starts), else the defaults;
    --env must agree with the base study."""
    from dqn_tune.tuning.selection import recommended_config

    if args.base_study is None:
        env_id = args.env_id or DQNConfig().env_id
        preset = None if args.no_preset else preset_for(env_id)
        if preset is None:
            return DQNConfig(env_id=env_id), None, None, None
        return preset.base_config(), None, None, f"the {env_id} preset"
    config, trial, why = recommended_config(args.storage, args.base_study, RetryPolicy(args.storage_retry_timeout))
    if args.env_id is not None and args.env_id != config.env_id:
        raise ConfigError(
            f"--env {args.env_id} differs from the env of --base-study {args.base_study!r} "
            f"({config.env_id}); drop --env or choose a study of that env"
        )
    return config, args.base_study, trial, why
