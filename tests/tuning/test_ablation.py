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
from dqn_tune.cli.ablate import build_spec, grid_value
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.runner.attributes import RETRY_OF
from dqn_tune.runner.storage import open_storage
from dqn_tune.runner.trial_loop import TrialQuota, run_trials
from dqn_tune.tuning.ablation import (
    AblationSpec,
    Cell,
    cell_objective,
    grid_sampler,
    open_ablation,
    queue_failed_cells,
    run_ablation,
    value_text,
)
from dqn_tune.tuning.objective import run_config
from dqn_tune.tuning.presets import preset_for
from dqn_tune.tuning.records import RECOMMENDATION, SPEC_ATTR, store_config, trial_config
from tests.budgets import TINY_MODEL
from tests.budgets import TINY_RUN as TINY_FLAGS

CELL = {"total_timesteps": 300, "eval_freq": 100, "eval_curve_episodes": 1, "eval_episodes": 1}
"""A cell budget of a fraction of a second."""


@pytest.fixture
def cell_config(tiny_config: DQNConfig) -> DQNConfig:
    return tiny_config.replace(**CELL)


def legacy(config: DQNConfig, buffer_sizes: tuple[int, ...], intervals: tuple[int, ...], seeds: int) -> AblationSpec:
    """The default grid: buffer sizes x target intervals."""
    return AblationSpec(config, {"buffer_size": buffer_sizes, "target_update_interval": intervals}, seeds)


def stored_cells(url: str, name: str, spec: AblationSpec, state: TrialState = TrialState.COMPLETE) -> list[Cell]:
    """The cells of the study's trials in `state`."""
    study = optuna.load_study(study_name=name, storage=url)
    return [spec.cell_of(t) for t in study.get_trials(states=(state,))]  # type: ignore[misc]


def test_the_grid_is_exactly_the_product_of_the_axes_and_seeds(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/grid.db"
    spec = AblationSpec(cell_config, {"loss": ["mse", "huber"], "double_dqn": [True, False], "gamma": [0.9]}, 2)
    outcome = run_ablation(spec=spec, storage=url)

    expected = set(itertools.product(("huber", "mse"), (False, True), (0.9,), (0, 1)))
    cells = stored_cells(url, spec.default_study_name, spec)
    assert len(cells) == 8 and set(cells) == expected == set(spec.cells)
    assert set(outcome.ran) == expected and outcome.left == () and outcome.done_before == 0
    study = optuna.load_study(study_name=spec.default_study_name, storage=url)
    assert len(study.trials) == 8
    for trial in study.trials:
        assert trial_config(trial) == cell_config.replace(
            loss=trial.params["loss"], gamma=0.9, double_dqn=trial.params["double_dqn"]
        )

    again = run_ablation(spec=spec, storage=url)
    assert again.ran == () and again.done_before == 8
    assert len(optuna.load_study(study_name=spec.default_study_name, storage=url).trials) == 8


def test_resuming_runs_only_the_cells_not_done(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/resume.db"
    spec = legacy(cell_config, (100, 1_000), (1, 50), 2)
    storage = open_storage(url)
    study = open_ablation(spec, storage)
    total = queue_failed_cells(study, spec)
    worker_study = optuna.load_study(study_name=spec.default_study_name, storage=storage, sampler=grid_sampler(spec))
    run_trials(worker_study, cell_objective(spec), TrialQuota(3), total_trials=total)  # an earlier, partial run
    first = set(stored_cells(url, spec.default_study_name, spec))
    assert len(first) == 3

    outcome = run_ablation(spec=spec, storage=url)

    assert outcome.done_before == 3
    assert sorted(outcome.ran) == sorted(set(spec.cells) - first)
    assert sorted(stored_cells(url, spec.default_study_name, spec)) == sorted(spec.cells)


def test_a_failed_cell_is_run_again_and_only_it(tmp_path: Path, cell_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/failed.db"
    spec = legacy(cell_config, (100,), (1, 50), 2)
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
    assert len(stored_cells(url, spec.default_study_name, spec)) == 3

    outcome = run_ablation(spec=spec, storage=url)

    trials = optuna.load_study(study_name=spec.default_study_name, storage=url).trials
    [retry] = [t for t in trials if t.system_attrs.get(RETRY_OF) == failed.number]
    assert retry.state == TrialState.COMPLETE and retry.system_attrs["grid_id"] == failed.system_attrs["grid_id"]
    assert outcome.ran == (spec.cell_of(retry),)
    assert sorted(stored_cells(url, spec.default_study_name, spec)) == sorted(spec.cells)
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
    spec = AblationSpec(cell_config, {"hidden_sizes": [(16,), (8, 8)], "target_update_interval": [1, 50]}, 1)
    outcome = run_ablation(spec=spec, storage=url, study_name=name, workers=2)
    trials = optuna.load_study(study_name=name, storage=url).trials
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(spec.cell_of(t) for t in trials) == sorted(spec.cells)  # type: ignore[type-var]
    assert sorted(outcome.ran) == sorted(spec.cells) and outcome.study_name == name


SLOW_CELL_FLAGS = [
    "--timesteps",
    "1500",
    *TINY_MODEL,
    "--eval-freq",
    "500",
    "--eval-curve-episodes",
    "2",
    "--eval-episodes",
    "2",
]
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
    return [
        "ablate",
        "--storage",
        url,
        "--study-name",
        name,
        "--buffer-sizes",
        "100",
        "--target-intervals",
        "1,50,200",
        "--cell-seeds",
        "1",
        "--workers",
        "1",
        "--out-dir",
        str(out_dir),
        *SLOW_CELL_FLAGS,
    ]


def wait_for_a_running_cell(url: str, spec: AblationSpec, name: str, child: subprocess.Popen[str]) -> None:
    """Block until the child has finished one cell and is training another."""
    assert child.stdout is not None
    assert child.stdout.readline().startswith(f"ablation {name!r}: 3 cells, 0 done, 3 to run")
    assert child.stdout.readline().startswith("base config: the CartPole-v1 preset: CartPole-v1, ")
    assert child.stdout.readline().startswith("  trial 0: buffer_size=100, target_update_interval=")
    deadline = time.monotonic() + 60
    while not [cell for cell in stored_cells(url, name, spec, TrialState.RUNNING) if cell is not None]:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)


@pytest.mark.slow
def test_ctrl_c_fails_the_running_cell_reports_and_the_same_command_runs_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/sigint.db"
    args = ablate_args(url, "sigint", tmp_path / "report")
    spec = build_spec(build_parser().parse_args(args))
    child = subprocess.Popen([sys.executable, "-m", "dqn_tune", *args], stdout=subprocess.PIPE, text=True)
    wait_for_a_running_cell(url, spec, "sigint", child)
    child.send_signal(signal.SIGINT)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 130 and "not done yet: run the same command again" in out
    # The parent passes the stop on to its worker process, so under load the cell seen running may finish
    # first and the next one be the one stopped: one cell failed, unfinished, and none is left running.
    done = stored_cells(url, "sigint", spec)
    failed = stored_cells(url, "sigint", spec, TrialState.FAIL)
    assert len(failed) == 1 and failed[0] not in done
    assert stored_cells(url, "sigint", spec, TrialState.RUNNING) == []
    assert (tmp_path / "report" / "summary.md").read_text().count("| 1/1 |") == len(done)

    assert main(args) == 0

    assert f"ran {3 - len(done)} cells ({len(done)} were done before); all cells done" in capsys.readouterr().out
    assert sorted(stored_cells(url, "sigint", spec)) == [(100, 1, 0), (100, 50, 0), (100, 200, 0)]
    assert len(optuna.load_study(study_name="sigint", storage=url).trials) == 4  # the failed one, and one per cell


@pytest.mark.slow
def test_the_cell_of_a_killed_worker_is_run_again_after_the_grace_period(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/sigkill.db"
    args = [*ablate_args(url, "sigkill", tmp_path / "report"), "--timesteps", "6000"]  # cells of a few seconds
    spec = build_spec(build_parser().parse_args(args))
    child = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, *args], stdout=subprocess.PIPE, text=True)
    wait_for_a_running_cell(url, spec, "sigkill", child)
    deadline = time.monotonic() + 60
    while not running_with_heartbeat(tmp_path / "sigkill.db"):  # a trial killed before its first heartbeat
        assert time.monotonic() < deadline and child.poll() is None  # is never stale (Optuna's rule)
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    [running] = stored_cells(url, "sigkill", spec, TrialState.RUNNING)  # the cell the kill interrupted
    done = set(stored_cells(url, "sigkill", spec))
    time.sleep(3)  # the grace period (2 s) passes without a heartbeat

    outcome = run_ablation(spec=spec, storage=url, study_name="sigkill", heartbeat_interval_s=1, grace_period_s=2)

    assert stored_cells(url, "sigkill", spec, TrialState.FAIL) == [running]
    assert running in outcome.ran and sorted(outcome.ran) == sorted(set(spec.cells) - done)
    assert sorted(stored_cells(url, "sigkill", spec)) == sorted(spec.cells)


def running_with_heartbeat(path: Path) -> bool:
    """Whether a running trial of the SQLite study file at `path` has sent a heartbeat."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return (
            connection.execute(
                "SELECT COUNT(*) FROM trial_heartbeats JOIN trials USING (trial_id) WHERE trials.state = 'RUNNING'"
            ).fetchone()[0]
            > 0
        )


OLD_NAME = "ablation-CartPole-v1-36626be4d6"
OLD_SPEC = {
    "base": {
        "env_id": "CartPole-v1",
        "total_timesteps": 300,
        "learning_rate": 0.001,
        "gamma": 0.99,
        "batch_size": 32,
        "buffer_size": 50000,
        "target_update_interval": 200,
        "tau": 1.0,
        "learning_starts": 100,
        "train_freq": 2,
        "gradient_steps": 1,
        "exploration_fraction": 0.2,
        "exploration_initial_eps": 1.0,
        "exploration_final_eps": 0.05,
        "loss": "huber",
        "max_grad_norm": 10.0,
        "hidden_sizes": [16],
        "double_dqn": True,
        "eval_freq": 100,
        "eval_curve_episodes": 1,
        "eval_episodes": 1,
        "keep_best": True,
    },
    "buffer_sizes": [100, 200],
    "target_intervals": [1],
    "seeds": 2,
    "base_study": None,
}
"""What the code of 12ec816 (before any field could be an axis) stored for, and named, the ablation of
`dqn-tune ablate --buffer-sizes 100,200 --target-intervals 1 --seeds 2 *TINY_FLAGS`."""


def test_an_ablation_stored_before_generic_grids_resumes_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    old_space = {"buffer_size": [100, 200], "target_update_interval": [1], "seed": [0, 1]}
    study = optuna.create_study(
        study_name=OLD_NAME,
        storage=open_storage(url, heartbeat=False),
        direction="maximize",
        sampler=optuna.samplers.GridSampler(old_space, seed=0),
    )
    study.set_user_attr(SPEC_ATTR, OLD_SPEC)
    base = DQNConfig.from_dict(OLD_SPEC["base"])

    def old_cell(trial: optuna.Trial) -> float:  # 12ec816's cell_objective
        buffer_size, interval, seed = (trial.suggest_categorical(name, values) for name, values in old_space.items())
        return run_config(trial, base.replace(buffer_size=buffer_size, target_update_interval=interval), [seed])

    study.optimize(old_cell, n_trials=2)
    monkeypatch.chdir(tmp_path)

    code = main(
        [
            "ablate",
            "--storage",
            url,
            "--buffer-sizes",
            "100,200",
            "--target-intervals",
            "1",
            "--seeds",
            "2",
            "--workers",
            "1",
            *TINY_FLAGS,
        ]
    )

    out = capsys.readouterr().out
    assert code == 0 and "ran 2 cells (2 were done before); all cells done" in out
    assert optuna.get_all_study_names(url) == [OLD_NAME]
    study = optuna.load_study(study_name=OLD_NAME, storage=url)
    assert study.user_attrs[SPEC_ATTR] == OLD_SPEC
    spec = AblationSpec.from_dict(OLD_SPEC)
    assert sorted(stored_cells(url, OLD_NAME, spec)) == sorted(itertools.product((100, 200), (1,), (0, 1)))
    assert len(study.trials) == 4
    table = (tmp_path / "studies" / "ablations" / OLD_NAME / "summary.md").read_text()
    assert "| 100 | 1 | 2/2 |" in table and "| 200 | 1 | 2/2 |" in table and table in out


@pytest.mark.parametrize(
    ("grid", "seeds", "message"),
    [
        ({}, 1, r"grid is empty: expected one or more axes \(a DQNConfig field and its values\)"),
        ({"gamma": []}, 1, "grid gamma has no values: expected one or more"),
        ({"gamma": [0.9], "foo": [1]}, 1, "grid: unknown hyperparameter 'foo'; tunable: learning_rate, gamma, .*"),
        (
            {"total_timesteps": [100]},
            1,
            "grid: 'total_timesteps' is part of the trial budget, not a hyperparameter; .*",
        ),
        ({"gamma": [0.9, "x"]}, 1, "grid: gamma: expected a number, got 'x'"),
        ({"double_dqn": [True, 1]}, 1, "grid: double_dqn: expected true or false, got 1"),
        ({"buffer_size": [100, 200, 100]}, 1, "grid buffer_size repeats 100: expected each value once"),
        (
            {"buffer_size": [16, 100]},
            1,
            (
                r"grid setting buffer_size=16 gives an invalid config: batch_size = 32 is "
                r"invalid: expected at most buffer_size \(16\)"
            ),
        ),
        (
            {"batch_size": [32, 64], "buffer_size": [100, 48]},
            1,
            ("grid setting batch_size=64, buffer_size=48 gives an invalid config: batch_size = 64 is invalid: .*"),
        ),
        (
            {"target_update_interval": [0, 10]},
            1,
            (
                "grid setting target_update_interval=0 gives an invalid config: "
                "target_update_interval = 0 is invalid: .*"
            ),
        ),
        ({"gamma": [0.9]}, 0, "seeds = 0 is invalid: expected an integer >= 1"),
        (
            {"learning_rate": [1e-4 * (i + 1) for i in range(2_501)], "double_dqn": [False, True]},
            2,
            r"grid: 2501 learning_rate x 2 double_dqn x 2 seeds make 10004 cells; "
            r"expected at most 10000 \(each cell .*",
        ),
    ],
)
def test_spec_rejects_bad_grids(tiny_config: DQNConfig, grid: dict, seeds: int, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}$"):
        AblationSpec(tiny_config, grid, seeds)


def test_grid_values_are_read_by_each_fields_type_and_sorted() -> None:
    args = build_parser().parse_args(
        [
            "ablate",
            "--grid",
            "hidden_sizes=64x64,16",
            "--grid",
            "double_dqn=TRUE,false",
            "--grid",
            "max_grad_norm=20,0.5",
            "--grid",
            "loss=mse,huber",
            "--grid",
            "learning_rate=1e-3,3e-4",
            "--grid",
            "batch_size=64,32",
        ]
    )
    spec = build_spec(args)
    assert spec.grid == {
        "hidden_sizes": ((16,), (64, 64)),
        "double_dqn": (False, True),
        "max_grad_norm": (0.5, 20.0),
        "loss": ("huber", "mse"),
        "learning_rate": (3e-4, 1e-3),
        "batch_size": (32, 64),
    }
    assert list(spec.grid) == ["hidden_sizes", "double_dqn", "max_grad_norm", "loss", "learning_rate", "batch_size"]
    assert spec.search_space["hidden_sizes"] == ["16", "64,64"] and spec.search_space["seed"] == [0, 1, 2]
    assert len(spec.cells) == 2**6 * 3
    for name, values in spec.grid.items():
        assert [grid_value(name, value_text(value)) for value in values] == list(values)
    assert spec.config_for(spec.settings[-1]) == DQNConfig(
        hidden_sizes=(64, 64), max_grad_norm=20.0, loss="mse", batch_size=64, eval_freq=5_000
    )


def test_the_study_name_is_the_same_for_the_same_ablation(tiny_config: DQNConfig) -> None:
    spec = AblationSpec(tiny_config, {"gamma": [0.99, 0.9], "double_dqn": [True, False]}, 2)
    same = AblationSpec(tiny_config.replace(gamma=0.5), {"double_dqn": [False, True], "gamma": [0.9, 0.99]}, 2)
    assert spec.default_study_name == same.default_study_name and spec.differences(same) == []
    assert re.fullmatch(r"ablation-CartPole-v1-[0-9a-f]{10}", spec.default_study_name)
    others = [
        AblationSpec(tiny_config, {"gamma": [0.99, 0.9]}, 2),
        AblationSpec(tiny_config, {"gamma": [0.99, 0.9], "double_dqn": [True, False]}, 3),
        AblationSpec(tiny_config.replace(total_timesteps=700), {"gamma": [0.99, 0.9], "double_dqn": [True]}, 2),
    ]
    assert len({spec.default_study_name, *(other.default_study_name for other in others)}) == 4
    assert [spec.differences(other) for other in others] == [["grid"], ["seeds"], ["grid", "total_timesteps"]]
    assert AblationSpec.from_dict(spec.to_dict()) == spec
    stored = spec.to_dict()  # as stored by a version without the field keep_best, which keeps its default here
    stored["base"] = {name: value for name, value in stored["base"].items() if name != "keep_best"}
    assert AblationSpec.from_dict(stored).default_study_name == spec.default_study_name
    assert AblationSpec.from_dict(OLD_SPEC) == legacy(DQNConfig.from_dict(OLD_SPEC["base"]), (100, 200), (1,), 2)


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


LEGACY_FLAGS = ["--buffer-sizes", "100", "--target-intervals", "1"]


BAD_INPUT = [
    (["--buffer-sizes", ""], r"argument --buffer-sizes: invalid list ''; expected comma-separated integers"),
    (["--target-intervals", "10,ten"], r"argument --target-intervals: invalid list '10,ten'"),
    (
        [*LEGACY_FLAGS, "--buffer-sizes", "100,0"],
        (
            r"--buffer-sizes/--target-intervals setting buffer_size=0, "
            r"target_update_interval=1 gives an invalid config: buffer_size = 0 is"
        ),
    ),
    (
        [*LEGACY_FLAGS, "--buffer-sizes", "16,100"],
        (
            r"setting buffer_size=16, target_update_interval=1 gives an invalid "
            r"config: batch_size = 32 is invalid: expected at most buffer_size"
        ),
    ),
    ([*LEGACY_FLAGS, "--target-intervals", "5,5"], r"--target-intervals repeats 5: expected each value once$"),
    ([*LEGACY_FLAGS, "--buffer-size", "500"], r"--buffer-size fixes buffer_size, which --buffer-sizes varies; drop"),
    ([*LEGACY_FLAGS, "--cell-seeds", "0"], r"argument --cell-seeds: invalid value '0'; expected an integer >= 1"),
    (
        [*LEGACY_FLAGS, "--learning-starts", "400"],
        r"--learning-starts = 400 is invalid: expected less than --timesteps",
    ),
    (["--grid", "foo=1,2"], r"--grid: unknown hyperparameter 'foo'; tunable: learning_rate, gamma, batch_size"),
    (["--grid", "total_timesteps=100,200"], r"--grid: 'total_timesteps' is part of the trial budget, not a hyper"),
    (["--grid", "gamma=0.9,high"], r"--grid gamma: invalid value 'high'; expected a number$"),
    (["--grid", "double_dqn=true,maybe"], r"--grid double_dqn: invalid value 'maybe'; expected true or false$"),
    (["--grid", "hidden_sizes=16,16x"], r"--grid hidden_sizes: invalid value '16x'; expected layer widths such as "),
    (
        ["--grid", "tau=0.5,1.5"],
        (
            r"--grid setting tau=1.5 gives an invalid config: tau = 1.5 is invalid: expected a "
            r"number in \(0, 1\]$"
        ),
    ),
    (["--grid", "buffer_size=16,100"], r"--grid setting buffer_size=16 gives an invalid config: batch_size = 32 is "),
    (["--grid", "gamma=0.9,0.9"], r"--grid gamma repeats 0.9: expected each value once$"),
    (["--grid", "gamma=0.9", "--grid", "gamma=0.99"], r"--grid gamma is given twice; give each axis once with all"),
    (["--grid", "gamma"], r"argument --grid: invalid axis 'gamma'; expected NAME=V1,V2,... such as n_steps=1,3,5"),
    (["--grid=--"], r"argument --grid: invalid value '--'; expected one value"),
    (["--grid", "gamma=0.9", "--gamma", "0.95"], r"--gamma fixes gamma, which --grid gamma varies; drop one of them$"),
    (["--grid", "gamma=0.9", "--buffer-sizes", "100"], r"--buffer-sizes and --target-intervals set the default grid"),
    (
        ["--grid", "tau=" + ",".join(f"{i + 1}e-5" for i in range(3_334))],
        r"--grid: 3334 tau x 3 seeds make 10002 cells; expected at most 10000",
    ),
    ([*LEGACY_FLAGS, "--base-study", "nope"], r"study 'nope' not found in .*; studies there: taken, unfinished$"),
    ([*LEGACY_FLAGS, "--base-study", "unfinished"], r"study 'unfinished' has no complete trial"),
    ([*LEGACY_FLAGS, "--env", "Pendulum-v1"], r"env 'Pendulum-v1' has a Box action space"),
    ([*LEGACY_FLAGS, "--out-dir", "{db}/sub"], r"cannot write output path .*study\.db/sub/runs\.csv"),
    ([*LEGACY_FLAGS, "--study-name", "unfinished"], r"study 'unfinished' is not an ablation study \(no 'ablation' "),
    (
        [*LEGACY_FLAGS, "--study-name", "taken"],
        (
            r"study 'taken' holds an ablation with other grid, seeds, learning_rate; "
            r"run it with the same settings"
        ),
    ),
]
"""Bad flags of `ablate` (after the tiny budget flags and --learning-rate 0.002) and their one-line error."""


def test_cli_bad_input_is_one_line_exit_2_and_leaves_the_storage_alone(
    tmp_path: Path, tiny_config: DQNConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "study.db"
    url = f"sqlite:///{db}"
    unfinished = optuna.create_study(study_name="unfinished", storage=open_storage(url, heartbeat=False))
    store_config(unfinished.ask(), tiny_config)
    taken = optuna.create_study(study_name="taken", storage=open_storage(url, heartbeat=False))
    same_flags = DQNConfig(
        total_timesteps=300,
        learning_starts=100,
        batch_size=32,
        hidden_sizes=(16,),
        eval_freq=100,
        eval_curve_episodes=1,
        eval_episodes=1,
        buffer_size=5_000,
    )
    taken.set_user_attr(SPEC_ATTR, legacy(same_flags, (100, 200), (1,), 2).to_dict())
    before = digest(db)
    for args, message in BAD_INPUT:
        code = main(
            [
                "ablate",
                "--storage",
                url,
                *TINY_FLAGS,
                "--learning-rate",
                "0.002",
                "--out-dir",
                str(tmp_path / "report"),
                *(arg.format(db=db) for arg in args),
            ]
        )
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and err.startswith("dqn-tune: error: "), (args, err)
        assert re.search(message, err), (args, err)
        assert digest(db) == before
    assert optuna.get_all_study_names(url) == ["unfinished", "taken"]


def test_base_study_supplies_every_other_hyperparameter_from_its_recommended_trial(
    tmp_path: Path, tiny_config: DQNConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/base.db"
    study = optuna.create_study(study_name="tuned", storage=open_storage(url, heartbeat=False), direction="maximize")
    for value, config in ((2.0, tiny_config.replace(learning_rate=3e-3, gamma=0.95)), (1.0, tiny_config)):
        trial = study.ask()
        store_config(trial, config)
        study.tell(trial, value)
    flags = ["ablate", "--storage", url, "--base-study", "tuned", "--grid", "buffer_size=100", "--timesteps", "400"]

    spec = build_spec(build_parser().parse_args(flags))

    assert spec.base == tiny_config.replace(learning_rate=3e-3, gamma=0.95, total_timesteps=400, eval_freq=40)
    assert (spec.base_study, spec.base_trial) == ("tuned", 0) and spec.to_dict()["base_trial"] == 0
    assert spec.base_source == (
        "trial 0 of study 'tuned', best tuning value; the study has no validation: run 'dqn-tune validate'"
    )
    study.set_user_attr(RECOMMENDATION, {"trial": 1})  # validation recommended the second trial
    spec = build_spec(build_parser().parse_args(flags))
    assert spec.base == tiny_config.replace(total_timesteps=400, eval_freq=40) and spec.base_trial == 1
    assert spec.base_source == "trial 1 of study 'tuned', recommended by validation on held-out seeds"
    assert AblationSpec.from_dict(spec.to_dict()).base_source == spec.base_source
    assert main(["ablate", "--storage", url, "--base-study", "tuned", "--env", "Acrobot-v1"]) == 2
    assert capsys.readouterr().err == (
        "dqn-tune: error: --env Acrobot-v1 differs from the env of --base-study "
        "'tuned' (CartPole-v1); drop --env or choose a study of that env\n"
    )


def test_without_a_base_study_the_env_s_preset_is_the_base_as_for_train() -> None:
    spec = build_spec(build_parser().parse_args(["ablate", "--env", "MountainCar-v0", "--grid", "n_steps=1,3"]))
    preset = preset_for("MountainCar-v0")
    assert preset is not None and spec.base == preset.base_config()
    assert spec.base_source == "the MountainCar-v0 preset" and spec.base.total_timesteps == preset.timesteps
    plain = build_spec(
        build_parser().parse_args(["ablate", "--env", "MountainCar-v0", "--no-preset", "--grid", "n_steps=1,3"])
    )
    assert plain.base == DQNConfig(env_id="MountainCar-v0", n_steps=1) and plain.base_source == "the defaults"


def test_a_base_the_grid_makes_valid_is_accepted() -> None:
    """--timesteps 500 leaves the default learning_starts (1000) invalid; every setting of the grid sets a valid one."""
    spec = build_spec(build_parser().parse_args(["ablate", "--timesteps", "500", "--grid", "learning_starts=0,100"]))
    assert [spec.config_for(setting).learning_starts for setting in spec.settings] == [0, 100]
