"""StackedConvs: the convolution layers of K members' CNNs, applied as one grouped convolution per layer.

Member k's images are channel group k of one batch: layer i of all members is one `conv2d` with
groups=K, which computes each group with its own member's filters only. Measured on this CPU
(docs/images.md, scripts/bench_cnn_forms.py) against a loop of per-member convolutions, vmap over
`functional_call`, im2col with batched matmuls and channels_last memory, it was the fastest or within
noise of it for K = 1, 4 and 8 at batch 32 and when acting, and it gives each member exactly the
numbers of a plain `nn.Conv2d` (grouped convolution runs each group as its own convolution).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class ConvLayer(NamedTuple):
    """One convolution: output channels, square kernel size, stride (no padding)."""

    channels: int
    kernel: int
    stride: int


CNN_LAYERS: dict[str, tuple[ConvLayer, ...]] = {
    "minatar": (ConvLayer(16, 3, 1),),
    "nature": (ConvLayer(32, 8, 4), ConvLayer(64, 4, 2), ConvLayer(64, 3, 1)),
}
"""The convolution stacks: MinAtar's DQN (Young & Tian 2019) and the Nature DQN's (Mnih et al. 2015)."""
CNN_HIDDEN = {"minatar": 128, "nature": 512}
"""Units of each stack's fully connected layer in its paper."""


def output_side(side: int, layers: Sequence[ConvLayer]) -> int:
    """Rows (or columns) of the last layer's output for inputs of `side` rows (or columns); < 1 when too small."""
    for layer in layers:
        side = (side - layer.kernel) // layer.stride + 1
        if side < 1:
            return 0
    return side


def min_side(layers: Sequence[ConvLayer]) -> int:
    """The fewest rows (and columns) an input needs for every layer to have an output."""
    side = 1
    for layer in reversed(layers):
        side = (side - 1) * layer.stride + layer.kernel
    return side


def feature_count(height: int, width: int, layers: Sequence[ConvLayer]) -> int:
    """Values per sample after the last layer (its channels times its output's rows and columns)."""
    return layers[-1].channels * output_side(height, layers) * output_side(width, layers)


def init_conv(
    in_channels: int, layer: ConvLayer, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [out, in, k, k], bias [out]) drawn as nn.Conv2d draws them, from `generator` only (uninitialised
    when it is None)."""
    fan_in = in_channels * layer.kernel * layer.kernel
    weight, bias = torch.empty(layer.channels, in_channels, layer.kernel, layer.kernel), torch.empty(layer.channels)
    if generator is not None:
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
    return weight, bias


class StackedConvs(nn.Module):
    """K members' convolution stacks with ReLUs; layer i's weight is [K, out, in, k, k], its bias [K, out].

    The member axis comes first, as in every stacked parameter (per-member clipping and copies slice it);
    forward views them as one grouped convolution's [K * out, in, k, k] filters, without a copy.

    `layers` give each layer's kernel and stride; `channels` the output channels of each (the stack's
    own widths, or others of the same count).
    """

    def __init__(
        self, in_channels: int, layers: Sequence[ConvLayer], generators: Sequence[torch.Generator | None]
    ) -> None:
        super().__init__()
        self.members = len(generators)
        self.strides = tuple(layer.stride for layer in layers)
        weights, biases = [], []
        widths = (in_channels, *(layer.channels for layer in layers))
        for fan_in, layer in zip(widths[:-1], layers, strict=True):
            drawn = [init_conv(fan_in, layer, generator) for generator in generators]
            weights.append(nn.Parameter(torch.stack([weight for weight, _ in drawn])))
            biases.append(nn.Parameter(torch.stack([bias for _, bias in drawn])))
        self.weights = nn.ParameterList(weights)
        self.biases = nn.ParameterList(biases)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features [K, batch, out * h * w] (per member in (channel, row, column) order) of images
        [K, batch, C, H, W]."""
        members, batch = images.shape[:2]
        x = images.transpose(0, 1).reshape(batch, -1, *images.shape[3:])  # member k's channels are group k
        for weight, bias, stride in zip(self.weights, self.biases, self.strides, strict=True):
            # in place: conv's backward needs its input only
            x = torch.relu_(F.conv2d(x, weight.flatten(0, 1), bias.flatten(), stride, groups=members))
        return x.reshape(batch, members, -1).transpose(0, 1)
