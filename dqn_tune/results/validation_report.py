"""The validation part of a study report: the figure of each validated config's held-out seeds, and its table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from dqn_tune.plots import ValidatedConfig, save_figure, validation_figure
from dqn_tune.results.plotly_files import write_html
from dqn_tune.tuning.recommendation import RULE, Recommendation

VALIDATION = "validation"
"""File stem of the validation figure (.png and .html)."""


def number_text(value: Any) -> str:
    """A figure as the reports' markdown tables show it: 4 significant digits, nan and inf spelled out."""
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def write_validation_figures(study_name: str, recommendation: Recommendation, out_dir: Path) -> list[Path]:
    """validation.png (matplotlib) and validation.html (plotly): per validated config, its held-out seeds'
    returns as points, its mean as a bar and the 95% CI as an error bar; the recommended config first. Returns
    the files written (plotly.min.js beside the HTML)."""
    configs = [
        ValidatedConfig(
            f"trial {row.trial}" + (" (recommended)" if index == 0 else ""),
            row.returns,
            row.mean,
            row.interval.low,
            row.interval.high,
        )
        for index, row in enumerate(recommendation.table)
    ]
    title = f"{study_name}: validation on held-out seeds"
    files = [save_figure(validation_figure(configs, title=title), out_dir / f"{VALIDATION}.png")]
    figure = go.Figure()
    figure.add_bar(
        x=[c.label for c in configs],
        y=[c.mean for c in configs],
        name="mean and 95% CI",
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [c.high - c.mean if math.isfinite(c.high) else 0.0 for c in configs],
            "arrayminus": [c.mean - c.low if math.isfinite(c.low) else 0.0 for c in configs],
        },
        opacity=0.5,
    )
    for config, row in zip(configs, recommendation.table, strict=True):
        figure.add_scatter(
            x=[config.label] * len(row.returns),
            y=list(row.returns),
            mode="markers",
            showlegend=False,
            marker={"color": "black"},
            text=[f"seed {seed}" for seed in row.seeds],
            name=config.label,
        )
    figure.update_layout(title=title, yaxis_title="final greedy return per held-out seed")
    return [*files, *write_html(figure, out_dir / f"{VALIDATION}.html")]


def validation_markdown(recommendation: Recommendation, *, figure: bool) -> list[str]:
    """The validation section of a summary: table, recommendation, paired comparison, and the figure if drawn."""
    lines = [
        "",
        "## Validation on held-out seeds",
        "",
        (
            f"Each config trained on the same held-out seeds (never used by tuning or retrain). **Recommended: "
            f"trial {recommendation.trial}**, by the {RULE}."
        ),
        "",
        "| trial | tuned value | mean [95% CI] | IQM | min | std | seeds | diverged |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in recommendation.table:
        interval = row.interval
        lines.append(
            f"| {row.trial} | {number_text(row.tuned_value)} | {number_text(row.mean)} [{number_text(interval.low)}, "
            f"{number_text(interval.high)}] | {number_text(row.iqm)} | {number_text(row.min)} | "
            f"{number_text(row.std)} | {len(row.returns)} | {row.diverged} |"
        )
    comparison = recommendation.to_dict()["comparison"]
    if comparison:
        lines += ["", f"Paired: {comparison}."]
    if figure:
        lines += ["", f"![validation]({VALIDATION}.png)"]
    return lines
