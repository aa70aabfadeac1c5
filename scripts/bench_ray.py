"""Benchmark: `tune --executor ray` on a two-node Ray cluster of this machine, one node's worker killed mid-trial,
against the local executor on the same work.

Starts a PostgreSQL server of its own and a Ray cluster of two nodes (`ray start --head --port P` and `ray start
--address 127.0.0.1:P`, 2 CPUs each, token authentication with a token of its own), runs a study of tiny trials
with 4 Ray workers, SIGKILLs the worker process of a trial training on the second node, and reports the exit
status, the trials (exact count, the killed one failed and retried) and the wall time; then the same study with
the local executor (4 worker processes). It also times Ray's start: each `ray start`, and a command's own local
cluster (`ray.init()` + `ray.shutdown()`). Everything it started is stopped by process id at the end.

    python scripts/bench_ray.py                    # 20 trials of 1,500 steps, 4 workers
    python scripts/bench_ray.py --trials 40 --timesteps 3000
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import optuna
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # scripts.fleet, run as `python scripts/...`
from scripts.fleet import free_port, postgres_server, tune

RAY = [sys.executable, "-m", "ray.scripts.scripts"]
"""`ray` of this Python: the nodes' workers then run this Python too, which imports this checkout's dqn_tune."""


def ours(directory: str) -> list[int]:
    """Processes whose command line or open files are under `directory` (the cluster's own temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if directory.encode() in (entry / "cmdline").read_bytes() or any(
                os.readlink(fd).startswith(directory) for fd in (entry / "fd").iterdir()
            ):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def raylets(directory: str) -> set[int]:
    return {pid for pid in ours(directory) if b"raylet/raylet" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


@contextmanager
def ray_cluster(cpus_per_node: int = 2) -> Iterator[tuple[str, int, dict[str, float], dict[str, str]]]:
    """(address, pid of the second node's raylet, start-up seconds, environment of its clients) of a two-node cluster
    on this machine; its processes are stopped by pid afterwards."""
    directory = tempfile.mkdtemp(prefix="dqn-tune-ray.")
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port()
    timings = {}
    try:
        started = time.perf_counter()
        subprocess.run(
            [
                *RAY,
                "start",
                "--head",
                "--port",
                str(port),
                "--num-cpus",
                str(cpus_per_node),
                "--temp-dir",
                directory,
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        timings["head_start_s"] = round(time.perf_counter() - started, 1)
        head = raylets(directory)
        started = time.perf_counter()
        subprocess.run(
            [
                *RAY,
                "start",
                "--address",
                f"127.0.0.1:{port}",
                "--num-cpus",
                str(cpus_per_node),
                "--disable-usage-stats",
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
        timings["second_node_start_s"] = round(time.perf_counter() - started, 1)
        [second] = raylets(directory) - head
        yield f"127.0.0.1:{port}", second, timings, env
    finally:
        stop(directory)
        shutil.rmtree(directory, ignore_errors=True)


def stop(directory: str) -> None:
    """SIGTERM every process of the cluster, SIGKILL what is left after 10 s (by pid: nobody else's Ray)."""
    for signum, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
        for pid in ours(directory):
            with suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + wait
        while ours(directory) and time.monotonic() < deadline:
            time.sleep(0.2)


def local_cluster_start_s() -> float:
    """Seconds for a command's own local Ray cluster: ray.init() and ray.shutdown() in a fresh process."""
    code = (
        "import time, logging; t = time.perf_counter(); import ray; "
        "ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING); ray.shutdown(); "
        "print(time.perf_counter() - t)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return round(float(result.stdout.split()[-1]), 1)


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    if name not in optuna.get_all_study_names(url):
        return []
    return optuna.load_study(study_name=name, storage=url).get_trials()


def run(args: argparse.Namespace) -> dict[str, object]:
    result: dict[str, object] = {
        "trials": args.trials,
        "workers": args.workers,
        "timesteps": args.timesteps,
        "local_ray_init_and_shutdown_s": local_cluster_start_s(),
    }
    flags = ["--trials", str(args.trials), "--workers", str(args.workers), "--timesteps", str(args.timesteps)]
    with postgres_server() as server, tempfile.TemporaryDirectory(prefix="bench_ray_") as cwd:
        with ray_cluster() as (address, second_raylet, timings, env):
            result["ray_start"] = timings
            started = time.perf_counter()
            process = tune(
                Path(cwd),
                "--storage",
                server.url,
                "--study-name",
                "ray",
                "--executor",
                "ray",
                "--ray-address",
                address,
                *flags,
                env=env,
            )
            victim = kill_one_on(second_raylet, server.url, process)
            out, err = process.communicate(timeout=3600)
            result["ray"] = outcome(
                process.returncode, out, err, time.perf_counter() - started, trials_of(server.url, "ray")
            )
            result["ray"]["killed"] = victim  # type: ignore[index]
        started = time.perf_counter()
        process = tune(Path(cwd), "--storage", server.url, "--study-name", "local", *flags)
        out, err = process.communicate(timeout=3600)
        result["local"] = outcome(
            process.returncode, out, err, time.perf_counter() - started, trials_of(server.url, "local")
        )
    return result


def kill_one_on(raylet: int, url: str, process: subprocess.Popen[str]) -> dict[str, object]:
    """SIGKILL the worker process of a trial training on the node of `raylet`, once one trains there."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline and process.poll() is None:
        for trial in trials_of(url, "ray"):
            if trial.state != TrialState.RUNNING or not trial.intermediate_values:
                continue
            pid = int(trial.system_attrs["worker"].rsplit(":", 1)[1])
            if parent(pid) == raylet:
                os.kill(pid, signal.SIGKILL)
                return {"trial": trial.number, "pid": pid, "at_step": max(trial.intermediate_values)}
        time.sleep(0.2)
    out, err = process.communicate()
    raise RuntimeError(f"no trial trained on the second node:\n{out}\n{err}")


def outcome(code: int, out: str, err: str, wall: float, trials: list[optuna.trial.FrozenTrial]) -> dict[str, object]:
    return {
        "exit_status": code,
        "wall_s": round(wall, 1),
        "trials": len(trials),
        "states": dict(Counter(t.state.name for t in trials)),
        "retries": sum("failed_trial" in t.system_attrs for t in trials),
        "summary": [line for line in out.splitlines() if line.startswith(("study ", "trials in", "a worker"))],
        "last_error_line": err.strip().splitlines()[-1] if code not in (0, 1) and err.strip() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=1500)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
