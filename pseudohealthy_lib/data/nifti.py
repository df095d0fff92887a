"""Reading and writing NIfTI volumes with nibabel, with errors that name the file.

A NIfTI file holds a voxel array plus an *affine*: the 4x4 matrix that maps voxel indices
(i, j, k) to millimetres in scanner space. ``nib.aff2axcodes`` turns it into orientation
codes such as ``('R', 'A', 'S')``: the direction each array axis points to.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..utils import DataError, atomic_path


@dataclass
class Volume:
    """One 3-D image. ``data`` has shape (X, Y, Z); ``affine`` maps voxels to mm."""

    data: np.ndarray
    affine: np.ndarray
    path: Path

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(0)))

    @property
    def orientation(self) -> str:
        """Orientation codes of the array axes, e.g. ``'RAS'``."""
        return "".join(nib.aff2axcodes(self.affine))


def load_volume(path: str | Path, *, dtype=np.float32, allow_nonfinite: bool = False) -> Volume:
    """Load a 3-D NIfTI volume (``.nii`` or ``.nii.gz``).

    Raises :class:`~pseudohealthy_lib.utils.DataError` naming ``path`` when the file is missing, corrupt or truncated,
    is not 3-D (a trailing axis of length 1 is squeezed), or holds NaN/inf voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=dtype)
    except (EOFError, OSError, zlib.error, gzip.BadGzipFile, ValueError, nib.filebasedimages.ImageFileError) as e:
        raise DataError(f"{path}: cannot read NIfTI volume, the file is corrupt or truncated ({type(e).__name__}: {e})") from e
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got {data.ndim} dimensions with shape {data.shape}")
    if not allow_nonfinite and np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data)
        if bad.any():
            raise DataError(f"{path}: {int(bad.sum())} voxels are NaN or infinite")
    return Volume(data=data, affine=np.asarray(img.affine, dtype=np.float64), path=path)


def save_volume(data: np.ndarray, affine: np.ndarray, path: str | Path) -> Path:
    """Write ``data`` as NIfTI atomically (a crash never leaves a half-written file)."""
    path = Path(path)
    img = nib.Nifti1Image(np.asarray(data), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return path
