"""A lesion / no-lesion slice classifier: ANT-GAN's downstream classifiers (Sun et al.).

* Sec. IV-D, Table VI: VGG on (x, G_A2N(x)) (*ANT-VGG*) against the same VGG on (x, x)
  (*Plain VGG*), the ``guide`` option as in :mod:`.segmentor` (``'copy'`` or a zoo translator);
* Sec. IV-E, Table VII: AlexNet on one channel, trained on a small dataset with or without
  ANT-GAN's synthetic slices (:func:`pseudohealthy_lib.downstream.augmented_sets`).

The networks are :class:`~pseudohealthy_lib.networks.classifiers.VGG` (VGG-11) and
:class:`~pseudohealthy_lib.networks.classifiers.AlexNet`, torchvision's layers at a width set by options.
Training minimises the cross-entropy of the slice label (1: the slice has a lesion)::

    L = CE(f(inputs(x)), label)                                   (cross-entropy, 2 classes)
"""
from __future__ import annotations

import torch
from torch import nn

from ..data.prepared import PairedDataset
from ..networks import VGG, AlexNet
from ..utils import OptionError
from .base import Classifier, register
from .segmentor import Guided, Segmentor, load_guide


@register
class LesionClassifier(Guided, Classifier):
    name = "classifier"
    val_metric = "f1"
    # width: VGG's first convolution (torchvision 64); hidden: the fully connected layers
    # (torchvision 4096); augment: a random flip and quarter turn per batch, as the segmentor's
    defaults = {"arch": "vgg", "width": 16, "hidden": 512, "dropout": 0.5, "batch_norm": False, "guide": "none",
                "augment": True, "beta1": 0.9}
    choices = {"arch": ("vgg", "alexnet")}
    ranges = {"width": (1, None), "hidden": (1, None), "dropout": (0, 0.9), "beta1": (0, 0.999)}

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt
        self.guide = load_guide(o["guide"])
        if o["arch"] == "vgg":
            net = VGG(self.in_channels, 2, o["width"], o["hidden"], o["dropout"], o["batch_norm"])
        else:
            net = AlexNet(self.in_channels, 2, o["hidden"], o["dropout"])
        self.nets = nn.ModuleDict({"C": net})

    def check_side(self, side: int) -> None:
        smallest = 32 if self.opt["arch"] == "vgg" else 64          # VGG halves 5 times; AlexNet needs 63
        if side < smallest:
            raise OptionError(f"classifier: images of {side} pixels are too small for {self.opt['arch']}; "
                              f"use at least {smallest}")

    def dataset(self, data, split):
        return PairedDataset(data, split)

    def optimizers(self):
        return {"C": self.adam(self.nets["C"], betas=(self.opt["beta1"], self.cfg.beta2))}

    def training_step(self, batch, ctx):
        x = batch["image"]
        if self.opt["augment"]:
            x, _ = Segmentor.augment(x, x)
        with ctx.autocast():
            logits = self.nets["C"](self.inputs(x)).float()
            loss = nn.functional.cross_entropy(logits, batch["label"])
        ctx.backward(loss)
        ctx.update("C")
        return {"loss": loss.detach(), "accuracy": (logits.argmax(1) == batch["label"]).float().mean()}

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, 2) for images (B, 1, H, W) in [-1, 1]; column 1: lesion."""
        return self.nets["C"](self.inputs(x)).float().softmax(1)

    def validate(self, data, split="val", batch_size: int = 32):
        """Accuracy and F1 of the lesion class on ``split``."""
        ds = PairedDataset(data, split)
        dev = next(self.nets.parameters()).device
        tp = fp = fn = right = 0
        for start in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
            pred = self.classify(torch.stack([it["image"] for it in items]).to(dev)).argmax(1).cpu()
            label = torch.tensor([it["label"] for it in items])
            tp += int(((pred == 1) & (label == 1)).sum())
            fp += int(((pred == 1) & (label == 0)).sum())
            fn += int(((pred == 0) & (label == 1)).sum())
            right += int((pred == label).sum())
        return {"accuracy": right / max(len(ds), 1), "f1": 2 * tp / max(2 * tp + fp + fn, 1)}
