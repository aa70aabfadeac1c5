"""The MLP family: ReLU hidden layers of `config.hidden_sizes` over flat observations, then a Q head."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.networks.base import (
    QNetwork,
    head_parameters,
    init_linear,
    member_generators,
    network_input,
    q_head,
    stacked,
    stacked_relu_layer,
)
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.errors import EnvError


class MLP(QNetwork):
    """K MLPs; hidden layer i of member k is `hidden_weights[i][k]` ([in, out]) and `hidden_biases[i][k]` ([1, out]),
    its output layer `head_weight[k]` and `head_bias[k]` (see `base.head_parameters`)."""

    def __init__(
        self,
        observation: ObservationSpec,
        n_actions: int,
        hidden_sizes: Sequence[int],
        dueling: bool,
        generators: Sequence[torch.Generator | None],
    ) -> None:
        super().__init__(observation, n_actions, len(generators))
        outputs = n_actions + 1 if dueling else n_actions
        widths = (observation.size, *hidden_sizes, outputs)
        # member by member, layer by layer, weight then bias: the draws of nn.Linear layers built in order
        members = [
            [init_linear(fan_in, fan_out, generator) for fan_in, fan_out in pairwise(widths)]
            for generator in generators
        ]
        *hidden, output = zip(*members, strict=True)  # per layer: that layer of every member
        self.hidden_weights = nn.ParameterList(stacked([weight.T for weight, _ in layer]) for layer in hidden)
        self.hidden_biases = nn.ParameterList(stacked([bias[None] for _, bias in layer]) for layer in hidden)
        self.head_weight, self.head_bias = head_parameters(output)
        self.dueling = dueling
        # the same Parameter objects, as a tuple: iterating a ParameterList costs ~1 us per item, on every forward
        self._hidden = tuple(zip(self.hidden_weights, self.hidden_biases, strict=True))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values [K, batch, n_actions] for observations [K, batch, obs_size] (member k sees obs[k])."""
        x = network_input(obs)
        for weight, bias in self._hidden:
            x = stacked_relu_layer(x, weight, bias)
        return q_head(x, self.head_weight, self.head_bias, self.dueling)


class MLPFamily:
    """Builds MLPs; takes flat (1-D) observations."""

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

    def parameter_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Weights and biases of one member."""
        widths = (observation.size, *config.hidden_sizes, n_actions + config.dueling)
        return sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(widths))

    def activation_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Every layer's outputs, and the dueling combination's Q-values."""
        return sum(config.hidden_sizes) + n_actions + config.dueling * (n_actions + 1)


FAMILY = MLPFamily()
