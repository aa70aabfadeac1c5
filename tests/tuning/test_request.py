"""TuneRequest: one set of defaults with the CLI, stored settings merged under given ones, the command written back."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dqn_tune.cli import build_parser
from dqn_tune.errors import ConfigError
from dqn_tune.tuning import defaults
from dqn_tune.tuning.objective import ObjectiveSettings
from dqn_tune.tuning.request import TuneRequest
from dqn_tune.tuning.search_space import DEFAULT_SPACE


def test_library_and_cli_share_one_set_of_defaults(tiny_config) -> None:  # type: ignore[no-untyped-def]
    request = TuneRequest(trials=1).merged(None)
    assert (request.trial_seeds, request.objective, request.seed, request.sampler, request.pruner, request.env_id) == (
        defaults.TRIAL_SEEDS,
        defaults.OBJECTIVE,
        defaults.STUDY_SEED,
        defaults.SAMPLER,
        defaults.PRUNER,
        defaults.ENV_ID,
    )
    settings = ObjectiveSettings(base=tiny_config, space=DEFAULT_SPACE)
    assert (settings.seeds, settings.objective, settings.study_seed) == (
        request.trial_seeds,
        request.objective,
        request.seed,
    )
    help_text = build_parser()._subparsers._group_actions[0].choices["tune"].format_help()  # type: ignore[union-attr]
    assert f"(default: {defaults.TRIAL_SEEDS})" in " ".join(help_text.split())


def test_stored_settings_fill_what_was_left_out_and_never_what_was_given() -> None:
    stored = {
        "env_id": "Acrobot-v1",
        "total_timesteps": 5000,
        "seeds": 2,
        "objective": "auc",
        "seed": 7,
        "sampler": "random",
        "pruner": "none",
    }
    merged = TuneRequest(trials=3, objective="best").merged(stored)
    assert (
        merged.env_id,
        merged.timesteps,
        merged.trial_seeds,
        merged.objective,
        merged.seed,
        merged.sampler,
        merged.pruner,
        merged.trials,
    ) == ("Acrobot-v1", 5000, 2, "best", 7, "random", "none", 3)


def test_a_request_needs_a_stopping_rule() -> None:
    with pytest.raises(ConfigError, match="give --trials N"):
        TuneRequest()


def test_the_stored_command_parses_back_to_the_same_request(tmp_path: Path) -> None:
    request = TuneRequest(
        trials=5,
        env_id="Acrobot-v1",
        storage=f"sqlite:///{tmp_path}/s.db",
        trial_seeds=2,
        objective="auc",
        seed=3,
        preset=False,
        hyperparameters={"gamma": 0.97, "double_dqn": False, "hidden_sizes": (64, 64)},
        validate_top=2,
        validation_seeds=7,
        artifacts=False,
    )
    args = build_parser().parse_args(shlex.split(request.command_line())[1:])
    assert (
        args.trials,
        args.env_id,
        args.storage,
        args.trial_seeds,
        args.objective,
        args.seed,
        args.no_preset,
        args.gamma,
        args.double_dqn,
        args.hidden_sizes,
        args.validate_top,
        args.validation_seeds,
        args.artifacts,
    ) == (5, "Acrobot-v1", f"sqlite:///{tmp_path}/s.db", 2, "auc", 3, True, 0.97, False, (64, 64), 2, 7, False)


def test_a_new_study_plans_from_the_env_preset(tmp_path: Path) -> None:
    plan = TuneRequest(
        trials=1, storage=f"sqlite:///{tmp_path}/s.db", timesteps=600, hyperparameters={"learning_starts": 100}
    ).plan()
    assert plan.origin.startswith("starting from the CartPole-v1 preset (")
    assert plan.settings.study_name == "dqn-CartPole-v1" and plan.settings.objective.seeds == defaults.TRIAL_SEEDS
    assert (
        plan.settings.objective.base.total_timesteps == 600
        and "learning_starts" not in plan.settings.objective.space.params
    )
    assert not (tmp_path / "s.db").exists()  # planning only reads
