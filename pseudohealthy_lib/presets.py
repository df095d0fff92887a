"""Presets: the same code at three sizes (plus a smoke size for tests).

=======  ==========================================  =========================================
preset   hardware                                    size
=======  ==========================================  =========================================
fast     anything; what ``PH_FAST=1`` selects         64x64, tiny networks, a few steps
cpu      2 CPU cores, minutes (the teaching size)     128x128, ngf 32, 6 residual blocks, unless
                                                      METHOD_PRESETS holds a searched recipe
sweep    2 CPU cores, a few minutes per model          128x128, ngf 16, 4 residual blocks
         (for studies that train many models)
colab    one T4 / L4 / A100 GPU, an hour or two       128x128, the papers' networks (ngf 64)
paper    the paper's own size, batch and iterations   240x240 (ANT-GAN) / 256x256 (U-Net paper)
=======  ==========================================  =========================================
"""
from __future__ import annotations

import copy
import dataclasses

from .config import fast_mode
from .engine import TrainConfig
from .utils import OptionError

PRESETS = {
    "fast": {"steps": 6, "batch_size": 2, "size": 64, "log_every": 2, "ckpt_every": 3,
             "options": {"ngf": 8, "n_blocks": 1, "ndf": 8, "unet_downs": 6}},
    "cpu": {"steps": 1500, "batch_size": 4, "size": 128, "log_every": 10, "ckpt_every": 250,
            "options": {"ngf": 32, "n_blocks": 6, "ndf": 32, "unet_downs": 7}},
    "sweep": {"steps": 1200, "batch_size": 4, "size": 128, "log_every": 10, "ckpt_every": 300,
              "options": {"ngf": 16, "n_blocks": 4, "ndf": 16, "unet_downs": 7}},
    "colab": {"steps": 20000, "batch_size": 4, "size": 128, "log_every": 50, "ckpt_every": 1000,
              "sample_every": 1000, "options": {"ngf": 64, "n_blocks": 9, "ndf": 64, "unet_downs": 7}},
    "paper": {"steps": 300000, "batch_size": 1, "size": 240, "log_every": 100, "ckpt_every": 5000,
              "sample_every": 5000, "options": {"ngf": 64, "n_blocks": 9, "ndf": 64}},
}

# method-specific changes to a preset
METHOD_PRESETS = {
    # the ResNet-vs-U-Net paper: 20 epochs of its 765 training images at batch 1, lr 2e-4, beta1 0.5.
    # It gives no image size (256 is our choice: an 8-level U-Net reaches 1x1) and describes its
    # discriminator only as four leaky-ReLU conv layers; we keep ANT-GAN's PatchGAN
    ("cyclegan", "paper"): {"steps": 20 * 765, "size": 256, "options": {"unet_downs": 8}},
    # ANT-GAN's teaching recipe, from the measured search in data/recipes/antgan.jsonl (chapter 3):
    # a narrow generator, a wider critic, a high learning rate and many small batches
    ("antgan", "cpu"): {"steps": 3600, "batch_size": 4, "lr": 1e-3, "ckpt_every": 600,
                        "options": {"ngf": 16, "n_blocks": 4, "ndf": 32, "lambda_am": 1000.0, "am_dilate": 2}},
    # the healthiness judge f_pre: a narrow U-Net trained long at a segmentation learning rate
    ("segmentor", "cpu"): {"steps": 8000, "batch_size": 8, "lr": 1e-3, "ckpt_every": 1000, "options": {"ngf": 16}},
}


def default_preset() -> str:
    """``'fast'`` when ``PH_FAST`` is set, else ``'cpu'``."""
    return "fast" if fast_mode() else "cpu"


def config(method: str, preset: str | None = None, **overrides) -> TrainConfig:
    """The :class:`TrainConfig` of ``method`` at ``preset``; keyword overrides win.

    ``options=`` overrides are merged into the preset's options rather than replacing them.
    """
    preset = preset or default_preset()
    if preset not in PRESETS:
        raise OptionError(f"unknown preset '{preset}'; choose from {sorted(PRESETS)}")
    from .methods import get_method

    known = get_method(method).defaults
    settings = {f.name for f in dataclasses.fields(TrainConfig)} - {"method", "preset"}
    if set(overrides) - settings:
        raise OptionError(f"unknown settings {sorted(set(overrides) - settings)}; known: {sorted(settings)}")
    d = copy.deepcopy(PRESETS[preset])
    d["options"] = {k: v for k, v in d["options"].items() if k in known}   # presets are shared by methods
    for src in (METHOD_PRESETS.get((method, preset), {}), overrides):
        src = copy.deepcopy(src)
        d["options"] = {**d.get("options", {}), **src.pop("options", {})}
        d.update(src)
    return TrainConfig(method=method, preset=preset, **d)
