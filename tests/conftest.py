"""Fixtures that write tiny volumes in the exact folder layouts the datasets are released in."""
from __future__ import annotations

import numpy as np
import pytest

from pseudohealthy_lib.data.nifti import save_volume

SHAPE = (24, 24, 12)
AFFINE = np.diag([1.0, 1.0, 1.0, 1.0])


def blob_seg(labels=(2, 1, 4), z=(4, 8)) -> np.ndarray:
    """Nested cubes: outer label, middle label, inner label, on slices z[0]..z[1]-1."""
    seg = np.zeros(SHAPE, np.uint8)
    outer, mid, inner = labels
    seg[6:18, 6:18, z[0]:z[1]] = outer
    seg[8:16, 8:16, z[0]:z[1]] = mid
    seg[10:14, 10:14, z[0]:z[1]] = inner
    return seg


def brain_image(seed: int, seg: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros(SHAPE, np.float32)
    img[2:22, 2:22, :] = 100 + 10 * rng.random((20, 20, SHAPE[2]))
    img[seg > 0] = 300
    return img


def write_brats(root, cases, labels, tags, sep):
    """Cases in a BraTS release layout: one file per sequence tag plus the segmentation."""
    for k, case in enumerate(cases):
        seg = blob_seg(labels)
        for tag in tags:
            save_volume(brain_image(k, seg), AFFINE, root / case / f"{case}{sep}{tag}.nii.gz")
        save_volume(seg, AFFINE, root / case / f"{case}{sep}seg.nii.gz")
    return root


@pytest.fixture
def brats2018(tmp_path):
    return write_brats(tmp_path / "MICCAI_BraTS_2018", ["Brats18_2013_2_1", "Brats18_TCIA01_150_1"],
                       (2, 1, 4), ("flair", "t1", "t1ce", "t2"), "_")


@pytest.fixture
def brats2023(tmp_path):
    return write_brats(tmp_path / "ASNR-MICCAI-BraTS2023-GLI-Challenge-TrainingData",
                       ["BraTS-GLI-00000-000", "BraTS-GLI-00002-000"], (2, 1, 3), ("t2f", "t1n", "t1c", "t2w"), "-")


@pytest.fixture
def isles2015(tmp_path):
    root = tmp_path / "SISS2015_Training"
    ids = {1: 70613, 2: 70620}
    for case, base in ids.items():
        seg = blob_seg((1, 1, 1))
        for j, kind in enumerate(["MR_Flair", "MR_T1", "MR_T2", "MR_DWI", "OT"]):
            name = f"VSD.Brain.XX.O.{kind}.{base + j}"
            data = seg if kind == "OT" else brain_image(case, seg)
            save_volume(data, AFFINE, root / str(case) / name / f"{name}.nii")
    return root


@pytest.fixture
def lits(tmp_path):
    root = tmp_path / "LiTS"
    for n, batch in ((0, "Training Batch 1"), (28, "Training Batch 2")):
        hu = np.full(SHAPE, -1000, np.int16)
        hu[2:22, 2:22, :] = 40
        seg = np.zeros(SHAPE, np.uint8)
        seg[6:18, 6:18, :] = 1
        seg[9:13, 9:13, 3:7] = 2
        hu[seg == 1] = 100
        hu[seg == 2] = 30
        save_volume(hu, AFFINE, root / batch / f"volume-{n}.nii")
        save_volume(seg, AFFINE, root / batch / f"segmentation-{n}.nii")
    return root


@pytest.fixture(scope="session")
def tiny_prepared(tmp_path_factory):
    """Two phantom subjects (FLAIR), prepared at 32x32: enough to train tiny networks."""
    from pseudohealthy_lib.data import phantom, prepare

    root = tmp_path_factory.mktemp("tiny")
    phantom.generate(root / "vol", 3, seed=3, modalities=("flair",), progress=False, workers=1)
    return prepare(root / "vol", root / "tiny.npz", size=32, n_slices=120, progress=False, fractions=(0.34, 0.33, 0.33))
