"""Flags and argument types shared by the subcommands, declared once (as Optuna's own CLI does)."""

from __future__ import annotations

import argparse

from dqn_tune.tuning.storage import DEFAULT_STORAGE


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected an integer >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; expected an integer >= 1")
    return value


def common_flags() -> argparse.ArgumentParser:
    """Flags every subcommand has."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    return parent


def storage_flags() -> argparse.ArgumentParser:
    """Flags of the subcommands that use a study storage: one name, one default, one help text."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--storage", default=None, metavar="URL",
                        help=f"SQLAlchemy URL of the Optuna storage (default: {DEFAULT_STORAGE}, relative to the "
                             "current directory; postgresql+psycopg2://user@host/db to share studies between machines)")
    return parent
