"""docs/cli.md is generated from the parser: a new or changed flag must show there."""

from __future__ import annotations

import argparse
from pathlib import Path

from dqn_tune.cli import build_parser
from dqn_tune.cli.reference import render

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_the_cli_reference_page_is_the_parser_s() -> None:
    assert PAGE.read_text(encoding="utf-8") == render(), (
        "docs/cli.md is stale: regenerate it with `python -m dqn_tune.cli.reference docs/cli.md`"
    )


def test_each_command_s_section_names_its_visible_flags_and_no_hidden_alias() -> None:
    sections = {part.split("\n", 1)[0]: part for part in render().split("\n## ")[1:]}
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert sorted(sections) == sorted(commands)
    for name, command in commands.items():
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert (f"`{option}`" in sections[name]) == (action.help != argparse.SUPPRESS), (name, option)
