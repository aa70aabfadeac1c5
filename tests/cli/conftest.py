"""Helpers of the CLI tests: run `main` in a forked child (as user nobody, since root ignores mode bits, or under
a resource limit), a directory nobody can enter."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dqn_tune.cli import build_parser, main
from dqn_tune.dqn.envs import make_env
from scripts.fleet import TINY as TINY_TUNE

NOBODY = 65534
_TINY_TRIAL = ["--timesteps", "600", *TINY_TUNE]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding study 'dqn-CartPole-v1' of one tiny complete trial (copy it before changing it)."""
    path = tmp_path_factory.mktemp("study") / "study.db"
    assert main(["--trials", "1", "--storage", f"sqlite:///{path}", *_TINY_TRIAL]) == 0
    return path


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
    _import_everything()
    return run_as_nobody if os.geteuid() == 0 else run_in_process


RunInChild = Callable[[list[str], Callable[[], None]], tuple[int, str, str]]


@pytest.fixture
def in_child() -> RunInChild:
    """`run(args, prepare) -> (exit status, stdout, stderr)`: `main(args)` in a forked child after `prepare()`;
    imports are done first."""
    _import_everything()
    return run_in_child


def _import_everything() -> None:
    """Import what `main` imports lazily (every subcommand's module, gymnasium's CartPole) in this process, so that
    forked children start at once and need no access to the installed packages."""
    make_env("CartPole-v1").close()
    build_parser()


def run_in_process(args: list[str]) -> tuple[int, str]:
    """`main(args)` here; (exit status, stderr)."""
    code, _, err = run_capturing(args)
    return code, err


def run_capturing(args: list[str]) -> tuple[int, str, str]:
    """`main(args)` here; (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def run_in_child(args: list[str], prepare: Callable[[], None]) -> tuple[int, str, str]:
    """`main(args)` in a forked child after `prepare()` (e.g. drop privileges, set a resource limit): (exit status,
    stdout, stderr or the child's traceback)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: prepare, run, report, exit without running pytest's teardown
        try:
            os.close(read_end)
            try:
                prepare()
                code, out, err = run_capturing(args)
            except BaseException:  # noqa: BLE001 - reported to the parent
                code, out, err = -1, "", traceback.format_exc()
            with os.fdopen(write_end, "w") as writer:
                json.dump([code, out, err], writer)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        output = reader.read()
    os.waitpid(pid, 0)
    code, out, err = json.loads(output)
    return code, out, err


def run_as_nobody(args: list[str]) -> tuple[int, str]:
    """`main(args)` as user nobody in a forked child; (exit status, stderr or the child's traceback)."""
    code, _, err = run_in_child(args, _become_nobody)
    return code, err


def _become_nobody() -> None:
    _load_optuna_migrations()
    os.setgid(NOBODY)
    os.setuid(NOBODY)


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
