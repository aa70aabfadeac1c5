"""The project's error types.

Every error a user can cause derives from `DQNTuneError`; the CLI prints its message on one
line and exits with status 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DQNTuneError(Exception):
    """A problem the user can fix: bad input, a missing file, an unusable storage."""


class ConfigError(DQNTuneError, ValueError):
    """A hyperparameter or option has an impossible value; `field` names it when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EnvError(DQNTuneError):
    """The environment id is unknown or its spaces are not ones DQN can handle."""


class AgentFileError(DQNTuneError):
    """A saved-agent file is missing, corrupt, of another kind, or does not fit the env."""


class CheckpointError(DQNTuneError):
    """A checkpoint is damaged, truncated or of another run: it is ignored and the run starts from step 0."""


class OutputPathError(DQNTuneError):
    """An output path cannot be written."""


class StorageError(DQNTuneError):
    """An Optuna storage cannot be opened or does not hold what was asked for."""


class DivergenceError(DQNTuneError, ArithmeticError):
    """Training produced a NaN or infinite loss; `from_env`: the env gave the NaN or inf (in a reward or an observation
    of the batch), so no hyperparameter can help."""

    def __init__(self, step: int, loss: float, *, from_env: bool = False) -> None:
        advice = (
            "the env returned a NaN or infinite reward or observation, which the batch replayed: fix the env "
            "(a lower --learning-rate cannot help)"
            if from_env
            else "lower --learning-rate or enable gradient clipping (--max-grad-norm)"
        )
        super().__init__(f"training diverged at step {step}: loss is {loss}; {advice}")
        self.step = step
        self.loss = loss
        self.from_env = from_env


SHOWN_MAX = 300
"""Characters of a value an error message shows (room for a real path); longer values are cut (their
length is given)."""


def shown(value: object) -> str:
    """`value` as an error message quotes it: its repr (control characters escaped), cut to SHOWN_MAX."""
    text = repr(value)
    if len(text) <= SHOWN_MAX:
        return text
    return f"{text[: SHOWN_MAX - 3]}... ({len(str(value))} characters)"
