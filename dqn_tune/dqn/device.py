"""Where a run's networks train: the accepted devices, and the check that the chosen one exists here."""

from __future__ import annotations

from dqn_tune.errors import ConfigError

DEVICES = ("cpu", "cuda")
"""`cuda` trains networks and minibatches on a GPU; envs and replay buffers stay on the CPU either way."""


def check_device(device: str) -> str:
    """`device` if it is one of DEVICES and usable on this machine; else a ConfigError naming it."""
    if device not in DEVICES:
        raise ConfigError(f"device = {device!r} is invalid: expected one of {', '.join(DEVICES)}", field="device")
    if device == "cuda":
        import torch  # only a cuda request pays for loading torch here

        if not torch.cuda.is_available():
            raise ConfigError(
                "device = 'cuda' is invalid on this machine: torch sees no CUDA GPU (torch "
                f"{torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); expected cpu",
                field="device",
            )
    return device
