"""train_seeds() on real gymnasium envs: the members are independent runs, each following `train` step for step."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch

from dqn_tune import DQNConfig, train, train_seeds
from dqn_tune.dqn.trainer import TrainResult
from dqn_tune.errors import ConfigError

OPTIONS = [
    {},
    {"n_steps": 3},
    {"dueling": True},
    {"prioritized_replay": True},
    {"n_steps": 3, "dueling": True, "prioritized_replay": True},
]
"""Each new option on its own, and all together."""


def assert_same_member(a: TrainResult, b: TrainResult) -> None:
    """Bit-identical trajectories, evaluations and weights."""
    assert (a.seed, a.episode_returns, a.episode_end_steps) == (b.seed, b.episode_returns, b.episode_end_steps)
    assert a.curve == b.curve and a.final_eval == b.final_eval and a.selected_step == b.selected_step
    assert all(torch.equal(a.q_network_state[name], b.q_network_state[name]) for name in a.q_network_state)


def test_same_seeds_give_identical_groups_and_members_differ(tiny_config: DQNConfig) -> None:
    first, second = train_seeds(tiny_config, [0, 1]), train_seeds(tiny_config, [0, 1])
    for a, b in zip(first, second, strict=True):
        assert_same_member(a, b)
    assert first[0].episode_returns != first[1].episode_returns
    assert not torch.equal(first[0].q_network_state["hidden_weights.0"], first[1].q_network_state["hidden_weights.0"])


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: ",".join(options) or "plain")
def test_a_member_does_not_depend_on_the_other_members(tiny_config: DQNConfig, options: dict[str, object]) -> None:
    # summed (not averaged) losses, per-member clipping, per-member streams and priorities: member 3 sees nothing
    # of 4 or 5
    config = tiny_config.replace(max_grad_norm=0.5, **options)  # small enough that clipping acts on every update
    assert_same_member(train_seeds(config, [3, 4])[0], train_seeds(config, [3, 5])[0])


@pytest.mark.parametrize("options", OPTIONS, ids=lambda options: ",".join(options) or "plain")
def test_members_follow_train_step_for_step(tiny_config: DQNConfig, options: dict[str, object]) -> None:
    # Same seeds, schedules and streams: on this run the trajectories and evaluations are identical to
    # train's; the weights differ at most by float rounding (batched matmuls may round differently).
    config = tiny_config.replace(**options)
    for batched in train_seeds(config, [0, 1]):
        single = train(config, seed=batched.seed)
        assert batched.episode_returns == single.episode_returns and batched.curve == single.curve
        assert (batched.steps, batched.updates, batched.target_updates, batched.selected_step) == (
            single.steps,
            single.updates,
            single.target_updates,
            single.selected_step,
        )
        for name, tensor in single.q_network_state.items():
            torch.testing.assert_close(batched.q_network_state[name], tensor, rtol=1e-4, atol=1e-5)


def test_a_diverging_member_stops_and_the_others_go_on(tiny_config: DQNConfig) -> None:
    # At this learning rate seed 1 diverges at step 122 in `train`, seed 0 does not.
    config = tiny_config.replace(learning_rate=4e8, max_grad_norm=None, loss="mse", gamma=1.0)
    seen: list[list[float | None]] = []
    ok, diverged = train_seeds(config, [0, 1], on_eval=lambda step, returns: seen.append(list(returns)) or False)

    assert diverged.diverged is not None and diverged.diverged.step == diverged.steps == 122
    assert not np.isfinite(diverged.diverged.loss) and diverged.curve == () and diverged.selected_step == 122
    assert all(tensor.isfinite().all() for tensor in diverged.q_network_state.values())  # its last finite weights
    assert ok.diverged is None and ok.steps == 600 and ok.updates == 250
    assert [returns[1] for returns in seen] == [None, None] and all(returns[0] is not None for returns in seen)
    assert_same_member(ok, train_seeds(config, [0, 2])[0])  # the NaN member leaked nothing into member 0


def test_on_eval_sees_every_member_and_can_stop_the_group(tiny_config: DQNConfig) -> None:
    seen: list[tuple[int, list[float | None]]] = []

    def on_eval(step: int, mean_returns: Sequence[float | None]) -> bool:
        seen.append((step, list(mean_returns)))
        return step >= 400

    results = train_seeds(tiny_config, [0, 1, 2], on_eval=on_eval)
    assert [step for step, _ in seen] == [200, 400]
    assert [returns for _, returns in seen] == [[r.curve[i].mean_return for r in results] for i in range(2)]
    assert all(r.stopped_early and r.steps == 400 for r in results)


@pytest.mark.parametrize(("seeds", "message"), [([], r"^seeds is empty"), ([0, -1], r"^seeds\[1\] = -1 is invalid")])
def test_no_seeds_or_a_bad_seed_is_an_error(tiny_config: DQNConfig, seeds: list[int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        train_seeds(tiny_config, seeds)
