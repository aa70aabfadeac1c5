"""The storage schema of dqn-tune: every study and trial attribute it writes, and how runs are stored.

Written by the study runner's jobs (tuning, ablation); read by retrain, reports and the dashboard.
This module is the one place that knows the attribute names: readers call its functions instead
of indexing attribute dicts.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from dqn_tune.dqn.checkpoint import Checkpoint
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.errors import StorageError
from dqn_tune.runner.optuna_internals import set_trial_system_attr

CONFIG = "config"
"""DQNConfig.to_dict() of the trial: retraining reads this back instead of re-deriving it. A system attribute."""
RUNS = "runs"
"""One RunRecord dict per training seed. A system attribute."""
CONFIG_SUMMARY = "config_summary"
"""The config in one short line for the dashboard: env, budget and the fields that differ from the defaults.

optuna-dashboard 0.21 prints each user attribute of a trial on one unwrapped line, and a line longer than the
window widens the whole trial page. So the long machine-readable `config` and `runs` are system attributes
(which the page does not print; studies made before keep them as user attributes, read alike) and the user
attributes are these short lines."""
RUNS_SUMMARY = "runs_summary"
"""Each seed's scored return and the step its kept weights come from, in one short line."""
SEED_RETURNS = "seed_returns"
"""Final mean greedy return of each seed (the trial's value is their mean)."""
CHECKPOINT = "checkpoint"
"""System attribute: the trial's latest checkpoint (tuning/checkpoints.py) as {"artifact_id", "step", "others"} (the
ids the store may hold besides, named before they are written); they are removed from the artifact store when the
trial finishes, and a retry resumes from its predecessor's latest and removes them all."""
RESUMED = "resumed"
"""User attribute of a retried trial, one short line: the step it resumed from and the work saved, or why the
predecessor's checkpoint was not used."""
RESUME = "resume"
"""System attribute of a resumed trial: {"trial", "step", "env_steps_saved", "train_seconds_saved",
"restarted_episodes"} (the members whose env could not be restored, whose episode restarted)."""
STEPS_PER_SECOND = "steps_per_second"
WALL_TIME_S = "wall_time_s"

SETTINGS_ATTR = "dqn_tune"
"""Study attribute: the settings a tuning study was created with (budget, objective, space...)."""
COMMANDS_ATTR = "commands"
"""Study attribute: every command line that ran trials in the study, in order."""
VERSIONS_ATTR = "versions"
"""Study attribute: library versions of the machine that created the study."""
VALIDATION_OF = "validation_of"
"""Study attribute of a validation study: the name of the tuning study it validates."""
RECOMMENDED_TRIAL = "recommended_trial"
"""Study attribute of a tuning study: validation's pick in one short line (written first, so that it heads the
dashboard's table of study attributes; tuning/notes.py)."""
RECOMMENDATION = "recommendation"
"""Study attribute of a tuning study: validation's Recommendation.to_dict() (rule, trial, table)."""
ARTIFACT_DIR_ATTR = "artifact_dir"
"""Study attribute: the absolute directory of the study's trial artifacts (learning-curve PNGs), so the
dashboard, report and later commands on any machine find it."""
SPEC_ATTR = "ablation"
"""Study attribute of an ablation study: AblationSpec.to_dict(), read back by its report."""


def store_config(trial: optuna.Trial, config: DQNConfig) -> None:
    """Record the trial's full config, and its short readable line."""
    set_trial_system_attr(trial, CONFIG, config.to_dict())
    trial.set_user_attr(CONFIG_SUMMARY, config_summary(config))


SUMMARY_WIDTH = 120
"""Longest readable attribute line: it fits the dashboard's trial page beside its 200-pixel label column."""


def config_summary(config: DQNConfig) -> str:
    """e.g. 'CartPole-v1, 20000 steps; learning_rate=0.00123, batch_size=64 (others default)', shortened to
    SUMMARY_WIDTH (the full config is the CONFIG attribute; the study's note lists its fixed values)."""
    defaults = DQNConfig().to_dict()
    changed = [
        f"{name}={value}"
        for name, value in config.to_dict().items()
        if name not in ("env_id", "total_timesteps") and value != defaults[name]
    ]
    return textwrap.shorten(
        f"{config.env_id}, {config.total_timesteps} steps; "
        + (f"{', '.join(changed)} (others default)" if changed else "all defaults"),
        SUMMARY_WIDTH,
        placeholder=" ... (all in the trial's config)",
    )


def runs_summary(records: Sequence[RunRecord]) -> str:
    """e.g. 'seed 12: 325.0 (weights of step 6000); seed 13: 310.0 (weights of step 8000)', shortened to
    SUMMARY_WIDTH (every seed is in the RUNS attribute)."""
    return textwrap.shorten(
        "; ".join(
            f"seed {r.seed}: {r.mean_return:.1f}"
            + ("" if r.selected_step is None else f" (weights of step {r.selected_step})")
            for r in records
        ),
        SUMMARY_WIDTH,
        placeholder=" ... (all in its runs)",
    )


def store_runs(trial: optuna.Trial, results: Sequence[TrainResult]) -> None:
    """Record the finished runs of a trial: per-seed summaries, returns, speed and time."""
    records = [RunRecord.from_result(result) for result in results]
    set_trial_system_attr(trial, RUNS, [record.to_dict() for record in records])
    trial.set_user_attr(RUNS_SUMMARY, runs_summary(records))
    trial.set_user_attr(SEED_RETURNS, [record.mean_return for record in records])
    trial.set_user_attr(STEPS_PER_SECOND, float(np.mean([r.steps_per_second for r in records])) if records else 0.0)
    trial.set_user_attr(WALL_TIME_S, float(sum(r.wall_time_s for r in records)))


def store_checkpoint(trial: optuna.Trial, latest: tuple[str, int] | None, others: Iterable[str] = ()) -> None:
    """Record the trial's latest checkpoint (artifact id, env step at which it was written), if any, and the `others`
    that the store may hold for it: one being written, or earlier ones not yet removed."""
    artifact_id, step = latest if latest is not None else (None, 0)
    set_trial_system_attr(
        trial, CHECKPOINT, {"artifact_id": artifact_id, "step": step, "others": sorted(set(others) - {artifact_id})}
    )


def trial_checkpoint(trial: FrozenTrial) -> tuple[str, int] | None:
    """(artifact id, step) of the trial's latest checkpoint; None if it has none (a retry's attribute, copied from
    the trial it retries, names the checkpoint it was given)."""
    stored = trial.system_attrs.get(CHECKPOINT)
    if not isinstance(stored, dict) or not isinstance(stored.get("artifact_id"), str):
        return None
    return stored["artifact_id"], int(stored.get("step", 0))


def checkpoint_artifacts(trial: FrozenTrial) -> set[str]:
    """Every artifact id the trial's checkpoint record names: its latest checkpoint and those the store may hold
    besides (a worker killed while writing one or removing the previous one leaves them for its retry to remove)."""
    stored = trial.system_attrs.get(CHECKPOINT)
    if not isinstance(stored, dict):
        return set()
    named = [stored.get("artifact_id"), *stored.get("others", [])]
    return {artifact for artifact in named if isinstance(artifact, str)}


def store_resume(trial: optuna.Trial, *, trial_number: int | None, checkpoint: Checkpoint, members: int) -> None:
    """Record that the trial resumed from `checkpoint` of trial `trial_number` (its `members` runs in it)."""
    restarted = checkpoint.restarted
    set_trial_system_attr(
        trial,
        RESUME,
        {
            "trial": trial_number,
            "step": checkpoint.step,
            "env_steps_saved": checkpoint.step * members,
            "train_seconds_saved": checkpoint.train_seconds,
            "restarted_episodes": restarted,
        },
    )
    trial.set_user_attr(
        RESUMED,
        textwrap.shorten(
            f"from step {checkpoint.step} of trial {trial_number}: saved {checkpoint.step * members} env steps, "
            f"{checkpoint.train_seconds:.0f} s of training"
            + (
                f"; the env state could not be saved, episodes restarted (members {restarted})"
                if restarted
                else "; bit-identical to an uninterrupted run on CPU"
            ),
            SUMMARY_WIDTH,
        ),
    )


def store_not_resumed(trial: optuna.Trial, reason: str) -> None:
    """Record why the retried trial did not resume from its predecessor's checkpoint (replacing the attributes a
    retry copies from the trial it retries)."""
    set_trial_system_attr(trial, RESUME, None)
    trial.set_user_attr(RESUMED, textwrap.shorten(f"no, from step 0: {reason}", SUMMARY_WIDTH))


def trial_config(trial: FrozenTrial) -> DQNConfig:
    """The config a trial trained with, as stored (StorageError if the trial has none)."""
    config = _stored(trial, CONFIG)
    if config is None:
        raise StorageError(f"trial {trial.number} has no stored '{CONFIG}' attribute; was it made by dqn-tune?")
    return DQNConfig.from_dict(config)


def trial_runs(trial: FrozenTrial) -> list[RunRecord]:
    """The per-seed run records of a trial (empty if it stored none)."""
    return [RunRecord.from_dict(data) for data in _stored(trial, RUNS) or []]


def _stored(trial: FrozenTrial, key: str) -> Any:
    """A system attribute of the trial, or the user attribute of that name (how studies made before stored it)."""
    return trial.system_attrs.get(key, trial.user_attrs.get(key))


def study_settings(study: optuna.Study) -> dict[str, Any] | None:
    """The settings a tuning study was created with (None for a study dqn-tune did not create)."""
    return study.user_attrs.get(SETTINGS_ATTR)


def study_objective(study: optuna.Study) -> str:
    """What the study's trial values score (final, best or auc); 'value' when unknown."""
    return str((study_settings(study) or {}).get("objective", "value"))


def recommendation(study: optuna.Study) -> dict[str, Any] | None:
    """The validation's stored recommendation for a tuning study (None before any validation)."""
    return study.user_attrs.get(RECOMMENDATION)


def stored_artifact_dir(study: optuna.Study) -> str | None:
    """The artifact directory recorded on the study (None before one was recorded)."""
    return study.user_attrs.get(ARTIFACT_DIR_ATTR)


def storage_artifact_dirs(storage: optuna.storages.BaseStorage) -> list[str]:
    """The distinct artifact directories recorded on the studies of a storage, sorted."""
    return sorted({d for study in storage.get_all_studies() if (d := study.user_attrs.get(ARTIFACT_DIR_ATTR))})


def store_artifact_dir(study: optuna.Study, directory: str) -> None:
    """Record the study's artifact directory (written only when it changes)."""
    if stored_artifact_dir(study) != directory:
        study.set_user_attr(ARTIFACT_DIR_ATTR, directory)


def ablation_spec(study: optuna.Study) -> dict[str, Any] | None:
    """The stored definition of an ablation study (None for any other study)."""
    return study.user_attrs.get(SPEC_ATTR)


def kept_weights(keep_best: bool) -> str:
    """Which weights a run returns, scores and saves: with keep_best the best evaluated checkpoint (when it beats the
    last evaluation), else the last ones."""
    return (
        "its kept weights: the best learning-curve checkpoint when it beats the last evaluation (keep_best; "
        "runs_summary names its step)"
        if keep_best
        else "its last weights (keep_best off)"
    )


def value_meaning(settings: Mapping[str, Any]) -> str:
    """What a tuning trial's value is, in words, from a study's settings attribute (TuneSettings.to_attr)."""
    base, objective = settings.get("base_config", {}), settings.get("objective")
    if objective == "final":
        what = f"greedy return on {base.get('eval_episodes', '?')} fresh episodes of " + kept_weights(
            bool(base.get("keep_best", True))
        )
    elif objective == "best":
        what = "best learning-curve evaluation"
    elif objective == "auc":
        what = "learning-curve mean return (the area under the curve divided by its length)"
    else:
        return "the study's objective"
    seeds = settings.get("seeds", "?")
    return f"the mean over {seeds} seed{'' if seeds == 1 else 's'} of each run's {what}"


def metric_name(objective: str, *, keep_best: bool = True) -> str:
    """The name of a tuning study's value, as the dashboard and plots show it (`study.set_metric_names`)."""
    names = {
        "final": f"final return of {'best-checkpoint' if keep_best else 'last'} weights",
        "best": "best learning-curve evaluation",
        "auc": "learning-curve mean return (AUC)",
    }
    return f"{names.get(objective, objective)}, mean over seeds"


def set_metric_name(study: optuna.Study) -> None:
    """Name the study's value after its objective and kept weights (Optuna marks set_metric_names experimental)."""
    settings = study_settings(study) or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(
            [
                metric_name(
                    str(settings.get("objective", "value")),
                    keep_best=bool(settings.get("base_config", {}).get("keep_best", True)),
                )
            ]
        )


def record_command(study: optuna.Study, command: str) -> int:
    """Append `command` to the study's command list; return its index. Call under the study lock."""
    commands = [*study.user_attrs.get(COMMANDS_ATTR, []), command]
    study.set_user_attr(COMMANDS_ATTR, commands)
    return len(commands) - 1
