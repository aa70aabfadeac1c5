"""Files written and read by the commands: a write cut short leaves the old file whole; config and search-space
files are bounded and their parser's errors are one line."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from pathlib import Path

import pytest

from dqn_tune.cli import main

RunInChild = Callable[[list[str], Callable[[], None]], tuple[int, str, str]]
SIZE_LIMIT = 512
"""A file size limit (bytes) below the size of a config exported as JSON."""


def test_best_out_leaves_the_old_file_whole_when_the_write_is_cut_short(
        study_db: Path, tmp_path: Path, in_child: RunInChild, capsys: pytest.CaptureFixture[str]) -> None:
    """A file size limit (RLIMIT_FSIZE, as `ulimit -f`) stops the write part-way, as a full disk would."""
    storage = ["--storage", f"sqlite:///{study_db}"]
    assert main(["best", *storage, "--format", "json"]) == 0
    assert len(capsys.readouterr().out.encode()) > SIZE_LIMIT  # the export does not fit under the limit
    out = tmp_path / "best.toml"
    out.write_text("learning_rate = 0.001\n")

    code, _, err = in_child(["best", *storage, "--format", "json", "--out", str(out)],
                            lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (SIZE_LIMIT, resource.RLIM_INFINITY)))
    assert code == 2 and err == (f"dqn-tune: error: cannot write '{out}': File too large (the file size limit "
                                 "(ulimit -f) is too small for it); the file there, if any, is unchanged\n")
    assert out.read_text() == "learning_rate = 0.001\n" and os.listdir(tmp_path) == ["best.toml"]
