"""dqn-tune: parse the command line, call one library function, return an exit code.

Each subcommand lives in its own module with `HELP`, `add_arguments(parser)` and `run(args) -> int`.
`dqn-tune --trials N` (no subcommand) means `dqn-tune tune --trials N`. The parser is built from light
modules only: torch, optuna and gymnasium load inside a command's `run`, so `--help`, `--version` and
`presets` start at once (tests/cli/test_startup.py).
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from dqn_tune.errors import DQNTuneError
from dqn_tune.runner.interrupts import deferred_interrupts, interrupts_stop_cleanly

COMMANDS: tuple[str, ...] = (
    "train",
    "evaluate",
    "retrain",
    "ablate",
    "dashboard",
    "report",
    "validate",
    "best",
    "presets",
    "storage-proxy",
    "tune",
)
"""Subcommands, each the module dqn_tune.cli.<name> ('-' as '_'); imported inside `main` (see `command_module`)."""
DEFAULT_COMMAND = "tune"
PROG = "dqn-tune"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)

    def parse_known_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> tuple[argparse.Namespace, list[str]]:
        """As argparse, but a flag whose value is '--' is refused: argparse drops a '--' value and stores an
        empty list unchecked by the flag's type (e.g. `--out-dir=--` reached the library as []; an appending
        flag such as `--grid` gets [] among its values)."""
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            value = getattr(parsed, action.dest, None)
            if (
                action.option_strings
                and action.nargs is None
                and isinstance(value, list)
                and (not value or [] in value)
            ):
                self.error(f"argument {'/'.join(action.option_strings)}: invalid value '--'; expected one value")
        return parsed, extras

    def parse_args(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        namespace: argparse.Namespace | None = None,
    ) -> argparse.Namespace:
        """As argparse, but an unknown flag gets a did-you-mean from the flags of the command it was given to."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            parser = self.command_parser(getattr(parsed, "command", None))
            unknown = next((extra.split("=", 1)[0] for extra in extras if extra.startswith("-")), None)
            close = difflib.get_close_matches(unknown, parser.visible_flags(), n=1) if unknown else []
            parser.error(
                f"unrecognized arguments: {' '.join(extras)}" + (f"; did you mean {close[0]}?" if close else "")
            )
        return parsed

    def command_parser(self, command: str | None) -> OneLineParser:
        """The subparser of `command` (this parser when there is none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction) and command in action.choices:
                return action.choices[command]  # type: ignore[no-any-return]
        return self

    def visible_flags(self) -> list[str]:
        """The option strings --help shows (hidden aliases left out)."""
        return [flag for action in self._actions if action.help != argparse.SUPPRESS for flag in action.option_strings]


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name` (torch, optuna and gymnasium load here, not when dqn_tune.cli does)."""
    return importlib.import_module(f"dqn_tune.cli.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    """The full dqn-tune parser with one subparser per command; its help ends with the default command's flags."""
    from dqn_tune.cli.arguments import common_flags, storage_flags

    parser = OneLineParser(
        prog=PROG,
        description="Tune DQN hyperparameters with Optuna and train the best agent.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    common, storage = common_flags(), storage_flags()
    for name in COMMANDS:
        module = command_module(name)
        parents = [common, storage] if getattr(module, "USES_STORAGE", False) else [common]
        sub = subparsers.add_parser(
            name,
            help=module.HELP.replace("%", "%%"),  # argparse %-formats help
            description=module.HELP,
            parents=parents,  # type: ignore[arg-type]
        )
        module.add_arguments(sub)
    parser.epilog = default_command_help(subparsers.choices[DEFAULT_COMMAND])
    return parser


def default_command_help(sub: argparse.ArgumentParser) -> str:
    """What `dqn-tune` without a command does, and the default command's flags other than the hyperparameters."""
    formatter = sub._get_formatter()
    for group in sub._action_groups:
        if not group.title or not group.title.startswith("hyperparameters"):
            formatter.start_section(f"{DEFAULT_COMMAND} {group.title}")
            formatter.add_arguments([a for a in group._group_actions if not isinstance(a, argparse._HelpAction)])
            formatter.end_section()
    return (
        f"Without a command, `{PROG} --trials N ...` means `{PROG} {DEFAULT_COMMAND} --trials N ...`. Its flags "
        f"(every hyperparameter has one too, e.g. --gamma 0.99: see '{PROG} {DEFAULT_COMMAND} --help'):\n"
        + formatter.format_help()
    )


def _storage_fault(exc: Exception, storage: str | None) -> DQNTuneError | None:
    """The one-line error of a storage fault `exc` met by a command on `storage` (its --storage), or None for any
    other exception."""
    # imported here, not with the module: `dqn-tune --version` and `--help` need no SQLAlchemy
    from dqn_tune.runner.storage import DEFAULT_STORAGE
    from dqn_tune.runner.storage_errors import storage_error

    return storage_error(exc, url=storage or DEFAULT_STORAGE)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dqn-tune")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def program() -> NoReturn:
    """The `dqn-tune` console script and `python -m dqn_tune`: run the command line and exit with its status; a
    Ctrl-C or SIGTERM after the command has finished (its summary printed) is ignored while the process exits.
    A reader that stops early (`dqn-tune presets | head`) ends the output quietly, as the shell's tools do."""
    try:
        status = main(exiting=True)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python's recipe: point stdout at /dev/null so that the flush at exit does not raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
    raise SystemExit(status)


def main(argv: Sequence[str] | None = None, *, exiting: bool = False) -> int:
    """Run the command line `argv` (default: sys.argv[1:]); returns the exit status.

    Everything heavy (the subcommands' imports of torch and optuna included) runs inside the try, so
    Ctrl-C at any moment exits with status 130 and one line, never a traceback. `exiting`: the process
    exits right after, and ignores stop signals from then on (see `program`).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if DEFAULT_COMMAND in COMMANDS and args_list and args_list[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args_list.insert(0, DEFAULT_COMMAND)
    debug, storage = False, None
    with interrupts_stop_cleanly(until_exit=exiting):
        try:
            # A Ctrl-C while torch, optuna and gymnasium import is held until they are done: raised inside a C++
            # extension's import, KeyboardInterrupt can abort the process (pybind11) or be swallowed.
            with deferred_interrupts():
                parser = build_parser()
                try:
                    args = parser.parse_args(args_list)
                except SystemExit as exc:
                    return int(exc.code or 0)
                debug = getattr(args, "debug", False)  # a bare `dqn-tune` has no subcommand flags
                storage = getattr(args, "storage", None)
                if args.command is None:
                    parser.print_help()
                    return 2
                module = command_module(args.command)
            status: int = module.run(args)
            return status
        except DQNTuneError as exc:
            if debug:
                raise
            sys.stderr.write(f"{PROG}: error: {exc}\n")
            return 2
        except KeyboardInterrupt:
            sys.stderr.write(f"{PROG}: interrupted\n")
            return 130
        except Exception as exc:  # a storage fault met after the storage opened: a full disk, a damaged database
            fault = None if debug else _storage_fault(exc, storage)
            if fault is None:
                raise
            sys.stderr.write(f"{PROG}: error: {fault}\n")
            return 2


if __name__ == "__main__":
    program()
