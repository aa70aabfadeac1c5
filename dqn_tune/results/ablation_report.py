"""The report of an ablation study: a CSV of runs, a markdown table per setting, a figure and mean curves.

A setting is one value per grid axis; its runs are its seeds. The figures per run:
- final return: the greedy return of the run's last weights (its learning curve's last evaluation);
- best checkpoint: the weights the run returned, which with keep_best (the default) are its best
  evaluated ones, scored on the final evaluation's fresh episodes (the trial's value), and their step;
- AUC: the area under the learning curve divided by the steps (the mean evaluation return over training);
- steps to threshold: the first evaluated step whose return reaches the env's reward threshold.
The final return is the headline (table order, heatmap, bars): the best checkpoint hides the late
collapses an ablation is often looking for, so it stands beside it, labelled.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import optuna
from matplotlib.figure import Figure
from optuna.trial import TrialState

from dqn_tune.dqn.run_record import RunRecord, curve_auc
from dqn_tune.errors import StorageError
from dqn_tune.output_paths import replacing, safe_name, write_text
from dqn_tune.plots import FIGSIZE, mean_curve, new_figure, save_figure
from dqn_tune.runner.attributes import FAIL_REASON
from dqn_tune.tuning.ablation import AblationSpec, Cell, assignments, value_text
from dqn_tune.tuning.records import SPEC_ATTR, ablation_spec, trial_runs
from dqn_tune.tuning.search_space import Value

REPORT_ROOT = Path("studies") / "ablations"
CSV_NAME = "runs.csv"
TABLE_NAME = "summary.md"
FIGURE_NAMES = {1: "final_return_bars.png", 2: "final_return_heatmap.png"}
"""The figure of a grid by its number of axes; a grid of more axes has its table only."""
CURVES_NAME = "learning_curves.png"
RUN_COLUMNS = (
    "seed",
    "status",
    "final_return",
    "best_checkpoint_return",
    "best_checkpoint_step",
    "auc",
    "steps_to_threshold",
    "wall_time_s",
    "steps_per_second",
)
"""The CSV's columns after `trial` and one per axis."""


@dataclass(frozen=True, slots=True)
class AblationRun:
    """One finished cell: a setting trained on one seed, as stored in its trial."""

    trial: int
    setting: tuple[Value, ...]
    seed: int
    record: RunRecord
    threshold: float | None

    @property
    def final_return(self) -> float:
        """The last weights' greedy return: the learning curve's last evaluation."""
        return self.record.curve_returns[-1]

    @property
    def best_checkpoint_return(self) -> float:
        """The returned (with keep_best: best evaluated) weights' return on the final evaluation: the trial's value."""
        return self.record.mean_return

    @property
    def best_checkpoint_step(self) -> int | None:
        """The step the returned weights come from (None in records stored before it was kept)."""
        return self.record.selected_step

    @property
    def auc(self) -> float:
        """Area under the learning curve divided by its steps: the mean evaluation return over training."""
        return curve_auc(self.record.curve_steps, self.record.curve_returns)

    @property
    def steps_to_threshold(self) -> int | None:
        """First evaluated step whose return reaches the threshold; None if never (or no threshold)."""
        if self.threshold is None:
            return None
        curve = zip(self.record.curve_steps, self.record.curve_returns, strict=True)
        return next((s for s, r in curve if r >= self.threshold), None)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where write_ablation_report put its files."""

    csv: Path
    table: Path
    figure: Path | None
    """The heatmap (two axes) or bar chart (one axis); None for a grid of more axes."""
    curves: Path

    @property
    def paths(self) -> list[Path]:
        """Every file written, the table first."""
        return [self.table, self.csv, *([self.figure] if self.figure else []), self.curves]


def default_report_dir(study_name: str) -> Path:
    """studies/ablations/<study name>/ (the name made one safe folder name, see `safe_name`)."""
    return REPORT_ROOT / safe_name(study_name)


def study_spec(study: optuna.Study) -> AblationSpec:
    """The grid an ablation study was created with (its SPEC_ATTR user attribute)."""
    stored = ablation_spec(study)
    if stored is None:
        raise StorageError(f"study {study.study_name!r} is not an ablation study (no {SPEC_ATTR!r} attribute)")
    return AblationSpec.from_dict(stored)


def ablation_runs(study: optuna.Study, spec: AblationSpec) -> list[AblationRun]:
    """The COMPLETE runs of an ablation study, in grid order (one per cell)."""
    threshold = reward_threshold(spec.base.env_id)
    runs: dict[Cell, AblationRun] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cell = spec.cell_of(trial)
        records = trial_runs(trial)
        if cell is not None and records and cell not in runs:
            runs[cell] = AblationRun(trial.number, cell[:-1], cell[-1], records[0], threshold)
    return [runs[cell] for cell in spec.cells if cell in runs]


def diverged_runs(study: optuna.Study, spec: AblationSpec) -> dict[Cell, int]:
    """Cells whose training diverged (PRUNED with a fail reason) and the number of that trial."""
    return {
        cell: trial.number
        for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
        if FAIL_REASON in trial.user_attrs and (cell := spec.cell_of(trial)) is not None
    }


def reward_threshold(env_id: str) -> float | None:
    """gymnasium's reward threshold of an env id (None when the spec has none)."""
    return gym.spec(env_id).reward_threshold


def write_ablation_report(study: optuna.Study, out_dir: str | Path) -> ReportFiles:
    """Write the CSV, the markdown table, the figure (one or two axes) and the mean curves into `out_dir`."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    spec = study_spec(study)
    runs, diverged = ablation_runs(study, spec), diverged_runs(study, spec)
    figure_name = FIGURE_NAMES.get(len(spec.grid))
    files = ReportFiles(
        directory / CSV_NAME,
        directory / TABLE_NAME,
        None if figure_name is None else directory / figure_name,
        directory / CURVES_NAME,
    )
    write_csv(spec, runs, diverged, files.csv)
    write_text(files.table, summary_table(study.study_name, spec, runs, diverged))
    if files.figure is not None:
        save_figure((heatmap_figure if len(spec.grid) == 2 else bars_figure)(spec, runs), files.figure)
    save_figure(curves_figure(spec, runs), files.curves)
    return files


def write_csv(spec: AblationSpec, runs: Sequence[AblationRun], diverged: Mapping[Cell, int], path: Path) -> None:
    """One row per run, diverged ones last with empty figures; empty steps: not reached, or not stored."""
    with replacing(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("trial", *spec.grid, *RUN_COLUMNS))
        for run in runs:
            writer.writerow(
                [
                    run.trial,
                    *map(value_text, run.setting),
                    run.seed,
                    "complete",
                    run.final_return,
                    run.best_checkpoint_return,
                    _blank(run.best_checkpoint_step),
                    run.auc,
                    _blank(run.steps_to_threshold),
                    run.record.wall_time_s,
                    run.record.steps_per_second,
                ]
            )
        for cell, trial in sorted(diverged.items(), key=lambda item: item[1]):
            writer.writerow([trial, *map(value_text, cell[:-1]), cell[-1], "diverged"] + [""] * (len(RUN_COLUMNS) - 2))


def setting_runs(runs: Sequence[AblationRun], setting: tuple[Value, ...]) -> list[AblationRun]:
    """The runs (seeds) of one setting."""
    return [run for run in runs if run.setting == setting]


def summary_table(
    study_name: str, spec: AblationSpec, runs: Sequence[AblationRun], diverged: Mapping[Cell, int] | None = None
) -> str:
    """Markdown: per setting, mean +- std over seeds of the final and best-checkpoint returns (and its step),
    AUC and steps to threshold. The runs column counts the completed seeds, and those that diverged."""
    threshold = reward_threshold(spec.base.env_id)
    reach = f"steps to return {threshold:g}" if threshold is not None else "steps to threshold"
    base = spec.base
    lines = [
        f"# Ablation `{study_name}`: {' x '.join(spec.grid)}",
        "",
        f"{spec.seeds} seed(s) per setting. Base config: {spec.base_description}.",
        (
            f"Final return: each run's last weights, as its learning curve last evaluated them "
            f"({base.eval_curve_episodes} episode(s)). Best checkpoint: the weights the run returned (with keep_best, "
            f"its best evaluated ones) on {base.eval_episodes} fresh episode(s), and the step they come from. AUC: the "
            "area under the evaluation curve divided by the steps (the mean evaluation return over training); steps to "
            "threshold averages the seeds that reached it."
        ),
        "",
        "| "
        + " | ".join([*spec.grid, "runs", "final return", "best checkpoint", "checkpoint step", "AUC", reach])
        + " |",
        "|" + "---|" * (len(spec.grid) + 6),
    ]
    for setting in spec.settings:
        group = setting_runs(runs, setting)
        lost = sum(cell[:-1] == setting for cell in diverged or {})
        steps = [run.best_checkpoint_step for run in group if run.best_checkpoint_step is not None]
        cells = [
            *map(value_text, setting),
            f"{len(group)}/{spec.seeds}" + (f", {lost} diverged" if lost else ""),
            _mean_std([r.final_return for r in group]),
            _mean_std([r.best_checkpoint_return for r in group]),
            _mean_std(steps, digits=0) if steps or not group else "not stored",
            _mean_std([r.auc for r in group]),
            _reached(group, threshold),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def mean_final_returns(spec: AblationSpec, runs: Sequence[AblationRun]) -> np.ndarray:
    """Mean final return per setting, one array dimension per axis in grid order (NaN: no run)."""
    values = np.full([len(values) for values in spec.grid.values()], np.nan)
    for index in itertools.product(*(range(len(values)) for values in spec.grid.values())):
        setting = tuple(values[i] for values, i in zip(spec.grid.values(), index, strict=True))
        group = setting_runs(runs, setting)
        if group:
            values[index] = float(np.mean([r.final_return for r in group]))
    return values


def heatmap_figure(spec: AblationSpec, runs: Sequence[AblationRun]) -> Figure:
    """Two axes: mean final return per setting (rows: the first axis), annotated; empty ones say so."""
    values = mean_final_returns(spec, runs)
    (row_name, rows), (column_name, columns) = spec.grid.items()
    figure = new_figure()
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label="mean final return (last weights)")
    axes.set_xticks(range(len(columns)), [value_text(v) for v in columns])
    axes.set_yticks(range(len(rows)), [value_text(v) for v in rows])
    axes.set_xlabel(column_name)
    axes.set_ylabel(row_name)
    axes.set_title(f"{spec.base.env_id}: mean final return over {spec.seeds} seed(s)")
    for (i, j), value in np.ndenumerate(values):
        light = not np.isnan(value) and float(np.asarray(image.norm(value))) > 0.6  # viridis is light at the top
        axes.text(
            j,
            i,
            "no run" if np.isnan(value) else f"{value:.1f}",
            ha="center",
            va="center",
            color="black" if light else "white",
            fontsize="small",
        )
    return figure


def bars_figure(spec: AblationSpec, runs: Sequence[AblationRun]) -> Figure:
    """One axis: per value, the final return's mean +- std over seeds, the best checkpoint's beside it (lighter),
    and each seed's final return as a point."""
    [(name, values)] = spec.grid.items()
    figure = new_figure()
    axes = figure.add_subplot()
    width = 0.38
    for offset, label, score, alpha in (
        (-width / 2, "final return (last weights)", "final_return", 0.8),
        (width / 2, "best checkpoint", "best_checkpoint_return", 0.35),
    ):
        groups = [[getattr(run, score) for run in setting_runs(runs, (value,))] for value in values]
        x = np.arange(len(values)) + offset
        axes.bar(
            x,
            [np.mean(g) if g else np.nan for g in groups],
            width,
            yerr=[np.std(g) if g else 0 for g in groups],
            capsize=4,
            color="tab:blue",
            alpha=alpha,
            label=label,
        )
        if score == "final_return":
            for position, group in zip(x, groups, strict=True):
                axes.scatter([position] * len(group), group, color="black", s=12, zorder=3)
    axes.set_xticks(range(len(values)), [value_text(v) for v in values])
    axes.set_xlabel(name)
    axes.set_ylabel("return, mean +- std over seeds")
    axes.set_title(f"{spec.base.env_id}: {spec.seeds} seed(s) per value")
    axes.grid(alpha=0.3, axis="y")
    axes.legend(loc="best", fontsize="small")
    return figure


def curves_figure(spec: AblationSpec, runs: Sequence[AblationRun]) -> Figure:
    """Mean learning curves over seeds: one panel per value of the first axis (one panel for a one-axis grid),
    one line per setting of the other axes."""
    panel_axes = 1 if len(spec.grid) > 1 else 0
    names = list(spec.grid)
    panel_values = list(itertools.product(*list(spec.grid.values())[:panel_axes]))
    figure = new_figure()
    figure.set_size_inches(FIGSIZE[0] / 1.6 * len(panel_values) + 1.5, FIGSIZE[1])
    panels = figure.subplots(1, len(panel_values), sharey=True, squeeze=False)[0]
    threshold = reward_threshold(spec.base.env_id)
    for axes, panel in zip(panels, panel_values, strict=True):
        for setting in spec.settings:
            if setting[:panel_axes] == panel:
                steps, means = mean_curve([r.record for r in setting_runs(runs, setting)])
                if len(steps):
                    axes.plot(
                        steps,
                        means,
                        marker=".",
                        linewidth=1.2,
                        label=assignments(names[panel_axes:], setting[panel_axes:]),
                    )
        if threshold is not None:
            axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        axes.set_title(assignments(names[:panel_axes], panel) or spec.base.env_id)
        axes.set_xlabel("environment step")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="x-small")
    panels[0].set_ylabel("mean evaluation return")
    return figure


def _blank(value: int | None) -> int | str:
    return "" if value is None else value


def _mean_std(values: Sequence[float], *, digits: int = 1) -> str:
    if not values:
        return "no run"
    return f"{np.mean(values):.{digits}f} +- {np.std(values):.{digits}f}"


def _reached(group: Sequence[AblationRun], threshold: float | None) -> str:
    if not group:
        return "no run"
    if threshold is None:
        return "n/a (no threshold)"
    steps = [r.steps_to_threshold for r in group if r.steps_to_threshold is not None]
    if not steps:
        return "not reached"
    return f"{np.mean(steps):.0f} +- {np.std(steps):.0f} ({len(steps)}/{len(group)} runs)"
