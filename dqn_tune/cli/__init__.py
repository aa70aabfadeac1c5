"""dqn-tune: parse the command line, call one library function, return an exit code.

Each subcommand lives in its own module with `HELP`, `add_arguments(parser)` and `run(args) -> int`.
`dqn-tune --trials N` (no subcommand) means `dqn-tune tune --trials N`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

from dqn_tune.errors import DQNTuneError
from dqn_tune.runner.interrupts import deferred_interrupts, interrupts_stop_cleanly

COMMANDS: tuple[str, ...] = ("train", "evaluate", "retrain", "ablate", "dashboard", "report", "validate", "best", "presets",
                             "storage-proxy", "tune")
"""Subcommands, each the module dqn_tune.cli.<name> ('-' as '_'); imported inside `main` (see `command_module`)."""
DEFAULT_COMMAND = "tune"
PROG = "dqn-tune"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """As argparse, but a flag whose value is '--' is refused: argparse drops a '--' value and stores an
        empty list unchecked by the flag's type (e.g. `--out-dir=--` reached the library as [])."""
        parsed, extras = super().parse_known_args(args, namespace)
        for action in self._actions:
            if action.option_strings and action.nargs is None and isinstance(getattr(parsed, action.dest, None), list):
                self.error(f"argument {'/'.join(action.option_strings)}: invalid value '--'; expected one value")
        return parsed, extras


def command_module(name: str) -> ModuleType:
    """The module of subcommand `name` (torch, optuna and gymnasium load here, not when dqn_tune.cli does)."""
    return importlib.import_module(f"dqn_tune.cli.{name.replace('-', '_')}")


def build_parser() -> argparse.ArgumentParser:
    """The full dqn-tune parser with one subparser per command."""
    from dqn_tune.cli.arguments import common_flags, storage_flags

    parser = OneLineParser(prog=PROG, description="Tune DQN hyperparameters with Optuna and train the best agent.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    common, storage = common_flags(), storage_flags()
    for name in COMMANDS:
        module = command_module(name)
        parents = [common, storage] if getattr(module, "USES_STORAGE", False) else [common]
        sub = subparsers.add_parser(name, help=module.HELP.replace("%", "%%"),  # argparse %-formats help
                                    description=module.HELP, parents=parents)
        module.add_arguments(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dqn-tune")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "(not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dqn-tune` console script; returns the exit status.

    Everything heavy (the subcommands' imports of torch and optuna included) runs inside the try, so
    Ctrl-C at any moment exits with status 130 and one line, never a traceback.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if DEFAULT_COMMAND in COMMANDS and args_list and args_list[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args_list.insert(0, DEFAULT_COMMAND)
    debug = False
    with interrupts_stop_cleanly():
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
                if args.command is None:
                    parser.print_help()
                    return 2
                module = command_module(args.command)
            return module.run(args)
        except DQNTuneError as exc:
            if debug:
                raise
            sys.stderr.write(f"{PROG}: error: {exc}\n")
            return 2
        except KeyboardInterrupt:
            sys.stderr.write(f"{PROG}: interrupted\n")
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
