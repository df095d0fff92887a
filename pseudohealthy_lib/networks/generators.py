"""Image-to-image generators.

``ResnetGenerator`` is the encoder / residual blocks / decoder network of Johnson et al. that
CycleGAN and ANT-GAN use (ANT-GAN Tables I-II), with ANT-GAN's optional *global shortcut*.
``UnetGenerator`` is the pix2pix U-Net used by the CycleGAN ResNet-vs-U-Net paper.

Shapes: input (B, in_ch, H, W) -> output (B, out_ch, H, W), values in [-1, 1] (tanh).
"""
from __future__ import annotations

import torch
from torch import nn


def _norm(ch: int) -> nn.Module:
    # instance norm without learned affine parameters, as in the CycleGAN reference
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


def _act(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU(True)
    if kind == "leaky":
        return nn.LeakyReLU(0.2, True)
    raise ValueError(f"unknown activation '{kind}': use 'relu' or 'leaky'")


class ResidualBlock(nn.Module):
    """ANT-GAN Table II: conv3x3-IN-ReLU-conv3x3-IN, added to the input. (B, C, h, w) -> same.
    ``act='leaky'``: leaky ReLU (slope 0.2) instead, as PHS-GAN's Tables 2-3."""

    def __init__(self, ch: int, act: str = "relu"):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch), _act(act),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch))

    def forward(self, x):
        return x + self.body(x)


def _up(cin: int, cout: int, mode: str, kernel: int = 3) -> list[nn.Module]:
    """x2 upsampling: a stride-2 transposed conv of size ``kernel`` (the papers: 3 in the ResNet
    generator, 4 in the U-Net) or resize + conv (remedy variant).

    Transposed convolutions with stride 2 can print a checkerboard pattern (with kernel 3 they
    overlap unevenly; with kernel 4 evenly, yet their learned weights can still alternate);
    ``'resize'`` (nearest upsampling then a 3x3 conv) cannot, as every output pixel of it sees
    the same number of input pixels through the same weights.
    """
    if mode == "transpose":
        return [nn.ConvTranspose2d(cin, cout, kernel, stride=2, padding=1, output_padding=kernel % 2)]
    if mode == "resize":
        return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
    raise ValueError(f"unknown upsampling '{mode}': use 'transpose' or 'resize'")


class ResnetGenerator(nn.Module):
    """ANT-GAN Table I (defaults give exactly its layers at ngf=64).

    ==========  =======================  ================================
    layer       operation                output (240x240 input)
    ==========  =======================  ================================
    Conv1       7x7, s1, IN, ReLU        240x240x64
    Conv2       3x3, s2, IN, ReLU        120x120x128
    Conv3       3x3, s2, IN, ReLU        60x60x256
    RB x 9      Table II                 60x60x256
    Deconv1     3x3, s2, IN, ReLU        120x120x256 (Table I; CycleGAN uses 128)
    Deconv2     3x3, s2, IN, ReLU        240x240x64
    Conv4       7x7, s1, tanh            240x240x1
    ==========  =======================  ================================

    ``shortcut=True`` adds ANT-GAN's global shortcut: the input is added to Conv4's output before
    the tanh, so the network only has to learn a *change* of the image (Fig. 3, red arrow).
    ``deconv1_width`` overrides Deconv1's width (Table I: 4*ngf; CycleGAN's reference: 2*ngf).

    PHS-GAN's generator G and reconstructor R (its Tables 2 and 3) are the same network with
    ``ngf=32, n_blocks=6, upsample='resize', deconv1_width=64, block_act='leaky',
    final_kernel=3`` (and ``in_ch=2`` for R, which sees an image and a mask).
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 64, n_blocks: int = 9,
                 shortcut: bool = False, upsample: str = "transpose", deconv1_width: int | None = None,
                 block_act: str = "relu", final_kernel: int = 7):
        super().__init__()
        if shortcut and in_ch != out_ch:
            raise ValueError("the global shortcut needs in_ch == out_ch")
        self.shortcut = shortcut
        d1 = deconv1_width or 4 * ngf
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7), _norm(ngf), nn.ReLU(True),            # Conv1
                  nn.Conv2d(ngf, 2 * ngf, 3, stride=2, padding=1), _norm(2 * ngf), nn.ReLU(True),         # Conv2
                  nn.Conv2d(2 * ngf, 4 * ngf, 3, stride=2, padding=1), _norm(4 * ngf), nn.ReLU(True)]     # Conv3
        layers += [ResidualBlock(4 * ngf, block_act) for _ in range(n_blocks)]                            # RB x 9
        layers += [*_up(4 * ngf, d1, upsample), _norm(d1), nn.ReLU(True),                                 # Deconv1
                   *_up(d1, ngf, upsample), _norm(ngf), nn.ReLU(True),                                    # Deconv2
                   nn.ReflectionPad2d(final_kernel // 2), nn.Conv2d(ngf, out_ch, final_kernel)]           # Conv4
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.shortcut:
            y = y + x                       # global shortcut, before the output activation
        return torch.tanh(y)


class UnetGenerator(nn.Module):
    """pix2pix U-Net: ``num_downs`` stride-2 4x4 convs (leaky ReLU 0.2), as many transposed
    convs back up (ReLU), skip connections by concatenation, tanh output (``final='none'``:
    raw logits, for segmentation). With ``dropout`` > 0, dropout follows the ``num_downs - 5``
    decoder blocks just after the bottleneck's, the 8x-wide middle blocks where pix2pix puts it
    (three at 8 downsamplings, none below 6); pix2pix uses 0.5, the reference CycleGAN none.

    With 8 downsamplings a 256x256 input reaches 1x1 at the bottleneck (the paper's setting);
    input sides must be divisible by ``2**num_downs``. ``upsample='resize'`` replaces each
    transposed conv by nearest x2 upsampling and a 3x3 conv (see ``_up`` in this module).
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 64, num_downs: int = 8, dropout: float = 0.0,
                 final: str = "tanh", upsample: str = "transpose"):
        super().__init__()
        if final not in ("tanh", "none"):
            raise ValueError("final must be 'tanh' (images) or 'none' (logits, e.g. for a segmentor)")
        widths = [min(ngf * 2 ** i, ngf * 8) for i in range(num_downs)]       # 64,128,256,512,512,...
        self.num_downs = num_downs
        self.down = nn.ModuleList()
        cin = in_ch
        for i, w in enumerate(widths):
            block = [nn.Conv2d(cin, w, 4, stride=2, padding=1)]
            if i > 0:
                block = [nn.LeakyReLU(0.2, True), *block]
                if i < num_downs - 1:                    # no norm at the outermost and the bottleneck
                    block.append(_norm(w))
            self.down.append(nn.Sequential(*block))
            cin = w
        self.up = nn.ModuleList()
        for j in range(num_downs):                       # j = 0 is the innermost decoder block
            i = num_downs - 1 - j                        # mirrors encoder block i
            cin = widths[i] if j == 0 else 2 * widths[i]
            cout = out_ch if i == 0 else widths[i - 1]
            block = [nn.ReLU(True), *_up(cin, cout, upsample, kernel=4)]
            if i == 0:
                if final == "tanh":
                    block.append(nn.Tanh())
            else:
                block.append(_norm(cout))
                if 1 <= j <= num_downs - 5 and dropout > 0:      # pix2pix's middle blocks
                    block.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*block))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.num_downs
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"U-Net with {self.num_downs} downsamplings needs sides divisible by {side}, got {tuple(x.shape[-2:])}")
        skips = []
        for d in self.down:
            x = d(x)
            skips.append(x)
        x = self.up[0](skips[-1])
        for j in range(1, self.num_downs):
            x = self.up[j](torch.cat([x, skips[-1 - j]], 1))
        return x


def init_weights(net: nn.Module, kind: str = "normal", gain: float = 0.02) -> nn.Module:
    """Initialise ``net`` in place as pix2pix / CycleGAN do, and return it.

    ``'normal'`` (the references' default): every conv and linear weight from N(0, ``gain``),
    biases 0, affine norm weights from N(1, ``gain``); ``'xavier'``, ``'kaiming'`` and
    ``'orthogonal'`` as in the references; ``'pytorch'`` leaves PyTorch's own initialisation
    (uniform, scaled by each layer's fan-in).
    """
    if kind == "pytorch":
        return net
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if kind == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif kind == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif kind == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif kind == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise ValueError(f"unknown initialisation '{kind}': use normal, xavier, kaiming, orthogonal or pytorch")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


class ResUnet(nn.Module):
    """PHS-GAN's segmentor S: the U-Net of Ronneberger et al. (two 3x3 convs per level, 2x2 max
    pooling down, 2x2 transposed convs up, skips by concatenation) with leaky ReLUs and a
    residual connection around each level's convs, as the paper's appendix describes.
    Instance norm after each conv. (B, in_ch, H, W) -> logits (B, out_ch, H, W); sides
    divisible by ``2**depth``.
    """

    def __init__(self, in_ch: int = 1, out_ch: int = 1, ngf: int = 16, depth: int = 4):
        super().__init__()
        self.depth = depth
        widths = [ngf * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_ResLevel(in_ch if i == 0 else widths[i - 1], widths[i]) for i in range(depth + 1)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth)])
        self.up = nn.ModuleList([_ResLevel(2 * widths[i], widths[i]) for i in range(depth)])
        self.out = nn.Conv2d(widths[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = 2 ** self.depth
        if x.shape[-1] % side or x.shape[-2] % side:
            raise ValueError(f"ResUnet of depth {self.depth} needs sides divisible by {side}, got {tuple(x.shape[-2:])}")
        skips = []
        for i, level in enumerate(self.down):
            x = level(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(self.depth)):
            x = self.up[i](torch.cat([self.ups[i](x), skips[i]], 1))
        return self.out(x)


class _ResLevel(nn.Module):
    """conv3-IN-leaky-conv3-IN plus a (1x1-projected) shortcut, then leaky ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), _norm(cout), nn.LeakyReLU(0.2, True),
                                  nn.Conv2d(cout, cout, 3, padding=1), _norm(cout))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)
        self.act = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        return self.act(self.body(x) + self.skip(x))
