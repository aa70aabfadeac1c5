"""The saved-agent format: one torch file of weights, config, env id, figures and versions.

Files are written atomically (temp file + rename) and read with `torch.load(weights_only=True)`,
so loading never runs code from the file.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.envs import make_env, space_dims
from dqn_tune.dqn.evaluation import EvalStats, greedy_policy, run_episodes
from dqn_tune.dqn.network import QNetwork
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.errors import AgentFileError, ConfigError
from dqn_tune.output_paths import check_writable
from dqn_tune.versions import library_versions

FORMAT = "dqn-tune-agent"
FORMAT_VERSION = 1


@dataclass
class Agent:
    """A trained Q-network with the config and env it was trained for."""

    q_network: QNetwork
    config: DQNConfig
    metadata: dict[str, Any] = field(default_factory=dict)
    """Evaluation figures, provenance (study, trial) and library versions."""

    def __post_init__(self) -> None:
        self.q_network.eval()
        self._act = greedy_policy(self.q_network)

    @property
    def env_id(self) -> str:
        """The gymnasium env id the agent was trained on."""
        return self.config.env_id

    def act(self, observation: np.ndarray) -> int:
        """The greedy action for one observation."""
        return self._act(observation)

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        """Q-values of shape (batch, n_actions) for a batch of observations."""
        with torch.inference_mode():
            return self.q_network(torch.as_tensor(observations, dtype=torch.float32)).numpy()

    def evaluate(self, episodes: int, *, seed: int) -> EvalStats:
        """Greedy returns over `episodes` episodes of a fresh env seeded with `seed`."""
        env = make_env(self.env_id)
        try:
            self.check_env(env)
            return run_episodes(self.act, env, episodes, seed=seed)
        finally:
            env.close()

    def check_env(self, env: gym.Env) -> None:
        """Raise AgentFileError if `env` has other observation/action shapes than the network."""
        obs_dim, n_actions = space_dims(env)
        if (obs_dim, n_actions) != (self.q_network.obs_dim, self.q_network.n_actions):
            raise AgentFileError(
                f"agent expects {self.q_network.obs_dim} observation values and {self.q_network.n_actions} actions, "
                f"but env {env.spec.id if env.spec else self.env_id!r} has {obs_dim} and {n_actions}"
            )

    @classmethod
    def from_result(cls, result: TrainResult, metadata: dict[str, Any] | None = None) -> Agent:
        """The agent a training run produced; its figures go into the metadata."""
        obs_dim, n_actions = _state_dims(result.q_network_state)
        network = QNetwork(obs_dim, n_actions, result.config.hidden_sizes)
        network.load_state_dict(result.q_network_state)
        figures = {"seed": result.seed, "mean_return": result.final_eval.mean, "std_return": result.final_eval.std,
                   "eval_episodes": len(result.final_eval.returns), "steps": result.steps}
        return cls(network, result.config, {"training": figures, **(metadata or {})})


def save_agent(agent: Agent, path: str | os.PathLike[str]) -> Path:
    """Write `agent` to `path` atomically; return the path."""
    target = check_writable(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": agent.config.to_dict(),
        "obs_dim": agent.q_network.obs_dim,
        "n_actions": agent.q_network.n_actions,
        "state_dict": agent.q_network.state_dict(),
        "metadata": {**agent.metadata, "versions": library_versions()},
    }
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def load_agent(path: str | os.PathLike[str]) -> Agent:
    """Load an agent saved by `save_agent`, without running any code from the file."""
    source = Path(path)
    if not source.is_file():
        raise AgentFileError(f"agent file {str(source)!r} does not exist")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean the same to the user
        raise AgentFileError(f"{str(source)!r} is not a readable dqn-tune agent file ({type(exc).__name__})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AgentFileError(f"{str(source)!r} is not a dqn-tune agent file (no '{FORMAT}' header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise AgentFileError(f"{str(source)!r} has agent format version {payload.get('format_version')!r}; "
                             f"this dqn-tune reads version {FORMAT_VERSION}")
    try:
        config = DQNConfig.from_dict(payload["config"])
        network = QNetwork(payload["obs_dim"], payload["n_actions"], config.hidden_sizes)
        state_dict = payload["state_dict"]
    except KeyError as exc:
        raise AgentFileError(f"{str(source)!r} is a damaged dqn-tune agent file: it has no {exc} entry") from exc
    except (TypeError, ConfigError) as exc:
        raise AgentFileError(f"{str(source)!r} is a damaged dqn-tune agent file: {exc}".splitlines()[0]) from exc
    try:
        network.load_state_dict(state_dict)
    except (TypeError, RuntimeError) as exc:
        raise AgentFileError(f"{str(source)!r} is a damaged dqn-tune agent file: its weights do not fit a network with "
                             f"{network.obs_dim} observation values, {network.n_actions} actions and hidden sizes "
                             f"{list(config.hidden_sizes)}") from exc
    return Agent(network, config, payload.get("metadata", {}))


def _state_dims(state: dict[str, torch.Tensor]) -> tuple[int, int]:
    weights = [v for k, v in state.items() if k.endswith("weight")]
    return int(weights[0].shape[1]), int(weights[-1].shape[0])
