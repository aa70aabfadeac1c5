"""Checkpoints of a group run: its RunState at a step boundary as one torch file, and back.

A checkpoint holds everything `RunState` says a run changes (state.py): networks, target networks,
Adam's state, the replay buffer with its samplers' Generators and sum trees, the action Generators,
each env and eval env (env_state.py), observations, counters, curves, episode returns and kept
weights. Restored into a fresh `open_run` of the same config and seeds, the run continues exactly as
if it had never stopped (on CPU, bit for bit), except for a member whose env could not be captured:
its training episode restarts at resume (the cut episode counts as truncated; its return is dropped).

Only tensors and plain data are written, and files are read with `torch.load(weights_only=True)`:
loading a checkpoint never runs code from it. numpy arrays travel as tensors (a 0-d one comes back
as a numpy scalar). Any damaged, truncated or foreign file is a one-line CheckpointError.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.env_state import env_state, restorable, set_env_state
from dqn_tune.dqn.random_state import generator_states, set_generator_states
from dqn_tune.dqn.state import EvalPoint, MemberLog, RunState
from dqn_tune.dqn.untrusted import check_tensors_stored, load_torch_archive
from dqn_tune.errors import AgentFileError, CheckpointError, DivergenceError
from dqn_tune.output_paths import replacing

FORMAT = "dqn-tune-checkpoint"
FORMAT_VERSION = 1
FILE_NAME = "checkpoint.pt"
"""Name of the checkpoint file handed to `Checkpointing.save`."""

SaveCheckpoint = Callable[[Path, int], None]
"""save(path, step): keep the finished checkpoint file `path`, written at env step `step` (it is deleted after)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A checkpoint read from a file, checked to belong to the run it resumes."""

    payload: dict[str, Any]

    @property
    def step(self) -> int:
        """The env step it was written at: the run resumes after it."""
        return int(self.payload["step"])

    @property
    def train_seconds(self) -> float:
        """The training loop's wall time up to the checkpoint, over every run it continues."""
        return float(self.payload["train_seconds"])

    @property
    def restarted(self) -> list[int]:
        """Members whose env state could not be captured: their training episode restarts at resume."""
        return [k for k, env in enumerate(self.payload["envs"]) if not restorable(env)]

    def curves(self) -> list[list[EvalPoint]]:
        """Each member's learning-curve evaluations up to the checkpoint."""
        return [[EvalPoint(*point) for point in log["curve"]] for log in self.payload["logs"]]


@dataclass(frozen=True, slots=True)
class Checkpointing:
    """How a group run saves checkpoints, and the one it resumes from."""

    every: int
    """Env steps between two checkpoints (0: none)."""
    save: SaveCheckpoint
    resume: Checkpoint | None = None
    on_resume: Callable[[Checkpoint], None] | None = None
    """Called once the run stands where `resume` was taken, before its next step."""

    def start(self, state: RunState) -> float:
        """Put the fresh `state` where `resume` was taken (nothing to do without one), then call `on_resume`; the
        training seconds the run had before (0 for a new run). CheckpointError if `resume` does not fit."""
        if self.resume is None:
            return 0.0
        restore(state, self.resume)
        if self.on_resume is not None:
            self.on_resume(self.resume)
        return self.resume.train_seconds

    def due(self, state: RunState) -> bool:
        """Whether a checkpoint is due at the state's step (never at the run's end: the run finishes there)."""
        return (
            self.every > 0
            and state.step % self.every == 0
            and state.step < state.config.total_timesteps
            and bool(state.running)
        )


def save_checkpoint(state: RunState, save: SaveCheckpoint, *, train_seconds: float) -> None:
    """Write the state to a checkpoint file in a temporary directory and hand it to `save`."""
    with tempfile.TemporaryDirectory(prefix="dqn_tune_checkpoint_") as directory:
        path = Path(directory) / FILE_NAME
        with replacing(path) as temporary:
            torch.save(capture(state, train_seconds=train_seconds), temporary)
        save(path, state.step)


def capture(state: RunState, *, train_seconds: float) -> dict[str, Any]:
    """The state as tensors and plain data (copies: the run may go on)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": state.config.to_dict(),
        "seeds": list(state.seeds),
        "step": state.step,
        "updates": state.updates,
        "target_updates": state.target_updates,
        "train_seconds": train_seconds,
        "q_network": _cloned(state.q_network.state_dict()),
        "target_network": _cloned(state.target_network.state_dict()),
        "optimizer": _tensors(state.optimizer.state_dict()),
        "kept": [tensor.clone() for tensor in state.kept],
        "replay": _tensors(state.replay.state_dict()),
        "action_rngs": generator_states(state.action_rngs),
        "envs": [_tensors(env_state(env)) for env in state.envs],
        "eval_envs": [_tensors(env_state(env)) for env in state.eval_envs],
        "obs": torch.from_numpy(state.obs.copy()),
        "logs": [_log_data(log) for log in state.logs],
        "running": list(state.running),
    }


def read_checkpoint(
    path: Path, *, config: Mapping[str, Any], seeds: Sequence[int], name: str | None = None
) -> Checkpoint:
    """The checkpoint in the file `path`, if it is one of a run of `config` (DQNConfig.to_dict()) on `seeds`;
    CheckpointError for anything else (damaged, truncated, another format or run), naming the file as `name`
    (default: its path)."""
    name = name or repr(str(path))
    payload = load_torch_archive(path, kind="checkpoint", error=CheckpointError, name=name)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a dqn-tune checkpoint (no '{FORMAT}' header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has checkpoint format version {payload.get('format_version')!r}; "
            f"this dqn-tune reads version {FORMAT_VERSION}"
        )
    if not same_config(payload.get("config"), config) or payload.get("seeds") != list(seeds):
        raise CheckpointError(f"{name} is a checkpoint of another run (config or seeds differ)")
    try:
        check_tensors_stored(dict(_flat_tensors(payload)), source=f"{name} is a damaged checkpoint")
        _check_summary(payload)
    except AgentFileError as exc:
        raise CheckpointError(str(exc)) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{name} is a damaged checkpoint: {type(exc).__name__}: {exc}") from None
    return Checkpoint(payload)


def same_config(saved: object, config: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's stored config is `config` (DQNConfig.to_dict()): equal, or written before some
    fields existed and `config` has those at their defaults (a field is added with the default that keeps the
    old behaviour), so that a study resumed by a newer dqn-tune resumes its checkpoints."""
    if not isinstance(saved, dict) or not set(saved) <= set(config):
        return False
    defaults = DQNConfig().to_dict()
    return all(saved[key] == value if key in saved else value == defaults[key] for key, value in config.items())


def _check_summary(payload: dict[str, Any]) -> None:
    """KeyError, TypeError or ValueError unless what `Checkpoint` reads before restoring is there and well typed."""
    step, seconds = payload["step"], payload["train_seconds"]
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step = {step!r} is not an env step")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise TypeError(f"train_seconds = {seconds!r} is not a number")
    for env in payload["envs"]:
        restorable(env)


def restore(state: RunState, checkpoint: Checkpoint) -> None:
    """Put a fresh state (`open_run` of the checkpoint's config and seeds) where the checkpoint was taken.

    CheckpointError if any part does not fit; the state is then unusable (open a fresh one).
    """
    data = checkpoint.payload
    try:
        _restore(state, data)
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint of step {data.get('step')!r} does not fit the run: {type(exc).__name__}: {exc}".splitlines()[0]
        ) from None


def _restore(state: RunState, data: dict[str, Any]) -> None:
    members = len(state.seeds)
    logs = [_log(log) for log in data["logs"]]
    running = [int(k) for k in data["running"]]
    if (
        len(logs) != members
        or len(data["envs"]) != members
        or len(data["eval_envs"]) != members
        or any(k not in range(members) for k in running)
    ):
        raise ValueError(f"the checkpoint is not of {members} members")
    _check_like("q_network", data["q_network"], state.q_network.state_dict())
    _check_like("target_network", data["target_network"], state.target_network.state_dict())
    _check_like("kept", dict(enumerate(data["kept"])), dict(enumerate(state.kept)))
    _check_like("obs", {"obs": data["obs"]}, {"obs": torch.from_numpy(state.obs)})
    _check_optimizer(data["optimizer"], state.params)
    state.q_network.load_state_dict(data["q_network"])
    state.target_network.load_state_dict(data["target_network"])
    state.optimizer.load_state_dict(data["optimizer"])
    with torch.no_grad():
        for kept, saved in zip(state.kept, data["kept"], strict=True):
            kept.copy_(saved)
    state.replay.load_state_dict(_arrays(data["replay"]))
    set_generator_states(state.action_rngs, data["action_rngs"])
    for env, saved in zip(state.eval_envs, data["eval_envs"], strict=True):
        set_env_state(env, _arrays(saved))
    state.obs[:] = data["obs"].numpy()
    for k, (env, saved) in enumerate(zip(state.envs, data["envs"], strict=True)):
        set_env_state(env, _arrays(saved))
        if not restorable(saved):  # its episode restarts: the cut one ends here, its return so far is dropped
            state.obs[k], _ = env.reset()
            state.replay.end_episode(k)
            logs[k].episode_return = 0.0
    state.logs[:] = logs
    state.running[:] = running
    state.step, state.updates, state.target_updates = (
        int(data["step"]),
        int(data["updates"]),
        int(data["target_updates"]),
    )


def _check_like(name: str, saved: Mapping[Any, Any], fresh: Mapping[Any, torch.Tensor]) -> None:
    """ValueError unless `saved` holds tensors of the same names, shapes and dtypes as `fresh`."""
    if not isinstance(saved, Mapping) or set(saved) != set(fresh):
        raise ValueError(f"{name} holds other tensors")
    for key, tensor in fresh.items():
        other = saved[key]
        if not isinstance(other, torch.Tensor) or other.shape != tensor.shape or other.dtype != tensor.dtype:
            raise ValueError(f"{name} {key!r} is not a {tensor.dtype} tensor of shape {list(tensor.shape)}")


def _check_optimizer(saved: Mapping[str, Any], params: Sequence[torch.Tensor]) -> None:
    """ValueError unless each per-parameter tensor in `saved` (Adam's moments, RMSprop's averages; not the
    step counts) has its parameter's shape and dtype: torch checks the groups, not these."""
    for index, entry in saved["state"].items():
        tensors = {name: value for name, value in entry.items() if name != "step"}
        _check_like(f"optimizer state {index}", tensors, dict.fromkeys(tensors, params[index]))


def _log_data(log: MemberLog) -> dict[str, Any]:
    diverged = log.diverged
    return {
        "curve": [[p.step, p.mean_return, p.std_return] for p in log.curve],
        "episode_returns": list(log.episode_returns),
        "episode_end_steps": list(log.episode_end_steps),
        "episode_return": log.episode_return,
        "best": [log.best.step, log.best.mean_return, log.best.std_return],
        "stop_step": log.stop_step,
        "updates": log.updates,
        "target_updates": log.target_updates,
        "diverged": None if diverged is None else [diverged.step, diverged.loss, diverged.from_env],
    }


def _log(data: Mapping[str, Any]) -> MemberLog:
    diverged = data["diverged"]
    return MemberLog(
        curve=[EvalPoint(int(step), float(mean), float(std)) for step, mean, std in data["curve"]],
        episode_returns=[float(value) for value in data["episode_returns"]],
        episode_end_steps=[int(step) for step in data["episode_end_steps"]],
        episode_return=float(data["episode_return"]),
        best=EvalPoint(*data["best"]),
        stop_step=int(data["stop_step"]),
        updates=int(data["updates"]),
        target_updates=int(data["target_updates"]),
        diverged=None
        if diverged is None
        else DivergenceError(int(diverged[0]), float(diverged[1]), from_env=bool(diverged[2])),
    )


def _cloned(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in tensors.items()}


def _tensors(value: Any) -> Any:
    """Plain data with every numpy array or scalar as a tensor (torch.load(weights_only=True) reads no numpy)."""
    if isinstance(value, (np.ndarray, np.generic)):
        return torch.from_numpy(np.array(value))
    if isinstance(value, (list, tuple)):
        return type(value)(_tensors(item) for item in value)
    if isinstance(value, dict):
        return {key: _tensors(item) for key, item in value.items()}
    return value


def _arrays(value: Any) -> Any:
    """Inverse of `_tensors`: tensors as numpy arrays, a 0-d one as a numpy scalar."""
    if isinstance(value, torch.Tensor):
        array = value.numpy()
        return array[()] if array.ndim == 0 else array
    if isinstance(value, (list, tuple)):
        return type(value)(_arrays(item) for item in value)
    if isinstance(value, dict):
        return {key: _arrays(item) for key, item in value.items()}
    return value


def _flat_tensors(value: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in nested plain data, with a path naming it."""
    if isinstance(value, torch.Tensor):
        return [(prefix, value)]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    return [pair for key, item in items for pair in _flat_tensors(item, f"{prefix}/{key}")]
