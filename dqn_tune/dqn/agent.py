"""The saved-agent format: one torch file of weights, config, observation spec, figures and versions.

Files are written atomically (temp file + rename) and read with `torch.load(weights_only=True)`,
so loading never runs code from the file. Format version 2 holds the state dict of a one-member
network of `config.network` and the env's observation spec; version 1 files (an MLP state dict with
`layers.0.weight`... keys and `obs_dim`, before network families) are migrated when loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import gymnasium as gym
import numpy as np
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.envs import env_spaces, make_env
from dqn_tune.dqn.evaluation import EvalStats, greedy_policy, run_episodes
from dqn_tune.dqn.networks import describe_network, make_q_network
from dqn_tune.dqn.networks.base import QNetwork
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.dqn.untrusted import check_env_id_imports_nothing, check_tensors_stored, load_torch_archive
from dqn_tune.errors import AgentFileError, ConfigError, DQNTuneError
from dqn_tune.output_paths import check_writable, replacing
from dqn_tune.versions import library_versions

FORMAT = "dqn-tune-agent"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


@dataclass
class Agent:
    """A trained Q-network (one member) with the config and env it was trained for."""

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
        return self._act(observation[None])[0]

    def q_values(self, observations: np.ndarray) -> np.ndarray:
        """Q-values of shape (batch, n_actions) for a batch of observations."""
        with torch.inference_mode():
            stored = np.asarray(observations, dtype=self.q_network.observation.dtype)
            return self.q_network(torch.from_numpy(stored)[None])[0].numpy()

    def evaluate(self, episodes: int, *, seed: int) -> EvalStats:
        """Greedy returns over `episodes` episodes of a fresh env seeded with `seed`."""
        env = make_env(self.env_id)
        try:
            self.check_env(env)
            return run_episodes(self._act, [env], episodes, seed=seed)[0]
        finally:
            env.close()

    def check_env(self, env: gym.Env) -> None:
        """Raise AgentFileError if `env` has other observations or actions than the network takes."""
        observation, n_actions = env_spaces(env)
        network = self.q_network
        if not observation.same_layout(network.observation) or n_actions != network.n_actions:
            raise AgentFileError(
                f"agent expects observations of {network.observation.describe()} and {network.n_actions} actions, "
                f"but env {env.spec.id if env.spec else self.env_id!r} has {observation.describe()} and {n_actions}"
            )

    @classmethod
    def from_result(cls, result: TrainResult, metadata: dict[str, Any] | None = None) -> Agent:
        """The agent a training run produced; its figures go into the metadata."""
        network = make_q_network(result.config, result.observation, result.n_actions)
        network.load_state_dict(result.q_network_state)
        figures = {
            "seed": result.seed,
            "mean_return": result.final_eval.mean,
            "std_return": result.final_eval.std,
            "eval_episodes": len(result.final_eval.returns),
            "steps": result.steps,
        }
        return cls(network, result.config, {"training": figures, **(metadata or {})})


def save_agent(agent: Agent, path: str | os.PathLike[str]) -> Path:
    """Write `agent` to `path` atomically; return the path."""
    target = check_writable(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": agent.config.to_dict(),
        "observation": agent.q_network.observation.to_dict(),
        "n_actions": agent.q_network.n_actions,
        "state_dict": agent.q_network.state_dict(),
        "metadata": {**agent.metadata, "versions": library_versions()},
    }
    with replacing(target) as temporary:
        torch.save(payload, temporary)
    return target


def load_agent(path: str | os.PathLike[str], *, env_id: str | None = None) -> Agent:
    """Load an agent saved by `save_agent` (format version 1 or 2), without running any code from the file.

    Any bad file (missing, a directory, empty, truncated, not a torch archive, a pickle, compressed,
    another format version, inconsistent or absurd dimensions, tensors larger than the bytes stored for
    them) is a one-line AgentFileError; nothing larger than the file's own tensors is allocated. `env_id`
    replaces the env the agent was trained on; it is needed when the stored id names a module to import
    ('module:Env'), which the file alone never decides (EnvError).
    """
    source = Path(path)
    payload = _read_payload(source)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise AgentFileError(f"{str(source)!r} is not a dqn-tune agent file (no '{FORMAT}' header)")
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise AgentFileError(
            f"{str(source)!r} has agent format version {version!r}; this dqn-tune reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    damaged = f"{str(source)!r} is a damaged dqn-tune agent file"
    if isinstance(payload.get("state_dict"), dict):  # before any tensor is copied (v1's migration copies)
        check_tensors_stored(payload["state_dict"], source=damaged)
    if version == 1:
        payload = _migrated_from_v1(payload, damaged)
    try:
        entries = {key: payload[key] for key in ("config", "observation", "n_actions", "state_dict")}
    except KeyError as exc:
        raise AgentFileError(f"{damaged}: it has no {exc} entry") from exc
    metadata = payload.get("metadata", {})
    for key, value, ok, accepted in (
        ("config", entries["config"], isinstance(entries["config"], dict), "a dict of hyperparameters"),
        ("n_actions", entries["n_actions"], _is_positive_int(entries["n_actions"]), "an integer >= 1"),
        ("state_dict", entries["state_dict"], isinstance(entries["state_dict"], dict), "a dict of tensors"),
        ("metadata", metadata, isinstance(metadata, dict), "a dict"),
    ):
        if not ok:
            raise AgentFileError(f"{damaged}: {key} = {_short_repr(value)} is invalid: expected {accepted}")
    observation = _observation(entries["observation"])
    if observation is None:
        raise AgentFileError(
            f"{damaged}: observation = {_short_repr(entries['observation'])} is invalid: expected "
            "a dict of shape, dtype, low and high as save_agent writes it"
        )
    try:
        config = DQNConfig.from_dict(entries["config"])
    except (TypeError, ConfigError) as exc:
        raise AgentFileError(f"{damaged}: {exc}".splitlines()[0]) from exc
    if env_id is None:
        check_env_id_imports_nothing(config.env_id, source=f"agent file {str(source)!r}")
    else:
        config = config.replace(env_id=env_id)
    network = _network_for(entries["state_dict"], config, observation, entries["n_actions"])
    if network is None:
        raise AgentFileError(
            f"{damaged}: its weights do not fit a network with observations of "
            f"{observation.describe()}, {entries['n_actions']} actions, "
            f"{describe_network(config, observation)} and dueling = {str(config.dueling).lower()}"
        )
    return Agent(network, config, metadata)


def _migrated_from_v1(payload: dict[Any, Any], damaged: str) -> dict[Any, Any]:
    """A version-1 payload in version 2's form: `obs_dim` as a flat observation spec, and the MLP's state dict
    (nn.Linear layers `layers.{2i}.weight` [out, in] and `.bias`) as the one-member MLP's."""
    obs_dim = payload.get("obs_dim")
    if not _is_positive_int(obs_dim):
        raise AgentFileError(f"{damaged}: obs_dim = {_short_repr(obs_dim)} is invalid: expected an integer >= 1")
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        return {**payload, "observation": ObservationSpec.flat(obs_dim).to_dict()}  # reported as a bad state_dict
    layers = len(state) // 2
    keys = [f"layers.{2 * i}.{name}" for i in range(layers) for name in ("weight", "bias")]
    weights, biases = [state.get(key) for key in keys[::2]], [state.get(key) for key in keys[1::2]]
    if layers < 1 or set(state) != set(keys) or not (_are_tensors(weights, dim=2) and _are_tensors(biases, dim=1)):
        migrated: dict[str, Any] = dict(state)  # keys that no network has: reported as weights that do not fit
    else:
        *hidden, output = zip(weights, biases, strict=True)
        migrated = {f"hidden_weights.{i}": w.T[None].contiguous() for i, (w, _) in enumerate(hidden)}
        migrated |= {f"hidden_biases.{i}": b[None, None] for i, (_, b) in enumerate(hidden)}
        migrated |= {"head_weight": output[0][None], "head_bias": output[1][None, :, None]}
    return {**payload, "observation": ObservationSpec.flat(obs_dim).to_dict(), "state_dict": migrated}


def _observation(data: object) -> ObservationSpec | None:
    """The observation spec stored as `data`, or None if it is not one (absurd sizes included)."""
    if not isinstance(data, dict):
        return None
    try:
        spec = ObservationSpec.from_dict(data)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return spec if spec.dtype.kind in "fiub" else None


def _read_payload(source: Path) -> object:
    """What `torch.load(weights_only=True)` reads from the agent file `source` (`load_torch_archive`)."""
    name = str(source)
    if source.is_dir():
        raise AgentFileError(f"agent path {name!r} is a directory; expected an agent file such as models/agent.pt")
    if not source.exists():
        raise AgentFileError(f"agent file {name!r} does not exist")
    if not source.is_file():
        raise AgentFileError(
            f"agent path {name!r} is not a regular file; expected an agent file such as models/agent.pt"
        )
    return load_torch_archive(source, kind="agent file", error=AgentFileError)


def _network_for(
    state_dict: dict[Any, Any], config: DQNConfig, observation: ObservationSpec, n_actions: int
) -> QNetwork | None:
    """A one-member network of `config` holding `state_dict`, or None if its keys, shapes or dtypes do not fit.

    Shapes are compared on the meta device first, so absurd sizes allocate nothing and the real
    network is never larger than the tensors already read from the file.
    """
    try:
        with torch.device("meta"):
            expected = make_q_network(config, observation, n_actions).state_dict()
    except DQNTuneError:  # a family that cannot take these observations
        return None
    if state_dict.keys() != expected.keys() or not all(
        isinstance(tensor := state_dict[key], torch.Tensor)
        and tensor.layout == torch.strided
        and (tensor.shape, tensor.dtype) == (meta.shape, meta.dtype)
        for key, meta in expected.items()
    ):
        return None
    network = make_q_network(config, observation, n_actions)
    network.load_state_dict(state_dict)
    return network


def _is_positive_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _are_tensors(values: list[Any], *, dim: int) -> TypeGuard[list[torch.Tensor]]:
    return all(isinstance(value, torch.Tensor) and value.dim() == dim for value in values)


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
