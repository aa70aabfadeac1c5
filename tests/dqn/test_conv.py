"""StackedConvs: member k computes what a plain nn.Conv2d stack with its weights computes, forward and backward
(up to float rounding: a grouped convolution may sum in another order)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dqn_tune.dqn.networks.conv import (
    CNN_LAYERS,
    ConvLayer,
    StackedConvs,
    feature_count,
    min_side,
    output_side,
)


def plain_member(stacked: StackedConvs, member: int, in_channels: int, layers: tuple[ConvLayer, ...]) -> nn.Sequential:
    """Member `member` of `stacked` as nn.Conv2d layers with ReLUs and a flatten, its weights copied."""
    modules: list[nn.Module] = []
    for weight, bias, layer in zip(stacked.weights, stacked.biases, layers, strict=True):
        conv = nn.Conv2d(in_channels, layer.channels, layer.kernel, layer.stride)
        with torch.no_grad():
            conv.weight.copy_(weight[member])
            conv.bias.copy_(bias[member])
        modules += [conv, nn.ReLU()]
        in_channels = layer.channels
    return nn.Sequential(*modules, nn.Flatten())


@pytest.mark.parametrize("name, shape", [("minatar", (4, 10, 10)), ("minatar", (3, 10, 5)), ("nature", (4, 36, 40))])
@pytest.mark.parametrize("members", [1, 3])
def test_member_k_equals_a_separately_built_network_in_values_and_gradients(
    name: str, shape: tuple[int, int, int], members: int
) -> None:
    layers = CNN_LAYERS[name]
    stacked = StackedConvs(shape[0], layers, [torch.Generator().manual_seed(10 + k) for k in range(members)])
    images = torch.rand(members, 5, *shape, generator=torch.Generator().manual_seed(0))
    features = stacked(images)
    assert features.shape == (members, 5, feature_count(*shape[1:], layers))
    # a different loss weight per member: member k's gradient must come from its own term only
    (features * torch.arange(1, members + 1).view(-1, 1, 1)).square().sum().backward()
    for k in range(members):
        plain = plain_member(stacked, k, shape[0], layers)
        expected = plain(images[k])
        torch.testing.assert_close(features[k], expected, rtol=1e-6, atol=1e-6)  # grouped kernels may round differently
        ((k + 1) * expected).square().sum().backward()
        convs = [module for module in plain if isinstance(module, nn.Conv2d)]
        for conv, weight, bias in zip(convs, stacked.weights, stacked.biases, strict=True):
            torch.testing.assert_close(weight.grad[k], conv.weight.grad, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(bias.grad[k], conv.bias.grad, rtol=1e-5, atol=1e-6)


def test_a_member_is_initialised_from_its_own_generator_alone() -> None:
    layers = CNN_LAYERS["nature"]
    alone = StackedConvs(4, layers, [torch.Generator().manual_seed(7)])
    grouped = StackedConvs(4, layers, [torch.Generator().manual_seed(s) for s in (3, 7, 9)])
    for single, stacked in zip(alone.weights, grouped.weights, strict=True):
        assert torch.equal(single[0], stacked[1])
    assert not torch.equal(grouped.weights[0][0], grouped.weights[0][1])


def test_initial_weights_follow_nn_conv2d() -> None:
    """Kaiming-uniform weights within 1/sqrt(fan_in) as nn.Conv2d draws them, biases within the same bound."""
    layer = ConvLayer(64, 3, 1)
    stacked = StackedConvs(32, (layer,), [torch.Generator().manual_seed(1)])
    bound = 1 / (32 * 9) ** 0.5
    assert stacked.weights[0].abs().max() <= bound and stacked.weights[0].abs().max() > 0.9 * bound
    assert stacked.biases[0].abs().max() <= bound and stacked.weights[0].std() > 0.5 * bound


@pytest.mark.parametrize("name, smallest", [("minatar", 3), ("nature", 36)])
def test_min_side_is_the_smallest_input_with_an_output(name: str, smallest: int) -> None:
    layers = CNN_LAYERS[name]
    assert min_side(layers) == smallest
    assert output_side(smallest, layers) == 1 and output_side(smallest - 1, layers) == 0


def test_output_sides_of_the_papers_frames() -> None:
    assert output_side(10, CNN_LAYERS["minatar"]) == 8
    assert output_side(84, CNN_LAYERS["nature"]) == 7
