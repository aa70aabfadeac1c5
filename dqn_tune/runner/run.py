"""run_job: the one study runner. Tuning, the grid ablation and validation are jobs it runs.

A job says three things: how to create or load its study (checked, and its settings recorded,
under the study lock before any trial starts), how a worker process opens the study (sampler,
pruner), and which objective a trial runs. The runner does the rest the same way for every job:
open the storage with heartbeats, share a trial quota between `workers` workers started by an
executor (executor.py: local processes by default, or Ray; one local worker runs in this process),
stop cleanly on SIGINT/SIGTERM (running trials failed, `interrupted` set), and report a worker's
failure instead of hiding it. Each trial goes through `trial_loop.run_trials`: asked exclusively,
run under a heartbeat, told.

A worker that dies (SIGKILL, OOM killer, a lost Ray node) is handled as soon as its executor notices,
without waiting for its heartbeat to go stale: its running trial is failed and its retry queued
(`fail_trials_of`), its quota slot is given back, and a replacement worker (with a sampler seed of its
own) runs the retry. The command still reports the death (`worker_error`), with what became of the trial.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from dqn_tune.errors import StorageError
from dqn_tune.runner.executor import Death, Executor
from dqn_tune.runner.interrupts import deferred_interrupts, interrupts_stop_cleanly
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import StorageSettings, in_memory, public_url
from dqn_tune.runner.storage_errors import storage_faults
from dqn_tune.runner.trial_loop import (
    BatchObjective,
    Objective,
    Quota,
    TrialQuota,
    run_trials,
)
from dqn_tune.runner.trial_queue import fail_trials_of, retry_state
from dqn_tune.runner.workers import LocalProcesses, WorkerError


class Plan(NamedTuple):
    """What a job's `prepare` decided for this command."""

    study: optuna.Study
    created: bool
    """Whether this command created the study."""
    total_trials: int | None
    """Cap on the study's counted trials across all processes and machines (None: no cap)."""
    run_index: int = 0
    """This command's index among the commands that ran the study (keeps samplers of simultaneous
    commands apart)."""


class StudyJob(Protocol):
    """One kind of study the runner can run; must pickle (it is sent to worker processes)."""

    @property
    def study_name(self) -> str:
        """The study's name in the storage."""
        ...

    @property
    def storage(self) -> StorageSettings:
        """How every process opens the storage."""
        ...

    @property
    def seed(self) -> int:
        """The seed its workers' samplers are derived from."""
        ...

    def prepare(self, storage: SharedStorage, command: str) -> Plan:
        """Create or load the study, refuse an incompatible one before writing anything, record the
        settings and `command`. Called once per command, under the study lock."""
        ...

    def load(self, storage: SharedStorage, sampler_seed: int) -> optuna.Study:
        """The study as a worker opens it: with the job's sampler (seeded with `sampler_seed`) and pruner."""
        ...

    def trial_objective(self) -> Objective | BatchObjective:
        """What a trial (or a batch of queued trials) runs; called once per worker process."""
        ...

    def describe(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """A line printed by the worker that finished `trial` (`study` is that worker's), or None to print nothing."""
        ...


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What one `run_job` call did."""

    study: optuna.Study
    created: bool
    trials_before: int
    """Trials the study held before this command ran any."""
    finished: int
    """Trials finished by this command, in every process."""
    wall_time_s: float
    interrupted: bool = False
    worker_error: str | None = None
    timed_out: bool = False
    """No new trial started because `timeout_s` had passed."""


def sampler_seed(seed: int, run_index: int, worker_index: int) -> int:
    """A sampler seed per command and worker: the same --seed makes the same study, while two commands
    sharing a study (or two workers of one) never sample alike."""
    return int(np.random.SeedSequence([seed, run_index, worker_index]).generate_state(1)[0])


def open_for_job(job: StudyJob) -> SharedStorage:
    """The job's storage; an in-memory SQLite database is refused (a study must outlive the command)."""
    if in_memory(job.storage.url):
        raise StorageError(
            f"storage {public_url(job.storage.url)!r} is in memory; a study needs a file or a "
            "server, e.g. sqlite:///studies/dqn_tune.db"
        )
    return job.storage.open()


def run_job(
    job: StudyJob,
    *,
    trials: int | None,
    workers: int = 1,
    executor: Executor | None = None,
    command: str = "",
    on_progress: Callable[[int], None] | None = None,
    on_start: Callable[[Plan, int], None] | None = None,
    timeout_s: float | None = None,
) -> JobOutcome:
    """Prepare the job's study, then run up to `trials` trials (None: until the plan's cap) in `workers` workers of
    `executor` (None: local processes; one local worker runs in this process).

    `on_start(plan, trials_before)` is called once the study is ready; `on_progress(finished)` after each
    trial in this process, and about every second while workers run elsewhere.
    """
    storage = open_for_job(job)
    with storage.coordinator.lock(job.study_name):
        plan = job.prepare(storage, command)
    before = len(plan.study.get_trials(deepcopy=False))
    if on_start is not None:
        on_start(plan, before)
    progress = on_progress or (lambda _finished: None)
    start = time.perf_counter()
    interrupted, errors = False, []
    with interrupts_stop_cleanly(), executor or LocalProcesses() as running:
        # the deadline counts from here: no trial starts after it
        quota = (
            TrialQuota(trials, timeout_s=timeout_s) if executor is None else running.quota(trials, timeout_s=timeout_s)
        )
        lost = _LostWorkers(job, plan, quota, workers)
        try:
            if workers == 1 and executor is None:
                _work(
                    job,
                    plan.total_trials,
                    quota,
                    sampler_seed(job.seed, plan.run_index, 0),
                    lambda _trial: progress(quota.finished),
                    storage,
                )
            else:
                running.run(
                    _work,
                    [lost.worker_arguments(index) for index in range(workers)],
                    poll=lambda: progress(quota.finished),
                    on_death=lost.replace,
                )
        except KeyboardInterrupt:
            interrupted = True
        except WorkerError as exc:
            errors.append(str(exc))
        errors = lost.reports() + errors
        finished, timed_out = quota.finished, quota.timed_out
    return JobOutcome(
        plan.study,
        plan.created,
        before,
        finished,
        time.perf_counter() - start,
        interrupted,
        "; ".join(errors) or None,
        timed_out,
    )


class _LostWorkers:
    """What the parent does when a worker dies: fail its trial now, queue the retry, replace the worker."""

    def __init__(self, job: StudyJob, plan: Plan, quota: Quota, workers: int) -> None:
        self._job, self._plan, self._quota = job, plan, quota
        self._next_index = workers
        self._deaths: list[tuple[str, list[tuple[int, int | None]]]] = []

    def worker_arguments(self, index: int) -> tuple[object, ...]:
        """The arguments of `_work` for worker `index` (each index has its own sampler seed)."""
        return (
            self._job,
            self._plan.total_trials,
            self._quota,
            sampler_seed(self._job.seed, self._plan.run_index, index),
        )

    def replace(self, death: Death) -> tuple[object, ...] | None:
        """The executor's on_death: fail the dead worker's trials, give their quota slots back, and return
        a replacement's arguments when a retry was queued (never more replacements than retries: bounded)."""
        with deferred_interrupts():  # a Ctrl-C now must not leave the trial half-failed
            failed = fail_trials_of(self._plan.study, death.worker, f"its worker process ({death.process}) {death.how}")
        self._deaths.append((f"worker {death.index} ({death.process}) {death.how}", failed))
        retries = [retry for _, retry in failed if retry is not None]
        for _ in retries:
            self._quota.give_back()
        if not retries:
            return None
        self._next_index += 1
        return self.worker_arguments(self._next_index - 1)

    def reports(self) -> list[str]:
        """One phrase per dead worker: how it died and what became of its trials (read once the workers ended)."""
        out = []
        for death, failed in self._deaths:
            if not failed:
                out.append(f"{death} between trials")
            for number, retry in failed:
                if retry is None:
                    out.append(
                        f"{death}; its trial {number} was marked failed and not retried (retried too often already)"
                    )
                    continue
                state = retry_state(self._plan.study, retry)
                done = (
                    f"retried as trial {retry} ({state.name.lower()})"
                    if state.is_finished()
                    else f"queued for retry as trial {retry}"
                )
                out.append(f"{death}; its trial {number} was marked failed and {done}")
        return out


def _work(
    job: StudyJob,
    total_trials: int | None,
    quota: Quota,
    seed: int,
    on_trial: Callable[[FrozenTrial], None] | None = None,
    opened: SharedStorage | None = None,
) -> None:
    """One worker: open the study the job's way and run its trials until the quota or the cap is reached (in the
    command's own process, on its `opened` storage: one connection per process); a storage fault is a one-line
    StorageError (a worker process's is re-raised as it is by its parent)."""
    with storage_faults(job.storage.url):
        storage = opened or job.storage.open()
        study = job.load(storage, seed)

        def finished(trial: FrozenTrial) -> None:
            line = job.describe(study, trial)
            if line is not None:
                print(line, flush=True)
            if on_trial is not None:
                on_trial(trial)

        try:
            run_trials(study, job.trial_objective(), quota, total_trials=total_trials, on_trial=finished)
        finally:
            if opened is None:
                storage.close()
