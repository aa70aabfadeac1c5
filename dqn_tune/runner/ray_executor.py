"""Workers as Ray tasks: `--executor ray`, on a Ray cluster (`--ray-address`) or a local one started for the command.

Each worker is one Ray task (one CPU, and `worker_gpus` of a GPU) running the study runner's trial loop
against the shared storage, which every node must reach (PostgreSQL or a storage proxy). The trial quota
lives in a small actor (`_Quota`, no CPU) that also records which process runs each task, so that when Ray
reports a task's worker or node lost, the runner fails that process's trials and queues their retries at once,
as it does for a local process; the heartbeat check would do it after the grace period anyway. Tasks are
never retried by Ray itself (`max_retries=0`): a retry is a new trial of the same config, counted and told
once. Ctrl-C cancels the tasks (Ray raises KeyboardInterrupt in each: its running trial is failed cleanly).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import ray
from ray.exceptions import (
    LocalRayletDiedError,
    NodeDiedError,
    OutOfMemoryError,
    RayTaskError,
    TaskCancelledError,
    WorkerCrashedError,
)

from dqn_tune.errors import DQNTuneError
from dqn_tune.runner.executor import Death, OnDeath
from dqn_tune.runner.interrupts import interrupts_stop_cleanly
from dqn_tune.runner.trial_loop import TrialQuota
from dqn_tune.runner.trial_queue import process_name
from dqn_tune.runner.workers import WorkerError

POLL_INTERVAL_S = 1.0
LOST = (WorkerCrashedError, NodeDiedError, LocalRayletDiedError, OutOfMemoryError)
"""What Ray raises for a task whose worker process or node is gone (OutOfMemoryError: Ray's memory monitor killed
it); any other error of Ray's is the task's failure (e.g. a node without dqn-tune cannot load the task)."""
LOG_SETTINGS = {"RAY_DEDUP_LOGS": "0", "RAY_COLOR_PREFIX": "0"}
"""How the workers' lines reach this terminal: each trial's line (Ray folds similar lines into "repeated Nx" by
default), without colour codes in logs; a value set by the user is kept."""
STOP_WAIT_S = 60.0
"""How long Ctrl-C waits for cancelled tasks to fail their running trials."""


@ray.remote(num_cpus=0)
class _Quota:
    """The command's TrialQuota, in one process that every task reaches, and the process running each task."""

    def __init__(self, trials: int | None, timeout_s: float | None) -> None:
        self._quota = TrialQuota(trials, timeout_s=timeout_s)
        self._processes: dict[int, str] = {}

    def take(self, count: int) -> int:
        return self._quota.take(count)

    def give_back(self, count: int) -> None:
        self._quota.give_back(count)

    def finish(self) -> None:
        self._quota.finish()

    def state(self) -> tuple[int, bool]:
        return self._quota.finished, self._quota.timed_out

    def register(self, index: int, process: str) -> None:
        self._processes[index] = process

    def process(self, index: int) -> str | None:
        return self._processes.get(index)


class RayQuota:
    """A Quota whose counts live in a `_Quota` actor (picklable: tasks get the actor's handle)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def take(self, count: int = 1) -> int:
        return int(ray.get(self.actor.take.remote(count)))

    def give_back(self, count: int = 1) -> None:
        ray.get(self.actor.give_back.remote(count))

    def finish(self) -> None:
        ray.get(self.actor.finish.remote())

    @property
    def timed_out(self) -> bool:
        return bool(ray.get(self.actor.state.remote())[1])

    @property
    def finished(self) -> int:
        return int(ray.get(self.actor.state.remote())[0])


def dqn_tune_worker(quota: RayQuota, index: int, work: Callable[..., None], args: tuple[Any, ...]) -> None:
    """A worker's body on a Ray node (Ray prefixes its output with this name): say which process runs it, then run
    `work` with clean stops."""
    ray.get(quota.actor.register.remote(index, process_name()))
    with interrupts_stop_cleanly():
        work(*args)


class RayExecutor:
    """The executor of Ray tasks (see the module's doc)."""

    def __init__(self, *, address: str | None = None, worker_gpus: float = 0.0, local_cpus: int | None = None) -> None:
        self.address = address
        """A running cluster's address (ray://host:10001, host:6379 or "auto"); None starts a local one."""
        self.worker_gpus = worker_gpus
        self.local_cpus = local_cpus
        """CPUs of the local cluster started when there is no address (None: Ray's count of this machine's)."""
        self._started = False
        self._depth = 0
        self._quota: RayQuota | None = None

    def __enter__(self) -> RayExecutor:
        """Connect to the cluster (or start the local one) unless this process is connected already; re-entrant, so
        that one command (tuning, then validation) connects once."""
        if self._depth == 0 and not ray.is_initialized():
            for name, value in LOG_SETTINGS.items():
                os.environ.setdefault(name, value)
            ray.init(
                address=self.address,
                num_cpus=None if self.address else self.local_cpus,
                include_dashboard=False,
                logging_level=logging.WARNING,
            )
            self._started = True
        self._depth += 1
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._depth -= 1
        if self._depth == 0 and self._started:
            ray.shutdown()  # only what this executor started
            self._started = False

    def quota(self, trials: int | None, *, timeout_s: float | None) -> RayQuota:
        # type checkers keep a decorated class's own type: they do not see the ActorClass that ray.remote made
        self._quota = RayQuota(_Quota.remote(trials, timeout_s))  # type: ignore[attr-defined]
        return self._quota

    def run(
        self,
        work: Callable[..., None],
        arguments: Sequence[tuple[Any, ...]],
        *,
        poll: Callable[[], None],
        on_death: OnDeath,
    ) -> None:
        quota = self._quota or self.quota(None, timeout_s=None)
        remote = ray.remote(dqn_tune_worker).options(num_cpus=1, num_gpus=self.worker_gpus, max_retries=0)
        running: dict[Any, int] = {}
        errors: list[BaseException] = []

        def start(index: int, args: tuple[Any, ...]) -> None:
            running[remote.remote(quota, index, work, args)] = index

        for index, args in enumerate(arguments):
            start(index, args)
        started = len(arguments)
        try:
            while running:
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_INTERVAL_S)
                for ref in done:
                    index = running.pop(ref)
                    death = self._outcome(ref, index, quota, errors)
                    if death is not None and (replacement := on_death(death)) is not None:
                        start(started, replacement)
                        started += 1
                poll()
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref)
            ray.wait(list(running), num_returns=len(running), timeout=STOP_WAIT_S)
            raise
        if errors:  # as local processes: an interrupt first, then the first failure
            raise next((error for error in errors if isinstance(error, KeyboardInterrupt)), errors[0])

    @staticmethod
    def _outcome(ref: Any, index: int, quota: RayQuota, errors: list[BaseException]) -> Death | None:
        """The Death of a task whose worker or node was lost; a task's own error goes to `errors`."""
        try:
            ray.get(ref)
            return None
        except TaskCancelledError:
            errors.append(KeyboardInterrupt())
            return None
        except RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, KeyboardInterrupt):
                errors.append(KeyboardInterrupt())
            elif isinstance(cause, DQNTuneError):
                errors.append(cause)
            else:
                errors.append(WorkerError(f"Ray worker {index} failed:\n{exc}"))
            return None
        except LOST as exc:
            process = ray.get(quota.actor.process.remote(index))
            if process is None:  # lost before it asked for a trial
                process = f"{socket.gethostname()}:unknown"
            host, _, pid = process.rpartition(":")
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Death(index, process, f"pid {pid} on {host}", f"was lost ({type(exc).__name__}: {reason})")
        except ray.exceptions.RayError as exc:
            errors.append(WorkerError(f"Ray worker {index} failed: {type(exc).__name__}: {exc}"))
            return None
