"""train_seeds(config, seeds): K independent DQN runs of one config, trained as one batched computation.

Member k is `train(config, seed=seeds[k])` run side by side with the others: the same seed derivation
(`RunSeeds.derive`), schedules, TD target and evaluation, with its own envs, action and replay streams.
What is batched is the arithmetic: one forward pass acts for all K members, the Q-networks are stacked
(`StackedQNetwork`), each gradient step is one stacked update, and one Adam steps all members.

Independence of the members rests on three choices:
- the loss is the *sum* over members of each member's mean TD loss, so member k's gradient is exactly
  its own loss's gradient, and one Adam over the stacked tensors is K Adams (Adam is elementwise and
  the members share the learning rate);
- the gradient-norm clip is computed per member (one norm over all members would couple them);
- a member whose loss is NaN/inf stops there; its slices may then hold NaN, which no op carries across.
Results are not bit-identical to `train` (batched matmuls round differently), but the same seeds give
the same results on CPU, and member k's results do not depend on which other seeds are in the group.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from dqn_tune.dqn.batched_evaluation import run_member_episodes
from dqn_tune.dqn.batched_replay import MemberReplayBuffer
from dqn_tune.dqn.config import DQNConfig, check_seed
from dqn_tune.dqn.envs import make_env, space_dims
from dqn_tune.dqn.evaluation import EvalStats
from dqn_tune.dqn.memory import check_memory
from dqn_tune.dqn.network import QNetwork
from dqn_tune.dqn.replay import Batch
from dqn_tune.dqn.stacked import StackedQNetwork, stacked_greedy_policy
from dqn_tune.dqn.trainer import (
    EvalPoint,
    RunSeeds,
    TrainResult,
    epsilon_at,
    gradient_step,
    train,
    td_target,
    update_target,
)
from dqn_tune.errors import ConfigError, DivergenceError

GroupEvalCallback = Callable[[int, Sequence[float | None]], bool]
"""on_eval(step, mean_returns) -> True to stop every member now (e.g. a pruner said so).

Called at each learning-curve evaluation with one entry per seed, in the order of `seeds`: the member's
mean greedy return, or None for a member that has diverged (it is no longer evaluated).
"""


@dataclass(slots=True)
class _MemberLog:
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


def stacked_members(config: DQNConfig, run_seeds: Sequence[RunSeeds], obs_dim: int, n_actions: int) -> StackedQNetwork:
    """Member k initialised exactly as `train` initialises its QNetwork for the same seed."""
    members = []
    for seeds in run_seeds:
        torch.manual_seed(seeds.torch)
        members.append(QNetwork(obs_dim, n_actions, config.hidden_sizes))
    return StackedQNetwork(members)


def member_losses(batch: Batch, q_network: StackedQNetwork, target_network: StackedQNetwork,
                  config: DQNConfig) -> torch.Tensor:
    """Each member's mean TD loss over its own minibatch, shape [K]."""
    target = td_target(batch, q_network, target_network, config.gamma, config.double_dqn)
    q_taken = q_network(batch.obs).gather(-1, batch.actions).squeeze(-1)
    loss_fn = F.smooth_l1_loss if config.loss == "huber" else F.mse_loss
    return loss_fn(q_taken, target, reduction="none").mean(dim=1)


def clip_member_grad_norms(params: list[torch.Tensor], max_norm: float) -> None:
    """Scale each member's gradients (leading axis of every param) to an L2 norm of at most `max_norm`.

    Per member, the same arithmetic as `trainer.clip_grad_norm` on that member's parameters.
    """
    grads = [param.grad for param in params]
    norms = torch.stack([torch.linalg.vector_norm(grad, dim=(1, 2)) for grad in grads])  # [n_params, K]
    scale = torch.clamp(max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6), max=1.0)
    torch._foreach_mul_(grads, [scale.view(-1, 1, 1)] * len(grads))


def copy_member(destination: Sequence[torch.Tensor], source: Sequence[torch.Tensor], member: int) -> None:
    """Copy member `member`'s slice of each stacked tensor in `source` into `destination`."""
    with torch.no_grad():
        for dst, src in zip(destination, source):
            dst[member] = src[member]


def train_seeds(config: DQNConfig, seeds: Sequence[int], *, on_eval: GroupEvalCallback | None = None,
                device: str | torch.device = "cpu", torch_threads: int = 1) -> list[TrainResult]:
    """Train one DQN agent per seed on `config`, all in one loop; one TrainResult per seed, in order.

    Member k follows `train(config, seed=seeds[k])`'s algorithm. A member whose loss becomes NaN/inf
    stops and is returned with `diverged` set (its curve, steps and updates up to then; its weights the
    last finite ones, or its best evaluated ones with keep_best); the others go on. Nothing is raised
    for divergence. `on_eval` may stop the whole group (see GroupEvalCallback). `wall_time_s` is the
    group's; `steps_per_second` is the member's steps over it. `device` places networks and minibatches
    (e.g. "cuda"); envs and the replay buffer stay on the CPU. Deterministic on CPU. Raises ConfigError
    for no seeds, a seed outside 0..2**32 - 1, or members that together cannot fit in memory (checked
    before anything is allocated).
    """
    if not seeds:
        raise ConfigError("seeds is empty: expected at least one seed", field="seeds")
    for i, seed in enumerate(seeds):
        check_seed(seed, name=f"seeds[{i}]")
    torch.set_num_threads(torch_threads)
    device = torch.device(device)
    n_members = len(seeds)
    run_seeds = [RunSeeds.derive(seed) for seed in seeds]
    action_rngs = [np.random.default_rng(s.actions) for s in run_seeds]
    with ExitStack() as stack:  # every env closed on any exit
        envs = [stack.enter_context(make_env(config.env_id)) for _ in seeds]
        eval_envs = [stack.enter_context(make_env(config.env_id)) for _ in seeds]
        obs_dim, n_actions = space_dims(envs[0])
        check_memory(config, obs_dim, n_actions, members=n_members)
        q_network = stacked_members(config, run_seeds, obs_dim, n_actions).to(device)
        target_network = stacked_members(config, run_seeds, obs_dim, n_actions).to(device)
        params = list(q_network.parameters())
        optimizer = torch.optim.Adam(params, lr=config.learning_rate, fused=True)
        buffer = MemberReplayBuffer(config.buffer_size, obs_dim, [np.random.default_rng(s.replay) for s in run_seeds])
        act = stacked_greedy_policy(q_network)

        logs = [_MemberLog() for _ in seeds]
        kept: list[torch.Tensor] = [torch.empty_like(param) for param in params]  # keep_best / divergence weights
        running = list(range(n_members))
        updates = target_updates = 0
        stopped_early = False
        obs = np.zeros((n_members, obs_dim), dtype=np.float32)
        next_obs = np.zeros_like(obs)
        actions = np.zeros(n_members, dtype=np.int64)
        rewards = np.zeros(n_members, dtype=np.float32)
        terminated = np.zeros(n_members, dtype=np.float32)
        for k, seeds_k in enumerate(run_seeds):
            obs[k], _ = envs[k].reset(seed=seeds_k.env)
            eval_envs[k].reset(seed=seeds_k.eval_env)
        start = time.perf_counter()

        step = 0
        while step < config.total_timesteps and running:
            epsilon = epsilon_at(step, config)
            explore = [action_rngs[k].random() < epsilon for k in running]
            greedy = [] if all(explore) else act(obs)
            step += 1
            ended = []
            for k, explores in zip(running, explore):
                action = int(action_rngs[k].integers(n_actions)) if explores else greedy[k]
                next_obs[k], reward, terminated[k], truncated, _ = envs[k].step(action)
                actions[k] = action
                rewards[k] = reward
                log = logs[k]
                log.episode_return += float(reward)
                if terminated[k] or truncated:
                    log.episode_returns.append(log.episode_return)
                    log.episode_end_steps.append(step)
                    log.episode_return = 0.0
                    ended.append(k)
            buffer.add(obs, actions, rewards, next_obs, terminated)
            obs[:] = next_obs
            for k in ended:
                obs[k], _ = envs[k].reset()

            if step > config.learning_starts and step % config.train_freq == 0:
                for _ in range(config.gradient_steps):
                    batch = buffer.sample(config.batch_size, device)
                    losses = member_losses(batch, q_network, target_network, config)
                    loss_values = losses.tolist()  # a NaN/inf loss stops its member before it reaches the weights
                    for k in [member for member in running if not math.isfinite(loss_values[member])]:
                        logs[k].diverged = DivergenceError(step, loss_values[k],
                                                           from_env=not batch.member(k).env_values_finite())
                        _stop(logs[k], step, updates, target_updates)
                        if not (config.keep_best and logs[k].best.step >= 0):
                            copy_member(kept, params, k)
                        running.remove(k)
                    if not running:
                        break
                    gradient_step(losses.sum(), params, optimizer, config.max_grad_norm, clip_member_grad_norms)
                    updates += 1
            if step % config.target_update_interval == 0:
                update_target(q_network, target_network, config.tau)
                target_updates += 1

            if config.eval_freq and step % config.eval_freq == 0 and step < config.total_timesteps and running:
                stats = run_member_episodes(act, eval_envs, config.eval_curve_episodes, running)
                _record(logs, stats, step, config.keep_best, kept, params)
                if on_eval is not None and on_eval(step, [stats[k].mean if k in stats else None
                                                          for k in range(n_members)]):
                    stopped_early = True
                    break

        wall_time = time.perf_counter() - start
        last = [k for k in running if not logs[k].curve or logs[k].curve[-1].step != step]
        _record(logs, run_member_episodes(act, eval_envs, config.eval_curve_episodes, last), step, False, kept, params)
        selected_steps = []
        for k, log in enumerate(logs):
            if log.diverged is None:
                _stop(log, step, updates, target_updates)
            use_kept, selected_step = _selection(log)
            if use_kept:
                copy_member(params, kept, k)
            selected_steps.append(selected_step)
        final_evals = run_member_episodes(act, eval_envs, config.eval_episodes, range(n_members))
    return [_result(config, seeds[k], logs[k], final_evals[k], selected_steps[k], wall_time,
                    q_network.member_state_dict(k), stopped_early and logs[k].diverged is None)
            for k in range(n_members)]


def train_runs(config: DQNConfig, seeds: Sequence[int], *, on_eval: GroupEvalCallback | None = None,
               device: str = "cpu") -> list[TrainResult]:
    """The runs of `seeds`: `train_seeds` for a group or another device (a diverged run comes back marked);
    the single-run `train` for one seed on the CPU, 10-14% cheaper there (scripts/bench_trainer.py --seeds 1),
    which raises DivergenceError instead."""
    if len(seeds) > 1 or device != "cpu":
        return train_seeds(config, seeds, on_eval=on_eval, device=device)
    group_eval = None if on_eval is None else (lambda step, mean_return: on_eval(step, [mean_return]))
    return [train(config, seed=seeds[0], on_eval=group_eval)]


def _stop(log: _MemberLog, step: int, updates: int, target_updates: int) -> None:
    log.stop_step, log.updates, log.target_updates = step, updates, target_updates


def _selection(log: _MemberLog) -> tuple[bool, int]:
    """(whether the member's result is its kept weights rather than its last, the step they are from)."""
    if log.best.step >= 0 and (log.diverged is not None or log.best.mean_return > log.curve[-1].mean_return):
        return True, log.best.step
    return log.diverged is not None, log.stop_step  # a diverged member's kept weights: its last finite ones


def _record(logs: Sequence[_MemberLog], stats: dict[int, EvalStats], step: int, keep_best: bool,
            kept: Sequence[torch.Tensor], params: Sequence[torch.Tensor]) -> None:
    """Append each evaluated member's curve point; with keep_best, keep the weights of a new best."""
    for k, member_stats in stats.items():
        point = EvalPoint(step, member_stats.mean, member_stats.std)
        logs[k].curve.append(point)
        if keep_best and point.mean_return >= logs[k].best.mean_return:
            logs[k].best = point
            copy_member(kept, params, k)


def _result(config: DQNConfig, seed: int, log: _MemberLog, final_eval: EvalStats, selected_step: int,
            wall_time: float, q_network_state: dict[str, torch.Tensor], stopped_early: bool) -> TrainResult:
    return TrainResult(
        config=config,
        seed=seed,
        final_eval=final_eval,
        curve=tuple(log.curve),
        selected_step=selected_step,
        episode_returns=tuple(log.episode_returns),
        episode_end_steps=tuple(log.episode_end_steps),
        steps=log.stop_step,
        updates=log.updates,
        target_updates=log.target_updates,
        wall_time_s=wall_time,
        steps_per_second=log.stop_step / wall_time if wall_time > 0 else float("inf"),
        q_network_state=q_network_state,
        stopped_early=stopped_early,
        diverged=log.diverged,
    )
