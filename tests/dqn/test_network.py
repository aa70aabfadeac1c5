"""QNetwork: the functional forward computes exactly what its nn.Sequential computes."""

from __future__ import annotations

import pytest
import torch

from dqn_tune.dqn.evaluation import greedy_policy
from dqn_tune.dqn.network import QNetwork


@pytest.mark.parametrize("hidden_sizes", [(16,), (128, 128), (32, 16, 8)])
def test_forward_equals_the_sequential_layers_bit_for_bit(hidden_sizes: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    network = QNetwork(4, 3, hidden_sizes)
    for batch in (1, 128):
        obs = torch.randn(batch, 4)
        assert torch.equal(network(obs), network.layers(obs))


def test_state_dict_keys_are_those_of_the_sequential_layers() -> None:
    keys = list(QNetwork(4, 2, (8, 8)).state_dict())
    assert keys == [f"layers.{i}.{name}" for i in (0, 2, 4) for name in ("weight", "bias")]


def test_greedy_policy_takes_the_argmax_action_after_weight_updates() -> None:
    torch.manual_seed(0)
    network = QNetwork(4, 3, (8,))
    act = greedy_policy(network)
    obs = torch.randn(20, 4)
    assert [act(o.numpy()) for o in obs] == network(obs).argmax(dim=1).tolist()
    with torch.no_grad():
        network.layers[-1].bias.copy_(torch.tensor([0.0, 0.0, 1e6]))  # in-place, as the optimizer updates
    assert {act(o.numpy().astype("float64")) for o in obs} == {2}
