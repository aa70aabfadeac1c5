"""DQNConfig: every hyperparameter of one training run, validated on construction."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from dqn_tune.dqn.networks import FAMILIES
from dqn_tune.errors import ConfigError

LOSSES = ("huber", "mse")
OPTIMIZERS = ("adam", "rmsprop")
NETWORKS = ("auto", *FAMILIES)
"""config.network: a family of the registry, or 'auto' (chosen from the observation shape)."""
CNN_STACKS = ("auto", "minatar", "nature")
"""config.cnn: a convolution stack of the CNN family (dqn/conv.py), or 'auto' (chosen from the frame size)."""
WIDTH_FIELDS = ("hidden_sizes", "cnn_channels", "cnn_hidden_sizes")
"""The layer-width fields (tuples of integers)."""
AUTO_WIDTHS = "auto"
"""How the command line writes an empty tuple of widths: the network's own."""
NO_CLIPPING = "none"
"""How TOML (which has no null) and the command line write max_grad_norm = None."""
INT_MAX = 2**63 - 1
"""Largest value of an integer field: every count fits a 64-bit integer (numpy, torch, SQLite)."""
ADAM_EPS = 1e-8
"""Adam's epsilon by default: torch's, which SB3's DQN uses too."""
SEED_MAX = 2**32 - 1
"""Largest run or evaluation seed: seeds are 32-bit, like the per-stream seeds derived from them (numpy's
SeedSequence would take any size; one documented range keeps runs reproducible with other tools)."""


def _field(default: Any, doc: str) -> Any:
    """A dataclass field whose help text (used by the CLI) lives in its metadata."""
    return field(default=default, metadata={"help": doc})


@dataclass(frozen=True, slots=True)
class DQNConfig:
    """Hyperparameters and budget of one DQN training run.

    Field names are the names used everywhere: CLI flags (`--learning-rate`), Optuna params,
    stored trial attributes and the saved-agent file. The defaults (Double DQN, one update every
    2 steps, a target copy every 200 steps, the best evaluated weights kept) were the best of ~25
    settings swept on CartPole-v1 over 50,000 steps: 8 of 8 seeds reached 500, at ~35 CPU-seconds
    per run; tests/dqn/test_learning.py checks them.
    """

    env_id: str = _field(
        "CartPole-v1", "Gymnasium environment id (Discrete actions; Box observations, flat or images)."
    )
    total_timesteps: int = _field(50_000, "Environment steps to train for.")
    learning_rate: float = _field(1e-3, "The optimizer's step size.")
    gamma: float = _field(0.99, "Discount factor, in (0, 1].")
    batch_size: int = _field(128, "Transitions per gradient step.")
    buffer_size: int = _field(50_000, "Replay buffer capacity N (transitions).")
    target_update_interval: int = _field(200, "Environment steps C between target-network updates.")
    tau: float = _field(1.0, "Target update coefficient: 1.0 copies the weights, below 1.0 is a Polyak average.")
    learning_starts: int = _field(1_000, "Environment steps collected before the first gradient step.")
    train_freq: int = _field(2, "Environment steps between gradient phases.")
    gradient_steps: int = _field(1, "Gradient steps per gradient phase.")
    exploration_fraction: float = _field(0.2, "Fraction of total_timesteps over which epsilon decays linearly.")
    exploration_initial_eps: float = _field(1.0, "Epsilon at step 0.")
    exploration_final_eps: float = _field(0.05, "Epsilon after the decay.")
    loss: str = _field("huber", "TD loss: 'huber' or 'mse'.")
    max_grad_norm: float | None = _field(10.0, "Gradient-norm clip; None disables clipping.")
    hidden_sizes: tuple[int, ...] = _field((128, 128), "Widths of the Q-network's hidden layers.")
    network: str = _field(
        "auto",
        "Q-network family: 'mlp' (flat observations), 'cnn' (images), or 'auto': "
        "the CNN for 2-D and 3-D observations, the MLP for flat ones.",
    )
    cnn: str = _field(
        "auto",
        "CNN convolutions: 'minatar' (one 3x3 conv of 16, then 128 units), 'nature' (32 8x8/4, "
        "64 4x4/2, 64 3x3/1, then 512 units), or 'auto': 'nature' for frames of 64 x 64 and "
        "larger, 'minatar' below.",
    )
    cnn_channels: tuple[int, ...] = _field(
        (), "CNN: output channels of each convolution; empty (auto): the stack's own."
    )
    cnn_hidden_sizes: tuple[int, ...] = _field(
        (),
        "CNN: widths of the fully connected layers after the convolutions; empty (auto): the stack's own (128 or 512).",
    )
    optimizer: str = _field("adam", "'adam', or 'rmsprop': the centered RMSprop of the DQN papers (MinAtar's).")
    adam_eps: float = _field(
        ADAM_EPS,
        "Adam's epsilon, added to the root of its second-moment estimate (torch's default; Rainbow used 1.5e-4): "
        "larger values damp the steps of weights whose gradients are rare. rmsprop keeps MinAtar's 0.01.",
    )
    dueling: bool = _field(False, "Dueling heads: Q = V + A - mean(A) from one trunk (Wang et al. 2016).")
    double_dqn: bool = _field(True, "Select next actions with the online network (Double DQN).")
    n_steps: int = _field(
        1,
        "Steps n of the TD target's return: r_t + ... + gamma^(n-1) r_(t+n-1) + gamma^n Q(s_(t+n)), "
        "cut at a termination, bootstrapped at a time-limit truncation.",
    )
    prioritized_replay: bool = _field(
        False,
        "Sample transitions in proportion to priority^per_alpha (Schaul et al. "
        "2016), priorities from |TD error|; false samples uniformly.",
    )
    per_alpha: float = _field(0.6, "Prioritized replay: exponent alpha of the priorities (0 is uniform).")
    per_beta: float = _field(
        0.4,
        "Prioritized replay: importance-sampling exponent beta at step 0, annealed linearly to 1 at total_timesteps.",
    )
    per_eps: float = _field(1e-6, "Prioritized replay: added to |TD error| so that no transition has priority 0.")
    eval_freq: int = _field(5_000, "Environment steps between learning-curve evaluations; 0 disables them.")
    eval_curve_episodes: int = _field(5, "Greedy episodes per learning-curve evaluation.")
    eval_episodes: int = _field(20, "Greedy episodes of the final evaluation (the headline figure).")
    keep_best: bool = _field(
        True,
        "Return the weights of the best learning-curve evaluation when they beat "
        "the last weights (DQN's late collapses); false returns the last weights.",
    )

    def __post_init__(self) -> None:
        for name in WIDTH_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check(isinstance(self.env_id, str) and bool(self.env_id), "env_id", self.env_id, "a gymnasium env id")
        for name in (
            "total_timesteps",
            "batch_size",
            "buffer_size",
            "target_update_interval",
            "train_freq",
            "gradient_steps",
            "n_steps",
            "eval_curve_episodes",
            "eval_episodes",
        ):
            _check(
                _is_int(getattr(self, name)) and 1 <= getattr(self, name) <= INT_MAX,
                name,
                getattr(self, name),
                "an integer from 1 to 2**63 - 1",
            )
        for name in ("learning_starts", "eval_freq"):
            _check(
                _is_int(getattr(self, name)) and 0 <= getattr(self, name) <= INT_MAX,
                name,
                getattr(self, name),
                "an integer from 0 to 2**63 - 1",
            )
        _check(
            _is_real(self.learning_rate) and 0 < self.learning_rate < math.inf,
            "learning_rate",
            self.learning_rate,
            "a finite number > 0",
        )
        _check(_is_real(self.gamma) and 0 < self.gamma <= 1, "gamma", self.gamma, "a number in (0, 1]")
        _check(_is_real(self.tau) and 0 < self.tau <= 1, "tau", self.tau, "a number in (0, 1]")
        _check(
            _is_real(self.exploration_fraction) and 0 < self.exploration_fraction <= 1,
            "exploration_fraction",
            self.exploration_fraction,
            "a number in (0, 1]",
        )
        for name in ("exploration_initial_eps", "exploration_final_eps"):
            _check(
                _is_real(getattr(self, name)) and 0 <= getattr(self, name) <= 1,
                name,
                getattr(self, name),
                "a number in [0, 1]",
            )
        _check(self.loss in LOSSES, "loss", self.loss, "one of " + ", ".join(LOSSES))
        _check(
            self.max_grad_norm is None or (_is_real(self.max_grad_norm) and 0 < self.max_grad_norm < math.inf),
            "max_grad_norm",
            self.max_grad_norm,
            "a finite number > 0, or None to disable clipping",
        )
        _check(
            len(self.hidden_sizes) >= 1 and all(_is_int(h) and 1 <= h <= INT_MAX for h in self.hidden_sizes),
            "hidden_sizes",
            list(self.hidden_sizes),
            "one or more integers from 1 to 2**63 - 1",
        )
        for name in ("cnn_channels", "cnn_hidden_sizes"):
            _check(
                all(_is_int(h) and 1 <= h <= INT_MAX for h in getattr(self, name)),
                name,
                list(getattr(self, name)),
                "integers from 1 to 2**63 - 1, or auto (none given) for the stack's own",
            )
        for name, accepted in (("network", NETWORKS), ("cnn", CNN_STACKS), ("optimizer", OPTIMIZERS)):
            _check(getattr(self, name) in accepted, name, getattr(self, name), "one of " + ", ".join(accepted))
        for name in ("dueling", "double_dqn", "prioritized_replay", "keep_best"):
            _check(isinstance(getattr(self, name), bool), name, getattr(self, name), "true or false")
        for name in ("per_alpha", "per_beta"):
            _check(
                _is_real(getattr(self, name)) and 0 <= getattr(self, name) <= 1,
                name,
                getattr(self, name),
                "a number in [0, 1]",
            )
        for name in ("per_eps", "adam_eps"):
            _check(
                _is_real(getattr(self, name)) and 0 < getattr(self, name) < math.inf,
                name,
                getattr(self, name),
                "a finite number > 0",
            )
        _check(
            self.batch_size <= self.buffer_size,
            "batch_size",
            self.batch_size,
            f"at most buffer_size ({self.buffer_size})",
        )
        _check(self.n_steps <= self.buffer_size, "n_steps", self.n_steps, f"at most buffer_size ({self.buffer_size})")
        _check(
            self.learning_starts < self.total_timesteps,
            "learning_starts",
            self.learning_starts,
            f"less than total_timesteps ({self.total_timesteps})",
        )

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON primitives (the form stored in trials and agent files)."""
        data = dataclasses.asdict(self)
        for name in WIDTH_FIELDS:
            data[name] = list(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DQNConfig:
        """Rebuild a config from `to_dict()` output; unknown keys are an error."""
        unknown = sorted(set(data) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(field_names())}")
        return cls(**data)

    def replace(self, **changes: Any) -> DQNConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def check_seed(seed: object, *, name: str = "seed") -> int:
    """Return `seed` if it is an integer from 0 to SEED_MAX; else raise ConfigError naming it as `name`."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(
            f"{name} = {seed!r} is invalid: expected an integer from 0 to {SEED_MAX} (2**32 - 1)", field="seed"
        )
    return seed


SHORT_FLAGS = {"total_timesteps": "--timesteps"}
"""Fields whose command-line flag is not their name ('--total-timesteps' stays an alias)."""


def flag_name(field_name: str) -> str:
    """The command-line flag of a config field (`learning_rate` -> `--learning-rate`): one name everywhere."""
    return SHORT_FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


def from_toml(name: str, value: Any) -> Any:
    """A TOML value of field `name` as the field takes it: max_grad_norm "none" (any case) is None."""
    if name == "max_grad_norm" and isinstance(value, str) and value.lower() == NO_CLIPPING:
        return None
    return value


def field_names() -> tuple[str, ...]:
    """Names of all DQNConfig fields, in declaration order."""
    return tuple(f.name for f in dataclasses.fields(DQNConfig))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check(ok: bool, name: str, value: object, accepted: str) -> None:
    if not ok:
        raise ConfigError(f"{name} = {value!r} is invalid: expected {accepted}", field=name)
