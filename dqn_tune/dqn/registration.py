"""Registering env ids of namespaces that gymnasium does not load by itself: dqn-tune's own and MinAtar's.

Gymnasium 1.x loads no `gymnasium.envs` entry points on its own, so `gym.make("MinAtar/Breakout-v1")`
fails until `minatar.gym.register_envs()` has run. `make_env` calls `register_namespace` first, so
users pass these ids without importing anything.
"""

from __future__ import annotations

import importlib

import gymnasium as gym

from dqn_tune.errors import EnvError, shown

MINATAR_EXTRA = "pip install 'dqn-tune[minatar]'"
MINATAR_PROBE = "MinAtar/Breakout-v1"
"""One of the ids `minatar.gym.register_envs` registers: present once it has run."""


def register_namespace(env_id: str) -> None:
    """Register the envs of `env_id`'s namespace when it is `dqn-tune/` or `MinAtar/`; EnvError without MinAtar."""
    namespace = env_id.partition("/")[0] if "/" in env_id else ""
    if namespace == "dqn-tune":
        importlib.import_module("dqn_tune.envs")
    elif namespace == "MinAtar" and MINATAR_PROBE not in gym.registry:
        try:
            minatar_gym = importlib.import_module("minatar.gym")
        except ImportError as exc:
            raise EnvError(
                f"env {shown(env_id)} needs the MinAtar package (GPL-3.0, an optional extra of dqn-tune): "
                f"{MINATAR_EXTRA}"
            ) from exc
        minatar_gym.register_envs()
