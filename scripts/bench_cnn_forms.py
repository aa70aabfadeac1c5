"""Which stacked form of K convolutional Q-networks is fastest on this CPU: the measurement behind cnn.py.

K members' convolutions can run as a loop of per-member `conv2d` calls, one grouped convolution
(groups=K), `torch.func.vmap` over `functional_call`, or im2col (`unfold`) and one batched matmul;
each with the input in contiguous (NCHW) or channels_last memory. For each K and network (the
MinAtar-paper CNN on 10x10x4 frames, the Nature-DQN CNN on 84x84x4 frames) the script times

- an update's network work: forward + backward of the online network at batch 32 (input [K, 32, C, H, W]);
- acting: one observation per member under `torch.inference_mode()`,

in process CPU time with one torch thread, every form once per repeat in rotating order, and prints
medians over the repeats in microseconds. The hidden and output layers are the same batched matmuls
in every form, so the differences are the convolutions and the reshapes around them.

Usage: python scripts/bench_cnn_forms.py [--members 1,4,8] [--repeats 7] [--network minatar|nature|both]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

Conv = tuple[torch.Tensor, torch.Tensor, int]
"""(weight [K, out, in, k, k], bias [K, out], stride) of one stacked convolution layer."""

NETWORKS = {  # name -> (input C, H, W), conv layers (out, kernel, stride), hidden width
    "minatar": ((4, 10, 10), [(16, 3, 1)], 128),
    "nature": ((4, 84, 84), [(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),
}
N_ACTIONS = 6
BATCH = 32


def conv_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """One conv2d per member, stacked: x [K, B, C, H, W] -> [K, B, O, H', W']."""
    return torch.stack([F.conv2d(x[k], weight[k], bias[k], stride) for k in range(len(weight))])


def conv_grouped(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """One grouped conv2d with the members as groups of channels."""
    k, b, c, h, w = x.shape
    grouped = x.transpose(0, 1).reshape(b, k * c, h, w)
    out = F.conv2d(grouped, weight.flatten(0, 1), bias.flatten(), stride, groups=k)
    return out.view(b, k, weight.shape[1], *out.shape[2:]).transpose(0, 1)


def conv_vmap(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """vmap over the member axis of a one-member conv2d (functional_call on an nn.Conv2d)."""
    layer = torch.nn.Conv2d(weight.shape[2], weight.shape[1], weight.shape[3], stride)
    return vmap(lambda w, b, xs: functional_call(layer, {"weight": w, "bias": b}, (xs,)))(weight, bias, x)


def conv_unfold(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """im2col: the patches of every member's images, then one batched matmul per member."""
    k, b, c, h, w = x.shape
    size = weight.shape[-1]
    cols = F.unfold(x.reshape(k * b, c, h, w), size, stride=stride)  # [K*B, C*k*k, L]
    cols = cols.view(k, b, *cols.shape[1:]).transpose(1, 2).flatten(2)  # [K, C*k*k, B*L]
    out = torch.baddbmm(bias[:, :, None], weight.flatten(2), cols)  # [K, O, B*L]
    side_h, side_w = (h - size) // stride + 1, (w - size) // stride + 1
    return out.view(k, -1, b, side_h, side_w).transpose(1, 2)


def conv_unfold_broadcast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, stride: int) -> torch.Tensor:
    """im2col, then a matmul broadcast over the batch: the output comes out in [K, B, O, L] order, no transpose."""
    k, b, c, h, w = x.shape
    size = weight.shape[-1]
    cols = F.unfold(x.reshape(k * b, c, h, w), size, stride=stride).view(k, b, c * size * size, -1)
    out = torch.matmul(weight.flatten(2)[:, None], cols) + bias[:, None, :, None]  # [K, B, O, L]
    return out.view(k, b, -1, (h - size) // stride + 1, (w - size) // stride + 1)


FORMS: dict[str, Callable[[torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor]] = {
    "loop": conv_loop,
    "grouped": conv_grouped,
    "vmap": conv_vmap,
    "unfold": conv_unfold,
    "unfold_broadcast": conv_unfold_broadcast,
}


def forward(
    x: torch.Tensor,
    convs: list[Conv],
    linears: list[tuple[torch.Tensor, torch.Tensor]],
    form: Callable[..., torch.Tensor],
    channels_last: bool,
) -> torch.Tensor:
    """Q-values [K, B, A] of the stacked network, its convolutions in `form`."""
    k, b = x.shape[:2]
    for weight, bias, stride in convs:
        if channels_last:
            x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(x.shape)
        x = torch.relu(form(x, weight, bias, stride))
    x = x.reshape(k, b, -1)
    (hidden_w, hidden_b), (out_w, out_b) = linears
    if k == 1:  # plain 2-D matmuls, as the trainer's one-member layers run
        x = torch.relu(torch.addmm(hidden_b[0], x[0], hidden_w[0]))
        return torch.addmm(out_b[0, :, 0], x, out_w[0].T)[None]
    x = torch.relu(torch.baddbmm(hidden_b, x, hidden_w))
    return torch.baddbmm(out_b, out_w, x.mT).mT


def build(
    network: str, members: int
) -> tuple[tuple[int, int, int], list[Conv], list[tuple[torch.Tensor, torch.Tensor]]]:
    """Random stacked weights of `members` networks."""
    (c, h, w), layers, hidden = NETWORKS[network]
    convs: list[Conv] = []
    for out, size, stride in layers:
        convs.append((torch.randn(members, out, c, size, size) * 0.05, torch.zeros(members, out), stride))
        c, h, w = out, (h - size) // stride + 1, (w - size) // stride + 1
    for weight, bias, _ in convs:
        weight.requires_grad_(True)
        bias.requires_grad_(True)
    flat = c * h * w
    linears = [
        (torch.randn(members, flat, hidden) * 0.02, torch.zeros(members, 1, hidden)),
        (torch.randn(members, N_ACTIONS, hidden) * 0.02, torch.zeros(members, N_ACTIONS, 1)),
    ]
    for pair in linears:
        for tensor in pair:
            tensor.requires_grad_(True)
    return NETWORKS[network][0], convs, linears


def update_once(x: torch.Tensor, *args: object) -> None:
    """Forward and backward of the online network (what an update does with it)."""
    forward(x, *args).square().sum().backward()


def act_once(x: torch.Tensor, *args: object) -> None:
    """The greedy actions for one observation per member."""
    with torch.inference_mode():
        forward(x, *args).argmax(dim=2)


def cpu_us(fn: Callable[[], object], calls: int) -> float:
    """Process CPU microseconds per call of `fn` over `calls` calls (after one warm-up call)."""
    fn()
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--network", choices=[*NETWORKS, "both"], default="both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    networks = list(NETWORKS) if args.network == "both" else [args.network]
    variants = [(name, cl) for name in FORMS for cl in (False, True)]
    for network in networks:
        for members in (int(k) for k in args.members.split(",")):
            shape, convs, linears = build(network, members)
            train_x = torch.rand(members, BATCH, *shape)
            act_x = torch.rand(members, 1, *shape)
            calls = 40 if network == "minatar" else 3
            times: dict[tuple[str, bool, str], list[float]] = {}
            for repeat in range(args.repeats):
                order = variants[repeat % len(variants) :] + variants[: repeat % len(variants)]
                for name, channels_last in order:
                    network_args = (convs, linears, FORMS[name], channels_last)
                    times.setdefault((name, channels_last, "update"), []).append(
                        cpu_us(partial(update_once, train_x, *network_args), calls)
                    )
                    times.setdefault((name, channels_last, "act"), []).append(
                        cpu_us(partial(act_once, act_x, *network_args), calls * 10)
                    )
            print(f"{network} K={members}: median CPU us over {args.repeats} repeats (update = fwd+bwd batch {BATCH})")
            for name, channels_last in variants:
                update_us = statistics.median(times[(name, channels_last, "update")])
                act_us = statistics.median(times[(name, channels_last, "act")])
                label = name + (" channels_last" if channels_last else "")
                print(f"  {label:24s} update {update_us:10.0f}   act {act_us:8.0f}")


if __name__ == "__main__":
    main()
