"""Training flushes denormal floats to zero and gives the caller's setting back."""

from __future__ import annotations

import pytest
import torch

from dqn_tune import DQNConfig, train
from dqn_tune.dqn.denormals import SMALLEST_NORMAL, denormals_flushed, flushing_denormals


@pytest.mark.parametrize("caller_flushes", [False, True])
def test_the_block_flushes_and_restores_the_callers_setting(caller_flushes: bool) -> None:
    torch.set_flush_denormal(caller_flushes)
    try:
        with denormals_flushed():
            assert flushing_denormals()
            assert (torch.tensor([SMALLEST_NORMAL]) / 4)[0] == 0
        assert flushing_denormals() == caller_flushes
    finally:
        torch.set_flush_denormal(False)


def test_training_leaves_the_setting_as_it_found_it(tiny_config: DQNConfig) -> None:
    assert not flushing_denormals()
    train(tiny_config, seed=0)
    assert not flushing_denormals()
    assert (torch.tensor([SMALLEST_NORMAL]) / 4)[0] > 0
