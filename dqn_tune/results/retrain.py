"""retrain_best: a study's chosen trial -> K fresh seeds -> the best one saved as the final agent.

The trial is validation's recommended one by default (the best when the study has no validation),
and its config is read back as stored (records.trial_config), never re-derived from its param
names. The fresh seeds come from seeds.RETRAIN, so no tuning or validation run trained on one;
they train together as one batched run (`train_seeds`).
The kept seed is chosen on a selection evaluation (SELECTION_EPISODES episodes from another eval
seed); every seed is then reported on the EVAL_EPISODES held-out episodes, which had no say in the
choice (choosing and reporting on the same episodes would be optimistic). Nothing is written to
the storage; every input is checked before training starts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from sqlalchemy.engine import make_url

from dqn_tune.dqn.agent import Agent, save_agent
from dqn_tune.dqn.config import SEED_MAX, DQNConfig
from dqn_tune.dqn.device import check_device
from dqn_tune.dqn.run_record import RunRecord
from dqn_tune.dqn.trainer import train_seeds
from dqn_tune.errors import ConfigError, StorageError
from dqn_tune.output_paths import check_writable, safe_name, write_text
from dqn_tune.plots import learning_curve_figure, save_figure
from dqn_tune.results.defaults import EVAL_EPISODES, EVAL_SEED, RETRAIN_SEEDS
from dqn_tune.runner.defaults import RETRY_TIMEOUT_S
from dqn_tune.runner.retry import RetryPolicy
from dqn_tune.runner.storage import load_study, open_existing_storage, prepare_url
from dqn_tune.tuning.presets import eval_freq_for
from dqn_tune.tuning.recommendation import (
    ConfigStats,
    Recommendation,
    shortfall_p_value,
)
from dqn_tune.tuning.records import (
    recommendation,
    study_objective,
    trial_config,
    trial_runs,
)
from dqn_tune.tuning.seeds import retrain_seeds
from dqn_tune.tuning.selection import choose_trial, default_trial

SELECTION_EPISODES = 20
"""Greedy episodes each retrained seed is chosen on, from `selection_seed(eval_seed)`: not the reported ones."""
SIGNIFICANCE = 0.05
"""With validation, the tuned result does not reproduce when the retrained seeds fall below the held-out seeds with a
one-sided p-value under this."""
REPRODUCE_TOLERANCE = 0.10
"""Without validation, the tuning result counts as reproduced when the retrained mean is at most this fraction
below it."""

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SeedOutcome:
    """One retrained seed: its held-out evaluation and its training run's own final evaluation."""

    seed: int
    mean_return: float
    """Mean over the EVAL_EPISODES held-out episodes (the reported figure)."""
    std_return: float
    train_final_return: float
    wall_time_s: float
    """The batched run's wall time: the same for every seed trained in it."""
    selection_return: float
    """Mean over the selection episodes (what the kept seed was chosen by)."""
    diverged_at: int | None = None
    """Step at which the run's loss became NaN/inf (its last finite weights are evaluated); None if it did not."""

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON primitives for the agent's metadata."""
        return {
            "seed": self.seed,
            "mean_return": self.mean_return,
            "std_return": self.std_return,
            "train_final_return": self.train_final_return,
            "wall_time_s": self.wall_time_s,
            "selection_return": self.selection_return,
            "diverged_at": self.diverged_at,
        }


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """What retrain_best produced and where it wrote it."""

    study_name: str
    trial_number: int
    selection: str
    """Why this trial: the phrase of `default_trial`, or that --trial chose it."""
    trial_value: float
    objective: str
    """What the trial's value scores (the study's --objective: final, best or auc); 'value' if unknown."""
    tuning_runs: tuple[RunRecord, ...]
    trial_timesteps: int
    total_timesteps: int
    eval_episodes: int
    eval_seed: int
    selection_episodes: int
    selection_seed: int
    seeds: tuple[SeedOutcome, ...]
    best_seed: int
    agent_path: Path
    curve_path: Path
    summary_path: Path
    validation: ConfigStats | None = None
    """The trial's row of the study's validation table (None if it was not validated)."""

    @property
    def retrained_mean(self) -> float:
        """Mean held-out return over the retrained seeds."""
        return float(np.mean([s.mean_return for s in self.seeds]))

    @property
    def tuned_final(self) -> float:
        """The tuning seeds' mean final return (the trial's value when it recorded no runs)."""
        return float(np.mean([run.mean_return for run in self.tuning_runs])) if self.tuning_runs else self.trial_value

    @property
    def shortfall_p(self) -> float | None:
        """One-sided p-value that the retrained seeds' returns are below the validation seeds' (`shortfall_p_value`);
        None without a validation of >= 2 finished seeds, or with a single retrained seed."""
        if self.validation is None or len(self.validation.returns) < 2 or len(self.seeds) < 2:
            return None
        return shortfall_p_value([seed.mean_return for seed in self.seeds], self.validation.returns)

    @property
    def reproduces(self) -> bool:
        """With a validation: the retrained seeds are not significantly below the held-out seeds (p >= SIGNIFICANCE);
        else the retrained mean is at most REPRODUCE_TOLERANCE of |tuned final| below the tuned final return."""
        p = self.shortfall_p
        if p is not None:
            return p >= SIGNIFICANCE
        return self.retrained_mean >= self.tuned_final - REPRODUCE_TOLERANCE * abs(self.tuned_final)

    @property
    def rule(self) -> str:
        """The rule `reproduces` used, with its figures."""
        p = self.shortfall_p
        if p is not None and self.validation is not None:
            row, interval = self.validation, self.validation.interval
            where = (
                "inside"
                if interval.low <= self.retrained_mean <= interval.high
                else "below"
                if self.retrained_mean < interval.low
                else "above"
            )
            return (
                f"validation seeds: the {len(self.seeds)} retrained seeds (mean {self.retrained_mean:.2f}, "
                f"{where} the 95% CI [{interval.low:.2f}, {interval.high:.2f}] of trial {self.trial_number}'s "
                f"{len(row.returns)} held-out seeds, mean {row.mean:.2f}) must not be significantly below them: "
                f"one-sided permutation test of the means, p = {p:.3f} ("
                + (
                    f"below {SIGNIFICANCE}: a significant shortfall"
                    if p < SIGNIFICANCE
                    else f"not below {SIGNIFICANCE}: no significant shortfall"
                )
                + ")"
            )
        why = (
            "the trial was not validated"
            if self.validation is None
            else "its validation has fewer than 2 seeds"
            if len(self.validation.returns) < 2
            else "a single retrained seed"
        )
        return (
            f"tolerance ({why}): the retrained mean {self.retrained_mean:.2f} must be at most "
            f"{REPRODUCE_TOLERANCE:.0%} of |{self.tuned_final:.2f}| below the tuning seeds' final return"
        )

    @property
    def verdict(self) -> str:
        """'reproduces' or 'does NOT reproduce'."""
        return "reproduces" if self.reproduces else "does NOT reproduce"


def output_paths(out: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """The agent file and, next to it, its learning-curve PNG and markdown summary."""
    agent = Path(out)
    return agent, agent.with_name(f"{agent.stem}_learning_curve.png"), agent.with_name(f"{agent.stem}_summary.md")


def default_agent_path(study_name: str) -> Path:
    """models/<study name>.pt (the name made one safe file name, see `safe_name`)."""
    return Path("models") / f"{safe_name(study_name)}.pt"


def selection_seed(eval_seed: int) -> int:
    """The eval seed the kept seed is chosen on: the next one after `eval_seed` (so other episodes)."""
    return (eval_seed + 1) % (SEED_MAX + 1)


def validated_row(study: optuna.Study, trial_number: int) -> ConfigStats | None:
    """Trial `trial_number`'s row of the study's stored validation table (None if it has none)."""
    stored = recommendation(study)
    if stored is None:
        return None
    return next((row for row in Recommendation.from_dict(stored).table if row.trial == trial_number), None)


def retrain_best(
    *,
    study_name: str,
    storage: str | None = None,
    storage_retry_timeout_s: float = RETRY_TIMEOUT_S,
    trial: int | None = None,
    timesteps: int | None = None,
    seeds: int = RETRAIN_SEEDS,
    out: str | os.PathLike[str] | None = None,
    eval_episodes: int = EVAL_EPISODES,
    eval_seed: int = EVAL_SEED,
    selection_episodes: int = SELECTION_EPISODES,
    device: str = "cpu",
    log: Log | None = None,
) -> RetrainOutcome:
    """Retrain the chosen trial's config (default: `default_trial`) with `seeds` fresh seeds and save the one
    best on the selection episodes as the final agent; every seed is reported on the held-out episodes.

    Writes the agent (default: `default_agent_path`), a learning-curve PNG and a markdown summary
    next to it. The networks train on `device`. Bad input raises a DQNTuneError before any training.
    """
    say = log or (lambda _message: None)
    check_device(device)
    _check_count("seeds", seeds)
    _check_count("eval_episodes", eval_episodes)
    _check_count("selection_episodes", selection_episodes)
    study = load_study(open_existing_storage(storage, retry=RetryPolicy(storage_retry_timeout_s)), study_name)
    chosen = choose_trial(study, trial)
    tuned_value = chosen.value
    if tuned_value is None:  # not for a COMPLETE trial of a single-objective study, which choose_trial gives
        raise StorageError(f"trial {chosen.number} of study {study_name!r} has no value; expected a COMPLETE trial")
    why = default_trial(study)[1] if trial is None else "chosen with --trial"
    paths = output_paths(check_writable(out if out is not None else default_agent_path(study_name)))
    for path in paths[1:]:
        check_writable(path)
    trial_budget = trial_config(chosen)
    config = trial_budget if timesteps is None else _with_budget(trial_budget, timesteps, chosen.number)
    tuning_runs = tuple(trial_runs(chosen))
    chooser = selection_seed(eval_seed)

    say(f"trial {chosen.number} of {study_name!r}: {why}")
    fresh = retrain_seeds(seeds)
    say(
        f"retraining trial {chosen.number} of {study_name!r} with seeds {', '.join(map(str, fresh))} "
        f"(one batched run) for {config.total_timesteps} steps each on {config.env_id}"
    )
    results = train_seeds(config, fresh, device=device)
    outcomes: list[SeedOutcome] = []
    agents: list[Agent] = []
    for result in results:
        agent = Agent.from_result(result)
        picked_on = agent.evaluate(selection_episodes, seed=chooser)
        stats = agent.evaluate(eval_episodes, seed=eval_seed)
        diverged_at = None if result.diverged is None else result.diverged.step
        outcomes.append(
            SeedOutcome(
                result.seed, stats.mean, stats.std, result.mean_return, result.wall_time_s, picked_on.mean, diverged_at
            )
        )
        agents.append(agent)
        say(
            f"  seed {result.seed}: held-out return {stats.mean:.1f} +- {stats.std:.1f} over {eval_episodes} "
            f"episodes; selection return {picked_on.mean:.1f}"
            + ("" if diverged_at is None else f"; diverged at step {diverged_at}, its last finite weights")
        )
    say(f"  trained in {results[0].wall_time_s:.1f}s")

    best = max(range(len(outcomes)), key=lambda k: (outcomes[k].diverged_at is None, outcomes[k].selection_return))
    objective = study_objective(study)
    outcome = RetrainOutcome(
        study_name,
        chosen.number,
        why,
        float(tuned_value),
        objective,
        tuning_runs,
        trial_budget.total_timesteps,
        config.total_timesteps,
        eval_episodes,
        eval_seed,
        selection_episodes,
        chooser,
        tuple(outcomes),
        outcomes[best].seed,
        *paths,
        validated_row(study, chosen.number),
    )
    agents[best].metadata.update(_metadata(outcome, chosen, study, storage))
    save_agent(agents[best], outcome.agent_path)
    figure = learning_curve_figure(
        [RunRecord.from_result(r) for r in results], title=f"{study_name} trial {chosen.number}: retrained seeds"
    )
    save_figure(figure, outcome.curve_path)
    write_text(outcome.summary_path, summary_markdown(outcome, chosen.params))
    return outcome


def summary_markdown(outcome: RetrainOutcome, params: dict[str, Any]) -> str:
    """A short report: the trial's value beside the retrained seeds' figures, and whether it reproduces."""
    tuning_seeds = ", ".join(str(run.seed) for run in outcome.tuning_runs) or "not recorded"
    lines = [
        f"# Retrained agent: study `{outcome.study_name}`, trial {outcome.trial_number}",
        "",
        f"- Trial {outcome.trial_number}: {outcome.selection}",
        f"- Agent: `{outcome.agent_path.name}` (seed {outcome.best_seed}, the best of {len(outcome.seeds)} "
        f"retrained seeds on {outcome.selection_episodes} selection episodes, eval seed {outcome.selection_seed}; "
        f"every seed is reported on {outcome.eval_episodes} other episodes, eval seed {outcome.eval_seed}); "
        f"learning curves: `{outcome.curve_path.name}`",
        f"- Budget: {outcome.total_timesteps} environment steps per seed"
        + ("" if outcome.total_timesteps == outcome.trial_timesteps else f" (the trial had {outcome.trial_timesteps})"),
        "- Tuned params: " + (", ".join(f"{name}={value}" for name, value in params.items()) or "none"),
        "",
        "| run | seed | mean return | std | evaluation |",
        "|---|---|---|---|---|",
        f"| trial {outcome.trial_number} (tuning) | {tuning_seeds} | {outcome.trial_value:.2f} | | "
        f"trial value ({outcome.objective}) |",
    ]
    lines += [
        f"| tuning seed | {run.seed} | {run.mean_return:.2f} | | final evaluation during tuning |"
        for run in outcome.tuning_runs
    ]
    if outcome.validation is not None:
        row = outcome.validation
        lines.append(
            f"| validation | {len(row.returns)} held-out seeds | {row.mean:.2f} | {row.std:.2f} | "
            f"final evaluations; 95% CI [{row.interval.low:.2f}, {row.interval.high:.2f}] |"
        )
    for seed in outcome.seeds:
        kept = " (kept)" if seed.seed == outcome.best_seed else ""
        kept += "" if seed.diverged_at is None else f" (diverged at step {seed.diverged_at})"
        lines.append(
            f"| retrained{kept} | {seed.seed} | {seed.mean_return:.2f} | {seed.std_return:.2f} | "
            f"{outcome.eval_episodes} held-out episodes, eval seed {outcome.eval_seed} "
            f"(selection return {seed.selection_return:.2f}) |"
        )
    lines += [
        f"| retrained mean | | {outcome.retrained_mean:.2f} | "
        f"{float(np.std([s.mean_return for s in outcome.seeds])):.2f} | over seeds |",
        "",
        f"**The tuned result {outcome.verdict}** by the rule of the {outcome.rule} (tuning seeds' final return "
        f"{outcome.tuned_final:.2f}, difference {outcome.retrained_mean - outcome.tuned_final:+.2f}).",
        "",
    ]
    return "\n".join(lines)


def _metadata(outcome: RetrainOutcome, chosen: FrozenTrial, study: optuna.Study, storage: str | None) -> dict[str, Any]:
    url = make_url(prepare_url(storage)).render_as_string(hide_password=True)
    return {
        "study_name": study.study_name,
        "trial_number": chosen.number,
        "storage": url,
        "params": dict(chosen.params),
        "trial_value": outcome.trial_value,
        "selection": outcome.selection,
        "retrain": {
            "total_timesteps": outcome.total_timesteps,
            "eval_episodes": outcome.eval_episodes,
            "eval_seed": outcome.eval_seed,
            "selection_episodes": outcome.selection_episodes,
            "selection_seed": outcome.selection_seed,
            "best_seed": outcome.best_seed,
            "seeds": [seed.to_dict() for seed in outcome.seeds],
            "reproduces": outcome.reproduces,
            "rule": outcome.rule,
        },
    }


def _with_budget(config: DQNConfig, timesteps: int, trial_number: int) -> DQNConfig:
    try:
        return config.replace(total_timesteps=timesteps, eval_freq=eval_freq_for(timesteps))  # as tune evaluates
    except ConfigError as exc:
        raise ConfigError(
            f"timesteps = {timesteps!r} is invalid for trial {trial_number} ({exc}); expected an "
            f"integer > its learning_starts ({config.learning_starts})",
            field="total_timesteps",
        ) from None


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} = {value!r} is invalid: expected an integer >= 1", field=name)
