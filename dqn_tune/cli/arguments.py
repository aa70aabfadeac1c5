"""Flags and argument types shared by the subcommands, declared once (as Optuna's own CLI does).

Every flag goes through one of the types below, so a bad value is a one-line usage error (exit 2)
naming the value and what is accepted: no traceback, no silent fallback to a default.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping

from dqn_tune.dqn.config import INT_MAX, SEED_MAX
from dqn_tune.dqn.device import DEVICES
from dqn_tune.errors import ConfigError, shown
from dqn_tune.runner.defaults import DEFAULT_STORAGE, RETRY_TIMEOUT_S
from dqn_tune.tuning.defaults import CHECKPOINT_EVERY, ENV_ID, default_study_name

STUDY_NAME_MAX = 512
"""Longest study name: Optuna's column for it (VARCHAR(512) on PostgreSQL and MySQL)."""
MAX_SEEDS = 1_000
"""Most training runs of one config a command may ask for (`--seeds`): each is a full training run."""
MAX_WORKERS_PER_CPU = 4
"""Worker processes allowed per CPU core (each is a training process with its own torch)."""
MAX_SECONDS = 86_400
"""Longest heartbeat interval or grace period: a day."""
MAX_REMOTE_WORKERS = 10_000
"""Most workers a command may start on a cluster (--executor ray), where this machine's cores do not bound them."""


def bounded_int(low: int, high: int, *, accepted: str | None = None) -> Callable[[str], int]:
    """argparse type: an integer from `low` to `high`; `accepted` describes the range in errors."""
    description = accepted or (f"an integer >= {low}" if high == INT_MAX else f"an integer from {low} to {high}")

    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:  # also a number of more than 4300 digits
            raise argparse.ArgumentTypeError(f"invalid value {shown(raw)}; expected {description}") from None
        if not low <= value <= high:
            limit = " (at most 2**63 - 1)" if value > high == INT_MAX else ""
            raise argparse.ArgumentTypeError(f"invalid value {shown(raw)}; expected {description}{limit}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


positive_int = bounded_int(1, INT_MAX)
"""argparse type: an integer from 1 to 2**63 - 1 (what SQLite and numpy can hold)."""
non_negative_int = bounded_int(0, INT_MAX)
"""argparse type: an integer from 0 to 2**63 - 1."""
seed = bounded_int(0, SEED_MAX, accepted=f"an integer from 0 to {SEED_MAX} (2**32 - 1)")
"""argparse type: a run or evaluation seed."""
seed_count = bounded_int(1, MAX_SEEDS)
"""argparse type: how many seeds (training runs) to train."""
validation_seed_count = bounded_int(2, MAX_SEEDS)
"""argparse type: held-out seeds per validated config (a confidence interval needs two)."""
seconds = bounded_int(1, MAX_SECONDS)
"""argparse type: a duration in seconds, up to a day."""


def cpu_count() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers(text: str) -> int:
    """argparse type: worker processes, from 1 to MAX_WORKERS_PER_CPU per CPU core of this machine."""
    cores = cpu_count()
    return bounded_int(
        1,
        MAX_WORKERS_PER_CPU * cores,
        accepted=f"an integer from 1 to {MAX_WORKERS_PER_CPU * cores} "
        f"({MAX_WORKERS_PER_CPU} per CPU core; this machine has {cores})",
    )(text)


def add_study_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """`--study-name` and `--env`, as `tune` has them: left out, the study is `dqn-<ENV_ID>` (see `chosen_study`)."""
    parser.add_argument("--study-name", type=study_name, default=None, help=f"{what} (default: dqn-<ENV_ID>)")
    add_env_flag(parser, f"env of the default study name (default: {ENV_ID})", default=ENV_ID)


def add_env_flag(parser: argparse.ArgumentParser, help_text: str, *, default: str | None = None) -> None:
    """`--env ENV_ID` (also `--env-id`, Gymnasium's and RL Zoo's name), one declaration for every command."""
    parser.add_argument(
        "--env", "--env-id", dest="env_id", type=text, default=default, metavar="ENV_ID", help=help_text
    )


def chosen_study(args: argparse.Namespace) -> str:
    """The study named by `add_study_flags`' flags."""
    return args.study_name or default_study_name(args.env_id)


def add_hidden_alias(parser: argparse.ArgumentParser, alias: str, dest: str, kind: Callable[[str], object]) -> None:
    """`alias` as another spelling of the flag of `dest`, left out of --help: an older or another tool's name that users
    may have in scripts. Errors name the spelling typed."""
    parser.add_argument(alias, dest=dest, type=kind, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def add_workers_flag(parser: argparse.ArgumentParser, *, remote: bool = False) -> None:
    """`--workers W`, shared by the commands that run trials; left out, `chosen_workers` picks the usable cores.
    With `remote` (a command with --executor), the bound of this machine's cores is checked by `check_local_workers`
    once the executor is known."""
    parser.add_argument(
        "--workers",
        type=bounded_int(1, MAX_REMOTE_WORKERS) if remote else workers,
        default=None,
        metavar="W",
        help="worker processes, one torch thread each (default: the CPU cores this process may use, at most one per "
        "trial; --workers 1 for one)"
        + (
            f"; on this machine at most 4 per core, on a cluster (--executor ray) up to {MAX_REMOTE_WORKERS}"
            if remote
            else ""
        ),
    )


def check_local_workers(given: int | None) -> None:
    """The bound `workers` puts on --workers, checked after parsing (ConfigError naming the flag)."""
    if given is not None:
        try:
            workers(str(given))
        except argparse.ArgumentTypeError as exc:
            raise ConfigError(
                f"argument --workers: {exc} on this machine (--executor local)", field="workers"
            ) from None


def add_storage_retry_flag(parser: argparse._ActionsContainer) -> None:
    """`--storage-retry-timeout S`: how long transient storage errors are retried (retry.RetryPolicy)."""
    parser.add_argument(
        "--storage-retry-timeout",
        type=bounded_int(0, MAX_SECONDS),
        default=RETRY_TIMEOUT_S,
        metavar="S",
        help="seconds to keep retrying a storage that is down, restarting or full of clients before giving up; each "
        f"wait prints a line (default: {RETRY_TIMEOUT_S}, 0: never retry)",
    )


def add_checkpoint_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """`--checkpoint-every N`, shared by the commands that run trials; `what` names the runs it checkpoints."""
    parser.add_argument(
        "--checkpoint-every",
        type=bounded_int(0, INT_MAX),
        default=CHECKPOINT_EVERY,
        metavar="N",
        help=f"save {what} every N env steps in the artifact store, so that a trial retried after its worker died "
        f"resumes where it stopped (default: {CHECKPOINT_EVERY}, 0: never; see docs/checkpoints.md)",
    )


def add_device_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """`--device cpu|cuda`, shared by the commands that train; `what` names the networks it places."""
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help=f"where {what} train: cpu, or cuda on a GPU machine (default: cpu)",
    )


def chosen_workers(given: int | None, trials: int | None = None) -> int:
    """`--workers` as given, else the usable CPU cores (at most `trials`)."""
    return given if given is not None else max(1, min(cpu_count(), trials or cpu_count()))


def workers_line(given: int | None, count: int) -> str | None:
    """What to print about a worker count the user did not give (None when given)."""
    if given is not None:
        return None
    return (
        f"{count} worker process{'es' if count > 1 else ''} (the usable CPU cores"
        f"{', one per trial' if count < cpu_count() else ''}; --workers W to change)"
    )


def text(value: str) -> str:
    """argparse type: a non-empty string that can be stored and used as a path (no NUL, valid UTF-8).

    An empty value (often an unset shell variable) is refused rather than read as "the default".
    """
    if not value.strip():
        raise argparse.ArgumentTypeError(
            f"invalid value {value!r}: it is empty (an unset shell variable?); "
            "give a value or leave the flag out for its default"
        )
    if "\0" in value:
        raise argparse.ArgumentTypeError(f"invalid value {shown(value)}: it contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"invalid value {shown(value)}: it is not valid UTF-8") from None
    return value


def study_name(value: str) -> str:
    """argparse type: a study name, `text` of at most STUDY_NAME_MAX characters (Optuna's limit)."""
    value = text(value)
    if len(value) > STUDY_NAME_MAX:
        raise argparse.ArgumentTypeError(
            f"invalid study name {shown(value)} ({len(value)} characters); expected at most {STUDY_NAME_MAX} characters"
        )
    return value


def common_flags() -> argparse.ArgumentParser:
    """Flags every subcommand has."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parent


def storage_flags() -> argparse.ArgumentParser:
    """Flags of the subcommands that use a study storage: one name, one default, one help text."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--storage",
        type=text,
        default=None,
        metavar="URL",
        help=f"SQLAlchemy URL of the Optuna storage (default: {DEFAULT_STORAGE}, relative to the "
        "current directory; postgresql+psycopg2://user@host/db to share studies between machines)",
    )
    return parent


def add_preset_flag(parser: argparse.ArgumentParser) -> None:
    """`--no-preset`: start from the global defaults instead of the env's preset (`dqn-tune presets`)."""
    parser.add_argument(
        "--no-preset",
        action="store_true",
        help="start from the global defaults instead of the env's preset (see 'dqn-tune presets')",
    )


def add_artifact_dir_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--artifact-dir: where trial artifacts (learning-curve PNGs) are; `what` says what the command does with it."""
    parser.add_argument(
        "--artifact-dir",
        type=text,
        default=None,
        metavar="DIR",
        help=f"{what}; a directory every machine sharing the study mounts at the same path "
        "(default: the directory stored on the study, else studies/artifacts beside a SQLite "
        "file or in the current directory)",
    )


def flag_error(exc: ConfigError, flags: Mapping[str, str]) -> ConfigError:
    """`exc` with the field name it starts with written as the flag that sets it (`flags`: field -> flag), so
    the message names what the user typed; `exc` itself when its field has no flag there."""
    if exc.field is None or exc.field not in flags:
        return exc
    return ConfigError(re.sub(rf"^{re.escape(exc.field)}\b", flags[exc.field], str(exc)), field=exc.field)
