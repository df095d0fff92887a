"""Preprocessing steps, one function each, in the order the papers apply them.

volume --reorient--> RAS --clip & scale--> [0, 1] --axial slices--> (Z, H, W)
       --select slices--> middle band --label--> healthy / pathological / (dropped)
       --crop & resize--> (N, size, size) --split by patient--> train / val / test

Conventions: a volume is a NumPy array (X, Y, Z); a slice stack is (Z, H, W) shown in the
radiological convention: anterior at the top, the subject's right on the image's left.
"""
from __future__ import annotations

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from ..utils import OptionError, at_least

HEALTHY, PATHOLOGICAL, AMBIGUOUS = 0, 1, -1


def to_ras(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Reorder and flip the axes of ``data`` so that they point Right, Anterior, Superior."""
    return to_ras_with_affine(data, affine)[0]


def to_ras_with_affine(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`to_ras` plus the affine of the reoriented array (same voxels, same world space)."""
    ornt = nib.orientations.io_orientation(affine)
    ras = np.ascontiguousarray(nib.orientations.apply_orientation(data, ornt))
    return ras, affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)


def clip_and_scale(volume: np.ndarray, percentile: float = 99.5, upper: float | None = None,
                   foreground: bool = False) -> tuple[np.ndarray, float]:
    """Clip to [0, V_p] and divide by V_p, as PHS-GAN and SMILE do (p = 99.5).

    ``V_p`` is the p-th percentile of the whole volume (``foreground=True``: of its non-zero
    voxels only). Pass ``upper`` to reuse a value, e.g. scale a phantom's healthy ground truth
    with its lesion image's V_p so the two stay comparable voxel for voxel.
    Returns the scaled float32 volume in [0, 1] and V_p.
    """
    if upper is None:
        vals = volume[volume > 0] if foreground else volume
        upper = float(np.percentile(vals, percentile)) if vals.size else 0.0
    if upper <= 0:
        return np.zeros_like(volume, dtype=np.float32), upper
    return (np.clip(volume, 0, upper) / upper).astype(np.float32), upper


def to_tanh_range(x):
    """[0, 1] -> [-1, 1], the range of a generator ending in tanh."""
    return x * 2 - 1


def from_tanh_range(x):
    """[-1, 1] -> [0, 1]."""
    return (x + 1) / 2


def ct_window(hu: np.ndarray, level: float = 40.0, width: float = 400.0) -> np.ndarray:
    """Map Hounsfield units to [0, 1] through a display window (default: abdomen, W400 L40)."""
    if not width > 0:
        raise OptionError(f"CT window width must be positive, got {width}")
    lo = level - width / 2
    return np.clip((hu - lo) / width, 0, 1).astype(np.float32)


def axial_slices(volume: np.ndarray) -> np.ndarray:
    """RAS volume (X, Y, Z) -> axial slices (Z, H, W): anterior at the top (row 0) and the
    subject's right on the left (column 0), as radiologists view them."""
    return np.ascontiguousarray(np.transpose(volume, (2, 1, 0))[:, ::-1, ::-1])


def select_slices(n_total: int, n: int | None = 60, start: int | None = None, stop: int | None = None) -> np.ndarray:
    """Indices of the slices to keep: ``range(start, stop)`` if given, else the middle ``n``.

    PHS-GAN keeps the middle 60 axial slices of each BraTS / ISLES volume.
    Raises :class:`~pseudohealthy_lib.utils.OptionError` for ``n < 1`` or a range that is
    empty or reaches outside the volume.
    """
    if start is not None or stop is not None:
        start, stop = start or 0, n_total if stop is None else stop
        if not 0 <= start < stop <= n_total:
            raise OptionError(f"slice range {start}:{stop} is empty or outside a volume of {n_total} slices "
                              f"(0:{n_total} at most)")
        return np.arange(start, stop)
    if n is not None:
        at_least(n, "number of slices")
    if n is None or n >= n_total:
        return np.arange(n_total)
    first = (n_total - n) // 2
    return np.arange(first, first + n)


def label_slices(masks: np.ndarray, min_area: int = 100) -> np.ndarray:
    """Label each 2-D lesion mask of ``masks`` (N, H, W).

    0 = healthy (no lesion pixel), 1 = pathological (at least ``min_area`` lesion pixels),
    -1 = ambiguous (a few lesion pixels): such slices are neither healthy nor a fair example
    of a lesion, so the datasets leave them out rather than calling them healthy.
    ``min_area`` must be at least 1: with 0, every lesion-free slice would count as pathological.
    """
    at_least(min_area, "min_area (lesion pixels of a pathological slice)")
    area = masks.reshape(len(masks), -1).sum(1)
    labels = np.full(len(masks), AMBIGUOUS, np.int8)
    labels[area == 0] = HEALTHY
    labels[area >= min_area] = PATHOLOGICAL
    return labels


def square_box(foreground: np.ndarray, margin: int = 4) -> tuple[int, int, int, int]:
    """Square (top, bottom, left, right) box around the True pixels of a (H, W) or (N, H, W) mask.

    The box may extend past the image; :func:`crop_resize` pads with zeros there.
    """
    fg = foreground.any(0) if foreground.ndim == 3 else foreground
    if not fg.any():
        h, w = fg.shape
        return 0, h, 0, w
    rows, cols = np.nonzero(fg.any(1))[0], np.nonzero(fg.any(0))[0]
    t, b, l, r = rows[0] - margin, rows[-1] + 1 + margin, cols[0] - margin, cols[-1] + 1 + margin
    side = max(b - t, r - l)
    cy, cx = (t + b) // 2, (l + r) // 2
    t, l = int(cy - side // 2), int(cx - side // 2)
    return t, t + int(side), l, l + int(side)


def crop_resize(stack: np.ndarray, size: int, box: tuple[int, int, int, int] | None = None,
                mode: str = "bilinear") -> np.ndarray:
    """Crop (N, H, W) to ``box`` (zero padding outside the image) and resize to (N, size, size).

    ``mode='bilinear'`` (with antialiasing when shrinking) for images, ``'nearest'`` for masks
    and labels, so that a mask stays a mask.
    """
    n, h, w = stack.shape
    if box is not None:
        t, b, l, r = box
        pad = ((0, 0), (max(0, -t), max(0, b - h)), (max(0, -l), max(0, r - w)))
        stack = np.pad(stack, pad)[:, t + pad[1][0]: b + pad[1][0], l + pad[2][0]: r + pad[2][0]]
    if stack.shape[1:] == (size, size):
        return np.ascontiguousarray(stack)
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]
    if mode == "nearest":
        y = F.interpolate(x, size=(size, size), mode="nearest-exact")
    else:
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=size < stack.shape[1])
    return y[:, 0].numpy().astype(stack.dtype if mode == "nearest" else np.float32)


def patient_split(ids, fractions=(0.7, 0.1, 0.2), seed: int = 0,
                  names=("train", "val", "test")) -> dict[str, str]:
    """Assign each patient id to one split (seeded). A patient never appears in two splits.

    Every split with a non-zero fraction gets at least one patient when there are enough.
    """
    if len(fractions) != len(names) or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise OptionError(f"split fractions {tuple(fractions)} must sum to 1 and be {len(names)} "
                          "non-negative numbers")
    at_least(seed, "seed", 0)
    uniq = sorted(set(ids))
    order = np.random.default_rng(seed).permutation(len(uniq))
    counts = np.floor(np.array(fractions) * len(uniq)).astype(int)
    for i in np.argsort(-np.array(fractions)):            # hand out the remainder, largest first
        if counts.sum() < len(uniq):
            counts[i] += 1
    for i, f in enumerate(fractions):                     # no empty split if avoidable
        if f > 0 and counts[i] == 0 and counts.max() > 1:
            counts[i] += 1
            counts[np.argmax(counts)] -= 1
    bounds = np.concatenate([[0], np.cumsum(counts)])
    out = {}
    for k, name in enumerate(names):
        for j in order[bounds[k]:bounds[k + 1]]:
            out[uniq[j]] = name
    return out
