"""train(config, seed): one DQN run from a config, returning its weights and learning curve.

The run's whole state lives in the locals of `train`; the helpers below are small and pure, so the
batched trainer (`batched_trainer.train_seeds`, many seeds per step) reuses them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dqn_tune.dqn.config import DQNConfig, check_seed
from dqn_tune.dqn.envs import make_env, space_dims
from dqn_tune.dqn.evaluation import EvalStats, greedy_policy, run_episodes
from dqn_tune.dqn.memory import check_memory
from dqn_tune.dqn.network import QNetwork
from dqn_tune.dqn.replay import Batch, ReplayBuffer
from dqn_tune.errors import DivergenceError

EvalCallback = Callable[[int, float], bool]
"""on_eval(step, mean_return) -> True to stop training now (e.g. an Optuna pruner said so)."""


@dataclass(frozen=True, slots=True)
class EvalPoint:
    """One learning-curve evaluation."""

    step: int
    mean_return: float
    std_return: float


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What one training run produced."""

    config: DQNConfig
    seed: int
    final_eval: EvalStats
    """Greedy returns of the returned weights on config.eval_episodes fresh episodes."""
    curve: tuple[EvalPoint, ...]
    """Learning-curve evaluations every config.eval_freq steps, and one of the last weights."""
    selected_step: int
    """Step whose weights are returned: the last step, or the best evaluation's with config.keep_best."""
    episode_returns: tuple[float, ...]
    """Returns of the training episodes, in order."""
    episode_end_steps: tuple[int, ...]
    """Environment step at which each training episode ended."""
    steps: int
    """Environment steps taken (less than total_timesteps when on_eval stopped the run)."""
    updates: int
    """Gradient steps taken."""
    target_updates: int
    """Target-network updates (one every config.target_update_interval steps)."""
    wall_time_s: float
    steps_per_second: float
    q_network_state: dict[str, torch.Tensor]
    stopped_early: bool
    diverged: DivergenceError | None = None
    """Set by `train_seeds` for a member whose loss became NaN/inf: it stopped at `diverged.step` and its
    result holds what it had by then (`train` raises the error instead)."""

    @property
    def mean_return(self) -> float:
        """The headline figure: mean greedy return of the final evaluation."""
        return self.final_eval.mean


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


def epsilon_at(step: int, config: DQNConfig) -> float:
    """Linearly decayed exploration rate at environment step `step`."""
    decay_steps = config.exploration_fraction * config.total_timesteps
    progress = min(1.0, step / decay_steps)
    return config.exploration_initial_eps + progress * (config.exploration_final_eps - config.exploration_initial_eps)


def td_target(batch: Batch, q_network: nn.Module, target_network: nn.Module, gamma: float,
              double_dqn: bool) -> torch.Tensor:
    """r + gamma * max_a' Q_target(s', a'), cut only where the episode terminated (not truncated).

    Actions are the last dimension: Q-values [batch, actions] (QNetwork) or [K, batch, actions] (stacked).
    """
    with torch.no_grad():
        next_q = target_network(batch.next_obs)
        if double_dqn:
            # max's indices, not argmax: the same first-maximum indices, but argmax is ~15x slower on the stacked
            # network's transposed (non-contiguous) output (110 us against 7 at K=8, batch 128)
            next_actions = q_network(batch.next_obs).max(dim=-1, keepdim=True).indices
            next_value = next_q.gather(-1, next_actions).squeeze(-1)
        else:
            next_value = next_q.amax(dim=-1)
        return batch.rewards + gamma * (1.0 - batch.terminated) * next_value


def update_target(q_network: nn.Module, target_network: nn.Module, tau: float) -> None:
    """Copy (tau == 1) or Polyak-average (tau < 1) the online weights into the target network."""
    with torch.no_grad():
        online, target = list(q_network.parameters()), list(target_network.parameters())
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients of `params` (all set) in place to a total L2 norm of at most `max_norm`.

    The ops of `torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)`, so the results are
    identical, without its per-call grouping of tensors by device and dtype (half its CPU cost).
    """
    grads = [param.grad for param in params]
    total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total_norm + 1e-6), max=1.0))


def gradient_step(loss: torch.Tensor, params: list[torch.Tensor], optimizer: torch.optim.Optimizer,
                  max_grad_norm: float | None,
                  clip: Callable[[list[torch.Tensor], float], None] = clip_grad_norm) -> None:
    """Backpropagate `loss` into fresh gradients of `params`, clip them with `clip`, take one optimizer step."""
    for param in params:  # optimizer.zero_grad(set_to_none=True) without its profiler hook
        param.grad = None
    loss.backward()
    if max_grad_norm is not None:
        clip(params, max_grad_norm)
    optimizer.step()


def train(config: DQNConfig, *, seed: int, on_eval: EvalCallback | None = None, torch_threads: int = 1) -> TrainResult:
    """Train one DQN agent on `config.env_id`; return its weights, learning curve and final evaluation.

    The same (config, seed) gives the same result on CPU. Raises DivergenceError on a NaN/inf loss, and
    ConfigError before allocating anything for a seed outside 0..2**32 - 1 or a config that cannot fit in memory.
    """
    check_seed(seed)
    torch.set_num_threads(torch_threads)
    seeds = RunSeeds.derive(seed)
    torch.manual_seed(seeds.torch)
    action_rng = np.random.default_rng(seeds.actions)
    with make_env(config.env_id) as env, make_env(config.env_id) as eval_env:  # closed on any exit
        obs_dim, n_actions = space_dims(env)
        check_memory(config, obs_dim, n_actions)
        q_network = QNetwork(obs_dim, n_actions, config.hidden_sizes)
        target_network = QNetwork(obs_dim, n_actions, config.hidden_sizes)
        target_network.load_state_dict(q_network.state_dict())
        params = list(q_network.parameters())
        optimizer = torch.optim.Adam(params, lr=config.learning_rate, fused=True)
        loss_fn = F.smooth_l1_loss if config.loss == "huber" else F.mse_loss
        buffer = ReplayBuffer(config.buffer_size, obs_dim, np.random.default_rng(seeds.replay))
        act_greedy = greedy_policy(q_network)

        curve: list[EvalPoint] = []
        episode_returns: list[float] = []
        episode_end_steps: list[int] = []
        episode_return = 0.0
        updates = target_updates = 0
        stopped_early = False
        best_weights: list[torch.Tensor] = [torch.empty_like(param) for param in params]
        best = EvalPoint(-1, -math.inf, 0.0)
        obs, _ = env.reset(seed=seeds.env)
        eval_env.reset(seed=seeds.eval_env)
        start = time.perf_counter()

        step = 0
        while step < config.total_timesteps:
            if action_rng.random() < epsilon_at(step, config):
                action = int(action_rng.integers(n_actions))
            else:
                action = act_greedy(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, action, float(reward), next_obs, terminated)
            episode_return += float(reward)
            step += 1
            if terminated or truncated:
                episode_returns.append(episode_return)
                episode_end_steps.append(step)
                episode_return = 0.0
                obs, _ = env.reset()
            else:
                obs = next_obs

            if step > config.learning_starts and step % config.train_freq == 0:
                for _ in range(config.gradient_steps):
                    batch = buffer.sample(config.batch_size)
                    target = td_target(batch, q_network, target_network, config.gamma, config.double_dqn)
                    q_taken = q_network(batch.obs).gather(1, batch.actions).squeeze(1)
                    loss = loss_fn(q_taken, target)
                    loss_value = loss.item()  # ~1 us on CPU; a NaN/inf loss never reaches the weights
                    if not math.isfinite(loss_value):
                        raise DivergenceError(step, loss_value, from_env=not batch.env_values_finite())
                    gradient_step(loss, params, optimizer, config.max_grad_norm)
                    updates += 1
            if step % config.target_update_interval == 0:
                update_target(q_network, target_network, config.tau)
                target_updates += 1

            if config.eval_freq and step % config.eval_freq == 0 and step < config.total_timesteps:
                stats = run_episodes(act_greedy, eval_env, config.eval_curve_episodes)
                curve.append(EvalPoint(step, stats.mean, stats.std))
                if config.keep_best and stats.mean >= best.mean_return:
                    best = curve[-1]
                    with torch.no_grad():
                        torch._foreach_copy_(best_weights, params)
                if on_eval is not None and on_eval(step, stats.mean):
                    stopped_early = True
                    break

        wall_time = time.perf_counter() - start
        if not curve or curve[-1].step != step:
            stats = run_episodes(act_greedy, eval_env, config.eval_curve_episodes)
            curve.append(EvalPoint(step, stats.mean, stats.std))
        selected_step = step
        if best.mean_return > curve[-1].mean_return:
            selected_step = best.step
            with torch.no_grad():
                torch._foreach_copy_(params, best_weights)
        final_eval = run_episodes(act_greedy, eval_env, config.eval_episodes)
    return TrainResult(
        config=config,
        seed=seed,
        final_eval=final_eval,
        curve=tuple(curve),
        selected_step=selected_step,
        episode_returns=tuple(episode_returns),
        episode_end_steps=tuple(episode_end_steps),
        steps=step,
        updates=updates,
        target_updates=target_updates,
        wall_time_s=wall_time,
        steps_per_second=step / wall_time if wall_time > 0 else float("inf"),
        q_network_state={k: v.detach().clone() for k, v in q_network.state_dict().items()},
        stopped_early=stopped_early,
    )
