"""`dqn-tune presets`: the per-env presets `train` and `tune` start from."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import text
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.tuning.presets import load_presets

HELP = "list the per-env presets (budget, tuned config, search space) that train and tune start from"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune presets`."""
    parser.add_argument("--env", "--env-id", dest="env_id", type=text, default=None, metavar="ENV_ID",
                        help="show one env's preset in full (default: a line per env)")


def run(args: argparse.Namespace) -> int:
    """Print the presets; an env without one is said so (exit 0: it simply uses the global defaults)."""
    presets = load_presets()
    if args.env_id is None:
        for preset in presets.values():
            print(f"{preset.env_id:<16} {preset.timesteps:>8} steps (trials {preset.trial_timesteps}), "
                  f"{len(preset.config)} tuned hyperparameters, {len(preset.space.params)} in the search space: "
                  f"{preset.source}")
        print("other envs use the global defaults; --no-preset on train or tune does too")
        return 0
    preset = presets.get(args.env_id)
    if preset is None:
        print(f"{args.env_id} has no preset: train and tune use the global defaults; presets exist for "
              + ", ".join(presets))
        return 0
    defaults = DQNConfig()
    print(f"{preset.env_id}: {preset.timesteps} training steps, {preset.trial_timesteps} per tuning trial")
    print(f"source: {preset.source}")
    print("config (differences from the global defaults):")
    for name, value in preset.config.items():
        print(f"  {name} = {value!r} (default {getattr(defaults, name)!r})")
    print("search space:")
    for line in preset.space.describe():
        print(f"  {line}")
    return 0
