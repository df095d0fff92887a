"""Methods: one file per paper, all trained by :mod:`pseudohealthy_lib.engine`."""
from __future__ import annotations

from .antgan import ANTGAN
from .cyclegan import CycleGAN
from ..utils import OptionError
from .segmentor import Segmentor

METHODS = {m.name: m for m in (CycleGAN, ANTGAN, Segmentor)}


def get_method(name: str):
    """The method class called ``name`` (see :data:`METHODS`)."""
    if name not in METHODS:
        raise OptionError(f"unknown method {name!r}; choose from {sorted(METHODS)}")
    return METHODS[name]
