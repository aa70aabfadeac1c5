"""dqn-tune: find good DQN hyperparameters with Optuna and train the best into a saved agent.

The names below load on first use (PEP 562), so `import dqn_tune` (and the `dqn-tune` command's
start, before it can handle Ctrl-C) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dqn_tune.dqn.agent import Agent, load_agent, save_agent
    from dqn_tune.dqn.config import DQNConfig
    from dqn_tune.dqn.trainer import GroupEvalCallback, TrainResult, train, train_seeds

_EXPORTS = {
    "Agent": "dqn_tune.dqn.agent",
    "load_agent": "dqn_tune.dqn.agent",
    "save_agent": "dqn_tune.dqn.agent",
    "GroupEvalCallback": "dqn_tune.dqn.trainer",
    "train_seeds": "dqn_tune.dqn.trainer",
    "DQNConfig": "dqn_tune.dqn.config",
    "TrainResult": "dqn_tune.dqn.trainer",
    "train": "dqn_tune.dqn.trainer",
}
__all__ = ["Agent", "DQNConfig", "GroupEvalCallback", "TrainResult", "load_agent", "save_agent", "train", "train_seeds"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """Import an exported name on first use."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dqn_tune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted([*globals(), *__all__])
