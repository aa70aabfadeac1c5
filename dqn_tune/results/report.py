"""A study report on disk: Optuna's plots (HTML and PNG), top trials' learning curves, a markdown summary.

HTML comes from optuna.visualization (plotly, with one shared plotly.min.js beside the pages, so the
report opens offline). PNG comes from optuna.visualization.matplotlib: plotly's PNG export needs
kaleido, which since 1.0 drives an installed Chrome.
"""

from __future__ import annotations

import shlex
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import optuna
import optuna.visualization as plotly_plots
import optuna.visualization.matplotlib as matplotlib_plots
import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter
from optuna.importance import PedAnovaImportanceEvaluator
from optuna.trial import FrozenTrial, TrialState

from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.errors import OutputPathError, StorageError
from dqn_tune.output_paths import safe_name, write_text
from dqn_tune.plots import (
    learning_curve_figure,
    mean_curves_figure,
    save_figure,
)
from dqn_tune.results.plot_layout import (
    fit_importances_png,
    fit_parallel_coordinate_html,
    fit_parallel_coordinate_png,
)
from dqn_tune.results.plotly_files import PLOTLY_JS, write_html
from dqn_tune.results.validation_report import VALIDATION, number_text, validation_markdown, write_validation_figures
from dqn_tune.tuning import records
from dqn_tune.tuning.recommendation import Recommendation

REPORTS_DIR = Path("studies/reports")
TOP_TRIALS = 10
"""Rows of the summary table."""
CURVE_TRIALS = 5
"""Top trials whose learning curves are drawn."""
SUMMARY = "summary.md"
"""Stem of the validation figure's files (.png, .html), written when the study has a recommendation."""


@dataclass
class Report:
    """What `write_report` wrote and what it left out (with the reason)."""

    out_dir: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class OptunaPlot:
    """One Optuna plot, drawn by both its plotly and its matplotlib function with the same arguments."""

    name: str
    plotly: Callable[..., Any]
    matplotlib: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    fit_png: Callable[[Sequence[Axes]], None] | None = None
    """Lays out the matplotlib figure (given its axes) where Optuna's own layout hides or cuts labels."""
    fit_html: Callable[[go.Figure], None] | None = None
    """The same for the plotly figure."""


def default_out_dir(study_name: str) -> Path:
    """studies/reports/<study_name>/ (the name made one safe folder name, see `safe_name`)."""
    return REPORTS_DIR / safe_name(study_name)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's COMPLETE trials, best first (by the study's direction), ties by trial number."""
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(trials, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]


def varying_params(trials: Sequence[FrozenTrial]) -> list[str]:
    """Parameters every trial has and that take more than one value among them, sorted."""
    common = set.intersection(*(set(t.params) for t in trials)) if trials else set()
    return sorted(name for name in common if len({repr(t.params[name]) for t in trials}) > 1)


def write_report(study: optuna.Study, out_dir: str | Path, *, artifact_dir: str | None = None) -> Report:
    """Write the report of `study` into `out_dir`; summary.md names the trials' artifact directory (`artifact_dir`,
    else the one stored on the study).

    Raises StorageError for a study without complete trials (nothing is written) and
    OutputPathError when `out_dir` cannot be created or written.
    """
    if len(study.directions) != 1:
        raise StorageError(
            f"study {study.study_name!r} has {len(study.directions)} objectives; "
            "dqn-tune report handles single-objective studies"
        )
    trials = complete_trials(study)
    if not trials:
        counts = Counter(t.state.name for t in study.get_trials(deepcopy=False))
        found = ", ".join(f"{n} {state.lower()}" for state, n in sorted(counts.items())) or "no trials"
        raise StorageError(
            f"study {study.study_name!r} has no complete trials ({found}); nothing to report until a trial completes"
        )
    report = Report(_make_out_dir(Path(out_dir)))
    importances = _importances(study, trials, report)
    for plot in optuna_plots(study, trials, report, importances):
        _write_optuna_plot(study, plot, report)
    _write_learning_curves(trials[:CURVE_TRIALS], report)
    stored = records.recommendation(study)
    recommendation = Recommendation.from_dict(stored) if stored is not None else None
    if recommendation is not None:
        for path in write_validation_figures(study.study_name, recommendation, report.out_dir):
            if path not in report.files:
                report.files.append(path)
    summary = report.out_dir / SUMMARY
    report.files.append(summary)
    text = _summary_markdown(study, trials, importances, report, recommendation)
    write_text(summary, text + _artifacts_markdown(artifact_dir or records.stored_artifact_dir(study)))
    return report


@contextmanager
def _optuna_plotting() -> Iterator[None]:
    """Keep Optuna's matplotlib style (it sets 'ggplot' globally) and its experimental-API and few-trials
    warnings inside the block: the report states its own limits."""
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def _make_out_dir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".dqn_tune_write_test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise OutputPathError(
            f"cannot write the report to {str(out_dir)!r}: {exc.strerror}; choose another --out-dir"
        ) from None
    return out_dir


def _importances(study: optuna.Study, trials: Sequence[FrozenTrial], report: Report) -> dict[str, float]:
    """PED-ANOVA importances (the dashboard's evaluator; fANOVA needs scikit-learn) of the varying
    parameters; empty, with a line in `report.skipped`, when they cannot be computed."""
    params = varying_params(trials)
    if len(trials) < 2:
        report.skipped.append(f"parameter importances: need at least 2 complete trials, the study has {len(trials)}")
        return {}
    if not params:
        report.skipped.append("parameter importances: no parameter takes more than one value among the complete trials")
        return {}
    if len({t.value for t in trials}) < 2:
        report.skipped.append("parameter importances: every complete trial has the same value")
        return {}
    with _optuna_plotting():
        importances = optuna.importance.get_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), params=params
        )
    if len(params) > 1 and len(set(importances.values())) == 1:
        report.skipped.append(
            f"parameter importances: PED-ANOVA cannot tell the parameters apart with {len(trials)} complete trials"
        )
        return {}
    return importances


def optuna_plots(
    study: optuna.Study, trials: Sequence[FrozenTrial], report: Report, importances: dict[str, float]
) -> list[OptunaPlot]:
    """The Optuna plots the report draws of `trials` (the study's complete ones): importances of the
    parameters in `importances` when it is not empty; a line in `report.skipped` for each left out."""
    plots = [
        OptunaPlot(
            "optimization_history", plotly_plots.plot_optimization_history, matplotlib_plots.plot_optimization_history
        )
    ]
    if importances:
        plots.append(
            OptunaPlot(
                "param_importances",
                plotly_plots.plot_param_importances,
                matplotlib_plots.plot_param_importances,
                {"evaluator": PedAnovaImportanceEvaluator(), "params": list(importances)},
                fit_png=fit_importances_png,
            )
        )
    if not set.intersection(*(set(t.params) for t in trials)):
        report.skipped.append("parallel coordinates and slice plots: the complete trials share no parameter")
        return plots
    names = sorted({name for trial in trials for name in trial.params})
    plots.append(
        OptunaPlot(
            "parallel_coordinate",
            plotly_plots.plot_parallel_coordinate,
            matplotlib_plots.plot_parallel_coordinate,
            fit_png=partial(fit_parallel_coordinate_png, names=names),
            fit_html=partial(fit_parallel_coordinate_html, names=names),
        )
    )
    plots.append(OptunaPlot("slice", plotly_plots.plot_slice, matplotlib_plots.plot_slice))
    return plots


def optuna_png_figure(study: optuna.Study, plot: OptunaPlot) -> Figure:
    """The matplotlib figure of `plot` as the report saves it (sized, labels whole); the caller closes it
    with `plt.close` (Optuna draws through pyplot)."""
    with _optuna_plotting():
        all_axes = np.asarray(plot.matplotlib(study, **plot.kwargs)).ravel()
        figure: Figure = all_axes[0].figure
        figure.set_size_inches(max(6.4, 3.2 * len(all_axes)), 4.8)
        for axes in all_axes:  # log axes over less than a decade label their minor ticks on top of each other
            axes.xaxis.set_minor_formatter(NullFormatter())
        if plot.fit_png is not None:
            plot.fit_png(list(all_axes))
    return figure


def _write_optuna_plot(study: optuna.Study, plot: OptunaPlot, report: Report) -> None:
    """<name>.html (plotly, sharing plotly.min.js) and <name>.png (matplotlib)."""
    html = report.out_dir / f"{plot.name}.html"
    plotly_figure = plot.plotly(study, **plot.kwargs)
    if plot.fit_html is not None:
        plot.fit_html(plotly_figure)
    report.files.extend(path for path in write_html(plotly_figure, html) if path not in report.files)
    figure = optuna_png_figure(study, plot)
    try:
        with _optuna_plotting():
            report.files.append(save_figure(figure, report.out_dir / f"{plot.name}.png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(figure)


def _write_learning_curves(top: Sequence[FrozenTrial], report: Report) -> None:
    """learning_curve_trial_<n>.png per top trial with stored runs, and learning_curves_top.png comparing them."""
    runs_by_label: dict[str, list[RunRecord]] = {}
    for trial in top:
        runs = records.trial_runs(trial)
        if not runs:
            report.skipped.append(f"learning curve of trial {trial.number}: it stored no runs")
            continue
        runs_by_label[f"trial {trial.number} ({trial.value:.4g})"] = runs
        figure = learning_curve_figure(runs, title=f"trial {trial.number}: value {trial.value:.4g}")
        report.files.append(save_figure(figure, report.out_dir / f"learning_curve_trial_{trial.number}.png"))
    if runs_by_label:
        figure = mean_curves_figure(runs_by_label, title=f"top {len(runs_by_label)} trials: mean over seeds")
        report.files.append(save_figure(figure, report.out_dir / "learning_curves_top.png"))


def _artifacts_markdown(directory: str | None) -> str:
    if directory is None:
        return ""
    return (
        "\n## Trial artifacts\n\nEach trial's learning-curve PNG (a star marks each seed's scored value) is in "
        f"`{directory}`: `dqn-tune dashboard --artifact-dir {shlex.quote(directory)}` shows it on the trial's page.\n"
    )


def _summary_markdown(
    study: optuna.Study,
    trials: Sequence[FrozenTrial],
    importances: dict[str, float],
    report: Report,
    recommendation: Recommendation | None = None,
) -> str:
    counts = Counter(t.state.name.lower() for t in study.get_trials(deepcopy=False))
    best = trials[0]
    lines = [
        f"# Study `{study.study_name}`",
        "",
        f"Direction: {study.direction.name.lower()}. Trials: "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + ".",
        f"Best: trial {best.number}, value {number_text(best.value)}.",
        "",
        f"## Top {min(TOP_TRIALS, len(trials))} trials",
        "",
        "| rank | trial | value | seed returns | steps/s | params |",
        "|---|---|---|---|---|---|",
    ]
    for rank, trial in enumerate(trials[:TOP_TRIALS], start=1):
        seed_returns = trial.user_attrs.get(records.SEED_RETURNS)
        returns = ", ".join(number_text(float(r)) for r in seed_returns) if seed_returns else "-"
        speed = trial.user_attrs.get(records.STEPS_PER_SECOND)
        params = ", ".join(f"{name}={number_text(value)}" for name, value in sorted(trial.params.items()))
        lines.append(
            f"| {rank} | {trial.number} | {number_text(trial.value)} | {returns} | "
            f"{f'{speed:.0f}' if speed is not None else '-'} | {params} |"
        )
    if importances:
        lines += [
            "",
            "## Parameter importances (PED-ANOVA, as in optuna-dashboard)",
            "",
            "| parameter | importance |",
            "|---|---|",
        ]
        lines += [f"| {name} | {value:.3f} |" for name, value in importances.items()]
    if recommendation is not None:
        lines += validation_markdown(recommendation, figure=report.out_dir / f"{VALIDATION}.png" in report.files)
    top_curves = report.out_dir / "learning_curves_top.png"
    if top_curves in report.files:
        lines += ["", "## Learning curves of the top trials", "", f"![learning curves]({top_curves.name})"]
    lines += ["", "## Files", ""]
    lines += [f"- [{path.name}]({path.name})" for path in report.files if path.name not in (PLOTLY_JS, SUMMARY)]
    if report.skipped:
        lines += ["", "## Not drawn", ""] + [f"- {reason}" for reason in report.skipped]
    return "\n".join(lines) + "\n"
