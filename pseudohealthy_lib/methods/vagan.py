"""VA-GAN (Baumgartner, Koch, Tezcan, Ang and Konukoglu): visual attribution with a Wasserstein GAN.

VA-GAN learns from class labels alone (no lesion masks): a map generator M turns an image x of
the diseased class into one of the healthy class by *adding* a map to it::

    y = x + M(x)                                                                            (V1)

and a critic D tells such images from real healthy ones. The map is what the paper is after (it
shows where the disease is); y is a pseudo-healthy image. The critic is a Wasserstein critic
with the gradient penalty of Gulrajani et al. (WGAN-GP), the generator pays for every bit of
change it makes (an L1 norm of the map, so that only what must change does)::

    L_D = D(y) - D(x_h) + lambda_gp * (|grad D(x^)|_2 - 1)^2,  x^ between x_h and y        (V2)
    L_M = -D(y) + lambda_map * |M(x)|_1                                                     (V3)

(V2) is minimised by the critic, ``n_critic`` times per generator step, each time on a fresh
batch; following the authors' code, ``n_critic_long`` times (100) during the first
``long_first`` steps and every ``long_every``-th step, so that the critic is near its optimum
when the generator reads its gradient. Their code's defaults, which these are: lambda_gp = 10,
lambda_map = 100, 5 critic updates, Adam with beta1 = 0 and beta2 = 0.9 (the presets set those).

Choices: M is the pix2pix U-Net of the other chapters with a linear output (the map may be
negative and positive); the critic is the PatchGAN (instance norm, which keeps each image's
gradient its own, as the penalty needs; the authors used a fully convolutional critic without
batch norm as well), its patch scores averaged into D(x); y is not squashed while training and is
clipped to [-1, 1] at inference. The critic never sees a mask, so the only thing that separates the
two classes for it is the lesion (and whatever else differs between the slices of each class).
"""
from __future__ import annotations

import torch
from torch import nn

from .. import losses as L
from ..data.prepared import UnpairedDataset
from ..networks import PatchGAN, UnetGenerator, init_weights
from ..utils import OptionError
from .base import Translator, register, set_requires_grad


@register
class VAGAN(Translator):
    name = "vagan"
    pseudo_healthy = True
    defaults = {"ngf": 32, "unet_downs": 7, "ndf": 32, "lambda_map": 100.0, "lambda_gp": 10.0, "n_critic": 5,
                "n_critic_long": 100, "long_first": 25, "long_every": 100, "init": "normal", "init_gain": 0.02}
    choices = {"init": ("normal", "xavier", "kaiming", "orthogonal", "pytorch")}
    ranges = {"ngf": (1, None), "unet_downs": (1, None), "ndf": (1, None), "lambda_map": (0, None),
              "lambda_gp": (0, None), "n_critic": (1, None), "n_critic_long": (1, None), "long_first": (0, None),
              "long_every": (0, None), "init_gain": (0, None)}

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt
        nets = {"M": UnetGenerator(1, 1, o["ngf"], o["unet_downs"], final="none"), "D": PatchGAN(1, o["ndf"])}
        self.nets = nn.ModuleDict({k: init_weights(v, o["init"], o["init_gain"]) for k, v in nets.items()})

    def check_side(self, side):
        need = max(16, 2 ** self.opt["unet_downs"])
        if side % need:
            raise OptionError(f"images of {side}x{side} do not suit vagan: its U-Net of unet_downs="
                              f"{self.opt['unet_downs']} and its critic need sides divisible by {need}")

    def dataset(self, data, split):
        return UnpairedDataset(data, split, seed=self.cfg.seed)        # A: diseased, B: healthy; no masks used

    def optimizers(self):
        return {"M": self.adam(self.nets["M"]), "D": self.adam(self.nets["D"])}

    def exported(self):
        return ["M"]

    def critic_steps(self, step: int) -> int:
        """How many critic updates precede generator step ``step`` (0-based)."""
        o = self.opt
        long = step < o["long_first"] or (o["long_every"] and step % o["long_every"] == 0)
        return o["n_critic_long"] if long else o["n_critic"]

    def pseudo_healthy_image(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, M(x)): Eq. (V1) for images (B, 1, H, W) in [-1, 1], y unclipped."""
        m = self.nets["M"](x)
        return x + m, m

    def training_step(self, batch, ctx):
        o, n = self.opt, self.nets
        for k in range(self.critic_steps(ctx.step)):                                  # Eq. (V2)
            b = batch if k == 0 else ctx.next_batch()
            with ctx.autocast():
                with torch.no_grad():
                    y, _ = self.pseudo_healthy_image(b["A"])
                wasserstein = n["D"](y).float().mean() - n["D"](b["B"]).float().mean()
            gp = L.gradient_penalty(n["D"], b["B"], y)
            loss_d = wasserstein + o["lambda_gp"] * gp
            ctx.backward(loss_d)
            ctx.update("D")
        set_requires_grad([n["D"]], False)                                          # Eq. (V3)
        with ctx.autocast():
            y, m = self.pseudo_healthy_image(batch["A"])
            fool = -n["D"](y).float().mean()
            l1 = m.float().abs().mean()
            loss_m = fool + o["lambda_map"] * l1
        ctx.backward(loss_m)
        ctx.update("M")
        set_requires_grad([n["D"]], True)
        return {"M": loss_m.detach(), "fool": fool.detach(), "map_l1": l1.detach(), "D": loss_d.detach(),
                "wasserstein": -wasserstein.detach(), "gp": gp.detach()}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        """Pseudo-healthy images y = x + M(x), clipped to [-1, 1] (only direction ``'AB'`` exists)."""
        if direction != "AB":
            raise ValueError("VA-GAN maps the diseased class to the healthy one only (direction 'AB')")
        return self.pseudo_healthy_image(x)[0].clamp(-1, 1)

    def samples(self, batch):
        y, m = self.pseudo_healthy_image(batch["A"])
        return {"x": batch["A"], "y": y.clamp(-1, 1), "M(x)": m.clamp(-1, 1)}
