"""`dqn-tune tune` / `dqn-tune --trials N`: a real run, and every bad input as one line, exit 2, storage unchanged."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.tuning import records
from dqn_tune.tuning.records import COMMANDS_ATTR
from scripts.fleet import TINY as TINY_TUNE

TINY = ["--timesteps", "600", *TINY_TUNE]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding study 'dqn-CartPole-v1' (one tiny trial) and a minimize study 'other'."""
    path = tmp_path_factory.mktemp("existing") / "study.db"
    assert main(["--trials", "1", "--storage", f"sqlite:///{path}", *TINY]) == 0
    optuna.create_study(study_name="other", storage=f"sqlite:///{path}", direction="minimize")
    return path


def test_default_command_runs_trials_into_the_default_storage_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.toml").write_text("learning_rate = { low = 1e-4, high = 3e-3, log = true }\n")
    code, out, err = run_cli(["--trials", "2", "--gamma", "0.97", "--search-space", "space.toml", *TINY], capsys)
    assert code == 0, err
    first, second = out.splitlines()[:2]
    assert first.startswith("starting from the CartPole-v1 preset (")
    assert second == "created study 'dqn-CartPole-v1' in sqlite:///studies/dqn_tune.db"
    assert "best on its tuning seeds: trial " in out and "next: dqn-tune retrain --study-name dqn-CartPole-v1" in out
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage="sqlite:///studies/dqn_tune.db")
    assert len(study.trials) == 2
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    # A flag fixes a sampled hyperparameter; the file narrows another.
    assert all("gamma" not in t.params and records.trial_config(t).gamma == 0.97 for t in study.trials)
    assert all(t.params["learning_rate"] <= 3e-3 for t in study.trials)
    command = study.user_attrs[COMMANDS_ATTR][0]
    assert "--trials 2" in command and "--gamma 0.97" in command
    assert "--device cpu --validate-top 0 --no-artifacts" in command and "--validation-seeds" not in command

    code, out, err = run_cli(
        ["tune", "--trials", "1", "--gamma", "0.97", "--search-space", "space.toml", *TINY], capsys
    )
    assert code == 0, err
    assert out.splitlines()[1].startswith(
        "resuming study 'dqn-CartPole-v1' in sqlite:///studies/dqn_tune.db: 2 trials already ("
    )
    assert len(study.get_trials()) == 3


BAD_INPUTS = [
    (["--trials", "0"], "argument --trials: invalid value '0'; expected an integer >= 1"),
    (["--trials", "-3"], "argument --trials: invalid value '-3'; expected an integer >= 1"),
    (["--trials", "abc"], "argument --trials: invalid value 'abc'; expected an integer >= 1"),
    (["--trials", "2", "--workers", "0"], "argument --workers: invalid value '0'"),
    (["--trials", "2", "--trial-seeds", "1.5"], "argument --trial-seeds: invalid value '1.5'"),
    (["--total-trials", "0"], "argument --total-trials: invalid value '0'"),
    (["--trials", "2", "--sampler", "grid"], "argument --sampler: invalid choice: 'grid' (choose from 'tpe', 'random'"),
    (["--trials", "2", "--pruner", "sha"], "argument --pruner: invalid choice: 'sha' (choose from 'median', 'patient'"),
    (["--trials", "2", "--objective", "mean"], "argument --objective: invalid choice: 'mean'"),
    (
        ["--trials", "2", "--checkpoint-every", "-1"],
        "argument --checkpoint-every: invalid value '-1'; expected an integer >= 0",
    ),
    (
        [],
        "give --trials N (trials to run now), --total-trials N (the study's total), --timeout SECONDS (trials "
        "until then), or several",
    ),
    (["--trials", "2", "--env", "Pendulum-v1"], "env 'Pendulum-v1' has a Box action space"),
    (["--trials", "2", "--env", "NoSuchEnv-v0"], "unknown env id 'NoSuchEnv-v0'"),
    (
        ["--trials", "2", "--learning-starts", "1000"],
        "--learning-starts = 1000 is invalid: expected less than --timesteps (600)",
    ),
    (
        ["--trials", "2", "--heartbeat-interval", "5", "--grace-period", "3"],
        "heartbeat interval 5s and grace period 3s are invalid",
    ),
    (["--trials", "2", "--timesteps", "800"], "was run with total_timesteps = 600, this command asks for 800"),
    (["--trials", "2", "--study-name", "other"], "has direction minimize; dqn-tune maximizes the evaluation return"),
    (
        ["--trials", "2", "--search-space", "/nonexistent/space.toml"],
        "cannot read search-space file '/nonexistent/space.toml': No such file or directory",
    ),
    (["--trials", "2", "--search-space", "{bad_toml}"], "is not valid TOML"),
    (["--trials", "2", "--search-space", "{unknown_param}"], "unknown hyperparameter 'learning_rte'; tunable:"),
    (
        ["--trials", "2", "--search-space", "{zero_low}"],
        "zero.toml': learning_rate: a log-scale range needs low > 0, got 0.0\n",  # the file's key; nothing after
    ),
    pytest.param(
        ["--trials", "2", "--device", "cuda"],
        "device = 'cuda' is invalid on this machine: torch sees no CUDA GPU",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present"),
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    existing_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "bad.toml").write_text("learning_rate = { low = 1e-4")
    (tmp_path / "unknown.toml").write_text("learning_rte = { low = 1e-4, high = 1e-3 }")
    (tmp_path / "zero.toml").write_text("learning_rate = { low = 0, high = 1e-3, log = true }")
    files = {"bad_toml": "bad.toml", "unknown_param": "unknown.toml", "zero_low": "zero.toml"}
    args = [arg.format(**{key: tmp_path / name for key, name in files.items()}) for arg in args]
    before = existing_db.read_bytes()
    code, out, err = run_cli([*TINY, "--storage", f"sqlite:///{existing_db}", *args], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("dqn-tune: error: ") and message in err, err
    assert existing_db.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--heartbeat-interval", "5", "--grace-period", "3"], "heartbeat interval 5s and grace period 3s are invalid"),
        (
            ["--validation-seeds", "1"],
            "argument --validation-seeds: invalid value '1'; expected an integer from 2 to 1000",
        ),
        (["--search-space", "/nonexistent/space.toml"], "cannot read search-space file"),
        pytest.param(
            ["--device", "cuda"],
            "device = 'cuda' is invalid on this machine",
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present"),
        ),
    ],
)
def test_bad_input_with_the_default_storage_creates_no_studies_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(["--trials", "1", *TINY, *args], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("not a url", "storage URL 'not a url' is not a valid SQLAlchemy URL"),
        ("sqlite://", "storage 'sqlite://' is in memory; a study needs a file or a server"),
        ("sqlite:///{tmp}/missing/dir/study.db", "directory '{tmp}/missing/dir' does not exist"),
        ("sqlite:///{tmp}/a_file/study.db", "directory '{tmp}/a_file' does not exist"),
        ("sqlite:///{tmp}/corrupt.db", "cannot open storage 'sqlite:///{tmp}/corrupt.db': file is not a database"),
        (
            "postgresql+psycopg2://nobody@127.0.0.1:1/none",
            "storage 'postgresql+psycopg2://nobody@127.0.0.1:1/none': connection to server at \"127.0.0.1\", "
            "port 1 failed: Connection refused",
        ),
    ],
)
def test_unusable_storage_is_one_line_exit_2_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage: str, message: str
) -> None:
    (tmp_path / "a_file").write_text("not a directory")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not a database" * 100)
    files_before = {p: p.read_bytes() for p in tmp_path.rglob("*")}
    code, out, err = run_cli(
        ["--trials", "1", "--storage", storage.format(tmp=tmp_path), "--storage-retry-timeout", "0", *TINY], capsys
    )
    assert code == 2 and out == "" and err.count("\n") == 1
    assert message.format(tmp=tmp_path) in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.suffix != ".lock"} == files_before


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        (0o555, "directory '{dir}' is not writable (SQLite creates its journal file beside the database)"),
        (0o700, "Permission denied: '{dir}/study.db'"),  # root's directory: nobody cannot even look inside
    ],
)
def test_storage_in_a_read_only_directory_is_refused(
    shared_tmp: Path, as_nobody: Callable[[list[str]], tuple[int, str]], mode: int, message: str
) -> None:
    """Run as user nobody (root ignores mode bits), in a forked child of this process."""
    directory = shared_tmp / "studies"
    directory.mkdir()
    directory.chmod(mode)
    args = ["--trials", "1", "--storage", f"sqlite:///{directory}/study.db", *TINY]
    code, err = as_nobody(args)
    assert code == 2, err
    assert (
        err == f"dqn-tune: error: cannot open storage 'sqlite:///{directory}/study.db': "
        f"{message.format(dir=directory)}\n"
    )
    assert list(directory.iterdir()) == []


def test_cmaes_sampler_runs_and_samples_numeric_params(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(
        ["--trials", "3", "--workers", "1", "--sampler", "cmaes", "--storage", f"sqlite:///{tmp_path}/s.db", *TINY],
        capsys,
    )
    assert code == 0, err
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=f"sqlite:///{tmp_path}/s.db")
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert len({t.params["learning_rate"] for t in study.trials}) == 3


def test_the_run_ends_on_the_validated_pick_its_config_and_the_next_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(
        [
            "--trials",
            "2",
            "--workers",
            "1",
            *TINY,
            "--validate-top",
            "1",
            "--validation-seeds",
            "2",
            "--sampler",
            "random",
            "--pruner",
            "none",
        ],
        capsys,
    )
    assert code == 0, err
    lines = out.splitlines()
    best = next(i for i, line in enumerate(lines) if line.startswith("best on its tuning seeds: trial "))
    assert ", the mean over 1 seed of each run's greedy return on 2 fresh episodes of its kept weights:" in lines[best]
    recommended = next(i for i, line in enumerate(lines) if line.startswith("recommended: trial "))
    number = int(lines[recommended].split()[2])
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage="sqlite:///studies/dqn_tune.db")
    forward = lines.index(
        f"take forward: trial {number} (recommended by validation on held-out seeds), value "
        f"{study.trials[number].value:.2f} on its tuning seeds"
    )
    assert best < recommended < forward
    assert "validating the best config of 'dqn-CartPole-v1' on 2 held-out seeds each: 2 runs to do" in lines
    assert lines[forward + 1 : forward + 1 + len(study.trials[number].params)] == [
        f"  {name} = {value}" for name, value in study.trials[number].params.items()
    ]
    assert lines[-3].startswith("next: dqn-tune retrain --study-name dqn-CartPole-v1 --storage sqlite:///studies/")
    assert lines[-1].startswith("      dqn-tune dashboard sqlite:///studies/dqn_tune.db")


@pytest.mark.slow
def test_installed_console_script_runs_a_study_with_two_workers(tmp_path: Path) -> None:
    script = shutil.which("dqn-tune")
    assert script is not None, "dqn-tune is not installed (pip install -e .)"
    result = subprocess.run(
        [
            script,
            "--trials",
            "4",
            "--workers",
            "2",
            "--timesteps",
            "1500",
            "--learning-starts",
            "200",
            "--trial-seeds",
            "2",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "trials in the study: 4 (" in result.stdout
    assert "dqn-tune dashboard sqlite:///studies/dqn_tune.db   # browse" in result.stdout
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=f"sqlite:///{tmp_path}/studies/dqn_tune.db")
    assert len(study.trials) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    # the validation stage: the best config (one per 10 complete trials, at least 1) on 5 held-out seeds
    validation = optuna.load_study(
        study_name="dqn-CartPole-v1-validation", storage=f"sqlite:///{tmp_path}/studies/dqn_tune.db"
    )
    assert [t.state for t in validation.trials] == [TrialState.COMPLETE] * 5
    assert f"recommended: trial {study.best_trial.number} (" in result.stdout
    assert study.user_attrs["recommendation"]["trial"] == study.best_trial.number
    assert len(list((tmp_path / "studies" / "artifacts").iterdir())) == 4 + 5


KNOWN = "learning_rate = 0.002\nbatch_size = 64\nbuffer_size = 10000\ntarget_update_interval = 150\ngamma = 0.98\n"


def test_an_enqueued_config_is_the_studys_first_trial_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known = tmp_path / "known.toml"
    known.write_text(KNOWN + 'optimizer = "rmsprop"\n')
    storage = f"sqlite:///{tmp_path / 's.db'}"
    command = ["--trials", "1", "--storage", storage, "--enqueue", str(known), *TINY]
    code, out, err = run_cli(command, capsys)
    assert code == 0, err
    assert f"created study 'dqn-CartPole-v1' in {storage} with 1 trial queued (--enqueue)" in out.splitlines()
    assert (
        f"--enqueue {str(known)!r}: the study runs its learning_rate, gamma, batch_size, buffer_size, "
        "target_update_interval as a trial (once per study); optimizer is not sampled: that trial keeps the "
        "study's value, not the file's"
    ) in out.splitlines()
    [first] = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage).trials
    assert first.params == {
        "learning_rate": 0.002,
        "gamma": 0.98,
        "batch_size": 64,
        "buffer_size": 10_000,
        "target_update_interval": 150,
    }
    assert records.trial_config(first).optimizer != "rmsprop"
    assert run_cli(command, capsys)[0] == 0  # the same command again: its trial is sampled, not queued again
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    assert len(study.trials) == 2 and study.trials[1].params != first.params
    assert f"--enqueue {known}" in study.user_attrs[COMMANDS_ATTR][0]


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (
            KNOWN.replace("0.002", "0.5"),
            "learning_rate = 0.5 is outside the study's search space (float in [0.0001, 0.01], log scale)",
        ),
        (KNOWN.replace("64", "48"), "batch_size = 48 is outside the study's search space (one of 32, 64, 128, 256)"),
        ('batch_size = "big"\n', "config file '{path}': batch_size = 'big' is invalid: expected an integer"),
        (None, "cannot read config file '{path}': No such file or directory"),
    ],
)
def test_an_enqueued_config_the_study_cannot_run_is_one_line_and_nothing_stored(
    content: str | None, error: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    known = tmp_path / "known.toml"
    if content is not None:
        known.write_text(content)
    code, _, err = run_cli(
        ["--trials", "1", "--storage", f"sqlite:///{tmp_path / 's.db'}", "--enqueue", str(known), *TINY], capsys
    )
    assert code == 2 and err.count("\n") == 1 and err.startswith("dqn-tune: error: --enqueue"), err
    assert error.format(path=known) in err
    assert not (tmp_path / "s.db").exists()


def test_an_enqueued_value_the_space_fixes_is_named_as_kept(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    known, space = tmp_path / "known.toml", tmp_path / "space.toml"
    known.write_text(KNOWN)
    space.write_text("gamma = 0.97\n")
    storage = f"sqlite:///{tmp_path / 's.db'}"
    code, out, err = run_cli(
        ["--trials", "1", "--storage", storage, "--search-space", str(space), "--enqueue", str(known), *TINY], capsys
    )
    assert code == 0, err
    assert "; gamma is not sampled: that trial keeps the study's value, not the file's" in out
    [trial] = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage).trials
    assert "gamma" not in trial.params and records.trial_config(trial).gamma == 0.97
