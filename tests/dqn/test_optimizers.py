"""FlatRMSprop: torch.optim.RMSprop's centered step with momentum, bit for bit, on flat buffers."""

from __future__ import annotations

import pytest
import torch

from dqn_tune.dqn.config import DQNConfig
from dqn_tune.dqn.denormals import denormals_flushed
from dqn_tune.dqn.optimizers import RMSPROP_SETTINGS, FlatRMSprop, make_optimizer

SHAPES = [(2, 16, 4, 3, 3), (2, 16), (2, 1024, 128), (2, 1, 128), (2, 6, 128), (2, 6, 1)]


def gradients(steps: int) -> list[list[torch.Tensor]]:
    """Random gradients with the zeros of dead units and values whose squares are tiny."""
    generator = torch.Generator().manual_seed(0)
    result = []
    for _ in range(steps):
        grads = [torch.randn(shape, generator=generator) * 1e-3 for shape in SHAPES]
        for grad in grads:
            grad[..., ::3] = 0.0
            grad[..., 1::7] *= 1e-15
        result.append(grads)
    return result


def stepped(optimizer_class: type[torch.optim.Optimizer], grads: list[list[torch.Tensor]], **options: object):
    generator = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(shape, generator=generator) * 0.01) for shape in SHAPES]
    optimizer = optimizer_class(params, lr=2.5e-4, **RMSPROP_SETTINGS, **options)
    for step_grads in grads:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad.clone()
        optimizer.step()
    return params, optimizer


@pytest.mark.parametrize("flushed", [False, True], ids=["denormals-kept", "denormals-flushed"])
def test_flat_rmsprop_equals_torch_rmsprop_bit_for_bit(flushed: bool) -> None:
    # the weights bit for bit; the state too, but for averages of squares under 1e-30 (where flushing
    # denormals makes the last bits depend on where a value falls in a vector): under the square-root
    # floor, they cannot reach the weights
    grads = gradients(200)
    with denormals_flushed() if flushed else torch.no_grad():
        ours, ours_optimizer = stepped(FlatRMSprop, grads)
        theirs, theirs_optimizer = stepped(torch.optim.RMSprop, grads, foreach=True)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    ours_state, theirs_state = ours_optimizer.state_dict(), theirs_optimizer.state_dict()
    assert ours_state["state"].keys() == theirs_state["state"].keys()
    for index, entry in theirs_state["state"].items():
        assert entry.keys() == ours_state["state"][index].keys()
        for name, value in entry.items():
            torch.testing.assert_close(ours_state["state"][index][name], value, rtol=0, atol=1e-30)
            assert torch.equal(ours_state["state"][index][name], value) or flushed


def test_flat_rmsprop_resumes_from_its_state_dict() -> None:
    grads = gradients(30)
    straight, _ = stepped(FlatRMSprop, grads)
    halfway, optimizer = stepped(FlatRMSprop, grads[:20])
    params = [torch.nn.Parameter(param.detach().clone()) for param in halfway]
    resumed = FlatRMSprop(params, lr=2.5e-4, **RMSPROP_SETTINGS)
    resumed.load_state_dict(optimizer.state_dict())
    for step_grads in grads[20:]:
        for param, grad in zip(params, step_grads, strict=True):
            param.grad = grad.clone()
        resumed.step()
    assert all(torch.equal(a, b) for a, b in zip(params, straight, strict=True))


def test_flat_rmsprop_refuses_what_it_does_not_implement() -> None:
    params = [torch.nn.Parameter(torch.zeros(3))]
    with pytest.raises(ValueError, match="centered RMSprop with momentum"):
        FlatRMSprop(params, lr=0.1, alpha=0.9, eps=0.01, centered=False, momentum=0.9)


def test_adam_takes_the_config_s_epsilon_and_a_larger_one_damps_rare_gradients() -> None:
    moved = []
    for eps in (1e-8, 1.5e-4):
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = make_optimizer(DQNConfig(learning_rate=1e-3, adam_eps=eps), [param])
        assert optimizer.param_groups[0]["eps"] == eps
        param.grad = torch.tensor([1e-6])  # Adam's first step is lr * g / (|g| + eps): ~lr unless eps >> |g|
        optimizer.step()
        moved.append(-param.item())
    assert moved[0] == pytest.approx(1e-3, rel=0.02) and moved[1] < moved[0] / 100
