"""The ablation report: figures per run and per setting, and files whose numbers match the stored trials."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.run_record import RunRecord, curve_auc
from dqn_tune.results.ablation_report import (
    AblationRun,
    bars_figure,
    curves_figure,
    diverged_runs,
    heatmap_figure,
    mean_final_returns,
    summary_table,
    write_ablation_report,
)
from dqn_tune.runner.storage import open_storage
from dqn_tune.tuning.ablation import AblationSpec, run_ablation
from dqn_tune.tuning.records import RECOMMENDATION, store_config, trial_runs

PNG = b"\x89PNG\r\n\x1a\n"


def run(setting: tuple, seed: int, returns: tuple[float, ...], best: tuple[float, int] | None = None) -> AblationRun:
    """A run whose learning curve is `returns` (every 1000 steps); `best`: the (return, step) keep_best returned,
    by default the last weights scored at their curve value."""
    steps = tuple(1_000 * (i + 1) for i in range(len(returns)))
    kept, step = best or (returns[-1], steps[-1])
    return AblationRun(seed, setting, seed, RunRecord(seed, kept, steps, returns, 900.0, 1.0, step), threshold=475.0)


def test_curve_auc_is_the_mean_return_over_training() -> None:
    assert curve_auc((100, 200), (10.0, 30.0)) == 20.0
    assert curve_auc((100, 300), (10.0, 40.0)) == pytest.approx((10 * 100 + 40 * 200) / 300)
    assert curve_auc((0,), (7.0,)) == 7.0
    assert math.isnan(curve_auc((), ()))


def test_steps_to_threshold_is_the_first_evaluation_at_or_above_it() -> None:
    assert run((100, 1), 0, (10.0, 475.0, 500.0)).steps_to_threshold == 2_000
    assert run((100, 1), 0, (10.0, 474.9)).steps_to_threshold is None


def test_summary_table_gives_mean_and_std_per_setting(tiny_config: DQNConfig) -> None:
    spec = AblationSpec(tiny_config, {"buffer_size": (100, 1_000), "target_update_interval": (1, 10)}, 2)
    runs = [
        run((100, 1), 0, (100.0, 480.0)),
        run((100, 1), 1, (480.0, 500.0)),
        run((100, 10), 0, (20.0, 30.0)),
        run((1_000, 1), 0, (10.0, 20.0)),
        run((1_000, 1), 1, (500.0, 40.0), best=(490.0, 1_000)),
    ]
    rows = {
        tuple(line.split(" | ")[:2]): line
        for line in summary_table("ab", spec, runs).splitlines()
        if line.startswith("| 1")
    }
    assert rows[("| 100", "1")] == (
        "| 100 | 1 | 2/2 | 490.0 +- 10.0 | 490.0 +- 10.0 | 2000 +- 0 | 390.0 +- 100.0 | 1500 +- 500 (2/2 runs) |"
    )
    assert (
        rows[("| 100", "10")]
        == "| 100 | 10 | 1/2 | 30.0 +- 0.0 | 30.0 +- 0.0 | 2000 +- 0 | 25.0 +- 0.0 | not reached |"
    )
    assert rows[("| 1000", "1")] == (
        "| 1000 | 1 | 2/2 | 30.0 +- 10.0 | 255.0 +- 235.0 | 1500 +- 500 | 142.5 +- 127.5 | 1000 +- 0 (1/2 runs) |"
    )
    assert rows[("| 1000", "10")] == "| 1000 | 10 | 0/2 | no run | no run | no run | no run | no run |"
    diverged = summary_table("ab", spec, runs, {(1_000, 10, 0): 7, (1_000, 10, 1): 8, (100, 10, 1): 9})
    assert "| 1000 | 10 | 0/2, 2 diverged | no run |" in diverged
    assert "| 100 | 10 | 1/2, 1 diverged | 30.0 +- 0.0 |" in diverged
    grid = mean_final_returns(spec, runs)
    np.testing.assert_array_equal(grid[:, 0], [490.0, 30.0])
    assert grid[0, 1] == 30.0 and np.isnan(grid[1, 1])
    figure = heatmap_figure(spec, runs)
    assert [text.get_text() for text in figure.axes[0].texts] == ["490.0", "30.0", "30.0", "no run"]
    assert (figure.axes[0].get_ylabel(), figure.axes[0].get_xlabel()) == ("buffer_size", "target_update_interval")
    panels = curves_figure(spec, runs).axes
    assert [axes.get_title() for axes in panels] == ["buffer_size=100", "buffer_size=1000"]
    assert [line.get_label() for line in panels[1].get_lines()] == ["target_update_interval=1", "threshold 475"]


def test_the_table_labels_final_and_best_checkpoint_returns(tiny_config: DQNConfig) -> None:
    """A run that collapsed after its best evaluation: the headline is the last weights', the checkpoint beside it."""
    spec = AblationSpec(tiny_config, {"double_dqn": (False, True)}, 1)
    runs = [run((False,), 0, (500.0, 480.0, 12.0), best=(497.5, 1_000)), run((True,), 0, (200.0, 500.0))]
    table = summary_table("ab", spec, runs)
    assert "| double_dqn | runs | final return | best checkpoint | checkpoint step | AUC |" in table
    assert "| false | 1/1 | 12.0 +- 0.0 | 497.5 +- 0.0 | 1000 +- 0 |" in table
    assert "| true | 1/1 | 500.0 +- 0.0 | 500.0 +- 0.0 | 2000 +- 0 |" in table
    assert "Final return: each run's last weights, as its learning curve last evaluated them (2 episode(s))" in table
    assert "Best checkpoint: the weights the run returned (with keep_best, its best evaluated ones) on 2 fresh" in table
    np.testing.assert_array_equal(mean_final_returns(spec, runs), [12.0, 500.0])
    bars = bars_figure(spec, runs).axes[0]
    assert [bar.get_height() for bar in bars.patches] == [12.0, 500.0, 497.5, 500.0]
    assert [text.get_text() for text in bars.get_legend().get_texts()] == [
        "final return (last weights)",
        "best checkpoint",
    ]
    assert [label.get_text() for label in bars.get_xticklabels()] == ["false", "true"]
    [panel] = curves_figure(spec, runs).axes
    assert [line.get_label() for line in panel.get_lines()] == ["double_dqn=false", "double_dqn=true", "threshold 475"]


def test_the_report_of_a_real_ablation_matches_its_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tiny_config: DQNConfig
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/ablation.db"
    tuned = optuna.create_study(study_name="tuned", storage=open_storage(url, heartbeat=False), direction="maximize")
    for value in (2.0, 1.0):
        trial = tuned.ask()
        store_config(trial, tiny_config.replace(learning_rate=1e-3 * value))
        tuned.tell(trial, value)
    tuned.set_user_attr(RECOMMENDATION, {"trial": 1})
    code = main(
        [
            "ablate",
            "--storage",
            url,
            "--base-study",
            "tuned",
            "--grid",
            "loss=mse,huber",
            "--grid",
            "double_dqn=false",
            "--grid",
            "hidden_sizes=16",
            "--cell-seeds",
            "2",
            "--workers",
            "1",
            "--timesteps",
            "300",
            "--eval-freq",
            "100",
            "--eval-curve-episodes",
            "1",
            "--eval-episodes",
            "2",
        ]
    )
    assert code == 0
    name = next(name for name in optuna.get_all_study_names(url) if name != "tuned")
    study = optuna.load_study(study_name=name, storage=url)
    out_dir = tmp_path / "studies" / "ablations" / name
    out = capsys.readouterr().out
    assert (
        "base config: trial 1 of study 'tuned', recommended by validation on held-out seeds: CartPole-v1, 300 "
        "steps; batch_size=32, buffer_size=1000"
    ) in out
    assert f"report: studies/ablations/{name}/summary.md, studies/ablations/{name}/runs.csv, " in out
    table = (out_dir / "summary.md").read_text()
    assert table in out and "Base config: trial 1 of study 'tuned', recommended by validation on held-out" in table

    with (out_dir / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(study.trials) == 4
    assert list(rows[0])[:5] == ["trial", "loss", "double_dqn", "hidden_sizes", "seed"]
    for row in rows:
        trial = study.trials[int(row["trial"])]
        record = trial_runs(trial)[0]
        assert trial.params == {
            "loss": row["loss"],
            "double_dqn": False,
            "hidden_sizes": "16",
            "seed": int(row["seed"]),
        }
        assert float(row["final_return"]) == record.curve_returns[-1]
        assert float(row["best_checkpoint_return"]) == trial.value == record.mean_return
        assert int(row["best_checkpoint_step"]) == record.selected_step
        assert float(row["auc"]) == curve_auc(record.curve_steps, record.curve_returns)
        assert row["steps_to_threshold"] == "" and row["status"] == "complete"
    for loss in ("huber", "mse"):
        finals = [float(row["final_return"]) for row in rows if row["loss"] == loss]
        assert f"| {loss} | false | 16 | 2/2 | {np.mean(finals):.1f} +- {np.std(finals):.1f} |" in table
    assert "steps to return 475" in table and "not reached" in table
    assert sorted(path.name for path in out_dir.iterdir()) == ["learning_curves.png", "runs.csv", "summary.md"]
    assert (out_dir / "learning_curves.png").read_bytes()[:8] == PNG


def test_diverged_runs_are_reported_not_run_again(tmp_path: Path, tiny_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/diverge.db"
    exploding = tiny_config.replace(total_timesteps=300, learning_rate=1e30, max_grad_norm=None, loss="mse")
    spec = AblationSpec(exploding, {"target_update_interval": (1, 50)}, 1)
    assert run_ablation(spec=spec, storage=url).left == ()
    assert run_ablation(spec=spec, storage=url).ran == ()
    study = optuna.load_study(study_name=spec.default_study_name, storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert diverged_runs(study, spec) == {spec.cell_of(t): t.number for t in study.trials}

    files = write_ablation_report(study, tmp_path / "report")

    with files.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["status"], row["final_return"]) for row in rows] == [("diverged", "")] * 2
    assert "| 1 | 0/1, 1 diverged | no run |" in files.table.read_text()
    assert files.figure is not None and files.figure.name == "final_return_bars.png"
    assert files.figure.read_bytes()[:8] == PNG
