"""The saved-agent file: identical Q-values after a round trip, one-line errors for bad files, atomic writes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.trainer import train
from dqn_tune.errors import AgentFileError, OutputPathError

V1_CONFIG = {
    "env_id": "CartPole-v1",
    "total_timesteps": 300,
    "learning_rate": 0.001,
    "gamma": 0.99,
    "batch_size": 16,
    "buffer_size": 300,
    "target_update_interval": 200,
    "tau": 1.0,
    "learning_starts": 50,
    "train_freq": 2,
    "gradient_steps": 1,
    "exploration_fraction": 0.2,
    "exploration_initial_eps": 1.0,
    "exploration_final_eps": 0.05,
    "loss": "huber",
    "max_grad_norm": 10.0,
    "hidden_sizes": [16, 8],
    "double_dqn": True,
    "eval_freq": 0,
    "eval_curve_episodes": 5,
    "eval_episodes": 1,
    "keep_best": True,
}
"""A config as 49fa7de's DQNConfig.to_dict() wrote it (no field added since)."""


@pytest.fixture(scope="module")
def agent() -> Agent:
    """An agent from a tiny CartPole run."""
    config = DQNConfig(
        total_timesteps=300,
        learning_starts=50,
        batch_size=16,
        buffer_size=300,
        hidden_sizes=(16, 8),
        eval_freq=0,
        eval_episodes=1,
    )
    return Agent.from_result(train(config, seed=0), {"note": "test"})


def observations(count: int = 64) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(count, 4)).astype(np.float32)


def assert_one_line_agent_error(path: Path, match: str) -> None:
    with pytest.raises(AgentFileError, match=match) as info:
        load_agent(path)
    assert "\n" not in str(info.value)


def test_save_then_load_gives_identical_q_values_config_and_metadata(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    loaded = load_agent(path)
    assert np.array_equal(loaded.q_values(observations()), agent.q_values(observations()))
    assert [loaded.act(obs) for obs in observations()] == [agent.act(obs) for obs in observations()]
    assert loaded.config == agent.config and loaded.env_id == "CartPole-v1"
    assert loaded.metadata["note"] == "test" and loaded.metadata["training"]["seed"] == 0
    assert loaded.metadata["versions"]["torch"] == torch.__version__


def test_the_file_loads_with_weights_only(agent: Agent, tmp_path: Path) -> None:
    payload = torch.load(save_agent(agent, tmp_path / "agent.pt"), weights_only=True)
    assert payload["format"] == "dqn-tune-agent" and payload["config"] == agent.config.to_dict()


def test_a_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    assert_one_line_agent_error(tmp_path / "nope.pt", "does not exist")


def test_a_corrupt_file_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(5_000))
    assert_one_line_agent_error(garbage, "is not a readable dqn-tune agent file")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(save_agent(agent, tmp_path / "good.pt").read_bytes()[:700])
    assert_one_line_agent_error(truncated, "is not a readable dqn-tune agent file")


@pytest.mark.parametrize("payload", [{"weight": torch.zeros(3)}, torch.ones(2, 2), [1, 2, 3]])
def test_another_kind_of_torch_file_is_a_one_line_error(payload: object, tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(payload, path)
    assert_one_line_agent_error(path, "is not a dqn-tune agent file")


def test_a_file_that_would_run_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pt"
    torch.save({"format": "dqn-tune-agent", "hook": Path("/")}, path)  # not an allowed type for weights_only
    assert_one_line_agent_error(path, "is not a readable dqn-tune agent file")


def test_weights_for_another_shape_are_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "observation": ObservationSpec.flat(6).to_dict(), "n_actions": 3}, path)
    assert_one_line_agent_error(
        path,
        r"is a damaged dqn-tune agent file: its weights do not fit a network with "
        r"observations of shape \(6,\) float32, 3 actions, network = 'mlp', hidden "
        r"sizes \[16, 8\] and dueling = false$",
    )


def test_a_file_without_weights_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]
    torch.save(payload, path)
    assert_one_line_agent_error(path, "is a damaged dqn-tune agent file: it has no 'state_dict' entry$")


def test_an_agent_for_another_env_shape_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    loaded = load_agent(save_agent(agent, tmp_path / "agent.pt"))
    loaded.config = loaded.config.replace(env_id="Acrobot-v1")  # 6 observation values, 3 actions
    with pytest.raises(
        AgentFileError,
        match=r"agent expects observations of shape \(4,\) float32 and 2 actions, "
        r"but env 'Acrobot-v1' has shape \(6,\) float32 and 3$",
    ) as info:
        loaded.evaluate(1, seed=0)
    assert "\n" not in str(info.value)


def test_another_format_version_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    torch.save({**torch.load(path, weights_only=True), "format_version": 99}, path)
    assert_one_line_agent_error(path, "has agent format version 99; this dqn-tune reads versions 1, 2$")


def v1_network() -> nn.Sequential:
    """The MLP 49fa7de's QNetwork was: its state dict keys are "layers." + these."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))


def write_v1_agent(path: Path, layers: nn.Sequential) -> None:
    """An agent file as 49fa7de's save_agent wrote it (format version 1)."""
    torch.save(
        {
            "format": "dqn-tune-agent",
            "format_version": 1,
            "config": V1_CONFIG,
            "obs_dim": 4,
            "n_actions": 2,
            "state_dict": {f"layers.{key}": value for key, value in layers.state_dict().items()},
            "metadata": {"training": {"seed": 0}, "versions": {"torch": str(torch.__version__)}},
        },
        path,
    )


def test_an_agent_file_of_format_version_1_loads_with_the_same_q_values(tmp_path: Path) -> None:
    layers = v1_network()
    write_v1_agent(tmp_path / "v1.pt", layers)
    loaded = load_agent(tmp_path / "v1.pt")
    with torch.no_grad():
        expected = layers(torch.from_numpy(observations())).numpy()
    np.testing.assert_allclose(loaded.q_values(observations()), expected, rtol=1e-5, atol=1e-6)
    assert [loaded.act(obs) for obs in observations()] == expected.argmax(axis=1).tolist()
    assert loaded.config == DQNConfig.from_dict(V1_CONFIG) and loaded.metadata["training"] == {"seed": 0}
    resaved = load_agent(save_agent(loaded, tmp_path / "v2.pt"))  # saved again: format version 2
    assert torch.load(tmp_path / "v2.pt", weights_only=True)["format_version"] == 2
    assert np.array_equal(resaved.q_values(observations()), loaded.q_values(observations()))
    assert resaved.evaluate(1, seed=0).returns == loaded.evaluate(1, seed=0).returns


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda state: {**state, "layers.0.weight": torch.zeros(16, 5)}, "its weights do not fit a network"),
        (lambda state: {**state, "layers.9.bias": torch.zeros(2)}, "its weights do not fit a network"),
        (
            lambda state: {key: value for key, value in state.items() if key != "layers.2.bias"},
            "its weights do not fit a network",
        ),
    ],
)
def test_a_damaged_version_1_file_is_a_one_line_error(tmp_path: Path, edit: object, message: str) -> None:
    path = tmp_path / "v1.pt"
    write_v1_agent(path, v1_network())
    payload = torch.load(path, weights_only=True)
    torch.save({**payload, "state_dict": edit(payload["state_dict"])}, path)  # type: ignore[operator]
    assert_one_line_agent_error(path, message)
    torch.save({**payload, "obs_dim": 0}, path)
    assert_one_line_agent_error(path, r"obs_dim = 0 is invalid: expected an integer >= 1$")


def test_saving_leaves_no_temporary_files_and_replaces_an_old_file(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "models" / "agent.pt"
    save_agent(agent, path)
    first = path.read_bytes()
    path.write_bytes(b"old")
    save_agent(agent, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["agent.pt"]
    assert len(path.read_bytes()) == len(first)


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary_files(agent: Agent, tmp_path: Path) -> None:
    path = tmp_path / "agent.pt"
    path.write_bytes(b"old")
    unpicklable = Agent(agent.q_network, agent.config, {"callback": lambda: None})
    # a local lambda: AttributeError up to Python 3.13, PicklingError from 3.14
    with pytest.raises((AttributeError, pickle.PicklingError), match="pickle"):
        save_agent(unpicklable, path)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.pt"]


def test_an_unwritable_path_is_an_output_path_error(agent: Agent, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(OutputPathError, match="cannot write output path"):
        save_agent(agent, blocker / "agent.pt")
    with pytest.raises(OutputPathError, match="is a directory"):
        save_agent(agent, tmp_path)
