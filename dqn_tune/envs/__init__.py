"""dqn-tune's own gymnasium envs, registered under the `dqn-tune/` namespace when this package is imported.

`make_env` imports it for ids in that namespace (gymnasium 1.x loads no plugin entry points by itself).
"""

from __future__ import annotations

import gymnasium as gym

NAMESPACE = "dqn-tune"

CATCH_IDS = {f"{NAMESPACE}/Catch-v0": {}, f"{NAMESPACE}/CatchCHW-v0": {"channels_first": True}}
"""Catch as a uint8 H x W x C image, and as C x H x W."""

for _env_id, _kwargs in CATCH_IDS.items():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point="dqn_tune.envs.catch:Catch", kwargs=_kwargs)
