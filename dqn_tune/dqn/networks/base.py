"""What every Q-network family shares: the member-axis module, its layers, its heads and the family protocol.

A `QNetwork` holds K independent members of one shape: every parameter has the member axis first,
so optimizer steps, per-member gradient clipping, target updates and keep-best copies work on any
family alike, and member k's weights are the slice [k] of each parameter. Forward takes observations
[K, batch, *obs_shape] and returns Q-values [K, batch, n_actions]. Members never mix: every op is per
member or elementwise, so member k's numbers do not depend on the others. K = 1 is the same module:
a batched matmul of one member costs what a 2-D one does (squeezing to 2-D views costs more than it saves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from dqn_tune.dqn.config import DQNConfig
    from dqn_tune.dqn.observations import ObservationSpec


class QNetwork(nn.Module):
    """K Q-networks of one family and shape, applied together; subclasses define `forward`."""

    if TYPE_CHECKING:  # nn.Module's __call__ returns Any; ours runs `forward`: observations in, Q-values out

        def __call__(self, obs: torch.Tensor) -> torch.Tensor: ...

    def __init__(self, observation: ObservationSpec, n_actions: int, members: int) -> None:
        super().__init__()
        self.observation = observation
        self.n_actions = n_actions
        self.members = members

    def member_state_dict(self, member: int) -> dict[str, torch.Tensor]:
        """Member `member`'s weights as the state dict of a one-member network (fresh contiguous CPU tensors)."""
        return {name: tensor[member : member + 1].detach().cpu().clone() for name, tensor in self.state_dict().items()}


class DenseQNetwork(QNetwork):
    """A QNetwork ending in fully connected ReLU layers and a Q head, over features its subclass computes.

    Hidden layer i of member k is `hidden_weights[i][k]` ([in, out]) and `hidden_biases[i][k]` ([1, out]), the
    output layer `head_weight[k]` and `head_bias[k]` (see `head_parameters`).
    """

    def __init__(
        self,
        observation: ObservationSpec,
        n_actions: int,
        features: int,
        hidden_sizes: Sequence[int],
        dueling: bool,
        generators: Sequence[torch.Generator | None],
    ) -> None:
        super().__init__(observation, n_actions, len(generators))
        outputs = n_actions + 1 if dueling else n_actions
        widths = (features, *hidden_sizes, outputs)
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
        # the same Parameter objects, as a tuple: a ParameterList iterates through Python per item, on every forward
        self._hidden = tuple(zip(self.hidden_weights, self.hidden_biases, strict=True))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Q-values [K, batch, n_actions] of features x [K, batch, features]."""
        for weight, bias in self._hidden:
            x = stacked_relu_layer(x, weight, bias)
        return q_head(x, self.head_weight, self.head_bias, self.dueling)


class NetworkFamily(Protocol):
    """A kind of Q-network, registered by name in `dqn_tune.dqn.networks.FAMILIES`."""

    width_field: str
    """The config field of its layer widths: what to lower when its parameters do not fit in memory."""

    def check(self, config: DQNConfig, observation: ObservationSpec) -> None:
        """Raise EnvError if this family cannot take `observation` (e.g. an MLP given images)."""

    def build(
        self, config: DQNConfig, observation: ObservationSpec, n_actions: int, members: int, seeds: Sequence[int] | None
    ) -> QNetwork:
        """`members` networks; member k initialised from `seeds[k]` only (uninitialised without seeds)."""

    def describe(self, config: DQNConfig) -> str:
        """Its width settings in `config`, e.g. "hidden sizes [64, 64]", for messages."""

    def parameter_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Parameters of one member."""

    def activation_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Float values one forward pass holds per sample (layer outputs), for the memory estimate."""


def network_input(obs: torch.Tensor) -> torch.Tensor:
    """Stored observations as network input: the one conversion, done per minibatch and per acting step.

    Float observations pass through (no copy); integer and bool ones become float32. The CNN family
    scales images by their space's range instead (cnn.py).
    """
    return obs if obs.dtype == torch.float32 else obs.to(torch.float32)


def init_linear(fan_in: int, fan_out: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [fan_out, fan_in], bias [fan_out]) drawn as nn.Linear draws them, from `generator` only
    (uninitialised when it is None)."""
    weight, bias = torch.empty(fan_out, fan_in), torch.empty(fan_out)
    if generator is not None:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(bias, -bound, bound, generator=generator)
    return weight, bias


def member_generators(members: int, seeds: Sequence[int] | None) -> list[torch.Generator | None]:
    """One torch Generator per member, seeded with its own seed (never the global torch RNG)."""
    if seeds is None:
        return [None] * members
    return [torch.Generator().manual_seed(seed) for seed in seeds]


def stacked(tensors: Sequence[torch.Tensor]) -> nn.Parameter:
    """Members' tensors of one layer as one parameter with the member axis first."""
    return nn.Parameter(torch.stack(list(tensors)).contiguous())


def head_parameters(layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[nn.Parameter, nn.Parameter]:
    """The output layer of K members as (weight [K, outputs, in], bias [K, outputs, 1]): nn.Linear's layout per
    member, applied transposed by `q_head` (with few actions, batched matmuls whose result has a tiny last
    dimension are several times slower on CPU)."""
    return stacked([weight for weight, _ in layers]), stacked([bias[:, None] for _, bias in layers])


def q_head(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dueling: bool) -> torch.Tensor:
    """Q-values [K, batch, n_actions] from features [K, batch, in] and `head_parameters`.

    With `dueling` the layer's outputs are the advantages then the value, combined as Q = V + A - mean(A)
    (Wang et al. 2016): one matmul for both streams.
    """
    out = torch.baddbmm(bias, weight, features.mT).mT
    if not dueling:
        return out
    advantages, value = out[..., :-1], out[..., -1:]
    return value + (advantages - advantages.mean(dim=-1, keepdim=True))


def stacked_relu_layer(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """relu(x @ weight + bias) per member: x [K, batch, in], weight [K, in, out], bias [K, 1, out]."""
    return torch.relu_(torch.baddbmm(bias, x, weight))  # in place: baddbmm's backward does not need its output
