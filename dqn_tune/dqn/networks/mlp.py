"""The MLP family: ReLU hidden layers of `config.hidden_sizes` over flat observations, then a Q head."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.networks.base import DenseQNetwork, member_generators, network_input
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.errors import EnvError


class MLP(DenseQNetwork):
    """K MLPs: the fully connected layers of `DenseQNetwork` over the flat observations."""

    def __init__(
        self,
        observation: ObservationSpec,
        n_actions: int,
        hidden_sizes: Sequence[int],
        dueling: bool,
        generators: Sequence[torch.Generator | None],
    ) -> None:
        super().__init__(observation, n_actions, observation.size, hidden_sizes, dueling, generators)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values [K, batch, n_actions] for observations [K, batch, obs_size] (member k sees obs[k])."""
        return self.dense(network_input(obs))


class MLPFamily:
    """Builds MLPs; takes flat (1-D) observations."""

    width_field = "hidden_sizes"

    def check(self, config: DQNConfig, observation: ObservationSpec) -> None:
        """EnvError unless observations are flat vectors."""
        if len(observation.shape) != 1:
            raise EnvError(
                f"env {config.env_id!r} has observations of {observation.describe()}; "
                f"network = 'mlp' needs flat (1-D) observations"
            )

    def build(
        self, config: DQNConfig, observation: ObservationSpec, n_actions: int, members: int, seeds: Sequence[int] | None
    ) -> MLP:
        """`members` MLPs, member k initialised from `seeds[k]`."""
        return MLP(observation, n_actions, config.hidden_sizes, config.dueling, member_generators(members, seeds))

    def describe(self, config: DQNConfig) -> str:
        """E.g. "hidden sizes [64, 64]"."""
        return f"hidden sizes {list(config.hidden_sizes)}"

    def parameter_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Weights and biases of one member."""
        widths = (observation.size, *config.hidden_sizes, n_actions + config.dueling)
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(widths))

    def activation_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Every layer's outputs, and the dueling combination's Q-values."""
        return sum(config.hidden_sizes) + n_actions + config.dueling * (n_actions + 1)


FAMILY = MLPFamily()
