"""MinAtar presets against MinAtar's reference DQN configuration, on the same fresh seeds: the README Quality figures.

For one game and one config (`reference`: MinAtar's published DQN configuration, dqn_tune/tuning/reference.py;
`preset`: the game's dqn-tune preset, presets.toml), trains each of N fresh seeds (the retrain range,
never used by a tuning trial or a validation run) at the budget, one run at a time, saves each agent,
and judges it on 100 greedy episodes of an evaluation env no run trained on. A seed whose agent file
exists is not trained again (so an interrupted command resumes where it stopped). `--compare` prints
both configs' returns side by side with the floor (preset mean above the reference's, higher on at
least 4 of 5 seeds) and the goal (1.5x the reference's mean).

Usage:
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --config reference [--timesteps 1000000]
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --config preset
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --compare
Agents and results go to --out-dir (default studies/minatar/): <game>-<config>-<seed>.pt and
<game>-<config>.jsonl (one line per seed: seed, mean and std of the 100 returns, CPU and wall seconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dqn_tune import train
from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.tuning.presets import preset_for
from dqn_tune.tuning.reference import minatar_reference
from dqn_tune.tuning.seeds import retrain_seeds

EVAL_SEED = 123_456
"""Seed of the judging evaluation env, as in scripts/bench_quality.py."""
BUDGET = 1_000_000
"""Env steps per run: MinAtar Breakout at the reference config costs under 40 CPU-minutes per run here
(docs/images.md)."""


def config_for(env_id: str, name: str, timesteps: int) -> DQNConfig:
    """The reference configuration or the env's preset at `timesteps`."""
    if name == "reference":
        return minatar_reference(env_id, timesteps)
    preset = preset_for(env_id)
    if preset is None:
        raise SystemExit(f"{env_id} has no preset in presets.toml yet")
    return preset.base_config(timesteps=timesteps)


def results_path(out_dir: Path, env_id: str, name: str) -> Path:
    return out_dir / f"{env_id.split('/')[-1]}-{name}.jsonl"


def run(env_id: str, name: str, seeds: list[int], timesteps: int, episodes: int, out_dir: Path) -> None:
    """Train and judge each seed not yet done; one JSON line per seed."""
    config = config_for(env_id, name, timesteps)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = results_path(out_dir, env_id, name)
    done = {json.loads(line)["seed"] for line in lines.read_text().splitlines()} if lines.exists() else set()
    print(f"{env_id} {name} @{timesteps}: {json.dumps(config.to_dict())}", flush=True)
    for seed in seeds:
        if seed in done:
            continue
        agent_file = out_dir / f"{env_id.split('/')[-1]}-{name}-{seed}.pt"
        cpu, wall = time.process_time(), time.perf_counter()
        if agent_file.exists():
            agent = load_agent(agent_file)
        else:
            agent = Agent.from_result(train(config, seed=seed))
            save_agent(agent, agent_file)
        train_cpu, train_wall = time.process_time() - cpu, time.perf_counter() - wall
        returns = agent.evaluate(episodes, seed=EVAL_SEED)
        record = {"seed": seed, "mean": returns.mean, "std": returns.std, "episodes": episodes,
                  "train_cpu_s": round(train_cpu, 1), "train_wall_s": round(train_wall, 1)}
        with lines.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


def compare(env_id: str, out_dir: Path) -> None:
    """Both configs' returns per seed, their means, the floor and the goal."""
    rows = {}
    for name in ("reference", "preset"):
        path = results_path(out_dir, env_id, name)
        rows[name] = {r["seed"]: r["mean"] for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}
    seeds = sorted(set(rows["reference"]) & set(rows["preset"]))
    if not seeds:
        raise SystemExit(f"no seed of {env_id} has both a reference and a preset result in {out_dir}")
    print("| seed | reference | preset |\n|---|---|---|")
    for seed in seeds:
        print(f"| {seed} | {rows['reference'][seed]:.2f} | {rows['preset'][seed]:.2f} |")
    reference = statistics.mean(rows["reference"][s] for s in seeds)
    preset = statistics.mean(rows["preset"][s] for s in seeds)
    higher = sum(rows["preset"][s] > rows["reference"][s] for s in seeds)
    print(f"| mean | {reference:.2f} | {preset:.2f} |")
    print(f"preset / reference = {preset / reference:.2f}x (goal 1.5x); preset higher on {higher} of {len(seeds)} seeds; "
          f"floor (mean above and >= 4 of 5 higher): {'met' if preset > reference and higher >= 4 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="a MinAtar id, e.g. MinAtar/Breakout-v1")
    parser.add_argument("--config", choices=["reference", "preset"], help="which config to train and judge")
    parser.add_argument("--compare", action="store_true", help="print both configs' results side by side")
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds (default: 5)")
    parser.add_argument("--timesteps", type=int, default=BUDGET, help=f"env steps per run (default: {BUDGET})")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed (default: 100)")
    parser.add_argument("--out-dir", type=Path, default=Path("studies/minatar"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compare:
        compare(args.env, args.out_dir)
    elif args.config:
        run(args.env, args.config, retrain_seeds(args.seeds), args.timesteps, args.episodes, args.out_dir)
    else:
        parser.error("give --config reference|preset or --compare")


if __name__ == "__main__":
    main()
