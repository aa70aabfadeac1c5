"""The hyperparameter search space, and `suggest_config`: the only place a trial suggests values.

A space maps DQNConfig field names to a numeric range, a list of choices, or a fixed value. The
default space samples the five hyperparameters of the study card; a TOML file can change their
ranges, fix them, or add other fields of DQNConfig:

    learning_rate = { low = 1e-4, high = 3e-3, log = true }
    batch_size = { choices = [64, 128] }
    gamma = 0.99                                   # fixed
    exploration_fraction = { low = 0.05, high = 0.3 }
    hidden_sizes = { choices = [[64, 64], [128, 128], [256, 256]] }
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError
from dqn_tune.toml_files import read_toml

if TYPE_CHECKING:  # a space is read by `dqn-tune presets`, which must start without loading optuna or numpy
    import optuna
    from optuna.distributions import CategoricalChoiceType

    from dqn_tune.dqn.observations import ObservationSpec

BUDGET_FIELDS = ("env_id", "total_timesteps", "eval_freq", "eval_curve_episodes", "eval_episodes")
"""DQNConfig fields that set the budget and the measurement of a trial, never sampled."""
FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type) for f in dataclasses.fields(DQNConfig) if f.name not in BUDGET_FIELDS
}
"""Tunable DQNConfig fields and their annotated types."""

Value = int | float | str | bool | tuple[int, ...]
ENQUEUE_FIELD = "enqueue"
"""The field of a ConfigError about a config queued as a trial (`tune --enqueue`): it names the file's keys."""
SEARCH_SPACE_FIELD = "search_space"
"""The field of a ConfigError about a search-space file's entries: it names the file's keys, not flags."""


@dataclass(frozen=True, slots=True)
class Range:
    """A numeric interval, sampled uniformly or on a log scale (integers for int fields)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        """Sample a value for `name`."""
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def extremes(self) -> tuple[Value, ...]:
        """The values at the edges of the range."""
        return (self.low, self.high)

    def describe(self) -> str:
        """One line for humans."""
        kind = "int" if self.integer else "float"
        return f"{kind} in [{self.low:g}, {self.high:g}]" + (", log scale" if self.log else "")

    def param(self, value: Value) -> CategoricalChoiceType | None:
        """`value` as a trial of this range stores it; None if the range cannot give it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not self.low <= value <= self.high:
            return None
        return int(value) if self.integer else float(value)


@dataclass(frozen=True, slots=True)
class Choice:
    """A categorical choice among listed values."""

    choices: tuple[Value, ...]

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        """Sample one of the choices (layer-width tuples are offered to Optuna as "64,64" strings)."""
        options: dict[CategoricalChoiceType, Value] = {choice_label(choice): choice for choice in self.choices}
        return options[trial.suggest_categorical(name, list(options))]

    def extremes(self) -> tuple[Value, ...]:
        """Every choice."""
        return self.choices

    def describe(self) -> str:
        """One line for humans."""
        return "one of " + ", ".join(str(choice_label(choice)) for choice in self.choices)

    def param(self, value: Value) -> CategoricalChoiceType | None:
        """`value` as a trial of these choices stores it (its label); None if it is not one of them."""
        return choice_label(value) if value in self.choices else None


@dataclass(frozen=True, slots=True)
class Fixed:
    """A value that every trial uses."""

    value: Value

    def suggest(self, trial: optuna.Trial, name: str) -> Value:
        """The fixed value (nothing is sampled)."""
        return self.value

    def extremes(self) -> tuple[Value, ...]:
        """The value itself."""
        return (self.value,)

    def describe(self) -> str:
        """One line for humans."""
        return f"fixed at {choice_label(self.value)}"


Param = Range | Choice | Fixed


@dataclass(frozen=True, slots=True)
class SearchSpace:
    """Tunable DQNConfig fields and how each is sampled; fields not listed keep the base config's value."""

    params: dict[str, Param]

    def merged(self, other: SearchSpace) -> SearchSpace:
        """This space with `other`'s entries added or replacing ours."""
        return SearchSpace({**self.params, **other.params})

    def without(self, names: Iterable[str]) -> SearchSpace:
        """This space with `names` left to the base config (e.g. fixed by a command-line flag)."""
        drop = set(names)
        return SearchSpace({name: param for name, param in self.params.items() if name not in drop})

    def check(self, base: DQNConfig) -> None:
        """Raise ConfigError unless every value the space can produce gives a valid config from `base`."""
        for name, param in self.params.items():
            for value in param.extremes():
                try:
                    base.replace(**{name: value})
                except ConfigError as exc:
                    raise ConfigError(
                        f"search space: {name} ({param.describe()}) can give an invalid config: {exc}", field=name
                    ) from None
        batch_max = max(self._int_extremes("batch_size", base))
        buffer_min = min(self._int_extremes("buffer_size", base))
        if batch_max > buffer_min:
            raise ConfigError(
                f"search space: batch_size can reach {batch_max} but buffer_size can be as small as "
                f"{buffer_min}; every batch_size must be <= every buffer_size",
                field="batch_size",
            )

    def largest_config(self, base: DQNConfig, observation: ObservationSpec, n_actions: int) -> DQNConfig:
        """The config from `base` that needs the most memory to train among those the space can give (call
        `check` first): the largest buffer, batch and n-step sizes with the costliest network choices."""
        from dqn_tune.dqn.memory import memory_needed  # numpy loads when a space is sized, not for --help

        largest = base.replace(
            buffer_size=max(self._int_extremes("buffer_size", base)),
            batch_size=max(self._int_extremes("batch_size", base)),
            n_steps=max(self._int_extremes("n_steps", base)),
        )
        candidates = [
            largest.replace(hidden_sizes=sizes, dueling=dueling, prioritized_replay=prioritized)
            for sizes in self._extremes("hidden_sizes", base)
            for dueling in self._extremes("dueling", base)
            for prioritized in self._extremes("prioritized_replay", base)
        ]
        return max(candidates, key=lambda config: memory_needed(config, observation, n_actions))

    def trial_params(self, config: DQNConfig, *, source: str) -> dict[str, CategoricalChoiceType]:
        """The params of the trial that samples `config`'s values (for `study.enqueue_trial`); ConfigError, starting
        with `source`, naming a value the space cannot give."""
        params: dict[str, CategoricalChoiceType] = {}
        for name, param in self.params.items():
            if isinstance(param, Fixed):
                continue
            value = getattr(config, name)
            stored = param.param(value)
            if stored is None:
                raise ConfigError(
                    f"{source}: {name} = {choice_label(value)!r} is outside the study's search space "
                    f"({param.describe()})",
                    field=ENQUEUE_FIELD,
                )
            params[name] = stored
        return params

    def queued_config(self, base: DQNConfig, config: DQNConfig) -> DQNConfig:
        """The config of the trial queued from `config` (`trial_params`): `base` with the space's fixed values and
        `config`'s sampled ones, as `suggest_config` makes it."""
        return base.replace(
            **{
                name: param.value if isinstance(param, Fixed) else getattr(config, name)
                for name, param in self.params.items()
            }
        )

    def describe(self) -> list[str]:
        """One line per parameter, for notes and summaries."""
        return [f"{name}: {param.describe()}" for name, param in self.params.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives (stored as a study attribute); `from_mapping` reads the same form."""
        return {name: _param_dict(param) for name, param in self.params.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str = "search space") -> SearchSpace:
        """Parse a space from TOML-like data; ConfigError names `source`, the parameter and the problem."""
        params = {}
        for name, spec in data.items():
            if name in BUDGET_FIELDS:
                raise ConfigError(
                    f"{source}: {name!r} is part of the trial budget, not a hyperparameter; "
                    "set it with the command-line flags instead",
                    field=name,
                )
            if name not in FIELD_TYPES:
                raise ConfigError(
                    f"{source}: unknown hyperparameter {name!r}; tunable: " + ", ".join(FIELD_TYPES), field=name
                )
            params[name] = _parse_param(name, spec, source)
        return cls(params)

    def _extremes(self, name: str, base: DQNConfig) -> tuple[Value, ...]:
        return self.params[name].extremes() if name in self.params else (getattr(base, name),)

    def _int_extremes(self, name: str, base: DQNConfig) -> list[int]:
        """`_extremes` of an int field: all ints (`_convert` parses them so, DQNConfig validates the base's)."""
        values = self._extremes(name, base)
        ints = [value for value in values if isinstance(value, int)]
        assert len(ints) == len(values), f"{name}: non-integer values {values!r}"
        return ints


DEFAULT_SPACE = SearchSpace(
    {
        "learning_rate": Range(1e-4, 1e-2, log=True),
        "gamma": Range(0.95, 0.999),
        "batch_size": Choice((32, 64, 128, 256)),
        "buffer_size": Choice((5_000, 10_000, 50_000, 100_000)),
        "target_update_interval": Range(10, 2_000, log=True, integer=True),
    }
)
"""The study card's five hyperparameters over ranges that contain the known good CartPole configs
(RL Zoo's lr 2.3e-3 / 3.5e-4, batch 64 / 256, buffer 100k, target 10 / 210; our lr 1e-3, batch 128,
buffer 50k, target 200, gamma 0.99) without RL Zoo's costly corners (2048 batches, 400x300 nets)."""


def load_search_space(path: str | Path | None, *, base: SearchSpace = DEFAULT_SPACE) -> SearchSpace:
    """`base` (e.g. an env preset's space) updated with the entries of the TOML file at `path` (None: `base`)."""
    if path is None:
        return base
    source = f"search-space file {str(path)!r}"
    try:
        return base.merged(SearchSpace.from_mapping(read_toml(path, what=source), source=source))
    except ConfigError as exc:
        raise ConfigError(str(exc), field=SEARCH_SPACE_FIELD) from None


def suggest_config(trial: optuna.Trial, base: DQNConfig, space: SearchSpace) -> DQNConfig:
    """The trial's config: `base` with every parameter of `space` sampled (or fixed)."""
    return base.replace(**{name: param.suggest(trial, name) for name, param in space.params.items()})


def _parse_param(name: str, spec: Any, source: str) -> Param:
    where = f"{source}: {name}"
    if not isinstance(spec, dict):
        return Fixed(_convert(name, spec, where))
    keys = set(spec)
    if keys == {"value"}:
        return Fixed(_convert(name, spec["value"], where))
    if keys == {"choices"}:
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: choices must be a non-empty list, got {choices!r}", field=name)
        return Choice(tuple(_convert(name, choice, where) for choice in choices))
    if keys in ({"low", "high"}, {"low", "high", "log"}):
        return _parse_range(name, spec, where)
    raise ConfigError(
        f"{where}: unexpected keys {sorted(keys)}; expected {{ low = ..., high = ..., log = true }}, "
        "{ choices = [...] }, { value = ... } or a plain value",
        field=name,
    )


def _parse_range(name: str, spec: dict[str, Any], where: str) -> Range:
    kind = FIELD_TYPES[name]
    if kind not in ("int", "float", "float | None"):
        raise ConfigError(f"{where}: a {kind} hyperparameter cannot take a low/high range; use choices", field=name)
    low, high = _convert(name, spec["low"], where), _convert(name, spec["high"], where)
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))  # _convert of a numeric field
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}: log must be true or false, got {log!r}", field=name)
    if low > high:
        raise ConfigError(f"{where}: low ({low}) is greater than high ({high})", field=name)
    if log and low <= 0:
        raise ConfigError(f"{where}: a log-scale range needs low > 0, got {low}", field=name)
    return Range(low, high, log=log, integer=kind == "int")


def _convert(name: str, value: Any, where: str) -> Value:
    """Check a TOML value against the field's type; ints are accepted for float fields."""
    kind = FIELD_TYPES[name]
    if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in ("float", "float | None") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "str" and isinstance(value, str):
        return value
    if (
        kind == "tuple[int, ...]"
        and isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return tuple(value)
    expected = {
        "int": "an integer",
        "float": "a number",
        "float | None": "a number",
        "bool": "true or false",
        "str": "a string",
        "tuple[int, ...]": "a list of integers such as [128, 128]",
    }[kind]
    raise ConfigError(f"{where}: expected {expected}, got {value!r}", field=name)


def choice_label(value: Value) -> int | float | str | bool:
    """The Optuna-compatible form of a choice (tuples become "64,64")."""
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else value


def _param_dict(param: Param) -> Any:
    if isinstance(param, Range):
        return {"low": param.low, "high": param.high, "log": param.log}
    if isinstance(param, Choice):
        return {"choices": [list(c) if isinstance(c, tuple) else c for c in param.choices]}
    return {"value": list(param.value) if isinstance(param.value, tuple) else param.value}
