"""Helpers of the CLI tests: run `main` as user nobody (root ignores mode bits), a directory nobody can enter."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dqn_tune.cli import build_parser, main
from dqn_tune.dqn.envs import make_env

NOBODY = 65534


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temporary directory that user nobody can enter (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="dqn_tune_test_"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory)


@pytest.fixture
def as_nobody() -> Callable[[list[str]], tuple[int, str]]:
    """`run(args) -> (exit status, stderr)`: `main(args)` as user nobody in a forked child (in this process
    when not root); imports are done first, before privileges are dropped."""
    make_env("CartPole-v1").close()
    build_parser()  # imports every subcommand's module, which main imports lazily
    return run_as_nobody if os.geteuid() == 0 else run_in_process


def run_in_process(args: list[str]) -> tuple[int, str]:
    """`main(args)` here; (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(args)
    return code, err.getvalue()


def run_as_nobody(args: list[str]) -> tuple[int, str]:
    """`main(args)` as user nobody in a forked child; (exit status, stderr or the child's traceback)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: drop to nobody, run, report, exit without running pytest's teardown
        try:
            os.close(read_end)
            _load_optuna_migrations()
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                code, err = run_in_process(args)
            except BaseException:  # noqa: BLE001 - reported to the parent
                code, err = -1, traceback.format_exc()
            os.write(write_end, f"{code}\n{err}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        output = reader.read()
    os.waitpid(pid, 0)
    code, _, err = output.partition("\n")
    return int(code), err


def _load_optuna_migrations() -> None:
    """Read Optuna's schema migrations (its alembic scripts) while still root, for the child that becomes nobody.

    RDBStorage reads them from optuna's install folder each time it checks a database's schema version,
    and here that folder is under /root, which nobody cannot enter: a setup detail of this machine,
    unrelated to the database under test. The revision map is read once and reused.
    """
    from optuna.storages._rdb.storage import _VersionManager

    manager = object.__new__(_VersionManager)
    manager.url = "sqlite://"
    script = manager._create_alembic_script()
    script.get_current_head()
    list(script.walk_revisions())
    _VersionManager._create_alembic_script = lambda self: script  # type: ignore[method-assign]
