"""CycleGAN (Zhu et al.) between domain A (pathological slices) and domain B (healthy slices,
or lesion masks drawn as images), with the switches the book's chapters need:

* ``generator``: ``'resnet'`` (Johnson et al., ANT-GAN Table I) or ``'unet'`` (pix2pix), the
  comparison of the CycleGAN ResNet-vs-U-Net paper;
* ``use_ac`` / ``use_nc``: the two cycle-consistency terms of Eq. (4) separately (ANT-GAN's
  ablation calls them abnormality and normality synthesis consistency);
* ``shortcut`` and ``lambda_am``: ANT-GAN's global shortcut on G_AB and its anomaly-mask loss
  (Eq. 2); :mod:`pseudohealthy_lib.methods.antgan` turns them on. ``am_dilate`` widens the mask of
  Eq. 2 by that many pixels (a lesion brightens a thin ring of tissue just outside its label);
* ``lambda_paste`` (the library's, not the paper's; off by default): a supervised removal task
  for G_AB. A real lesion, the abnormal slice inside its training mask, is pasted over the
  batch's healthy slice, and G_AB must give the healthy slice back (PHS-GAN's Eq. 1'' in
  :mod:`.phsgan`; the NC cycle's lesions are G_BA's paintings, which G_BA can make easy to undo)::

      L_paste = |G_AB(m * x_a + (1 - m) * x_b) - x_b|_1,   m = x_a's mask inside x_b's head      (P)

  ``paste_dilate`` cuts the lesion out with its mask widened by that many pixels, with the
  bright border the lesion leaves just outside its label;

* ``healthy``: domain B's healthy slices are the data's lesion-free slices (``'slices'``), those of
  other subjects at the level of each lesion slice (``'level'``: any registered data), or, on
  phantoms, the healthy twins of other subjects' lesion slices (``'twins'``: same anatomical levels);
* ``d_downs``: the PatchGAN critics' stride-2 convolutions (Table III: 3, a 70x70 patch per
  score; 4 sees 142x142, more of the anatomy around a lesion);
* ``init`` and ``dropout``: the reference implementation's N(0, 0.02) initialisation and no
  dropout (its CycleGAN default), see :func:`~pseudohealthy_lib.networks.generators.init_weights`.

Equation numbers refer to ANT-GAN (Sun et al.); with A = abnormal and B = normal,
G_AB is its G_A2N and G_BA its G_N2A.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import losses as L
from ..data.prepared import UnpairedDataset
from ..networks import PatchGAN, ResnetGenerator, UnetGenerator, init_weights
from ..utils import OptionError
from .base import ImagePool, Translator, register


@register
class CycleGAN(Translator):
    name = "cyclegan"
    defaults = {
        "generator": "resnet", "ngf": 64, "n_blocks": 9, "unet_downs": 7, "ndf": 64, "d_downs": 3,
        "upsample": "transpose", "shortcut": False,
        "lambda_cc": 10.0, "lambda_id": 0.0, "lambda_am": 0.0, "am_dilate": 0, "lambda_paste": 0.0, "paste_dilate": 0,
        "use_ac": True, "use_nc": True, "bidirectional": None,   # None: on when a cycle term is on
        "gan_mode": "lsgan", "pool_size": 50, "domain_b": "healthy", "healthy": "slices",
        "init": "normal", "init_gain": 0.02, "dropout": 0.0,
    }
    # before version 2, networks kept PyTorch's initialisation and the U-Net had 50 % dropout
    before = {1: {"init": "pytorch", "dropout": 0.5}}
    choices = {"generator": ("resnet", "unet"), "upsample": ("transpose", "resize"), "gan_mode": ("lsgan", "vanilla"),
               "domain_b": ("healthy", "mask"), "healthy": ("slices", "twins", "level"), "bidirectional": (None, True, False),
               "init": ("normal", "xavier", "kaiming", "orthogonal", "pytorch")}
    ranges = {"ngf": (1, None), "n_blocks": (0, None), "unet_downs": (1, None), "ndf": (1, None), "d_downs": (1, 6), "pool_size": (0, None),
              "lambda_cc": (0, None), "lambda_id": (0, None), "lambda_am": (0, None), "am_dilate": (0, None), "lambda_paste": (0, None), "paste_dilate": (0, None),
              "init_gain": (0, None), "dropout": (0, 0.9)}

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt
        if o["bidirectional"] is None:
            o["bidirectional"] = bool(o["use_ac"] or o["use_nc"])
        if (o["use_ac"] or o["use_nc"]) and not o["bidirectional"]:
            raise OptionError("cycle-consistency (use_ac, use_nc) needs both generators: bidirectional=false "
                              "works only with use_ac=false and use_nc=false")
        if o["lambda_paste"] and o["domain_b"] != "healthy":
            raise OptionError(f"lambda_paste pastes lesions over healthy slices: it needs domain_b='healthy', "
                              f"not {o['domain_b']!r}")
        nets = {"G_AB": self._generator(o["shortcut"]), "D_B": PatchGAN(1, o["ndf"], n_down=o["d_downs"])}
        if o["bidirectional"]:
            nets |= {"G_BA": self._generator(False), "D_A": PatchGAN(1, o["ndf"], n_down=o["d_downs"])}
        self.nets = nn.ModuleDict({k: init_weights(v, o["init"], o["init_gain"]) for k, v in nets.items()})
        self.pools = {k: ImagePool(o["pool_size"], seed=cfg.seed + i) for i, k in enumerate(("A", "B"))}
        self.critic_key = "D_B" if o["domain_b"] == "healthy" else None     # D_B judges masks otherwise

    def _generator(self, shortcut: bool) -> nn.Module:
        o = self.opt
        if o["generator"] == "resnet":
            return ResnetGenerator(1, 1, o["ngf"], o["n_blocks"], shortcut=shortcut, upsample=o["upsample"])
        if o["generator"] == "unet":
            if shortcut:
                raise OptionError("the global shortcut (shortcut=true) is defined for the ResNet generator only, "
                                  "not generator='unet'")
            return UnetGenerator(1, 1, o["ngf"], o["unet_downs"], o["dropout"])
        raise OptionError(f"unknown generator '{o['generator']}': use 'resnet' or 'unet'")

    def check_side(self, side):
        o = self.opt
        unet = o["generator"] == "unet"
        need = 2 ** o["unet_downs"] if unet else 4        # the generator's down- and upsamplings
        least = 2 ** (o["d_downs"] + 1)                    # the PatchGAN's smallest input (16 for Table III's)
        if side % need or side < least:
            gen = f"the U-Net generator with unet_downs={o['unet_downs']}" if unet else "the ResNet generator"
            raise OptionError(f"images of {side}x{side} do not suit {self.name}: {gen} needs sides divisible by "
                              f"{need} and the discriminator with d_downs={o['d_downs']} needs at least {least}")

    # -- engine interface
    def trained_with(self):
        # the anomaly-mask loss (ANT-GAN's Eq. 2) and the pasted lesions are cut with each slice's own
        # mask; domain_b='mask' translates to the masks themselves
        o = self.opt
        return ("lesion masks",) if o["lambda_am"] or o["lambda_paste"] or o["domain_b"] == "mask" else ()

    def dataset(self, data, split):
        return UnpairedDataset(data, split, seed=self.cfg.seed, domain_b=self.opt["domain_b"], healthy=self.opt["healthy"])

    def optimizers(self):
        gens = [self.nets[k] for k in ("G_AB", "G_BA") if k in self.nets]
        discs = [self.nets[k] for k in ("D_A", "D_B") if k in self.nets]
        return {"G": self.adam(*gens), "D": self.adam(*discs)}

    def exported(self):
        return [k for k in ("G_AB", "G_BA") if k in self.nets]

    def generator_losses(self, batch, out) -> dict[str, torch.Tensor]:
        """All generator terms of L_FULL (Eq. 1) for one batch; subclasses may add more."""
        o, n, gan = self.opt, self.nets, lambda p, real: L.gan_loss(p, real, o["gan_mode"])
        real_a, real_b = batch["A"], batch["B"]
        terms = {"G_AB_gan": gan(n["D_B"](out["fake_B"]), True)}                   # Eq. (3), A -> B
        if o["bidirectional"]:
            terms["G_BA_gan"] = gan(n["D_A"](out["fake_A"]), True)                 # Eq. (3), B -> A
        if o["use_ac"]:
            terms["cycle_A"] = o["lambda_cc"] * L.cycle_loss(out["rec_A"], real_a)  # Eq. (4), AC term
        if o["use_nc"]:
            terms["cycle_B"] = o["lambda_cc"] * L.cycle_loss(out["rec_B"], real_b)  # Eq. (4), NC term
        if o["lambda_id"]:
            terms["idt"] = o["lambda_id"] * L.identity_loss(n["G_AB"](real_b), real_b)
            if o["bidirectional"]:
                terms["idt"] = terms["idt"] + o["lambda_id"] * L.identity_loss(n["G_BA"](real_a), real_a)
        if o["lambda_am"]:
            mask = L.dilate(batch["A_mask"], o["am_dilate"])     # the lesion's soft border is free to change too
            terms["am"] = o["lambda_am"] * L.anomaly_mask_loss(out["fake_B"], real_a, mask)        # Eq. (2)
        if o["lambda_paste"]:
            terms["paste"] = o["lambda_paste"] * L.cycle_loss(out["unpasted"], real_b)               # Eq. (P)
        return terms

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """All generator outputs of one step. Instance norm works per image, so images that go
        through the same generator are stacked into one batch: G_AB translates A and, for the
        NC cycle, G_BA(B) in a single call (3 generator calls instead of 4, same results), and the
        pasted lesions of Eq. (P) too."""
        n, o = self.nets, self.opt
        out = {}
        if o["bidirectional"]:
            out["fake_A"] = n["G_BA"](batch["B"])
        to_g = {"fake_B": batch["A"]}
        if o["use_nc"]:
            to_g["rec_B"] = out["fake_A"]
        if o["lambda_paste"]:
            to_g["unpasted"] = L.paste_lesion(batch["A"], batch["A_mask"], batch["B"], o["paste_dilate"])[0]
        out |= dict(zip(to_g, n["G_AB"](torch.cat(list(to_g.values()))).chunk(len(to_g))))
        if o["use_ac"]:
            out["rec_A"] = n["G_BA"](out["fake_B"])
        return out

    def training_step(self, batch, ctx):
        n, o = self.nets, self.opt
        discs = [n[k] for k in ("D_A", "D_B") if k in n]
        # 1) generators: minimise L_FULL with the discriminators frozen
        out, terms, loss_g = self.update_generators(batch, ctx, discs)
        # 2) discriminators: real -> 1, fake (from the 50-image history) -> 0
        logs, loss_d = {}, 0.0
        with ctx.autocast():
            for dom, fake_key in (("B", "fake_B"), ("A", "fake_A")):
                if fake_key not in out:
                    continue
                fake = self.pools[dom].query(out[fake_key].detach())
                pred_real, pred_fake = n["D_" + dom](torch.cat([batch[dom], fake])).chunk(2)   # one call
                real_term = L.gan_loss(pred_real, True, o["gan_mode"])
                fake_term = L.gan_loss(pred_fake, False, o["gan_mode"])
                loss_d = loss_d + 0.5 * (real_term + fake_term)
                logs |= {f"D_{dom}_real": real_term.detach(), f"D_{dom}_fake": fake_term.detach()}
        ctx.backward(loss_d)
        ctx.update("D")
        return {"G": loss_g.detach(), **{k: v.detach() for k, v in terms.items()}, "D": loss_d.detach(), **logs}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        """Map images (B, 1, H, W) in [-1, 1] from A to B (``'AB'``) or back (``'BA'``)."""
        return self.nets["G_" + direction](x)

    def samples(self, batch):
        out = {"A": batch["A"], "G_AB(A)": self.nets["G_AB"](batch["A"])}
        out["|A - G_AB(A)|"] = (out["A"] - out["G_AB(A)"]).abs() - 1
        if self.opt["bidirectional"]:
            out |= {"B": batch["B"], "G_BA(B)": self.nets["G_BA"](batch["B"])}
        return out

    # -- image pools are part of the training state
    def extra_state(self):
        return {"pools": {k: p.state_dict() for k, p in self.pools.items()}}

    def load_extra_state(self, state):
        dev = next(self.parameters()).device
        for k, p in self.pools.items():
            p.load_state_dict(state["pools"][k], dev)
