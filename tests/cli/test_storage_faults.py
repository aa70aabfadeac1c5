"""Storage faults met after the storage opened: a disk that fills up mid-study, a damaged SQLite page.

Each command says what happened in one line and exits 2 (no traceback), leaves no trial RUNNING, and
the study resumes once the fault is gone.
"""

from __future__ import annotations

import resource
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.runner.storage import open_existing_storage

RunInChild = Callable[[list[str], Callable[[], None]], tuple[int, str, str]]

STUDY = "dqn-CartPole-v1"
TINY = [
    "--timesteps",
    "600",
    "--learning-starts",
    "100",
    "--eval-freq",
    "200",
    "--eval-curve-episodes",
    "2",
    "--eval-episodes",
    "2",
    "--hidden-sizes",
    "16",
    "--seeds",
    "1",
    "--validate-top",
    "0",
    "--workers",
    "1",
]
"""A trial of about a second that uploads its learning-curve PNG (tens of kB) to the artifact store."""
DISK_BYTES = 4 * 2**20
LEFT_FREE = 20_000
"""Bytes left free on the filled disk: room for a trial's rows, not for its learning-curve PNG."""


@dataclass
class SmallDisk:
    """A folder on a small file system of its own that a test fills up (see `small_disk`)."""

    folder: Path
    mounted: bool
    """False: mounting was impossible, and `fill` gives a file size limit instead."""

    def fill(self, *, leave: int) -> Callable[[], None]:
        """Fill the disk but for `leave` bytes; returns what a child process must call before it runs (a no-op on a
        mounted disk; else a file size limit of `leave` bytes, which also stops writes to the database's pages
        beyond it)."""
        if not self.mounted:
            return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (leave, resource.RLIM_INFINITY))
        free = shutil.disk_usage(self.folder).free
        with (self.folder / "filler").open("wb") as handle:
            handle.write(b"\0" * max(free - leave, 0))
        return lambda: None

    def free(self) -> None:
        """Give the filled space back."""
        (self.folder / "filler").unlink(missing_ok=True)


@pytest.fixture
def small_disk() -> Iterator[SmallDisk]:
    """A tmpfs of DISK_BYTES (mounting needs root, as CI runs the tests). Where mounting is impossible, a plain folder
    whose `fill` gives the command RLIMIT_FSIZE instead: writes past it fail with EFBIG ('File too large'), which
    SQLite reports as 'disk I/O error', in place of ENOSPC ('No space left on device', 'database or disk is full')."""
    folder = Path(tempfile.mkdtemp(prefix="dqn_tune_disk_"))
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)], capture_output=True, check=False
        ).returncode
        == 0
    )
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(
                ["umount", "--lazy", str(folder)], check=True
            )  # the test process may still hold the database open
        shutil.rmtree(folder)


FULL = ("disk full", "No space left on device", "File too large", "disk I/O error")
"""How the one line names the fault (the last two under the file size limit of `small_disk`'s fallback)."""


def states(url: str) -> list[TrialState]:
    return [trial.state for trial in optuna.load_study(study_name=STUDY, storage=open_existing_storage(url)).trials]


@pytest.mark.slow
def test_a_disk_full_mid_study_is_one_line_fails_the_trial_and_the_study_resumes(
    small_disk: SmallDisk, in_child: RunInChild, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{small_disk.folder}/study.db"
    assert main(["--trials", "1", "--storage", url, *TINY]) == 0
    limit = small_disk.fill(leave=LEFT_FREE)

    code, out, err = in_child(["--trials", "2", "--storage", url, *TINY], limit)
    assert code == 2 and "Traceback" not in out + err and err.count("\n") == 1, (out, err)
    assert any(words in err for words in FULL), err
    assert TrialState.RUNNING not in states(url) and states(url)[0] == TrialState.COMPLETE
    with sqlite3.connect(small_disk.folder / "study.db") as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    code, out, err = in_child(["report", "--storage", url, "--out-dir", str(small_disk.folder / "report")], limit)
    assert code == 2 and "Traceback" not in out + err and err.count("\n") == 1, (out, err)
    assert any(words in err for words in FULL), err

    small_disk.free()
    before = len(states(url))
    assert main(["--trials", "1", "--storage", url, *TINY]) == 0, capsys.readouterr().err
    assert states(url)[before:] == [TrialState.COMPLETE]


def damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of `table` in the SQLite file `db` with garbage, as a bad disk sector would."""
    with sqlite3.connect(db) as connection:
        (root_page,) = connection.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        (page_size,) = connection.execute("PRAGMA page_size").fetchone()
    connection.close()
    with db.open("r+b") as handle:
        handle.seek((root_page - 1) * page_size)
        handle.write(bytes(range(256)) * (page_size // 256))


@pytest.mark.parametrize(
    "command",
    [
        ["best"],
        ["report", "--out-dir", "{tmp}/report"],
        ["retrain", "--timesteps", "600", "--out", "{tmp}/agent.pt"],
        ["validate", "--seeds", "2"],
        ["tune", "--trials", "1", *TINY],
    ],
)
def test_a_damaged_database_page_is_one_line_naming_the_file_for_every_command(
    study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    damage_table(db, "trials")
    damaged = db.read_bytes()
    code = main([*(arg.format(tmp=tmp_path) for arg in command), "--storage", f"sqlite:///{db}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert (
        f"storage 'sqlite:///{db}' is damaged (database disk image is malformed): restore '{db}' from a backup" in err
    )
    assert "exceeding max length" not in err  # Optuna's own words for any failed commit
    if command[0] != "tune":  # tune records its command line on the study before it reads the trials
        assert db.read_bytes() == damaged
