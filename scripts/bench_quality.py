"""Learning quality of the per-env presets (and variants of them), beside RL Baselines3 Zoo's DQN figures.

Each preset (`dqn-tune presets`) is trained at its budget (RL Zoo's) on N seeds of one range of
dqn_tune/tuning/seeds.py — by default the retrain range (fresh seeds: never a tuning trial's or a
validation run's) — as one batched `train_seeds` call, and each seed's agent is judged on 100 greedy
episodes of an evaluation env no run trained on. Prints, per env: mean +- std over seeds, every seed's
figure, the floor, RL Zoo's figure, wall time.

`--changes JSON` (repeatable) also trains variants of each preset (e.g. '{"n_steps": 3}') on the same
seeds and prints each one's paired comparison with the preset: mean difference [95% bootstrap CI], and
the seeds on which it is better or worse. `--seed-range validation` judges on held-out validation seeds
(to choose among variants) so that the retrain range stays fresh for the final figure.

Usage: python scripts/bench_quality.py [--envs CartPole-v1,Acrobot-v1] [--seeds 5] [--episodes 100]
           [--changes '{"n_steps": 3}' ...] [--seed-range retrain|validation] [--timesteps N]
LunarLander-v3 needs `pip install -e ".[box2d]"`. How long each env takes, and the figures, are in
docs/presets.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from dqn_tune.dqn.agent import Agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import train_seeds
from dqn_tune.tuning.presets import load_presets
from dqn_tune.tuning.recommendation import ConfigStats, paired_comparison
from dqn_tune.tuning.seeds import retrain_seeds, validation_seeds

RL_ZOO = {
    "CartPole-v1": "500.0 +- 0.0",
    "Acrobot-v1": "-76.6 +- 11.8",
    "LunarLander-v3": "154 +- 79 (v2)",
    "MountainCar-v0": "-100.8 +- 9.9",
}
"""RL Baselines3 Zoo's benchmark.md, DQN at the same budgets (single runs)."""
FLOORS = {
    "CartPole-v1": ">= 475 on 4 of 5 seeds",
    "Acrobot-v1": ">= -80",
    "LunarLander-v3": ">= 154",
    "MountainCar-v0": ">= -115",
}
"""Issue 9's floors: mean over 5 fresh seeds, 100 greedy episodes each."""
EVAL_SEED = 123_456
"""Seed of the judging evaluation env (neither a training env nor a learning-curve evaluation env)."""
SEED_RANGES = {"retrain": retrain_seeds, "validation": validation_seeds}


def judge(config: DQNConfig, seeds: list[int], episodes: int) -> tuple[list[float], float]:
    """Each seed's greedy return over `episodes` judging episodes, and the wall time of training and judging."""
    start = time.perf_counter()
    results = train_seeds(config, seeds)
    returns = [Agent.from_result(result).evaluate(episodes, seed=EVAL_SEED).mean for result in results]
    return returns, time.perf_counter() - start


def summary(returns: list[float]) -> str:
    """'mean +- std (r1, r2, ...)'."""
    spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
    return f"{statistics.mean(returns):.1f} +- {spread:.1f} ({', '.join(f'{r:.1f}' for r in returns)})"


def main() -> None:
    """Train and judge each chosen preset and its variants; print one block per env and a table at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    classic = ",".join(env for env in load_presets() if not env.startswith("MinAtar/"))  # minatar_quality.py's
    parser.add_argument("--envs", default=classic, help="comma-separated env ids (default: every preset but MinAtar's)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per env (default: 5)")
    parser.add_argument(
        "--seed-range",
        choices=SEED_RANGES,
        default="retrain",
        help="retrain: fresh seeds (the default); validation: held-out seeds to choose variants on",
    )
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed (default: 100)")
    parser.add_argument(
        "--timesteps",
        type=int,
        default=None,
        help="training steps (default: each preset's budget; other values do not compare with RL Zoo)",
    )
    parser.add_argument(
        "--changes",
        type=json.loads,
        action="append",
        default=[],
        metavar="JSON",
        help="a variant of each preset: config fields to change, e.g. '{\"n_steps\": 3}' (repeatable)",
    )
    args = parser.parse_args()
    presets = load_presets()
    seeds = SEED_RANGES[args.seed_range](args.seeds)
    rows = []
    for env_id in args.envs.split(","):
        preset = presets[env_id]
        config = preset.base_config(timesteps=args.timesteps)
        returns, wall = judge(config, seeds, args.episodes)
        print(
            f"{env_id} @{config.total_timesteps}, {args.seed_range} seeds ({preset.source}): {summary(returns)}, "
            f"{wall:.0f}s",
            flush=True,
        )
        rows.append((env_id, config.total_timesteps, "preset", returns, wall))
        reference = ConfigStats(0, 0.0, tuple(seeds), tuple(returns))
        for index, changes in enumerate(args.changes, start=1):
            variant: dict[str, Any] = changes
            label = ", ".join(f"{name}={value}" for name, value in variant.items())
            variant_returns, variant_wall = judge(config.replace(**variant), seeds, args.episodes)
            comparison = paired_comparison(ConfigStats(index, 0.0, tuple(seeds), tuple(variant_returns)), reference)
            assert comparison is not None  # the same seeds
            interval = comparison.interval
            print(
                f"  + {label}: {summary(variant_returns)}, {variant_wall:.0f}s; against the preset: "
                f"{comparison.mean_difference:+.1f} [{interval.low:+.1f}, {interval.high:+.1f}], "
                f"better on {comparison.wins}, worse on {comparison.losses}",
                flush=True,
            )
            rows.append((env_id, config.total_timesteps, label, variant_returns, variant_wall))
    print("\n| env | steps | config | mean +- std over seeds | floor | RL Zoo | wall |")
    print("|---|---|---|---|---|---|---|")
    for env_id, steps, label, returns, wall in rows:
        spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
        print(
            f"| {env_id} | {steps} | {label} | {statistics.mean(returns):.1f} +- {spread:.1f} | "
            f"{FLOORS.get(env_id, '')} | {RL_ZOO.get(env_id, '')} | {wall:.0f}s |"
        )


if __name__ == "__main__":
    main()
