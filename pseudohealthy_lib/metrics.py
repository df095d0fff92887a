"""Image metrics, on NumPy arrays or tensors of images in [0, 1] unless stated otherwise.

Each function documents its exact definition; tests compare them with scikit-image.
"""
from __future__ import annotations

import numpy as np
import torch


def _np(x) -> np.ndarray:
    return x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)


def psnr(x, y, mask=None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio 10 log10(R^2 / MSE) in dB, over ``mask`` if given.

    Returns ``inf`` for identical inputs and ``nan`` for an empty mask.
    """
    x, y = _np(x), _np(y)
    d = (x - y) ** 2
    if mask is not None:
        m = _np(mask) > 0.5
        if not m.any():
            return float("nan")
        d = d[np.broadcast_to(m, d.shape)]
    mse = float(d.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range ** 2 / mse))


def dice(pred, target, empty: float = 1.0) -> float:
    """Dice 2|P and T| / (|P| + |T|) of two binary masks; ``empty`` when both are empty."""
    p, t = _np(pred) > 0.5, _np(target) > 0.5
    s = p.sum() + t.sum()
    return empty if s == 0 else float(2 * (p & t).sum() / s)


def ssim(x, y, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D images (scikit-image, 7x7 uniform window)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_np(x), _np(y), data_range=data_range))
