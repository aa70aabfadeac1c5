"""The saved-agent file: identical Q-values after a round trip, one-line errors for bad files, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.trainer import train
from dqn_tune.errors import AgentFileError, OutputPathError


@pytest.fixture(scope="module")
def agent() -> Agent:
    """An agent from a tiny CartPole run."""
    config = DQNConfig(total_timesteps=300, learning_starts=50, batch_size=16, buffer_size=300, hidden_sizes=(16, 8),
                       eval_freq=0, eval_episodes=1)
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
    torch.save({**payload, "obs_dim": 6, "n_actions": 3}, path)
    assert_one_line_agent_error(path, r"is a damaged dqn-tune agent file: its weights do not fit a network with "
                                      r"6 observation values, 3 actions and hidden sizes \[16, 8\]$")


def test_a_file_without_weights_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]
    torch.save(payload, path)
    assert_one_line_agent_error(path, "is a damaged dqn-tune agent file: it has no 'state_dict' entry$")


def test_an_agent_for_another_env_shape_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    loaded = load_agent(save_agent(agent, tmp_path / "agent.pt"))
    loaded.config = loaded.config.replace(env_id="Acrobot-v1")  # 6 observation values, 3 actions
    with pytest.raises(AgentFileError, match=r"agent expects 4 observation values and 2 actions, "
                                             r"but env 'Acrobot-v1' has 6 and 3$") as info:
        loaded.evaluate(1, seed=0)
    assert "\n" not in str(info.value)


def test_another_format_version_is_a_one_line_error(agent: Agent, tmp_path: Path) -> None:
    path = save_agent(agent, tmp_path / "agent.pt")
    torch.save({**torch.load(path, weights_only=True), "format_version": 99}, path)
    assert_one_line_agent_error(path, "format version 99")


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
    with pytest.raises(Exception):
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
