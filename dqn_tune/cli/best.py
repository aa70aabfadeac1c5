"""`dqn-tune best`: print (or write) a study's recommended config, complete, as TOML, JSON, YAML or a command line."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import add_storage_retry_flag, add_study_flags, chosen_study, text
from dqn_tune.output_paths import check_writable, write_text
from dqn_tune.results.defaults import FORMATS

USES_STORAGE = True
HELP = (
    "print a study's recommended config (validated on held-out seeds, else the best trial's): toml for "
    "'train --config', json with the validation table, yaml for RL Zoo / SB3, or a train command line"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune best`."""
    add_study_flags(parser, "the study")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="toml",
        help="toml (default; read by 'dqn-tune train --config'), json (with the validation table), "
        "yaml (RL Baselines3 Zoo's hyperparams/dqn.yml format) or args (a dqn-tune train "
        "command line)",
    )
    parser.add_argument("--out", type=text, default=None, metavar="FILE", help="write to FILE instead of stdout")
    add_storage_retry_flag(parser)


def run(args: argparse.Namespace) -> int:
    """Load the study, export its recommended trial's config, print it or write it to --out."""
    from dqn_tune.results.export import export, pick  # optuna loads when a command runs, not for --help
    from dqn_tune.runner.retry import RetryPolicy
    from dqn_tune.runner.storage import load_study, open_existing_storage

    name = chosen_study(args)
    study = load_study(open_existing_storage(args.storage, retry=RetryPolicy(args.storage_retry_timeout)), name)
    out = check_writable(args.out) if args.out is not None else None
    chosen = pick(study)
    content = export(chosen, args.format)
    if out is None:
        print(content, end="")
        return 0
    write_text(out, content)
    print(f"wrote the {args.format} config of trial {chosen.trial} of study {name!r} ({chosen.why}) to {out}")
    return 0
