"""Resuming a tuning study: what a command must share with the study it adds trials to.

A trial's value means something only for one env, budget, evaluation and objective, and Optuna
refuses to mix distributions of one parameter; so a resume with other settings is refused before
anything is written. The stored settings also fill the flags a resuming command leaves out.
"""

from __future__ import annotations

import json
from typing import Any

import optuna

from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.runner.retry import DEFAULT_RETRY, RetryPolicy, is_transient
from dqn_tune.runner.storage import open_existing_storage, sqlite_path, study_names
from dqn_tune.tuning import records
from dqn_tune.tuning.search_space import SearchSpace

MUST_MATCH = ("env_id", "total_timesteps", "eval_episodes", "objective")
"""Settings that define what a trial's value means: resuming with other values is refused."""


def stored_settings(url: str, study_name: str, *, retry: RetryPolicy = DEFAULT_RETRY) -> dict[str, Any] | None:
    """The settings attribute (TuneSettings.to_attr) of an existing tuning study, to resume it with the flags left
    out; None when the storage, the study or its settings do not exist yet. Only reads: a storage that cannot be
    read is reported by the run that opens it for writing, except one unreachable for all of `retry` (StorageError:
    guessing the settings of a study that may exist would refuse the resume for the wrong reason)."""
    try:
        path = sqlite_path(url)
        if path is not None and not path.is_file():  # may raise: a directory this user cannot enter
            return None
        storage = open_existing_storage(url, retry=retry)
        try:
            if study_name not in study_names(storage):
                return None
            return records.study_settings(optuna.load_study(study_name=study_name, storage=storage))
        finally:
            storage.close()
    except StorageError as exc:
        if is_transient(exc):
            raise
        return None
    except OSError:
        return None


def check_compatible(study: optuna.Study, wanted: dict[str, Any], where: str) -> None:
    """Refuse to add trials whose values would not be comparable with the study's."""
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        directions = ", ".join(d.name.lower() for d in study.directions)
        raise StorageError(
            f"{where} has direction {directions}; dqn-tune maximizes the evaluation return: use another --study-name"
        )
    stored = records.study_settings(study)
    if stored is None:
        if study.get_trials(deepcopy=False):
            raise StorageError(
                f"{where} was not made by dqn-tune (no {records.SETTINGS_ATTR!r} attribute); use another --study-name"
            )
        return
    problem = settings_mismatch(stored, wanted)
    if problem is not None:
        raise StorageError(f"{where} {problem} or another --study-name")


def settings_mismatch(stored: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why trials made with the settings attribute `wanted` would not be comparable with a study's `stored` one
    (a phrase that ends "use the same ..."), or None when they are."""
    for key in MUST_MATCH:
        if stored.get(key) != wanted[key]:
            return (
                f"was run with {key} = {stored.get(key)!r}, this command asks for {wanted[key]!r}; use the same value"
            )
    if "search_space" in stored:
        differences = space_differences(stored["search_space"], wanted["search_space"])
        if differences:
            return (
                f"was run with another search space ({'; '.join(differences)}); use the same --search-space "
                "file and hyperparameter flags"
            )
    return None


def space_differences(stored: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """One phrase per parameter that two stored search spaces (SearchSpace.to_dict()) treat differently."""
    stored, wanted = json.loads(json.dumps(stored)), json.loads(json.dumps(wanted))  # tuples as lists, like storage
    out = []
    for name in sorted(stored.keys() | wanted.keys()):
        if stored.get(name) != wanted.get(name):
            out.append(f"{name}: {_describe_param(name, stored)} in the study, {_describe_param(name, wanted)} here")
    return out


def _describe_param(name: str, space: dict[str, Any]) -> str:
    if name not in space:
        return "not tuned"
    try:
        return SearchSpace.from_mapping({name: space[name]}).params[name].describe()
    except ConfigError:
        return repr(space[name])
