"""The CLI reference page (docs/cli.md), generated from the parser so that it cannot drift from the code.

Regenerate it with `python -m dqn_tune.cli.reference docs/cli.md`; tests/cli/test_reference.py fails when
the committed page differs from what this writes. Every command and flag of the parser appears, whatever
adds it: hidden aliases (help suppressed) stay hidden, and nothing depends on the terminal's width.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dqn_tune.cli import DEFAULT_COMMAND, PROG, build_parser
from dqn_tune.output_paths import write_text

HEADER = f"""# CLI reference

Generated from the parser by `python -m dqn_tune.cli.reference docs/cli.md` (a test fails when this page is
stale). `{PROG} --trials N ...` without a command means `{PROG} {DEFAULT_COMMAND} --trials N ...`. Every flag of
a command is listed with its default; `{PROG} COMMAND --help` prints the same.
"""


def render() -> str:
    """The whole page: one section per command, one table row per flag."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sections = [HEADER]
    for name, sub in subparsers.choices.items():
        sections.append(_command(name, sub))
    return "\n".join(sections)


def _command(name: str, parser: argparse.ArgumentParser) -> str:
    lines = [f"## {name}", "", parser.description or "", ""]
    for group in parser._action_groups:
        rows = [
            _row(action)
            for action in group._group_actions
            if action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction)
        ]
        if rows:
            title = group.title if group.title not in ("options", "optional arguments") else "flags"
            lines += [f"**{title}**", "", "| flag | help |", "|---|---|", *rows, ""]
    return "\n".join(lines)


def _row(action: argparse.Action) -> str:
    names = ", ".join(f"`{option}`" for option in action.option_strings) or f"`{action.metavar or action.dest}`"
    if action.option_strings and action.nargs != 0:
        metavar = action.metavar or (
            "{" + ",".join(map(str, action.choices)) + "}" if action.choices else action.dest.upper()
        )
        names += f" `{metavar}`"
    text = " ".join((action.help or "").replace("%%", "%").split()).replace("|", "\\|")
    return f"| {names} | {text} |"


def main(argv: list[str] | None = None) -> int:
    """Write the page to the path given (stdout without one)."""
    args = sys.argv[1:] if argv is None else argv
    page = render()
    if args:
        write_text(Path(args[0]), page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
