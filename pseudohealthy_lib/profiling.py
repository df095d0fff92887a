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
    on random images of ``cfg.size`` (no data needed; the method's ``example_batch``).

    ``activation_mb`` is what autograd saves during one whole training step, all networks
    together (for a GAN: the generators' forward pass and the discriminators'); the parameters
    counted are those of the networks used at inference (``exported()``: a GAN's generators).
    """
    from .methods import get_method

    dev = pick_device()
    method = get_method(cfg.method)(cfg).to(dev)
    dtype = pick_precision(dev, cfg.amp)
    batch = method.example_batch(cfg.batch_size, cfg.size, dev)
    ctx = StepContext(dev, dtype, method.optimizers(), draw=lambda step, draw: batch)   # further batches: the same
    act = activation_bytes(lambda: method.training_step(batch, ctx))      # also the warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        method.training_step(batch, ctx)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return {"seconds_per_step": (time.perf_counter() - t0) / steps,
            "generator_params": sum(p.numel() for k in method.exported() for p in method.nets[k].parameters()),
            "activation_mb": act / 2**20}
