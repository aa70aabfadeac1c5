"""Benchmark: a fleet of workers on one PostgreSQL server through the storage proxy, and what the proxy costs per trial.

`fleet`: a PostgreSQL server of its own (default max_connections 100) and `dqn-tune storage-proxy` in front of it;
K commands of W workers each start at once on one study of tiny trials (1,500 steps, one seed) capped with
--total-trials. Reports each command's exit status, whether the study holds exactly the total, the most database
connections the server saw, and the memory of the fleet (summed PSS of every dqn-tune process).

`latency`: W processes ask for and tell trials (the runner's own ask: study lock, stale-trial check, ask, worker and
first heartbeat recorded; then tell) on the same study, as fast as they can or with --pause-s between ask and tell
(heartbeats on, as in training), directly on PostgreSQL and through the proxy; reports p50 and p99 of ask, tell and
both, per trial, and the most database connections the server saw. These workers import no torch: many fit in memory.

    python scripts/bench_proxy.py fleet --commands 6 --workers 8 --total-trials 96
    python scripts/bench_proxy.py latency --workers 8 --trials 100
    python scripts/bench_proxy.py latency --workers 60 --trials 20 --pause-s 1 --no-direct
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # scripts.fleet, run as `python scripts/...`
from dqn_tune.runner.optuna_internals import heartbeat
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_queue import ask_trial
from dqn_tune.runner.workers import run_in_processes
from scripts.fleet import (
    postgres_server,
    sampling_connections,
    sampling_memory,
    storage_proxy,
    tune,
    wait_all,
)


def fleet(args: argparse.Namespace) -> dict[str, object]:
    with (
        postgres_server(max_connections=args.max_connections) as server,
        storage_proxy(server.url) as (address, _),
        tempfile.TemporaryDirectory(prefix="bench_proxy_") as cwd,
    ):
        started = time.perf_counter()
        with sampling_connections(server.url, every_s=0.1) as found, sampling_memory() as memory:
            commands = [
                tune(
                    Path(cwd),
                    "--storage",
                    address,
                    "--study-name",
                    "fleet",
                    "--total-trials",
                    str(args.total_trials),
                    "--workers",
                    str(args.workers),
                    "--timesteps",
                    str(args.timesteps),
                )
                for _ in range(args.commands)
            ]
            outcomes = wait_all(commands, timeout_s=7200)
        wall = time.perf_counter() - started
        trials = optuna.load_study(study_name="fleet", storage=server.url).get_trials()
    numbers = [t.number for t in trials]
    return {
        "commands": args.commands,
        "workers_per_command": args.workers,
        "workers": args.commands * args.workers,
        "total_trials": args.total_trials,
        "timesteps": args.timesteps,
        "wall_s": round(wall, 1),
        "exit_statuses": [code for code, _, _ in outcomes],
        "trials": len(trials),
        "states": dict(Counter(t.state.name for t in trials)),
        "numbers_unique": len(set(numbers)) == len(numbers),
        "peak_database_connections": found.peak_total,
        "peak_memory": memory,
        "retry_lines": sum(err.count("retrying in") for _, _, err in outcomes),
        "errors": [err.strip().splitlines()[-1] for code, _, err in outcomes if code != 0 and err.strip()],
    }


def ask_and_tell(url: str, trials: int, pause_s: float) -> list[tuple[float, float]]:
    """A worker: `trials` times the runner's ask, a pause as if training (heartbeats on), then a tell; (ask seconds,
    tell seconds) of each."""
    study = optuna.load_study(study_name="latency", storage=open_storage(url))
    times = []
    for _ in range(trials):
        started = time.perf_counter()
        trial = ask_trial(study)
        asked = time.perf_counter()
        if pause_s:
            with heartbeat(study, trial):  # type: ignore[arg-type]
                time.sleep(pause_s)
        told = time.perf_counter()
        study.tell(trial, 0.0)  # type: ignore[arg-type]
        times.append((asked - started, time.perf_counter() - told))
    return times


def percentiles(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(1000 * float(np.percentile(values, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(values, 99)), 1),
    }


def latency(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {"workers": args.workers, "trials_per_worker": args.trials, "pause_s": args.pause_s}
    with postgres_server() as server, storage_proxy(server.url) as (address, proxy):
        for name, url in (("direct", server.url), ("proxy", address))[0 if args.direct else 1 :]:
            optuna.create_study(study_name="latency", storage=open_storage(server.url), direction="maximize")
            started = time.perf_counter()
            with sampling_connections(server.url, every_s=0.1) as found:
                runs = run_in_processes(ask_and_tell, [(url, args.trials, args.pause_s)] * args.workers)
            wall = time.perf_counter() - started
            times = [pair for run in runs for pair in run]  # type: ignore[union-attr]
            result[name] = {
                "ask": percentiles([a for a, _ in times]),
                "tell": percentiles([t for _, t in times]),
                "ask_and_tell": percentiles([a + t for a, t in times]),
                "mean_ask_and_tell_ms": round(1000 * statistics.fmean(a + t for a, t in times), 1),
                "trials_per_s": round(len(times) / wall, 1),
                "peak_database_connections": {
                    "all": found.peak_total,
                    "workers": found.peak_of({proxy.pid, os.getpid()}, others=True),
                    "proxy": found.peak_of({proxy.pid}),
                },
            }
            optuna.delete_study(study_name="latency", storage=open_storage(server.url))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    run_fleet = modes.add_parser("fleet")
    run_fleet.add_argument("--commands", type=int, default=6)
    run_fleet.add_argument("--workers", type=int, default=8)
    run_fleet.add_argument("--total-trials", type=int, default=96)
    run_fleet.add_argument("--timesteps", type=int, default=1500)
    run_fleet.add_argument("--max-connections", type=int, default=100)
    run_latency = modes.add_parser("latency")
    run_latency.add_argument("--workers", type=int, default=8)
    run_latency.add_argument("--trials", type=int, default=100)
    run_latency.add_argument("--pause-s", type=float, default=0.0, help="seconds between ask and tell (training)")
    run_latency.add_argument("--no-direct", dest="direct", action="store_false", help="through the proxy only")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(json.dumps(fleet(args) if args.mode == "fleet" else latency(args), indent=1))


if __name__ == "__main__":
    main()
