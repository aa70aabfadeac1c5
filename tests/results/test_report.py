"""`dqn-tune report` on real SQLite studies: the exact files it writes, what it skips, one-line errors."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import matplotlib.pyplot as plt
import optuna
import pytest
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.text import Text
from optuna.trial import TrialState

from dqn_tune.cli import main
from dqn_tune.results.report import (
    Report,
    complete_trials,
    optuna_plots,
    optuna_png_figure,
)
from dqn_tune.runner.storage import open_storage

PNG = b"\x89PNG\r\n\x1a\n"


def make_study(tmp_path: Path, name: str, outcomes: list[float | TrialState]) -> str:
    """A study with one trial per outcome (a value: COMPLETE), each suggesting learning_rate; returns its URL."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=False), direction="maximize")
    for outcome in outcomes:
        trial = study.ask()
        trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        if isinstance(outcome, TrialState):
            study.tell(trial, state=outcome)
        else:
            study.tell(trial, outcome)
    return url


def test_report_writes_exactly_the_files_it_names(
    curve_study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", "--study-name", "curves", "--storage", curve_study_url, "--out-dir", str(out)]) == 0
    plots = ("optimization_history", "param_importances", "parallel_coordinate", "slice")
    expected = (
        {f"{p}.html" for p in plots}
        | {f"{p}.png" for p in plots}
        | {f"learning_curve_trial_{n}.png" for n in (0, 1, 2)}
        | {"learning_curves_top.png", "plotly.min.js", "summary.md"}
    )
    assert {p.name for p in out.iterdir()} == expected
    stdout = capsys.readouterr().out.splitlines()
    assert stdout[0] == f"report of study 'curves' ({len(expected)} files, top 10 trials in {out / 'summary.md'}):"
    assert sorted(stdout[1:]) == sorted(f"  {out / name}" for name in expected)
    for name in expected - {"plotly.min.js", "summary.md"}:
        content = (out / name).read_bytes()
        assert content.startswith(PNG) if name.endswith(".png") else b'src="plotly.min.js"' in content, name

    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[1:3] for row in rows[:3]] == [["1", "30"], ["2", "21"], ["0", "12"]]
    assert "Trials: 3 complete, 1 pruned." in summary and "| batch_size | " in summary
    assert "Not drawn" not in summary


def test_one_complete_trial_skips_importances_and_missing_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_study(tmp_path, "single", [5.0, TrialState.FAIL])
    monkeypatch.chdir(tmp_path)
    assert main(["report", "--study-name", "single", "--storage", url]) == 0
    out = tmp_path / "studies" / "reports" / "single"
    assert {p.name for p in out.iterdir()} == {
        "optimization_history.html",
        "optimization_history.png",
        "parallel_coordinate.html",
        "parallel_coordinate.png",
        "slice.html",
        "slice.png",
        "plotly.min.js",
        "summary.md",
    }
    reasons = [
        "parameter importances: need at least 2 complete trials, the study has 1",
        "learning curve of trial 0: it stored no runs",
    ]
    stdout = capsys.readouterr().out
    assert all(f"  not drawn: {reason}\n" in stdout for reason in reasons)
    summary = (out / "summary.md").read_text()
    assert summary.endswith("## Not drawn\n\n" + "".join(f"- {reason}\n" for reason in reasons))
    assert "| 1 | 0 | 5 | - | - | learning_rate=" in summary


def test_study_without_complete_trials_is_a_one_line_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_study(tmp_path, "unlucky", [TrialState.PRUNED, TrialState.FAIL, TrialState.PRUNED])
    out = tmp_path / "report"
    assert main(["report", "--study-name", "unlucky", "--storage", url, "--out-dir", str(out)]) == 2
    assert capsys.readouterr().err == (
        "dqn-tune: error: study 'unlucky' has no complete trials (1 fail, 2 pruned); "
        "nothing to report until a trial completes\n"
    )
    assert not out.exists()


def test_unknown_study_and_unwritable_out_dir_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = make_study(tmp_path, "exists", [1.0])
    assert main(["report", "--study-name", "typo", "--storage", url, "--out-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == f"dqn-tune: error: study 'typo' not found in '{url}'; studies there: exists\n"

    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", "--study-name", "exists", "--storage", url, "--out-dir", str(blocker / "r")]) == 2
    assert capsys.readouterr().err == (
        f"dqn-tune: error: cannot write the report to '{blocker / 'r'}': Not a directory; choose another --out-dir\n"
    )
    assert not (tmp_path / "r").exists() and blocker.read_text() == ""


def test_a_validated_study_gets_the_validation_figure_and_table(
    validated_study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dqn_tune.tuning import records
    from dqn_tune.tuning.recommendation import Recommendation

    study = optuna.load_study(study_name="validated", storage=validated_study_url)
    recommendation = Recommendation.from_dict(records.recommendation(study))  # type: ignore[arg-type]
    out = tmp_path / "report"
    assert main(["report", "--study-name", "validated", "--storage", validated_study_url, "--out-dir", str(out)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert f"  {out / 'validation.png'}" in listed and f"  {out / 'validation.html'}" in listed
    assert (out / "validation.png").read_bytes().startswith(PNG)
    html = (out / "validation.html").read_text()
    assert 'src="plotly.min.js"' in html and (out / "plotly.min.js").exists()
    assert f"trial {recommendation.trial} (recommended)" in html

    summary = (out / "summary.md").read_text()
    assert "## Validation on held-out seeds" in summary and "![validation](validation.png)" in summary
    assert f"**Recommended: trial {recommendation.trial}**, by the highest lower bound" in summary
    section = summary.split("## Validation on held-out seeds")[1]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(row[0].removeprefix("| ")) for row in rows] == [row.trial for row in recommendation.table]
    for cells, row in zip(rows, recommendation.table, strict=True):
        assert cells[2] == f"{row.mean:.4g} [{row.interval.low:.4g}, {row.interval.high:.4g}]"
        assert cells[6] == str(len(row.returns))


METRIC = "mean final return, mean over seeds"
PARAMS = ("batch_size", "buffer_size", "gamma", "learning_rate", "target_update_interval")
"""The parameters of `drawn`'s study, sorted, as dqn-tune names them; Optuna's plots cut names of 20+ characters."""


@pytest.fixture
def drawn(tmp_path: Path) -> Iterator[Callable[[str], Figure]]:
    """Draws the report's PNG figure of one Optuna plot, by name, of a study of 8 complete trials over
    PARAMS whose metric is named as dqn-tune names it; closes the figures afterwards."""
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC])
    study.optimize(
        lambda trial: (
            trial.suggest_categorical("batch_size", [32, 64, 128, 256]) / 100
            + trial.suggest_int("buffer_size", 5_000, 50_000) / 1e4
            + 100 * trial.suggest_float("gamma", 0.95, 0.995)
            + 1e4 * trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
            + trial.suggest_int("target_update_interval", 10, 1000, log=True) / 100
        ),
        n_trials=8,
    )
    importances = {
        "learning_rate": 0.6,
        "gamma": 0.3,
        "target_update_interval": 0.05,
        "buffer_size": 0.03,
        "batch_size": 0.02,
    }
    plots = {plot.name: plot for plot in optuna_plots(study, complete_trials(study), Report(tmp_path), importances)}
    figures: list[Figure] = []

    def draw(name: str) -> Figure:
        figures.append(optuna_png_figure(study, plots[name]))
        figures[-1].canvas.draw()
        return figures[-1]

    yield draw
    for figure in figures:
        plt.close(figure)


def test_importances_png_keeps_the_legend_off_the_bars(drawn: Callable[[str], Figure]) -> None:
    figure = drawn("param_importances")
    (axes,) = figure.axes
    assert len(axes.patches) == len(PARAMS)
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    legend = axes.get_legend()
    shown = [axes.get_xlabel()]
    if legend is not None:  # outside the axes (so off the bars) and clear of the bars' value labels
        box = legend.get_window_extent(renderer)
        assert not box.overlaps(axes.bbox)
        assert not any(box.overlaps(text.get_window_extent(renderer)) for text in axes.texts)
        shown += [text.get_text() for text in legend.get_texts()]
    assert any(METRIC in text for text in shown)


def drawn_tick_labels(axis: Axis) -> list[Text]:
    """The tick labels `axis` draws: it is visible and so are they, with text, at ticks inside its view."""
    low, high = sorted(axis.get_view_interval())
    slack = 1e-9 * (high - low)
    along = 0 if axis.axis_name == "x" else 1
    return [
        label
        for label in axis.get_ticklabels()
        if axis.get_visible()
        and label.get_visible()
        and label.get_text()
        and low - slack <= label.get_position()[along] <= high + slack
    ]


def test_parallel_coordinate_png_shows_every_label_whole(drawn: Callable[[str], Figure]) -> None:
    figure = drawn("parallel_coordinate")
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    objective_axes = figure.axes[0]
    assert [label.get_text() for label in drawn_tick_labels(objective_axes.xaxis)] == ["Objective Value", *PARAMS]
    labels = [label for axes in figure.axes for axis in (axes.xaxis, axes.yaxis) for label in drawn_tick_labels(axis)]
    assert len(labels) > 3 * len(PARAMS)
    for label in labels:
        box = label.get_window_extent(renderer)
        assert figure.bbox.x0 <= box.x0 and box.x1 <= figure.bbox.x1, label
        assert figure.bbox.y0 <= box.y0 and box.y1 <= figure.bbox.y1, label

    # the objective's axis stands at 0 of the first axes' width, the parameters' at 1/n, ..., n/n (the right
    # axes of twins sharing its place): no axis's value labels run across the next axis
    parameter_axes = [axes for axes in figure.axes[1:] if axes.bbox.bounds == objective_axes.bbox.bounds]
    assert len(parameter_axes) == len(PARAMS)
    axis_x = [objective_axes.transAxes.transform((k / len(PARAMS), 0))[0] for k in range(len(PARAMS) + 1)]
    for axes in (objective_axes, *parameter_axes):
        for label in drawn_tick_labels(axes.yaxis):
            box = label.get_window_extent(renderer)
            assert not any(box.x0 < x < box.x1 for x in axis_x), label


def test_parallel_coordinate_html_names_parameters_whole(tmp_path: Path) -> None:
    study = optuna.create_study()
    study.optimize(
        lambda trial: trial.suggest_int("target_update_interval", 10, 1000) + trial.suggest_float("gamma", 0.9, 0.99),
        n_trials=3,
    )
    (plot,) = [
        plot
        for plot in optuna_plots(study, complete_trials(study), Report(tmp_path), {})
        if plot.name == "parallel_coordinate"
    ]
    figure = plot.plotly(study)
    assert plot.fit_html is not None
    plot.fit_html(figure)
    assert list(figure.layout.xaxis.ticktext) == ["Objective Value", "gamma", "target_update_interval"]
    assert {row[0] for trace in figure.data if trace.customdata is not None for row in trace.customdata} == {
        "Objective Value",
        "gamma",
        "target_update_interval",
    }
