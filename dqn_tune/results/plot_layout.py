"""Layout fixes for Optuna's plots as the report saves them: no legend over the bars, whole parameter names.

Optuna's matplotlib importances plot puts a one-entry legend (the objective's name) over the bars;
its parallel-coordinates plots cut parameter names of 20 or more characters and crowd the axes.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from matplotlib.axes import Axes
from matplotlib.figure import Figure

PARALLEL_AXIS_INCHES = 1.6
"""Width per axis of the parallel-coordinates PNG: room for one axis's tick labels before the next axis."""


def fit_importances_png(all_axes: Sequence[Axes]) -> None:
    """Optuna's legend has one entry, the objective's name, placed 'best', which still covers the shortest
    bars: the name goes into the x label and the legend goes."""
    (axes,) = all_axes
    legend = axes.get_legend()
    if legend is None:
        return
    (target,) = (text.get_text() for text in legend.get_texts())
    legend.remove()
    axes.set_xlabel(f"importance for {target}")
    _figure_of(axes).tight_layout()


def _figure_of(axes: Axes) -> Figure:
    """The figure that holds `axes` (Optuna's plots draw on a figure of their own, never on a subfigure)."""
    figure = axes.figure
    if not isinstance(figure, Figure):
        raise TypeError(f"expected axes on a matplotlib Figure, got axes on {figure!r}")
    return figure


def _optuna_shortened(name: str) -> str:
    """A parameter name as Optuna's parallel-coordinates plots label it (cut at 17 characters from 20)."""
    return name if len(name) < 20 else f"{name[:17]}..."


def _whole_names(labels: Sequence[str], names: Sequence[str]) -> list[str]:
    """`labels` with each parameter name that Optuna shortened written out again; the plots list the
    parameters sorted, so names sharing a shortened form are matched in that order."""
    remaining = sorted(names)
    whole = []
    for label in labels:
        match = next((name for name in remaining if _optuna_shortened(name) == label), None)
        if match is not None:
            remaining.remove(match)
        whole.append(label if match is None else match)
    return whole


def fit_parallel_coordinate_png(all_axes: Sequence[Axes], *, names: Sequence[str]) -> None:
    """Whole parameter names hanging right from their axes, a figure wide enough that each axis's tick
    labels end before the next axis, and margins that keep every label inside the figure."""
    (axes,) = all_axes
    labels = _whole_names([label.get_text() for label in axes.get_xticklabels()], names)
    axes.set_xticks(axes.get_xticks(), labels, rotation=-30, ha="left", rotation_mode="anchor")
    figure = _figure_of(axes)
    figure.set_size_inches(max(6.4, PARALLEL_AXIS_INCHES * len(labels) + 1.5), 5.6)
    figure.tight_layout()


def fit_parallel_coordinate_html(figure: go.Figure, *, names: Sequence[str]) -> None:
    """Whole parameter names under the axes and in the hover text."""
    figure.update_xaxes(ticktext=_whole_names(list(figure.layout.xaxis.ticktext or ()), names))
    for trace in figure.data:
        if trace.customdata is not None:
            whole = _whole_names([row[0] for row in trace.customdata], names)
            trace.customdata = [[label, *row[1:]] for label, row in zip(whole, trace.customdata, strict=True)]
