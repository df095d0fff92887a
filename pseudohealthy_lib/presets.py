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
import json

from .config import fast_mode
from .engine import TrainConfig
from .utils import OptionError, arg_at_least, arg_number

PRESETS = {
    "fast": {"steps": 6, "batch_size": 2, "size": 64, "log_every": 2, "ckpt_every": 3,
             "options": {"ngf": 8, "n_blocks": 1, "ndf": 8, "unet_downs": 6, "s_ngf": 4}},
    "cpu": {"steps": 1500, "batch_size": 4, "size": 128, "log_every": 10, "ckpt_every": 250,
            "options": {"ngf": 32, "n_blocks": 6, "ndf": 32, "unet_downs": 7}},
    "sweep": {"steps": 1200, "batch_size": 4, "size": 128, "log_every": 10, "ckpt_every": 300,
              "options": {"ngf": 16, "n_blocks": 4, "ndf": 16, "unet_downs": 7}},
    "colab": {"steps": 20000, "batch_size": 4, "size": 128, "log_every": 50, "ckpt_every": 1000,
              "sample_every": 1000, "options": {"ngf": 64, "n_blocks": 9, "ndf": 64, "unet_downs": 7}},
    "paper": {"steps": 300000, "batch_size": 1, "size": 240, "log_every": 100, "ckpt_every": 5000,
              "sample_every": 5000, "options": {"ngf": 64, "n_blocks": 9, "ndf": 64}},
}

# PyTorch's own initialisation, with which the shipped models of the first methods were trained
# (the reference N(0, 0.02) is the methods' default; ANT-GAN's recipe search measured it better)
_TORCH_INIT = {"init": "pytorch"}

# method-specific changes to a preset
METHOD_PRESETS = {
    # the ResNet-vs-U-Net paper: 20 epochs of its 765 training images at batch 1, lr 2e-4, beta1 0.5.
    # It gives no image size (256 is our choice: an 8-level U-Net reaches 1x1) and describes its
    # discriminator only as four leaky-ReLU conv layers; we keep ANT-GAN's PatchGAN
    ("cyclegan", "paper"): {"steps": 20 * 765, "size": 256, "options": {"unet_downs": 8}},
    # the shipped U-Net CycleGAN was trained with pix2pix's 50 % dropout (the reference CycleGAN,
    # and so the default, has none); the ResNet generator has no dropout either way
    ("cyclegan", "cpu"): {"options": {"dropout": 0.5, **_TORCH_INIT}},
    ("antgan", "sweep"): {"options": _TORCH_INIT},
    # ANT-GAN's teaching recipe, from the measured search in pseudohealthy_lib/records/antgan.jsonl (chapter 3):
    # a narrow generator, a wider critic, a high learning rate, many small batches and the
    # reference N(0, 0.02) initialisation
    ("antgan", "cpu"): {"steps": 3600, "batch_size": 4, "lr": 1e-3, "ckpt_every": 600,
                        "options": {"ngf": 16, "n_blocks": 4, "ndf": 32, "lambda_am": 1000.0, "am_dilate": 2}},
    # PHS-GAN's teaching recipe, from the measured search in pseudohealthy_lib/records/phsgan.jsonl
    # (chapter 6): narrow G and R, a critic twice as wide (the PatchGAN), 2400 steps at ANT-GAN's
    # lr 1e-3 with S at 2e-4, a 50-image history, and two terms that are not in the paper, the
    # identity on healthy slices (Eq. 6) and on pathological slices outside the lesion map, widened
    # by 2 pixels (Eq. 7). The paired recipe adds keep_map='truth' (the paired setting's training
    # masks) and hh_mask='paste' (Cycle H-H from a real lesion cut out with them), the unpaired one
    # hh_mask='other' (pseudohealthy_lib/recipes.py): the first two are refused outside the paired
    # setting, the third by the conditional-GAN baseline
    ("phsgan", "cpu"): {"steps": 2400, "batch_size": 4, "lr": 1e-3, "ckpt_every": 400,
                        "options": {"ngf": 16, "n_blocks": 4, "ndf": 32, "s_ngf": 8, "lambda_id": 5.0, "lr_s": 2e-4,
                                    "lambda_keep": 10.0, "keep_dilate": 2, "critic": "patchgan", "pool_size": 50}},
    # PHS-GAN's own networks (its Tables 2-4: 32 base channels, 6 residual blocks) at GPU sizes
    ("phsgan", "colab"): {"options": {"ngf": 32, "n_blocks": 6, "ndf": 32}},
    ("phsgan", "paper"): {"options": {"ngf": 32, "n_blocks": 6, "ndf": 32}},
    # a diffusion model of healthy slices: a small U-Net whatever the preset (the sampler, not
    # the width, is what the chapter studies), few DDIM steps in fast mode
    ("diffusion", "fast"): {"options": {"channels": 8, "levels": 3, "sample_steps": 4}},
    # the teaching recipe (pseudohealthy_lib/records/diffusion.jsonl): a U-Net of 1.1 M parameters
    # working at 64x64 (four times faster than 128 here), 5000 steps of 16 healthy slices, the
    # healthy twins of the training subjects included (a healthy cohort that covers the lesions' levels);
    # the mask is widened by 1 pixel of 64, 2 of the data's 128, as the classical inpainting's
    ("diffusion", "cpu"): {"steps": 5000, "batch_size": 16, "lr": 2e-4, "ckpt_every": 1000,
                           "options": {"healthy": "twins", "work_size": 64, "mask_dilate": 1}},
    # SMILE (Sec. 4.4): Adam at 1e-4 (its default betas), batch 8, 10 epochs per stage; four stages
    # of ~20,000 BraTS slices at batch 8 is our estimate of the steps (the paper gives epochs)
    ("smile", "paper"): {"steps": 100000, "batch_size": 8, "lr": 1e-4, "beta1": 0.9, "size": 256, "decay_from": 1.0,
                         "options": {"ngf": 64, "s_ngf": 64, "unet_downs": 8}},
    # VA-GAN (the authors' code): Adam at 1e-3 with beta1 0 and beta2 0.9, batch 32, 5 critic
    # updates per generator step (100 at first and every 100th), no learning-rate decay
    ("vagan", "paper"): {"steps": 100000, "batch_size": 32, "lr": 1e-3, "beta1": 0.0, "beta2": 0.9, "decay_from": 1.0},
    ("vagan", "colab"): {"beta1": 0.0, "beta2": 0.9},
    ("vagan", "fast"): {"beta1": 0.0, "beta2": 0.9, "options": {"n_critic": 1, "n_critic_long": 2, "long_first": 1}},
    # the healthiness judge f_pre: a narrow U-Net trained long at a segmentation learning rate
    ("segmentor", "cpu"): {"steps": 8000, "batch_size": 8, "lr": 1e-3, "ckpt_every": 1000,
                           "options": {"ngf": 16, **_TORCH_INIT}},
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


# ---------------------------------------------------------------------------------------------
# the arguments of ``train``: shared by the command line and the zoo's recipes


def parse_value(text: str):
    """A ``--set`` value: true/false (any case), null/none, a JSON number, or a plain string.
    The method then checks it against the type of its default (``use_ac=maybe`` is refused)."""
    word = text.strip().lower()
    if word in ("true", "false"):
        return word == "true"
    if word in ("null", "none"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def method_options(method, variant: str | None, sets: list[str] | None) -> dict:
    """The options of ``train``: those of the ``variant`` (methods that have variants), then each
    ``KEY=VALUE`` of ``sets`` (checked when the method is built)."""
    from .methods import REGISTRY

    options = {}
    if variant is not None:
        if not method.variants:
            have = [m.name for m in REGISTRY.values() if m.variants]
            names = ", ".join(have[:-1]) + " and " + have[-1] if len(have) > 1 else have[0]
            raise OptionError(f"--variant: {method.name} has no variants (only {names} "
                              f"{'has' if len(have) == 1 else 'have'} them); use --set")
        if variant not in method.variants:
            raise OptionError(f"--variant: unknown variant '{variant}' of {method.name}; "
                              f"choose from {', '.join(method.variants)}")
        options |= method.variants[variant]
    for kv in sets or []:
        k, eq, v = kv.partition("=")
        if not eq or not k.strip():
            raise OptionError(f"--set {kv}: expected KEY=VALUE, such as generator=unet")
        options[k.strip()] = parse_value(v)
    return options


#: ``train`` arguments that override a preset's setting of the same name
TRAIN_SETTINGS = ("steps", "batch_size", "lr", "seed", "data", "amp", "size", "subjects", "data_seed", "lesion", "modality", "folds",
                  "fold", "val_every", "select", "clip_grad", "ema")


def add_train_arguments(p) -> None:
    """Add to the ``argparse`` parser ``p`` the arguments of ``python -m pseudohealthy_lib train`` (also how the zoo reads its recipes)."""
    from .methods import REGISTRY

    p.add_argument("method", choices=sorted(REGISTRY))
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="default: cpu (fast with PH_FAST=1)")
    p.add_argument("--data", default=None, help="prepared .npz (default: the phantom dataset, made on first use)")
    p.add_argument("--steps", type=arg_at_least(1), default=None)
    p.add_argument("--batch-size", type=arg_at_least(1), default=None)
    p.add_argument("--lr", type=arg_number(), default=None, help="learning rate (default: the preset's)")
    p.add_argument("--size", type=arg_at_least(1), default=None, help="image side for the default phantom data")
    p.add_argument("--subjects", type=arg_at_least(1), default=None, help="phantom subjects for the default data")
    p.add_argument("--data-seed", type=arg_at_least(0), default=None, help="seed of the default phantom (default 0)")
    p.add_argument("--lesion", choices=["glioma", "stroke", "liver"], default=None,
                   help="the default phantom data: glioma (default) or stroke brain MRI, or liver CT")
    p.add_argument("--modality", choices=["flair", "t1", "t1ce", "t2"], default=None,
                   help="MR contrast of the default phantom data (default flair)")
    p.add_argument("--seed", type=arg_at_least(0), default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None)
    p.add_argument("--folds", type=arg_at_least(2), default=None,
                   help="patient-level k-fold cross-validation over the whole file (default: the file's split)")
    p.add_argument("--fold", type=arg_at_least(0), default=None, help="with --folds: the fold held out for testing")
    p.add_argument("--val-every", type=arg_at_least(0), default=None,
                   help="validate every N steps and keep the best weights in OUT/best.pt (methods with validate())")
    p.add_argument("--select", default=None, metavar="SCORE",
                   help="with --val-every: keep and export the weights of the validation with the highest SCORE "
                        "(a key validate() logs without its val_ prefix, e.g. psnr_lesion or healthiness)")
    p.add_argument("--clip-grad", type=arg_number(0, strict=False), default=None, help="clip gradient norms (0: off)")
    p.add_argument("--ema", type=arg_number(0, strict=False), default=None,
                   help="keep a moving average of the weights with this decay, e.g. 0.999, and ship it (0: off)")
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-PRESET)")
    p.add_argument("--variant", default=None,
                   help="named option set of methods that have them: ANT-GAN's ablation (gan, gan+ac, ..., antgan)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. generator=unet")
    p.add_argument("--export", default=None, metavar="NAME", help="after training, write the zoo model NAME")


def train_config(a) -> TrainConfig:
    """The :class:`~pseudohealthy_lib.engine.TrainConfig` that the parsed ``train`` arguments ``a`` (an
    ``argparse`` namespace) ask for."""
    from .methods import get_method

    if a.data is not None:
        unused = [f"--{k.replace('_', '-')}" for k in ("size", "subjects", "data_seed", "lesion", "modality")
                  if getattr(a, k) is not None]
        if unused:
            raise OptionError(f"{', '.join(unused)} choose{'s' if len(unused) == 1 else ''} the default phantom data; "
                              f"with --data {a.data} the prepared file decides")
    over = {"options": method_options(get_method(a.method), a.variant, a.set)}
    over |= {k: getattr(a, k) for k in TRAIN_SETTINGS if getattr(a, k) is not None}
    return config(a.method, a.preset, **over)
