"""The defaults of what users take away from a study (retrain, dashboard, export): one set for the library and the
CLI, importable without torch or optuna so that `dqn-tune --help` starts at once."""

from __future__ import annotations

RETRAIN_SEEDS = 3
"""Fresh seeds `retrain` trains (as one batched run); the best is kept."""
EVAL_EPISODES = 100
"""Held-out greedy episodes each retrained seed is reported on."""
EVAL_SEED = 0
"""Seed of the held-out evaluation; the same default as `dqn-tune evaluate`, which so reprints the figure."""
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8080
FORMATS = ("toml", "json", "yaml", "args")
"""What `dqn-tune best` writes: toml for 'train --config', json with the validation table, RL Zoo's yaml, a command."""
