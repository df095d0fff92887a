"""What a training step costs: time and the memory autograd keeps for the backward pass."""
from __future__ import annotations

import time

import torch

from .engine import StepContext, TrainConfig, pick_device, pick_precision


def activation_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward while ``fn()`` runs.

    This is the part of training memory that grows with image size and batch: every
    intermediate feature map a layer needs again to compute its gradient.
    """
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def training_cost(cfg: TrainConfig, steps: int = 3) -> dict:
    """Seconds per training step, parameters and saved-activation memory of ``cfg``'s method,
    on random images of ``cfg.size`` (no data needed)."""
    from .methods import get_method

    dev = pick_device()
    method = get_method(cfg.method)(cfg).to(dev)
    dtype = pick_precision(dev, cfg.amp)
    ctx = StepContext(dev, dtype, method.optimizers(), None, 1)
    b, s = cfg.batch_size, cfg.size
    batch = {"A": torch.rand(b, 1, s, s, device=dev) * 2 - 1, "B": torch.rand(b, 1, s, s, device=dev) * 2 - 1,
             "A_mask": torch.zeros(b, 1, s, s, device=dev)}

    def forward_losses():
        with ctx.autocast():
            return sum(method.generator_losses(batch, method(batch)).values())

    act = activation_bytes(forward_losses)
    method.training_step(batch, ctx)                  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        method.training_step(batch, ctx)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    gens = [k for k in method.nets if k.startswith("G")]
    return {"seconds_per_step": (time.perf_counter() - t0) / steps,
            "generator_params": sum(p.numel() for k in gens for p in method.nets[k].parameters()),
            "activation_mb": act / 2**20}
