"""run_study: the tuning job on the study runner: create or resume a study, run trials, summarise it.

Every check that can fail on user input (search space, sampler, storage, an existing study's
direction and budget) runs before anything is written to the storage.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna
import optuna_dashboard
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.runner import attributes
from dqn_tune.runner.executor import Executor
from dqn_tune.runner.run import JobOutcome, Plan, run_job
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import (
    StorageSettings,
    public_url,
    study_names,
)
from dqn_tune.runner.trial_loop import INTERRUPTED, Objective
from dqn_tune.tuning import records
from dqn_tune.tuning.algorithms import make_pruner, make_sampler
from dqn_tune.tuning.artifacts import chosen_artifact_dir, study_artifact_store
from dqn_tune.tuning.checkpoints import job_checkpoints, retry_interrupted
from dqn_tune.tuning.defaults import CHECKPOINT_EVERY
from dqn_tune.tuning.notes import NOT_VALIDATED, tuning_note
from dqn_tune.tuning.objective import ObjectiveSettings, make_objective
from dqn_tune.tuning.progress import (
    Progress,
    best_trial,
    counts_text,
    isatty,
    print_line,
    state_counts,
    trial_line,
    trials_text,
)
from dqn_tune.tuning.resume import check_compatible
from dqn_tune.versions import library_versions


@dataclass(frozen=True, slots=True)
class TuneSettings:
    """Everything a worker needs to run trials of a study (picklable)."""

    study_name: str
    storage: StorageSettings
    objective: ObjectiveSettings
    sampler: str = "tpe"
    pruner: str = "median"
    artifacts: bool = True
    """Upload each trial's learning-curve PNG to the study's artifact directory."""
    artifact_dir: str | None = None
    """Where artifacts go (stored on the study); None: the study's stored one, else beside the storage."""
    total_trials: int | None = None
    """Cap on the study's trials across all processes and machines."""
    checkpoint_every: int = CHECKPOINT_EVERY
    """Env steps between two checkpoints of a trial's runs (0: none); a retried trial resumes from its predecessor's.
    Per command, not stored with the study: it never changes a trial's value (tuning/checkpoints.py)."""
    trial_lines: bool = False
    """Print one line per finished trial, and evaluation lines of long ones (run_study turns it on when the output
    is not a terminal)."""
    enqueued: tuple[dict[str, Any], ...] = ()
    """Params of trials to queue before sampling (`tune --enqueue`); one already in the study is not queued again."""

    @property
    def storage_url(self) -> str:
        """The storage's SQLAlchemy URL."""
        return self.storage.url

    @property
    def seed(self) -> int:
        """The study seed: samplers and every trial's training seeds derive from it."""
        return self.objective.study_seed

    def to_attr(self) -> dict[str, Any]:
        """The study attribute records.SETTINGS_ATTR."""
        base = self.objective.base
        return {
            "env_id": base.env_id,
            "total_timesteps": base.total_timesteps,
            "eval_episodes": base.eval_episodes,
            "objective": self.objective.objective,
            "seeds": self.objective.seeds,
            "seed": self.objective.study_seed,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "base_config": base.to_dict(),
            "search_space": self.objective.space.to_dict(),
        }

    def prepare(self, storage: SharedStorage, command: str) -> Plan:
        """Create the study, or load it and refuse to mix incomparable trials; record the command."""
        study, created = _create_or_load(storage, self)
        retry_interrupted(study)  # trials stopped by a signal with a checkpoint: resumed first
        for params in self.enqueued:  # under the study lock: two commands queue one trial, not two
            if self.total_trials is None or len(study.get_trials(deepcopy=False)) < self.total_trials:
                study.enqueue_trial(params, skip_if_exists=True)
        if self.artifacts or self.checkpoint_every:
            records.store_artifact_dir(
                study, chosen_artifact_dir(self.artifact_dir, records.stored_artifact_dir(study), self.storage_url)
            )
        run_index = records.record_command(study, command)
        if run_index == 0:
            optuna_dashboard.save_note(study, tuning_note(study, self.storage_url))
        return Plan(study, created, self.total_trials, run_index)

    def load(self, storage: SharedStorage, sampler_seed: int) -> optuna.Study:
        """The study with this worker's sampler and the pruner."""
        base = self.objective.base
        return optuna.load_study(
            study_name=self.study_name,
            storage=storage,
            sampler=make_sampler(self.sampler, sampler_seed),
            pruner=make_pruner(self.pruner, total_timesteps=base.total_timesteps, eval_freq=base.eval_freq),
        )

    def trial_objective(self) -> Objective:
        """Sample, train on the trial's seeds (checkpointed), record, upload the learning curve."""
        return make_objective(
            self.objective,
            study_artifact_store(self.storage, self.study_name, self.artifact_dir) if self.artifacts else None,
            job_checkpoints(
                self.storage, self.study_name, self.artifact_dir, every=self.checkpoint_every, artifacts=self.artifacts
            ),
            show=print_line if self.trial_lines else None,
        )

    def describe(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """With `trial_lines`: the finished trial's outcome and the study's best so far (read from storage)."""
        return trial_line(trial, best_trial(study)) if self.trial_lines else None


@dataclass(frozen=True, slots=True)
class StudySummary:
    """What a run of `run_study` did and where the study stands."""

    study_name: str
    storage_url: str
    trials_before: int
    trials_run: int
    counts: dict[str, int]
    """Trials of the whole study by state name (complete, pruned, fail, running, waiting)."""
    diverged: int
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    value_meaning: str = "the objective"
    """What a trial's value is (records.value_meaning)."""
    interrupted_trials: int = 0
    """FAIL trials of the study whose run was stopped by Ctrl-C or SIGTERM (this or an earlier command)."""
    dashboard_command: str = ""
    retrain_command: str = ""
    interrupted: bool = False
    worker_error: str | None = None
    timeout_s: float | None = None
    """Set when the command's --timeout ended it: no trial started after this many seconds."""

    def lines(self) -> list[str]:
        """What the command did and where the study stands, as `tune` prints it before validating."""
        counts = counts_text(self.counts)
        out = [
            f"study {self.study_name!r}: {trials_text(self.trials_run)} run in {self.wall_time_s:.0f}s"
            + (" (interrupted)" if self.interrupted else "")
            + (
                f" (--timeout {self.timeout_s:g}s reached: no new trial started, running ones finished)"
                if self.timeout_s is not None
                else ""
            ),
            f"trials in the study: {sum(self.counts.values())} ({counts or 'none'})"
            + (f"; {self.diverged} pruned because training diverged" if self.diverged else "")
            + (
                f"; {self.interrupted_trials} failed because a command was interrupted (Ctrl-C or SIGTERM): they "
                "stay in the study and count towards --total-trials"
                if self.interrupted_trials
                else ""
            ),
        ]
        if self.best_value is None:
            out.append("best: no complete trial yet")
        else:
            out.append(
                f"best on its tuning seeds: trial {self.best_number}, value {self.best_value:.2f}, {self.value_meaning}"
            )
        if self.worker_error:
            out.append(f"a worker failed: {self.worker_error}")
        if self.interrupted or self.worker_error:
            out.append("run the same command again to resume the study")
        return out


def run_study(
    settings: TuneSettings,
    *,
    trials: int | None,
    workers: int = 1,
    command: str = "",
    echo: Callable[[str], None] = print,
    progress: bool | None = None,
    timeout_s: float | None = None,
    executor: Executor | None = None,
) -> StudySummary:
    """Create or resume the study and run `trials` more trials (None: until `settings.total_trials`, or with
    neither, until `timeout_s`).

    `workers` workers of `executor` (None: local processes) share the trials. `progress` shows a live bar on
    stderr (None: when stderr is a terminal); when stdout is not a terminal, or there is no bar, each finished
    trial prints one line instead (logs under nohup, Slurm or CI), and a running trial an evaluation's line at
    most once a minute. SIGINT/SIGTERM stop cleanly: running trials
    are failed and the summary says `interrupted`. After `timeout_s` seconds no new trial starts (running ones
    finish) and the summary says so.
    """
    if trials is None and settings.total_trials is None and timeout_s is None:
        raise ValueError("give trials, total_trials, timeout_s or several")
    settings.objective.space.check(settings.objective.base)
    make_sampler(settings.sampler, settings.objective.study_seed)
    show_bar = isatty(sys.stderr) if progress is None else progress
    settings = dataclasses.replace(settings, trial_lines=not show_bar or not isatty(sys.stdout))
    bar: Progress | None = None

    def started(plan: Plan, before: int) -> None:
        nonlocal bar
        where = f"study {settings.study_name!r} in {public_url(settings.storage_url)}"
        if plan.created:  # a new study's only trials are those `--enqueue` queued
            echo(f"created {where}" + (f" with {trials_text(before)} queued (--enqueue)" if before else ""))
        else:
            echo(
                f"resuming {where}: {trials_text(before)} already"
                + (f" ({counts_text(state_counts(plan.study.get_trials()))})" if before else "")
                + (
                    f"; --trials {trials} runs {trials} more (--total-trials N stops the study at N trials in all)"
                    if before and trials is not None and settings.total_trials is None
                    else ""
                )
            )
        left = [
            n
            for n in (trials, None if settings.total_trials is None else max(0, settings.total_trials - before))
            if n is not None
        ]
        if show_bar:
            bar = Progress(plan.study, min(left, default=None), total_timesteps=settings.objective.base.total_timesteps)

    try:
        outcome = run_job(
            settings,
            trials=trials,
            workers=workers,
            executor=executor,
            command=command,
            on_start=started,
            on_progress=lambda finished: bar.update(finished) if bar else None,
            timeout_s=timeout_s,
        )
    finally:
        if bar is not None:
            bar.close()
    return summarize(outcome, settings, timeout_s)


def summarize(outcome: JobOutcome, settings: TuneSettings, timeout_s: float | None = None) -> StudySummary:
    """The StudySummary of a tuning job's outcome (`timeout_s`: the command's time budget)."""
    study = outcome.study
    all_trials = study.get_trials(deepcopy=False)
    counts = state_counts(all_trials)
    diverged = sum(t.state == TrialState.PRUNED and attributes.FAIL_REASON in t.user_attrs for t in all_trials)
    best = best_trial(study)
    url = shlex.quote(public_url(settings.storage_url))
    return StudySummary(
        study_name=settings.study_name,
        storage_url=public_url(settings.storage_url),
        trials_before=outcome.trials_before,
        trials_run=outcome.finished,
        counts=counts,
        diverged=diverged,
        best_number=best.number if best else None,
        best_value=best.value if best else None,
        best_params=dict(best.params) if best else {},
        wall_time_s=outcome.wall_time_s,
        value_meaning=records.value_meaning(settings.to_attr()),
        interrupted_trials=sum(
            t.state == TrialState.FAIL and t.user_attrs.get(attributes.FAIL_REASON) == INTERRUPTED for t in all_trials
        ),
        dashboard_command=f"dqn-tune dashboard {url}",
        retrain_command=f"dqn-tune retrain --study-name {shlex.quote(settings.study_name)} --storage {url}",
        interrupted=outcome.interrupted,
        worker_error=outcome.worker_error,
        timeout_s=timeout_s if outcome.timed_out else None,
    )


def _create_or_load(storage: SharedStorage, settings: TuneSettings) -> tuple[optuna.Study, bool]:
    """The study, checked against `settings` before anything is written; True if it was created now."""
    name = settings.study_name
    created = name not in study_names(storage)
    if created:
        try:
            study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        except optuna.exceptions.DuplicatedStudyError:  # another machine created it just now
            created = False
    if not created:
        study = optuna.load_study(study_name=name, storage=storage)
        check_compatible(study, settings.to_attr(), f"study {name!r} in {public_url(settings.storage_url)}")
    if created or records.study_settings(study) is None:
        study.set_user_attr(records.RECOMMENDED_TRIAL, NOT_VALIDATED)
        study.set_user_attr(records.SETTINGS_ATTR, settings.to_attr())
        study.set_user_attr(records.VERSIONS_ATTR, library_versions())
    if study.metric_names is None:  # also names the value of a study made before dqn-tune named it
        records.set_metric_name(study)
    return study, created
