"""Everyday use (issue 12): resume without retyping flags, the names users already type, defaults."""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.tuning import records
from scripts.fleet import TINY as TINY_TUNE

TINY = ["--timesteps", "600", *TINY_TUNE]


@pytest.fixture(scope="module")
def made_with_flags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file holding study 'dqn-CartPole-v1', made with TINY flags, --gamma 0.97 and --objective best."""
    path = tmp_path_factory.mktemp("resume") / "study.db"
    assert (
        main(["--trials", "1", "--storage", f"sqlite:///{path}", *TINY, "--gamma", "0.97", "--objective", "best"]) == 0
    )
    return path


def test_resume_without_flags_reuses_the_stored_settings(
    made_with_flags: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "study.db"
    copy.write_bytes(made_with_flags.read_bytes())
    storage = f"sqlite:///{copy}"
    assert main(["--trials", "1", "--storage", storage, "--validate-top", "0", "--no-artifacts"]) == 0, (
        capsys.readouterr().err
    )
    assert "resuming with the study's stored settings" in capsys.readouterr().out
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    assert len(study.trials) == 2
    config = records.trial_config(study.trials[1])
    assert (config.total_timesteps, config.eval_episodes, config.gamma, config.hidden_sizes) == (600, 2, 0.97, (16,))
    assert "gamma" not in study.trials[1].params
    assert records.study_settings(study)["objective"] == "best"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timesteps", "800"], "was run with total_timesteps = 600, this command asks for 800; use the same value"),
        (["--objective", "final"], "was run with objective = 'best', this command asks for 'final'"),
        (["--gamma", "0.98"], "fixes --gamma = 0.97, this command asks for 0.98; leave the flag out"),
        (["--env", "Acrobot-v1", "--study-name", "dqn-CartPole-v1"], "was run with env_id = 'CartPole-v1'"),
    ],
)
def test_a_conflicting_explicit_flag_is_refused_and_changes_nothing(
    made_with_flags: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = made_with_flags.read_bytes()
    code = main(["--trials", "1", "--storage", f"sqlite:///{made_with_flags}", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert made_with_flags.read_bytes() == before


@pytest.mark.parametrize("command", ["tune", "ablate", "validate"])
def test_workers_default_is_the_usable_cores(command: str) -> None:
    from dqn_tune.cli import build_parser
    from dqn_tune.cli.arguments import chosen_workers

    args = build_parser().parse_args([command])
    assert args.workers is None
    assert chosen_workers(args.workers) == len(os.sched_getaffinity(0))
    assert chosen_workers(args.workers, trials=1) == 1  # never more processes than trials
    assert chosen_workers(1) == 1


def test_tune_says_how_many_workers_it_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--trials", "1", "--storage", f"sqlite:///{tmp_path}/s.db", *TINY]) == 0
    assert "1 worker process (the usable CPU cores" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "dest", "value"),
    [
        (["tune", "--n-trials", "7"], "trials", 7),  # Optuna's CLI and RL Zoo
        (["--n-trials", "7"], "trials", 7),
        (["evaluate", "agent.pt", "--eval-episodes", "5"], "episodes", 5),
        (["evaluate", "agent.pt", "--n-eval-episodes", "5"], "episodes", 5),  # SB3
        (["dashboard", "sqlite:///s.db"], "storage_url", "sqlite:///s.db"),  # as optuna-dashboard URL
        (["retrain", "--env", "Acrobot-v1"], "env_id", "Acrobot-v1"),
        (["tune", "--seeds", "3"], "trial_seeds", 3),  # the names before one name per meaning (issue 24)
        (["validate", "--top-k", "2"], "validate_top", 2),
        (["validate", "--seeds", "7"], "validation_seeds", 7),
        (["retrain", "--seeds", "2"], "retrain_seeds", 2),
        (["ablate", "--seeds", "2"], "cell_seeds", 2),
        (["report", "--env-id", "Acrobot-v1"], "env_id", "Acrobot-v1"),
    ],
)
def test_aliases_users_already_type(args: list[str], dest: str, value: object) -> None:
    from dqn_tune.cli import COMMANDS, DEFAULT_COMMAND, build_parser

    argv = args if args[0] in COMMANDS else [DEFAULT_COMMAND, *args]
    assert getattr(build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("command", ["retrain", "report", "validate", "best"])
def test_commands_that_read_a_study_derive_its_name_from_env(
    made_with_flags: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([command, "--env", "Acrobot-v1", "--storage", f"sqlite:///{made_with_flags}"])
    assert code == 2 and "study 'dqn-Acrobot-v1' not found" in capsys.readouterr().err


def test_dashboard_refuses_two_different_storages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "sqlite:///a.db", "--storage", "sqlite:///b.db"]) == 2
    assert "two storages given, 'sqlite:///a.db' and --storage 'sqlite:///b.db'; give one" in capsys.readouterr().err


def test_version_and_bare_command_list_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("dqn-tune ")
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(f"    {name}" in out for name in ("train", "tune", "retrain", "report", "dashboard", "validate"))


@pytest.mark.parametrize("timesteps", [4_000, 50_000, 200_000])
def test_ablate_evaluates_about_ten_times_at_any_budget(timesteps: int) -> None:
    from dqn_tune.cli import build_parser
    from dqn_tune.cli.ablate import build_spec

    args = build_parser().parse_args(
        [
            "ablate",
            "--timesteps",
            str(timesteps),
            "--buffer-sizes",
            "1000",
            "--target-intervals",
            "10",
            "--learning-starts",
            "100",
        ]
    )
    config = build_spec(args).base
    assert config.total_timesteps // config.eval_freq == 10


def test_artifact_dir_is_stored_on_the_study_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12 item 9: tune --artifact-dir puts the PNGs there and stores the absolute directory; a resume from
    another directory without the flag, validate, the dashboard and the report all use the stored one."""
    from dqn_tune.results.dashboard import dashboard_artifact_dir
    from dqn_tune.runner.storage import open_existing_storage

    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    elsewhere.mkdir()
    storage = f"sqlite:///{tmp_path}/study.db"
    flags = [flag for flag in TINY if flag != "--no-artifacts"]
    monkeypatch.chdir(tmp_path)
    assert main(["--trials", "1", "--storage", storage, *flags, "--artifact-dir", "shared"]) == 0
    assert "      dqn-tune dashboard sqlite:///" in capsys.readouterr().out  # which reads the stored directory
    monkeypatch.chdir(elsewhere)  # another machine's working directory
    assert main(["--trials", "1", "--storage", storage, "--validate-top", "0"]) == 0
    assert (
        main(["validate", "--storage", storage, "--validate-top", "1", "--validation-seeds", "2", "--workers", "1"])
        == 0
    )
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    assert records.stored_artifact_dir(study) == str(shared)
    assert len([p for p in shared.iterdir() if p.is_file()]) == 2 + 2  # two trials, two validation runs
    assert not (elsewhere / "studies").exists() and not (tmp_path / "studies").exists()
    assert dashboard_artifact_dir(open_existing_storage(storage), storage, None) == str(shared)
    assert main(["report", "--storage", storage, "--out-dir", "report"]) == 0
    assert f"`dqn-tune dashboard --artifact-dir {shared}`" in (elsewhere / "report" / "summary.md").read_text()

    optuna.create_study(study_name="other", storage=storage).set_user_attr(records.ARTIFACT_DIR_ATTR, "/x")
    capsys.readouterr()
    assert main(["dashboard", storage, "--port", "0"]) == 2
    assert "keep artifacts in 2 directories" in capsys.readouterr().err


@pytest.mark.parametrize("timesteps", [600, 1_500])
def test_train_evaluates_ten_times_at_any_budget(
    timesteps: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 12 item 4: --timesteps without --eval-freq gives EVALS_PER_RUN curve points, as tune and ablate."""
    assert (
        main(
            [
                "train",
                "--timesteps",
                str(timesteps),
                "--learning-starts",
                "100",
                "--hidden-sizes",
                "16",
                "--eval-curve-episodes",
                "1",
                "--eval-episodes",
                "1",
                "--out",
                str(tmp_path / "a.pt"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count(" eval return ") == 9  # the 10th curve point, the last weights', ends the run
    assert (
        main(
            [
                "train",
                "--timesteps",
                str(timesteps),
                "--eval-freq",
                str(timesteps // 2),
                "--learning-starts",
                "100",
                "--hidden-sizes",
                "16",
                "--eval-curve-episodes",
                "1",
                "--eval-episodes",
                "1",
                "--out",
                str(tmp_path / "b.pt"),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.count(" eval return ") == 1  # a given --eval-freq wins


def test_retrain_timesteps_follows_the_same_evaluation_rule() -> None:
    from dqn_tune.dqn.config import DQNConfig
    from dqn_tune.results.retrain import _with_budget

    assert [_with_budget(DQNConfig(), steps, 0).eval_freq for steps in (4_000, 200_000)] == [400, 20_000]


def test_timeout_starts_no_trial_after_the_deadline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 12 item 5: --timeout 1 with trials of several seconds: the first trial runs to its end, no other starts."""
    storage = f"sqlite:///{tmp_path}/study.db"
    flags = [flag if flag != "600" else "3000" for flag in TINY]
    assert main(["--trials", "5", "--storage", storage, *flags, "--workers", "1", "--timeout", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 trial run in " in out and "(--timeout 1s reached: no new trial started, running ones finished)" in out
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    assert [t.state for t in study.trials] in ([optuna.trial.TrialState.COMPLETE], [optuna.trial.TrialState.PRUNED])


def test_timeout_alone_runs_trials_until_the_deadline_and_is_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As Optuna's optimize(timeout=...): no --trials, no --total-trials; trials start until the deadline."""
    storage = f"sqlite:///{tmp_path}/study.db"
    earliest_deadline = datetime.now() + timedelta(seconds=3)  # Optuna stores local times
    assert main(["--timeout", "3", "--storage", storage, *TINY, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "(--timeout 3s reached: no new trial started, running ones finished)" in out
    study = optuna.load_study(study_name="dqn-CartPole-v1", storage=storage)
    first = study.trials[0]
    assert first.datetime_start is not None and first.datetime_complete is not None
    latest_deadline = first.datetime_start + timedelta(seconds=3.5)  # the clock starts before the first trial
    assert all(t.state.is_finished() and t.datetime_start is not None for t in study.trials)
    assert all(t.datetime_start < latest_deadline for t in study.trials if t.datetime_start is not None)
    if first.datetime_complete < earliest_deadline - timedelta(seconds=1):  # tiny trials take about a second, longer
        assert len(study.trials) >= 2  # on a busy machine: one that ends well before the deadline is followed
    words = study.user_attrs[records.COMMANDS_ATTR][0].split()
    assert words[words.index("--timeout") + 1] == "3"  # as typed, not "3.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["retrain"],
            "no study storage in this directory ('studies/dqn_tune.db' relative to '{cwd}' does not exist): run "
            "the command where you ran 'dqn-tune tune', or give --storage with an absolute path, e.g. "
            "sqlite:///{cwd}/studies/dqn_tune.db",
        ),
        (
            ["tune", "--trials", "1", "--storage", "sqlite:///studies"],
            "'studies' is a directory; expected the database file in it, e.g. sqlite:///studies/dqn_tune.db",
        ),
        (["report", "--storage", "sqlite:///studies"], "'studies' is a directory"),
        (
            ["best", "--storage", "/abs/path.db"],
            "storage URL '/abs/path.db' is not a valid SQLAlchemy URL; expected e.g. sqlite:////abs/path.db",
        ),
        (["--trails", "5"], "unrecognized arguments: --trails 5; did you mean --trials? (see 'dqn-tune tune --help')"),
        (
            ["validate", "--validaton-seeds=3"],
            "unrecognized arguments: --validaton-seeds=3; did you mean --validation-seeds?",
        ),
    ],
)
def test_storage_and_flag_mistakes_say_what_to_type(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    if "sqlite:///studies" in args:
        (tmp_path / "studies").mkdir()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message.format(cwd=tmp_path) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["studies"] if "sqlite:///studies" in args else [])


def test_bare_help_says_what_no_command_means_and_lists_tune_s_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "Without a command, `dqn-tune --trials N ...` means `dqn-tune tune --trials N ...`" in out
    assert all(flag in out for flag in ("--trials N", "--total-trials N", "--trial-seeds K", "--validate-top K"))
