"""Networks: generators (ResNet, U-Net, PHS-GAN's residual U-Net), the discriminators and their
initialisation; the classifiers of ANT-GAN's downstream studies."""
from .classifiers import VGG, AlexNet
from .discriminators import PatchGAN, PHSCritic
from .generators import ResnetGenerator, ResUnet, UnetGenerator, init_weights

__all__ = ["ResnetGenerator", "UnetGenerator", "ResUnet", "PatchGAN", "PHSCritic", "VGG", "AlexNet", "init_weights"]
