"""`dqn-tune train`: train one agent from flags and save it."""

from __future__ import annotations

import argparse

from dqn_tune.cli.arguments import add_device_flag, add_env_flag, add_preset_flag, seed, text
from dqn_tune.cli.config_flags import add_config_flags, build_config, check_fits_memory, env_dims
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.device import check_device
from dqn_tune.output_paths import check_writable
from dqn_tune.tuning.presets import eval_freq_for, preset_for

HELP = "train one DQN agent with the given hyperparameters and save it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `dqn-tune train`."""
    add_env_flag(
        parser,
        "gymnasium env id with Discrete actions (default: CartPole-v1)",
    )
    parser.add_argument(
        "--timesteps",
        "--total-timesteps",
        dest="total_timesteps",
        type=int,
        default=None,
        metavar="N",
        help="environment steps to train for (default: the env preset's budget, else 50000)",
    )
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--out", type=text, default="models/agent.pt", help="where to save the agent (default: models/agent.pt)"
    )
    parser.add_argument(
        "--config",
        type=text,
        default=None,
        metavar="FILE",
        help="TOML file of hyperparameters, as 'dqn-tune best --format toml' writes; flags given here override it",
    )
    add_preset_flag(parser)
    add_device_flag(parser, "the agent's networks")
    add_config_flags(parser, skip=("env_id", "total_timesteps"))


def run(args: argparse.Namespace) -> int:
    """Check everything (device, flags, seed, env, memory, out path), then train, print progress and save the agent."""
    from dqn_tune.dqn.agent import Agent, save_agent
    from dqn_tune.dqn.trainer import train

    check_device(args.device)
    start, origin = starting_config(args)
    implied = {} if args.total_timesteps is None else {"eval_freq": eval_freq_for(args.total_timesteps)}
    config = build_config(args, start, **implied)  # --timesteps without --eval-freq: EVALS_PER_RUN evaluations
    check_fits_memory(config, env_dims(config.env_id), args=args)
    out = check_writable(args.out)

    def report(step: int, mean_return: float) -> bool:
        print(f"step {step:>8}/{config.total_timesteps}  eval return {mean_return:8.1f}", flush=True)
        return False

    print(
        f"training DQN on {config.env_id} for {config.total_timesteps} steps (seed {args.seed}), starting from "
        f"{origin}",
        flush=True,
    )
    result = train(config, seed=args.seed, on_eval=report, device=args.device)  # DivergenceError: exit 2
    print(f"done in {result.wall_time_s:.1f}s ({result.steps_per_second:.0f} steps/s, {result.updates} updates)")
    print(
        f"mean evaluation return over {len(result.final_eval.returns)} episodes: "
        f"{result.final_eval.mean:.1f} +- {result.final_eval.std:.1f}"
    )
    save_agent(Agent.from_result(result), out)
    print(f"saved agent to {out}")
    return 0


def starting_config(args: argparse.Namespace) -> tuple[DQNConfig, str]:
    """The config the flags are applied to, and where it comes from: --config, the env's preset, or the defaults."""
    if args.config is not None:
        from dqn_tune.dqn.untrusted import check_env_id_imports_nothing
        from dqn_tune.results.export import read_config_file

        config = read_config_file(args.config)
        if args.env_id is None:
            check_env_id_imports_nothing(config.env_id, source=f"config file {args.config!r}")
        return config, args.config
    env_id = args.env_id or DQNConfig().env_id
    preset = None if args.no_preset else preset_for(env_id)
    if preset is None:
        return DQNConfig(env_id=env_id), "the global defaults"
    return preset.base_config(), preset.origin
