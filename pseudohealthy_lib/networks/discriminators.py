"""Discriminators: the PatchGAN (ANT-GAN Table III; pix2pix / CycleGAN's 70x70 PatchGAN) and
PHS-GAN's critics (its Table 4)."""
from __future__ import annotations

from torch import nn

from .generators import _norm


class PatchGAN(nn.Module):
    """ANT-GAN Table III. (B, in_ch, 240, 240) -> (B, 1, 30, 30): one real/fake score per patch.

    ======  ===================================  ===========
    layer   operation                            output
    ======  ===================================  ===========
    Conv1   4x4, s2, leaky ReLU                  120x120x64
    Conv2   4x4, s2, IN, leaky ReLU              60x60x128
    Conv3   4x4, s2, IN, leaky ReLU              30x30x256
    Conv4   4x4, s1, IN, leaky ReLU              30x30x256
    Conv5   4x4, s1                              30x30x1
    ======  ===================================  ===========

    The 4x4 stride-1 convs use asymmetric padding (1 before, 2 after) so that they keep the
    30x30 size the table lists. No sigmoid: the least-squares loss regresses the raw scores.
    ``conv4_width`` overrides Conv4's width (Table III: 4*ndf; the pix2pix / CycleGAN reference's
    70x70 PatchGAN: 8*ndf). ``n_down`` is the number of stride-2 convs (Table III: 3, a 70x70
    receptive field); each one more halves the score map and roughly doubles the patch a score
    sees (4: 142x142), widths doubling up to 8*ndf as in pix2pix's ``n_layers``.
    """

    def __init__(self, in_ch: int = 1, ndf: int = 64, conv4_width: int | None = None, n_down: int = 3):
        super().__init__()
        if n_down < 1:
            raise ValueError(f"PatchGAN: n_down must be at least 1, got {n_down}")
        w4 = conv4_width or 4 * ndf
        lrelu = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731
        same = lambda: nn.ZeroPad2d((1, 2, 1, 2))  # noqa: E731
        layers, w = [nn.Conv2d(in_ch, ndf, 4, 2, 1), lrelu()], ndf                 # Conv1
        for k in range(1, n_down):                                                 # Conv2, Conv3 (, ...)
            w_next = ndf * min(2 ** k, 8)
            layers += [nn.Conv2d(w, w_next, 4, 2, 1), _norm(w_next), lrelu()]
            w = w_next
        layers += [same(), nn.Conv2d(w, w4, 4, 1), _norm(w4), lrelu(),             # Conv4
                   same(), nn.Conv2d(w4, 1, 4, 1)]                                 # Conv5
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class PHSCritic(nn.Module):
    """PHS-GAN Table 4, the critics D_x (images) and D_m (masks). (B, in_ch, H, W) ->
    (B, 1, H/16, W/16): four 4x4 stride-2 convs with instance norm and leaky ReLU, widths
    ndf, 4 ndf, 8 ndf, 16 ndf (32, 128, 256, 512 in the table), then a 4x4 stride-1 conv to one
    score per patch. No sigmoid: the least-squares loss regresses the raw scores.
    """

    def __init__(self, in_ch: int = 1, ndf: int = 32):
        super().__init__()
        layers, cin = [], in_ch
        for w in (ndf, 4 * ndf, 8 * ndf, 16 * ndf):
            layers += [nn.Conv2d(cin, w, 4, 2, 1), _norm(w), nn.LeakyReLU(0.2, True)]
            cin = w
        layers += [nn.ZeroPad2d((1, 2, 1, 2)), nn.Conv2d(cin, 1, 4, 1)]
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)
