"""The report of an ablation study: a CSV of runs, a markdown table per cell, a heatmap and mean curves.

A cell is one (buffer size, target-update interval) pair; its runs are its seeds. The figures per
run: the final return (the trial's value), the area under the learning curve (normalised by the
steps, so it reads as the mean evaluation return over training) and the first evaluated step whose
return reaches the env's reward threshold (gymnasium's spec.reward_threshold).
"""

from __future__ import annotations

import csv
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
from dqn_tune.tuning.ablation import AblationSpec, Cell, cell_of
from dqn_tune.tuning.records import SPEC_ATTR, ablation_spec, trial_runs

REPORT_ROOT = Path("studies") / "ablations"
CSV_NAME = "runs.csv"
TABLE_NAME = "summary.md"
HEATMAP_NAME = "final_return_heatmap.png"
CURVES_NAME = "learning_curves.png"
CSV_COLUMNS = ("trial", "buffer_size", "target_update_interval", "seed", "status", "final_return", "auc",
               "steps_to_threshold", "wall_time_s", "steps_per_second")


@dataclass(frozen=True, slots=True)
class AblationRun:
    """One finished cell-seed run, as stored in its trial."""

    trial: int
    buffer_size: int
    target_update_interval: int
    seed: int
    record: RunRecord
    threshold: float | None

    @property
    def final_return(self) -> float:
        """The run's final evaluation return (its trial's value)."""
        return self.record.mean_return

    @property
    def auc(self) -> float:
        """Area under the learning curve divided by its steps: the mean evaluation return over training."""
        return curve_auc(self.record.curve_steps, self.record.curve_returns)

    @property
    def steps_to_threshold(self) -> int | None:
        """First evaluated step whose return reaches the threshold; None if never (or no threshold)."""
        if self.threshold is None:
            return None
        return next((s for s, r in zip(self.record.curve_steps, self.record.curve_returns) if r >= self.threshold),
                    None)


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where write_ablation_report put its files."""

    csv: Path
    table: Path
    heatmap: Path
    curves: Path


def default_report_dir(study_name: str) -> Path:
    """studies/ablations/<study name>/ (the name made one safe folder name, see `safe_name`)."""
    return REPORT_ROOT / safe_name(study_name)


def study_spec(study: optuna.Study) -> AblationSpec:
    """The grid an ablation study was created with (its SPEC_ATTR user attribute)."""
    stored = ablation_spec(study)
    if stored is None:
        raise StorageError(f"study {study.study_name!r} is not an ablation study (no {SPEC_ATTR!r} attribute)")
    return AblationSpec.from_dict(stored)


def ablation_runs(study: optuna.Study) -> list[AblationRun]:
    """The COMPLETE runs of an ablation study, ordered by cell and seed (one per cell-seed)."""
    threshold = reward_threshold(study_spec(study).base.env_id)
    runs: dict[Cell, AblationRun] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        cell = cell_of(trial)
        records = trial_runs(trial)
        if cell is not None and records and cell not in runs:
            runs[cell] = AblationRun(trial.number, *cell, records[0], threshold)
    return [runs[cell] for cell in sorted(runs)]


def diverged_runs(study: optuna.Study) -> dict[Cell, int]:
    """Cell-seeds whose training diverged (PRUNED with a fail reason) and the number of that trial."""
    return {cell: trial.number for trial in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
            if FAIL_REASON in trial.user_attrs and (cell := cell_of(trial)) is not None}


def reward_threshold(env_id: str) -> float | None:
    """gymnasium's reward threshold of an env id (None when the spec has none)."""
    return gym.spec(env_id).reward_threshold


def write_ablation_report(study: optuna.Study, out_dir: str | Path) -> ReportFiles:
    """Write the CSV, markdown table, heatmap and mean-curve PNGs of an ablation study into `out_dir`."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    spec = study_spec(study)
    runs, diverged = ablation_runs(study), diverged_runs(study)
    files = ReportFiles(directory / CSV_NAME, directory / TABLE_NAME, directory / HEATMAP_NAME,
                        directory / CURVES_NAME)
    write_csv(runs, diverged, files.csv)
    write_text(files.table, summary_table(study.study_name, spec, runs, diverged))
    save_figure(heatmap_figure(spec, runs), files.heatmap)
    save_figure(curves_figure(spec, runs), files.curves)
    return files


def write_csv(runs: Sequence[AblationRun], diverged: Mapping[Cell, int], path: Path) -> None:
    """One row per run, diverged ones last with empty figures; steps_to_threshold is empty when not reached."""
    with replacing(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for run in runs:
            steps = run.steps_to_threshold
            writer.writerow([run.trial, run.buffer_size, run.target_update_interval, run.seed, "complete",
                             run.final_return, run.auc, "" if steps is None else steps, run.record.wall_time_s,
                             run.record.steps_per_second])
        for cell, trial in sorted(diverged.items()):
            writer.writerow([trial, *cell, "diverged", "", "", "", "", ""])


def cell_runs(runs: Sequence[AblationRun], buffer_size: int, interval: int) -> list[AblationRun]:
    """The runs (seeds) of one (buffer size, target interval) cell."""
    return [r for r in runs if (r.buffer_size, r.target_update_interval) == (buffer_size, interval)]


def summary_table(study_name: str, spec: AblationSpec, runs: Sequence[AblationRun],
                  diverged: Mapping[Cell, int] | None = None) -> str:
    """Markdown: mean +- std over seeds of final return, AUC and steps to threshold, per cell.

    The runs column counts the completed seeds, and those whose training diverged (no figures)."""
    threshold = reward_threshold(spec.base.env_id)
    reach = f"steps to return {threshold:g}" if threshold is not None else "steps to threshold"
    lines = [
        f"# Ablation `{study_name}`: replay-buffer size x target-update interval",
        "",
        f"{spec.base.env_id}, {spec.base.total_timesteps} steps per run, {spec.seeds} seed(s) per cell; other "
        f"hyperparameters from {'the best trial of ' + repr(spec.base_study) if spec.base_study else 'the defaults'}.",
        "AUC is the area under the evaluation curve divided by the steps (the mean evaluation return over "
        "training); steps to threshold averages the seeds that reached it.",
        "",
        f"| buffer size | target interval | runs | final return | AUC | {reach} |",
        "|---|---|---|---|---|---|",
    ]
    for buffer_size in spec.buffer_sizes:
        for interval in spec.target_intervals:
            group = cell_runs(runs, buffer_size, interval)
            lost = sum(cell[:2] == (buffer_size, interval) for cell in diverged or {})
            lines.append(f"| {buffer_size} | {interval} | {len(group)}/{spec.seeds}"
                         f"{f', {lost} diverged' if lost else ''} | "
                         f"{_mean_std([r.final_return for r in group])} | {_mean_std([r.auc for r in group])} | "
                         f"{_reached(group, threshold)} |")
    return "\n".join(lines) + "\n"


def mean_final_returns(spec: AblationSpec, runs: Sequence[AblationRun]) -> np.ndarray:
    """Mean final return per cell: rows are buffer sizes, columns target intervals (NaN: no run)."""
    grid = np.full((len(spec.buffer_sizes), len(spec.target_intervals)), np.nan)
    for i, buffer_size in enumerate(spec.buffer_sizes):
        for j, interval in enumerate(spec.target_intervals):
            group = cell_runs(runs, buffer_size, interval)
            if group:
                grid[i, j] = float(np.mean([r.final_return for r in group]))
    return grid


def heatmap_figure(spec: AblationSpec, runs: Sequence[AblationRun]) -> Figure:
    """Mean final return per cell, annotated; empty cells are left blank."""
    values = mean_final_returns(spec, runs)
    figure = new_figure()
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axes, label="mean final return")
    axes.set_xticks(range(len(spec.target_intervals)), [str(v) for v in spec.target_intervals])
    axes.set_yticks(range(len(spec.buffer_sizes)), [str(v) for v in spec.buffer_sizes])
    axes.set_xlabel("target-update interval (steps)")
    axes.set_ylabel("replay-buffer size")
    axes.set_title(f"{spec.base.env_id}: mean final return over {spec.seeds} seed(s)")
    for (i, j), value in np.ndenumerate(values):
        light = not np.isnan(value) and image.norm(value) > 0.6  # viridis is light at the top
        axes.text(j, i, "no run" if np.isnan(value) else f"{value:.1f}", ha="center", va="center",
                  color="black" if light else "white", fontsize="small")
    return figure


def curves_figure(spec: AblationSpec, runs: Sequence[AblationRun]) -> Figure:
    """One panel per buffer size, one mean learning curve (over seeds) per target interval."""
    figure = new_figure()
    figure.set_size_inches(FIGSIZE[0] / 1.6 * len(spec.buffer_sizes) + 1.5, FIGSIZE[1])
    panels = figure.subplots(1, len(spec.buffer_sizes), sharey=True, squeeze=False)[0]
    threshold = reward_threshold(spec.base.env_id)
    for axes, buffer_size in zip(panels, spec.buffer_sizes):
        for interval in spec.target_intervals:
            steps, means = mean_curve([r.record for r in cell_runs(runs, buffer_size, interval)])
            if len(steps):
                axes.plot(steps, means, marker=".", linewidth=1.2, label=f"target {interval}")
        if threshold is not None:
            axes.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        axes.set_title(f"buffer {buffer_size}")
        axes.set_xlabel("environment step")
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best", fontsize="x-small")
    panels[0].set_ylabel("mean evaluation return")
    return figure


def _mean_std(values: Sequence[float]) -> str:
    if not values:
        return "no run"
    return f"{np.mean(values):.1f} +- {np.std(values):.1f}"


def _reached(group: Sequence[AblationRun], threshold: float | None) -> str:
    if not group:
        return "no run"
    if threshold is None:
        return "n/a (no threshold)"
    steps = [r.steps_to_threshold for r in group if r.steps_to_threshold is not None]
    if not steps:
        return "not reached"
    return f"{np.mean(steps):.0f} +- {np.std(steps):.0f} ({len(steps)}/{len(group)} runs)"
