"""What one training run will allocate, checked against the memory left BEFORE anything is allocated.

`train` calls `check_memory` as soon as the env's spaces are known, so a `buffer_size` or layer
widths that cannot fit (observations counted in their stored dtype: one byte per uint8 pixel) end in a
one-line ConfigError instead of a MemoryError or the kernel's OOM killer. Callers that plan several
runs (a study, an ablation grid) can call `memory_needed` / `check_memory` themselves before writing
anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from dqn_tune.dqn.config import WIDTH_FIELDS, DQNConfig
from dqn_tune.dqn.networks import family
from dqn_tune.dqn.observations import ObservationSpec
from dqn_tune.dqn.optimizers import STATE_COPIES
from dqn_tune.errors import ConfigError

FLOAT_BYTES = 4
"""float32: rewards, bootstrap discounts, importance weights, activations."""
INDEX_BYTES = 8
"""int64: stored actions and sampled indices."""
FLAG_BYTES = 1
"""bool: the terminated and episode-end flags."""
TREE_BYTES = 16
"""Prioritized replay's sum tree per slot: float64 nodes, twice the leaves (a power of two >= buffer_size)."""
PARAMETER_COPIES = 5
"""float32 copies of the Q-network's parameters a run holds besides the optimizer's state: the weights,
their gradients, the target network, the keep_best copy and the returned state dict."""
ACTIVATION_PASSES = 4
"""Per-batch layer outputs: the online forward, its gradients in backward, the target forward and
Double DQN's online forward on the next observations."""
MEMINFO = Path("/proc/meminfo")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_FILES = {  # (limit, usage, page-cache key in memory.stat) per cgroup version
    "v2": ("memory.max", "memory.current", "inactive_file"),
    "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
}


class MemoryEstimate(NamedTuple):
    """Bytes one run allocates, by the config field that drives each part."""

    replay: int
    """ReplayBuffer's arrays at full capacity (buffer_size), with prioritized replay's sum tree."""
    networks: int
    """Parameter copies of the Q-network (hidden_sizes, or the CNN's widths)."""
    batch: int
    """One gradient step's sampled batch and activations (batch_size, hidden_sizes)."""

    @property
    def total(self) -> int:
        """All parts together."""
        return self.replay + self.networks + self.batch


def field_to_lower(config: DQNConfig, estimate: MemoryEstimate, widths: str) -> str:
    """The config field behind the largest part of `estimate`; `widths` is the network's layer-width field.

    The batch part is batch_size x the layer widths; it is blamed on the larger of the two factors.
    """
    parts = {"buffer_size": estimate.replay, widths: estimate.networks, "batch": estimate.batch}
    field = max(parts, key=lambda name: parts[name])
    if field == "batch":
        field = "batch_size" if config.batch_size > sum(getattr(config, widths)) else widths
    return field


def estimate_memory(config: DQNConfig, observation: ObservationSpec, n_actions: int) -> MemoryEstimate:
    """The bytes `train(config)` allocates on an env with these observations and `n_actions` actions.

    EnvError if config.network cannot take these observations.
    """
    network = family(config, observation)
    # obs, next_obs, action, reward, terminated, episode end
    transition = 2 * observation.nbytes + INDEX_BYTES + FLOAT_BYTES + 2 * FLAG_BYTES
    slots = 1 << max(config.buffer_size - 1, 0).bit_length()
    tree = TREE_BYTES * slots if config.prioritized_replay else 0
    # a sampled transition: its n-step window of rewards and flags, the gathered observations, target and weight
    sampled = transition + config.n_steps * (INDEX_BYTES + FLOAT_BYTES + 2 * FLAG_BYTES) + 3 * FLOAT_BYTES
    activations = ACTIVATION_PASSES * network.activation_count(config, observation, n_actions) * FLOAT_BYTES
    return MemoryEstimate(
        replay=config.buffer_size * transition + tree,
        networks=(PARAMETER_COPIES + STATE_COPIES[config.optimizer])
        * network.parameter_count(config, observation, n_actions)
        * FLOAT_BYTES,
        batch=config.batch_size * (sampled + INDEX_BYTES + activations),
    )


def memory_needed(config: DQNConfig, observation: ObservationSpec, n_actions: int) -> int:
    """Bytes one training run of `config` allocates: replay buffer, networks with optimizer state, one batch."""
    return estimate_memory(config, observation, n_actions).total


def available_memory() -> tuple[int, str] | None:
    """(bytes this process can still allocate, where that figure comes from), or None if unknown.

    Linux: MemAvailable from /proc/meminfo, lowered to what this process's memory cgroups (v1 or v2, and
    their parents) have left when they set a limit, as in containers. None elsewhere: the check is skipped.
    """
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        available, source = int(fields["MemAvailable"].split()[0]) * 1024, f"MemAvailable in {MEMINFO}"
    except (OSError, KeyError, ValueError, IndexError):
        return None
    left = cgroup_memory_left()
    if left is not None and left < available:
        available, source = left, "what this process's memory cgroup has left under its limit"
    return available, source


def cgroup_memory_left(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = CGROUP_ROOT) -> int | None:
    """The least that this process's memory cgroups and their parents have left under their limits (limit -
    usage, inactive page cache counted as free), or None if none sets a limit."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    lefts = []
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if not path:
            continue
        if controllers == "":
            version, base = "v2", root / "unified" if (root / "unified").is_dir() else root
        elif "memory" in controllers.split(","):
            version, base = "v1", root / "memory"
        else:
            continue
        limit_name, usage_name, cache_key = CGROUP_FILES[version]
        directory = base / path.strip().lstrip("/")
        for folder in (directory, *directory.parents):
            if not folder.is_relative_to(base):
                break
            try:
                limit = int((folder / limit_name).read_text())
                usage = int((folder / usage_name).read_text())
                stat = dict(entry.split() for entry in (folder / "memory.stat").read_text().split("\n") if entry)
                cache = int(stat.get(cache_key, 0))
            except (OSError, ValueError):  # absent, or "max" (no limit)
                continue
            if limit < 2**60:  # v1 writes "no limit" as a huge number
                lefts.append(max(limit - usage + cache, 0))
    return min(lefts, default=None)


def check_memory(
    config: DQNConfig, observation: ObservationSpec, n_actions: int, *, members: int = 1, limit_bytes: int | None = None
) -> int:
    """Raise ConfigError if `members` runs of `config` trained together (`train_seeds`) need more than
    `limit_bytes`; return the bytes they need.

    `limit_bytes` defaults to `available_memory()` (the machine's MemAvailable, or its cgroup's limit);
    the check is skipped when that is unknown. The error names the size in GiB, the field to lower
    (buffer_size, the network's widths or batch_size) and the limit, on one line.
    """
    estimate = estimate_memory(config, observation, n_actions)
    needed = members * estimate.total
    if limit_bytes is None:
        available = available_memory()
        if available is None:
            return needed
        limit_bytes, source = available
    else:
        source = "the given limit"
    if needed > limit_bytes:
        field = field_to_lower(config, estimate, family(config, observation).width_field)
        value = list(getattr(config, field)) if field in WIDTH_FIELDS else getattr(config, field)
        runs = "this run needs" if members == 1 else f"these {members} runs trained together need"
        raise ConfigError(
            f"{field} = {value!r} is too large: {runs} {gib(needed)} of memory "
            f"but {gib(limit_bytes)} is available ({source}); lower {field}",
            field=field,
        )
    return needed


def gib(size: int) -> str:
    """`size` bytes as GiB, readable from kilobytes to absurd sizes."""
    value = size / 2**30
    return f"{value:,.2f} GiB" if value < 1e6 else f"{value:.3g} GiB"
