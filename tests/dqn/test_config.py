"""DQNConfig validation: every impossible value raises ConfigError naming its field."""

from __future__ import annotations

import math

import pytest

from dqn_tune.dqn.config import SEED_MAX, DQNConfig, check_seed, field_names
from dqn_tune.errors import ConfigError

INVALID = [
    ("env_id", ""),
    ("env_id", 3),
    *[
        (name, value)
        for name in (
            "total_timesteps",
            "batch_size",
            "buffer_size",
            "target_update_interval",
            "train_freq",
            "gradient_steps",
            "eval_curve_episodes",
            "eval_episodes",
        )
        for value in (0, -1, 2.5, True, 2**63, 10**30)
    ],
    ("learning_starts", -1),
    ("learning_starts", 2**63),
    ("learning_starts", 1.5),
    ("eval_freq", -1),
    *[("learning_rate", value) for value in (0, -1e-3, math.inf, math.nan, "0.1", True)],
    *[("gamma", value) for value in (0, -0.5, 1.01, math.nan)],
    *[("tau", value) for value in (0, 1.5, math.nan)],
    *[("exploration_fraction", value) for value in (0, 1.5, -0.1)],
    *[
        (name, value)
        for name in ("exploration_initial_eps", "exploration_final_eps")
        for value in (-0.1, 1.1, math.nan)
    ],
    ("loss", "l1"),
    *[("max_grad_norm", value) for value in (0, -1.0, math.inf, math.nan)],
    *[("hidden_sizes", value) for value in ((), (0,), (128, -4), (64.0,), (2**63,))],
    ("double_dqn", "yes"),
    *[("n_steps", value) for value in (0, -1, 2.5, True, 2**63)],
    ("network", "rnn"),
    ("network", ""),
    *[("cnn", value) for value in ("atari", "", None)],
    *[(name, value) for name in ("cnn_channels", "cnn_hidden_sizes") for value in ((0,), (16, -1), (8.0,), (2**63,))],
    *[("optimizer", value) for value in ("sgd", "Adam", None)],
    ("dueling", "yes"),
    ("prioritized_replay", 1),
    *[(name, value) for name in ("per_alpha", "per_beta") for value in (-0.1, 1.5, math.nan, "0.5", True)],
    *[(name, value) for name in ("per_eps", "adam_eps") for value in (0, -1e-6, math.inf, math.nan, "1e-8")],
]


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_each_invalid_value_raises_config_error_naming_the_field(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} = ") as info:
        DQNConfig(**{name: value})
    assert info.value.field == name
    assert "expected" in str(info.value)
    assert "\n" not in str(info.value)


def test_batch_larger_than_buffer_names_both_values() -> None:
    with pytest.raises(ConfigError, match=r"^batch_size = 256 is invalid: expected at most buffer_size \(100\)$"):
        DQNConfig(batch_size=256, buffer_size=100)


def test_n_steps_larger_than_the_buffer_names_both_values() -> None:
    with pytest.raises(ConfigError, match=r"^n_steps = 200 is invalid: expected at most buffer_size \(100\)$"):
        DQNConfig(n_steps=200, buffer_size=100, batch_size=32)


def test_learning_starts_must_leave_steps_to_learn() -> None:
    with pytest.raises(ConfigError, match=r"^learning_starts = 5000 .* less than total_timesteps \(5000\)$") as info:
        DQNConfig(total_timesteps=5_000, learning_starts=5_000)
    assert info.value.field == "learning_starts"


@pytest.mark.parametrize(
    "changes",
    [
        {"gamma": 1.0},
        {"tau": 1.0},
        {"tau": 0.005},
        {"exploration_final_eps": 0.0},
        {"exploration_initial_eps": 1.0},
        {"exploration_fraction": 1.0},
        {"max_grad_norm": None},
        {"learning_starts": 0},
        {"eval_freq": 0},
        {"loss": "mse"},
        {"hidden_sizes": [32]},
        {"batch_size": 1_000, "buffer_size": 1_000},
        {"n_steps": 1_000, "buffer_size": 1_000},
        {"per_alpha": 0.0},
        {"per_alpha": 1.0},
        {"per_beta": 0.0},
        {"per_beta": 1.0},
        {"per_eps": 1e-12},
        {"adam_eps": 1e-12},
        {"dueling": True, "prioritized_replay": True},
    ],
)
def test_boundary_values_are_accepted(changes: dict[str, object]) -> None:
    DQNConfig(**changes)


def test_hidden_sizes_are_stored_as_a_tuple() -> None:
    assert DQNConfig(hidden_sizes=[64, 32]).hidden_sizes == (64, 32)


def test_to_dict_is_json_primitives_and_round_trips() -> None:
    config = DQNConfig(learning_rate=3e-4, hidden_sizes=(64, 64), max_grad_norm=None, double_dqn=True)
    data = config.to_dict()
    assert list(data) == list(field_names())
    assert data["hidden_sizes"] == [64, 64]
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in data.values())
    assert DQNConfig.from_dict(data) == config


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown hyperparameter.*lr"):
        DQNConfig.from_dict({**DQNConfig().to_dict(), "lr": 0.1})


def test_replace_validates_again() -> None:
    with pytest.raises(ConfigError, match=r"^gamma"):
        DQNConfig().replace(gamma=2.0)


def test_the_largest_integers_that_fit_64_bits_are_accepted() -> None:
    config = DQNConfig(total_timesteps=2**63 - 1, buffer_size=2**63 - 1, eval_freq=2**63 - 1)
    assert config.total_timesteps == config.buffer_size == 2**63 - 1


@pytest.mark.parametrize("seed", [0, 1, SEED_MAX])
def test_seeds_from_0_to_2_32_minus_1_are_accepted(seed: int) -> None:
    assert check_seed(seed) == seed and SEED_MAX == 2**32 - 1


@pytest.mark.parametrize("seed", [-1, 2**32, 10**30, 1.0, "0", True, None])
def test_other_seeds_are_a_one_line_config_error_stating_the_range(seed: object) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^--seed = .* is invalid: expected an integer from 0 to 4294967295 "
        r"\(2\*\*32 - 1\)$",
    ) as info:
        check_seed(seed, name="--seed")
    assert info.value.field == "seed"
