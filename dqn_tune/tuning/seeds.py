"""Which training seeds each stage uses: tuning, validation and retrain never share one.

The 32-bit seed space is split in three ranges, so the sets are disjoint by construction, in
every study: a config is judged (validation, retrain) only on seeds no tuning trial trained on.
"""

from __future__ import annotations

import numpy as np

TUNING = range(0, 2**31)
"""Seeds of tuning trials: derived from the study seed and the trial number."""
VALIDATION = range(2**31, 2**31 + 2**30)
"""Held-out seeds of validation: the same list for every validated config (paired comparisons)."""
RETRAIN = range(2**31 + 2**30, 2**32)
"""Fresh seeds of `dqn-tune retrain`."""


def trial_seeds(study_seed: int, trial_number: int, count: int) -> list[int]:
    """Training seeds of a tuning trial, derived from the study seed and the trial number."""
    state = np.random.SeedSequence([study_seed, trial_number]).generate_state(count)
    return [TUNING.start + int(s) % len(TUNING) for s in state]


def validation_seeds(count: int) -> list[int]:
    """The first `count` held-out seeds; asking for more keeps the first ones (a resumed validation adds seeds)."""
    return [VALIDATION.start + index for index in range(count)]


def retrain_seeds(count: int) -> list[int]:
    """The first `count` retrain seeds."""
    return [RETRAIN.start + index for index in range(count)]
