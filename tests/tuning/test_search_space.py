"""The search space: defaults containing known good configs, TOML files, and suggest_config."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import FixedTrial

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.tuning.search_space import (
    DEFAULT_SPACE,
    Choice,
    Fixed,
    Range,
    SearchSpace,
    load_search_space,
    suggest_config,
)

KNOWN_GOOD = [
    # RL Zoo's CartPole-v1 config and the best config its optimizer found here (FACTS.md).
    {"learning_rate": 2.3e-3, "gamma": 0.99, "batch_size": 64, "buffer_size": 100_000, "target_update_interval": 10},
    {"learning_rate": 3.5e-4, "gamma": 0.99, "batch_size": 256, "buffer_size": 100_000, "target_update_interval": 210},
    # The trainer's defaults.
    {"learning_rate": 1e-3, "gamma": 0.99, "batch_size": 128, "buffer_size": 50_000, "target_update_interval": 500},
]


def contains(param: object, value: object) -> bool:
    if isinstance(param, Range):
        return param.low <= value <= param.high  # type: ignore[operator]
    assert isinstance(param, Choice)
    return value in param.choices


@pytest.mark.parametrize("config", KNOWN_GOOD)
def test_default_space_contains_known_good_configs(config: dict[str, float]) -> None:
    assert set(DEFAULT_SPACE.params) == set(config)
    assert all(contains(DEFAULT_SPACE.params[name], value) for name, value in config.items())


def test_default_space_avoids_costly_corners() -> None:
    assert max(DEFAULT_SPACE.params["batch_size"].extremes()) <= 256  # type: ignore[type-var]
    assert DEFAULT_SPACE.params["learning_rate"].log  # type: ignore[union-attr]
    assert DEFAULT_SPACE.params["target_update_interval"].log  # type: ignore[union-attr]


def test_suggest_config_under_fixed_trial_uses_the_trial_values(tiny_config: DQNConfig) -> None:
    values = {
        "learning_rate": 2.3e-3,
        "gamma": 0.98,
        "batch_size": 64,
        "buffer_size": 100_000,
        "target_update_interval": 10,
    }
    config = suggest_config(FixedTrial(values), tiny_config, DEFAULT_SPACE)
    assert config == tiny_config.replace(**values)


def test_sampled_configs_are_valid_and_batch_never_exceeds_buffer(tiny_config: DQNConfig) -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [suggest_config(study.ask(), tiny_config, DEFAULT_SPACE) for _ in range(200)]
    assert all(c.batch_size <= c.buffer_size for c in configs)
    assert {c.batch_size for c in configs} == {32, 64, 128, 256}
    assert min(c.learning_rate for c in configs) >= 1e-4 and max(c.learning_rate for c in configs) <= 1e-2
    assert all(isinstance(c.target_update_interval, int) for c in configs)


def test_toml_file_changes_ranges_fixes_params_and_adds_fields(tmp_path: Path, tiny_config: DQNConfig) -> None:
    path = tmp_path / "space.toml"
    path.write_text("""
learning_rate = { low = 1e-4, high = 3e-3, log = true }
gamma = 0.99
batch_size = { value = 64 }
exploration_fraction = { low = 0.05, high = 0.3 }
train_freq = { choices = [1, 4] }
hidden_sizes = { choices = [[64, 64], [256]] }
double_dqn = { choices = [true, false] }
""")
    space = load_search_space(path)
    assert space.params["learning_rate"] == Range(1e-4, 3e-3, log=True)
    assert space.params["gamma"] == Fixed(0.99)
    assert space.params["batch_size"] == Fixed(64)
    assert space.params["buffer_size"] == DEFAULT_SPACE.params["buffer_size"]
    assert space.params["hidden_sizes"] == Choice(((64, 64), (256,)))
    trial = FixedTrial(
        {
            "learning_rate": 1e-3,
            "buffer_size": 10_000,
            "target_update_interval": 100,
            "exploration_fraction": 0.1,
            "train_freq": 4,
            "hidden_sizes": "256",
            "double_dqn": True,
        }
    )
    config = suggest_config(trial, tiny_config, space)
    assert (config.gamma, config.batch_size, config.train_freq, config.hidden_sizes, config.double_dqn) == (
        0.99,
        64,
        4,
        (256,),
        True,
    )
    assert SearchSpace.from_mapping(space.to_dict()) == space


def test_without_leaves_fields_to_the_base_config(tiny_config: DQNConfig) -> None:
    space = DEFAULT_SPACE.without(["gamma", "batch_size"])
    assert set(space.params) == {"learning_rate", "buffer_size", "target_update_interval"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo = { low = 1, high = 2 }", "unknown hyperparameter 'foo'; tunable: learning_rate, gamma"),
        ("total_timesteps = 100", "'total_timesteps' is part of the trial budget"),
        ("learning_rate = { low = 0.1, high = 0.01 }", r"learning_rate: low \(0.1\) is greater than high \(0.01\)"),
        ("learning_rate = { low = 0.0, high = 0.01, log = true }", "log-scale range needs low > 0"),
        ("batch_size = { low = 'a', high = 64 }", "batch_size: expected an integer, got 'a'"),
        ("batch_size = { low = 16.5, high = 64 }", "batch_size: expected an integer, got 16.5"),
        ("loss = { low = 1, high = 2 }", "a str hyperparameter cannot take a low/high range"),
        ("gamma = { min = 0.9, max = 0.99 }", r"unexpected keys \['max', 'min'\]"),
        ("batch_size = { choices = [] }", "choices must be a non-empty list"),
        ("hidden_sizes = { choices = [64] }", "expected a list of integers"),
        ("learning_rate = { low = 1e-4, high = 1e-2, log = 'yes' }", "log must be true or false"),
        ("learning_rate = [1e-4", "is not valid TOML"),
    ],
)
def test_invalid_search_space_files_are_one_line_config_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_search_space(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_search_space_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read search-space file .*missing\.toml.*No such file"):
        load_search_space(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"cannot read search-space file .*it is a directory"):
        load_search_space(tmp_path)


def test_check_rejects_spaces_that_can_give_invalid_configs(tiny_config: DQNConfig) -> None:
    with pytest.raises(ConfigError, match="batch_size can reach 256 but buffer_size can be as small as 100"):
        DEFAULT_SPACE.merged(SearchSpace({"buffer_size": Choice((100, 1000))})).check(tiny_config)
    with pytest.raises(ConfigError, match=r"gamma \(float in \[0.9, 1.5\]\) can give an invalid config"):
        SearchSpace({"gamma": Range(0.9, 1.5)}).check(tiny_config)
    with pytest.raises(ConfigError, match="learning_starts"):
        SearchSpace({"learning_starts": Fixed(5_000)}).check(tiny_config)
    DEFAULT_SPACE.check(tiny_config)
