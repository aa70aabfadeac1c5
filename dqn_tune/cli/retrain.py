"""`dqn-tune retrain`: retrain a study's best (or chosen) trial with fresh seeds and save the best agent."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import (
    add_device_flag,
    add_hidden_alias,
    add_storage_retry_flag,
    add_study_flags,
    bounded_int,
    chosen_study,
    positive_int,
    seed,
    seed_count,
    text,
)
from dqn_tune.dqn.config import INT_MAX
from dqn_tune.results.defaults import EVAL_EPISODES, EVAL_SEED, RETRAIN_SEEDS

USES_STORAGE = True
HELP = (
    "retrain a study's recommended trial (validated on held-out seeds, else the best) with fresh seeds and save "
    "the best seed as the final agent"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune retrain`."""
    add_study_flags(parser, "the study to take the trial from")
    parser.add_argument(
        "--trial",
        type=bounded_int(0, INT_MAX, accepted="a trial number, an integer >= 0"),
        default=None,
        metavar="N",
        help="number of the trial to retrain (default: the recommended one, else the best; 0 is a valid number)",
    )
    parser.add_argument(
        "--timesteps",
        type=positive_int,
        default=None,
        metavar="N",
        help="environment steps per seed (default: the trial's budget)",
    )
    parser.add_argument(
        "--retrain-seeds",
        type=seed_count,
        default=RETRAIN_SEEDS,
        metavar="K",
        help="fresh seeds to train (never a tuning or validation seed); the best one is kept "
        f"(default: {RETRAIN_SEEDS})",
    )
    add_hidden_alias(parser, "--seeds", "retrain_seeds", seed_count)
    parser.add_argument(
        "--out",
        type=text,
        default=None,
        metavar="PATH",
        help="where to save the agent (default: models/<study-name>.pt); "
        "the learning-curve PNG and summary .md go next to it",
    )
    parser.add_argument(
        "--eval-episodes",
        type=positive_int,
        default=EVAL_EPISODES,
        metavar="N",
        help=f"held-out greedy episodes per seed (default: {EVAL_EPISODES})",
    )
    parser.add_argument(
        "--eval-seed",
        type=seed,
        default=EVAL_SEED,
        help=f"seed of the held-out evaluation (default: {EVAL_SEED}, as `dqn-tune evaluate`)",
    )
    add_device_flag(parser, "the seeds' networks")
    add_storage_retry_flag(parser)


def run(args: argparse.Namespace) -> int:
    """Retrain, print each seed's figures and the verdict, say where the files are."""
    from dqn_tune.results.retrain import retrain_best  # torch and optuna load when a command runs, not for --help

    outcome = retrain_best(
        study_name=chosen_study(args),
        storage=args.storage,
        storage_retry_timeout_s=args.storage_retry_timeout,
        trial=args.trial,
        timesteps=args.timesteps,
        seeds=args.retrain_seeds,
        out=args.out,
        eval_episodes=args.eval_episodes,
        eval_seed=args.eval_seed,
        device=args.device,
        log=lambda line: print(line, flush=True),
    )
    print(
        f"trial {outcome.trial_number} ({outcome.selection}): value {outcome.trial_value:.2f} "
        f"({outcome.objective}), final return {outcome.tuned_final:.2f} when tuned; retrained mean "
        f"{outcome.retrained_mean:.2f} over {len(outcome.seeds)} seeds: the tuned result {outcome.verdict}"
    )
    print(f"rule: {outcome.rule}")
    print(
        f"saved agent (seed {outcome.best_seed}, best on {outcome.selection_episodes} selection episodes, eval seed "
        f"{outcome.selection_seed}) to {outcome.agent_path}"
    )
    print(f"wrote {outcome.curve_path} and {outcome.summary_path}")
    return 0
