"""Networks: generators (ResNet, U-Net) and the PatchGAN discriminator."""
from .discriminators import PatchGAN
from .generators import ResnetGenerator, UnetGenerator

__all__ = ["ResnetGenerator", "UnetGenerator", "PatchGAN"]
