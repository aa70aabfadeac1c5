"""numpy Generators' states as plain data (dicts of ints and strings), for checkpoints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def generator_states(rngs: Sequence[np.random.Generator]) -> list[dict[str, Any]]:
    """Each Generator's state: a dict of ints and strings."""
    return [dict(rng.bit_generator.state) for rng in rngs]


def set_generator_states(rngs: Sequence[np.random.Generator], states: Sequence[Mapping[str, Any]]) -> None:
    """Put each Generator back in its state from `generator_states`; ValueError (nothing changed) if they do not fit."""
    if len(states) != len(rngs):
        raise ValueError(f"{len(states)} random generator states for {len(rngs)} generators")
    # a probe first: a state of another kind leaves no generator half set
    for rng, state in zip(rngs, states, strict=True):
        np.random.Generator(type(rng.bit_generator)()).bit_generator.state = state
    for rng, state in zip(rngs, states, strict=True):
        rng.bit_generator.state = state
