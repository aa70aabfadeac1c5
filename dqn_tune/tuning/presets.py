"""Per-env presets (dqn_tune/presets.toml): the budget, the tuned base config and the search space of an env.

`train` and `tune` start from the env's preset; an env without one (or `--no-preset`) starts from
the global defaults (DQNConfig) and DEFAULT_SPACE. Every preset is checked when loaded: its config
must be a valid DQNConfig and its space must only produce valid configs from it.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any

from dqn_tune.dqn.config import DQNConfig, from_toml
from dqn_tune.errors import ConfigError
from dqn_tune.tuning.search_space import DEFAULT_SPACE, SearchSpace

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PRESETS_FILE = "presets.toml"
EVALS_PER_RUN = 10
"""Learning-curve evaluations per training run by default (the points a pruner sees)."""


def eval_freq_for(timesteps: int) -> int:
    """The evaluation interval that gives a run of `timesteps` steps EVALS_PER_RUN learning-curve points: the one
    rule of tune, train, retrain and ablate when --timesteps is given without --eval-freq."""
    return max(1, timesteps // EVALS_PER_RUN)


@dataclass(frozen=True, slots=True)
class Preset:
    """One env's preset."""

    env_id: str
    timesteps: int
    """Training budget (RL Baselines3 Zoo's): train, retrain and the quality benchmark use it."""
    trial_timesteps: int
    """Budget of one tuning trial."""
    source: str
    """Where `config` comes from: the dqn-tune study that found it, or why it is not tuned yet."""
    config: dict[str, Any]
    """Hyperparameters that differ from DQNConfig's defaults."""
    space: SearchSpace
    """The space `tune` samples for this env (DEFAULT_SPACE with the preset's entries)."""

    @property
    def origin(self) -> str:
        """The preset in a few words, for a command's first line (its full source takes a paragraph)."""
        return f"the {self.env_id} preset ('dqn-tune presets --env {self.env_id}' says how it was found)"

    def base_config(self, *, timesteps: int | None = None, **overrides: Any) -> DQNConfig:
        """The preset's config at `timesteps` (default: the preset's budget), evaluated EVALS_PER_RUN times,
        with `overrides`."""
        return base_config(self.env_id, timesteps or self.timesteps, {**self.config, **overrides})


def base_config(env_id: str, timesteps: int, overrides: dict[str, Any]) -> DQNConfig:
    """DQNConfig's defaults for `env_id` with `overrides`, a budget of `timesteps` and EVALS_PER_RUN evaluations."""
    return DQNConfig(
        **{"env_id": env_id, "total_timesteps": timesteps, "eval_freq": eval_freq_for(timesteps), **overrides}
    )


@functools.cache
def load_presets() -> dict[str, Preset]:
    """Every preset of the package's presets.toml, checked (ConfigError names the env and the problem)."""
    data = tomllib.loads(resources.files("dqn_tune").joinpath(PRESETS_FILE).read_text(encoding="utf-8"))
    return {env_id: _preset(env_id, entry) for env_id, entry in data.items()}


def preset_for(env_id: str) -> Preset | None:
    """The preset of `env_id`, or None for an env without one."""
    return load_presets().get(env_id)


def _preset(env_id: str, entry: dict[str, Any]) -> Preset:
    where = f"{PRESETS_FILE} [{env_id}]"
    try:
        preset = Preset(
            env_id,
            int(entry["timesteps"]),
            int(entry["trial_timesteps"]),
            str(entry["source"]),
            {name: from_toml(name, value) for name, value in entry.get("config", {}).items()},
            DEFAULT_SPACE.merged(SearchSpace.from_mapping(entry.get("search_space", {}), source=where)),
        )
        preset.space.check(preset.base_config(timesteps=preset.trial_timesteps))
    except KeyError as exc:
        raise ConfigError(f"{where} has no {exc} entry") from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", field=exc.field) from None
    return preset
