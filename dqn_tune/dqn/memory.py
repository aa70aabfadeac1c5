"""What one training run will allocate, checked against the memory left BEFORE anything is allocated.

`train` calls `check_memory` as soon as the env's dimensions are known, so a `buffer_size` or
`hidden_sizes` that cannot fit ends in a one-line ConfigError instead of a MemoryError or the
kernel's OOM killer. Callers that plan several runs (a study, an ablation grid) can call
`memory_needed` / `check_memory` themselves before writing anything.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.errors import ConfigError

FLOAT_BYTES = 4
"""float32: observations, rewards, terminal flags, weights, activations."""
INDEX_BYTES = 8
"""int64: stored actions and sampled indices."""
PARAMETER_COPIES = 7
"""float32 copies of the Q-network's parameters a run holds: the weights, their gradients, Adam's two
moments, the target network, the keep_best copy and the returned state dict."""
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
    """ReplayBuffer's arrays at full capacity (buffer_size)."""
    networks: int
    """Parameter copies of the Q-network (hidden_sizes)."""
    batch: int
    """One gradient step's sampled batch and activations (batch_size, hidden_sizes)."""

    @property
    def total(self) -> int:
        """All parts together."""
        return self.replay + self.networks + self.batch


def field_to_lower(config: DQNConfig, estimate: MemoryEstimate) -> str:
    """The config field behind the largest part of `estimate`.

    The batch part is batch_size x the layer widths; it is blamed on the larger of the two factors.
    """
    parts = {"buffer_size": estimate.replay, "hidden_sizes": estimate.networks, "batch": estimate.batch}
    field = max(parts, key=lambda name: parts[name])
    if field == "batch":
        field = "batch_size" if config.batch_size > sum(config.hidden_sizes) else "hidden_sizes"
    return field


def estimate_memory(config: DQNConfig, obs_dim: int, n_actions: int) -> MemoryEstimate:
    """The bytes `train(config)` allocates on an env with `obs_dim` observation values and `n_actions` actions."""
    transition = 2 * obs_dim * FLOAT_BYTES + INDEX_BYTES + 2 * FLOAT_BYTES  # obs, next_obs, action, reward, terminated
    widths = (obs_dim, *config.hidden_sizes, n_actions)
    parameters = sum((fan_in + 1) * fan_out for fan_in, fan_out in pairwise(widths))
    activations = ACTIVATION_PASSES * sum(widths[1:]) * FLOAT_BYTES
    return MemoryEstimate(replay=config.buffer_size * transition,
                          networks=PARAMETER_COPIES * parameters * FLOAT_BYTES,
                          batch=config.batch_size * (transition + INDEX_BYTES + activations))


def memory_needed(config: DQNConfig, obs_dim: int, n_actions: int) -> int:
    """Bytes one training run of `config` allocates: replay buffer, networks with optimizer state, one batch."""
    return estimate_memory(config, obs_dim, n_actions).total


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
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
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


def check_memory(config: DQNConfig, obs_dim: int, n_actions: int, *, members: int = 1,
                 limit_bytes: int | None = None) -> int:
    """Raise ConfigError if `members` runs of `config` trained together (`train_seeds`) need more than
    `limit_bytes`; return the bytes they need.

    `limit_bytes` defaults to `available_memory()` (the machine's MemAvailable, or its cgroup's limit);
    the check is skipped when that is unknown. The error names the size in GiB, the field to lower
    (buffer_size, hidden_sizes or batch_size) and the limit, on one line.
    """
    estimate = estimate_memory(config, obs_dim, n_actions)
    needed = members * estimate.total
    if limit_bytes is None:
        available = available_memory()
        if available is None:
            return needed
        limit_bytes, source = available
    else:
        source = "the given limit"
    if needed > limit_bytes:
        field = field_to_lower(config, estimate)
        value = list(config.hidden_sizes) if field == "hidden_sizes" else getattr(config, field)
        runs = "this run needs" if members == 1 else f"these {members} runs trained together need"
        raise ConfigError(f"{field} = {value!r} is too large: {runs} {gib(needed)} of memory "
                          f"but {gib(limit_bytes)} is available ({source}); lower {field}", field=field)
    return needed


def gib(size: int) -> str:
    """`size` bytes as GiB, readable from kilobytes to absurd sizes."""
    value = size / 2**30
    return f"{value:,.2f} GiB" if value < 1e6 else f"{value:.3g} GiB"
