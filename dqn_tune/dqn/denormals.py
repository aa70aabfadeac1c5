"""Denormal floats flushed to zero while a run trains: on CPUs they make arithmetic tens of times slower.

Centered RMSprop's running averages of a weight whose gradient stays zero (a feature no observation
lights, common with sparse image inputs) decay through the denormal range, and `sqrt` of a denormal
costs tens of times a normal one on x86; matmuls over denormal weights slow down alike. Values below
1.2e-38 carry nothing a Q-network needs (GPUs flush them too), so training flushes them and restores
the caller's setting afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

SMALLEST_NORMAL = torch.finfo(torch.float32).tiny


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero now (torch has a setter but no getter)."""
    return bool((torch.tensor([SMALLEST_NORMAL / 4]) * 1.0)[0] == 0)


@contextmanager
def denormals_flushed() -> Iterator[None]:
    """Flush denormals to zero inside the block (where the CPU supports it), then restore the setting."""
    before = flushing_denormals()
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(before)
