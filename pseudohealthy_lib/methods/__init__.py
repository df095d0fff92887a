"""Methods: one file per paper, all trained by :mod:`pseudohealthy_lib.engine`.

The contract every method fulfils, and the registry, are in :mod:`.base`.
"""
from __future__ import annotations

from .antgan import ANTGAN
from .base import (KINDS, REGISTRY, Classifier, Method, Sampler, Segmenter, Translator, from_config, get_method,
                   register)
from .cyclegan import CycleGAN
from .diffusion import Diffusion
from .phsgan import PHSGAN
from .smile import SMILE
from .vagan import VAGAN
from .segmentor import Segmentor
from .classifier import LesionClassifier

#: the registered methods, by name (the same dict as ``REGISTRY``)
METHODS = REGISTRY

__all__ = ["ANTGAN", "CycleGAN", "Diffusion", "PHSGAN", "SMILE", "VAGAN", "Segmentor", "LesionClassifier", "Method", "Translator", "Segmenter", "Classifier", "Sampler",
           "KINDS", "METHODS", "REGISTRY", "register", "get_method", "from_config"]
