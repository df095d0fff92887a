"""pseudohealthy_lib: the library behind the book *Pseudo-Healthy Synthesis*.

Sub-packages: ``data`` (NIfTI, dataset layouts, preprocessing, phantoms, prepared slices).
"""
from .config import fast_mode
from .utils import DataError

__version__ = "0.1.0"
__all__ = ["fast_mode", "DataError", "__version__"]
