"""Image classifiers for ANT-GAN's downstream studies: VGG (Table VI) and AlexNet (Table VII).

Both follow torchvision's definitions layer for layer (``torchvision.models.vgg11`` and
``torchvision.models.alexnet``: the same convolutions, pools, adaptive average pool and
three fully connected layers with dropout), written out here because the book's CPU PyTorch
build has no matching torchvision. At ``width=64, hidden=4096, in_channels=3,
n_classes=1000`` they have exactly torchvision's parameter counts (132,863,336 for VGG-11,
61,100,840 for AlexNet; tested); the book trains them narrower, at widths the CPU can train.

Shapes: images (B, in_channels, H, W) with H, W >= 32 -> logits (B, n_classes).
"""
from __future__ import annotations

from torch import nn

#: The layers of VGG-11, configuration A of Simonyan and Zisserman, each a number of output
#: channels as a multiple of the first layer's width, or "M" for a 2x2 max-pool
VGG11 = (1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M")


class VGG(nn.Module):
    """VGG-11 with ``width`` channels in its first convolution (torchvision: 64) and ``hidden``
    units in its fully connected layers (torchvision: 4096); ``batch_norm`` as ``vgg11_bn``."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2, width: int = 64, hidden: int = 4096,
                 dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        layers, c = [], in_channels
        for v in VGG11:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers += [nn.Conv2d(c, v * width, 3, padding=1),
                       *([nn.BatchNorm2d(v * width)] if batch_norm else []), nn.ReLU(True)]
            c = v * width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(nn.Linear(c * 7 * 7, hidden), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(dropout),
                                        nn.Linear(hidden, n_classes))
        for m in self.modules():                       # torchvision's initialisation of VGG
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class AlexNet(nn.Module):
    """AlexNet as torchvision defines it (five convolutions of 64, 192, 384, 256 and 256 channels),
    with ``hidden`` units in its fully connected layers (torchvision: 4096); PyTorch's default
    initialisation, as torchvision's."""

    def __init__(self, in_channels: int = 1, n_classes: int = 2, hidden: int = 4096, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 11, stride=4, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(True), nn.MaxPool2d(3, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        # torchvision's AlexNet puts each dropout before its hidden layer (VGG's after)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(256 * 6 * 6, hidden), nn.ReLU(True),
                                        nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(True),
                                        nn.Linear(hidden, n_classes))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))
