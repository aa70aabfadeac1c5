"""The optimizer of a run, by `config.optimizer`: Adam (fused), or the centered RMSprop of DQN's papers.

Both are elementwise with one learning rate for all parameters, so one optimizer over the stacked
parameters of K members is K independent optimizers.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from dqn_tune.dqn.config import DQNConfig

STATE_COPIES = {"adam": 2, "rmsprop": 3}
"""Per-parameter tensors each optimizer keeps: Adam's two moments; centered RMSprop's squared and plain
gradient averages and its momentum buffer."""
RMSPROP_SETTINGS: dict[str, Any] = {"alpha": 0.95, "eps": 0.01, "centered": True, "momentum": 0.95}
"""torch.optim.RMSprop's settings in MinAtar's reference DQN (examples/dqn.py: squared- and plain-gradient
momentum 0.95, minimum squared gradient 0.01), after the Nature DQN's RMSProp."""


def make_optimizer(config: DQNConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, at `config.learning_rate`."""
    if config.optimizer == "rmsprop":
        # foreach: one op per step for all parameters (torch has no fused RMSprop; on the CPU it loops by default)
        return torch.optim.RMSprop(params, lr=config.learning_rate, foreach=True, **RMSPROP_SETTINGS)
    return torch.optim.Adam(params, lr=config.learning_rate, fused=True)
