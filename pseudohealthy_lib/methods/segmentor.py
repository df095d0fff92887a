"""A U-Net lesion segmentor, trained with cross-entropy plus soft Dice.

The book uses it as PHS-GAN's pre-trained segmentor f_pre, the judge of the *healthiness*
metric: it is trained on pathological slices with their masks, then asked how much lesion it
still finds in a pseudo-healthy image. (PHS-GAN's and SMILE's own segmentors, trained jointly
with their generators, live in their method files.)
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import losses as L
from ..data.prepared import PairedDataset
from ..engine import Method
from ..networks import UnetGenerator


class Segmentor(Method):
    name = "segmentor"
    defaults = {"ngf": 16, "unet_downs": 7, "dropout": 0.0, "lambda_dice": 1.0, "pathological_only": True}

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt
        self.nets = nn.ModuleDict({"S": UnetGenerator(1, 1, o["ngf"], o["unet_downs"], o["dropout"], final="none")})

    def dataset(self, data, split):
        return PairedDataset(data, split, label=1 if self.opt["pathological_only"] else None)

    def optimizers(self):
        return {"S": self.adam(self.nets["S"])}

    def training_step(self, batch, ctx):
        with ctx.autocast():
            logits = self.nets["S"](batch["image"]).float()
            ce = L.segmentation_ce(logits, batch["mask"])
            dice = L.soft_dice_loss(torch.sigmoid(logits), batch["mask"])
            loss = ce + self.opt["lambda_dice"] * dice
        ctx.backward(loss)
        ctx.step("S")
        return {"loss": loss.detach(), "ce": ce.detach(), "dice_loss": dice.detach()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion probability (B, 1, H, W) for images in [-1, 1]."""
        return torch.sigmoid(self.nets["S"](x))

    def samples(self, batch):
        return {"image": batch["image"], "mask": batch["mask"] * 2 - 1, "prediction": self.predict(batch["image"]) * 2 - 1}

    @torch.no_grad()
    def evaluate(self, data, split: str = "test", batch_size: int = 32) -> dict:
        """Mean Dice on the pathological slices of ``split`` and the fraction of healthy slices
        in which it finds any lesion pixel (false alarms)."""
        from .. import metrics as M

        self.eval()
        dev = next(self.parameters()).device
        out = {}
        for label, key in ((1, "dice"), (0, "false_alarm_rate")):
            ds = PairedDataset(data, split, label=label)
            vals = []
            for s in range(0, len(ds), batch_size):
                items = [ds[i] for i in range(s, min(s + batch_size, len(ds)))]
                p = self.predict(torch.stack([it["image"] for it in items]).to(dev)) > 0.5
                for it, pi in zip(items, p):
                    vals.append(M.dice(pi, it["mask"]) if label == 1 else float(pi.any()))
            out[key] = float(np.mean(vals)) if vals else float("nan")
        self.train()
        return out
