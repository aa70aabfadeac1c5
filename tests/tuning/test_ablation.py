"""The grid ablation on real SQLite studies: exact grid, resume, re-run of failed and stale cells, workers."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from dqn_tune.cli import build_parser, main
from dqn_tune.cli.ablate import build_spec
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.runner.attributes import RETRY_OF
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_loop import TrialQuota, run_trials
from dqn_tune.tuning.ablation import (
    AblationSpec,
    cell_objective,
    cell_of,
    grid_sampler,
    open_ablation,
    queue_failed_cells,
    run_ablation,
)
from dqn_tune.tuning.records import SPEC_ATTR, store_config, trial_config

CELL = {"total_timesteps": 300, "eval_freq": 100, "eval_curve_episodes": 1, "eval_episodes": 1}
"""A cell budget of a fraction of a second."""
TINY_FLAGS = ["--timesteps", "300", "--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "16",
              "--eval-freq", "100", "--eval-curve-episodes", "1", "--eval-episodes", "1"]


@pytest.fixture
def cell_config(tiny_config: DQNConfig) -> DQNConfig:
    return tiny_config.replace(**CELL)


def stored_cells(url: str, name: str, state: TrialState = TrialState.COMPLETE) -> list[tuple[int, int, int]]:
    study = optuna.load_study(study_name=name, storage=url)
    return [cell_of(t) for t in study.get_trials(states=(state,))]  # type: ignore[misc]


def test_the_grid_is_exactly_the_product_of_the_lists_and_seeds(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/grid.db"
    spec = AblationSpec(cell_config, (200, 100), (50, 1), 2)
    outcome = run_ablation(spec=spec, storage=url)

    expected = set(itertools.product((100, 200), (1, 50), (0, 1)))
    cells = stored_cells(url, spec.default_study_name)
    assert len(cells) == 8 and set(cells) == expected
    assert set(outcome.ran) == expected and outcome.left == () and outcome.done_before == 0
    study = optuna.load_study(study_name=spec.default_study_name, storage=url)
    assert len(study.trials) == 8
    for trial in study.trials:
        assert trial_config(trial) == spec.config_for(trial.params["buffer_size"], trial.params["target_update_interval"])

    again = run_ablation(spec=spec, storage=url)
    assert again.ran == () and again.done_before == 8
    assert len(optuna.load_study(study_name=spec.default_study_name, storage=url).trials) == 8


def test_resuming_runs_only_the_cells_not_done(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/resume.db"
    spec = AblationSpec(cell_config, (100, 1_000), (1, 50), 2)
    storage = open_storage(url)
    study = open_ablation(spec, storage)
    total = queue_failed_cells(study, spec)
    worker_study = optuna.load_study(study_name=spec.default_study_name, storage=storage, sampler=grid_sampler(spec))
    run_trials(worker_study, cell_objective(spec), TrialQuota(3), total_trials=total)  # an earlier, partial run
    first = set(stored_cells(url, spec.default_study_name))
    assert len(first) == 3

    outcome = run_ablation(spec=spec, storage=url)

    assert outcome.done_before == 3
    assert sorted(outcome.ran) == sorted(set(spec.cells) - first)
    assert sorted(stored_cells(url, spec.default_study_name)) == sorted(spec.cells)


def test_a_failed_cell_is_run_again_and_only_it(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/failed.db"
    spec = AblationSpec(cell_config, (100,), (1, 50), 2)
    storage = open_storage(url)
    study = open_ablation(spec, storage)
    total = queue_failed_cells(study, spec)
    objective = cell_objective(spec)
    calls = []

    def crash_second_cell(trial: optuna.Trial) -> float:
        calls.append(trial.number)
        if len(calls) == 2:
            trial.suggest_categorical("buffer_size", [100])  # GridSampler's value for this cell
            raise ConfigError("a run that crashed")
        return objective(trial)

    worker_study = optuna.load_study(study_name=spec.default_study_name, storage=storage, sampler=grid_sampler(spec))
    run_trials(worker_study, crash_second_cell, TrialQuota(None), total_trials=total)
    [failed] = optuna.load_study(study_name=spec.default_study_name, storage=url).get_trials(states=(TrialState.FAIL,))
    assert len(stored_cells(url, spec.default_study_name)) == 3

    outcome = run_ablation(spec=spec, storage=url)

    trials = optuna.load_study(study_name=spec.default_study_name, storage=url).trials
    [retry] = [t for t in trials if t.system_attrs.get(RETRY_OF) == failed.number]
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["grid_id"] == failed.system_attrs["grid_id"]
    assert outcome.ran == (cell_of(retry),)
    assert sorted(stored_cells(url, spec.default_study_name)) == sorted(spec.cells)
    assert len(trials) == 5


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_and_name(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A storage URL and a fresh study name: a new SQLite file, or the test PostgreSQL server (if set)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/workers.db", "workers"
        return
    url = os.environ.get("DQN_TUNE_TEST_POSTGRES_URL")
    if url is None:
        pytest.skip("DQN_TUNE_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    name = f"test-ablation-{uuid.uuid4().hex}"
    yield url, name
    optuna.delete_study(study_name=name, storage=url)


@pytest.mark.slow
def test_two_workers_run_every_cell_exactly_once(storage_and_name: tuple[str, str], cell_config: DQNConfig) -> None:
    url, name = storage_and_name
    spec = AblationSpec(cell_config, (100, 1_000), (1, 50), 1)
    outcome = run_ablation(spec=spec, storage=url, study_name=name, workers=2)
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(cell_of(t) for t in trials) == sorted(spec.cells)  # type: ignore[type-var]
    assert sorted(outcome.ran) == sorted(spec.cells) and outcome.study_name == name


SLOW_CELL_FLAGS = ["--timesteps", "1500", "--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "16",
                   "--eval-freq", "500", "--eval-curve-episodes", "2", "--eval-episodes", "2"]
"""Cells of about a second, so that a signal lands while one is training."""
KILLED_CHILD = """
import sys
from dqn_tune.cli.ablate import build_spec
from dqn_tune.cli import build_parser
from dqn_tune.tuning.ablation import run_ablation
args = build_parser().parse_args(sys.argv[1:])
run_ablation(spec=build_spec(args), storage=args.storage, study_name=args.study_name, verbose=True,
             heartbeat_interval_s=1, grace_period_s=2)
"""


def ablate_args(url: str, name: str, out_dir: Path) -> list[str]:
    """`dqn-tune ablate` of three slow cells into study `name`."""
    return ["ablate", "--storage", url, "--study-name", name, "--buffer-sizes", "100", "--target-intervals",
            "1,50,200", "--cell-seeds", "1", "--workers", "1", "--out-dir", str(out_dir), *SLOW_CELL_FLAGS]


def wait_for_a_running_cell(url: str, name: str, child: subprocess.Popen[str]) -> tuple[int, int, int]:
    """Block until the child has finished one cell and is training another; return that cell."""
    assert child.stdout is not None
    assert child.stdout.readline().startswith(f"ablation {name!r}: 3 cells, 0 done, 3 to run")
    assert child.stdout.readline().startswith("  trial 0:")
    deadline = time.monotonic() + 60
    while not (running := [cell for cell in stored_cells(url, name, TrialState.RUNNING) if cell is not None]):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    return running[0]


@pytest.mark.slow
def test_ctrl_c_fails_the_running_cell_reports_and_the_same_command_runs_what_is_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/sigint.db"
    args = ablate_args(url, "sigint", tmp_path / "report")
    child = subprocess.Popen([sys.executable, "-m", "dqn_tune", *args], stdout=subprocess.PIPE, text=True)
    running = wait_for_a_running_cell(url, "sigint", child)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 130 and "not done yet: run the same command again" in out
    assert stored_cells(url, "sigint", TrialState.FAIL) == [running]
    done = stored_cells(url, "sigint")
    assert (tmp_path / "report" / "summary.md").read_text().count("| 1/1 |") == len(done)

    assert main(args) == 0

    assert f"ran {3 - len(done)} cells ({len(done)} were done before); all cells done" in capsys.readouterr().out
    assert sorted(stored_cells(url, "sigint")) == [(100, 1, 0), (100, 50, 0), (100, 200, 0)]
    assert len(optuna.load_study(study_name="sigint", storage=url).trials) == 4  # the failed one, and one per cell


@pytest.mark.slow
def test_the_cell_of_a_killed_worker_is_run_again_after_the_grace_period(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sigkill.db"
    args = [*ablate_args(url, "sigkill", tmp_path / "report"), "--timesteps", "6000"]  # cells of a few seconds
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, *args], stdout=subprocess.PIPE, text=True)
    wait_for_a_running_cell(url, "sigkill", child)
    deadline = time.monotonic() + 60
    while not running_with_heartbeat(tmp_path / "sigkill.db"):  # a trial killed before its first heartbeat
        assert time.monotonic() < deadline and child.poll() is None  # is never stale (Optuna's rule)
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    [running] = stored_cells(url, "sigkill", TrialState.RUNNING)  # the cell the kill interrupted
    done = set(stored_cells(url, "sigkill"))
    time.sleep(3)  # the grace period (2 s) passes without a heartbeat

    spec = build_spec(build_parser().parse_args(args))
    outcome = run_ablation(spec=spec, storage=url, study_name="sigkill", heartbeat_interval_s=1, grace_period_s=2)

    assert stored_cells(url, "sigkill", TrialState.FAIL) == [running]
    assert running in outcome.ran and sorted(outcome.ran) == sorted(set(spec.cells) - done)
    assert sorted(stored_cells(url, "sigkill")) == sorted(spec.cells)


def running_with_heartbeat(path: Path) -> bool:
    """Whether a running trial of the SQLite study file at `path` has sent a heartbeat."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return connection.execute("SELECT COUNT(*) FROM trial_heartbeats JOIN trials USING (trial_id) "
                                  "WHERE trials.state = 'RUNNING'").fetchone()[0] > 0


@pytest.mark.parametrize(("lists", "message"), [
    (((), (1,), 1), "buffer_sizes is empty: expected one or more integers >= 1"),
    (((100,), (0, 10), 1), r"target_intervals \[0, 10\] are invalid: 0 is not an integer >= 1"),
    (((100, 200, 100), (1,), 1), r"buffer_sizes \[100, 200, 100\] repeat \[100\]: expected each value once"),
    (((16, 100), (1,), 1), r"buffer_sizes \[16\] are below the batch size \(32\): expected sizes >= 32"),
    (((100,), (1,), 0), "seeds = 0 is invalid: expected an integer >= 1"),
    (((100,), (1.5,), 1), r"target_intervals \[1.5\] are invalid: 1.5 is not an integer >= 1"),
])
def test_spec_rejects_bad_grids(tiny_config: DQNConfig, lists: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        AblationSpec(tiny_config, *lists)


def test_the_study_name_is_the_same_for_the_same_ablation(tiny_config: DQNConfig) -> None:
    spec = AblationSpec(tiny_config, (1_000, 100), (10, 1), 2)
    assert spec.default_study_name == AblationSpec(tiny_config, (100, 1_000), (1, 10), 2).default_study_name
    assert re.fullmatch(r"ablation-CartPole-v1-[0-9a-f]{10}", spec.default_study_name)
    others = [AblationSpec(tiny_config, (100,), (1, 10), 2), AblationSpec(tiny_config, (100, 1_000), (1, 10), 3),
              AblationSpec(tiny_config.replace(total_timesteps=700), (100, 1_000), (1, 10), 2)]
    assert len({spec.default_study_name, *(other.default_study_name for other in others)}) == 4
    assert AblationSpec.from_dict(spec.to_dict()) == spec


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def test_cli_bad_input_is_one_line_exit_2_and_leaves_the_storage_alone(tmp_path: Path, tiny_config: DQNConfig,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    unfinished = optuna.create_study(study_name="unfinished", storage=open_storage(url, heartbeat=False))
    store_config(unfinished.ask(), tiny_config)
    taken = optuna.create_study(study_name="taken", storage=open_storage(url, heartbeat=False))
    same_flags = DQNConfig(total_timesteps=300, learning_starts=100, batch_size=32, hidden_sizes=(16,), eval_freq=100,
                           eval_curve_episodes=1, eval_episodes=1, buffer_size=5_000)
    taken.set_user_attr(SPEC_ATTR, AblationSpec(same_flags, (100, 200), (1,), 2).to_dict())
    cases = [
        (["--buffer-sizes", ""], r"argument --buffer-sizes: invalid list ''; expected comma-separated integers"),
        (["--target-intervals", "10,ten"], r"argument --target-intervals: invalid list '10,ten'"),
        (["--buffer-sizes", "100,0"], r"--buffer-sizes \[100, 0\] are invalid: 0 is not an integer >= 1"),
        (["--buffer-sizes", "16,100"], r"--buffer-sizes \[16\] are below the batch size \(32\)"),
        (["--target-intervals", "5,5"], r"--target-intervals \[5, 5\] repeat \[5\]: expected each value once"),
        (["--cell-seeds", "0"], r"argument --cell-seeds: invalid value '0'; expected an integer >= 1"),
        (["--learning-starts", "400"], r"--learning-starts = 400 is invalid: expected less than --timesteps"),
        (["--base-study", "nope"], r"study 'nope' not found in .*; studies there: taken, unfinished$"),
        (["--base-study", "unfinished"], r"study 'unfinished' has no complete trial"),
        (["--env", "Pendulum-v1"], r"env 'Pendulum-v1' has a Box action space"),
        (["--out-dir", str(db / "sub")], r"cannot write output path .*study\.db/sub/runs\.csv"),
        (["--study-name", "unfinished"], r"study 'unfinished' is not an ablation study \(no 'ablation' attribute\)"),
        (["--study-name", "taken"], r"study 'taken' holds an ablation with other buffer_sizes, seeds, learning_rate; run it with"),
    ]
    before = digest(db)
    for args, message in cases:
        code = main(["ablate", "--storage", url, "--buffer-sizes", "100", "--target-intervals", "1", *TINY_FLAGS,
                     "--learning-rate", "0.002", "--out-dir", str(tmp_path / "report"), *args])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("dqn-tune: error: "), (args, err)
        assert re.search(message, err), (args, err)
        assert digest(db) == before
    assert optuna.get_all_study_names(url) == ["unfinished", "taken"]


def test_base_study_supplies_every_other_hyperparameter(tmp_path: Path, tiny_config: DQNConfig,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/base.db"
    study = optuna.create_study(study_name="tuned", storage=open_storage(url, heartbeat=False), direction="maximize")
    for value, config in ((2.0, tiny_config.replace(learning_rate=3e-3, gamma=0.95)), (1.0, tiny_config)):
        trial = study.ask()
        store_config(trial, config)
        study.tell(trial, value)

    spec = build_spec(build_parser().parse_args(["ablate", "--storage", url, "--base-study", "tuned",
                                                 "--buffer-sizes", "100", "--timesteps", "400"]))

    assert spec.base == tiny_config.replace(learning_rate=3e-3, gamma=0.95, total_timesteps=400, eval_freq=40)
    assert spec.base_study == "tuned" and spec.to_dict()["base_study"] == "tuned"
    assert main(["ablate", "--storage", url, "--base-study", "tuned", "--env", "Acrobot-v1"]) == 2
    assert capsys.readouterr().err == ("dqn-tune: error: --env Acrobot-v1 differs from the env of --base-study "
                                       "'tuned' (CartPole-v1); drop --env or choose a study of that env\n")
