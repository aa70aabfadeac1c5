"""dqn-tune: parse the command line, call one library function, return an exit code.

Each subcommand lives in its own module with `HELP`, `add_arguments(parser)` and `run(args) -> int`.
`dqn-tune --trials N` (no subcommand) means `dqn-tune tune --trials N`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from dqn_tune.cli import ablate, dashboard, evaluate, report, retrain, train, tune
from dqn_tune.cli.arguments import common_flags, storage_flags
from dqn_tune.errors import DQNTuneError

COMMANDS: dict[str, ModuleType] = {
    "train": train,
    "evaluate": evaluate,
    "retrain": retrain,
    "ablate": ablate,
    "dashboard": dashboard,
    "report": report,
    "tune": tune,
}
DEFAULT_COMMAND = "tune"
PROG = "dqn-tune"


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{PROG}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    """The full dqn-tune parser with one subparser per command."""
    parser = OneLineParser(prog=PROG, description="Tune DQN hyperparameters with Optuna and train the best agent.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    common, storage = common_flags(), storage_flags()
    for name, module in COMMANDS.items():
        parents = [common, storage] if getattr(module, "USES_STORAGE", False) else [common]
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP, parents=parents)
        module.add_arguments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dqn-tune` console script; returns the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if DEFAULT_COMMAND in COMMANDS and (not args_list or (args_list[0] not in COMMANDS
                                                          and args_list[0] not in ("-h", "--help"))):
        args_list.insert(0, DEFAULT_COMMAND)
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return COMMANDS[args.command].run(args)
    except DQNTuneError as exc:
        if args.debug:
            raise
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
