"""`dqn-tune presets`: the per-env presets `train` and `tune` start from."""

from __future__ import annotations

import argparse
import textwrap

from dqn_tune.cli.arguments import add_env_flag
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.tuning.presets import load_presets

WIDTH = 100
"""Longest line the listing prints (a preset's source is shortened to fit)."""
HELP = "list the per-env presets (budget, tuned config, search space) that train and tune start from"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune presets`."""
    add_env_flag(
        parser,
        "show one env's preset in full (default: a line per env)",
    )


def run(args: argparse.Namespace) -> int:
    """Print the presets; an env without one is said so (exit 0: it simply uses the global defaults)."""
    presets = load_presets()
    if args.env_id is None:
        width = max(len(env_id) for env_id in presets)
        print(f"{'env':<{width}} {'steps':>7} {'per trial':>9} {'tuned':>5} {'searched':>8}  from")
        for entry in presets.values():
            row = (
                f"{entry.env_id:<{width}} {entry.timesteps:>7} {entry.trial_timesteps:>9} {len(entry.config):>5} "
                f"{len(entry.space.params):>8}  "
            )
            print(row + textwrap.shorten(entry.source, WIDTH - len(row), placeholder="..."))
        print("tuned: hyperparameters that differ from the global defaults; searched: hyperparameters tune samples")
        print("'dqn-tune presets --env ENV_ID' shows one in full; other envs use the global defaults (--no-preset)")
        return 0
    preset = presets.get(args.env_id)
    if preset is None:
        print(
            f"{args.env_id} has no preset: train and tune use the global defaults; presets exist for "
            + ", ".join(presets)
        )
        return 0
    defaults = DQNConfig()
    print(f"{preset.env_id}: {preset.timesteps} training steps, {preset.trial_timesteps} per tuning trial")
    print(textwrap.fill(f"source: {preset.source}", WIDTH, subsequent_indent="  "))
    print("config (differences from the global defaults):")
    for name, value in preset.config.items():
        print(f"  {name} = {value!r} (default {getattr(defaults, name)!r})")
    print("search space:")
    for line in preset.space.describe():
        print(f"  {line}")
    return 0
