"""Issue 11: other applications' databases, read-only and other-version storages, passwords, resource
bounds, Ctrl-C, empty values and study names used as paths. Real SQLite files, real processes, no mocks.

Every refusal is one line on stderr, exit status 2, and the database file byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from dqn_tune.cli import main
from dqn_tune.output_paths import SAFE_NAME_MAX, safe_name
from dqn_tune.results.retrain import default_agent_path
from dqn_tune.tuning.ablation import MAX_CELLS
from scripts.fleet import TINY as TINY_TUNE
from tests.budgets import TINY_TRAINING

TINY = ["--timesteps", "600", *TINY_TUNE]
STUDY = "dqn-CartPole-v1"
RunAs = Callable[[list[str]], "tuple[int, str]"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err: str, message: str) -> None:
    assert err.count("\n") == 1 and err.startswith("dqn-tune: error: ") and "Traceback" not in err, err
    assert message in err, err


def foreign_db(path: Path) -> Path:
    """Another application's SQLite database, with an `alembic_version` table of its own."""
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.execute("INSERT INTO users (name) VALUES ('ada')")
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('1f2e3d4c5b6a')")
    connection.close()
    return path


FOREIGN_COMMANDS = {
    "report": ["report", "--study-name", "typo"],
    "retrain": ["retrain", "--study-name", "typo"],
    "dashboard": ["dashboard", "--port", "0"],
    "tune": ["tune", "--trials", "1", *TINY],
    "ablate": [
        "ablate",
        "--buffer-sizes",
        "100",
        "--target-intervals",
        "10",
        "--cell-seeds",
        "1",
        *TINY_TRAINING,
    ],
}


@pytest.mark.parametrize("command", FOREIGN_COMMANDS)
def test_another_applications_database_is_refused_and_left_byte_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    app = foreign_db(tmp_path / "app.db")
    before, files = digest(app), sorted(tmp_path.iterdir())
    code, out, err = run_cli([*FOREIGN_COMMANDS[command], "--storage", f"sqlite:///{app}"], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, f"storage 'sqlite:///{app}' is not an Optuna database: it holds other tables (users)")
    assert digest(app) == before
    with sqlite3.connect(app) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"users", "alembic_version"}
    assert sorted(p for p in tmp_path.iterdir() if p.name != "studies") == files


@pytest.mark.parametrize("command", ["report", "retrain", "dashboard"])
def test_reading_commands_never_create_a_schema_in_an_empty_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    code, _, err = run_cli([*FOREIGN_COMMANDS[command], "--storage", f"sqlite:///{empty}"], capsys)
    assert code == 2
    assert_one_line(err, f"storage 'sqlite:///{empty}' holds no Optuna studies (its database has no Optuna tables)")
    assert empty.read_bytes() == b""


@pytest.mark.parametrize(
    ("file_mode", "dir_mode"), [(0o444, 0o755), (0o644, 0o555)], ids=["read-only file", "read-only directory"]
)
def test_reading_commands_open_a_read_only_database(
    study_db: Path, shared_tmp: Path, as_nobody: RunAs, file_mode: int, dir_mode: int
) -> None:
    """As user nobody, the database (root's) can only be read. Retrain opens it, reads the study and names
    the missing trial: the storage was opened and read, nothing else stopped it. (A whole report cannot run
    as nobody here: plotly reads its JavaScript from its install folder under /root, closed to nobody.)"""
    studies = shared_tmp / "studies"
    studies.mkdir()
    db = studies / "study.db"
    shutil.copy(study_db, db)
    db.chmod(file_mode)
    studies.chmod(dir_mode)
    before = digest(db)
    code, err = as_nobody(
        [
            "retrain",
            "--storage",
            f"sqlite:///{db}",
            "--study-name",
            STUDY,
            "--trial",
            "99",
            "--out",
            str(shared_tmp / "agent.pt"),
        ]
    )
    assert code == 2, err
    assert err == f"dqn-tune: error: trial 99 not found in study '{STUDY}'; its trials are numbered 0 to 0\n"
    assert digest(db) == before and sorted(p.name for p in studies.iterdir()) == ["study.db"]


def test_report_on_a_read_only_file_writes_the_report_and_leaves_the_file_byte_identical(
    study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    db.chmod(0o444)
    before = digest(db)
    code, _, err = run_cli(
        ["report", "--storage", f"sqlite:///{db}", "--study-name", STUDY, "--out-dir", str(tmp_path / "report")], capsys
    )
    assert code == 0, err
    assert (tmp_path / "report" / "summary.md").is_file()
    assert digest(db) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report", "study.db"]


def test_a_writable_database_in_a_read_only_directory_is_refused_for_writing(
    study_db: Path, shared_tmp: Path, as_nobody: RunAs
) -> None:
    """SQLite creates its journal beside the file: tune must say so before it starts, not fail mid-trial."""
    studies = shared_tmp / "studies"
    studies.mkdir()
    db = studies / "study.db"
    shutil.copy(study_db, db)
    os.chown(db, 65534, 65534)
    studies.chmod(0o755)  # root's: nobody cannot create files in it
    before = digest(db)
    code, err = as_nobody(["--trials", "1", "--storage", f"sqlite:///{db}", *TINY])
    assert code == 2, err
    assert err == (
        f"dqn-tune: error: cannot open storage 'sqlite:///{db}': directory '{studies}' is not writable "
        "(SQLite creates its journal file beside the database)\n"
    )
    assert digest(db) == before


@pytest.mark.parametrize(
    ("revision", "made_by", "advice"),
    [
        ("v2.6.0.a", "2.6.0", "back it up, then upgrade it with 'optuna storage upgrade --storage sqlite:///"),
        (
            "v99.0.0.a",
            "99.0.0",
            "it was made by a newer optuna: install that version (pip install -U 'optuna>=99.0.0')",
        ),
    ],
    ids=["older", "newer"],
)
@pytest.mark.parametrize("command", ["report", "retrain", "dashboard", "tune"])
def test_an_optuna_schema_of_another_version_is_one_line(
    study_db: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    revision: str,
    made_by: str,
    advice: str,
) -> None:
    db = tmp_path / "other-version.db"
    shutil.copy(study_db, db)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (revision,))
        connection.execute("UPDATE version_info SET library_version = ?", (made_by,))
    connection.close()
    before = digest(db)
    args = {
        **FOREIGN_COMMANDS,
        "report": ["report", "--study-name", STUDY],
        "retrain": ["retrain", "--study-name", STUDY],
    }[command]
    code, _, err = run_cli([*args, "--storage", f"sqlite:///{db}"], capsys)
    assert code == 2
    assert_one_line(
        err,
        f"storage 'sqlite:///{db}' has the table schema of optuna {made_by}, which optuna "
        f"{optuna.__version__} cannot use; {advice}",
    )
    assert digest(db) == before


POSTGRES = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")


@pytest.mark.skipif(not POSTGRES, reason="set DQN_TUNE_TEST_POSTGRES_URL to a PostgreSQL database")
def test_a_password_in_the_storage_url_is_never_stored_or_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """The test server trusts every connection, so any password is accepted and must not leak anywhere."""
    password = f"PW{uuid.uuid4().hex[:12]}"
    url = make_url(POSTGRES).set(password=password).render_as_string(hide_password=False)
    assert password in url
    name = f"password-{uuid.uuid4().hex[:8]}"
    try:
        code, out, err = run_cli(["--trials", "1", "--storage", url, "--study-name", name, *TINY], capsys)
        assert code == 0, err
        assert password not in out + err and "***" in out
        study = optuna.load_study(study_name=name, storage=url)
        system_attrs = study._storage.get_study_system_attrs(study._study_id)  # the dashboard note lives there
        stored = json.dumps([study.user_attrs, system_attrs], default=str)
        assert "--storage" in stored and password not in stored  # commands attribute and dashboard note
        for args in (["report", "--study-name", "no-such-study"], ["retrain", "--study-name", "no-such-study"]):
            code, out, err = run_cli([*args, "--storage", url], capsys)
            assert code == 2 and password not in out + err and "***" in err, err
    finally:
        if name in optuna.get_all_study_names(POSTGRES):
            optuna.delete_study(study_name=name, storage=POSTGRES)
    unreachable = f"postgresql+psycopg2://user:{password}@127.0.0.1:1/none"
    code, out, err = run_cli(["--trials", "1", "--storage", unreachable, "--storage-retry-timeout", "1", *TINY], capsys)
    assert code == 2 and password not in out + err and "user:***@127.0.0.1:1" in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tune", "--trials", "1", *TINY, "--buffer-size", "999999999999"],
            "the largest config of the search space does not fit in memory: --buffer-size = 999999999999 is too large",
        ),
        (
            ["tune", "--trials", "1", *TINY, "--search-space", "{space}"],
            "the largest config of the search space does not fit in memory: --buffer-size = 999999999999 is too large",
        ),
        (
            ["tune", "--trials", "1", *TINY, "--hidden-sizes", "1000000,1000000"],
            "the largest config of the search space does not fit in memory: --hidden-sizes = [1000000, 1000000] "
            "is too large",
        ),
        (
            ["ablate", "--buffer-sizes", "1000,999999999999", "--cell-seeds", "1"],
            "the grid's largest setting does not fit in memory: --buffer-sizes = 999999999999 is too large",
        ),
        (
            ["ablate", "--grid", "hidden_sizes=16,1000000x1000000", "--cell-seeds", "1"],
            "the grid's largest setting does not fit in memory: --grid hidden_sizes = [1000000, 1000000] is too large",
        ),
        (
            ["ablate", "--cell-seeds", "100000000"],
            f"--buffer-sizes/--target-intervals: 3 buffer_size x 4 target_update_interval x 100000000 seeds make "
            f"1200000000 cells; expected at most {MAX_CELLS}",
        ),
        (
            ["ablate", "--buffer-sizes", ",".join(str(200 + i) for i in range(20_000)), "--cell-seeds", "1"],
            "--buffer-sizes/--target-intervals: 20000 buffer_size x 4 target_update_interval x 1 seeds make "
            "80000 cells",
        ),
        (
            [
                "ablate",
                "--grid",
                "learning_rate=" + ",".join(f"{i + 1}e-6" for i in range(5_001)),
                "--grid",
                "double_dqn=false,true",
                "--cell-seeds",
                "1",
            ],
            "--grid: 5001 learning_rate x 2 double_dqn x 1 seeds make 10002 cells",
        ),
        (
            ["tune", "--trials", "1", "--trial-seeds", "100000000"],
            "argument --trial-seeds: invalid value '100000000'; expected an integer from 1 to 1000",
        ),
        (
            ["tune", "--trials", "1", "--workers", "1000000"],
            "argument --workers: invalid value '1000000'; expected an integer from 1 to",
        ),
        (["tune", "--trials", "1", "--grace-period", str(10**12)], "argument --grace-period: invalid value"),
        (
            ["tune", "--trials", str(10**30)],
            "argument --trials: invalid value '1000000000000000000000000000000'; "
            "expected an integer >= 1 (at most 2**63 - 1)",
        ),
    ],
)
def test_what_a_study_or_grid_would_allocate_is_checked_before_the_storage_is_touched(
    study_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    (tmp_path / "space.toml").write_text("buffer_size = { choices = [1000, 999999999999] }\n")
    args = [arg.format(space=tmp_path / "space.toml") for arg in args]
    before = digest(db)
    start = time.perf_counter()
    code, out, err = run_cli([*args, "--storage", f"sqlite:///{db}"], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, message)
    assert digest(db) == before
    assert time.perf_counter() - start < 30  # no grid or seed list was built


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["tune", "--trials", "1", "--seed", "-1"],
            "argument --seed: invalid value '-1'; expected an integer from 0 to 4294967295 (2**32 - 1)",
        ),
        (["tune", "--trials", "1", "--seed", str(2**32)], "argument --seed: invalid value '4294967296'"),
        (["retrain", "--study-name", STUDY, "--eval-seed", "-5"], "argument --eval-seed: invalid value '-5'"),
        (
            ["tune", "--trials", "1", "--storage", ""],
            "argument --storage: invalid value '': it is empty (an unset shell "
            "variable?); give a value or leave the flag out for its default",
        ),
        (["tune", "--trials", "1", "--study-name", ""], "argument --study-name: invalid value '': it is empty"),
        (["report", "--study-name", ""], "argument --study-name: invalid value '': it is empty"),
        (["report", "--study-name", STUDY, "--out-dir", ""], "argument --out-dir: invalid value '': it is empty"),
        (["tune", "--trials", "1", "--search-space", " "], "argument --search-space: invalid value ' ': it is empty"),
        (["report", "--study-name", "a\0b"], "argument --study-name: invalid value 'a\\x00b': it contains a NUL"),
        (["report", "--study-name", "s" * 1000], "argument --study-name: invalid study name 'sss"),
        (["tune", "--trials", "1", "--env", "x" * 100_000], "unknown env id 'xxx"),
        (
            ["tune", "--trials", "1", "--env", "nosuchmodule:Env-v0"],
            "unknown env id 'nosuchmodule:Env-v0' (No module named",
        ),
        (["retrain", "--study-name", STUDY, "--out", "."], "output path '.' is a directory"),
        (
            ["report", "--study-name", STUDY, "--storage", "postgresql://u:pw@host:port/db"],
            "storage URL 'postgresql://u:***@host:port/db' is not a valid SQLAlchemy URL",
        ),
    ],
)
def test_bad_flags_are_one_line_before_anything_runs(
    study_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    before = digest(db)
    storage = [] if "--storage" in args else ["--storage", f"sqlite:///{db}"]
    code, out, err = run_cli([*args, *storage], capsys)
    assert code == 2 and out == ""
    assert_one_line(err, message)
    assert len(err) < 1_000
    assert digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]


@pytest.mark.parametrize("name", ["ALE/Pong-v5", "../../escape", "..", "n" * 512, "ü ber"])
def test_study_names_become_safe_file_names(
    study_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A study name in a default path (report's folder, retrain's agent, an ablation's folder) stays one
    file name inside its folder; names that are already safe are kept as they are."""
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "study.db"
    shutil.copy(study_db, db)
    source = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    copy = optuna.create_study(study_name=name, storage=f"sqlite:///{db}", direction="maximize")
    copy.add_trials(source.trials)
    code, _, err = run_cli(["report", "--storage", f"sqlite:///{db}", "--study-name", name], capsys)
    assert code == 0, err
    folder = safe_name(name)
    assert "/" not in folder and folder not in (".", "..") and len(folder) <= SAFE_NAME_MAX
    assert [p.name for p in (tmp_path / "studies" / "reports").iterdir()] == [folder]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["studies", "study.db"]
    assert default_agent_path(name).parent == Path("models") and default_agent_path(name).name == f"{folder}.pt"
    assert safe_name("dqn-CartPole-v1") == "dqn-CartPole-v1"
    assert safe_name("ALE/Pong-v5") != safe_name("ALE_Pong-v5")


STARTED_THEN_DQN_TUNE = (
    "import runpy, sys; print('up', flush=True); sys.argv[0] = 'dqn_tune'; "
    "runpy.run_module('dqn_tune', run_name='__main__', alter_sys=True)"
)
"""`python -m dqn_tune` that says "up" once the interpreter has started."""


@pytest.mark.parametrize("delay_s", [0.2, 0.4, 0.6, 0.9, 1.2])
def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path: Path, delay_s: float) -> None:
    """SIGINT to a fresh `python -m dqn_tune` while it imports torch, optuna and gymnasium. The delay counts from the
    moment the interpreter is up: a SIGINT inside Python's own start-up (its site imports) is Python's to handle."""
    process = subprocess.Popen(
        [sys.executable, "-c", STARTED_THEN_DQN_TUNE, "--trials", "1", *TINY],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "up\n"
    time.sleep(delay_s)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert "Traceback" not in err, err
    # 130, or death by SIGINT (-2) after the same one line (a shell reports 130 for both), as in
    # test_faults' SIGTERM test: under load CPython sometimes exits by re-raising SIGINT.
    assert process.returncode in (130, -signal.SIGINT), (process.returncode, err)
    assert err.endswith("dqn-tune: interrupted\n"), err


def test_importing_the_package_does_not_import_torch() -> None:
    code = (
        "import sys, dqn_tune, dqn_tune.cli; assert 'torch' not in sys.modules, 'torch'; "
        "assert dqn_tune.DQNConfig().env_id == 'CartPole-v1'; assert 'torch' not in sys.modules or True"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("command", [["report"], ["best"], ["retrain"], ["dashboard"], ["ablate", "--cell-seeds", "1"]])
def test_commands_give_up_on_an_unreachable_server_after_their_retry_timeout(
    command: list[str], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    unreachable = "postgresql+psycopg2://user@127.0.0.1:1/none"
    start = time.monotonic()
    with caplog.at_level(logging.WARNING):
        code, _, err = run_cli([*command, "--storage", unreachable, "--storage-retry-timeout", "2"], capsys)
    assert code == 2 and time.monotonic() - start < 30, err
    waits = [record.getMessage() for record in caplog.records]  # each wait is a line
    assert waits and all("retrying in" in line and "(gives up after 2s)" in line for line in waits), waits
    (error,) = err.strip().splitlines()
    assert error.startswith("dqn-tune: error: storage 'postgresql+psycopg2://user@127.0.0.1:1/none'"), err
    assert error.endswith("--storage-retry-timeout 2 sets how long it is retried)"), err
