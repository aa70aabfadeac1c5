"""What a running study shows: one line per finished trial without a terminal, a bar that ticks in one."""

from __future__ import annotations

import io
import time
from pathlib import Path

import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.tuning import progress
from dqn_tune.tuning.progress import Progress, progress_text, trial_line
from dqn_tune.tuning.study import TuneSettings, run_study
from scripts.fleet import TINY
from tests.budgets import TINY_RUN


def test_without_a_terminal_each_finished_trial_prints_one_line(
    tune_settings: TuneSettings, capfd: pytest.CaptureFixture[str]
) -> None:
    run_study(tune_settings, trials=3, echo=lambda _: None)  # pytest's stdout and stderr are not terminals
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("trial ")]
    assert [line.split(" finished: ")[0] for line in lines] == ["trial 0", "trial 1", "trial 2"]
    assert all("; best is trial " in line or line.endswith("; no complete trial yet") for line in lines)
    study = optuna.load_study(study_name="s", storage=tune_settings.storage_url)
    assert lines[-1].endswith(f"best is trial {study.best_trial.number} with {study.best_value:.2f}")


def test_without_a_terminal_a_long_trial_prints_its_evaluations(
    tune_settings: TuneSettings, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_study(tune_settings, trials=1, echo=lambda _: None)  # a trial of a second: no evaluation line
    assert not [line for line in capfd.readouterr().out.splitlines() if line.startswith("  trial ")]
    monkeypatch.setattr(progress, "EVAL_LINE_INTERVAL", 0.0)  # every trial is long enough now
    run_study(tune_settings, trials=1, echo=lambda _: None)  # one worker: in this process
    lines = capfd.readouterr().out.splitlines()
    trial = optuna.load_study(study_name="s", storage=tune_settings.storage_url).trials[1]
    shown = [
        f"  trial 1 at step {step} of 600: return {value:.2f}" for step, value in trial.intermediate_values.items()
    ]
    assert [line for line in lines if line.startswith("  trial ")] == shown[: len(shown) - 1]  # the last: its end
    assert lines.index(shown[0]) < next(i for i, line in enumerate(lines) if line.startswith("trial 1 finished: "))


def test_a_long_validation_prints_its_groups_evaluations(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVAL_LINE_INTERVAL", 0.0)
    monkeypatch.chdir(tmp_path)
    flags = [*TINY, "--trials", "1", "--validate-top", "1", "--validation-seeds", "2", "--workers", "1"]  # last wins
    assert main(["tune", "--timesteps", "600", *flags]) == 0
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("  validation: ")]
    assert lines[0].startswith("  validation: config of trial 0, held-out seeds #0, #1 at step 200 of 600: returns ")
    assert len(lines[0].rsplit(": returns ", 1)[1].split(", ")) == 2  # one return per held-out seed
    assert lines[-1].startswith("  validation: config of trial 0, held-out seed #")  # then each run's end


def test_a_long_ablation_cell_prints_its_evaluations(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "EVAL_LINE_INTERVAL", 0.0)
    monkeypatch.chdir(tmp_path)
    grid = ["--buffer-sizes", "100", "--target-intervals", "1", "--cell-seeds", "1", "--workers", "1"]
    assert main(["ablate", "--storage", f"sqlite:///{tmp_path / 'a.db'}", *grid, *TINY_RUN]) == 0
    lines = capfd.readouterr().out.splitlines()
    shown = [line for line in lines if line.startswith("  trial 0 at step ")]
    assert [line.split(": return ")[0] for line in shown] == [
        "  trial 0 at step 100 of 300",
        "  trial 0 at step 200 of 300",
    ]
    assert lines.index(shown[1]) < next(i for i, line in enumerate(lines) if line.startswith("  trial 0: "))


def test_two_workers_print_every_trial_too(tune_settings: TuneSettings, capfd: pytest.CaptureFixture[str]) -> None:
    run_study(tune_settings, trials=4, workers=2, echo=lambda _: None)
    out = capfd.readouterr().out
    assert sorted(line.split(" finished")[0] for line in out.splitlines() if line.startswith("trial ")) == [
        "trial 0",
        "trial 1",
        "trial 2",
        "trial 3",
    ]


def test_trial_line_names_the_outcome_and_the_best(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=488.1, intermediate_values={1000: 300.0}))
    pruned = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, intermediate_values={2000: 120.25})
    study.add_trial(pruned)
    trials = study.get_trials()
    assert trial_line(trials[0], trials[0]) == "trial 0 finished: value 488.10 (complete); best is trial 0 with 488.10"
    assert trial_line(trials[1], trials[0]) == (
        "trial 1 finished: pruned at step 2000 (value 120.25 there); best is trial 0 with 488.10"
    )


def test_bar_ticks_and_shows_running_trials_before_any_trial_ends(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    first, second = study.ask(), study.ask()
    first.report(50.0, 12_000)
    second.report(20.0, 3_000)
    out = io.StringIO()
    bar = Progress(study, 6, total_timesteps=20_000, interval=0.05, file=out)
    deadline = time.monotonic() + 10
    while "2 running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    bar.close()
    assert "0/6" in out.getvalue()  # no trial finished, yet the bar was redrawn with the running ones
    assert "2 running: #0 12k/20k, #1 3.0k/20k steps | 0 complete, 0 pruned, 0 failed" in out.getvalue()


def test_progress_text_counts_states_and_best(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    for value in (10.0, 30.0):
        study.add_trial(optuna.trial.create_trial(value=value))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    study.ask()
    assert (
        progress_text(study.get_trials(), 600)
        == "1 running: #3 0/600 steps | 2 complete, 0 pruned, 1 failed | best 30.0 (#1)"
    )


def test_the_value_has_a_name_and_the_note_says_what_it_is(tune_settings: TuneSettings) -> None:
    from optuna_dashboard._note import get_note_from_system_attrs

    run_study(tune_settings, trials=1, echo=lambda _: None)
    study = optuna.load_study(study_name="s", storage=tune_settings.storage_url)
    assert study.metric_names == ["final return of best-checkpoint weights, mean over seeds"]
    note = get_note_from_system_attrs(study._storage.get_study_system_attrs(study._study_id), None)["body"]
    assert "of each run's greedy return on 2 fresh episodes of its kept weights: the best" in note
    assert "step axis): the plain environment step" in note
    assert "- gamma = " not in note and "- hidden_sizes = [16]" in note  # one fixed hyperparameter per line


def test_ticks_read_only_the_running_trials_until_one_of_this_run_finishes(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    for value in range(50):
        study.add_trial(optuna.trial.create_trial(value=float(value)))
    running = study.ask()
    reads: list[object] = []
    get_trials = study.get_trials
    study.get_trials = lambda **kwargs: reads.append(kwargs.get("states")) or get_trials(**kwargs)  # type: ignore[method-assign]
    out = io.StringIO()
    bar = Progress(study, 2, total_timesteps=20_000, interval=0.02, full_every=10_000, file=out)
    deadline = time.monotonic() + 10
    while "#50 0/20k" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    running.report(1.0, 5_000)  # after the first (full) read was drawn: only a running-trials read can show it
    while "#50 5.0k/20k" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "#50 5.0k/20k" in out.getvalue() and "50 complete" in out.getvalue()  # counts kept from the first read
    assert reads[0] is None and set(reads[1:]) == {(optuna.trial.TrialState.RUNNING,)}
    study.tell(running, 99.0)
    bar.update(1)  # this run finished a trial: the next tick reads every trial again
    while "best 99.0" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    bar.close()
    assert "51 complete, 0 pruned, 0 failed | best 99.0 (#50)" in out.getvalue()
