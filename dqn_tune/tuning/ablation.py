"""run_ablation: a grid study over replay-buffer size x target-update interval x seed.

The grid is an Optuna study with a GridSampler in the same storage as the tuning studies, one trial
per (buffer_size, target_update_interval, seed) cell. Re-running resumes: COMPLETE cells and PRUNED
ones (runs that diverged, which a re-run would only repeat) are kept; FAIL cells (crashed or
interrupted runs, and stale trials of killed workers) are run again.

GridSampler alone would skip FAIL cells (it counts them as visited) and, across processes, hands a
running cell out again once the grid runs low. So: trials are asked with the study runner's
exclusive `ask_trial` (one process at a time), failed cells are queued again as copies that keep
their grid id, and the study may only grow by one trial per never-tried grid id.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.pruners import NopPruner
from optuna.samplers import GridSampler
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.runner.attributes import FAIL_REASON, RETRY_OF
from dqn_tune.runner.optuna_internals import fail_stale_trials, grid_id
from dqn_tune.runner.run import Plan, run_job
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    StorageSettings,
    prepare_url,
    study_names,
)
from dqn_tune.runner.trial_loop import Objective
from dqn_tune.runner.trial_queue import counted_trials
from dqn_tune.tuning.objective import run_config
from dqn_tune.tuning.records import SPEC_ATTR, ablation_spec

BUFFER_SIZE = "buffer_size"
TARGET_INTERVAL = "target_update_interval"
SEED = "seed"
PARAMS = (BUFFER_SIZE, TARGET_INTERVAL, SEED)
KEPT_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
"""States whose cell is done; a cell with only FAIL trials is run again."""

Cell = tuple[int, int, int]
"""(buffer_size, target_update_interval, seed)."""
MAX_CELLS = 10_000
"""Largest grid (buffer sizes x target intervals x seeds): each cell is a training run and a trial."""


@dataclass(frozen=True, slots=True)
class AblationSpec:
    """What an ablation trains: the base config and the grid of buffer sizes, target intervals and seeds."""

    base: DQNConfig
    buffer_sizes: tuple[int, ...]
    target_intervals: tuple[int, ...]
    seeds: int
    base_study: str | None = None
    """The study the base config came from (its best trial), if any."""

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds = {self.seeds!r} is invalid: expected an integer >= 1", field="seeds")
        object.__setattr__(self, "buffer_sizes", tuple(self.buffer_sizes))
        object.__setattr__(self, "target_intervals", tuple(self.target_intervals))
        size = len(self.buffer_sizes) * len(self.target_intervals) * self.seeds
        if size > MAX_CELLS:
            lists = {"buffer_sizes": len(self.buffer_sizes), "target_intervals": len(self.target_intervals)}
            field = "seeds" if size // self.seeds <= MAX_CELLS else max(lists, key=lambda name: lists[name])
            raise ConfigError(f"{field}: the grid of {len(self.buffer_sizes)} buffer sizes x {len(self.target_intervals)} "
                              f"target intervals x {self.seeds} seeds has {size} cells; expected at most {MAX_CELLS} "
                              "(each cell is a training run)", field=field)
        object.__setattr__(self, "buffer_sizes", _sorted_values("buffer_sizes", self.buffer_sizes))
        object.__setattr__(self, "target_intervals", _sorted_values("target_intervals", self.target_intervals))
        small = [size for size in self.buffer_sizes if size < self.base.batch_size]
        if small:
            raise ConfigError(f"buffer_sizes {small} are below the batch size ({self.base.batch_size}): "
                              f"expected sizes >= {self.base.batch_size}", field="buffer_sizes")
        for buffer_size, interval in itertools.product(self.buffer_sizes, self.target_intervals):
            self.config_for(buffer_size, interval)

    @property
    def search_space(self) -> dict[str, list[int]]:
        """The GridSampler search space; the seed is a grid parameter like the others."""
        return {BUFFER_SIZE: list(self.buffer_sizes), TARGET_INTERVAL: list(self.target_intervals),
                SEED: list(range(self.seeds))}

    @property
    def largest_config(self) -> DQNConfig:
        """The cell config that needs the most memory: the largest buffer size."""
        return self.config_for(self.buffer_sizes[-1], self.target_intervals[0])

    @property
    def cells(self) -> list[Cell]:
        """Every (buffer_size, target_update_interval, seed) of the grid."""
        return list(itertools.product(self.buffer_sizes, self.target_intervals, range(self.seeds)))

    @property
    def default_study_name(self) -> str:
        """A name that is the same for the same ablation, so re-running the command resumes it."""
        key = json.dumps(self.definition(), sort_keys=True)
        return f"ablation-{self.base.env_id}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def definition(self) -> dict[str, Any]:
        """What makes two ablations the same: to_dict() without the base study's name and the base's
        buffer_size and target_update_interval (every cell sets its own)."""
        data = {key: value for key, value in self.to_dict().items() if key != "base_study"}
        data["base"] = {k: v for k, v in data["base"].items() if k not in (BUFFER_SIZE, TARGET_INTERVAL)}
        return data

    def config_for(self, buffer_size: int, target_interval: int) -> DQNConfig:
        """The base config with one cell's buffer size and target-update interval."""
        return self.base.replace(buffer_size=buffer_size, target_update_interval=target_interval)

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives, stored as the study's SPEC_ATTR user attribute."""
        return {"base": self.base.to_dict(), "buffer_sizes": list(self.buffer_sizes),
                "target_intervals": list(self.target_intervals), "seeds": self.seeds, "base_study": self.base_study}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AblationSpec:
        """Inverse of to_dict."""
        return cls(DQNConfig.from_dict(data["base"]), tuple(data["buffer_sizes"]), tuple(data["target_intervals"]),
                   int(data["seeds"]), data.get("base_study"))


@dataclass(frozen=True, slots=True)
class AblationOutcome:
    """What one run_ablation call did."""

    study_name: str
    ran: tuple[Cell, ...]
    """Cells whose trial finished in this call (any state), in no particular order."""
    done_before: int
    """Cells that were done (COMPLETE or PRUNED) before this call."""
    left: tuple[Cell, ...]
    """Cells not done when this call returned (interrupted, failed again, or running elsewhere)."""
    interrupted: bool = False
    worker_error: str | None = None
    """How a worker process failed or died (its cells are retried), if one did."""


def cell_of(trial: FrozenTrial) -> Cell | None:
    """The grid cell a trial ran, or None if it has not suggested its params yet."""
    if not all(name in trial.params for name in PARAMS):
        return None
    return (int(trial.params[BUFFER_SIZE]), int(trial.params[TARGET_INTERVAL]), int(trial.params[SEED]))


def done_cells(trials: Iterable[FrozenTrial]) -> set[Cell]:
    """Cells with a COMPLETE or PRUNED (diverged) trial."""
    return {cell for trial in trials if trial.state in KEPT_STATES and (cell := cell_of(trial)) is not None}


def open_ablation(spec: AblationSpec, storage: SharedStorage, study_name: str | None = None) -> optuna.Study:
    """Create or load the ablation's study (default name: spec.default_study_name) with its GridSampler.

    An existing study must hold the same ablation (StorageError otherwise, before anything is written).
    """
    name = study_name or spec.default_study_name
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=grid_sampler(spec))
        _check_same_ablation(study, spec)
    else:
        study = optuna.create_study(study_name=name, storage=storage, direction="maximize",
                                    sampler=grid_sampler(spec), load_if_exists=True)
    if ablation_spec(study) is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def _check_same_ablation(study: optuna.Study, spec: AblationSpec) -> None:
    where = f"study {study.study_name!r}"
    stored = ablation_spec(study)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise StorageError(f"{where} is not an ablation study (no {SPEC_ATTR!r} attribute); "
                               "use another --study-name")
        return
    have, wanted = AblationSpec.from_dict(stored).definition(), spec.definition()
    differ = [key for key in ("buffer_sizes", "target_intervals", "seeds") if have[key] != wanted[key]]
    differ += [field for field, value in wanted["base"].items() if have["base"][field] != value]
    if differ:
        raise StorageError(f"{where} holds an ablation with other {', '.join(differ)}; "
                           "run it with the same settings, or use another --study-name")


def grid_sampler(spec: AblationSpec) -> GridSampler:
    """The grid's sampler; the same seed in every process, so a grid id means the same cell everywhere."""
    return GridSampler(spec.search_space, seed=0)


def queue_failed_cells(study: optuna.Study, spec: AblationSpec) -> int:
    """Queue again each cell whose trials all failed; return how many trials the grid study should hold.

    Cells are keyed by GridSampler's grid id, which every trial of the grid carries (retries too),
    even one whose worker died before it suggested its params. A retry copies the failed trial's
    cell like Optuna's heartbeat retry does, and is not counted towards the total. The total
    (counted trials + grid ids no trial holds) is what `ask_trial` may create: exactly one trial
    per never-tried cell, so GridSampler never has to re-evaluate a cell. Call under the study lock.
    """
    fail_stale_trials(study)
    trials = [t for t in study.get_trials(deepcopy=False) if grid_id(t) is not None]
    settled = {grid_id(t) for t in trials if t.state != TrialState.FAIL}
    for cell in {grid_id(t) for t in trials} - settled:
        failed = max((t for t in trials if grid_id(t) == cell), key=lambda t: t.number)
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=failed.params, distributions=failed.distributions,
            system_attrs={**failed.system_attrs, RETRY_OF: failed.system_attrs.get(RETRY_OF, failed.number)}))
    held = {grid_id(t) for t in trials}
    return counted_trials(study) + len(spec.cells) - len(held)


def cell_objective(spec: AblationSpec) -> Objective:
    """Train the trial's cell (one seed); a diverging run prunes it with a reason (see `run_config`)."""

    def objective(trial: optuna.Trial) -> float:
        buffer_size, target_interval, seed = (trial.suggest_categorical(name, values)
                                              for name, values in spec.search_space.items())
        return run_config(trial, spec.config_for(int(buffer_size), int(target_interval)), [int(seed)])

    return objective


@dataclass(frozen=True, slots=True)
class AblationJob:
    """The ablation as a job of the study runner: GridSampler cells, each trained on one seed (picklable)."""

    spec: AblationSpec
    study_name: str
    storage: StorageSettings
    verbose: bool = False
    seed: int = 0
    """Unused: GridSampler has the same seed in every process, so a grid id means the same cell everywhere."""

    def prepare(self, storage: SharedStorage, command: str) -> Plan:
        """Create or load the grid study, queue its failed cells again; the cap lets each untried cell start once."""
        created = self.study_name not in study_names(storage)
        study = open_ablation(self.spec, storage, self.study_name)
        return Plan(study, created, queue_failed_cells(study, self.spec))

    def load(self, storage: SharedStorage, sampler_seed: int) -> optuna.Study:
        """The study with the grid's sampler; no pruner (every cell runs to the end)."""
        return optuna.load_study(study_name=self.study_name, storage=storage, sampler=grid_sampler(self.spec),
                                 pruner=NopPruner())

    def trial_objective(self) -> Objective:
        """Train the trial's cell."""
        return cell_objective(self.spec)

    def describe(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """One line per finished cell when verbose."""
        if not self.verbose:
            return None
        outcome = (f"final return {trial.value:.1f}" if trial.state == TrialState.COMPLETE
                   else f"{trial.state.name}: {trial.user_attrs.get(FAIL_REASON, '')}")
        return (f"  trial {trial.number}: buffer {trial.params.get(BUFFER_SIZE)}, target interval "
                f"{trial.params.get(TARGET_INTERVAL)}, seed {trial.params.get(SEED)}: {outcome}")


def run_ablation(*, spec: AblationSpec, storage: str | None = None, study_name: str | None = None, workers: int = 1,
                 verbose: bool = False, heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
                 grace_period_s: int = GRACE_PERIOD_S) -> AblationOutcome:
    """Run every cell of the grid that is not done yet, in `workers` processes; report what ran and what is left.

    SIGINT/SIGTERM stop cleanly: running cells are failed (and run again next time), and the
    outcome says `interrupted`.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r} is invalid: expected an integer >= 1", field="workers")
    job = AblationJob(spec, study_name or spec.default_study_name,
                      StorageSettings(prepare_url(storage), heartbeat_interval_s, grace_period_s), verbose)
    finished_before: set[int] = set()
    done_before = 0

    def started(plan: Plan, _trials_before: int) -> None:
        nonlocal done_before
        trials = plan.study.get_trials(deepcopy=False)
        finished_before.update(t.number for t in trials if t.state.is_finished())
        done_before = len(done_cells(trials))
        if verbose:
            print(f"ablation {job.study_name!r}: {len(spec.cells)} cells, {done_before} done, "
                  f"{len(spec.cells) - done_before} to run", flush=True)

    outcome = run_job(job, trials=None, workers=workers, on_start=started)
    trials = outcome.study.get_trials(deepcopy=False)
    ran = [cell for t in trials if t.state.is_finished() and t.number not in finished_before
           and (cell := cell_of(t)) is not None]
    left = sorted(set(spec.cells) - done_cells(trials))
    return AblationOutcome(job.study_name, tuple(ran), done_before, tuple(left), outcome.interrupted,
                           outcome.worker_error)


def _sorted_values(name: str, values: Iterable[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values:
        raise ConfigError(f"{name} is empty: expected one or more integers >= 1", field=name)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ConfigError(f"{name} {list(values)} are invalid: {bad[0]!r} is not an integer >= 1", field=name)
    duplicates = sorted(value for value, count in Counter(values).items() if count > 1)
    if duplicates:
        raise ConfigError(f"{name} {list(values)} repeat {duplicates}: expected each value once", field=name)
    return tuple(sorted(values))
