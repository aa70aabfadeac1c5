"""The network seam: a registry of Q-network families by name, and `make_q_network`, the one factory.

A family is a module with a `FAMILY` object (see `base.NetworkFamily`): it checks the observations it
can take, builds K members as one `base.QNetwork`, and counts its parameters and activations for the
memory estimate. Adding a family is one module and one line here. `network = "auto"` picks the CNN
for image observations (2-D or 3-D) and the MLP for flat ones.
This module imports no torch, so config validation and the CLI's start stay light.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dqn_tune.dqn.config import DQNConfig
    from dqn_tune.dqn.networks.base import NetworkFamily, QNetwork
    from dqn_tune.dqn.observations import ObservationSpec

FAMILIES: dict[str, str] = {
    "mlp": "dqn_tune.dqn.networks.mlp",
    "cnn": "dqn_tune.dqn.networks.cnn",
}
"""Family name (the config's `network`) -> the module holding its FAMILY."""


def family_name(config: DQNConfig, observation: ObservationSpec) -> str:
    """config.network, or for "auto" the family these observations call for: 'mlp' for flat ones, else 'cnn'
    (which takes 2-D and 3-D images and names what it takes when given more dimensions)."""
    if config.network != "auto":
        return config.network
    return "mlp" if len(observation.shape) == 1 else "cnn"


def family(config: DQNConfig, observation: ObservationSpec) -> NetworkFamily:
    """The family `config` trains on these observations, checked to take them (EnvError if it cannot)."""
    chosen = _registered(family_name(config, observation))
    chosen.check(config, observation)
    return chosen


def describe_network(config: DQNConfig, observation: ObservationSpec) -> str:
    """E.g. "network = 'mlp', hidden sizes [64, 64]": the family and its width settings, for messages."""
    name = family_name(config, observation)
    return f"network = {name!r}, {_registered(name).describe(config)}"


def _registered(name: str) -> NetworkFamily:
    family_module = importlib.import_module(FAMILIES[name])
    return family_module.FAMILY  # type: ignore[no-any-return]


def make_q_network(
    config: DQNConfig,
    observation: ObservationSpec,
    n_actions: int,
    members: int = 1,
    *,
    seeds: Sequence[int] | None = None,
) -> QNetwork:
    """`members` Q-networks of `config.network` for `observation` and `n_actions`, stacked on a member axis.

    Member k is initialised from `seeds[k]` alone (the same seed gives the same member in any group);
    without seeds the weights are uninitialised, for loading a state dict into. EnvError if the family
    cannot take these observations.
    """
    return family(config, observation).build(config, observation, n_actions, members, seeds)
