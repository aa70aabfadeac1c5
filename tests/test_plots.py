"""Learning-curve figures: per-seed curves, their mean over common steps, PNG output."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.plots import SCORED_LABEL, learning_curve_figure, mean_curve, save_figure


def record(seed: int, steps: tuple[int, ...], returns: tuple[float, ...]) -> RunRecord:
    return RunRecord(
        seed=seed,
        mean_return=returns[-1] if returns else 0.0,
        curve_steps=steps,
        curve_returns=returns,
        steps_per_second=1000.0,
        wall_time_s=1.0,
    )


def test_mean_curve_averages_only_steps_every_seed_reached() -> None:
    steps, means = mean_curve([record(0, (100, 200, 300), (10.0, 20.0, 30.0)), record(1, (100, 200), (30.0, 40.0))])
    assert steps.tolist() == [100, 200]
    np.testing.assert_allclose(means, [20.0, 30.0])


def test_learning_curve_figure_plots_each_seed_and_the_mean(tmp_path: Path) -> None:
    records = [record(0, (100, 200), (10.0, 20.0)), record(1, (100, 200), (30.0, 40.0))]
    figure = learning_curve_figure(records, title="trial 3")
    axes = figure.axes[0]
    curves = [line for line in axes.get_lines() if line.get_marker() != "*"]
    assert [line.get_label() for line in curves] == ["seed 0", "seed 1", "mean"]
    assert curves[2].get_ydata().tolist() == [20.0, 30.0]
    assert axes.get_title() == "trial 3"
    path = save_figure(figure, tmp_path / "curve.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_curve_figure_without_records_still_renders(tmp_path: Path) -> None:
    figure = learning_curve_figure([], title="empty")
    assert figure.axes[0].get_lines() == []
    assert save_figure(figure, tmp_path / "empty.png").stat().st_size > 0


def test_learning_curve_figure_marks_each_seeds_scored_value_at_its_selected_step() -> None:
    """The trial's value averages final evaluations of the kept weights, not the curve's last points: a star
    per seed at (selected_step, mean_return), one legend entry for them all."""
    runs = [
        RunRecord(0, 325.0, (100, 200, 300), (150.0, 300.0, 230.0), 1000.0, 1.0, selected_step=200),
        RunRecord(1, 90.0, (100, 200, 300), (50.0, 60.0, 80.0), 1000.0, 1.0),
    ]  # stored before selected_step
    axes = learning_curve_figure(runs, title="trial 7").axes[0]
    stars = [line for line in axes.get_lines() if line.get_marker() == "*"]
    assert [(line.get_xdata().tolist(), line.get_ydata().tolist()) for line in stars] == [
        ([200], [325.0]),
        ([300], [90.0]),
    ]
    assert [line.get_color() for line in stars] == [
        line.get_color() for line in axes.get_lines() if line.get_label().startswith("seed")
    ]
    assert [text.get_text() for text in axes.get_legend().get_texts()].count(SCORED_LABEL) == 1


def test_run_record_round_trips_selected_step_and_reads_older_records() -> None:
    run = RunRecord(3, 1.0, (10,), (1.0,), 5.0, 0.1, selected_step=10)
    assert RunRecord.from_dict(run.to_dict()) == run
    older = {key: value for key, value in run.to_dict().items() if key != "selected_step"}
    assert RunRecord.from_dict(older).selected_step is None
