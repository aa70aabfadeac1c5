"""Statistics of validated configs and the rule that recommends one.

Each validated config has one final greedy return per held-out seed. Per config: mean, IQM
(interquartile mean, `scipy.stats.trim_mean(x, 0.25)`, Agarwal et al. 2021), min, std and a
bootstrap 95% confidence interval of the mean (`scipy.stats.bootstrap`, BCa, fixed resampling
seed so the same returns give the same interval). The rule: **the highest lower bound of the
95% CI of the mean** rewards configs that are good on every seed: a high mean bought with one
collapsed seed has a wide interval and loses to a consistent config. Configs with a diverged
seed rank after those without. The recommended config is compared with the runner-up seed by
seed (paired: validation gives every config the same seeds).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RULE = "highest lower bound of the 95% bootstrap CI of the mean over held-out seeds"
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True, slots=True)
class Interval:
    """A bootstrap confidence interval of a mean."""

    low: float
    high: float


def mean_interval(values: Sequence[float]) -> Interval:
    """The 95% bootstrap (BCa) CI of the mean of `values`; a point when they are all equal, NaN below 2 values."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return Interval(math.nan, math.nan)
    if np.ptp(x) == 0:
        return Interval(float(x[0]), float(x[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="BCa",
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):  # BCa undefined (e.g. 2 values): percentile instead
        result = stats.bootstrap(
            (x,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return Interval(low, high)


def shortfall_p_value(fresh: Sequence[float], reference: Sequence[float]) -> float:
    """One-sided p-value of "the `fresh` returns are lower than the `reference` returns": a permutation test of
    the difference of means (`scipy.stats.permutation_test`; exact up to 9,999 distinct splits, the usual case
    for a few seeds). Unlike "the fresh mean lies inside the reference's CI" it keeps its meaning at a return
    cap, where every reference seed can tie and the CI has no width, and it allows for the fresh seeds' own
    spread."""
    result = stats.permutation_test(
        (np.asarray(fresh, dtype=float), np.asarray(reference, dtype=float)),
        _mean_difference,
        permutation_type="independent",
        vectorized=True,
        n_resamples=BOOTSTRAP_RESAMPLES,
        alternative="less",
        rng=np.random.default_rng(BOOTSTRAP_SEED),
    )
    return float(result.pvalue)


def _mean_difference(first: np.ndarray, second: np.ndarray, axis: int) -> np.ndarray:
    difference: np.ndarray = np.mean(first, axis=axis) - np.mean(second, axis=axis)
    return difference


@dataclass(frozen=True, slots=True)
class ConfigStats:
    """One validated config: its tuning trial, and its returns on the held-out seeds."""

    trial: int
    """Number of the tuning trial whose config this is."""
    tuned_value: float
    """The trial's value in the tuning study (the luckiest of many noisy measurements)."""
    seeds: tuple[int, ...]
    """Held-out seeds with a finished run, in order."""
    returns: tuple[float, ...]
    """Final greedy return of each seed's run."""
    diverged: int = 0
    """Held-out seeds whose run diverged (no return)."""
    curve_means: tuple[float, ...] = ()
    """Mean return of each finished run's learning curve (`run_record.curve_auc`), in the order of `seeds`."""

    @property
    def mean(self) -> float:
        """Mean return over seeds."""
        return float(np.mean(self.returns)) if self.returns else math.nan

    @property
    def iqm(self) -> float:
        """Interquartile mean: the mean of the middle 50% of returns."""
        return float(stats.trim_mean(self.returns, 0.25)) if self.returns else math.nan

    @property
    def min(self) -> float:
        """The worst seed's return."""
        return float(np.min(self.returns)) if self.returns else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation over seeds."""
        return float(np.std(self.returns, ddof=1)) if len(self.returns) > 1 else 0.0

    @property
    def interval(self) -> Interval:
        """95% bootstrap CI of the mean."""
        return mean_interval(self.returns)

    @property
    def no_spread(self) -> bool:
        """Two or more seeds, all with the same return (typically a return cap): the CI is a point, because these
        seeds measured no spread, not because there is none (5 of 5 seeds at the cap is what a config failing one
        run in five shows a third of the time)."""
        return len(self.returns) > 1 and min(self.returns) == max(self.returns)

    @property
    def curve_mean(self) -> float:
        """Mean over seeds of the learning curves' mean returns (how soon the config learns); NaN without curves."""
        return float(np.mean(self.curve_means)) if self.curve_means else math.nan

    def rank_key(self) -> tuple[float, ...]:
        """Sort key of the rule (smaller is better): no divergence, highest CI lower bound, mean, curve mean, trial."""
        return (
            float(self.diverged > 0),
            -_or_lowest(self.interval.low),
            -self.mean,
            -_or_lowest(self.curve_mean),
            float(self.trial),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives, with the derived figures for readers (dashboard, report)."""
        interval = self.interval
        return {
            **asdict(self),
            "seeds": list(self.seeds),
            "returns": list(self.returns),
            "mean": self.mean,
            "iqm": self.iqm,
            "min": self.min,
            "std": self.std,
            "ci_low": interval.low,
            "ci_high": interval.high,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConfigStats:
        """Inverse of to_dict (derived figures are recomputed)."""
        return cls(
            int(data["trial"]),
            float(data["tuned_value"]),
            tuple(int(s) for s in data["seeds"]),
            tuple(float(r) for r in data["returns"]),
            int(data.get("diverged", 0)),
            tuple(float(c) for c in data.get("curve_means", ())),
        )


def _or_lowest(value: float) -> float:
    """`value`, or -inf for NaN (ranks last)."""
    return value if math.isfinite(value) else -math.inf


@dataclass(frozen=True, slots=True)
class PairedComparison:
    """The recommended config against the runner-up on the seeds both ran."""

    seeds: int
    mean_difference: float
    """Mean over shared seeds of (recommended - runner-up)."""
    interval: Interval
    """95% bootstrap CI of that mean difference."""
    wins: int
    losses: int

    def text(self, recommended: int, runner_up: int) -> str:
        """One line for tables and notes."""
        ties = self.seeds - self.wins - self.losses
        return (
            f"trial {recommended} vs trial {runner_up} on {self.seeds} shared seeds: mean difference "
            f"{self.mean_difference:+.1f} [{self.interval.low:+.1f}, {self.interval.high:+.1f}], "
            f"better on {self.wins}, worse on {self.losses}, equal on {ties}"
        )


def paired_comparison(first: ConfigStats, second: ConfigStats) -> PairedComparison | None:
    """`first` against `second` seed by seed (None without a shared seed)."""
    theirs = dict(zip(second.seeds, second.returns, strict=True))
    differences = [mine - theirs[seed] for seed, mine in zip(first.seeds, first.returns, strict=True) if seed in theirs]
    if not differences:
        return None
    return PairedComparison(
        len(differences),
        float(np.mean(differences)),
        mean_interval(differences),
        sum(d > 0 for d in differences),
        sum(d < 0 for d in differences),
    )


@dataclass(frozen=True, slots=True)
class Recommendation:
    """The validated configs, best first by the rule, and the comparison of the first two."""

    table: tuple[ConfigStats, ...]

    @property
    def trial(self) -> int:
        """The recommended tuning trial."""
        return self.table[0].trial

    @property
    def comparison(self) -> PairedComparison | None:
        """Recommended vs runner-up (None with a single validated config)."""
        return paired_comparison(self.table[0], self.table[1]) if len(self.table) > 1 else None

    def no_spread_warning(self, seeds: int) -> str | None:
        """What to do when a config's CI is a point (see ConfigStats.no_spread); None when none is."""
        flat = [row.trial for row in self.table if row.no_spread]
        if not flat:
            return None
        which = ", ".join(map(str, flat))
        return (
            f"trial{'s' if len(flat) > 1 else ''} {which}: every held-out seed returned the same value, so the "
            f"interval has no width (no spread measured, not none); `--validation-seeds {2 * seeds}` runs {seeds} more "
            f"seeds per config"
        )

    def reason(self) -> str:
        """Why the first config is recommended, in a few words."""
        best = self.table[0]
        interval = best.interval
        why = f"the {RULE}: {interval.low:.1f}"
        if len(self.table) > 1:
            runner_up = self.table[1]
            why += f" vs {runner_up.interval.low:.1f} for trial {runner_up.trial}"
            best_key, runner_up_key = best.rank_key(), runner_up.rank_key()
            if best_key[:4] == runner_up_key[:4]:
                why += "; tied on it, on the mean and on the learning curve, so the lower trial number"
            elif best_key[:3] == runner_up_key[:3]:
                why += (
                    f"; tied on it and on the mean, so the higher mean learning curve on the held-out seeds (it "
                    f"learns sooner): {best.curve_mean:.1f} vs {runner_up.curve_mean:.1f}"
                )
        return why

    def to_dict(self) -> dict[str, Any]:
        """The stored form: rule, recommended trial, table and comparison."""
        comparison = self.comparison
        return {
            "rule": RULE,
            "trial": self.trial,
            "table": [row.to_dict() for row in self.table],
            "comparison": None if comparison is None else comparison.text(self.trial, self.table[1].trial),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recommendation:
        """Inverse of to_dict."""
        return cls(tuple(ConfigStats.from_dict(row) for row in data["table"]))


def recommend(validated: Sequence[ConfigStats]) -> Recommendation:
    """Rank `validated` by the rule; ValueError if it is empty."""
    if not validated:
        raise ValueError("no validated config to recommend")
    return Recommendation(tuple(sorted(validated, key=ConfigStats.rank_key)))
