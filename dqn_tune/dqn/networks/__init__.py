"""The network seam: a registry of Q-network families by name, and `make_q_network`, the one factory.

A family is a module with a `FAMILY` object (see `base.NetworkFamily`): it checks the observations it
can take, builds K members as one `base.QNetwork`, and counts its parameters and activations for the
memory estimate. Adding a family (a CNN for image observations) is one module and one line here.
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
}
"""Family name (the config's `network`) -> the module holding its FAMILY."""


def family(name: str) -> NetworkFamily:
    """The family registered as `name` (a name DQNConfig has validated)."""
    found: NetworkFamily = importlib.import_module(FAMILIES[name]).FAMILY
    return found


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
    chosen = family(config.network)
    chosen.check(config, observation)
    return chosen.build(config, observation, n_actions, members, seeds)
