"""Benchmark: `dqn-tune` against RL Baselines3 Zoo's optimizer on CartPole-v1, same trials and budget.

Runs, one after the other on this machine, `dqn-tune --trials N --workers W --timesteps T` and W
processes of `python -m rl_zoo3.train --algo dqn --env CartPole-v1 -optimize` sharing one SQLite
study (capped at N trials), each with its defaults otherwise, and prints for each: wall time,
trials per hour, best value and how many trials reached the threshold. RL Zoo is the optional
`bench` extra (pip install -e ".[bench]"); without it only dqn-tune runs.

    python scripts/bench_study.py                       # 20 trials each (RL Zoo alone: ~40 minutes)
    python scripts/bench_study.py --trials 2 --only dqn-tune
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

STUDY = "bench"


@dataclass(frozen=True)
class BenchResult:
    """What one optimizer achieved."""

    name: str
    wall_time_s: float
    trials: int
    best_value: float | None
    reached: int

    def line(self, threshold: float) -> str:
        per_hour = self.trials / self.wall_time_s * 3600 if self.wall_time_s > 0 else 0.0
        best = "none" if self.best_value is None else f"{self.best_value:.1f}"
        return (
            f"{self.name:<9} wall {self.wall_time_s:8.0f}s  trials {self.trials:4d}  "
            f"trials/hour {per_hour:7.1f}  best {best:>6}  trials >= {threshold:g}: {self.reached}"
        )


def study_result(name: str, storage: str, wall_time_s: float, threshold: float) -> BenchResult:
    """Read the finished trials of study STUDY in `storage`."""
    trials = optuna.load_study(study_name=STUDY, storage=storage).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    values = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    return BenchResult(
        name, wall_time_s, len(finished), max(values) if values else None, sum(v >= threshold for v in values)
    )


def run_timed(commands: list[list[str]], log: Path) -> float:
    """Run `commands` concurrently (output to `log`), fail on a non-zero exit; return the wall time."""
    start = time.perf_counter()
    with log.open("w") as out:
        processes = [subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT) for command in commands]
        codes = [process.wait() for process in processes]
    if any(codes):
        raise SystemExit(f"bench_study: {commands[0][:4]} exited with {codes}; see {log}")
    return time.perf_counter() - start


def bench_dqn_tune(args: argparse.Namespace, out: Path) -> BenchResult:
    storage = f"sqlite:///{out}/dqn_tune.db"
    command = [
        sys.executable,
        "-m",
        "dqn_tune",
        "--trials",
        str(args.trials),
        "--workers",
        str(args.workers),
        "--timesteps",
        str(args.timesteps),
        "--storage",
        storage,
        "--study-name",
        STUDY,
        "--seed",
        str(args.seed),
    ]
    return study_result("dqn-tune", storage, run_timed([command], out / "dqn_tune.log"), args.threshold)


def bench_zoo(args: argparse.Namespace, out: Path) -> BenchResult:
    storage = f"sqlite:///{out}/zoo.db"
    optuna.create_study(study_name=STUDY, storage=storage, direction="maximize")  # before the racing processes
    commands = [
        [
            sys.executable,
            "-m",
            "rl_zoo3.train",
            "--algo",
            "dqn",
            "--env",
            "CartPole-v1",
            "-optimize",
            "--n-timesteps",
            str(args.timesteps),
            "--n-trials",
            str(args.trials),
            "--max-total-trials",
            str(args.trials),
            "--n-jobs",
            "1",
            "--num-threads",
            "1",
            "--storage",
            storage,
            "--study-name",
            STUDY,
            "--no-optim-plots",
            "--seed",
            str(args.seed + i),
            "-f",
            str(out / f"zoo_logs_{i}"),
        ]
        for i in range(args.workers)
    ]
    wall = run_timed(commands, out / "zoo.log")
    return study_result("rl_zoo3", storage, wall, args.threshold)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per optimizer (default: 20)")
    parser.add_argument("--timesteps", type=int, default=20_000, help="steps per trial (default: 20000)")
    parser.add_argument("--workers", type=int, default=2, help="processes per optimizer (default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=475.0, help="a trial 'reaches' this value (default: 475)")
    parser.add_argument("--only", choices=("dqn-tune", "zoo"), default=None, help="run one optimizer only")
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for the studies and logs (default: a temp dir)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_study_"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"CartPole-v1, {args.trials} trials x {args.timesteps} steps, {args.workers} processes each; "
        f"studies and logs in {out}",
        flush=True,
    )
    results = []
    if args.only in (None, "dqn-tune"):
        results.append(bench_dqn_tune(args, out))
        print(results[-1].line(args.threshold), flush=True)
    if args.only in (None, "zoo"):
        if importlib.util.find_spec("rl_zoo3") is None:
            print("rl_zoo3 is not installed (pip install -e '.[bench]'): skipping RL Zoo")
        else:
            results.append(bench_zoo(args, out))
            print(results[-1].line(args.threshold), flush=True)
    print(
        "values: dqn-tune = mean over its seeds (default 2) of a 20-episode final evaluation; "
        "rl_zoo3 = its last evaluation of one run"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
