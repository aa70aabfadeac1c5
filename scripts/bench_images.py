"""Benchmark dqn-tune on image observations: against Stable-Baselines3's DQN on MinAtar Breakout, and K seeds batched.

All figures use process CPU time (`time.process_time`) and one torch thread. Each repeat runs every
measurement once, alternating which goes first; the script prints per-repeat figures and medians.

- Default: env steps per CPU-second of `dqn_tune.train` and of SB3's `DQN.learn` on MinAtar/Breakout-v1
  at MinAtar's reference DQN configuration (`reference_config`: its network, batch 32, replay 100k,
  target every 1,000 steps, one update per step, centered RMSprop at 2.5e-4, Huber loss, no gradient
  clipping, plain DQN), equal in both, with the same network in SB3 as a custom features extractor
  (`sb3_extractor`: one 3x3 convolution of 16 channels over the C x 10 x 10 grid; SB3's Q head adds
  the 128 units and the output layer). Evaluations are off in both: this measures training.
- `--seeds 4`: K sequential `train` runs against one `train_seeds` of K seeds, same config, and the
  CPU-time ratio batched / sequential.

Needs the `bench` and `minatar` extras. Usage:
  python scripts/bench_images.py [--repeats 5] [--steps 30000]
  python scripts/bench_images.py --seeds 4 [--repeats 5] [--steps 30000]
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial

import gymnasium as gym
import torch
from bench_trainer import cpu_seconds, sb3_arguments  # scripts/ is the script's own directory on sys.path
from torch import nn

from dqn_tune import DQNConfig, train, train_seeds
from dqn_tune.dqn.optimizers import RMSPROP_SETTINGS
from dqn_tune.dqn.registration import register_namespace
from dqn_tune.tuning.reference import REFERENCE_LEARNING_STARTS, minatar_reference

ENV_ID = "MinAtar/Breakout-v1"


def reference_config(steps: int) -> DQNConfig:
    """MinAtar's reference configuration at `steps`, without evaluations (a benchmark of training alone)."""
    return minatar_reference(ENV_ID, steps).replace(eval_freq=0, eval_episodes=1, keep_best=False)


def sb3_extractor() -> type:
    """MinAtar's convolution as an SB3 features extractor: bool H x W x C grids -> 16 x 8 x 8 features, flat."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class MinAtarConv(BaseFeaturesExtractor):
        """One 3x3 convolution of 16 channels, stride 1, and a ReLU, over channels-first grids."""

        def __init__(self, observation_space: gym.spaces.Box) -> None:
            height, width, channels = observation_space.shape
            super().__init__(observation_space, features_dim=16 * (height - 2) * (width - 2))
            self.conv = nn.Conv2d(channels, 16, kernel_size=3, stride=1)

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            # SB3 casts bool grids to float without scaling (they are not uint8 images) and keeps H x W x C
            return torch.relu(self.conv(observations.permute(0, 3, 1, 2))).flatten(1)

    return MinAtarConv


def alternate(names: list[str], repeat: int) -> list[str]:
    """The order of one repeat's runs: as given on even repeats, reversed on odd ones."""
    return names[::-1] if repeat % 2 else names


def run_sequential(config: DQNConfig, seeds: list[int]) -> float:
    """CPU seconds of one `train` run per seed, one after the other."""
    return cpu_seconds(lambda: [train(config, seed=seed) for seed in seeds])


def run_batched(config: DQNConfig, seeds: list[int]) -> float:
    """CPU seconds of one `train_seeds` run of all the seeds."""
    return cpu_seconds(lambda: train_seeds(config, seeds))


def run_ours(config: DQNConfig, seed: int) -> float:
    """CPU seconds of one `train` run."""
    return cpu_seconds(lambda: train(config, seed=seed))


def run_sb3(config: DQNConfig, seed: int) -> float:
    """CPU seconds of building and training SB3's DQN with the same hyperparameters, network and optimizer."""
    try:
        from stable_baselines3 import DQN
    except ImportError:
        raise SystemExit("bench_images.py compares against Stable-Baselines3: pip install -e '.[bench]'") from None
    register_namespace(ENV_ID)
    policy_kwargs = {
        "features_extractor_class": sb3_extractor(),
        "net_arch": [128],
        "normalize_images": False,
        "optimizer_class": torch.optim.RMSprop,
        "optimizer_kwargs": dict(RMSPROP_SETTINGS),
    }

    def run() -> None:
        model = DQN("MlpPolicy", ENV_ID, policy_kwargs=policy_kwargs, seed=seed, **sb3_arguments(config))
        model.learn(total_timesteps=config.total_timesteps)

    return cpu_seconds(run)


def bench_sb3(steps: int, repeats: int) -> None:
    """Alternating pairs of our `train` and SB3's DQN; per-repeat and median env steps per CPU-second."""
    config = reference_config(steps)
    warmup = reference_config(REFERENCE_LEARNING_STARTS + 1_000)  # lazy imports, kernel initialisation
    run_ours(warmup, seed=0)
    run_sb3(warmup, seed=0)
    print(f"{ENV_ID}, {steps} steps, MinAtar's reference DQN config, 1 torch thread, process CPU time")
    print(f"{'repeat':>6} {'ours st/CPU-s':>14} {'SB3 st/CPU-s':>13} {'ratio':>6}")
    rates: list[tuple[float, float]] = []
    for repeat in range(repeats):
        runs = {"ours": partial(run_ours, config, repeat), "sb3": partial(run_sb3, config, repeat)}
        seconds = {name: runs[name]() for name in alternate(list(runs), repeat)}
        rates.append((steps / seconds["ours"], steps / seconds["sb3"]))
        ours, sb3 = rates[-1]
        print(f"{repeat:>6} {ours:>14.0f} {sb3:>13.0f} {ours / sb3:>6.2f}", flush=True)
    ours, sb3 = (statistics.median(rate[i] for rate in rates) for i in (0, 1))
    ratio = statistics.median(o / s for o, s in rates)
    print(f"medians: ours {ours:.0f} vs SB3 {sb3:.0f} env steps per CPU-second; median ratio {ratio:.2f}x (floor 1.5x)")


def bench_seeds(members: int, steps: int, repeats: int) -> None:
    """`members` sequential `train` runs against one `train_seeds` of as many seeds; CPU-time ratios and median."""
    config = reference_config(steps)
    warmup = reference_config(REFERENCE_LEARNING_STARTS + 1_000)
    train(warmup, seed=0)
    train_seeds(warmup, list(range(members)))
    print(f"{ENV_ID}, {steps} steps per member, K={members}, 1 torch thread, process CPU time")
    print(f"{'repeat':>6} {'sequential s':>13} {'batched s':>10} {'ratio':>6}")
    ratios = []
    for repeat in range(repeats):
        seeds = list(range(100 * repeat, 100 * repeat + members))
        runs = {"sequential": partial(run_sequential, config, seeds), "batched": partial(run_batched, config, seeds)}
        seconds = {name: runs[name]() for name in alternate(list(runs), repeat)}
        ratios.append(seconds["batched"] / seconds["sequential"])
        print(f"{repeat:>6} {seconds['sequential']:>13.1f} {seconds['batched']:>10.1f} {ratios[-1]:>6.2f}", flush=True)
    print(f"median ratio batched / sequential: {statistics.median(ratios):.2f} (floor 0.65)")


def main() -> None:
    """Parse the flags and run one comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats (default: 5)")
    parser.add_argument("--steps", type=int, default=30_000, help="env steps per run (default: 30000)")
    parser.add_argument(
        "--seeds", type=int, default=0, metavar="K", help="instead: K sequential runs against train_seeds of K"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.seeds:
        bench_seeds(args.seeds, args.steps, args.repeats)
    else:
        bench_sb3(args.steps, args.repeats)


if __name__ == "__main__":
    main()
