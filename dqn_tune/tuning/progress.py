"""The tune command's live view: a ticking progress bar, and without a terminal one line per finished trial and,
for long trials, lines of their evaluations."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from dqn_tune.runner import attributes


def trial_line(trial: FrozenTrial, best: FrozenTrial | None) -> str:
    """One line for a finished trial, as Optuna logs it: its outcome, then the study's best so far."""
    if trial.state == TrialState.COMPLETE:
        outcome = f"value {trial.value:.2f} (complete)"
    elif trial.state == TrialState.PRUNED:
        step = trial.last_step
        outcome = (
            "pruned before its first evaluation"
            if step is None
            else f"pruned at step {step} (value {trial.intermediate_values[step]:.2f} there)"
        )
        if attributes.FAIL_REASON in trial.user_attrs:
            outcome += f": {trial.user_attrs[attributes.FAIL_REASON]}"
    else:
        outcome = f"{trial.state.name.lower()}: {trial.user_attrs.get(attributes.FAIL_REASON, 'no reason stored')}"
    best_text = "no complete trial yet" if best is None else f"best is trial {best.number} with {best.value:.2f}"
    return f"trial {trial.number} finished: {outcome}; {best_text}"


EVAL_LINE_INTERVAL = 60.0
"""Seconds at least between two evaluation lines of one trial, validation group or ablation cell (`EvalLines`)."""


def eval_line(what: str, step: int, total_timesteps: int, returns: Sequence[float | None]) -> str:
    """An evaluation of a running trial or validation group (`what`), indented under the command's lines."""
    shown = ", ".join("diverged" if value is None else f"{value:.2f}" for value in returns)
    return f"  {what} at step {step} of {total_timesteps}: return{'s' if len(returns) > 1 else ''} {shown}"


class EvalLines:
    """Shows evaluation lines through `show` (None: nowhere), at most one per EVAL_LINE_INTERVAL seconds, the first
    that long after the start: a run of minutes shows its progress in a log, one of seconds only its end."""

    def __init__(self, show: Callable[[str], None] | None) -> None:
        self._show, self._last = show, time.monotonic()

    def __call__(self, line: Callable[[], str]) -> None:
        """Show `line()` if it is time to."""
        if self._show is not None and time.monotonic() - self._last >= EVAL_LINE_INTERVAL:
            self._show(line())
            self._last = time.monotonic()


def print_line(line: str) -> None:
    """Print `line` at once (a worker's output under nohup or Slurm is a file, block-buffered otherwise)."""
    print(line, flush=True)


def state_counts(trials: list[FrozenTrial]) -> dict[str, int]:
    """Trials by state name (complete, pruned, fail, running, waiting)."""
    return {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}


def trials_text(count: int) -> str:
    """e.g. "1 trial", "3 trials"."""
    return f"{count} trial{'' if count == 1 else 's'}"


def counts_text(counts: dict[str, int]) -> str:
    """e.g. "3 complete, 1 pruned" (states with no trial left out)."""
    return ", ".join(f"{n} {state}" for state, n in counts.items() if n)


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best trial, or None before the first complete one."""
    try:
        return study.best_trial
    except ValueError:
        return None


def progress_text(trials: list[FrozenTrial], total_timesteps: int, *, shown: int = 4) -> str:
    """The bar's status: trials by state, the running ones' last evaluated step, the best so far.

    e.g. "2 running: #7 12k/20k steps, #8 3k/20k | 3 complete, 1 pruned, 0 failed | best 488.1 (#3)"
    """
    running = sorted((t for t in trials if t.state == TrialState.RUNNING), key=lambda t: t.number)
    total = _steps(total_timesteps)
    steps = [f"#{t.number} {_steps(t.last_step or 0)}/{total}" for t in running[:shown]]
    steps += [f"+{len(running) - shown} more"] if len(running) > shown else []
    counts = state_counts(trials)
    parts = [
        f"{len(running)} running" + (f": {', '.join(steps)} steps" if steps else ""),
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed",
    ]
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if complete:
        best = max(complete, key=lambda t: t.value)  # type: ignore[arg-type, return-value]
        parts.append(f"best {best.value:.1f} (#{best.number})")
    return " | ".join(parts)


def _steps(steps: int) -> str:
    return f"{steps / 1000:.0f}k" if steps >= 10_000 else (f"{steps / 1000:.1f}k" if steps >= 1000 else str(steps))


def isatty(stream: TextIO) -> bool:
    """Whether `stream` is a terminal (False for a replaced or closed stream)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class Progress:
    """A tqdm bar of this run's finished trials (out of `total`; None: a count, for a run bounded by time) that
    ticks every `interval` seconds, finished trials or not:
    elapsed time, counts by state, the running trials' progress (their last reported step, read from storage).

    A tick reads only the running trials; every trial (the counts and the best, which other commands change
    too) is read after this run finishes a trial and every `full_every` ticks, so a study of thousands of
    trials on a remote database is not read whole every second."""

    def __init__(
        self,
        study: optuna.Study,
        total: int | None,
        *,
        total_timesteps: int,
        interval: float = 1.0,
        full_every: int = 30,
        file: TextIO | None = None,
    ) -> None:
        self._study, self._total_timesteps, self._full_every = study, total_timesteps, full_every
        self._settled: list[FrozenTrial] | None = None  # the trials not running at the last full read
        self._changed = False
        self._bar = tqdm(total=total, unit="trial", dynamic_ncols=True, file=file, mininterval=0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, args=(interval,), name="dqn-tune progress", daemon=True)
        self._thread.start()

    def update(self, finished: int) -> None:
        """Advance to `finished` trials of this run."""
        with self._lock:
            if finished != self._bar.n:
                self._bar.update(finished - self._bar.n)
                self._changed = True

    def refresh(self, *, full: bool = True) -> None:
        """Read the study's trials (only the running ones unless `full`) and redraw (also moves the elapsed time)."""
        try:
            if full or self._settled is None:
                trials = self._study.get_trials(deepcopy=False)
                self._settled = [t for t in trials if t.state != TrialState.RUNNING]
            else:
                trials = self._settled + self._study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            text = progress_text(trials, self._total_timesteps)
        except Exception:  # noqa: BLE001 - a busy or lost storage must not stop the study; the next tick retries
            text = None
        with self._lock:
            if text is not None:
                self._bar.set_postfix_str(text, refresh=False)
            self._bar.refresh()

    def _tick(self, interval: float) -> None:
        ticks = 0
        while not self._stop.wait(interval):
            ticks += 1
            with self._lock:
                changed, self._changed = self._changed, False
            self.refresh(full=changed or ticks % self._full_every == 0)

    def close(self) -> None:
        """Stop ticking, draw the last state and finish the bar."""
        self._stop.set()
        self._thread.join()
        self.refresh()
        self._bar.close()
