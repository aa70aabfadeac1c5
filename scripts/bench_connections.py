"""Benchmark: several commands of several workers on one PostgreSQL server that allows few connections.

Starts a PostgreSQL server of its own with `max_connections` (default 20), then K `dqn-tune tune` commands of W
workers each at the same instant on one study capped with --total-trials, and reports each command's exit status,
whether the study holds exactly the total (no trial lost or run twice), the most connections the server saw (all,
and per process), and how often a command waited for a free connection.

    python scripts/bench_connections.py                         # 3 commands x 4 workers, max_connections=20
    python scripts/bench_connections.py --commands 4 --workers 4 --total-trials 48
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # scripts.fleet, run as `python scripts/...`
from scripts.fleet import postgres_server, sampling_connections, tune, wait_all

STUDY = "fleet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-connections", type=int, default=20)
    parser.add_argument("--total-trials", type=int, default=36)
    parser.add_argument("--timesteps", type=int, default=1500)
    args = parser.parse_args()
    with (
        postgres_server(max_connections=args.max_connections) as server,
        tempfile.TemporaryDirectory(prefix="bench_connections_") as cwd,
    ):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        started = time.perf_counter()
        with sampling_connections(server.url) as found:
            commands = [
                tune(
                    Path(cwd),
                    "--storage",
                    server.url,
                    "--study-name",
                    STUDY,
                    "--total-trials",
                    str(args.total_trials),
                    "--workers",
                    str(args.workers),
                    "--timesteps",
                    str(args.timesteps),
                )
                for _ in range(args.commands)
            ]
            outcomes = wait_all(commands, timeout_s=3600)
        wall = time.perf_counter() - started
        trials = optuna.load_study(study_name=STUDY, storage=server.url).get_trials()
    states = Counter(t.state.name for t in trials)
    numbers = [t.number for t in trials]
    retries = sum("failed_trial" in t.system_attrs for t in trials)
    peaks = found.peak_by_name()
    per_process = [count for name, count in peaks.items() if name.startswith("dqn-tune ") and "lock" not in name]
    waits = [sum("retrying in" in line for line in err.splitlines()) for _, _, err in outcomes]
    crowded = [sum("too many clients" in line for line in err.splitlines()) for _, _, err in outcomes]
    result = {
        "commands": args.commands,
        "workers": args.workers,
        "max_connections": args.max_connections,
        "total_trials": args.total_trials,
        "timesteps": args.timesteps,
        "wall_s": round(wall, 1),
        "exit_statuses": [code for code, _, _ in outcomes],
        "trials": len(trials),
        "states": dict(states),
        "retries_of_dead_trials": retries,
        "numbers_unique": len(set(numbers)) == len(numbers),
        "peak_connections": found.peak_total,
        "peak_dqn_tune_processes": len(per_process),
        "peak_connections_per_process": max(per_process, default=0),
        "retry_lines": waits,
        "too_many_clients_lines": crowded,
        "errors": [err.strip().splitlines()[-1] for code, _, err in outcomes if code != 0 and err.strip()],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
