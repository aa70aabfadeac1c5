"""The DQN loop, once, for K members: act, store, update, copy the target, evaluate; one env step at a time.

Every function advances a `RunState` (state.py). The members are independent runs: each has its own
envs, random streams and replay rows, the loss is the *sum* over members of each member's mean TD
loss (so member k's gradient is exactly its own), the gradient-norm clip is per member, and one optimizer
over the stacked parameters is K optimizers (Adam and RMSprop are elementwise and the members share the
learning rate).
A member whose loss is NaN/inf stops there; its slices may then hold NaN, which no op carries across.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.evaluation import run_episodes
from dqn_tune.dqn.networks.base import QNetwork
from dqn_tune.dqn.replay import Batch
from dqn_tune.dqn.state import EvalPoint, RunState
from dqn_tune.errors import DivergenceError

GroupEvalCallback = Callable[[int, Sequence[float | None]], bool]
"""on_eval(step, mean_returns) -> True to stop every member now (e.g. a pruner said so).

Called at each learning-curve evaluation with one entry per member, in seed order: the member's mean
greedy return, or None for a member that has diverged (it is no longer evaluated).
"""


def epsilon_at(step: int, config: DQNConfig) -> float:
    """Linearly decayed exploration rate at environment step `step`."""
    decay_steps = config.exploration_fraction * config.total_timesteps
    progress = min(1.0, step / decay_steps)
    return config.exploration_initial_eps + progress * (config.exploration_final_eps - config.exploration_initial_eps)


def per_beta_at(step: int, config: DQNConfig) -> float:
    """Prioritized replay's importance-sampling exponent: per_beta at step 0, linearly to 1 at total_timesteps."""
    return config.per_beta + min(1.0, step / config.total_timesteps) * (1.0 - config.per_beta)


def advance(state: RunState, on_eval: GroupEvalCallback | None) -> bool:
    """One env step of every running member, then the updates, target copy and evaluation due at that step.

    Returns True when `on_eval` asked to stop.
    """
    config = state.config
    collect(state)
    if state.step > config.learning_starts and state.step % config.train_freq == 0:
        for _ in range(config.gradient_steps):
            update(state)
            if not state.running:
                return False
    if state.step % config.target_update_interval == 0:
        update_target(state.q_network, state.target_network, config.tau)
        state.target_updates += 1
    if config.eval_freq and state.step % config.eval_freq == 0 and state.step < config.total_timesteps:
        return evaluate(state, on_eval)
    return False


def collect(state: RunState) -> None:
    """Each running member takes one epsilon-greedy action in its env; the transitions go to the replay buffer."""
    epsilon = epsilon_at(state.step, state.config)
    explore = [state.action_rngs[k].random() < epsilon for k in state.running]
    greedy = [] if all(explore) else state.act(state.obs)
    state.step += 1
    ended = []
    for k, explores in zip(state.running, explore, strict=True):
        action = int(state.action_rngs[k].integers(state.n_actions)) if explores else greedy[k]
        state.next_obs[k], reward, terminated, truncated, _ = state.envs[k].step(action)
        state.actions[k], state.rewards[k], state.terminated[k] = action, reward, terminated
        log = state.logs[k]
        log.episode_return += float(reward)
        state.ended[k] = done = terminated or truncated
        if done:
            log.episode_returns.append(log.episode_return)
            log.episode_end_steps.append(state.step)
            log.episode_return = 0.0
            ended.append(k)
    state.replay.add(state.obs, state.actions, state.rewards, state.next_obs, state.terminated, state.ended)
    state.obs[:] = state.next_obs
    for k in ended:
        state.obs[k], _ = state.envs[k].reset()


def td_target(batch: Batch, q_network: QNetwork, target_network: QNetwork, double_dqn: bool) -> torch.Tensor:
    """The n-step TD target [K, batch]: the return plus gamma^m times the target network's value of the state
    reached, unless the episode terminated (batch.discounts is 0 there; a time-limit truncation bootstraps)."""
    with torch.no_grad():
        next_q = target_network(batch.next_obs)
        if double_dqn:  # the online network picks the next action, the target network values it
            # max's indices, not argmax: the same first maxima, far cheaper here (docs/performance-core.md)
            next_actions = q_network(batch.next_obs).max(dim=-1, keepdim=True).indices
            next_value = next_q.gather(-1, next_actions).squeeze(-1)
        else:
            next_value = next_q.amax(dim=-1)
        return batch.rewards + batch.discounts * next_value


def update(state: RunState) -> None:
    """One gradient step of every member on its own minibatch: CleanRL's dqn.py update with a member axis."""
    config, q_network = state.config, state.q_network
    batch = state.replay.sample(config.batch_size, state.device, beta=per_beta_at(state.step, config))
    target = td_target(batch, q_network, state.target_network, config.double_dqn)

    # loss: the sum over members of each member's mean TD loss (importance-weighted with prioritized replay),
    # as the mean over all members' minibatches times K: member k's gradient is exactly its own loss's
    q_taken = q_network(batch.obs).gather(-1, batch.actions).squeeze(-1)
    if batch.weights is None:
        loss = state.loss_fn(q_taken, target)
    else:
        loss = (state.loss_fn(q_taken, target, reduction="none") * batch.weights).mean()
    if len(state.seeds) > 1:
        loss = loss * len(state.seeds)
    if not math.isfinite(loss.item()):  # a NaN/inf loss stops its member before it reaches the weights
        stop_diverged(state, state.loss_fn(q_taken.detach(), target, reduction="none").mean(dim=1).tolist(), batch)
        if not state.running:
            return

    # gradient step: fresh gradients, clipped per member, one optimizer step (fused Adam) for all members
    for param in state.params:  # optimizer.zero_grad(set_to_none=True) without its profiler hook
        param.grad = None
    loss.backward()
    if config.max_grad_norm is not None:
        clip_member_grad_norms(state.params, config.max_grad_norm)
    state.optimizer.step()
    state.updates += 1
    if batch.weights is not None:  # prioritized replay: new priorities from the TD errors
        state.replay.update_priorities(batch.slots, (target - q_taken.detach()).cpu().numpy())


def clip_member_grad_norms(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """Scale each member's gradients (leading axis of every param) to an L2 norm of at most `max_norm`.

    One member: the ops of `torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)`, without its
    per-call grouping of tensors by device and dtype (half its CPU cost).
    """
    grads = [param.grad for param in params if param.grad is not None]
    if len(grads[0]) == 1:
        total_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        torch._foreach_mul_(grads, torch.clamp(max_norm / (total_norm + 1e-6), max=1.0))
        return
    norms = torch.stack([torch.linalg.vector_norm(grad, dim=tuple(range(1, grad.dim()))) for grad in grads])  # [P, K]
    scale = torch.clamp(max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6), max=1.0)
    torch._foreach_mul_(grads, [scale.view(-1, *[1] * (grad.dim() - 1)) for grad in grads])


def update_target(q_network: torch.nn.Module, target_network: torch.nn.Module, tau: float) -> None:
    """Copy (tau == 1) or Polyak-average (tau < 1) the online weights into the target network."""
    with torch.no_grad():
        online: list[torch.Tensor] = list(q_network.parameters())
        target: list[torch.Tensor] = list(target_network.parameters())
        if tau >= 1.0:
            torch._foreach_copy_(target, online)
        else:
            torch._foreach_lerp_(target, online, tau)


def stop_diverged(state: RunState, member_losses: list[float], batch: Batch) -> None:
    """Stop each running member whose loss is NaN/inf, keeping its last finite weights unless it has best ones;
    the error says whether the env gave the NaN (in the member's batch) or training diverged."""
    for k in [member for member in state.running if not math.isfinite(member_losses[member])]:
        log = state.logs[k]
        log.diverged = DivergenceError(state.step, member_losses[k], from_env=not batch.env_values_finite(k))
        stop_member(state, k)
        if not (state.config.keep_best and log.best.step >= 0):
            copy_member(state.kept, state.params, k)
        state.running.remove(k)


def stop_member(state: RunState, member: int) -> None:
    """Record where member `member` stopped."""
    log = state.logs[member]
    log.stop_step, log.updates, log.target_updates = state.step, state.updates, state.target_updates


def evaluate(state: RunState, on_eval: GroupEvalCallback | None) -> bool:
    """A learning-curve evaluation of the running members; True when `on_eval` asks to stop."""
    if not state.running:
        return False
    stats = run_episodes(state.act, state.eval_envs, state.config.eval_curve_episodes, members=state.running)
    record_curve(state, {k: EvalPoint(state.step, s.mean, s.std) for k, s in stats.items()}, state.config.keep_best)
    if on_eval is not None and on_eval(
        state.step, [stats[k].mean if k in stats else None for k in range(len(state.seeds))]
    ):
        state.stopped_early = True
        return True
    return False


def record_curve(state: RunState, points: dict[int, EvalPoint], keep_best: bool) -> None:
    """Append each evaluated member's curve point; with keep_best, keep the weights of a new best."""
    for k, point in points.items():
        log = state.logs[k]
        log.curve.append(point)
        if keep_best and point.mean_return >= log.best.mean_return:
            log.best = point
            copy_member(state.kept, state.params, k)


def copy_member(destination: Sequence[torch.Tensor], source: Sequence[torch.Tensor], member: int) -> None:
    """Copy member `member`'s slice of each stacked tensor in `source` into `destination`."""
    with torch.no_grad():
        for dst, src in zip(destination, source, strict=True):
            dst[member] = src[member]
