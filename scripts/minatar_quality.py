"""MinAtar presets against MinAtar's reference DQN configuration, on the same fresh seeds: the README Quality figures.

For one game and one config (`reference`: MinAtar's published DQN configuration, dqn_tune/tuning/reference.py;
`preset`: the game's dqn-tune preset, presets.toml; or a TOML config file, e.g. a study's pick from
`dqn-tune best --out FILE.toml`), trains each of N fresh seeds (the retrain range, never used by a
tuning trial or a validation run) at the budget as one batched run (`train_seeds`: member k is exactly
`train(config, seed=k)`), saves each agent, and judges it on 100 greedy episodes of an evaluation env no
run trained on. A seed whose results are recorded is skipped, a saved agent is judged without training
again, and the batched run saves a checkpoint every 50,000 steps (`--checkpoint-every`;
`<game>-<name>-checkpoint.pt`, or `<game>-<name>-partIofN-checkpoint.pt` for a part), so an interrupted command
resumes where it stopped, mid-run too (a 1M-step group takes hours here). `--part I/N` trains every N-th seed
from the I-th as its own batched run, so N commands can share the seeds across N cores (each seed's result is the
same either way).
`--compare A B` prints two configs' returns side by side with the floor (B's mean above A's, higher on at
least 4 of 5 seeds) and the goal (1.5x A's mean).

Usage:
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --config reference [--timesteps 100000]
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --config best.toml
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --compare reference best
  python scripts/minatar_quality.py --env MinAtar/Breakout-v1 --config reference --progress   (a run under way)
Agents and results go to --out-dir (default studies/minatar/): <game>-<name>-<seed>.pt and
<game>-<name>.jsonl (<name>: reference, preset or the file's stem; one line per seed: seed, mean and
std of the 100 returns, CPU and wall seconds of training: the batched run's, shared equally by its seeds, and
how many seeds it trained).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dqn_tune import train_seeds
from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.checkpoint import Checkpointing, read_checkpoint
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import CheckpointError
from dqn_tune.output_paths import replacing
from dqn_tune.results.export import read_config_file
from dqn_tune.tuning.presets import preset_for
from dqn_tune.tuning.reference import minatar_reference
from dqn_tune.tuning.seeds import retrain_seeds

EVAL_SEED = 123_456
"""Seed of the judging evaluation env, as in scripts/bench_quality.py."""
BUDGET = 1_000_000
"""Env steps per run by the issue's rule (1M if a run costs under 40 CPU-minutes here, else the largest budget
that does): docs/images.md has what a run of the reference configuration costs here."""


def config_for(env_id: str, source: str, timesteps: int) -> DQNConfig:
    """The reference configuration, the env's preset or the config of a TOML file, at `timesteps`."""
    if source == "reference":
        return minatar_reference(env_id, timesteps)
    if source == "preset":
        preset = preset_for(env_id)
        if preset is None:
            raise SystemExit(f"{env_id} has no preset in presets.toml yet")
        return preset.base_config(timesteps=timesteps)
    config = read_config_file(source)
    return config.replace(env_id=env_id, total_timesteps=timesteps, eval_freq=max(1, timesteps // 10))


def file_stem(out_dir: Path, env_id: str, name: str) -> str:
    """The start of every file of one game and config: `<out_dir>/<game>-<name>`."""
    return str(out_dir / f"{env_id.split('/')[-1]}-{name}")


def results_path(out_dir: Path, env_id: str, name: str) -> Path:
    return Path(f"{file_stem(out_dir, env_id, name)}.jsonl")


def agent_path(out_dir: Path, env_id: str, name: str, seed: int) -> Path:
    """Where the agent trained on `seed` is saved."""
    return Path(f"{file_stem(out_dir, env_id, name)}-{seed}.pt")


def checkpoint_path(out_dir: Path, env_id: str, name: str, part: Part) -> Path:
    """Where the unfinished batched run of a game, config and part keeps its checkpoint (its CPU seconds beside
    it)."""
    suffix = "" if part.of == 1 else f"-part{part.index}of{part.of}"
    return Path(f"{file_stem(out_dir, env_id, name)}{suffix}-checkpoint.pt")


@dataclass(frozen=True)
class Part:
    """`--part I/N`: the I-th of N shares of the seeds (every N-th seed from the I-th)."""

    index: int = 1
    of: int = 1

    @classmethod
    def parse(cls, text: str) -> Part:
        """'2/3' -> Part(2, 3); anything else is a usage error naming what is accepted."""
        index, _, of = text.partition("/")
        if not (index.isdigit() and of.isdigit() and 1 <= int(index) <= int(of)):
            raise argparse.ArgumentTypeError(f"{text!r} is not I/N with 1 <= I <= N, e.g. 1/2")
        return cls(int(index), int(of))

    def of_seeds(self, seeds: list[int]) -> list[int]:
        """This part's seeds."""
        return seeds[self.index - 1 :: self.of]


def seeds_to_do(out_dir: Path, env_id: str, name: str, seeds: list[int]) -> tuple[list[int], list[int]]:
    """The seeds without recorded results, and those of them without a saved agent (the batched run's)."""
    lines = results_path(out_dir, env_id, name)
    done = {json.loads(line)["seed"] for line in lines.read_text().splitlines()} if lines.exists() else set()
    todo = [seed for seed in seeds if seed not in done]
    return todo, [seed for seed in todo if not agent_path(out_dir, env_id, name, seed).exists()]


def run(
    env_id: str,
    source: str,
    part: Part,
    seeds: list[int],
    timesteps: int,
    episodes: int,
    out_dir: Path,
    checkpoint_every: int,
) -> None:
    """Train and judge each seed of `part` not yet done; one JSON line per seed."""
    seeds = part.of_seeds(seeds)
    config, name = config_for(env_id, source, timesteps), Path(source).stem
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = results_path(out_dir, env_id, name)
    print(f"{env_id} {name} @{timesteps}: {json.dumps(config.to_dict())}", flush=True)
    todo, untrained = seeds_to_do(out_dir, env_id, name, seeds)
    files = {seed: agent_path(out_dir, env_id, name, seed) for seed in todo}
    train_cpu = train_wall = 0.0
    if untrained:
        checkpoints = GroupCheckpoints(
            checkpoint_path(out_dir, env_id, name, part), config, untrained, checkpoint_every
        )
        results = train_seeds(config, untrained, checkpoints=checkpoints.settings)
        train_cpu, train_wall = checkpoints.cpu_seconds(), results[0].wall_time_s  # both over every resumed part
        for seed, result in zip(untrained, results, strict=True):
            if result.diverged is not None:
                raise result.diverged
            save_agent(Agent.from_result(result), files[seed])
        checkpoints.remove()
    for seed in todo:
        returns = load_agent(files[seed]).evaluate(episodes, seed=EVAL_SEED)
        trained_here = seed in untrained
        record = {
            "seed": seed,
            "mean": returns.mean,
            "std": returns.std,
            "episodes": episodes,
            "train_cpu_s": round(train_cpu / len(untrained), 1) if trained_here else None,
            "train_wall_s": round(train_wall / len(untrained), 1) if trained_here else None,
            "trained_with": len(untrained) if trained_here else None,
        }
        with lines.open("a") as out:
            out.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)


class GroupCheckpoints:
    """One batched run's checkpoint file and, beside it, the CPU seconds the run had spent up to it."""

    def __init__(self, path: Path, config: DQNConfig, seeds: list[int], every: int) -> None:
        self.path, self.cpu_path = path, path.with_suffix(".cpu")
        resume = None
        if path.exists():
            try:
                resume = read_checkpoint(path, config=config.to_dict(), seeds=seeds)
            except CheckpointError as exc:
                raise SystemExit(f"{exc}: delete it to train seeds {seeds} from step 0") from None
            print(f"resuming the run of seeds {seeds} from step {resume.step} ({path})", flush=True)
        # no seconds file beside a checkpoint: killed between the two writes of the first save (undercounted)
        self.cpu_before = float(self.cpu_path.read_text()) if resume is not None and self.cpu_path.exists() else 0.0
        self.start = time.process_time()
        self.settings = Checkpointing(every, self.save, resume)

    def cpu_seconds(self) -> float:
        """Process CPU seconds of the run so far, the parts before its checkpoint included."""
        return self.cpu_before + time.process_time() - self.start

    def save(self, file: Path, step: int) -> None:
        """Keep the checkpoint written at `step`, then the CPU seconds up to it (killed between the two, the
        seconds file lags by one interval: CPU time is undercounted, never the checkpoint lost)."""
        with replacing(self.path) as temporary:
            shutil.copyfile(file, temporary)
        seconds = self.cpu_seconds()
        with replacing(self.cpu_path) as temporary:
            temporary.write_text(f"{seconds:.1f}\n")
        print(f"checkpoint at step {step} ({seconds:.0f} CPU-s so far)", flush=True)

    def remove(self) -> None:
        """The run finished: its checkpoint is no longer needed."""
        self.path.unlink(missing_ok=True)
        self.cpu_path.unlink(missing_ok=True)


def progress(env_id: str, source: str, part: Part, seeds: list[int], timesteps: int, out_dir: Path) -> None:
    """Where an unfinished batched run stands: its last checkpoint's step and CPU seconds, each seed's curve."""
    config, name = config_for(env_id, source, timesteps), Path(source).stem
    _, untrained = seeds_to_do(out_dir, env_id, name, part.of_seeds(seeds))
    path = checkpoint_path(out_dir, env_id, name, part)
    if not untrained or not path.exists():
        raise SystemExit(f"no unfinished run of {env_id} {name} at {timesteps} steps in {out_dir}")
    try:
        checkpoint = read_checkpoint(path, config=config.to_dict(), seeds=untrained)
    except CheckpointError as exc:
        raise SystemExit(str(exc)) from None
    cpu = path.with_suffix(".cpu")
    cpu_seconds = f", {float(cpu.read_text()):.0f} CPU-s" if cpu.exists() else ""
    print(f"{env_id} {name}: step {checkpoint.step} of {timesteps}{cpu_seconds}")
    for seed, curve in zip(untrained, checkpoint.curves(), strict=True):
        points = ", ".join(f"{point.step}: {point.mean_return:.1f}" for point in curve)
        print(f"seed {seed}: {points or 'no evaluation yet'}")


def compare(env_id: str, names: list[str], out_dir: Path) -> None:
    """Two configs' returns per seed, their means, the floor and the goal (the second against the first)."""
    rows = []
    for name in names:
        path = results_path(out_dir, env_id, name)
        lines = path.read_text().splitlines() if path.exists() else []
        rows.append({record["seed"]: record["mean"] for record in map(json.loads, lines)})
    base, other = rows
    seeds = sorted(set(base) & set(other))
    if not seeds:
        raise SystemExit(f"no seed of {env_id} has results of both {names[0]} and {names[1]} in {out_dir}")
    print(f"| seed | {names[0]} | {names[1]} |\n|---|---|---|")
    for seed in seeds:
        print(f"| {seed} | {base[seed]:.2f} | {other[seed]:.2f} |")
    base_mean, other_mean = statistics.mean(base[s] for s in seeds), statistics.mean(other[s] for s in seeds)
    higher = sum(other[s] > base[s] for s in seeds)
    met = other_mean > base_mean and higher >= 4
    print(f"| mean | {base_mean:.2f} | {other_mean:.2f} |")
    print(
        f"{names[1]} / {names[0]} = {other_mean / base_mean:.2f}x (goal 1.5x); higher on {higher} of {len(seeds)} "
        f"seeds; floor (mean above and >= 4 of 5 higher): {'met' if met else 'NOT met'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True, help="a MinAtar id, e.g. MinAtar/Breakout-v1")
    parser.add_argument("--config", help="which config to train and judge: reference, preset or a TOML file")
    parser.add_argument("--compare", nargs=2, metavar="NAME", help="print two configs' results side by side")
    parser.add_argument(
        "--progress", action="store_true", help="with --config: print where its unfinished run stands and stop"
    )
    parser.add_argument("--seeds", type=int, default=5, help="fresh seeds (default: 5)")
    parser.add_argument(
        "--part",
        type=Part.parse,
        default=Part(),
        metavar="I/N",
        help="train only every N-th seed from the I-th, as its own run (default: 1/1, all)",
    )
    parser.add_argument("--timesteps", type=int, default=BUDGET, help=f"env steps per run (default: {BUDGET})")
    parser.add_argument("--episodes", type=int, default=100, help="greedy episodes per seed (default: 100)")
    parser.add_argument("--out-dir", type=Path, default=Path("studies/minatar"))
    parser.add_argument(
        "--checkpoint-every", type=int, default=50_000, help="env steps between checkpoints (default: 50000)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compare:
        compare(args.env, args.compare, args.out_dir)
    elif args.config and args.progress:
        progress(args.env, args.config, args.part, retrain_seeds(args.seeds), args.timesteps, args.out_dir)
    elif args.config:
        run(
            args.env,
            args.config,
            args.part,
            retrain_seeds(args.seeds),
            args.timesteps,
            args.episodes,
            args.out_dir,
            args.checkpoint_every,
        )
    else:
        parser.error("give --config reference|preset|FILE.toml or --compare NAME NAME")


if __name__ == "__main__":
    main()
