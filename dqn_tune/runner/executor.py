"""The executor seam: how a command's worker processes are started, watched, replaced, and share a trial quota.

The study runner (run.py) gives an executor one function (`work`, a worker's trial loop) and one argument tuple
per worker. The executor
- gives the workers one shared `Quota` of trials (`quota`), which the runner also reads for progress;
- starts the workers and polls them (`run`), calling `poll` about every second;
- tells the runner of a worker that died without a word (SIGKILL, the OOM killer, a lost node) at once:
  `on_death(Death)` fails the dead worker's trials, queues their retries and returns a replacement's arguments
  (or None), which the executor starts;
- re-raises a worker's DQNTuneError as itself, other failures as WorkerError, and on KeyboardInterrupt stops
  every worker cleanly (their running trials are failed) and re-raises it.
Local processes (workers.LocalProcesses) and Ray tasks (ray_executor.RayExecutor) implement it; a third (Slurm,
Dask) is one more module and one line in EXECUTORS. The trial loop never knows which one runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from dqn_tune.errors import ConfigError

if TYPE_CHECKING:  # the CLI reads EXECUTORS for its help without loading optuna
    from dqn_tune.runner.trial_loop import Quota

EXECUTORS = {"local": "dqn_tune.runner.workers:LocalProcesses", "ray": "dqn_tune.runner.ray_executor:RayExecutor"}
"""Executor name -> "module:class"; the module is imported only when its executor is chosen."""
EXTRAS = {"ray": "ray"}
"""The pip extra of dqn-tune that an executor needs, by name."""


@dataclass(frozen=True, slots=True)
class Death:
    """A worker that died without reporting."""

    index: int
    """Its index among the workers started (replacements get the next ones)."""
    worker: str
    """The process as its trials name it (attributes.WORKER, `trial_queue.process_name`)."""
    process: str
    """How messages name the process, e.g. "pid 4242" or "pid 4242 on node 10.0.0.2"."""
    how: str
    """What happened to it, e.g. "was killed by SIGKILL"."""


OnDeath = Callable[[Death], "tuple[Any, ...] | None"]


class Executor(Protocol):
    """Starts a command's workers somewhere, watches them and shares their trial quota (a context manager: entering
    it connects to what runs the workers, leaving it disconnects)."""

    def __enter__(self) -> Executor: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None: ...

    def quota(self, trials: int | None, *, timeout_s: float | None) -> Quota:
        """A quota of `trials` trials (None: unlimited) that no worker starts after `timeout_s`, shared by the
        workers of `run`."""
        ...

    def run(
        self,
        work: Callable[..., None],
        arguments: Sequence[tuple[Any, ...]],
        *,
        poll: Callable[[], None],
        on_death: OnDeath,
    ) -> None:
        """Run `work(*args)` in one worker per entry of `arguments` until all have ended (see the module's doc)."""
        ...


def make_executor(name: str, **options: Any) -> Executor:
    """The executor called `name` (a key of EXECUTORS) with its options; ConfigError for an unknown name or one
    whose library is not installed."""
    if name not in EXECUTORS:
        raise ConfigError(f"executor {name!r} is unknown; expected one of {', '.join(EXECUTORS)}", field="executor")
    module, _, cls = EXECUTORS[name].partition(":")
    try:
        loaded = importlib.import_module(module)
    except ImportError as exc:
        if exc.name is None or exc.name.startswith("dqn_tune"):
            raise
        raise ConfigError(
            f"--executor {name} needs {exc.name}, which is not installed: "
            f"pip install 'dqn-tune[{EXTRAS.get(name, name)}]'",
            field="executor",
        ) from None
    executor: Executor = getattr(loaded, cls)(**options)
    return executor
