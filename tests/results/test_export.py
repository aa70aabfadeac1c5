"""`dqn-tune best`: every format round-trips to the same config; json carries the validation; bad input is one line."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
import sys
from pathlib import Path

import optuna
import pytest
import yaml  # PyYAML: installed with optuna; a test-only reader here

from dqn_tune.cli import build_parser, main
from dqn_tune.cli.config_flags import build_config
from dqn_tune.dqn.agent import load_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.results.export import (
    ZOO_KEYS,
    config_from_mapping,
    read_config_file,
    to_args,
    to_toml,
    to_yaml,
)
from dqn_tune.runner.storage import open_storage
from dqn_tune.tuning import records
from dqn_tune.tuning.records import store_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

UNUSUAL = DQNConfig(
    env_id="Acrobot-v1",
    total_timesteps=1_234,
    learning_rate=1e-5,
    gamma=0.95,
    batch_size=16,
    buffer_size=500,
    tau=0.5,
    learning_starts=10,
    train_freq=3,
    gradient_steps=2,
    loss="mse",
    max_grad_norm=None,
    hidden_sizes=(32, 16),
    double_dqn=False,
    keep_best=False,
    eval_freq=0,
    exploration_initial_eps=0.5,
    exploration_final_eps=0.0,
    dueling=True,
    n_steps=3,
    prioritized_replay=True,
    per_alpha=0.5,
    per_beta=0.3,
    per_eps=1e-5,
)
"""Every field away from its default (network has one choice so far), max_grad_norm None and booleans flipped."""


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recommended(url: str) -> tuple[int, DQNConfig]:
    study = optuna.load_study(study_name="validated", storage=url)
    number = records.recommendation(study)["trial"]  # type: ignore[index]
    return number, records.trial_config(study.trials[number])


def best(url: str, *args: str) -> list[str]:
    return ["best", "--study-name", "validated", "--storage", url, *args]


@pytest.fixture
def plain_study(tmp_path: Path, tiny_config: DQNConfig) -> tuple[str, Path]:
    """Study 'dqn-CartPole-v1' (the default name) without validation: trials of value 1, 3 (lr 2e-3), 2; one failed;
    and study 'empty' with a failed trial only."""
    db = tmp_path / "plain.db"
    url = f"sqlite:///{db}"
    study = optuna.create_study(
        study_name="dqn-CartPole-v1", storage=open_storage(url, heartbeat=False), direction="maximize"
    )
    for value, lr in ((1.0, 1e-3), (3.0, 2e-3), (2.0, 3e-3)):
        trial = study.ask()
        trial.suggest_float("learning_rate", lr, lr)
        store_config(trial, tiny_config.replace(learning_rate=lr))
        study.tell(trial, value)
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    empty = optuna.create_study(study_name="empty", storage=url)
    empty.tell(empty.ask(), state=optuna.trial.TrialState.FAIL)
    return url, db


def test_toml_is_read_back_by_train_config_and_flags_override_it(
    validated_study_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    number, config = recommended(validated_study_url)
    out = tmp_path / "best.toml"
    assert main(best(validated_study_url, "--format", "toml", "--out", str(out))) == 0
    assert capsys.readouterr().out == (
        f"wrote the toml config of trial {number} of study 'validated' (recommended by "
        f"validation on held-out seeds) to {out}\n"
    )
    assert read_config_file(out) == config
    text = out.read_text()
    assert text.startswith(f"# study 'validated', trial {number}: recommended by validation on held-out seeds\n")
    assert re.search(r"^# validation: mean [\d.]+ \[95% CI [\d.]+, [\d.]+\]", text, flags=re.MULTILINE)

    agent_path = tmp_path / "agent.pt"
    assert (
        main(["train", "--config", str(out), "--out", str(agent_path), "--timesteps", "300", "--eval-freq", "0"]) == 0
    )
    assert load_agent(agent_path).config == config.replace(total_timesteps=300, eval_freq=0)


def test_toml_and_args_round_trip_every_field(tmp_path: Path) -> None:
    assert config_from_mapping(tomllib.loads(to_toml(UNUSUAL)), where="test") == UNUSUAL
    path = tmp_path / "unusual.toml"
    path.write_text(to_toml(UNUSUAL, comments=["a comment"]))
    assert read_config_file(path) == UNUSUAL

    clipped = UNUSUAL.replace(max_grad_norm=0.5)
    words = shlex.split(to_args(clipped))
    assert words[:2] == ["dqn-tune", "train"]
    assert build_config(build_parser().parse_args(words[1:])) == clipped


def test_args_round_trip_no_clipping() -> None:
    words = shlex.split(to_args(UNUSUAL))
    assert "--max-grad-norm none" in to_args(UNUSUAL)
    assert build_config(build_parser().parse_args(words[1:])) == UNUSUAL


def test_a_missing_key_keeps_its_default(tmp_path: Path) -> None:
    path = tmp_path / "partial.toml"
    path.write_text('learning_rate = 0.002\nhidden_sizes = [64]\nmax_grad_norm = "none"\n')
    assert read_config_file(path) == DQNConfig(learning_rate=0.002, hidden_sizes=(64,), max_grad_norm=None)


def test_args_output_parses_to_the_recommended_config(
    validated_study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, config = recommended(validated_study_url)
    assert main(best(validated_study_url, "--format", "args")) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1
    assert build_config(build_parser().parse_args(shlex.split(line)[1:])) == config


def test_yaml_has_rl_zoos_keys_and_values() -> None:
    text = to_yaml(UNUSUAL, comments=["provenance"])
    data = yaml.safe_load(text)
    assert list(data) == ["Acrobot-v1"]
    entry = data["Acrobot-v1"]
    assert set(entry) == {"n_timesteps", "policy", "policy_kwargs", *ZOO_KEYS}
    assert entry["n_timesteps"] == 1_234 and entry["policy"] == "MlpPolicy"
    assert entry["policy_kwargs"] == "dict(net_arch=[32, 16])"
    for name in ZOO_KEYS:
        value = getattr(UNUSUAL, name)
        assert entry[name] == (math.inf if value is None else value), name
        assert type(entry[name]) is type(math.inf if value is None else value), name  # 1e-05 read as a float
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    for setting in (
        "double_dqn = false",
        "keep_best = false",
        "loss = mse",
        "max_grad_norm = none",
        "dueling = true (SB3's DQN has no dueling heads)",
        "prioritized_replay = true, per_alpha = 0.5, per_beta = 0.3, per_eps = 1e-05 (SB3's DQN samples uniformly)",
    ):
        assert setting in comments


@pytest.mark.parametrize(
    ("changes", "kwargs"),
    [
        ({}, "dict(net_arch=[64, 64])"),
        ({"adam_eps": 1.5e-4}, "dict(net_arch=[64, 64], optimizer_kwargs=dict(eps=0.00015))"),
        (
            {"optimizer": "rmsprop", "adam_eps": 1.5e-4},
            "dict(net_arch=[64, 64], optimizer_class=th.optim.RMSprop, "
            "optimizer_kwargs=dict(alpha=0.95, eps=0.01, centered=True, momentum=0.95))",
        ),
    ],
    ids=["default-adam", "adam-eps", "rmsprop-ignores-adam-eps"],
)
def test_yaml_gives_sb3_the_optimizer_settings_that_differ_from_its_adam(
    changes: dict[str, object], kwargs: str
) -> None:
    entry = yaml.safe_load(to_yaml(DQNConfig(hidden_sizes=(64, 64), **changes)))["CartPole-v1"]
    assert entry["policy_kwargs"] == kwargs


def test_yaml_of_the_study_names_what_sb3_lacks(validated_study_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    _, config = recommended(validated_study_url)
    assert main(best(validated_study_url, "--format", "yaml")) == 0
    text = capsys.readouterr().out
    entry = yaml.safe_load(text)[config.env_id]
    assert entry["learning_rate"] == config.learning_rate and entry["n_timesteps"] == config.total_timesteps
    assert "# dqn-tune settings that SB3's DQN has no argument for" in text
    assert "double_dqn = true (SB3's DQN is not Double DQN)" in text


def test_json_has_the_config_and_the_validation_table(
    validated_study_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    number, config = recommended(validated_study_url)
    assert main(best(validated_study_url, "--format", "json")) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trial"] == number and data["selection"] == "recommended by validation on held-out seeds"
    assert DQNConfig.from_dict(data["config"]) == config
    table = data["validation"]["table"]
    assert table[0]["trial"] == number and len(table) == 2
    for row in table:
        assert {"mean", "iqm", "min", "std", "ci_low", "ci_high", "returns", "seeds"} <= set(row)
        assert len(row["returns"]) == 2 and row["ci_low"] <= row["mean"] <= row["ci_high"]
    assert data["validation"]["rule"].startswith("highest lower bound")


def test_without_validation_best_exports_the_best_trial_by_default_name(
    plain_study: tuple[str, Path], tiny_config: DQNConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    url, _ = plain_study
    assert main(["best", "--storage", url, "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert (data["study"], data["trial"], data["validation"]) == ("dqn-CartPole-v1", 1, None)
    assert data["selection"].startswith("best tuning value; the study has no validation")
    assert DQNConfig.from_dict(data["config"]) == tiny_config.replace(learning_rate=2e-3)


def test_bad_input_is_one_line_exit_2_and_leaves_the_storage_alone(
    plain_study: tuple[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, db = plain_study
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    (tmp_path / "dir.toml").mkdir()
    cases = [
        (["--study-name", "nope"], r"study 'nope' not found in .*; studies there: dqn-CartPole-v1, empty$"),
        (["--env", "Acrobot-v1"], r"study 'dqn-Acrobot-v1' not found in "),
        (["--study-name", "empty"], r"study 'empty' has no complete trial; run or resume the study first$"),
        (["--out", str(blocker / "x.toml")], r"cannot write output path .*a-file/x\.toml"),
        (["--out", str(tmp_path / "dir.toml")], r"output path .*dir\.toml' is a directory"),
        (["--format", "xml"], r"argument --format: invalid choice: 'xml' \(choose from '?toml'?, '?json'?, "),
        (["--out", ""], r"argument --out: invalid value '': it is empty"),
    ]
    before = digest(db)
    for args, message in cases:
        assert main(["best", "--storage", url, *args]) == 2, args
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1, captured
        assert re.search(message, captured.err.rstrip("\n").removeprefix("dqn-tune: error: ")), captured.err
    assert digest(db) == before
