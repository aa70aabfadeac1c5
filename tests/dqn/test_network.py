"""The network seam: make_q_network's MLP family, its members, dueling heads and the greedy policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.evaluation import greedy_policy
from dqn_tune.dqn.networks import FAMILIES, family, make_q_network
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.errors import ConfigError, EnvError

SPEC = ObservationSpec.flat(4)
SEEDS = [11, 12, 13]


def network(members: int = 3, *, dueling: bool = False, seeds: list[int] | None = None) -> nn.Module:
    config = DQNConfig(hidden_sizes=(16, 8), dueling=dueling)
    return make_q_network(config, SPEC, 3, members, seeds=SEEDS[:members] if seeds is None else seeds)


@pytest.mark.parametrize("dueling", [False, True])
def test_each_member_equals_its_own_one_member_network(dueling: bool) -> None:
    stacked = network(dueling=dueling)
    obs = torch.randn(3, 5, 4)
    with torch.no_grad():
        q_values = stacked(obs)
        for k, seed in enumerate(SEEDS):
            alone = network(1, dueling=dueling, seeds=[seed])
            assert all(
                torch.equal(a, b)
                for a, b in zip(alone.state_dict().values(), stacked.member_state_dict(k).values(), strict=True)
            )
            torch.testing.assert_close(q_values[k], alone(obs[k : k + 1])[0])
    assert q_values.shape == (3, 5, 3)


def test_a_member_is_initialised_as_torch_initialises_nn_linear_layers_from_its_seed() -> None:
    torch.manual_seed(12)
    layers = [nn.Linear(4, 16), nn.Linear(16, 8), nn.Linear(8, 3)]
    state = network().member_state_dict(1)
    torch.testing.assert_close(state["hidden_weights.0"][0], layers[0].weight.detach().T, rtol=0, atol=0)
    torch.testing.assert_close(state["hidden_biases.1"][0, 0], layers[1].bias.detach(), rtol=0, atol=0)
    torch.testing.assert_close(state["head_weight"][0], layers[2].weight.detach(), rtol=0, atol=0)


def test_stacked_gradients_are_each_members_own_gradients() -> None:
    stacked = network()
    obs, weights = torch.randn(3, 5, 4), torch.randn(3, 5, 3)
    (stacked(obs) * weights).sum().backward()
    for k, seed in enumerate(SEEDS):
        alone = network(1, seeds=[seed])
        (alone(obs[k : k + 1]) * weights[k : k + 1]).sum().backward()
        for (name, param), own in zip(stacked.named_parameters(), alone.parameters(), strict=True):
            torch.testing.assert_close(param.grad[k : k + 1], own.grad, msg=name)


def test_dueling_q_is_the_value_plus_mean_centred_advantages() -> None:
    dueling = network(dueling=True)
    obs = torch.randn(3, 7, 4)
    with torch.no_grad():
        q_values = dueling(obs)
        x = obs
        for weight, bias in zip(dueling.hidden_weights, dueling.hidden_biases, strict=True):
            x = torch.relu(x @ weight + bias)
        out = x @ dueling.head_weight.mT + dueling.head_bias.mT  # 3 advantages, then the value
        advantages, value = out[..., :3], out[..., 3]
    torch.testing.assert_close(q_values.mean(dim=-1), value)  # the advantages are mean-centred
    torch.testing.assert_close(q_values, value[..., None] + advantages - advantages.mean(dim=-1, keepdim=True))
    assert dueling.head_weight.shape == (3, 4, 8)


def test_the_greedy_policy_takes_each_members_argmax_after_weight_updates() -> None:
    stacked = network()
    act = greedy_policy(stacked)
    obs = np.random.default_rng(0).normal(size=(20, 3, 4)).astype(np.float32)
    with torch.no_grad():
        expected = [stacked(torch.from_numpy(o)[:, None]).argmax(dim=2)[:, 0].tolist() for o in obs]
    assert [act(o) for o in obs] == expected
    with torch.no_grad():
        stacked.head_bias[1].copy_(torch.tensor([[0.0], [0.0], [1e6]]))  # in place, as the optimizer updates
    assert {act(o.astype(np.float64))[1] for o in obs} == {2}


def test_state_dict_keys_and_one_member_layout() -> None:
    keys = list(network(1).state_dict())
    assert keys == [
        "head_weight",
        "head_bias",
        "hidden_weights.0",
        "hidden_weights.1",
        "hidden_biases.0",
        "hidden_biases.1",
    ]
    assert [tuple(t.shape) for t in network(1).state_dict().values()] == [
        (1, 3, 8),
        (1, 3, 1),
        (1, 4, 16),
        (1, 16, 8),
        (1, 1, 16),
        (1, 1, 8),
    ]


def test_the_family_counts_exactly_the_parameters_it_builds() -> None:
    for dueling in (False, True):
        config = DQNConfig(hidden_sizes=(16, 8), dueling=dueling)
        built = sum(p.numel() for p in make_q_network(config, SPEC, 3).parameters())
        assert family(config, SPEC).parameter_count(config, SPEC, 3) == built


def test_the_mlp_refuses_image_observations_and_unknown_families_are_config_errors() -> None:
    image = ObservationSpec((10, 10, 4), np.dtype(bool), np.zeros((10, 10, 4), bool), np.ones((10, 10, 4), bool))
    with pytest.raises(
        EnvError,
        match=r"^env 'CartPole-v1' has observations of shape \(10, 10, 4\) bool; "
        r"network = 'mlp' needs flat \(1-D\) observations$",
    ):
        make_q_network(DQNConfig(network="mlp"), image, 2)
    with pytest.raises(ConfigError, match=r"^network = 'rnn' is invalid: expected one of auto, mlp, cnn$"):
        DQNConfig(network="rnn")
    assert list(FAMILIES) == ["mlp", "cnn"]
