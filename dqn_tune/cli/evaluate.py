"""`dqn-tune evaluate`: greedy returns of a saved agent, optionally a video of one episode."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import add_env_flag, positive_int, seed, text

HELP = "evaluate a saved agent's greedy policy (mean and std of the return)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune evaluate`."""
    parser.add_argument("path", type=text, help="saved agent file (.pt)")
    for alias in ("--eval-episodes", "--n-eval-episodes"):  # the names of tune, retrain and SB3
        parser.add_argument(
            alias, dest="episodes", type=positive_int, default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    parser.add_argument("--episodes", type=positive_int, default=100, help="evaluation episodes (default: 100)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the evaluation env (default: 0)")
    add_env_flag(
        parser,
        "evaluate on this env id instead of the one the agent was trained on (needed for an id "
        "'module:Env', which imports that module: the agent file alone never decides that)",
    )
    parser.add_argument(
        "--video", type=text, default=None, metavar="PATH", help="also write one episode as a .gif or .mp4"
    )


def run(args: argparse.Namespace) -> int:
    """Load, evaluate, print; write the video if asked."""
    from dqn_tune.dqn.agent import load_agent  # torch loads when the command runs, not for --help
    from dqn_tune.results.video import record_episode

    agent = load_agent(args.path, env_id=args.env_id)
    stats = agent.evaluate(args.episodes, seed=args.seed)
    print(
        f"{agent.env_id}: mean return {stats.mean:.2f} +- {stats.std:.2f} over {args.episodes} episodes "
        f"(min {min(stats.returns):.1f}, max {max(stats.returns):.1f})"
    )
    if args.video is not None:
        path, episode_return = record_episode(agent, args.video, seed=args.seed)
        print(f"wrote video of one episode (return {episode_return:.1f}) to {path}")
    return 0
