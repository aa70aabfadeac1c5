"""run_study on real SQLite files: create, resume, reproduce, cap, several workers, refuse mismatches."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from optuna_dashboard._note import get_note_from_system_attrs

from dqn_tune.cli import main
from dqn_tune.errors import StorageError
from dqn_tune.runner.storage import StorageSettings, sqlite_path
from dqn_tune.tuning.records import COMMANDS_ATTR, SETTINGS_ATTR, VERSIONS_ATTR
from dqn_tune.tuning.search_space import SearchSpace
from dqn_tune.tuning.study import TuneSettings, run_study


def load(settings: TuneSettings) -> optuna.Study:
    return optuna.load_study(study_name=settings.study_name, storage=settings.storage_url)


def finished_ok(study: optuna.Study) -> bool:
    return all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)


def test_study_is_created_recorded_and_resumed(tune_settings: TuneSettings) -> None:
    messages: list[str] = []
    summary = run_study(tune_settings, trials=3, command="dqn-tune --trials 3", echo=messages.append)
    study = load(tune_settings)
    assert messages == [f"created study 's' in {tune_settings.storage_url}"]
    assert len(study.trials) == 3 and finished_ok(study)
    assert (summary.trials_before, summary.trials_run, sum(summary.counts.values())) == (0, 3, 3)
    assert summary.best_value == study.best_value and summary.best_params == study.best_params
    assert summary.retrain_command == f"dqn-tune retrain --study-name s --storage {tune_settings.storage_url}"
    assert summary.dashboard_command == f"dqn-tune dashboard {tune_settings.storage_url}"
    assert study.user_attrs[SETTINGS_ATTR] == tune_settings.to_attr()
    assert study.user_attrs[VERSIONS_ATTR]["optuna"] == optuna.__version__
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "dqn-tune --trials 3" in note and "learning_rate: float in [0.0001, 0.01], log scale" in note
    assert "{" not in note  # fixed hyperparameters one per line, never a Python dict (wide on the dashboard)

    summary = run_study(tune_settings, trials=2, command="dqn-tune --trials 2", echo=messages.append)
    study = load(tune_settings)
    assert messages[1].startswith("resuming study 's'") and ": 3 trials already (" in messages[1]
    assert messages[1].endswith("; --trials 2 runs 2 more (--total-trials N stops the study at N trials in all)")
    assert len(study.trials) == 5 and (summary.trials_before, summary.trials_run) == (3, 2)
    assert study.user_attrs[COMMANDS_ATTR] == ["dqn-tune --trials 3", "dqn-tune --trials 2"]
    assert any(line.startswith("best on its tuning seeds: trial ") for line in summary.lines())


def test_same_seed_gives_the_same_study(tmp_path: Path, tune_settings: TuneSettings) -> None:
    def trials(url: str, seed: int) -> list[tuple[dict, float | None]]:
        objective = dataclasses.replace(tune_settings.objective, study_seed=seed)
        settings = dataclasses.replace(tune_settings, storage=StorageSettings(url), objective=objective)
        run_study(settings, trials=3, echo=lambda _: None)
        return [(t.params, t.value) for t in load(settings).trials]

    first = trials(f"sqlite:///{tmp_path}/a.db", seed=5)
    assert trials(f"sqlite:///{tmp_path}/b.db", seed=5) == first
    assert [p for p, _ in trials(f"sqlite:///{tmp_path}/c.db", seed=6)] != [p for p, _ in first]


def test_total_trials_caps_the_study(tune_settings: TuneSettings) -> None:
    run_study(dataclasses.replace(tune_settings, total_trials=2), trials=None, echo=lambda _: None)
    assert len(load(tune_settings).trials) == 2
    summary = run_study(dataclasses.replace(tune_settings, total_trials=3), trials=5, echo=lambda _: None)
    assert len(load(tune_settings).trials) == 3 and summary.trials_run == 1


def test_two_workers_share_the_trials(tune_settings: TuneSettings) -> None:
    summary = run_study(dataclasses.replace(tune_settings, artifacts=True), trials=4, workers=2, echo=lambda _: None)
    study = load(tune_settings)
    assert len(study.trials) == 4 and finished_ok(study) and summary.trials_run == 4
    assert summary.worker_error is None
    assert len(list((sqlite_path(tune_settings.storage_url).parent / "artifacts").iterdir())) == 4  # type: ignore[union-attr]


def test_existing_study_with_another_direction_is_refused_unchanged(tune_settings: TuneSettings) -> None:
    optuna.create_study(study_name="s", storage=tune_settings.storage_url, direction="minimize")
    path = sqlite_path(tune_settings.storage_url)
    before = path.read_bytes()  # type: ignore[union-attr]
    with pytest.raises(StorageError, match=r"study 's' in .* has direction minimize; dqn-tune maximizes"):
        run_study(tune_settings, trials=1, echo=lambda _: None)
    assert path.read_bytes() == before  # type: ignore[union-attr]


def test_resuming_with_another_budget_is_refused_unchanged(tune_settings: TuneSettings) -> None:
    run_study(tune_settings, trials=1, echo=lambda _: None)
    path = sqlite_path(tune_settings.storage_url)
    before = path.read_bytes()  # type: ignore[union-attr]
    base = tune_settings.objective.base.replace(total_timesteps=800)
    longer = dataclasses.replace(tune_settings, objective=dataclasses.replace(tune_settings.objective, base=base))
    with pytest.raises(StorageError, match="was run with total_timesteps = 600, this command asks for 800"):
        run_study(longer, trials=1, echo=lambda _: None)
    assert path.read_bytes() == before  # type: ignore[union-attr]


def test_a_foreign_study_with_trials_is_refused(tune_settings: TuneSettings) -> None:
    study = optuna.create_study(study_name="s", storage=tune_settings.storage_url, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    with pytest.raises(StorageError, match="was not made by dqn-tune"):
        run_study(tune_settings, trials=1, echo=lambda _: None)


def test_resuming_with_another_search_space_is_refused_unchanged(tune_settings: TuneSettings) -> None:
    run_study(tune_settings, trials=1, echo=lambda _: None)
    path = sqlite_path(tune_settings.storage_url)
    before = path.read_bytes()  # type: ignore[union-attr]
    space = tune_settings.objective.space.merged(SearchSpace.from_mapping({"batch_size": {"choices": [64, 128]}}))
    other = dataclasses.replace(tune_settings, objective=dataclasses.replace(tune_settings.objective, space=space))
    with pytest.raises(
        StorageError,
        match=r"was run with another search space \(batch_size: one of 32, 64, 128, 256 "
        r"in the study, one of 64, 128 here\); use the same --search-space file",
    ):
        run_study(other, trials=1, echo=lambda _: None)
    assert path.read_bytes() == before  # type: ignore[union-attr]


def test_cli_refuses_a_changed_search_space_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("space.toml").write_text("batch_size = { choices = [64, 128] }\n")
    Path("other.toml").write_text("batch_size = { choices = [32, 256] }\n")
    tiny = [
        "--trials",
        "1",
        "--timesteps",
        "600",
        "--learning-starts",
        "100",
        "--eval-freq",
        "200",
        "--trial-seeds",
        "1",
        "--eval-curve-episodes",
        "2",
        "--eval-episodes",
        "2",
        "--hidden-sizes",
        "16",
        "--no-artifacts",
        "--validate-top",
        "0",
    ]
    assert main([*tiny, "--search-space", "space.toml"]) == 0
    before = Path("studies/dqn_tune.db").read_bytes()
    capsys.readouterr()
    assert main([*tiny, "--search-space", "other.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size: one of 64, 128 in the study, one of 32, 256 here" in err
    assert "or another --study-name" in err and Path("studies/dqn_tune.db").read_bytes() == before
