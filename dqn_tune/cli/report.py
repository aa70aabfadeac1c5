"""`dqn-tune report`: a study's plots, top trials' learning curves and summary table, written to a folder."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import (
    add_artifact_dir_flag,
    add_storage_retry_flag,
    add_study_flags,
    chosen_study,
    text,
)

USES_STORAGE = True
HELP = "write a study's Optuna plots (HTML, PNG), top learning curves and a markdown summary"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune report`."""
    add_study_flags(parser, "study to report on")
    parser.add_argument(
        "--out-dir",
        type=text,
        default=None,
        metavar="DIR",
        help="folder for the report (default: studies/reports/<study-name>/)",
    )
    add_artifact_dir_flag(parser, "the trials' learning-curve PNGs, named in summary.md")
    add_storage_retry_flag(parser)


def run(args: argparse.Namespace) -> int:
    """Load the study, write the report, list what was written and what was left out."""
    from dqn_tune.results.report import SUMMARY, TOP_TRIALS, default_out_dir, write_report  # loads optuna, plotly
    from dqn_tune.runner.retry import RetryPolicy
    from dqn_tune.runner.storage import load_study, open_existing_storage

    name = chosen_study(args)
    study = load_study(open_existing_storage(args.storage, retry=RetryPolicy(args.storage_retry_timeout)), name)
    report = write_report(
        study, default_out_dir(name) if args.out_dir is None else args.out_dir, artifact_dir=args.artifact_dir
    )
    print(
        f"report of study {name!r} ({len(report.files)} files, top {TOP_TRIALS} trials in {report.out_dir / SUMMARY}):"
    )
    for path in report.files:
        print(f"  {path}")
    for reason in report.skipped:
        print(f"  not drawn: {reason}")
    return 0
