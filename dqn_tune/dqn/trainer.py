"""train(config, seed) and train_seeds(config, seeds): DQN runs from a config, with weights and curves.

Both run the one loop (loop.py) over a member axis: `train` is its one-member case, `train_seeds`
trains K seeds of one config side by side as one batched computation (one forward pass acts for all
members, each gradient step is one stacked update). Member k's results are those of `train(config,
seed=seeds[k])` step for step (the weights differ only by the rounding of batched matmuls), and do not
depend on which other seeds are in the group. The same seeds give the same results on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from dqn_tune.dqn.checkpoint import Checkpointing, save_checkpoint
from dqn_tune.dqn.config import DQNConfig, check_seed
from dqn_tune.dqn.denormals import denormals_flushed
from dqn_tune.dqn.evaluation import EvalStats, run_episodes
from dqn_tune.dqn.loop import GroupEvalCallback, advance, copy_member, record_curve, stop_member
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.state import EvalPoint, MemberLog, RunState, open_run
from dqn_tune.errors import ConfigError, DivergenceError

__all__ = ["EvalCallback", "EvalPoint", "GroupEvalCallback", "TrainResult", "train", "train_seeds"]

EvalCallback = Callable[[int, float], bool]
"""on_eval(step, mean_return) -> True to stop training now (e.g. an Optuna pruner said so)."""


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
    """The loop's wall time (the whole group's for `train_seeds`), final evaluation excluded."""
    steps_per_second: float
    observation: ObservationSpec
    """The env's observations, which the network takes."""
    n_actions: int
    q_network_state: dict[str, torch.Tensor]
    """The weights as the state dict of a one-member network of config.network (`make_q_network`)."""
    stopped_early: bool
    diverged: DivergenceError | None = None
    """Set for a run whose loss became NaN/inf: it stopped at `diverged.step` and its result holds what it had
    by then, its weights the last finite ones (or its best evaluated ones with keep_best)."""

    @property
    def mean_return(self) -> float:
        """The headline figure: mean greedy return of the final evaluation."""
        return self.final_eval.mean


def train(
    config: DQNConfig,
    *,
    seed: int,
    on_eval: EvalCallback | None = None,
    device: str | torch.device = "cpu",
    torch_threads: int = 1,
) -> TrainResult:
    """Train one DQN agent on `config.env_id`; return its weights, learning curve and final evaluation.

    `train_seeds(config, [seed])`, raising the run's DivergenceError if its loss became NaN/inf. ConfigError
    before allocating anything for a seed outside 0..2**32 - 1 or a config that cannot fit in memory.
    """
    group_eval = None if on_eval is None else (lambda step, returns: on_eval(step, returns[0]))
    (result,) = train_seeds(config, [check_seed(seed)], on_eval=group_eval, device=device, torch_threads=torch_threads)
    if result.diverged is not None:
        raise result.diverged
    return result


def train_seeds(
    config: DQNConfig,
    seeds: Sequence[int],
    *,
    on_eval: GroupEvalCallback | None = None,
    device: str | torch.device = "cpu",
    torch_threads: int = 1,
    checkpoints: Checkpointing | None = None,
) -> list[TrainResult]:
    """Train one DQN agent per seed on `config`, all in one loop; one TrainResult per seed, in order.

    A member whose loss becomes NaN/inf stops and is returned with `diverged` set; the others go on.
    `on_eval` may stop the whole group (see GroupEvalCallback). `device` places networks and minibatches
    (e.g. "cuda"); envs and the replay buffer stay on the CPU. ConfigError for no seeds, a seed outside
    0..2**32 - 1, or members that together cannot fit in memory (checked before anything is allocated).
    `checkpoints` saves the run every `checkpoints.every` env steps and resumes it from `checkpoints.resume`
    (checkpoint.py; CheckpointError, before any step, if that checkpoint does not fit the run); a resumed run's
    wall time includes the time of the runs it continues.
    """
    if not seeds:
        raise ConfigError("seeds is empty: expected at least one seed", field="seeds")
    for i, seed in enumerate(seeds):
        check_seed(seed, name=f"seeds[{i}]")
    torch.set_num_threads(torch_threads)
    with denormals_flushed(), open_run(config, seeds, torch.device(device)) as state:
        earlier = checkpoints.start(state) if checkpoints is not None else 0.0
        start = time.perf_counter()
        while state.step < config.total_timesteps and state.running:
            if advance(state, on_eval):
                break
            if checkpoints is not None and checkpoints.due(state):
                save_checkpoint(state, checkpoints.save, train_seconds=earlier + time.perf_counter() - start)
        wall_time = earlier + time.perf_counter() - start
        return finish(state, wall_time)


def finish(state: RunState, wall_time: float) -> list[TrainResult]:
    """Close the runs: evaluate the last weights, select each member's weights, take the final evaluations."""
    config = state.config
    last = [k for k in state.running if not state.logs[k].curve or state.logs[k].curve[-1].step != state.step]
    stats = run_episodes(state.act, state.eval_envs, config.eval_curve_episodes, members=last)
    record_curve(state, {k: EvalPoint(state.step, s.mean, s.std) for k, s in stats.items()}, keep_best=False)
    selected_steps = []
    for k, log in enumerate(state.logs):
        if log.diverged is None:
            stop_member(state, k)
        use_kept, selected_step = _selection(log)
        if use_kept:
            copy_member(state.params, state.kept, k)
        selected_steps.append(selected_step)
    final_evals = run_episodes(state.act, state.eval_envs, config.eval_episodes)
    return [_result(state, k, final_evals[k], selected_steps[k], wall_time) for k in range(len(state.seeds))]


def _selection(log: MemberLog) -> tuple[bool, int]:
    """(whether the member's result is its kept weights rather than its last, the step they are from)."""
    if log.best.step >= 0 and (log.diverged is not None or log.best.mean_return > log.curve[-1].mean_return):
        return True, log.best.step
    return log.diverged is not None, log.stop_step  # a diverged member's kept weights: its last finite ones


def _result(state: RunState, member: int, final_eval: EvalStats, selected_step: int, wall_time: float) -> TrainResult:
    log = state.logs[member]
    return TrainResult(
        config=state.config,
        seed=state.seeds[member],
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
        observation=state.observation,
        n_actions=state.n_actions,
        q_network_state=state.q_network.member_state_dict(member),
        stopped_early=state.stopped_early and log.diverged is None,
        diverged=log.diverged,
    )
