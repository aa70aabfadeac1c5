"""Matplotlib figures shared by tuning (trial artifacts) and results (reports).

Figures are built with `matplotlib.figure.Figure` directly, never pyplot: no display is needed, no
global figure registry grows in a long study, and rendering goes through the Agg canvas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.output_paths import replacing

FIGSIZE = (6.4, 4.0)
DPI = 100


def new_figure() -> Figure:
    """A blank Agg-backed figure of the project's standard size."""
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: str | Path, **savefig_options: Any) -> Path:
    """Write `figure` to `path` atomically (format from the suffix, e.g. .png; `savefig_options` go to
    `Figure.savefig`) and return the path."""
    with replacing(path) as temporary:
        figure.savefig(temporary, **savefig_options)
    return Path(path)


def _label_axes(axes: Axes, title: str) -> None:
    axes.set_title(title)
    axes.set_xlabel("environment step")
    axes.set_ylabel("mean greedy evaluation return")
    axes.grid(alpha=0.3)


def mean_curve(records: Sequence[RunRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Steps evaluated by every run and the mean return over runs at each of them."""
    if not records:
        return np.empty(0, dtype=np.int64), np.empty(0)
    common = sorted(set.intersection(*(set(r.curve_steps) for r in records)))
    by_step = [dict(zip(r.curve_steps, r.curve_returns, strict=True)) for r in records]
    means = [float(np.mean([run[step] for run in by_step])) for step in common]
    return np.asarray(common, dtype=np.int64), np.asarray(means)


SCORED_LABEL = "scored: final evaluation of the kept weights"
"""Legend entry of the per-seed markers at each run's scored value."""


def _scored_step(record: RunRecord) -> int | None:
    """Step of the weights a run's mean_return scores (its last evaluation for records older than selected_step)."""
    if record.selected_step is not None:
        return record.selected_step
    return record.curve_steps[-1] if record.curve_steps else None


def learning_curve_figure(records: Sequence[RunRecord], *, title: str) -> Figure:
    """Each seed's evaluation curve (thin), their mean over the steps all seeds reached (thick), and each
    seed's scored value (its final evaluation, which the trial's value averages) as a star at the step its
    weights come from."""
    figure = new_figure()
    axes = figure.add_subplot()
    scored_labelled = False
    for record in records:
        (line,) = axes.plot(
            record.curve_steps, record.curve_returns, marker=".", linewidth=1, alpha=0.6, label=f"seed {record.seed}"
        )
        step = _scored_step(record)
        if step is not None:
            axes.plot(
                [step],
                [record.mean_return],
                linestyle="none",
                marker="*",
                markersize=12,
                color=line.get_color(),
                markeredgecolor="black",
                zorder=3,
                label=None if scored_labelled else SCORED_LABEL,
            )
            scored_labelled = True
    steps, means = mean_curve(records)
    if len(records) > 1 and len(steps):
        axes.plot(steps, means, color="black", linewidth=2.5, label="mean")
    if not any(record.curve_steps for record in records):
        axes.text(0.5, 0.5, "no evaluations recorded", transform=axes.transAxes, ha="center", va="center")
    _label_axes(axes, title)
    if records:
        axes.legend(loc="best", fontsize="small")
    return figure


def mean_curves_figure(runs_by_label: Mapping[str, Sequence[RunRecord]], *, title: str) -> Figure:
    """One mean evaluation curve (over seeds) per label, e.g. the top trials of a study, on shared axes."""
    figure = new_figure()
    axes = figure.add_subplot()
    for label, records in runs_by_label.items():
        steps, means = mean_curve(records)
        axes.plot(steps, means, marker=".", label=label)
    _label_axes(axes, title)
    if runs_by_label:
        axes.legend(loc="best", fontsize="small")
    return figure


class ValidatedConfig(NamedTuple):
    """One validated config as the validation figure draws it."""

    label: str
    returns: Sequence[float]
    """Final greedy return of each held-out seed."""
    mean: float
    low: float
    """Lower bound of the 95% CI of the mean (NaN when there is none)."""
    high: float


def validation_figure(configs: Sequence[ValidatedConfig], *, title: str) -> Figure:
    """Per config (the first is the recommended one): its mean as a bar with the 95% CI as error bar, and each
    held-out seed's return as a point over it."""
    figure = new_figure()
    axes = figure.add_subplot()
    x = np.arange(len(configs))
    means = np.asarray([config.mean for config in configs], dtype=float)
    below = [config.mean - config.low if np.isfinite(config.low) else 0.0 for config in configs]
    above = [config.high - config.mean if np.isfinite(config.high) else 0.0 for config in configs]
    colors = ["tab:green" if index == 0 else "tab:gray" for index in range(len(configs))]
    axes.bar(x, means, color=colors, alpha=0.45, yerr=[below, above], capsize=8, label="mean and 95% CI")
    for index, config in enumerate(configs):
        spread = np.linspace(-0.15, 0.15, len(config.returns)) if len(config.returns) > 1 else np.zeros(1)
        axes.scatter(
            index + spread[: len(config.returns)],
            config.returns,
            color="black",
            s=16,
            zorder=3,
            label="held-out seed" if index == 0 else None,
        )
    axes.set_xticks(x, [config.label for config in configs])
    axes.set_title(title)
    axes.set_ylabel("final greedy return per held-out seed")
    axes.grid(alpha=0.3, axis="y")
    if configs:
        axes.legend(loc="best", fontsize="small")
    return figure
