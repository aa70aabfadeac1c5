"""One CLI flag per DQNConfig field (`learning_rate` -> `--learning-rate`), and back to a config."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import TYPE_CHECKING, Any

from dqn_tune.cli.arguments import text
from dqn_tune.dqn.config import AUTO_WIDTHS, DQNConfig, flag_name
from dqn_tune.errors import ConfigError

if TYPE_CHECKING:  # numpy and gymnasium load when a command runs, not for --help
    from dqn_tune.dqn.observations import ObservationSpec


def _widths(text: str) -> tuple[int, ...]:
    if text.lower() == AUTO_WIDTHS:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid layer widths {text!r}; expected comma-separated integers such as 128,128, or auto where "
            "the default is auto"
        ) from None


class _NoneGiven:
    """'none' given on the command line, told apart from a flag not given (None)."""

    def __repr__(self) -> str:
        return "none"


NONE = _NoneGiven()


def _optional_float(text: str) -> float | _NoneGiven:
    if text.lower() == "none":
        return NONE
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected a number or 'none'") from None


_PARSERS: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": text,
    "float | None": _optional_float,
    "tuple[int, ...]": _widths,
}


def add_config_flags(parser: argparse.ArgumentParser, *, skip: tuple[str, ...] = ()) -> None:
    """Add a flag for every DQNConfig field not in `skip`; unset flags stay None (use the default)."""
    group = parser.add_argument_group("hyperparameters (defaults solve CartPole-v1)")
    for field in dataclasses.fields(DQNConfig):
        if field.name in skip:
            continue
        help_text = f"{field.metadata['help']} Default: {_default_text(field.default)}."
        if field.type == "bool":
            group.add_argument(
                flag_name(field.name),
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                flag_name(field.name),
                dest=field.name,
                type=_PARSERS[str(field.type)],
                default=None,
                metavar=field.name.upper(),
                help=help_text,
            )


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the user set on the command line ('none' given to a flag is None)."""
    names = {f.name for f in dataclasses.fields(DQNConfig)}
    return {
        name: None if value is NONE else value
        for name, value in vars(args).items()
        if name in names and value is not None
    }


def build_config(args: argparse.Namespace, base: DQNConfig | None = None, **implied: Any) -> DQNConfig:
    """`base` (default: DQNConfig()) with `implied` fields (e.g. an eval_freq that follows --timesteps) and the
    flags the user set, in one validated step; errors name the flag."""
    try:
        return (base or DQNConfig()).replace(**{**implied, **config_overrides(args)})
    except ConfigError as exc:
        raise flag_error(exc, args) from None


def flag_error(exc: ConfigError, args: argparse.Namespace) -> ConfigError:
    """`exc` with field names as flags; a value the user did not give says where it comes from, since the error
    names a flag they never typed (`--timesteps 500` against the default `learning_starts`)."""
    return ConfigError(with_flag_names(str(exc)) + not_given_note(exc.field, args), field=exc.field)


def not_given_note(field: str | None, args: argparse.Namespace) -> str:
    """'; --flag was not given: ...' when `field` is a DQNConfig field not set on the command line, else ''."""
    if field not in {f.name for f in dataclasses.fields(DQNConfig)} or field in config_overrides(args):
        return ""
    return f"; {flag_name(field)} was not given: this is the value of the preset, --config file or defaults in use"


def env_dims(env_id: str) -> tuple[ObservationSpec, int]:
    """(observation spec, number of actions) of `env_id`; EnvError if DQN cannot use it."""
    from dqn_tune.dqn.envs import env_spaces, make_env  # gymnasium loads when a command runs, not for --help

    with make_env(env_id) as env:
        dims = env_spaces(env)
    return dims


def check_fits_memory(
    config: DQNConfig,
    dims: tuple[ObservationSpec, int],
    *,
    members: int = 1,
    context: str = "",
    args: argparse.Namespace | None = None,
) -> None:
    """ConfigError (naming flags, after `context`; with `args`, saying when the value was not given) unless
    training `members` seeds of `config` together on an env of `dims` fits the memory available; called before
    anything is written or allocated."""
    from dqn_tune.dqn.memory import check_memory

    try:
        check_memory(config, *dims, members=members)
    except ConfigError as exc:
        note = "" if args is None else not_given_note(exc.field, args)
        raise ConfigError(context + with_flag_names(str(exc)) + note, field=exc.field) from None


def with_flag_names(message: str) -> str:
    """Rewrite a config error message so each field name reads as its flag; a list of accepted values ("one of
    auto, mlp, cnn") stays as it is, since a value may be spelled like a field (network 'cnn', field cnn)."""
    names = "|".join(f.name for f in dataclasses.fields(DQNConfig))
    pattern = rf"(one of [\w ,]+)|(?<![-\w])({names})\b"  # the lookbehind: not a flag already
    return re.sub(pattern, lambda match: match.group(1) or flag_name(match.group(2)), message)


def _default_text(value: object) -> str:
    if value == ():
        return AUTO_WIDTHS
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)
