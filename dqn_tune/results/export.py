"""A study's recommended config, complete, in four formats, and the TOML reader of `dqn-tune train --config`.

- `toml`: every DQNConfig field as `key = value`; `read_config_file` reads it back (train --config).
- `json`: the config with the trial, why it was picked and the validation table (figures for scripts).
- `yaml`: RL Baselines3 Zoo's `hyperparams/dqn.yml` format, to take the config to Stable-Baselines3;
  what SB3's DQN cannot express is said in comments, never dropped silently.
- `args`: a `dqn-tune train` command line.

TOML and YAML are written by hand: both are flat mappings of numbers, short strings, booleans and
one list, and the project needs neither tomli-w nor PyYAML at run time for them (PyYAML only comes
in through optuna; RL Zoo's file also wants comments and `!!float` tags, which yaml.safe_dump cannot write).
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from dqn_tune.dqn.config import ADAM_EPS, AUTO_WIDTHS, NO_CLIPPING, WIDTH_FIELDS, DQNConfig, field_names, from_toml
from dqn_tune.dqn.envs import env_spaces, make_env
from dqn_tune.dqn.networks import family_name
from dqn_tune.dqn.optimizers import RMSPROP_SETTINGS
from dqn_tune.errors import ConfigError
from dqn_tune.results.defaults import FORMATS
from dqn_tune.toml_files import read_toml
from dqn_tune.tuning import records
from dqn_tune.tuning.selection import default_trial

TRAIN_FLAGS = {"env_id": "--env", "total_timesteps": "--timesteps"}
"""`dqn-tune train` flags whose name is not the field's (`--env-id` and `--total-timesteps` also work)."""
ZOO_KEYS = (
    "learning_rate",
    "batch_size",
    "buffer_size",
    "learning_starts",
    "gamma",
    "target_update_interval",
    "tau",
    "train_freq",
    "gradient_steps",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
    "max_grad_norm",
    "n_steps",
)
"""DQNConfig fields that are SB3 DQN arguments of the same name and meaning (env steps, not updates; n_steps
since SB3 2.7, whose n-step returns also stop at an episode's end and bootstrap at a time limit)."""
ZOO_POLICIES = {"mlp": "MlpPolicy", "cnn": "CnnPolicy"}
"""SB3's policy for each network family."""


@dataclass(frozen=True, slots=True)
class Pick:
    """The trial a study recommends (see `default_trial`), with what readers need to trust it."""

    study_name: str
    trial: int
    value: float
    objective: str
    why: str
    config: DQNConfig
    params: dict[str, Any]
    validation: dict[str, Any] | None
    """The study's stored Recommendation.to_dict() (None without validation)."""

    @property
    def validated(self) -> dict[str, Any] | None:
        """The validation table's row of this trial (None if it was not validated)."""
        rows = (self.validation or {}).get("table", [])
        return next((row for row in rows if row.get("trial") == self.trial), None)

    def comments(self) -> list[str]:
        """Provenance lines, without comment markers."""
        lines = [
            f"study {self.study_name!r}, trial {self.trial}: {self.why}",
            f"tuning value {self.value:.4g} ({self.objective})",
        ]
        row = self.validated
        if row is not None:
            lines.append(
                f"validation: mean {_figure(row['mean'])} [95% CI {_figure(row['ci_low'])}, "
                f"{_figure(row['ci_high'])}], IQM {_figure(row['iqm'])}, min {_figure(row['min'])} "
                f"over {len(row['returns'])} held-out seeds"
            )
        return lines


def pick(study: optuna.Study) -> Pick:
    """The recommended trial of `study` (the best one without validation); StorageError without a complete trial."""
    trial, why = default_trial(study)
    return Pick(
        study.study_name,
        trial.number,
        float(trial.value),  # type: ignore[arg-type]
        records.study_objective(study),
        why,
        records.trial_config(trial),
        dict(trial.params),
        records.recommendation(study),
    )


def export(chosen: Pick, fmt: str) -> str:
    """`chosen` in format `fmt` (one of FORMATS), ending with a newline."""
    if fmt == "toml":
        return to_toml(chosen.config, comments=[*chosen.comments(), "dqn-tune train --config FILE (flags override)"])
    if fmt == "json":
        return to_json(chosen)
    if fmt == "yaml":
        return to_yaml(chosen.config, comments=chosen.comments())
    if fmt == "args":
        return to_args(chosen.config) + "\n"
    raise ConfigError(f"format {fmt!r} is unknown; expected one of {', '.join(FORMATS)}", field="format")


def to_toml(config: DQNConfig, *, comments: list[str] | tuple[str, ...] = ()) -> str:
    """Every field as `key = value` (max_grad_norm None as "none"); `read_config_file` reads it back."""
    lines = [f"# {line}" for line in comments]
    for name, value in config.to_dict().items():
        lines.append(f"{name} = {_toml_value(NO_CLIPPING if value is None else value)}")
    return "\n".join(lines) + "\n"


def to_json(chosen: Pick) -> str:
    """The pick as JSON: trial, why, config and the validation table (NaN written as null)."""
    data = {
        "study": chosen.study_name,
        "trial": chosen.trial,
        "selection": chosen.why,
        "objective": chosen.objective,
        "tuned_value": chosen.value,
        "params": chosen.params,
        "config": chosen.config.to_dict(),
        "validation": chosen.validation,
    }
    return json.dumps(_finite(data), indent=2, allow_nan=False) + "\n"


def to_yaml(config: DQNConfig, *, comments: list[str] | tuple[str, ...] = ()) -> str:
    """`config` as an entry of RL Zoo's hyperparams/dqn.yml
    (`python -m rl_zoo3.train --algo dqn --env ENV -conf FILE`)."""
    network = _network(config)
    values: dict[str, str] = {"n_timesteps": str(config.total_timesteps), "policy": f"'{ZOO_POLICIES[network]}'"}
    for name in ZOO_KEYS:
        value = getattr(config, name)
        values[name] = ".inf" if value is None else _yaml_number(value)
    net_arch = config.hidden_sizes if network == "mlp" else ()  # CnnPolicy's NatureCNN holds the 512 units
    kwargs = [f"net_arch=[{', '.join(str(h) for h in net_arch)}]"]
    if config.optimizer == "rmsprop":
        settings = ", ".join(f"{key}={value}" for key, value in RMSPROP_SETTINGS.items())
        kwargs.append(f"optimizer_class=th.optim.RMSprop, optimizer_kwargs=dict({settings})")
    elif config.adam_eps != ADAM_EPS:
        kwargs.append(f"optimizer_kwargs=dict(eps={config.adam_eps!r})")
    values["policy_kwargs"] = _quoted(f"dict({', '.join(kwargs)})")
    notes = [
        "dqn-tune settings that SB3's DQN has no argument for (not applied by SB3):",
        f"  double_dqn = {str(config.double_dqn).lower()}"
        + (" (SB3's DQN is not Double DQN)" if config.double_dqn else " (as SB3's DQN)"),
        f"  keep_best = {str(config.keep_best).lower()}"
        + (
            " (SB3 keeps the last weights; RL Zoo's --eval-freq saves best_model.zip)"
            if config.keep_best
            else " (as SB3: the last weights)"
        ),
        f"  loss = {config.loss}"
        + (
            " (SB3 uses the Huber loss, smooth_l1)"
            if config.loss != "huber"
            else " (SB3 uses the same Huber loss, smooth_l1)"
        ),
        f"  dueling = {str(config.dueling).lower()}"
        + (" (SB3's DQN has no dueling heads)" if config.dueling else " (as SB3's DQN)"),
        f"  prioritized_replay = {str(config.prioritized_replay).lower()}"
        + (
            f", per_alpha = {config.per_alpha}, per_beta = {config.per_beta}, per_eps = {config.per_eps} (SB3's DQN "
            "samples uniformly)"
            if config.prioritized_replay
            else " (as SB3's DQN: uniform sampling)"
        ),
        f"  eval_freq = {config.eval_freq}, eval_curve_episodes = {config.eval_curve_episodes}, "
        f"eval_episodes = {config.eval_episodes} (RL Zoo's --eval-freq and --eval-episodes flags)",
    ]
    if config.max_grad_norm is None:
        notes.append("  max_grad_norm = none (no clipping): .inf, since SB3 always clips")
    if network == "cnn":
        notes.append(
            f"  network = cnn (cnn = {config.cnn}): SB3's CnnPolicy is the Nature CNN (frames of at least "
            "36 x 36); the 'minatar' stack and other widths need a features_extractor_class "
            "(scripts/bench_images.py has one)"
        )
    lines = [f"# {line}" for line in [*comments, *notes]]
    lines.append(f"{_quoted(config.env_id)}:")
    lines += [f"  {key}: {text}" for key, text in values.items()]
    return "\n".join(lines) + "\n"


def _network(config: DQNConfig) -> str:
    """The family `config` trains (for network = 'auto', the one its env's observations call for)."""
    if config.network != "auto":
        return config.network
    with make_env(config.env_id) as env:
        observation = env_spaces(env)[0]
    return family_name(config, observation)


def to_args(config: DQNConfig) -> str:
    """A `dqn-tune train` command line that trains `config` (every field given)."""
    words = ["dqn-tune", "train"]
    for name, value in config.to_dict().items():
        flag = TRAIN_FLAGS.get(name, "--" + name.replace("_", "-"))
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, list):
            words += [flag, ",".join(str(v) for v in value) or AUTO_WIDTHS]
        elif isinstance(value, str):
            words += [flag, value]
        else:
            words += [flag, NO_CLIPPING if value is None else repr(value)]
    return shlex.join(words)


def read_config_file(path: str | Path) -> DQNConfig:
    """The DQNConfig of a TOML file of DQNConfig fields (missing ones keep their defaults), as `to_toml` writes;
    ConfigError naming the file and the key for an unreadable file, an unknown key or a bad value."""
    where = f"config file {str(path)!r}"
    return config_from_mapping(read_toml(path, what=where), where=where)


def config_from_mapping(data: dict[str, Any], *, where: str) -> DQNConfig:
    """DQNConfig() with the fields in `data` (TOML values); errors start with `where` and name the key."""
    known = field_names()
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{where}: unknown key {key!r}; expected DQNConfig fields: {', '.join(known)}", field=key)
        if key in WIDTH_FIELDS and not isinstance(value, list):
            raise ConfigError(
                f"{where}: {key} = {value!r} is invalid: expected a list of integers such as [128, 128]",
                field=key,
            )
        values[key] = from_toml(key, value)
    try:
        return DQNConfig().replace(**values)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", field=exc.field) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)  # int, or a finite float (DQNConfig allows no other): valid TOML either way


def _yaml_number(value: float) -> str:
    """A YAML 1.1 number as RL Zoo writes them: `!!float` where PyYAML would read the text as a string (1e-05)."""
    text = repr(value)
    return f"!!float {text}" if "e" in text else text


def _quoted(text: str) -> str:
    """A double-quoted string valid in TOML and YAML: backslash, quote and non-printable characters escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _finite(data: Any) -> Any:
    """`data` with NaN and infinite floats as None (JSON has neither)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: _finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(value) for value in data]
    return data


def _figure(value: float) -> str:
    return f"{value:.1f}"
