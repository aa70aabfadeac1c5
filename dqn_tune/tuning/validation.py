"""run_validation: retrain a tuning study's top configs on held-out seeds and recommend one.

A study's best trial is the luckiest of many noisy measurements. Validation trains each of the
top K complete trials' configs (as stored) on the same N held-out seeds (tuning/seeds.py: never a
tuning or retrain seed), at the study's budget, and recommends one by the rule of
tuning/recommendation.py. Each (config, seed) run is a trial of a study of its own,
`<tuning study>-validation`, beside the tuning study (whose trials feed its sampler and counts),
run by the study runner: workers, heartbeats, SIGKILL -> retried, Ctrl-C -> resumable. A worker
takes a config's queued cells together and trains their seeds as one batched group (`train_seeds`),
each cell still told as its own trial.

Its cells are queued as WAITING trials under the study lock, and the study may not grow past the
queue, so workers only ever pop queued cells: a re-run queues only the missing or failed pairs,
and a larger N or K queues only the new ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import optuna_dashboard
from optuna.pruners import NopPruner
from optuna.samplers import RandomSampler
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.dqn.device import check_device
from dqn_tune.dqn.run_record import curve_auc
from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.runner import attributes
from dqn_tune.runner.executor import Executor
from dqn_tune.runner.optuna_internals import fail_stale_trials, queued_params
from dqn_tune.runner.run import Plan, run_job
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import StorageSettings, load_study, study_names
from dqn_tune.runner.trial_loop import BatchObjective
from dqn_tune.runner.trial_queue import counted_trials
from dqn_tune.tuning import records
from dqn_tune.tuning.artifacts import study_artifact_store
from dqn_tune.tuning.checkpoints import job_checkpoints, retry_interrupted
from dqn_tune.tuning.defaults import CHECKPOINT_EVERY, VALIDATE_TOP_MAX, VALIDATION_SEEDS
from dqn_tune.tuning.notes import mark_recommendation
from dqn_tune.tuning.objective import run_seed_trials
from dqn_tune.tuning.progress import print_line
from dqn_tune.tuning.recommendation import RULE, ConfigStats, Recommendation, recommend
from dqn_tune.tuning.seeds import VALIDATION, validation_seeds

SUFFIX = "-validation"
SOURCE_TRIAL = "source_trial"
"""Param of a validation trial: the number of the tuning trial whose config it trains."""
SEED = "seed"
"""Param of a validation trial: its held-out training seed."""
MAX_TRIAL_NUMBER = 2**31 - 1
KEPT_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
"""States of a finished cell (PRUNED: its run diverged); a cell with only FAIL trials is queued again."""

Cell = tuple[int, int]
"""(tuning trial number, held-out seed)."""


def validation_study_name(tuning_study: str) -> str:
    """The name of a tuning study's validation study."""
    return f"{tuning_study}{SUFFIX}"


def top_trials(study: optuna.Study, k: int) -> list[FrozenTrial]:
    """The `k` complete trials with the highest values (ties: the earlier trial); StorageError if there is none."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise StorageError(
            f"study {study.study_name!r} has no complete trial to validate "
            f"({len(study.get_trials(deepcopy=False))} trial(s) in other states); run or resume it first"
        )
    return sorted(complete, key=lambda t: (-float(t.value), t.number))[:k]  # type: ignore[arg-type]


def _config_of(trial: FrozenTrial) -> int:
    """The tuning trial whose config a validation trial trains (its own number if it is no cell: never batched)."""
    cell = cell_of(trial)
    return -1 - trial.number if cell is None else cell[0]


def cell_of(trial: FrozenTrial) -> Cell | None:
    """The (tuning trial, seed) a validation trial trains, also before it ran (queued, or failed early)."""
    params = {**queued_params(trial), **trial.params}
    if SOURCE_TRIAL not in params or SEED not in params:
        return None
    return int(params[SOURCE_TRIAL]), int(params[SEED])


@dataclass(frozen=True, slots=True)
class ValidationSettings:
    """A validation of a tuning study: a job of the study runner (picklable)."""

    tuning_study: str
    storage: StorageSettings
    top_k: int = VALIDATE_TOP_MAX
    seeds: int = VALIDATION_SEEDS
    artifacts: bool = True
    seed: int = 0
    """Seeds the runner's samplers; unused, every cell is queued with fixed params."""
    artifact_dir: str | None = None
    """Where the runs' learning curves go; None: the tuning study's stored directory (else beside the storage)."""
    batch: int | None = None
    """At most this many of a config's seeds train as one batched group. None: run_validation splits a config's
    seeds between its workers (ceil(seeds / workers)), so that a single config keeps every worker busy."""
    device: str = "cpu"
    """Where the runs' networks train (see dqn_tune.dqn.device)."""
    checkpoint_every: int = CHECKPOINT_EVERY
    """Env steps between two checkpoints of a batch's runs (0: none); a retried batch resumes from its predecessors'."""

    def __post_init__(self) -> None:
        check_device(self.device)
        for name, lowest in (("top_k", 1), ("seeds", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise ConfigError(f"{name} = {value!r} is invalid: expected an integer >= {lowest}", field=name)

    @property
    def study_name(self) -> str:
        """The validation study's name."""
        return validation_study_name(self.tuning_study)

    def cells(self, top: Sequence[FrozenTrial]) -> list[Cell]:
        """Every (tuning trial, held-out seed) pair to run, configs in rank order."""
        return [(trial.number, seed) for trial in top for seed in validation_seeds(self.seeds)]

    def prepare(self, storage: SharedStorage, command: str) -> Plan:
        """Create or load the validation study, queue every missing or failed cell; the study may hold no more."""
        top = top_trials(load_study(storage, self.tuning_study), self.top_k)
        created = self.study_name not in study_names(storage)
        study = optuna.create_study(
            study_name=self.study_name, storage=storage, direction="maximize", load_if_exists=True
        )
        of = study.user_attrs.get(records.VALIDATION_OF)
        if of is None and not created and study.get_trials(deepcopy=False):
            raise StorageError(
                f"study {self.study_name!r} exists and is not a validation study; rename or delete it to validate"
            )
        if created or of is None:
            study.set_user_attr(records.VALIDATION_OF, self.tuning_study)
        fail_stale_trials(study)
        retry_interrupted(study)  # batches stopped by a signal with a checkpoint: resumed as the same batch
        held = {
            cell
            for t in study.get_trials(deepcopy=False)
            if t.state in (*KEPT_STATES, TrialState.WAITING, TrialState.RUNNING) and (cell := cell_of(t))
        }
        for trial in top:
            records.trial_config(trial)  # a trial without its config is refused before anything is queued
        for number, seed in self.cells(top):
            if (number, seed) not in held:
                study.enqueue_trial({SOURCE_TRIAL: number, SEED: seed})
        return Plan(study, created, counted_trials(study), records.record_command(study, command))

    def load(self, storage: SharedStorage, sampler_seed: int) -> optuna.Study:
        """The study as workers open it (queued cells only: the sampler never picks a value)."""
        return optuna.load_study(
            study_name=self.study_name, storage=storage, sampler=RandomSampler(seed=sampler_seed), pruner=NopPruner()
        )

    def trial_objective(self) -> BatchObjective:
        """Train queued cells of one config (as stored on its tuning trial) on their held-out seeds as one batched
        group, each cell still a trial of its own."""
        store = study_artifact_store(self.storage, self.tuning_study, self.artifact_dir) if self.artifacts else None
        checkpoints = job_checkpoints(
            self.storage, self.tuning_study, self.artifact_dir, every=self.checkpoint_every, artifacts=self.artifacts
        )

        def run(trials: Sequence[optuna.Trial]) -> list[float | None]:
            source = next(iter({trial.suggest_int(SOURCE_TRIAL, 0, MAX_TRIAL_NUMBER) for trial in trials}))
            seeds = [trial.suggest_int(SEED, VALIDATION.start, VALIDATION.stop - 1) for trial in trials]
            tuning = optuna.load_study(study_name=self.tuning_study, storage=trials[0].storage)
            config = records.trial_config(tuning.get_trials(deepcopy=False)[source])
            held_out = ", ".join(f"#{seed - VALIDATION.start}" for seed in seeds)
            return run_seed_trials(
                trials,
                config,
                seeds,
                artifact_store=store,
                device=self.device,
                checkpoints=checkpoints,
                show=print_line,
                what=f"validation: config of trial {source}, held-out seed{'s' if len(seeds) > 1 else ''} {held_out}",
            )

        return BatchObjective(run, _config_of, self.batch or self.seeds)

    def describe(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """One line per finished run."""
        cell = cell_of(trial)
        if cell is None:
            return None
        outcome = (
            f"return {trial.value:.1f}"
            if trial.state == TrialState.COMPLETE
            else f"{trial.state.name.lower()}: {trial.user_attrs.get(attributes.FAIL_REASON, '')}".rstrip(": ")
        )
        seed_index = cell[1] - VALIDATION.start
        return f"  validation: config of trial {cell[0]}, held-out seed #{seed_index}: {outcome}"


@dataclass(frozen=True, slots=True)
class ValidationSummary:
    """What run_validation did, and the recommendation it stored."""

    study_name: str
    tuning_study: str
    runs: int
    """Validation runs finished by this command."""
    wall_time_s: float
    recommendation: Recommendation | None
    seeds: int
    """Held-out seeds per config."""
    missing: int
    """(config, seed) pairs without a finished run (interrupted, failed, or running elsewhere)."""
    interrupted: bool = False
    worker_error: str | None = None

    def lines(self) -> list[str]:
        """The table and the verdict, as printed."""
        out = [
            f"validation {self.study_name!r}: {self.runs} runs in {self.wall_time_s:.0f}s"
            + (" (interrupted)" if self.interrupted else "")
        ]
        if self.recommendation is not None:
            out += table_lines(self.recommendation)
            out.append(f"recommended: trial {self.recommendation.trial} ({self.recommendation.reason()})")
            comparison = self.recommendation.to_dict()["comparison"]
            if comparison:
                out.append(f"paired: {comparison}")
            warning = self.recommendation.no_spread_warning(self.seeds)
            if warning:
                out.append(f"note: {warning}")
        if self.missing:
            out.append(f"{self.missing} (config, seed) runs missing: run the same command again to finish them")
        if self.worker_error:
            out.append(f"a worker failed: {self.worker_error}")
        return out


def table_lines(recommendation: Recommendation) -> list[str]:
    """The validation table as fixed-width text, recommended config first."""
    header = f"{'trial':>6} {'tuned':>8} {'mean [95% CI]':>26} {'IQM':>8} {'min':>8} {'seeds':>6}"
    rows = [header]
    for row in recommendation.table:
        interval = row.interval
        ci = f"{row.mean:.1f} [{interval.low:.1f}, {interval.high:.1f}]"
        seeds = f"{len(row.returns)}" + (f"+{row.diverged}d" if row.diverged else "")
        rows.append(f"{row.trial:>6} {row.tuned_value:>8.1f} {ci:>26} {row.iqm:>8.1f} {row.min:>8.1f} {seeds:>6}")
    return rows


def validation_stats(study: optuna.Study, top: Sequence[FrozenTrial], seeds: Sequence[int]) -> list[ConfigStats]:
    """Per validated config, its finished runs on `seeds` (configs with no finished run are left out)."""
    finished: dict[Cell, FrozenTrial] = {}
    for trial in study.get_trials(deepcopy=False, states=KEPT_STATES):
        cell = cell_of(trial)
        if cell is not None:
            finished[cell] = trial
    table = []
    for source in top:
        runs = [(seed, finished[(source.number, seed)]) for seed in seeds if (source.number, seed) in finished]
        complete = [(seed, t) for seed, t in runs if t.state == TrialState.COMPLETE and t.value is not None]
        if runs:
            table.append(
                ConfigStats(
                    source.number,
                    float(source.value or math.nan),
                    tuple(s for s, _ in complete),
                    tuple(float(t.value) for _, t in complete),  # type: ignore[arg-type]
                    len(runs) - len(complete),
                    tuple(_curve_mean(t) for _, t in complete),
                )
            )
    return table


def _curve_mean(trial: FrozenTrial) -> float:
    """The mean return of a validation run's learning curve; NaN for a run stored without one."""
    runs = records.trial_runs(trial)
    return curve_auc(runs[0].curve_steps, runs[0].curve_returns) if runs else math.nan


def run_validation(
    settings: ValidationSettings,
    *,
    workers: int = 1,
    command: str = "",
    echo: Callable[[str], None] = print,
    executor: Executor | None = None,
) -> ValidationSummary:
    """Run the missing validation cells (on `executor`'s workers; None: local processes), then store the
    recommendation on the tuning study and the table in the validation study's dashboard note."""

    def started(plan: Plan, _before: int) -> None:
        queued = len(plan.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        configs = "the best config" if settings.top_k == 1 else f"the top {settings.top_k} configs"
        echo(
            f"validating {configs} of {settings.tuning_study!r} on {settings.seeds} held-out seeds each: {queued} "
            "runs to do"
        )

    split = dataclasses.replace(settings, batch=settings.batch or math.ceil(settings.seeds / max(1, workers)))
    outcome = run_job(split, trials=None, workers=workers, executor=executor, command=command, on_start=started)
    tuning = load_study(settings.storage.open(), settings.tuning_study)
    top = top_trials(tuning, settings.top_k)
    table = validation_stats(outcome.study, top, validation_seeds(settings.seeds))
    recommendation = recommend(table) if any(row.returns for row in table) else None
    if recommendation is not None:
        mark_recommendation(tuning, recommendation, settings.storage.url)
        optuna_dashboard.save_note(outcome.study, _note(settings, recommendation))
    done = {(row.trial, seed) for row in table for seed in row.seeds}
    missing = len(settings.cells(top)) - len(done) - sum(row.diverged for row in table)
    return ValidationSummary(
        settings.study_name,
        settings.tuning_study,
        outcome.finished,
        outcome.wall_time_s,
        recommendation,
        settings.seeds,
        missing,
        outcome.interrupted,
        outcome.worker_error,
    )


def _note(settings: ValidationSettings, recommendation: Recommendation) -> str:
    """The validation study's dashboard note: the table and the verdict."""
    rows = ["| trial | tuned value | mean [95% CI] | IQM | min | std | seeds |", "|---|---|---|---|---|---|---|"]
    for row in recommendation.table:
        interval = row.interval
        rows.append(
            f"| {row.trial} | {row.tuned_value:.1f} | {row.mean:.1f} [{interval.low:.1f}, "
            f"{interval.high:.1f}] | {row.iqm:.1f} | {row.min:.1f} | {row.std:.1f} | {len(row.returns)} |"
        )
    comparison = recommendation.to_dict()["comparison"]
    return (
        f"## Validation of `{settings.tuning_study}`\n\n"
        f"The top {settings.top_k} config(s), each trained on the same {settings.seeds} held-out seeds "
        f"(never used by tuning or retrain), judged on their final greedy return.\n\n"
        + "\n".join(rows)
        + f"\n\n**Recommended: trial {recommendation.trial}** ({RULE}).\n\n"
        + (f"Paired: {comparison}.\n" if comparison else "")
        + (f"\nNote: {warning}.\n" if (warning := recommendation.no_spread_warning(settings.seeds)) else "")
    )
