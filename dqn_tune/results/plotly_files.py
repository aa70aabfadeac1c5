"""Plotly figures as HTML pages that share one plotly.min.js beside them (they open offline), written atomically."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from dqn_tune.output_paths import write_text

PLOTLY_JS = "plotly.min.js"
"""The script every page of a folder loads from beside it."""


def write_html(figure: go.Figure, path: Path) -> list[Path]:
    """Write `figure` to `path` as an HTML page, and plotly.min.js beside it if missing; return both paths.

    As plotly's `write_html(include_plotlyjs="directory")`, but neither file is ever left half-written.
    """
    script = path.parent / PLOTLY_JS
    if not script.is_file():
        write_text(script, get_plotlyjs())
    write_text(path, figure.to_html(include_plotlyjs="directory"))
    return [path, script]
