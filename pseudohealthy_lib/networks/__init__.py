"""Networks: generators (ResNet, U-Net), the PatchGAN discriminator and their initialisation."""
from .discriminators import PatchGAN
from .generators import ResnetGenerator, UnetGenerator, init_weights

__all__ = ["ResnetGenerator", "UnetGenerator", "PatchGAN", "init_weights"]
