"""memory_needed / check_memory: the estimate matches what train allocates, and absurd configs fail before it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.memory import (
    PARAMETER_COPIES,
    available_memory,
    cgroup_memory_left,
    check_memory,
    estimate_memory,
    gib,
    memory_needed,
)
from dqn_tune.dqn.networks import make_q_network
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.optimizers import STATE_COPIES
from dqn_tune.dqn.replay import make_replay_buffer
from dqn_tune.dqn.trainer import train, train_seeds
from dqn_tune.errors import ConfigError

CARTPOLE = (ObservationSpec.flat(4), 2)
"""CartPole-v1's (observations, actions)."""


@pytest.mark.parametrize("prioritized_replay", [False, True])
def test_the_replay_part_is_exactly_the_buffer_arrays(prioritized_replay: bool) -> None:
    config = DQNConfig(buffer_size=12_345, prioritized_replay=prioritized_replay)
    buffer = make_replay_buffer(config, CARTPOLE[0], [np.random.default_rng(0)])
    tree = buffer.sampler.tree.nodes.nbytes if prioritized_replay else 0
    assert estimate_memory(config, *CARTPOLE).replay == buffer.nbytes + tree


@pytest.mark.parametrize("dueling", [False, True])
def test_the_network_part_is_every_parameter_copy_of_the_q_network(dueling: bool) -> None:
    config = DQNConfig(hidden_sizes=(64, 32, 16), dueling=dueling)
    network = make_q_network(config, *CARTPOLE)
    weights = sum(p.numel() * p.element_size() for p in network.parameters())
    assert estimate_memory(config, *CARTPOLE).networks == (PARAMETER_COPIES + STATE_COPIES["adam"]) * weights


def test_memory_needed_is_the_sum_of_the_parts_and_grows_with_each_field() -> None:
    base = DQNConfig()
    parts = estimate_memory(base, *CARTPOLE)
    assert memory_needed(base, *CARTPOLE) == parts.replay + parts.networks + parts.batch
    for change in (
        {"buffer_size": 100_000},
        {"hidden_sizes": (256, 256)},
        {"batch_size": 256},
        {"n_steps": 5},
        {"dueling": True},
        {"prioritized_replay": True},
    ):
        assert memory_needed(base.replace(**change), *CARTPOLE) > memory_needed(base, *CARTPOLE), change


@pytest.mark.parametrize(
    ("change", "field", "value"),
    [
        ({"buffer_size": 99_999_999_999_999}, "buffer_size", "99999999999999"),
        ({"hidden_sizes": (100_000, 100_000, 100_000)}, "hidden_sizes", "[100000, 100000, 100000]"),
        ({"batch_size": 10**9, "buffer_size": 10**9}, "batch_size", "1000000000"),
        ({"hidden_sizes": (10**9,)}, "hidden_sizes", "[1000000000]"),  # the batch's activations dominate
    ],
)
def test_over_the_limit_is_one_line_naming_the_field_the_size_and_the_limit(
    change: dict[str, object], field: str, value: str
) -> None:
    config = DQNConfig().replace(**change)
    needed = memory_needed(config, *CARTPOLE)
    with pytest.raises(ConfigError) as info:
        check_memory(config, *CARTPOLE, limit_bytes=2**30)
    assert str(info.value) == (
        f"{field} = {value} is too large: this run needs {gib(needed)} of memory but "
        f"1.00 GiB is available (the given limit); lower {field}"
    )
    assert info.value.field == field


def test_under_the_limit_returns_the_bytes_needed() -> None:
    needed = memory_needed(DQNConfig(), *CARTPOLE)
    assert check_memory(DQNConfig(), *CARTPOLE, limit_bytes=needed) == needed
    with pytest.raises(ConfigError, match=r"lower buffer_size$"):
        check_memory(DQNConfig(), *CARTPOLE, limit_bytes=needed - 1)


def test_the_default_limit_is_this_machines_available_memory() -> None:
    available = available_memory()
    assert available is not None  # Linux: /proc/meminfo
    limit, source = available
    assert limit > 0 and ("MemAvailable" in source or "cgroup" in source)
    assert check_memory(DQNConfig(), *CARTPOLE) == memory_needed(DQNConfig(), *CARTPOLE)
    with pytest.raises(ConfigError, match=rf"GiB is available \({source}\); lower buffer_size$"):
        check_memory(DQNConfig(buffer_size=limit // 40 + 1), *CARTPOLE)  # 46 bytes per CartPole transition


def test_members_trained_together_need_their_sum_and_train_seeds_checks_before_allocating() -> None:
    one = memory_needed(DQNConfig(), *CARTPOLE)
    assert check_memory(DQNConfig(), *CARTPOLE, members=4, limit_bytes=4 * one) == 4 * one
    with pytest.raises(ConfigError, match=r"these 4 runs trained together need .* lower buffer_size$"):
        check_memory(DQNConfig(), *CARTPOLE, members=4, limit_bytes=4 * one - 1)
    available = available_memory()
    assert available is not None
    third = DQNConfig(buffer_size=available[0] // 46 // 3)  # one run fits; four together need 4/3 of what is left
    check_memory(third, *CARTPOLE)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"^buffer_size = \d+ is too large: these 4 runs trained together need"):
        train_seeds(third, [0, 1, 2, 3])
    assert time.perf_counter() - started < 5  # refused before filling gigabytes


def test_gib_is_readable_from_small_to_absurd_sizes() -> None:
    assert (gib(2**29), gib(3 * 2**40), gib(10**20)) == ("0.50 GiB", "3,072.00 GiB", "9.31e+10 GiB")


@pytest.mark.parametrize(
    "change",
    [{"buffer_size": 99_999_999_999_999}, {"hidden_sizes": (10**9,)}, {"hidden_sizes": (100_000, 100_000, 100_000)}],
)
def test_train_refuses_before_allocating(change: dict[str, object]) -> None:
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="is too large: this run needs"):
        train(DQNConfig().replace(**change), seed=0)
    assert time.perf_counter() - start < 5  # nothing was allocated or trained


def fake_cgroup(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text + "\n")


def test_a_cgroup_v2_limit_counts_usage_less_inactive_page_cache_and_parent_limits(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("0::/docker/abc\n")
    root = tmp_path / "sys"
    fake_cgroup(
        root / "docker" / "abc",
        {
            "memory.max": str(8 * 2**30),
            "memory.current": str(3 * 2**30),
            "memory.stat": f"anon 1\ninactive_file {2**30}",
        },
    )
    assert cgroup_memory_left(proc, root) == 6 * 2**30
    fake_cgroup(root / "docker", {"memory.max": str(2 * 2**30), "memory.current": str(2**30), "memory.stat": ""})
    assert cgroup_memory_left(proc, root) == 2**30  # the parent's limit is the tighter one
    fake_cgroup(root / "docker", {"memory.max": "max"})
    fake_cgroup(root / "docker" / "abc", {"memory.max": "max"})
    assert cgroup_memory_left(proc, root) is None


def test_a_cgroup_v1_memory_limit_is_read_and_its_no_limit_value_ignored(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("5:cpu:/\n4:memory:/jobs/7\n0::/\n")
    root = tmp_path / "sys"
    files = {"memory.limit_in_bytes": "9223372036854771712", "memory.usage_in_bytes": "100", "memory.stat": ""}
    fake_cgroup(root / "memory" / "jobs" / "7", files)
    assert cgroup_memory_left(proc, root) is None
    fake_cgroup(
        root / "memory" / "jobs" / "7",
        {**files, "memory.limit_in_bytes": str(2**30), "memory.stat": "cache 5\ntotal_inactive_file 100"},
    )
    assert cgroup_memory_left(proc, root) == 2**30
