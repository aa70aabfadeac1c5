"""Benchmark the DQN trainer: against Stable-Baselines3's DQN, a bare PyTorch update loop, and a matmul.

All figures use process CPU time (`time.process_time`), which is robust on a shared machine, and one
torch thread. Each repeat runs every measurement once, alternating which trainer goes first; the
script prints per-repeat figures and their medians:

- env steps per CPU-second of `dqn_tune.train` and of SB3's `DQN.learn` at equal hyperparameters
  (MLP 128x128, batch 128, train_freq 1, gradient_steps 1, buffer 10,000, CartPole-v1), and their ratio;
- the trainer's CPU time per gradient update against a bare update loop of the same shapes
  (the per-update overhead of everything around the update: env, acting, replay, bookkeeping);
- the bare loop's GFLOP/s against a large single-thread fp32 matmul (the compute ceiling).

Needs the `bench` extra (stable-baselines3). Usage: python scripts/bench_trainer.py [--repeats 3] [--steps 20000]

With `--seeds 1,2,4,8,16` it instead compares, for each K, K sequential `train` runs against one
`train_seeds` of K seeds (the package's default config, evaluations included), alternating which goes
first, and prints the CPU-time ratio batched / sequential and env steps per CPU-second of all members
together (K x steps / CPU time; no SB3 needed): python scripts/bench_trainer.py --seeds 1,2,4,8,16
[--repeats 3] [--steps 20000] [--options '{"n_steps": 3}']

With `--baseline DIR` it compares `train` of this checkout against `train` of another checkout of
dqn-tune at DIR (its own virtualenv DIR/.venv), each run in a subprocess of its own venv's Python,
alternating which goes first; each child times only `train` (process CPU time, after a warm-up run):
python scripts/bench_trainer.py --baseline /path/to/old/checkout [--repeats 5] [--steps 50000]
With `--baseline DIR --seeds K` each child instead times K sequential `train` runs and one `train_seeds` of K,
and the two checkouts' batched / sequential ratios are compared.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from itertools import pairwise
from pathlib import Path

import torch
import torch.nn.functional as F

from dqn_tune import DQNConfig, train, train_seeds
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.observations import ObservationSpec

ENV_ID = "CartPole-v1"
OBS_DIM, N_ACTIONS = 4, 2
CHILD = """
import sys, time, torch
from dqn_tune import DQNConfig, train, train_seeds
torch.set_num_threads(1)
steps, repeat, members = (int(arg) for arg in sys.argv[1:4])
config = DQNConfig(total_timesteps=steps)
warmup = config.replace(total_timesteps=2_000, eval_freq=1_000)
train(warmup, seed=0)  # lazy imports, kernel initialisation


def cpu_seconds(fn):
    start = time.process_time()
    fn()
    return time.process_time() - start


if members == 0:
    print(cpu_seconds(lambda: train(config, seed=repeat)))
else:
    train_seeds(warmup, [0, 1])
    seeds = list(range(100 * repeat, 100 * repeat + members))
    runs = {
        "sequential": lambda: [train(config, seed=seed) for seed in seeds],
        "batched": lambda: train_seeds(config, seeds),
    }
    order = ("sequential", "batched") if repeat % 2 == 0 else ("batched", "sequential")
    seconds = {name: cpu_seconds(runs[name]) for name in order}
    print(seconds["sequential"], seconds["batched"])
"""
"""A child process's benchmark on the default config, public API only (any checkout): CPU seconds of `train`
(members 0), or of `members` sequential `train` runs and one `train_seeds` of them."""


def bench_config(steps: int) -> DQNConfig:
    """The benchmark's hyperparameters; the rest are the package defaults, minus what SB3's DQN lacks."""
    return DQNConfig(
        env_id=ENV_ID,
        total_timesteps=steps,
        hidden_sizes=(128, 128),
        batch_size=128,
        train_freq=1,
        gradient_steps=1,
        buffer_size=10_000,
        learning_starts=1_000,
        double_dqn=False,
        loss="huber",
        keep_best=False,
        eval_freq=0,
        eval_episodes=1,
    )


def cpu_seconds(fn: Callable[[], object]) -> float:
    """Process CPU seconds taken by `fn()`."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def run_ours(config: DQNConfig, seed: int) -> tuple[float, int]:
    """(CPU seconds, gradient updates) of one `train` run (one final greedy episode included)."""
    updates = 0

    def run() -> None:
        nonlocal updates
        updates = train(config, seed=seed).updates

    return cpu_seconds(run), updates


def run_sb3(config: DQNConfig, seed: int) -> float:
    """CPU seconds of building and training SB3's DQN with the same hyperparameters (its default Adam)."""

    try:
        from stable_baselines3 import DQN
    except ImportError:
        raise SystemExit("bench_trainer.py compares against Stable-Baselines3: pip install -e '.[bench]'") from None

    def run() -> None:
        model = DQN(
            "MlpPolicy",
            ENV_ID,
            policy_kwargs={"net_arch": list(config.hidden_sizes)},
            seed=seed,
            **sb3_arguments(config),
        )
        model.learn(total_timesteps=config.total_timesteps)

    return cpu_seconds(run)


def sb3_arguments(config: DQNConfig) -> dict[str, object]:
    """SB3 DQN's arguments for `config`'s hyperparameters (same names, same meaning), on the CPU, quiet."""
    names = (
        "learning_rate",
        "buffer_size",
        "learning_starts",
        "batch_size",
        "tau",
        "gamma",
        "train_freq",
        "gradient_steps",
        "target_update_interval",
        "exploration_fraction",
        "exploration_initial_eps",
        "exploration_final_eps",
    )
    # SB3 always clips: an infinite norm leaves the gradients as they are
    clip = float("inf") if config.max_grad_norm is None else config.max_grad_norm
    return {**{name: getattr(config, name) for name in names}, "max_grad_norm": clip, "device": "cpu", "verbose": 0}


def update_flops(config: DQNConfig) -> float:
    """FLOPs of one update: online forward, target forward, backward (weight grads and hidden input grads)."""
    widths = (OBS_DIM, *config.hidden_sizes, N_ACTIONS)
    layer_flops = [2 * config.batch_size * fan_in * fan_out for fan_in, fan_out in pairwise(widths)]
    forward = sum(layer_flops)
    backward = 2 * forward - layer_flops[0]  # no gradient with respect to the observations
    return 2 * forward + backward


def bare_update_seconds(config: DQNConfig, updates: int) -> float:
    """CPU seconds per update of a textbook PyTorch DQN update on one fixed batch (no env, no replay)."""
    spec = ObservationSpec.flat(OBS_DIM)
    q_network = make_q_network(config, spec, N_ACTIONS, seeds=[0])
    target_network = make_q_network(config, spec, N_ACTIONS, seeds=[0])
    optimizer = torch.optim.Adam(q_network.parameters(), lr=config.learning_rate, fused=True)
    n = config.batch_size
    obs, next_obs = torch.randn(1, n, OBS_DIM), torch.randn(1, n, OBS_DIM)
    actions, rewards, terminated = torch.randint(N_ACTIONS, (1, n, 1)), torch.ones(1, n), torch.zeros(1, n)

    def loop() -> None:
        for _ in range(updates):
            with torch.no_grad():
                target = rewards + config.gamma * (1.0 - terminated) * target_network(next_obs).max(dim=2).values
            loss = F.smooth_l1_loss(q_network(obs).gather(2, actions).squeeze(2), target)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(q_network.parameters(), config.max_grad_norm)
            optimizer.step()

    return cpu_seconds(loop) / updates


def matmul_gflops(size: int, repeats: int = 5) -> float:
    """Best single-thread fp32 GFLOP/s of a size x size matmul."""
    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    torch.mm(a, b, out=out)
    return max(2 * size**3 / cpu_seconds(lambda: torch.mm(a, b, out=out)) for _ in range(repeats)) / 1e9


def main() -> None:
    """Run the alternating benchmark and print per-repeat figures and medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats (default: 3)")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run (default: 20000)")
    parser.add_argument("--bare-updates", type=int, default=3_000, help="updates of the bare loop (default: 3000)")
    parser.add_argument("--matmul-size", type=int, default=2048, help="matrix size of the ceiling (default: 2048)")
    parser.add_argument(
        "--seeds",
        type=lambda text: [int(k) for k in text.split(",")],
        default=None,
        help="comma-separated group sizes K: compare K sequential runs with train_seeds of K instead",
    )
    parser.add_argument(
        "--learning",
        type=int,
        default=0,
        metavar="N",
        help="instead: final returns of N seeds batched vs N sequential runs, with tests of equality",
    )
    parser.add_argument(
        "--options",
        type=json.loads,
        default={},
        help='with --seeds: DQNConfig fields as JSON, e.g. \'{"n_steps": 3, "dueling": true}\'',
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead: train's CPU time here against the dqn-tune checkout at DIR (DIR/.venv)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.baseline:
        if args.seeds and len(args.seeds) > 1:
            parser.error(f"--baseline takes one group size in --seeds, not {args.seeds}")
        bench_baseline(args.baseline, args.steps, args.repeats, args.seeds[0] if args.seeds else 0)
        return
    if args.seeds:
        bench_seeds(args.seeds, args.steps, args.repeats, args.options)
        return
    if args.learning:
        compare_learning(args.learning, args.steps)
        return
    config = bench_config(args.steps)
    flops = update_flops(config)
    warmup = bench_config(2_000)  # first calls pay for lazy imports and kernel initialisation
    run_ours(warmup, seed=0)
    run_sb3(warmup, seed=0)
    bare_update_seconds(config, 100)
    rows: list[dict[str, float]] = []
    print(f"{ENV_ID}, {args.steps} steps, MLP 128x128, batch 128, train_freq 1, buffer 10,000, 1 torch thread")
    print(
        f"{'repeat':>6} {'ours st/CPU-s':>14} {'SB3 st/CPU-s':>13} {'ratio':>6} {'bare upd/s':>11} "
        f"{'ours upd/s':>11} {'overhead':>9} {'bare GFLOP/s':>13} {'matmul GFLOP/s':>15}"
    )
    for repeat in range(args.repeats):
        if repeat % 2 == 0:
            ours_s, updates = run_ours(config, seed=repeat)
            sb3_s = run_sb3(config, seed=repeat)
        else:
            sb3_s = run_sb3(config, seed=repeat)
            ours_s, updates = run_ours(config, seed=repeat)
        bare_s = bare_update_seconds(config, args.bare_updates)
        row = {
            "ours": args.steps / ours_s,
            "sb3": args.steps / sb3_s,
            "bare_ups": 1 / bare_s,
            "ours_ups": updates / ours_s,
            "bare_gflops": flops / bare_s / 1e9,
            "matmul_gflops": matmul_gflops(args.matmul_size),
        }
        row["ratio"] = row["ours"] / row["sb3"]
        row["overhead"] = row["bare_ups"] / row["ours_ups"] - 1
        rows.append(row)
        print(_format(str(repeat), row), flush=True)
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    print(_format("median", median))
    print(
        f"\nmedians: ours {median['ours']:.0f} vs SB3 {median['sb3']:.0f} env steps per CPU-second, "
        f"ratio {median['ratio']:.2f}x (floor 1.6x)"
    )
    print(f"per-update overhead over the bare loop: {median['overhead']:.1%} (floor 25%)")
    ceiling_share = median["bare_gflops"] / median["matmul_gflops"]
    print(
        f"bare update loop {median['bare_gflops']:.1f} GFLOP/s = {ceiling_share:.0%} "
        f"of the {args.matmul_size}x{args.matmul_size} matmul's {median['matmul_gflops']:.1f} GFLOP/s "
        f"({flops / 1e6:.1f} MFLOP per update)"
    )


def bench_baseline(baseline: Path, steps: int, repeats: int, members: int) -> None:
    """This checkout against the one at `baseline`, alternating which goes first: CPU seconds of `train` and their
    ratio, or with `members` > 0 each checkout's batched / sequential ratio at K = `members`."""
    pythons = {"here": sys.executable, "baseline": str(baseline / ".venv" / "bin" / "python")}
    roots = {"here": str(Path(__file__).resolve().parents[1]), "baseline": str(baseline)}
    what = f"K={members}: batched / sequential CPU time" if members else "CPU seconds of train"
    print(f"{ENV_ID}, default config, {steps} steps, 1 torch thread, {what} in each child")
    print(f"here: {roots['here']}  baseline: {roots['baseline']}")
    print(f"{'repeat':>6} {'here':>8} {'baseline':>9} {'here / baseline':>16}")
    figures: dict[str, list[float]] = {"here": [], "baseline": []}
    for repeat in range(repeats):
        order = ("here", "baseline") if repeat % 2 == 0 else ("baseline", "here")
        for name in order:
            output = subprocess.run(
                [pythons[name], "-c", CHILD, str(steps), str(repeat), str(members)],
                cwd=roots[name],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            words = output.split()  # "<train s>", or "<sequential s> <batched s>"
            figures[name].append(float(words[-1]) / float(words[-2]) if members else float(words[-1]))
        here, base = figures["here"][-1], figures["baseline"][-1]
        print(f"{repeat:6d} {here:8.3f} {base:9.3f} {here / base:16.3f}", flush=True)
    here, base = statistics.median(figures["here"]), statistics.median(figures["baseline"])
    paired = statistics.median(h / b for h, b in zip(figures["here"], figures["baseline"], strict=True))
    print(f"{'median':>6} {here:8.3f} {base:9.3f} {here / base:16.3f}   (median of per-repeat ratios {paired:.3f})")


def train_each(config: DQNConfig, seeds: list[int]) -> None:
    """One `train` run per seed, one after another."""
    for seed in seeds:
        train(config, seed=seed)


def bench_seeds(group_sizes: list[int], steps: int, repeats: int, options: dict[str, object]) -> None:
    """K sequential `train` runs against one `train_seeds` of K, per K: CPU-time ratio, steps/CPU-s of all members."""
    config = DQNConfig(total_timesteps=steps).replace(**options)
    warmup = config.replace(total_timesteps=2_000, eval_freq=1_000)
    train(warmup, seed=0)
    train_seeds(warmup, [0, 1])
    print(
        f"{ENV_ID}, default config{' with ' + json.dumps(options) if options else ''}, {steps} steps per member, "
        "1 torch thread, process CPU time"
    )
    print(
        f"{'K':>3} {'repeat':>6} {'sequential s':>13} {'batched s':>10} {'ratio':>6} "
        f"{'seq st/CPU-s':>13} {'batched st/CPU-s, all members':>30}"
    )
    for k in group_sizes:
        ratios, sequential_rates, batched_rates = [], [], []
        for repeat in range(repeats):
            seeds = list(range(100 * repeat, 100 * repeat + k))
            sequential = partial(train_each, config, seeds)
            batched = partial(train_seeds, config, seeds)
            if repeat % 2 == 0:
                sequential_s, batched_s = cpu_seconds(sequential), cpu_seconds(batched)
            else:
                batched_s, sequential_s = cpu_seconds(batched), cpu_seconds(sequential)
            ratios.append(batched_s / sequential_s)
            sequential_rates.append(k * steps / sequential_s)
            batched_rates.append(k * steps / batched_s)
            print(
                f"{k:3d} {repeat:6d} {sequential_s:13.1f} {batched_s:10.1f} {ratios[-1]:6.3f} "
                f"{sequential_rates[-1]:13.0f} {batched_rates[-1]:30.0f}",
                flush=True,
            )
        print(
            f"{k:3d} {'median':>6} {'':>13} {'':>10} {statistics.median(ratios):6.3f} "
            f"{statistics.median(sequential_rates):13.0f} {statistics.median(batched_rates):30.0f}",
            flush=True,
        )


def compare_learning(n_seeds: int, steps: int) -> None:
    """Final greedy returns of `n_seeds` default-config runs, batched vs sequential, and whether they differ."""
    try:
        import scipy.stats
    except ImportError:
        raise SystemExit("--learning tests the difference with scipy: pip install scipy") from None
    config = DQNConfig(total_timesteps=steps)
    seeds = list(range(1_000, 1_000 + n_seeds))
    batched = [result.mean_return for result in train_seeds(config, seeds)]
    print(f"batched    ({n_seeds} seeds, {steps} steps): {batched}", flush=True)
    sequential = [train(config, seed=seed).mean_return for seed in seeds]
    print(f"sequential ({n_seeds} seeds, {steps} steps): {sequential}")
    for name, returns in (("batched", batched), ("sequential", sequential)):
        print(f"{name:>10}: mean {statistics.mean(returns):.1f}, IQM {scipy.stats.trim_mean(returns, 0.25):.1f}")
    print(
        f"Mann-Whitney U p = {scipy.stats.mannwhitneyu(batched, sequential).pvalue:.3f}, "
        f"Welch t-test p = {scipy.stats.ttest_ind(batched, sequential, equal_var=False).pvalue:.3f}"
    )


def _format(label: str, row: dict[str, float]) -> str:
    return (
        f"{label:>6} {row['ours']:14.0f} {row['sb3']:13.0f} {row['ratio']:6.2f} {row['bare_ups']:11.0f} "
        f"{row['ours_ups']:11.0f} {row['overhead']:9.1%} {row['bare_gflops']:13.1f} {row['matmul_gflops']:15.1f}"
    )


if __name__ == "__main__":
    main()
