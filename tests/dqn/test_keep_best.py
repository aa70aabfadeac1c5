"""keep_best: the run returns the weights of its best evaluation when they beat the last weights."""

from __future__ import annotations

import pytest
import torch

from dqn_tune import DQNConfig, train


@pytest.mark.parametrize("seed", [0, 5])  # seeds whose best evaluation comes before the end
def test_keep_best_returns_the_best_evaluated_weights_without_changing_training(
    tiny_config: DQNConfig, seed: int
) -> None:
    last = train(tiny_config.replace(keep_best=False), seed=seed)
    best = train(tiny_config, seed=seed)

    assert best.curve == last.curve  # selection never changes what is trained
    assert last.selected_step == last.steps
    top = max(best.curve[:-1], key=lambda p: (p.mean_return, p.step))  # ties go to the later snapshot
    assert top.mean_return > best.curve[-1].mean_return  # these seeds do collapse late
    assert best.selected_step == top.step
    differing = [
        name for name, tensor in best.q_network_state.items() if not torch.equal(tensor, last.q_network_state[name])
    ]
    assert differing  # the returned weights are the earlier snapshot, not the last


def test_last_weights_are_kept_when_they_are_as_good_as_any_evaluation(tiny_config: DQNConfig) -> None:
    result = train(tiny_config, seed=3)  # curve 9.0, 10.0, 10.0: the last ties the best
    assert result.curve[-1].mean_return >= max(p.mean_return for p in result.curve)
    assert result.selected_step == result.steps
