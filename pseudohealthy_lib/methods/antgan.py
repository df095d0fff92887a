"""ANT-GAN (Sun et al.): abnormal-to-normal translation.

ANT-GAN is a CycleGAN between abnormal (A) and normal (B) slices with two additions:

* a **global shortcut** in G_A2N: the input is added before the output tanh, so the generator
  learns the *change* that removes a lesion (Fig. 3, red arrow);
* the **anomaly-mask loss** (Eq. 2), weighted by lambda_AM = 10: changing a pixel outside the
  lesion mask costs a squared error. The mask is used in training only.

    L_FULL = L_GAN + lambda_CC * L_CC + lambda_AM * L_AM                            (Eq. 1)

with least-squares PatchGAN targets, a 50-image history and lambda_CC = 10. The training step is
CycleGAN's (:mod:`.cyclegan`); the variants of the ablation study (Fig. 5, Table IV) differ only
in their options, listed in :data:`VARIANTS`.
"""
from __future__ import annotations

from ..utils import OptionError
from .base import register
from .cyclegan import CycleGAN

# ANT-GAN's ablation study: baseline GAN -> ... -> ANT-GAN
VARIANTS = {
    "gan": {"use_ac": False, "use_nc": False, "shortcut": False, "lambda_am": 0.0},
    "gan+ac": {"use_ac": True, "use_nc": False, "shortcut": False, "lambda_am": 0.0},
    "gan+nc": {"use_ac": False, "use_nc": True, "shortcut": False, "lambda_am": 0.0},
    "cyclegan": {"use_ac": True, "use_nc": True, "shortcut": False, "lambda_am": 0.0},
    "cyclegan+shortcut": {"use_ac": True, "use_nc": True, "shortcut": True, "lambda_am": 0.0},
    "antgan": {"use_ac": True, "use_nc": True, "shortcut": True, "lambda_am": 10.0},
}


@register
class ANTGAN(CycleGAN):
    name = "antgan"
    pseudo_healthy = True          # G_AB maps a pathological slice to its healthy version
    defaults = {**CycleGAN.defaults, "shortcut": True, "lambda_am": 10.0, "domain_b": "healthy"}
    variants = VARIANTS
    before = {1: {"init": "pytorch"}}      # version 1: PyTorch's initialisation (its ResNet has no dropout)

    def __init__(self, cfg):
        super().__init__(cfg)
        if self.opt["domain_b"] != "healthy":
            raise OptionError(f"ANT-GAN translates abnormal to normal slices: domain_b must be 'healthy', "
                              f"not {self.opt['domain_b']!r}")
