"""The CNN family through the network seam, on dqn-tune's own Catch env: choice, layout, scaling, batching,
compact replay, memory, agent files, errors."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from dqn_tune import DQNConfig, train, train_seeds
from dqn_tune.dqn.agent import Agent, load_agent, save_agent
from dqn_tune.dqn.envs import env_spaces, make_env
from dqn_tune.dqn.memory import check_memory, estimate_memory, gib, memory_needed
from dqn_tune.dqn.networks import family, family_name, make_q_network
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.replay import make_replay_buffer
from dqn_tune.errors import AgentFileError, ConfigError, EnvError

CATCH = "dqn-tune/Catch-v0"


def spec(shape: tuple[int, ...], dtype: type = np.uint8, high: float = 255) -> ObservationSpec:
    return ObservationSpec.of(gym.spaces.Box(0, high, shape, dtype))


def catch_config(**changes: object) -> DQNConfig:
    """A Catch config that trains in about a second."""
    base = DQNConfig(
        env_id=CATCH,
        total_timesteps=600,
        learning_starts=100,
        batch_size=16,
        buffer_size=1_000,
        target_update_interval=50,
        eval_freq=200,
        eval_curve_episodes=2,
        eval_episodes=3,
    )
    return base.replace(**changes)


def catch_observations(env_id: str = CATCH, count: int = 8) -> np.ndarray:
    with make_env(env_id) as env:
        env.reset(seed=0)
        return np.stack([env.step(i % 3)[0] for i in range(count)])


@pytest.mark.parametrize(
    ("shape", "name"), [((4,), "mlp"), ((10, 10, 4), "cnn"), ((84, 84), "cnn"), ((4, 84, 84), "cnn")]
)
def test_auto_takes_the_cnn_for_images_and_the_mlp_for_flat_observations(shape: tuple[int, ...], name: str) -> None:
    assert family_name(DQNConfig(), spec(shape)) == name
    assert family_name(DQNConfig(network="mlp"), spec(shape)) == "mlp"


@pytest.mark.parametrize(
    ("shape", "convolutions", "units"),
    [((10, 10, 4), 1, 128), ((63, 63, 3), 1, 128), ((64, 64, 3), 3, 512), ((4, 84, 84), 3, 512)],
)
def test_auto_cnn_is_minatars_below_64_pixels_and_the_natures_above(
    shape: tuple[int, ...], convolutions: int, units: int
) -> None:
    network = make_q_network(DQNConfig(), spec(shape), 3, seeds=[0])
    assert len(network.convs.weights) == convolutions and network.hidden_weights[0].shape[-1] == units


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"cnn": "nature"},
        {"dueling": True, "cnn_channels": (8,)},
        {"cnn": "nature", "cnn_channels": (4, 8, 8), "cnn_hidden_sizes": (32, 16)},
    ],
)
def test_the_family_counts_exactly_the_parameters_it_builds(changes: dict[str, object]) -> None:
    config, observation = DQNConfig(**changes), spec((40, 36, 3))
    built = sum(p.numel() for p in make_q_network(config, observation, 5).parameters())
    assert family(config, observation).parameter_count(config, observation, 5) == built


def test_a_member_is_the_plain_torch_cnn_on_pixels_scaled_to_one() -> None:
    # nn.Conv2d / nn.Linear with the member's weights on C x H x W input / 255: layout, scaling and order of
    # the flattened features all match the textbook network
    observation = spec((40, 36, 3))
    network = make_q_network(DQNConfig(cnn="nature", cnn_hidden_sizes=(32,)), observation, 4, 2, seeds=[5, 6])
    convs = network.convs
    layers: list[nn.Module] = []
    for weight, bias, stride in zip(convs.weights, convs.biases, convs.strides, strict=True):
        conv = nn.Conv2d(weight.shape[2], weight.shape[1], weight.shape[-1], stride)
        conv.weight.data, conv.bias.data = weight[1].detach(), bias[1].detach()
        layers += [conv, nn.ReLU()]
    hidden, head = nn.Linear(1, 1), nn.Linear(1, 1)
    hidden.weight.data = network.hidden_weights[0][1].detach().T
    hidden.bias.data = network.hidden_biases[0][1, 0].detach()
    head.weight.data, head.bias.data = network.head_weight[1].detach(), network.head_bias[1, :, 0].detach()
    plain = nn.Sequential(*layers, nn.Flatten(), hidden, nn.ReLU(), head)
    frames = np.random.default_rng(0).integers(0, 256, (2, 6, 40, 36, 3), dtype=np.uint8)
    expected = plain(torch.from_numpy(frames[1]).permute(0, 3, 1, 2).float() / 255)
    torch.testing.assert_close(network(torch.from_numpy(frames))[1], expected, rtol=1e-5, atol=1e-6)


def test_members_are_the_networks_of_their_own_seeds() -> None:
    observation, frames = spec((10, 5, 3)), torch.from_numpy(catch_observations()[None])
    together = make_q_network(DQNConfig(), observation, 3, 3, seeds=[7, 8, 9])(frames.expand(3, -1, -1, -1, -1))
    for k, seed in enumerate([7, 8, 9]):
        alone = make_q_network(DQNConfig(), observation, 3, seeds=[seed])(frames)[0]
        torch.testing.assert_close(together[k], alone, rtol=1e-5, atol=1e-6)


def test_channels_first_and_last_give_the_same_q_values() -> None:
    last, first = catch_observations(CATCH), catch_observations("dqn-tune/CatchCHW-v0")
    assert np.array_equal(last.transpose(0, 3, 1, 2), first)
    networks = [make_q_network(DQNConfig(), spec(frames.shape[1:]), 3, seeds=[0]) for frames in (last, first)]
    q_last, q_first = (net(torch.from_numpy(frames)[None]) for net, frames in zip(networks, (last, first), strict=True))
    torch.testing.assert_close(q_last, q_first)


@pytest.mark.parametrize(("dtype", "high"), [(np.uint8, 255), (np.bool_, 1)])
def test_replay_stores_images_one_byte_per_value_and_the_estimate_counts_it(dtype: type, high: float) -> None:
    observation = spec((10, 10, 4), dtype, high)
    config = DQNConfig(buffer_size=1_000, batch_size=32)
    buffer = make_replay_buffer(config, observation, [np.random.default_rng(0)])
    assert buffer.obs.dtype == np.dtype(dtype) and buffer.obs.nbytes == 1_000 * 400
    assert estimate_memory(config, observation, 3).replay == buffer.nbytes


def test_a_million_atari_frames_is_one_line_naming_the_gib() -> None:
    observation, config = spec((84, 84, 4)), DQNConfig(buffer_size=1_000_000, batch_size=32)
    needed = memory_needed(config, observation, 6)
    assert 2 * 84 * 84 * 4 * 1_000_000 < needed < 1.01 * 2 * 84 * 84 * 4 * 1_000_000  # bytes, not float32
    with pytest.raises(ConfigError) as info:
        check_memory(config, observation, 6, limit_bytes=16 * 2**30)
    assert str(info.value) == (
        f"buffer_size = 1000000 is too large: this run needs {gib(needed)} of memory but "
        "16.00 GiB is available (the given limit); lower buffer_size"
    )


@pytest.mark.parametrize(
    ("config", "observation", "error", "message"),
    [
        (
            DQNConfig(cnn="nature"),
            spec((10, 5, 3)),
            EnvError,
            r"^env 'CartPole-v1' has 10 x 5 frames; cnn = 'nature' \(8x8/4, 4x4/2, 3x3/1\) needs frames of at least "
            r"36 x 36; set cnn = 'minatar' \(frames of at least 3 x 3\) or 'auto'$",
        ),
        (
            DQNConfig(cnn_channels=(8, 8)),
            spec((10, 5, 3)),
            EnvError,
            r"^cnn_channels = \[8, 8\] gives 2 widths but cnn = 'minatar' has 1 convolution\(s\) "
            r"\(on the 10 x 5 frames of env 'CartPole-v1'\); give 1, or set cnn$",
        ),
        (
            DQNConfig(),
            ObservationSpec.of(gym.spaces.Box(-np.inf, np.inf, (8, 8, 3), np.float32)),
            EnvError,
            r"^env 'CartPole-v1' has image observations of shape \(8, 8, 3\) float32 with unknown range",
        ),
        (
            DQNConfig(network="cnn"),
            spec((4,)),
            EnvError,
            r"^env 'CartPole-v1' has observations of shape \(4,\) uint8; "
            r"a CNN needs images",
        ),
        (
            DQNConfig(),
            spec((4, 84, 84, 3)),
            EnvError,
            r"^env 'CartPole-v1' has observations of shape \(4, 84, 84, 3\) "
            r"uint8; a CNN needs images: H x W x C, C x H x W or H x W$",
        ),
    ],
)
def test_what_the_cnn_cannot_take_is_one_line(
    config: DQNConfig, observation: ObservationSpec, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as info:
        make_q_network(config, observation, 3)
    assert "\n" not in str(info.value)


class DictObservations(gym.Env[dict, int]):
    """An env observing a Dict space, which DQN here cannot take."""

    observation_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
    action_space = gym.spaces.Discrete(2)


gym.register("DictObservations-v0", entry_point=DictObservations)


def test_a_dict_observation_space_is_one_line_naming_it() -> None:
    with pytest.raises(
        EnvError,
        match=r"^env 'DictObservations-v0' has observation space Dict\('image': "
        r"Box\(0, 255, \(8, 8, 3\), uint8\)\); DQN here needs a Box observation "
        r"space$",
    ):
        make_env("DictObservations-v0")


def test_members_trained_together_follow_train_on_images() -> None:
    config = catch_config(max_grad_norm=0.5)
    for batched in train_seeds(config, [0, 1]):
        single = train(config, seed=batched.seed)
        assert batched.episode_returns == single.episode_returns and batched.curve == single.curve
        for name, tensor in single.q_network_state.items():
            torch.testing.assert_close(batched.q_network_state[name], tensor, rtol=1e-4, atol=1e-5)


def test_same_seed_same_run_and_rmsprop_trains_too() -> None:
    config = catch_config(optimizer="rmsprop", learning_rate=2.5e-4, max_grad_norm=None)
    first, second, other = train(config, seed=3), train(config, seed=3), train(config, seed=4)
    assert first.episode_returns == second.episode_returns
    assert all(torch.equal(first.q_network_state[name], tensor) for name, tensor in second.q_network_state.items())
    assert not torch.equal(first.q_network_state["convs.weights.0"], other.q_network_state["convs.weights.0"])


def test_catch_is_learned_from_pixels() -> None:
    # a random policy catches about one ball in three (mean return about -0.3)
    config = catch_config(
        total_timesteps=3_000,
        learning_starts=200,
        exploration_fraction=0.3,
        batch_size=32,
        target_update_interval=100,
        eval_freq=500,
        eval_curve_episodes=10,
        eval_episodes=20,
    )
    assert train(config, seed=0).mean_return >= 0.8


def test_a_cnn_agent_file_round_trips_and_refuses_another_layout(tmp_path: Path) -> None:
    agent = Agent.from_result(train(catch_config(dueling=True), seed=0))
    path = save_agent(agent, tmp_path / "catch.pt")
    loaded, frames = load_agent(path), catch_observations()
    assert loaded.q_network.observation.dtype == np.uint8
    assert np.array_equal(loaded.q_values(frames), agent.q_values(frames))
    expected = (
        r"agent expects observations of shape \(10, 5, 3\) uint8 and 3 actions, but env "
        r"'dqn-tune/CatchCHW-v0' has shape \(3, 10, 5\)"
    )
    with make_env("dqn-tune/CatchCHW-v0") as env, pytest.raises(AgentFileError, match=expected):
        loaded.check_env(env)
    with make_env(CATCH) as env:
        assert env_spaces(env)[0].same_layout(loaded.q_network.observation)
