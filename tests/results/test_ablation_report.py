"""The ablation report: figures per run and per cell, and files whose numbers match the stored trials."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import optuna
import pytest

from dqn_tune.cli import main
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.results.ablation_report import (AblationRun, curves_figure, diverged_runs, heatmap_figure,
                                              mean_final_returns, summary_table, write_ablation_report)
from dqn_tune.tuning.ablation import AblationSpec, cell_of, run_ablation
from dqn_tune.dqn.run_record import RunRecord, curve_auc
from dqn_tune.tuning.records import trial_runs

PNG = b"\x89PNG\r\n\x1a\n"


def run(buffer_size: int, interval: int, seed: int, returns: tuple[float, ...]) -> AblationRun:
    steps = tuple(1_000 * (i + 1) for i in range(len(returns)))
    return AblationRun(seed, buffer_size, interval, seed, RunRecord(seed, returns[-1], steps, returns, 900.0, 1.0),
                       threshold=475.0)


def test_curve_auc_is_the_mean_return_over_training() -> None:
    assert curve_auc((100, 200), (10.0, 30.0)) == 20.0
    assert curve_auc((100, 300), (10.0, 40.0)) == pytest.approx((10 * 100 + 40 * 200) / 300)
    assert curve_auc((0,), (7.0,)) == 7.0
    assert math.isnan(curve_auc((), ()))


def test_steps_to_threshold_is_the_first_evaluation_at_or_above_it() -> None:
    assert run(100, 1, 0, (10.0, 475.0, 500.0)).steps_to_threshold == 2_000
    assert run(100, 1, 0, (10.0, 474.9)).steps_to_threshold is None


def test_summary_table_gives_mean_and_std_per_cell(tiny_config: DQNConfig) -> None:
    spec = AblationSpec(tiny_config, (100, 1_000), (1, 10), 2)
    runs = [run(100, 1, 0, (100.0, 480.0)), run(100, 1, 1, (480.0, 500.0)), run(100, 10, 0, (20.0, 30.0)),
            run(1_000, 1, 0, (10.0, 20.0)), run(1_000, 1, 1, (500.0, 40.0))]
    rows = {tuple(line.split(" | ")[:2]): line for line in summary_table("ab", spec, runs).splitlines()
            if line.startswith("| 1")}
    assert rows[("| 100", "1")] == "| 100 | 1 | 2/2 | 490.0 +- 10.0 | 390.0 +- 100.0 | 1500 +- 500 (2/2 runs) |"
    assert rows[("| 100", "10")] == "| 100 | 10 | 1/2 | 30.0 +- 0.0 | 25.0 +- 0.0 | not reached |"
    assert rows[("| 1000", "1")] == "| 1000 | 1 | 2/2 | 30.0 +- 10.0 | 142.5 +- 127.5 | 1000 +- 0 (1/2 runs) |"
    assert rows[("| 1000", "10")] == "| 1000 | 10 | 0/2 | no run | no run | no run |"
    diverged = summary_table("ab", spec, runs, {(1_000, 10, 0): 7, (1_000, 10, 1): 8, (100, 10, 1): 9})
    assert "| 1000 | 10 | 0/2, 2 diverged | no run | no run | no run |" in diverged
    assert "| 100 | 10 | 1/2, 1 diverged | 30.0 +- 0.0 |" in diverged
    grid = mean_final_returns(spec, runs)
    np.testing.assert_array_equal(grid[:, 0], [490.0, 30.0])
    assert grid[0, 1] == 30.0 and np.isnan(grid[1, 1])
    texts = [text.get_text() for text in heatmap_figure(spec, runs).axes[0].texts]
    assert texts == ["490.0", "30.0", "30.0", "no run"]
    panels = curves_figure(spec, runs).axes
    assert [axes.get_title() for axes in panels] == ["buffer 100", "buffer 1000"]
    assert [line.get_label() for line in panels[1].get_lines()] == ["target 1", "threshold 475"]


def test_the_report_of_a_real_ablation_matches_its_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/ablation.db"
    code = main(["ablate", "--storage", url, "--buffer-sizes", "100,200", "--target-intervals", "1", "--cell-seeds", "2",
                 "--timesteps", "300", "--learning-starts", "100", "--batch-size", "32", "--hidden-sizes", "16",
                 "--eval-freq", "100", "--eval-curve-episodes", "1", "--eval-episodes", "2"])
    assert code == 0
    [name] = optuna.get_all_study_names(url)
    study = optuna.load_study(study_name=name, storage=url)
    out_dir = tmp_path / "studies" / "ablations" / name
    assert f"report: studies/ablations/{name}/summary.md" in capsys.readouterr().out

    with (out_dir / "runs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(study.trials) == 4
    for row in rows:
        trial = study.trials[int(row["trial"])]
        record = trial_runs(trial)[0]
        assert cell_of(trial) == (int(row["buffer_size"]), int(row["target_update_interval"]), int(row["seed"]))
        assert float(row["final_return"]) == trial.value == record.mean_return
        assert float(row["auc"]) == curve_auc(record.curve_steps, record.curve_returns)
        assert row["steps_to_threshold"] == "" and row["status"] == "complete"

    table = (out_dir / "summary.md").read_text()
    for buffer_size in (100, 200):
        values = [t.value for t in study.trials if t.params["buffer_size"] == buffer_size]
        assert f"| {buffer_size} | 1 | 2/2 | {np.mean(values):.1f} +- {np.std(values):.1f} |" in table
    assert "steps to return 475" in table and "not reached" in table
    for png in ("final_return_heatmap.png", "learning_curves.png"):
        assert (out_dir / png).read_bytes()[:8] == PNG


def test_diverged_runs_are_reported_not_run_again(tmp_path: Path, tiny_config: DQNConfig) -> None:
    url = f"sqlite:///{tmp_path}/diverge.db"
    exploding = tiny_config.replace(total_timesteps=300, learning_rate=1e30, max_grad_norm=None, loss="mse")
    spec = AblationSpec(exploding, (100,), (1, 50), 1)
    assert run_ablation(spec=spec, storage=url).left == ()
    assert run_ablation(spec=spec, storage=url).ran == ()
    study = optuna.load_study(study_name=spec.default_study_name, storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.PRUNED] * 2
    assert diverged_runs(study) == {cell_of(t): t.number for t in study.trials}

    files = write_ablation_report(study, tmp_path / "report")

    with files.csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["status"], row["final_return"]) for row in rows] == [("diverged", "")] * 2
    assert "| 100 | 1 | 0/1, 1 diverged | no run |" in files.table.read_text()
