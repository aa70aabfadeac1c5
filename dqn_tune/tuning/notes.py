"""What optuna-dashboard shows of a tuning study beyond Optuna's own figures: its notes and the recommended trial.

The dashboard marks the trial with the best tuning value ("Best Trial"), which is the luckiest of many
noisy measurements. After a validation, the trial it recommends is marked where the dashboard shows
it first: at the top of the study's note, in the study attribute `recommended_trial` (created first, so
it heads the study's attribute table), and in each validated trial's own note (at the top of the
trial's page). Every note is built from what the study stores, so any command can rewrite it.
"""

from __future__ import annotations

import optuna
import optuna_dashboard
from optuna.trial import TrialState

from dqn_tune.runner.optuna_internals import trial_handle
from dqn_tune.runner.storage import public_url
from dqn_tune.tuning import records
from dqn_tune.tuning.recommendation import RULE, Recommendation
from dqn_tune.tuning.search_space import SearchSpace

NOT_VALIDATED = "none yet: no validation has run (dqn-tune validate)"
"""The value of records.RECOMMENDED_TRIAL before a validation."""


def tuning_note(study: optuna.Study, storage_url: str) -> str:
    """The tuning study's note: the recommendation (after a validation), how the study was made and resumed, what its
    value means, its search space and fixed hyperparameters."""
    settings = records.study_settings(study) or {}
    commands = study.user_attrs.get(records.COMMANDS_ATTR, [])
    space = SearchSpace.from_mapping(settings.get("search_space", {}), source="the study's stored search space")
    fixed = "\n".join(
        f"- {name} = {value}" for name, value in settings.get("base_config", {}).items() if name not in space.params
    )
    stored = records.recommendation(study)
    top = (
        f"**Recommended: trial {stored['trial']}** ({_figures(Recommendation.from_dict(stored))}; the dashboard's "
        f'"Best Trial" is the best tuning value, not this pick). Rule: {RULE}; the table is the note of '
        f"`{study.study_name}-validation`.\n\n"
        if stored
        else ""
    )
    url = public_url(storage_url)
    return (
        f"## dqn-tune study `{study.study_name}`\n\n{top}"
        f"Made by:\n\n```\n{commands[0] if commands else '(unknown command)'}\n```\n\n"
        f"- env {settings.get('env_id')}, {settings.get('total_timesteps')} steps per training run\n"
        f"- **value** ({study.metric_names[0] if study.metric_names else 'value'}): "
        f"{records.value_meaning(settings)}\n"
        "- **intermediate values** (the history's step axis): the plain environment step; a trial's seeds train "
        "together and the mean over seeds of each learning-curve evaluation is reported at its step (the curve "
        "ends lower than the value when the kept checkpoint is an earlier one)\n"
        f"- sampler {settings.get('sampler')}, pruner {settings.get('pruner')}, seed {settings.get('seed')}\n\n"
        f"### Search space\n\n"
        + "\n".join(f"- {line}" for line in space.describe())
        + f"\n\n### Fixed hyperparameters\n\n{fixed}\n\n"
        "Run the same command again (on this or other machines sharing the storage) to add trials. "
        f"Validate: `dqn-tune validate --study-name {study.study_name} --storage {url}`. "
        f"Retrain the recommended (else the best) trial: `dqn-tune retrain --study-name {study.study_name} "
        f"--storage {url}`.\n"
    )


def _figures(recommendation: Recommendation) -> str:
    row = recommendation.table[0]
    return (
        f"validation mean {row.mean:.1f} [95% CI {row.interval.low:.1f}, {row.interval.high:.1f}] over "
        f"{len(row.returns)} held-out seeds, tuned value {row.tuned_value:.1f}"
    )


def mark_recommendation(study: optuna.Study, recommendation: Recommendation, storage_url: str) -> None:
    """Store the recommendation on the tuning study and show it: the study's note and attribute, each validated trial's
    note (rank, figures; the recommended one says so)."""
    study.set_user_attr(records.RECOMMENDATION, recommendation.to_dict())
    study.set_user_attr(records.RECOMMENDED_TRIAL, f"trial {recommendation.trial}: {_figures(recommendation)}")
    optuna_dashboard.save_note(study, tuning_note(study, storage_url))
    trials = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))}
    for rank, row in enumerate(recommendation.table, start=1):
        if row.trial in trials:
            head = (
                "**Recommended by validation**"
                if rank == 1
                else f"Validated: rank {rank} of {len(recommendation.table)} "
                f"(recommended: trial {recommendation.trial})"
            )
            optuna_dashboard.save_note(
                trial_handle(study, trials[row.trial]),
                f"{head}: mean {row.mean:.1f} [95% CI "
                f"{row.interval.low:.1f}, {row.interval.high:.1f}], IQM {row.iqm:.1f}, min "
                f"{row.min:.1f} over {len(row.returns)} held-out seeds (tuned value "
                f"{row.tuned_value:.1f}). Rule: {RULE}.\n",
            )
