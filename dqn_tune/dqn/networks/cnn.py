"""The CNN family: convolutions over image observations, fully connected ReLU layers, then a Q head.

The convolution stack is MinAtar's (one 3x3 convolution of 16 channels, stride 1, then 128 units;
Young & Tian 2019) or the Nature DQN's (32 8x8/4, 64 4x4/2, 64 3x3/1, then 512 units; Mnih et al.
2015): `config.cnn`, by default the Nature stack for frames of 64 x 64 and larger, MinAtar's below.
`config.cnn_channels` and `config.cnn_hidden_sizes` change the widths. Observations arrive in their
stored dtype and layout (images.py) and become float C x H x W input scaled to [0, 1] by the space's
bounds, once per minibatch.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.images import ImageFormat, image_format
from dqn_tune.dqn.networks.base import DenseQNetwork, member_generators
from dqn_tune.dqn.networks.conv import (
    CNN_HIDDEN,
    CNN_LAYERS,
    ConvLayer,
    StackedConvs,
    feature_count,
    min_side,
    output_side,
)
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.errors import EnvError

NATURE_MIN_SIDE = 64
"""Frames at least this many rows and columns get the Nature stack when config.cnn is 'auto'."""


class CNN(DenseQNetwork):
    """K CNNs: the convolutions `convs` (conv.py), then the fully connected layers of `DenseQNetwork`."""

    pixel_scale: torch.Tensor
    pixel_shift: torch.Tensor

    def __init__(
        self,
        observation: ObservationSpec,
        image: ImageFormat,
        n_actions: int,
        layers: Sequence[ConvLayer],
        hidden_sizes: Sequence[int],
        dueling: bool,
        generators: Sequence[torch.Generator | None],
    ) -> None:
        features = feature_count(image.height, image.width, layers)
        super().__init__(observation, n_actions, features, hidden_sizes, dueling, generators)
        self.channels_first = image.channels_first
        self.image_shape = image.shape
        # (x - low) * scale as one multiply-add: x * scale + shift; buffers (not in the state dict) follow .to(device)
        self.register_buffer("pixel_scale", torch.as_tensor(image.scale), persistent=False)
        self.register_buffer("pixel_shift", torch.as_tensor(-image.low * image.scale), persistent=False)
        # grids already in [0, 1] (MinAtar's bool channels) only change dtype: a cast costs half the mixed-dtype addcmul
        self.scaled = bool((image.low != 0).any() or (image.scale != 1).any())
        self.convs = StackedConvs(image.channels, layers, generators)  # drawn after the fully connected layers

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q-values [K, batch, n_actions] for stored observations [K, batch, *obs_shape] (member k sees obs[k])."""
        images = obs.view(*obs.shape[:2], *self.image_shape) if obs.dim() == 4 else obs  # H x W: one channel
        if not self.channels_first and obs.dim() == 5:
            images = images.permute(0, 1, 4, 2, 3)
        if self.scaled:
            x = torch.addcmul(self.pixel_shift, images, self.pixel_scale)  # casts uint8 and bool to float32 on the way
        else:  # channels first in memory too: the convolutions then copy neither their weights nor their outputs
            x = images.to(torch.float32, memory_format=torch.contiguous_format)
        return self.dense(self.convs(x))


class CNNFamily:
    """Builds CNNs; takes image observations (images.py) large enough for the chosen convolutions."""

    width_field = "cnn_hidden_sizes"

    def check(self, config: DQNConfig, observation: ObservationSpec) -> None:
        """EnvError unless observations are images that the chosen convolution stack fits, with as many
        cnn_channels as it has convolutions."""
        self._architecture(config, observation)

    def build(
        self, config: DQNConfig, observation: ObservationSpec, n_actions: int, members: int, seeds: Sequence[int] | None
    ) -> CNN:
        """`members` CNNs, member k initialised from `seeds[k]`."""
        image, layers, hidden_sizes = self._architecture(config, observation)
        return CNN(
            observation, image, n_actions, layers, hidden_sizes, config.dueling, member_generators(members, seeds)
        )

    def describe(self, config: DQNConfig) -> str:
        """E.g. "cnn = 'minatar', cnn_channels auto, cnn_hidden_sizes [256]"."""
        return (
            f"cnn = {config.cnn!r}, cnn_channels {_widths(config.cnn_channels)}, "
            f"cnn_hidden_sizes {_widths(config.cnn_hidden_sizes)}"
        )

    def parameter_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """Filters and biases of the convolutions, weights and biases of the fully connected layers and head."""
        image, layers, hidden_sizes = self._architecture(config, observation)
        channels = (image.channels, *(layer.channels for layer in layers))
        convs = sum(
            (fan_in * layer.kernel**2 + 1) * layer.channels for fan_in, layer in zip(channels[:-1], layers, strict=True)
        )
        widths = (feature_count(image.height, image.width, layers), *hidden_sizes, n_actions + config.dueling)
        return convs + sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(widths))

    def activation_count(self, config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
        """The float input (scaled, then regrouped by member), every layer's outputs, the dueling combination."""
        image, layers, hidden_sizes = self._architecture(config, observation)
        height, width, maps = image.height, image.width, 0
        for layer in layers:
            height, width = output_side(height, (layer,)), output_side(width, (layer,))
            maps += layer.channels * height * width
        return (
            2 * image.channels * image.height * image.width
            + maps
            + sum(hidden_sizes)
            + n_actions
            + config.dueling * (n_actions + 1)
        )

    @staticmethod
    def _architecture(
        config: DQNConfig, observation: ObservationSpec
    ) -> tuple[ImageFormat, tuple[ConvLayer, ...], tuple[int, ...]]:
        """The image format, convolution layers (with config.cnn_channels) and hidden widths for these observations."""
        image = image_format(config.env_id, observation.shape, observation.dtype, observation.low, observation.high)
        name = cnn_stack(config, image)
        layers = CNN_LAYERS[name]
        if config.cnn_channels:
            if len(config.cnn_channels) != len(layers):
                widths = list(config.cnn_channels)
                raise EnvError(
                    f"cnn_channels = {widths} gives {len(widths)} widths but cnn = {name!r} has "
                    f"{len(layers)} convolution(s) (on the {image.height} x {image.width} frames of env "
                    f"{config.env_id!r}); give {len(layers)}, or set cnn"
                )
            layers = tuple(
                layer._replace(channels=channels) for layer, channels in zip(layers, config.cnn_channels, strict=True)
            )
        smallest = min_side(layers)
        if min(image.height, image.width) < smallest:
            described = ", ".join(f"{layer.kernel}x{layer.kernel}/{layer.stride}" for layer in layers)
            fits = min_side(CNN_LAYERS["minatar"])
            raise EnvError(
                f"env {config.env_id!r} has {image.height} x {image.width} frames; cnn = {name!r} "
                f"({described}) needs frames of at least {smallest} x {smallest}; set cnn = 'minatar' "
                f"(frames of at least {fits} x {fits}) or 'auto'"
            )
        return image, layers, config.cnn_hidden_sizes or (CNN_HIDDEN[name],)


def cnn_stack(config: DQNConfig, image: ImageFormat) -> str:
    """config.cnn, or for 'auto' the Nature stack on frames of NATURE_MIN_SIDE and more, MinAtar's below."""
    if config.cnn != "auto":
        return config.cnn
    return "nature" if min(image.height, image.width) >= NATURE_MIN_SIDE else "minatar"


def _widths(widths: tuple[int, ...]) -> str:
    return str(list(widths)) if widths else "auto"


FAMILY = CNNFamily()
