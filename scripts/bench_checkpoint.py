"""Benchmark trial checkpoints: their CPU cost, the work a retry saves, and their size.

For each env, a tuning trial of its preset (the preset's config and trial budget, `TRIAL_SEEDS` seeds as
one group, trial 0's seeds of study seed 0) runs through the real path, `run_config` with the study's
artifact store in a temporary SQLite study, once with checkpoints every `--every` env steps and once
without, alternating which goes first. Figures use process CPU time and one torch thread:

- overhead: CPU seconds inside checkpointing (capture, torch.save, the store's write, removing the
  previous one) over the trial's CPU seconds without them, as run here and per interval (one checkpoint's
  cost over the CPU time of `--every` steps: what a full-budget trial pays); and the end-to-end
  difference of the two runs (noisier);
- work saved by a retry of a trial killed at 30/60/90% of its budget: the latest checkpoint at or before
  that step, in env steps and in training seconds (the checkpoint's own record of its run's loop time);
- checkpoint size per member (file size / members), and how full the replay buffer was.

Usage: python scripts/bench_checkpoint.py [--envs CartPole-v1,LunarLander-v3] [--repeats 2] [--every N]
[--timesteps ENV=N ...] (e.g. --timesteps LunarLander-v3=30000: a reduced budget, said in the output)
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch

import dqn_tune.dqn.trainer as trainer
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_queue import ask_trial
from dqn_tune.tuning.artifacts import make_artifact_store
from dqn_tune.tuning.checkpoints import TrialCheckpoints
from dqn_tune.tuning.defaults import CHECKPOINT_EVERY, TRIAL_SEEDS
from dqn_tune.tuning.objective import run_config, trial_base_config
from dqn_tune.tuning.seeds import trial_seeds

KILLED_AT = (0.3, 0.6, 0.9)


@dataclass
class Saves:
    """What the timed checkpoint saves of one run recorded."""

    cpu_s: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)
    bytes: list[int] = field(default_factory=list)
    buffer_fill: list[float] = field(default_factory=list)


def timed_saves(saves: Saves) -> Any:
    """trainer.save_checkpoint, timed: the CPU time of the whole save (the store's write and removal included)."""
    original = trainer.save_checkpoint

    def save_checkpoint(state: Any, save: Any, *, train_seconds: float) -> None:
        def measured(path: Path, step: int) -> None:
            saves.bytes.append(path.stat().st_size)
            save(path, step)

        start = time.process_time()
        original(state, measured, train_seconds=train_seconds)
        saves.cpu_s.append(time.process_time() - start)
        saves.steps.append(state.step)
        saves.train_seconds.append(train_seconds)
        saves.buffer_fill.append(len(state.replay) / state.replay.capacity)

    return save_checkpoint


def trial_cpu(config: DQNConfig, seeds: list[int], every: int | None, saves: Saves) -> float:
    """CPU seconds of one trial through `run_config` in a fresh SQLite study (checkpoints every `every` steps)."""
    with tempfile.TemporaryDirectory(prefix="bench_checkpoint_") as directory:
        storage = open_storage(f"sqlite:///{directory}/study.db", heartbeat=False)
        study = optuna.create_study(study_name="bench", storage=storage, direction="maximize")
        checkpoints = (
            None if every is None else TrialCheckpoints(make_artifact_store(None, Path(directory) / "artifacts"), every)
        )
        trial = ask_trial(study)
        trainer.save_checkpoint = timed_saves(saves)
        start = time.process_time()
        run_config(trial, config, seeds, checkpoints=checkpoints)
        cpu = time.process_time() - start
        storage.close()
        return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="CartPole-v1,LunarLander-v3")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--every", type=int, default=CHECKPOINT_EVERY)
    parser.add_argument(
        "--timesteps",
        action="append",
        default=[],
        metavar="ENV=N",
        help="a budget other than the preset's trial budget for ENV",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budgets = dict(item.split("=", 1) for item in args.timesteps)
    print(
        f"load average {os.getloadavg()[0]:.2f}; checkpoints every {args.every} env steps; "
        f"{TRIAL_SEEDS} seeds per trial; process CPU time, one torch thread",
        flush=True,
    )
    for env_id in args.envs.split(","):
        config = trial_base_config(env_id, timesteps=int(budgets[env_id]) if env_id in budgets else None)
        seeds = trial_seeds(0, 0, TRIAL_SEEDS)
        reduced = " (reduced from the preset's trial budget)" if env_id in budgets else " (the preset's trial budget)"
        print(
            f"\n{env_id}: {config.total_timesteps} steps{reduced}, buffer {config.buffer_size}, "
            f"hidden {list(config.hidden_sizes)}",
            flush=True,
        )
        warm_up = config.replace(
            total_timesteps=2 * config.learning_starts + 200, eval_freq=config.learning_starts + 100
        )
        trial_cpu(warm_up, seeds, warm_up.learning_starts, Saves())  # lazy imports and kernel initialisation
        overheads, per_interval, end_to_end = [], [], []
        for repeat in range(args.repeats):
            saves, unused = Saves(), Saves()
            order = [("with", args.every), ("without", None)]
            cpu = {}
            for name, every in order if repeat % 2 == 0 else order[::-1]:
                cpu[name] = trial_cpu(config, seeds, every, saves if every is not None else unused)
            spent = sum(saves.cpu_s)
            trial_without_saves = cpu["with"] - spent
            overheads.append(100 * spent / trial_without_saves)
            one = statistics.mean(saves.cpu_s)
            per_interval.append(100 * one / (trial_without_saves * args.every / config.total_timesteps))
            end_to_end.append(100 * (cpu["with"] - cpu["without"]) / cpu["without"])
            print(
                f"  repeat {repeat + 1}: trial {cpu['with']:.1f} CPU-s with {len(saves.cpu_s)} checkpoints "
                f"({', '.join(f'{s * 1000:.0f}' for s in saves.cpu_s)} ms each), {cpu['without']:.1f} CPU-s "
                f"without; overhead {overheads[-1]:.2f}% as run, {per_interval[-1]:.2f}% per interval, "
                f"end to end {end_to_end[-1]:+.2f}%",
                flush=True,
            )
            print(
                "    sizes per member: "
                + ", ".join(
                    f"step {step}: {size / len(seeds) / 1e6:.2f} MB (buffer {fill:.0%} full)"
                    for step, size, fill in zip(saves.steps, saves.bytes, saves.buffer_fill, strict=True)
                ),
                flush=True,
            )
            loop_s = saves.train_seconds[-1] * config.total_timesteps / saves.steps[-1] if saves.steps else 0.0
            for fraction in KILLED_AT:
                killed = int(fraction * config.total_timesteps)
                kept = [i for i, step in enumerate(saves.steps) if step <= killed]
                steps, seconds = (saves.steps[kept[-1]], saves.train_seconds[kept[-1]]) if kept else (0, 0.0)
                print(
                    f"    killed at {fraction:.0%} (step {killed}): the retry resumes from step {steps}, saving "
                    f"{steps / config.total_timesteps:.0%} of the budget ({steps * len(seeds)} env steps, "
                    f"{seconds:.1f} s of its ~{loop_s:.0f} s training loop)",
                    flush=True,
                )
        print(
            f"  median over {args.repeats}: overhead {statistics.median(overheads):.2f}% as run, "
            f"{statistics.median(per_interval):.2f}% per interval, end to end "
            f"{statistics.median(end_to_end):+.2f}%",
            flush=True,
        )


if __name__ == "__main__":
    main()
