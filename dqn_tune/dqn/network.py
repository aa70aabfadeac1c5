"""QNetwork: the multilayer perceptron that maps an observation to one Q-value per action."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class QNetwork(nn.Module):
    """MLP with ReLU hidden layers and a linear output of `n_actions` Q-values."""

    def __init__(self, obs_dim: int, n_actions: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, n_actions))
        self.layers = nn.Sequential(*layers)
        self.obs_dim = obs_dim
        self.n_actions = n_actions

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values of shape (batch, n_actions) for observations of shape (batch, obs_dim)."""
        return self.layers(obs)
