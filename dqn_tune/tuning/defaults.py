"""The names and defaults of a study's settings: one set for the library and the CLI.

Light on purpose (no optuna, no torch): the CLI builds its parser and help from these, and
`dqn-tune --help` must start in a fraction of a second.
"""

from __future__ import annotations

ENV_ID = "CartPole-v1"
"""The env of a study when none is given."""
OBJECTIVES = ("final", "best", "auc")
"""What a training run scores: its final evaluation, its best evaluation, or the normalised area
under its evaluation curve (the curve's mean return over training)."""
OBJECTIVE = "final"
SAMPLERS = ("tpe", "random", "qmc", "cmaes")
SAMPLER = "tpe"
PRUNERS = ("median", "patient", "hyperband", "none")
PRUNER = "median"
STUDY_SEED = 0
"""The study seed: samplers and every trial's training seeds derive from it."""
TRIAL_SEEDS = 4
"""Training runs per tuning trial. Trained together (`train_seeds`), 4 seeds cost well under 4 sequential runs
(docs/performance.md has the figures), for a value that is a mean over 4 seeds instead of 1 or 2."""
VALIDATE_TOP_MAX = 5
"""`tune` validates one config per 10 complete trials, at least 1 and at most this many; `validate`'s default."""
VALIDATION_SEEDS = 5
"""Held-out seeds per validated config."""
CHECKPOINT_EVERY = 5_000
"""Env steps between two checkpoints of a trial's runs (docs/checkpoints.md measures what they cost)."""


def auto_validate_top(complete_trials: int) -> int:
    """`tune`'s default number of configs to validate: one per 10 complete trials, 1 to VALIDATE_TOP_MAX."""
    return max(1, min(VALIDATE_TOP_MAX, complete_trials // 10))


def default_study_name(env_id: str) -> str:
    """The name of a tuning study when none is given: `dqn-<ENV_ID>`."""
    return f"dqn-{env_id}"
