"""`--executor`, `--ray-address`, `--worker-gpus`: where a command's workers run (runner/executor.py)."""

from __future__ import annotations

import argparse
import math

from dqn_tune.cli.arguments import check_local_workers, text
from dqn_tune.errors import ConfigError, shown
from dqn_tune.runner.executor import EXECUTORS, Executor, make_executor

MAX_WORKER_GPUS = 64
"""Most GPUs one worker may claim (a worker trains on one device; more is a typo)."""


def gpu_share(raw: str) -> float:
    """argparse type: the GPUs a Ray worker claims: a fraction in (0, 1] (several workers per GPU) or whole GPUs,
    as Ray accepts them."""
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (0 < value <= 1 or (1 < value <= MAX_WORKER_GPUS and value.is_integer())):
        raise argparse.ArgumentTypeError(
            f"invalid value {shown(raw)}; expected a fraction of a GPU in (0, 1], e.g. "
            f"0.25 for four workers per GPU, or a whole number of GPUs up to "
            f"{MAX_WORKER_GPUS}"
        )
    return value


def add_executor_flags(parser: argparse.ArgumentParser) -> None:
    """The flags choosing and configuring the executor."""
    group = parser.add_argument_group("where the workers run")
    group.add_argument(
        "--executor",
        choices=tuple(EXECUTORS),
        default="local",
        help="local: worker processes on this machine; ray: Ray tasks (one CPU each) on a Ray cluster, "
        "all using the same --storage (PostgreSQL or a storage proxy; pip install "
        "'dqn-tune[ray]') (default: local)",
    )
    group.add_argument(
        "--ray-address",
        type=text,
        default=None,
        metavar="ADDR",
        help="the Ray cluster (e.g. auto on a cluster node, or ray://HEAD:10001); left out, a Ray "
        "cluster of --workers CPUs starts on this machine for the command",
    )
    group.add_argument(
        "--worker-gpus",
        type=gpu_share,
        default=None,
        metavar="F",
        help="GPUs each Ray worker claims, e.g. 0.25 for four workers per GPU (needs --device cuda)",
    )


def chosen_executor(args: argparse.Namespace) -> Executor | None:
    """The executor the flags ask for (None: local processes, the runner's default), after refusing flags that do
    not go with it; `args.workers` is the chosen worker count."""
    if args.executor == "local":
        for flag, value in (("--ray-address", args.ray_address), ("--worker-gpus", args.worker_gpus)):
            if value is not None:
                raise ConfigError(
                    f"{flag} {shown(value)} is for --executor ray; add --executor ray or leave {flag} out",
                    field="executor",
                )
        check_local_workers(args.workers)
        return None
    if args.worker_gpus is not None and args.device != "cuda":
        raise ConfigError(
            f"--worker-gpus {args.worker_gpus:g} needs --device cuda (workers training on {args.device} claim no GPU)",
            field="worker_gpus",
        )
    return make_executor(
        args.executor, address=args.ray_address, worker_gpus=args.worker_gpus or 0.0, local_cpus=args.workers
    )
