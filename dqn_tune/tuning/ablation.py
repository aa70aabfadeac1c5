"""run_ablation: a grid study over any DQNConfig fields x seed.

The grid is an Optuna study with a GridSampler in the same storage as the tuning studies, one trial
per cell: one value of every axis (a DQNConfig field and its values) and a seed. Re-running resumes:
COMPLETE cells and PRUNED ones (runs that diverged, which a re-run would only repeat) are kept; FAIL
cells (crashed or interrupted runs, and stale trials of killed workers) are run again.

GridSampler alone would skip FAIL cells (it counts them as visited) and, across processes, hands a
running cell out again once the grid runs low. So: trials are asked with the study runner's
exclusive `ask_trial` (one process at a time), failed cells are queued again as copies that keep
their grid id, and the study may only grow by one trial per never-tried grid id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import optuna
from optuna.pruners import NopPruner
from optuna.samplers import GridSampler
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.runner.attributes import FAIL_REASON
from dqn_tune.runner.defaults import RETRY_TIMEOUT_S
from dqn_tune.runner.optuna_internals import fail_stale_trials, grid_id
from dqn_tune.runner.retry import DEFAULT_RETRY, RetryPolicy
from dqn_tune.runner.run import Plan, run_job
from dqn_tune.runner.shared_storage import SharedStorage
from dqn_tune.runner.storage import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    StorageSettings,
    open_existing_storage,
    prepare_url,
    study_names,
)
from dqn_tune.runner.trial_loop import Objective
from dqn_tune.runner.trial_queue import counted_trials, queue_retry
from dqn_tune.tuning.checkpoints import TrialCheckpoints, job_checkpoints
from dqn_tune.tuning.defaults import CHECKPOINT_EVERY
from dqn_tune.tuning.objective import run_config
from dqn_tune.tuning.progress import print_line
from dqn_tune.tuning.records import SPEC_ATTR, ablation_spec, config_summary, trial_runs
from dqn_tune.tuning.search_space import Choice, SearchSpace, Value, choice_label, suggest_config

if TYPE_CHECKING:
    from dqn_tune.dqn.observations import ObservationSpec

SEED = "seed"
"""The grid parameter of a cell's training seed (0 to seeds - 1), beside the axes."""
KEPT_STATES = (TrialState.COMPLETE, TrialState.PRUNED)
"""States whose cell is done; a cell with only FAIL trials is run again."""
LEGACY_AXES = {"buffer_size": "buffer_sizes", "target_update_interval": "target_intervals"}
"""The one grid of ablation studies stored before any field could be an axis, and the keys of its value lists."""

Cell = tuple[Any, ...]
"""One value per axis, in the grid's order, then the seed."""
MAX_CELLS = 10_000
"""Largest grid (product of the axes' lengths x seeds): each cell is a training run and a trial."""


@dataclass(frozen=True, slots=True)
class AblationSpec:
    """What an ablation trains: the base config, the grid (DQNConfig field -> values) and the seeds per setting.

    Each axis's values are checked against the field's type and sorted; every setting of the grid must
    give a valid config. Axis order is the report's (rows, then columns of a heatmap).
    """

    base: DQNConfig
    grid: Mapping[str, tuple[Value, ...]]
    seeds: int
    base_study: str | None = None
    """The study the base config came from, if any."""
    base_trial: int | None = None
    """Its trial whose config is the base."""
    base_reason: str | None = None
    """Why that trial (validation's recommendation, or the best tuning value)."""

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"seeds = {self.seeds!r} is invalid: expected an integer >= 1", field="seeds")
        if not self.grid:
            raise ConfigError("grid is empty: expected one or more axes (a DQNConfig field and its values)")
        lists = {name: _json_values(values) for name, values in self.grid.items()}
        empty = [name for name, values in lists.items() if not values]
        if empty:
            raise ConfigError(f"grid {empty[0]} has no values: expected one or more", field=empty[0])
        space = SearchSpace.from_mapping({name: {"choices": values} for name, values in lists.items()}, source="grid")
        object.__setattr__(
            self,
            "grid",
            {name: _sorted_values(name, cast(Choice, param).choices) for name, param in space.params.items()},
        )
        size = self.seeds
        for values in self.grid.values():
            size *= len(values)
        if size > MAX_CELLS:
            shape = " x ".join(f"{len(values)} {name}" for name, values in self.grid.items())
            raise ConfigError(
                f"grid: {shape} x {self.seeds} seeds make {size} cells; expected at most {MAX_CELLS} "
                "(each cell is a training run)"
            )
        for setting in self.settings:
            try:
                self.config_for(setting)
            except ConfigError as exc:
                raise ConfigError(
                    f"grid setting {assignments(self.grid, setting)} gives an invalid config: {exc}", field=exc.field
                ) from None

    @property
    def base_source(self) -> str:
        """Where the base config came from, e.g. "trial 7 of study 'tuned', recommended by validation ..."."""
        if self.base_study is None:
            return self.base_reason or "the defaults"
        if self.base_trial is None:  # stored before the trial was recorded
            return f"the best trial of study {self.base_study!r}"
        return f"trial {self.base_trial} of study {self.base_study!r}, {self.base_reason}"

    @property
    def base_description(self) -> str:
        """Where the base config came from and what it holds, e.g. "the defaults: CartPole-v1, 30000 steps;
        eval_freq=3000 (others default); each cell sets double_dqn, target_update_interval and its seed"."""
        return f"{self.base_source}: {config_summary(self.base)}; each cell sets {', '.join(self.grid)} and its seed"

    @property
    def settings(self) -> list[tuple[Value, ...]]:
        """Every combination of the axes' values (a cell without its seed), in grid order."""
        return list(itertools.product(*self.grid.values()))

    @property
    def cells(self) -> list[Cell]:
        """Every cell of the grid: each setting with each seed."""
        return list(itertools.product(*self.grid.values(), range(self.seeds)))

    @property
    def space(self) -> SearchSpace:
        """The axes as a search space of choices (what a cell suggests; what the memory check reads)."""
        return SearchSpace({name: Choice(values) for name, values in self.grid.items()})

    @property
    def search_space(self) -> dict[str, list[Any]]:
        """The GridSampler search space: the axes' choice labels, and the seed as a parameter like them."""
        return {
            **{name: [choice_label(v) for v in values] for name, values in self.grid.items()},
            SEED: list(range(self.seeds)),
        }

    def largest_config(self, observation: ObservationSpec, n_actions: int) -> DQNConfig:
        """The setting's config that needs the most memory to train."""
        return self.space.largest_config(self.base, observation, n_actions)

    def config_for(self, setting: Iterable[Value]) -> DQNConfig:
        """The base config with one setting's values (one per axis, in grid order)."""
        return self.base.replace(**dict(zip(self.grid, setting, strict=True)))

    def cell_of(self, trial: FrozenTrial) -> Cell | None:
        """The cell a trial ran, or None if it has not suggested its params yet."""
        if not all(name in trial.params for name in (*self.grid, SEED)):
            return None
        values = {name: {choice_label(v): v for v in values} for name, values in self.grid.items()}
        return (*(values[name][trial.params[name]] for name in self.grid), int(trial.params[SEED]))

    @property
    def default_study_name(self) -> str:
        """A name that is the same for the same ablation, so re-running the command resumes it."""
        key = json.dumps(self.definition(), sort_keys=True)
        return f"ablation-{self.base.env_id}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"

    def definition(self) -> dict[str, Any]:
        """What makes two ablations the same: the grid, the seeds and the base's fields outside the grid that
        differ from the defaults (a DQNConfig field added later, at its default, keeps the name)."""
        defaults = DQNConfig().to_dict()
        base = {
            name: value
            for name, value in self.base.to_dict().items()
            if name not in self.grid and (name == "env_id" or value != defaults[name])
        }
        return {"base": base, "grid": self.to_dict()["grid"], "seeds": self.seeds}

    def differences(self, other: AblationSpec) -> list[str]:
        """What `other` changes: 'grid', 'seeds', and the base's fields outside both grids."""
        axes = {*self.grid, *other.grid}
        return [name for name in ("grid", "seeds") if getattr(self, name) != getattr(other, name)] + [
            f.name
            for f in dataclasses.fields(DQNConfig)
            if f.name not in axes and getattr(self.base, f.name) != getattr(other.base, f.name)
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives, stored as the study's SPEC_ATTR user attribute."""
        grid = {name: _json_values(values) for name, values in self.grid.items()}
        return {
            "base": self.base.to_dict(),
            "grid": grid,
            "seeds": self.seeds,
            "base_study": self.base_study,
            "base_trial": self.base_trial,
            "base_reason": self.base_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AblationSpec:
        """Inverse of to_dict; also reads the form stored before any field could be an axis (LEGACY_AXES)."""
        grid = data["grid"] if "grid" in data else {name: data[key] for name, key in LEGACY_AXES.items()}
        return cls(
            DQNConfig.from_dict(data["base"]),
            grid,
            int(data["seeds"]),
            data.get("base_study"),
            data.get("base_trial"),
            data.get("base_reason"),
        )


def assignments(names: Iterable[str], values: Iterable[Value]) -> str:
    """e.g. 'n_steps=3, hidden_sizes=64x64': the values of `names`, as --grid takes them."""
    return ", ".join(f"{name}={value_text(value)}" for name, value in zip(names, values, strict=True))


def value_text(value: Value) -> str:
    """A grid value as --grid takes it: 64x64, true, 0.99."""
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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


def done_cells(spec: AblationSpec, trials: Iterable[FrozenTrial]) -> set[Cell]:
    """Cells with a COMPLETE or PRUNED (diverged) trial."""
    return {cell for trial in trials if trial.state in KEPT_STATES and (cell := spec.cell_of(trial)) is not None}


def ablation_study_name(spec: AblationSpec, storage: str | None, retry: RetryPolicy = DEFAULT_RETRY) -> str:
    """The study `spec` resumes when no name is given: its default name, or a study of that form holding the
    same ablation whose name an earlier version hashed from another stored form."""
    try:
        rdb = open_existing_storage(storage, retry=retry)
    except StorageError:  # no study there yet (or no usable storage: running says why)
        return spec.default_study_name
    default = re.compile(rf"ablation-{re.escape(spec.base.env_id)}-[0-9a-f]{{10}}")
    for name in sorted(study_names(rdb), key=lambda name: name != spec.default_study_name):
        stored = ablation_spec(optuna.load_study(study_name=name, storage=rdb)) if default.fullmatch(name) else None
        if stored is not None and not _differences(stored, spec):
            return name
    return spec.default_study_name


def _differences(stored: Mapping[str, Any], spec: AblationSpec) -> list[str]:
    """How a stored ablation differs from `spec`; ['unreadable'] for one this version cannot read."""
    try:
        return AblationSpec.from_dict(stored).differences(spec)
    except (ConfigError, KeyError, TypeError, ValueError):
        return ["unreadable"]


def open_ablation(spec: AblationSpec, storage: SharedStorage, study_name: str | None = None) -> optuna.Study:
    """Create or load the ablation's study (default name: spec.default_study_name) with its GridSampler.

    An existing study must hold the same ablation (StorageError otherwise, before anything is written).
    """
    name = study_name or spec.default_study_name
    if name in study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage, sampler=grid_sampler(spec))
        _check_same_ablation(study, spec)
    else:
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", sampler=grid_sampler(spec), load_if_exists=True
        )
    if ablation_spec(study) is None:
        study.set_user_attr(SPEC_ATTR, spec.to_dict())
    return study


def _check_same_ablation(study: optuna.Study, spec: AblationSpec) -> None:
    where = f"study {study.study_name!r}"
    stored = ablation_spec(study)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise StorageError(
                f"{where} is not an ablation study (no {SPEC_ATTR!r} attribute); use another --study-name"
            )
        return
    differ = _differences(stored, spec)
    if differ:
        raise StorageError(
            f"{where} holds an ablation with other {', '.join(differ)}; "
            "run it with the same settings, or use another --study-name"
        )


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
        queue_retry(study, max((t for t in trials if grid_id(t) == cell), key=lambda t: t.number))
    held = {grid_id(t) for t in trials}
    return counted_trials(study) + len(spec.cells) - len(held)


def cell_objective(
    spec: AblationSpec, checkpoints: TrialCheckpoints | None = None, show: Callable[[str], None] | None = None
) -> Objective:
    """Train the trial's cell (one seed, checkpointed); a diverging run prunes it with a reason (see `run_config`,
    which shows a long cell's evaluations through `show`)."""

    def objective(trial: optuna.Trial) -> float:
        config = suggest_config(trial, spec.base, spec.space)
        seeds = [int(trial.suggest_categorical(SEED, list(range(spec.seeds))))]
        return run_config(trial, config, seeds, checkpoints=checkpoints, show=show)

    return objective


def finished_cell_line(spec: AblationSpec, trial: FrozenTrial) -> str:
    """e.g. 'trial 4: n_steps=3, seed 1: final weights 212.0, best checkpoint 500.0 (step 30000)'."""
    cell = spec.cell_of(trial)
    where = f"trial {trial.number}" + (
        "" if cell is None else f": {assignments(spec.grid, cell[:-1])}, seed {cell[-1]}"
    )
    records = trial_runs(trial)
    if trial.state != TrialState.COMPLETE or not records:
        return f"{where}: {trial.state.name}: {trial.user_attrs.get(FAIL_REASON, '')}"
    record = records[0]
    return f"{where}: final weights {record.curve_returns[-1]:.1f}, best checkpoint {record.mean_return:.1f}" + (
        "" if record.selected_step is None else f" (step {record.selected_step})"
    )


@dataclass(frozen=True, slots=True)
class AblationJob:
    """The ablation as a job of the study runner: GridSampler cells, each trained on one seed (picklable)."""

    spec: AblationSpec
    study_name: str
    storage: StorageSettings
    verbose: bool = False
    seed: int = 0
    """Unused: GridSampler has the same seed in every process, so a grid id means the same cell everywhere."""
    checkpoint_every: int = CHECKPOINT_EVERY
    """Env steps between two checkpoints of a cell's run (0: none), in the artifact store beside the storage."""

    def prepare(self, storage: SharedStorage, command: str) -> Plan:
        """Create or load the grid study, queue its failed cells again; the cap lets each untried cell start once."""
        created = self.study_name not in study_names(storage)
        study = open_ablation(self.spec, storage, self.study_name)
        return Plan(study, created, queue_failed_cells(study, self.spec))

    def load(self, storage: SharedStorage, sampler_seed: int) -> optuna.Study:
        """The study with the grid's sampler; no pruner (every cell runs to the end)."""
        return optuna.load_study(
            study_name=self.study_name, storage=storage, sampler=grid_sampler(self.spec), pruner=NopPruner()
        )

    def trial_objective(self) -> Objective:
        """Train the trial's cell."""
        return cell_objective(
            self.spec,
            job_checkpoints(self.storage, self.study_name, None, every=self.checkpoint_every, artifacts=False),
            print_line if self.verbose else None,
        )

    def describe(self, study: optuna.Study, trial: FrozenTrial) -> str | None:
        """One line per finished cell when verbose."""
        return f"  {finished_cell_line(self.spec, trial)}" if self.verbose else None


def run_ablation(
    *,
    spec: AblationSpec,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
    verbose: bool = False,
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S,
    grace_period_s: int = GRACE_PERIOD_S,
    checkpoint_every: int = CHECKPOINT_EVERY,
    storage_retry_timeout_s: float = RETRY_TIMEOUT_S,
) -> AblationOutcome:
    """Run every cell of the grid that is not done yet, in `workers` processes; report what ran and what is left.

    Without `study_name`, the study is `ablation_study_name(spec, storage)`. SIGINT/SIGTERM stop cleanly:
    running cells are failed (and run again next time), and the outcome says `interrupted`.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers = {workers!r} is invalid: expected an integer >= 1", field="workers")
    url = prepare_url(storage)
    job = AblationJob(
        spec,
        study_name or ablation_study_name(spec, url, RetryPolicy(storage_retry_timeout_s)),
        StorageSettings(url, heartbeat_interval_s, grace_period_s, storage_retry_timeout_s),
        verbose,
        checkpoint_every=checkpoint_every,
    )
    finished_before: set[int] = set()
    done_before = 0

    def started(plan: Plan, _trials_before: int) -> None:
        nonlocal done_before
        trials = plan.study.get_trials(deepcopy=False)
        finished_before.update(t.number for t in trials if t.state.is_finished())
        done_before = len(done_cells(spec, trials))
        if verbose:
            print(
                f"ablation {job.study_name!r}: {len(spec.cells)} cells, {done_before} done, "
                f"{len(spec.cells) - done_before} to run",
                flush=True,
            )
            print(f"base config: {spec.base_description}", flush=True)

    outcome = run_job(job, trials=None, workers=workers, on_start=started)
    trials = outcome.study.get_trials(deepcopy=False)
    ran = [
        cell
        for t in trials
        if t.state.is_finished() and t.number not in finished_before and (cell := spec.cell_of(t)) is not None
    ]
    done = done_cells(spec, trials)
    left = [cell for cell in spec.cells if cell not in done]
    return AblationOutcome(
        job.study_name, tuple(ran), done_before, tuple(left), outcome.interrupted, outcome.worker_error
    )


def _json_values(values: Iterable[Value]) -> list[Any]:
    """An axis's values as JSON and TOML have them (layer widths as lists)."""
    return [list(value) if isinstance(value, tuple) else value for value in values]


def _sorted_values(name: str, values: Iterable[Value]) -> tuple[Value, ...]:
    """One axis's values, each once, in order."""
    values = tuple(values)
    repeated = [value for value, count in Counter(values).items() if count > 1]
    if repeated:
        raise ConfigError(f"grid {name} repeats {value_text(repeated[0])}: expected each value once", field=name)
    return tuple(sorted(values))
