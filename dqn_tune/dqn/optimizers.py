"""The optimizer of a run, by `config.optimizer`: Adam (fused), or the centered RMSprop of DQN's papers.

Both are elementwise with one learning rate for all parameters, so one optimizer over the stacked
parameters of K members is K independent optimizers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from dqn_tune.dqn.config import DQNConfig

STATE_COPIES = {"adam": 2, "rmsprop": 3}
"""Per-parameter tensors each optimizer keeps: Adam's two moments; centered RMSprop's squared and plain
gradient averages and its momentum buffer."""
RMSPROP_SETTINGS: dict[str, Any] = {"alpha": 0.95, "eps": 0.01, "centered": True, "momentum": 0.95}
"""torch.optim.RMSprop's settings in MinAtar's reference DQN (examples/dqn.py: squared- and plain-gradient
momentum 0.95, minimum squared gradient 0.01), after the Nature DQN's RMSProp."""
_RMSPROP_STATE = ("square_avg", "grad_avg", "momentum_buffer")


def make_optimizer(config: DQNConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names, at `config.learning_rate` (Adam with `config.adam_eps`)."""
    if config.optimizer == "rmsprop":
        return FlatRMSprop(params, lr=config.learning_rate, **RMSPROP_SETTINGS)
    return torch.optim.Adam(params, lr=config.learning_rate, eps=config.adam_eps, fused=True)


class FlatRMSprop(torch.optim.Optimizer):
    """torch.optim.RMSprop (centered, with momentum), its ops run once over all parameters laid end to end.

    Written here because torch has no fused RMSprop: on the CPU its step dispatches each of ~9 ops per
    parameter tensor and spends most of its time outside the arithmetic (docs/performance-core.md). The
    state lives in three flat buffers (two more hold a step's temporaries); each parameter's entry in
    `state` (torch's names and layout, so `state_dict()` is torch's) is a view into them, and the arithmetic
    is torch's, op for op, but one:
    values under the square root below (eps * 2**-26)**2 are raised to it. Their roots are too small to
    change `sqrt(v) + eps` (under half a float32 ulp of eps), and on this CPU `sqrt` takes about five times
    longer on zeros, which the weights behind dead units give by the thousand.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        *,
        lr: float,
        alpha: float,
        eps: float,
        centered: bool,
        momentum: float,
    ) -> None:
        if not centered or momentum <= 0:
            raise ValueError("FlatRMSprop implements the centered RMSprop with momentum only")
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "momentum": momentum})
        if len(self.param_groups) != 1:
            raise ValueError("FlatRMSprop takes one parameter group")
        self._flat: dict[str, torch.Tensor] = {}
        self._sqrt_floor = (eps * 2**-26) ** 2

    @property
    def _params(self) -> list[torch.Tensor]:
        params: list[torch.Tensor] = self.param_groups[0]["params"]
        return params

    def _lay_out(self) -> None:
        """Gather each state tensor (zeros before the first step) into its flat buffer; point `state` at views."""
        params = self._params
        for name in _RMSPROP_STATE:
            parts = [
                self.state[p].get(name, torch.zeros_like(p, memory_format=torch.contiguous_format)) for p in params
            ]
            self._flat[name] = flat = torch.cat([part.reshape(-1) for part in parts])
            for param, view in zip(params, flat.split([p.numel() for p in params]), strict=True):
                self.state[param][name] = view.view(param.shape)
        steps = [self.state[p].get("step", torch.tensor(0.0)) for p in params]
        self._flat["step"] = flat_steps = torch.stack(steps)
        for param, step in zip(params, flat_steps, strict=True):
            self.state[param]["step"] = step
        # the step's two temporaries, written in place each step: at K members they are K x 0.5 MB (MinAtar's
        # network), and fresh ones each step were handed back to the OS and faulted in again
        self._flat["grad"] = torch.empty_like(self._flat["square_avg"])
        self._flat["avg"] = torch.empty_like(self._flat["square_avg"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's load, then the loaded tensors gathered into the flat buffers."""
        super().load_state_dict(state_dict)
        self._flat = {}

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        """One RMSprop step on every parameter (closures are not supported)."""
        if closure is not None:
            raise ValueError("FlatRMSprop.step takes no closure")
        if not self._flat:
            self._lay_out()
        group, params = self.param_groups[0], self._params
        alpha, flat = group["alpha"], self._flat
        grad = torch.cat([p.grad.reshape(-1) for p in params], out=flat["grad"])  # type: ignore[union-attr]
        flat["square_avg"].mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
        flat["grad_avg"].lerp_(grad, 1 - alpha)
        avg = torch.addcmul(flat["square_avg"], flat["grad_avg"], flat["grad_avg"], value=-1, out=flat["avg"])
        avg.clamp_min_(self._sqrt_floor).sqrt_().add_(group["eps"])
        buffer = flat["momentum_buffer"]
        buffer.mul_(group["momentum"]).addcdiv_(grad, avg)
        torch._foreach_add_(params, [self.state[p]["momentum_buffer"] for p in params], alpha=-group["lr"])
        flat["step"].add_(1.0)
