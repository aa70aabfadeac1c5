"""Fixtures for study tests: tiny settings in a fresh SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.runner.storage import StorageSettings
from dqn_tune.tuning.objective import ObjectiveSettings
from dqn_tune.tuning.search_space import DEFAULT_SPACE
from dqn_tune.tuning.study import TuneSettings


@pytest.fixture
def tune_settings(tmp_path: Path, tiny_config: DQNConfig) -> TuneSettings:
    """One-seed trials of `tiny_config` into study 's' of a new SQLite file, without artifacts."""
    return TuneSettings(
        study_name="s",
        storage=StorageSettings(f"sqlite:///{tmp_path}/study.db"),
        objective=ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE, seeds=1),
        artifacts=False,
    )
