"""Learning quality of the per-env presets, beside RL Baselines3 Zoo's DQN figures at equal steps.

Each preset (`dqn-tune presets`) is trained at its budget (RL Zoo's) on N fresh seeds — retrain-range
seeds, never used by a tuning trial or a validation run — as one batched `train_seeds` call, and
each seed's agent is judged on 100 greedy episodes of an evaluation env no run trained on. Prints,
per env: mean +- std over seeds, every seed's figure, the issue's floor, RL Zoo's figure, wall time.

Usage: python scripts/bench_quality.py [--envs CartPole-v1,Acrobot-v1] [--seeds 5] [--episodes 100]
LunarLander-v3 needs `pip install -e ".[box2d]"`. Wall time on the 2-core development machine
(one process, 5 seeds): CartPole ~3 min, Acrobot ~50 min (its preset makes 4 updates of batch 256 per step),
LunarLander ~8 min, MountainCar ~4 min.
"""

from __future__ import annotations

import argparse
import statistics
import time

from dqn_tune.dqn.agent import Agent
from dqn_tune.dqn.trainer import train_seeds
from dqn_tune.tuning.presets import load_presets
from dqn_tune.tuning.seeds import retrain_seeds

RL_ZOO = {"CartPole-v1": "500.0 +- 0.0", "Acrobot-v1": "-76.6 +- 11.8", "LunarLander-v3": "154 +- 79 (v2)",
          "MountainCar-v0": "-100.8 +- 9.9"}
"""RL Baselines3 Zoo's benchmark.md, DQN at the same budgets (single runs)."""
FLOORS = {"CartPole-v1": ">= 475 on 4 of 5 seeds", "Acrobot-v1": ">= -80", "LunarLander-v3": ">= 154",
          "MountainCar-v0": ">= -115"}
"""Issue 9's floors: mean over 5 fresh seeds, 100 greedy episodes each."""
EVAL_SEED = 123_456
"""Seed of the judging evaluation env (neither a training env nor a learning-curve evaluation env)."""


def main() -> None:
    """Train and judge each chosen preset; print one block per env and a table at the end."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default=",".join(load_presets()), help="comma-separated env ids (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds per env (default: 5)")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed (default: 100)")
    parser.add_argument("--timesteps", type=int, default=None,
                        help="training steps (default: each preset's budget; other values do not compare with RL Zoo)")
    args = parser.parse_args()
    presets = load_presets()
    rows = []
    for env_id in args.envs.split(","):
        preset = presets[env_id]
        config = preset.base_config(timesteps=args.timesteps)
        start = time.perf_counter()
        results = train_seeds(config, retrain_seeds(args.seeds))
        returns = [Agent.from_result(result).evaluate(args.episodes, seed=EVAL_SEED).mean for result in results]
        wall = time.perf_counter() - start
        spread = statistics.stdev(returns) if len(returns) > 1 else 0.0
        print(f"{env_id} @{config.total_timesteps} ({preset.source}): {statistics.mean(returns):.1f} +- {spread:.1f} "
              f"over {len(returns)} seeds ({', '.join(f'{r:.1f}' for r in returns)}), {wall:.0f}s", flush=True)
        rows.append((env_id, config.total_timesteps, statistics.mean(returns), spread, wall))
    print("\n| env | steps | dqn-tune preset, mean +- std over seeds | floor | RL Zoo | wall |")
    print("|---|---|---|---|---|---|")
    for env_id, steps, mean, spread, wall in rows:
        print(f"| {env_id} | {steps} | {mean:.1f} +- {spread:.1f} | {FLOORS.get(env_id, '')} | "
              f"{RL_ZOO.get(env_id, '')} | {wall:.0f}s |")


if __name__ == "__main__":
    main()
