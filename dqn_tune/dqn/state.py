"""RunState: the whole mutable state of a group of K runs, built by `open_run` and advanced by loop.py.

Everything a run changes lives here (networks, target networks, optimizer, replay buffer, every random
stream, envs, observations, counters, curves and kept weights) and nowhere else, so the state at a step
boundary is the run: snapshotting it there and restoring it resumes the same run. The random streams
are numpy Generators and the envs' own; the global torch and numpy RNGs play no part.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.envs import env_spaces, make_env
from dqn_tune.dqn.evaluation import Policy, greedy_policy
from dqn_tune.dqn.memory import check_memory
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.networks.base import QNetwork
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.optimizers import make_optimizer
from dqn_tune.dqn.replay import ReplayBuffer, make_replay_buffer
from dqn_tune.errors import DivergenceError


@dataclass(frozen=True, slots=True)
class EvalPoint:
    """One learning-curve evaluation."""

    step: int
    mean_return: float
    std_return: float


@dataclass(frozen=True, slots=True)
class RunSeeds:
    """Independent seeds for each random stream of one run, derived from its integer seed."""

    torch: int
    actions: int
    replay: int
    env: int
    eval_env: int

    @classmethod
    def derive(cls, seed: int) -> RunSeeds:
        """Spawn one seed per stream from `seed` (different streams never share a sequence)."""
        children = np.random.SeedSequence(seed).spawn(5)
        return cls(*(int(child.generate_state(1)[0]) for child in children))


@dataclass(slots=True)
class MemberLog:
    """What one member has recorded so far; `stop_step` is set when it stops (diverged or group end)."""

    curve: list[EvalPoint] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    episode_end_steps: list[int] = field(default_factory=list)
    episode_return: float = 0.0
    best: EvalPoint = EvalPoint(-1, -math.inf, 0.0)
    stop_step: int = 0
    updates: int = 0
    target_updates: int = 0
    diverged: DivergenceError | None = None


@dataclass(eq=False, slots=True)
class RunState:
    """K members of one config at a step boundary."""

    config: DQNConfig
    seeds: tuple[int, ...]
    device: torch.device
    observation: ObservationSpec
    n_actions: int
    envs: list[gym.Env]
    eval_envs: list[gym.Env]
    action_rngs: list[np.random.Generator]
    q_network: QNetwork
    target_network: QNetwork
    optimizer: torch.optim.Optimizer
    replay: ReplayBuffer
    obs: np.ndarray
    """Each member's current observation [K, *obs_shape]."""
    logs: list[MemberLog]
    kept: list[torch.Tensor]
    """Per member, its best evaluated weights (keep_best) or, once diverged, its last finite ones."""
    running: list[int]
    """Members still training (a diverged member stops)."""
    step: int = 0
    updates: int = 0
    target_updates: int = 0
    stopped_early: bool = False
    # derived from the fields above, and scratch arrays that each step overwrites (no per-step allocation)
    params: list[torch.nn.Parameter] = field(init=False)
    loss_fn: Callable[..., torch.Tensor] = field(init=False)
    act: Policy = field(init=False)
    next_obs: np.ndarray = field(init=False)
    actions: np.ndarray = field(init=False)
    rewards: np.ndarray = field(init=False)
    terminated: np.ndarray = field(init=False)
    ended: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        members = len(self.seeds)
        self.params = list(self.q_network.parameters())
        self.loss_fn = F.smooth_l1_loss if self.config.loss == "huber" else F.mse_loss
        self.act = greedy_policy(self.q_network)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(members, dtype=np.int64)
        self.rewards = np.zeros(members, dtype=np.float32)
        self.terminated = np.zeros(members, dtype=bool)
        self.ended = np.zeros(members, dtype=bool)


@contextmanager
def open_run(config: DQNConfig, seeds: Sequence[int], device: torch.device) -> Iterator[RunState]:
    """The state of `len(seeds)` fresh runs of `config` at step 0; their envs are closed on leaving.

    Member k is seeded from `seeds[k]` alone. ConfigError before anything large is allocated if the
    members together cannot fit in memory.
    """
    run_seeds = [RunSeeds.derive(seed) for seed in seeds]
    with ExitStack() as stack:  # every env closed on any exit
        envs = [stack.enter_context(make_env(config.env_id)) for _ in seeds]
        eval_envs = [stack.enter_context(make_env(config.env_id)) for _ in seeds]
        observation, n_actions = env_spaces(envs[0])
        check_memory(config, observation, n_actions, members=len(seeds))
        torch_seeds = [s.torch for s in run_seeds]
        q_network = make_q_network(config, observation, n_actions, len(seeds), seeds=torch_seeds).to(device)
        target_network = make_q_network(config, observation, n_actions, len(seeds), seeds=torch_seeds).to(device)
        obs = np.zeros((len(seeds), *observation.shape), dtype=observation.dtype)
        for k, member_seeds in enumerate(run_seeds):
            obs[k], _ = envs[k].reset(seed=member_seeds.env)
            eval_envs[k].reset(seed=member_seeds.eval_env)
        q_params = list(q_network.parameters())
        yield RunState(
            config=config,
            seeds=tuple(seeds),
            device=device,
            observation=observation,
            n_actions=n_actions,
            envs=envs,
            eval_envs=eval_envs,
            action_rngs=[np.random.default_rng(s.actions) for s in run_seeds],
            q_network=q_network,
            target_network=target_network,
            optimizer=make_optimizer(config, q_params),
            replay=make_replay_buffer(config, observation, [np.random.default_rng(s.replay) for s in run_seeds]),
            obs=obs,
            logs=[MemberLog() for _ in seeds],
            kept=[torch.empty_like(param) for param in q_params],
            running=list(range(len(seeds))),
        )
