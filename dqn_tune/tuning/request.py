"""TuneRequest: what one `tune` command asks for, and how it becomes a study job.

A setting left None was not given: resuming a study, it is read from the study's stored settings;
for a new study it takes its default (tuning/defaults.py, the one set of defaults of the library
and the CLI). A given setting that conflicts with the study is refused before anything is
written. The request writes itself back: its command line is stored in the study and its note.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial

from dqn_tune.dqn.config import DQNConfig, flag_name
from dqn_tune.dqn.envs import env_spaces, make_env
from dqn_tune.dqn.memory import check_memory
from dqn_tune.errors import ConfigError
from dqn_tune.runner.defaults import DEFAULT_STORAGE, GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, RETRY_TIMEOUT_S
from dqn_tune.runner.executor import Executor
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import StorageSettings, load_study, prepare_url, public_url
from dqn_tune.tuning.defaults import (
    CHECKPOINT_EVERY,
    ENV_ID,
    OBJECTIVE,
    PRUNER,
    SAMPLER,
    STUDY_SEED,
    TRIAL_SEEDS,
    VALIDATION_SEEDS,
    auto_validate_top,
    default_study_name,
)
from dqn_tune.tuning.objective import ObjectiveSettings, trial_base_config
from dqn_tune.tuning.presets import preset_for
from dqn_tune.tuning.resume import stored_settings
from dqn_tune.tuning.search_space import DEFAULT_SPACE, FIELD_TYPES, SearchSpace, load_search_space
from dqn_tune.tuning.selection import default_trial
from dqn_tune.tuning.study import StudySummary, TuneSettings, run_study
from dqn_tune.tuning.validation import ValidationSettings, ValidationSummary, run_validation

RESUMED = {
    "env_id": "env_id",
    "timesteps": "total_timesteps",
    "trial_seeds": "seeds",
    "objective": "objective",
    "seed": "seed",
    "sampler": "sampler",
    "pruner": "pruner",
}
"""Request fields that a resumed study reads from its stored settings (TuneSettings.to_attr keys) when left out."""
DEFAULTS: dict[str, Any] = {
    "env_id": ENV_ID,
    "trial_seeds": TRIAL_SEEDS,
    "objective": OBJECTIVE,
    "seed": STUDY_SEED,
    "sampler": SAMPLER,
    "pruner": PRUNER,
}
"""Their values for a new study (the budget defaults by env: the preset's per-trial budget)."""
FLAGS = {"env_id": "--env", "trial_seeds": "--trial-seeds", "timeout_s": "--timeout"}
"""Request fields whose flag is not `--<field>`."""


@dataclass(frozen=True, slots=True)
class TuneRequest:
    """One `tune` command: run trials into a study (creating or resuming it), then validate its top configs."""

    trials: int | None = None
    """Trials to run now (None: until `total_trials`, or until `timeout_s`)."""
    total_trials: int | None = None
    """Stop when the study holds this many trials, counting every machine's."""
    timeout_s: int | None = None
    """No trial starts after this many seconds."""
    env_id: str | None = None
    study_name: str | None = None
    """None: `dqn-<ENV_ID>`."""
    storage: str | None = None
    """SQLAlchemy URL; None: DEFAULT_STORAGE."""
    timesteps: int | None = None
    """Environment steps per training run; None: the env preset's per-trial budget (else DQNConfig's)."""
    trial_seeds: int | None = None
    """Training runs per trial; the trial's value is the mean of their scores."""
    objective: str | None = None
    seed: int | None = None
    """The study seed: samplers and every trial's training seeds derive from it."""
    sampler: str | None = None
    pruner: str | None = None
    preset: bool = True
    """Start a new study from the env's preset (its config, budget and space); False: the global defaults."""
    search_space: str | None = None
    """A TOML file changing the search space."""
    enqueue: Mapping[str, DQNConfig] = field(default_factory=dict)
    """Configs (by the file they were read from, as `dqn-tune best --out` writes them) whose sampled hyperparameters
    the study runs as trials first."""
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    """DQNConfig fields fixed for every trial (the command's hyperparameter flags)."""
    device: str = "cpu"
    artifacts: bool = True
    artifact_dir: str | None = None
    validate_top: int | None = None
    """Configs to validate on held-out seeds after tuning; None: `auto_validate_top`; 0: no validation."""
    validation_seeds: int = VALIDATION_SEEDS
    heartbeat_interval_s: int = HEARTBEAT_INTERVAL_S
    grace_period_s: int = GRACE_PERIOD_S
    storage_retry_timeout_s: int = RETRY_TIMEOUT_S
    """How long transient storage errors are retried before the command gives up."""
    checkpoint_every: int = CHECKPOINT_EVERY
    """Env steps between two checkpoints of a trial's runs (0: none)."""
    executor: str = "local"
    """Where the workers run (runner/executor.py EXECUTORS); the CLI builds it, the request records it."""
    ray_address: str | None = None
    worker_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.trials is None and self.total_trials is None and self.timeout_s is None:
            raise ConfigError(
                "give --trials N (trials to run now), --total-trials N (the study's total), "
                "--timeout SECONDS (trials until then), or several"
            )

    @property
    def study(self) -> str:
        """The study's name."""
        return self.study_name or default_study_name(self.env_id or ENV_ID)

    def merged(self, stored: Mapping[str, Any] | None) -> TuneRequest:
        """This request with every RESUMED field left out taken from `stored` (a study's settings) or its default."""
        filled: dict[str, Any] = {
            name: stored[key] if stored is not None and key in stored else DEFAULTS.get(name)
            for name, key in RESUMED.items()
            if getattr(self, name) is None
        }
        return dataclasses.replace(self, **filled)

    def command_line(self) -> str:
        """The command as given, with the settings that always apply spelled out (stored in the study and its note)."""
        words = ["dqn-tune", "tune"]
        for name in (
            "trials",
            "total_trials",
            "env_id",
            "study_name",
            "storage",
            "timesteps",
            "trial_seeds",
            "objective",
            "sampler",
            "pruner",
            "seed",
            "search_space",
            "timeout_s",
            "ray_address",
            "worker_gpus",
        ):
            value = getattr(self, name)
            if value is not None:
                words += [FLAGS.get(name, flag_name(name)), public_url(value) if name == "storage" else str(value)]
        for path in self.enqueue:
            words += ["--enqueue", path]
        if not self.preset:
            words.append("--no-preset")
        if self.executor != "local":
            words += ["--executor", self.executor]
        words += ["--device", self.device]
        if self.validate_top is not None:
            words += ["--validate-top", str(self.validate_top)]
        if self.validate_top != 0:
            words += ["--validation-seeds", str(self.validation_seeds)]
        if not self.artifacts:
            words.append("--no-artifacts")
        if self.artifact_dir is not None:
            words += ["--artifact-dir", self.artifact_dir]
        words += ["--checkpoint-every", str(self.checkpoint_every)]
        for name, value in self.hyperparameters.items():
            if isinstance(value, bool):
                words.append(flag_name(name) if value else flag_name(name).replace("--", "--no-", 1))
            else:
                words += [flag_name(name), ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
        return shlex.join(words)

    def plan(self) -> TunePlan:
        """Merge the request with the study it resumes (only reads the storage) and check everything that can be
        checked before the study is opened for writing: the base config, the search space, memory, fixed values."""
        stored = stored_settings(
            self.storage or DEFAULT_STORAGE, self.study, retry=RetryPolicy(self.storage_retry_timeout_s)
        )
        if stored is not None and not {"base_config", "search_space"} <= stored.keys():
            stored = None  # made by an older dqn-tune: the request decides, and the study's check refuses a mismatch
        request = self.merged(stored)
        env_id, seeds = str(request.env_id), int(request.trial_seeds or 0)  # set by `merged`
        preset = preset_for(env_id) if request.preset else None
        fixed = dict(request.hyperparameters)
        if stored is not None:
            base = DQNConfig.from_dict(stored["base_config"]).replace(
                env_id=request.env_id, total_timesteps=request.timesteps, **fixed
            )
        else:
            base = trial_base_config(env_id, timesteps=request.timesteps, preset=preset is not None, **fixed)
        if stored is not None and request.search_space is None:
            space = SearchSpace.from_mapping(stored["search_space"], source="the study's stored search space")
        else:
            space = load_search_space(request.search_space, base=preset.space if preset else DEFAULT_SPACE)
        space = space.without(fixed)
        space.check(base)
        with make_env(base.env_id) as env:
            dims = env_spaces(env)
        try:
            check_memory(space.largest_config(base, *dims), *dims, members=seeds)
        except ConfigError as exc:
            raise ConfigError(
                f"the largest config of the search space does not fit in memory: {exc}", field=exc.field
            ) from None
        if stored is not None:
            _check_fixed(stored, fixed, request.study)
        queued = [queued_trial(path, config, base, space) for path, config in request.enqueue.items()]
        settings = TuneSettings(
            study_name=request.study,
            storage=StorageSettings(
                prepare_url(request.storage),
                request.heartbeat_interval_s,
                request.grace_period_s,
                request.storage_retry_timeout_s,
            ),
            objective=ObjectiveSettings(
                base=base,
                space=space,
                seeds=seeds,
                objective=str(request.objective),
                study_seed=int(request.seed or 0),
                device=request.device,
            ),
            sampler=str(request.sampler),
            pruner=str(request.pruner),
            artifacts=request.artifacts,
            artifact_dir=request.artifact_dir,
            total_trials=request.total_trials,
            checkpoint_every=request.checkpoint_every,
            enqueued=tuple(params for params, _ in queued),
        )
        origin = (
            "resuming with the study's stored settings (a flag given must agree with them)"
            if stored is not None
            else f"starting from {preset.origin}"
            if preset
            else "starting from the global defaults"
            + ("" if not request.preset else f" ({request.env_id} has no preset)")
        )
        return TunePlan(request, settings, origin, self.command_line(), tuple(line for _, line in queued))


def queued_trial(path: str, config: DQNConfig, base: DQNConfig, space: SearchSpace) -> tuple[dict[str, Any], str]:
    """The params of the trial that the config read from `path` asks the study to run first, and a line saying what
    the trial takes from it; ConfigError (field ENQUEUE_FIELD) for a value outside the space."""
    source = f"--enqueue {path!r}"
    params = space.trial_params(config, source=source)
    trial, defaults = space.queued_config(base, config), DQNConfig()
    kept = [  # what the file sets (not DQNConfig's default) and the trial does not take
        name for name in FIELD_TYPES if getattr(config, name) not in (getattr(trial, name), getattr(defaults, name))
    ]
    line = f"{source}: the study runs its {', '.join(params)} as a trial (once per study)" + (
        f"; {', '.join(kept)} {'is' if len(kept) == 1 else 'are'} not sampled: that trial keeps the study's "
        f"{'value' if len(kept) == 1 else 'values'}, not the file's"
        if kept
        else ""
    )
    return params, line


def _check_fixed(stored: Mapping[str, Any], fixed: Mapping[str, Any], study: str) -> None:
    """Refuse a hyperparameter flag that changes a value the resumed study fixed (its trials would not compare)."""
    base = DQNConfig.from_dict(stored["base_config"])
    for name, value in fixed.items():
        if name not in stored["search_space"] and value != getattr(base, name):
            raise ConfigError(
                f"study {study!r} fixes {flag_name(name)} = {getattr(base, name)!r}, this command asks "
                f"for {value!r}; leave the flag out, give the same value or another --study-name",
                field=name,
            )


@dataclass(frozen=True, slots=True)
class TunePlan:
    """A checked request: the merged request, the study job, where its settings come from, the stored command."""

    request: TuneRequest
    settings: TuneSettings
    origin: str
    """Where the settings come from: the resumed study, the env's preset, or the global defaults."""
    command: str
    notes: tuple[str, ...] = ()
    """A line per --enqueue file: what its trial takes from it."""


@dataclass(frozen=True, slots=True)
class TuneOutcome:
    """What `run_tune` did: the study's summary and, when it ran, the validation's."""

    study: StudySummary
    validation: ValidationSummary | None = None
    pick: tuple[FrozenTrial, str] | None = None
    """The trial to take forward and why (`default_trial`): validation's pick, else the best; None without one."""

    def closing_lines(self) -> list[str]:
        """The config to take forward and the commands that take it there (the last lines `tune` prints)."""
        if self.pick is None:
            return []
        trial, why = self.pick
        study = self.study
        return [
            f"take forward: trial {trial.number} ({why}), value {trial.value:.2f} on its tuning seeds",
            *(f"  {name} = {value}" for name, value in trial.params.items()),
            f"storage: {study.storage_url}",
            f"next: {study.retrain_command}   # train the final agent on fresh seeds",
            f"      dqn-tune best --study-name {shlex.quote(study.study_name)} --storage "
            f"{shlex.quote(study.storage_url)} --out best.toml   # its full config, for 'dqn-tune train --config'",
            f"      {study.dashboard_command}   # browse every trial (read-only)",
        ]

    @property
    def exit_status(self) -> int:
        """130 if interrupted, 1 if a worker failed, else 0."""
        summaries = [self.study] + ([self.validation] if self.validation is not None else [])
        if any(summary.interrupted for summary in summaries):
            return 130
        return 1 if any(summary.worker_error for summary in summaries) else 0


def run_tune(
    plan: TunePlan,
    *,
    workers: int = 1,
    echo: Callable[[str], None] = print,
    progress: bool | None = None,
    executor: Executor | None = None,
) -> TuneOutcome:
    """Run the plan's trials in `workers` workers (on `executor`; None: local processes), echo the study's summary,
    then validate its top configs (unless the request says 0, no trial completed, or the run was cut short) and
    echo the validation's table."""
    request, settings = plan.request, plan.settings
    summary = run_study(
        settings,
        trials=request.trials,
        workers=workers,
        command=plan.command,
        echo=echo,
        progress=progress,
        timeout_s=request.timeout_s,
        executor=executor,
    )
    for line in summary.lines():
        echo(line)
    if summary.interrupted or summary.worker_error or summary.best_value is None:
        return TuneOutcome(summary)
    validation = None if request.validate_top == 0 else _validate(plan, summary, workers, echo, executor)
    if validation is None or not (validation.interrupted or validation.worker_error):
        outcome = TuneOutcome(
            summary, validation, default_trial(load_study(settings.storage.open(), settings.study_name))
        )
    else:
        outcome = TuneOutcome(summary, validation)
    for line in outcome.closing_lines():
        echo(line)
    return outcome


def _validate(
    plan: TunePlan, summary: StudySummary, workers: int, echo: Callable[[str], None], executor: Executor | None
) -> ValidationSummary:
    """Validate the study's top configs as the request says; echo the table."""
    request, settings = plan.request, plan.settings
    top_k = request.validate_top or auto_validate_top(summary.counts.get("complete", 0))
    validation = run_validation(
        ValidationSettings(
            settings.study_name,
            settings.storage,
            top_k,
            request.validation_seeds,
            settings.artifacts,
            artifact_dir=request.artifact_dir,
            device=request.device,
            checkpoint_every=request.checkpoint_every,
        ),
        workers=workers,
        command=plan.command,
        echo=echo,
        executor=executor,
    )
    for line in validation.lines():
        echo(line)
    return validation
