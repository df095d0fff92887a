"""Prepared slice datasets: volumes -> one cached ``.npz`` of 2-D slices -> torch Datasets.

``prepare`` runs every preprocessing step once and stores the result in a single file:

=============  ==============  ===================================================
key            shape / dtype   meaning
=============  ==============  ===================================================
images         (N, S, S) f16   slices in [0, 1]
healthy        (N, S, S) f16   healthy ground truth in [0, 1] (phantoms only)
masks          (N, S, S) u8    lesion mask (the layout's lesion region)
seg            (N, S, S) u8    original labels (BraTS sub-regions, liver, ...)
labels         (N,) i1         0 healthy, 1 pathological (ambiguous ones dropped)
subjects       (N,) str        patient id
slice_index    (N,) i2         axial index in the RAS volume
split          (N,) str        train / val / test, by patient
meta           JSON string     modality, size, layout, parameters, V99.5 per subject
=============  ==============  ===================================================
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import data_root
from ..utils import DataError, atomic_path
from . import preprocess as pp
from .layouts import REGION_NAMES, list_cases, region_mask

KEYS = ("images", "masks", "seg", "labels", "subjects", "slice_index", "split", "meta")


@dataclass
class PreparedSlices:
    """All slices of a prepared file, as NumPy arrays (see the module docstring)."""

    images: np.ndarray
    masks: np.ndarray
    seg: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    slice_index: np.ndarray
    split: np.ndarray
    meta: dict
    healthy: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def has_ground_truth(self) -> bool:
        return self.healthy is not None

    def select(self, split: str | None = None, label: int | None = None) -> np.ndarray:
        """Indices of the slices in ``split`` (all if None) with ``label`` (all if None)."""
        keep = np.ones(len(self), bool)
        if split is not None:
            if split not in set(self.split.tolist()):
                raise ValueError(f"no split '{split}' in this dataset (have {sorted(set(self.split.tolist()))})")
            keep &= self.split == split
        if label is not None:
            keep &= self.labels == label
        return np.nonzero(keep)[0]

    def summary(self) -> dict:
        """Counts of patients and slices per split and label."""
        out = {}
        for s in sorted(set(self.split.tolist())):
            idx = self.split == s
            out[s] = {"patients": int(len(set(self.subjects[idx].tolist()))),
                      "healthy": int((self.labels[idx] == pp.HEALTHY).sum()),
                      "pathological": int((self.labels[idx] == pp.PATHOLOGICAL).sum())}
        return out


def prepare(data: str | Path | None, out: str | Path, modality: str = "flair", size: int = 128,
            n_slices: int | None = 60, slice_range: tuple[int, int] | None = None,
            min_area: int = 100, region: str | None = None, fractions=(0.7, 0.1, 0.2),
            seed: int = 0, window: tuple[float, float] = (40.0, 400.0), max_cases: int | None = None,
            progress: bool = True) -> Path:
    """Turn a folder of volumes (any supported layout) into one prepared ``.npz`` file.

    ``data`` is the dataset folder; ``None`` means ``$PH_DATA_ROOT``.
    ``min_area`` is the smallest lesion area, in pixels of the original slice, for a slice to
    count as pathological; slices with fewer (but some) lesion pixels are dropped.
    ``window`` = (level, width) in HU is used for CT (LiTS) instead of percentile scaling.
    """
    from tqdm.auto import tqdm

    data = data_root(data)
    cases = list_cases(data)
    if max_cases:
        cases = cases[:max_cases]
    split_of = pp.patient_split([c.case_id for c in cases], fractions, seed)
    layout = cases[0].layout
    if layout == "lits":
        modality = "ct"
    cols = {k: [] for k in ("images", "healthy", "masks", "seg", "labels", "subjects", "slice_index")}
    uppers = {}
    for case in tqdm(cases, desc="prepare", unit="case", disable=not progress):
        vol = case.load(modality)
        seg = case.load_seg()
        if seg.shape != vol.data.shape:
            raise DataError(f"{case.seg}: segmentation shape {seg.shape} differs from image shape "
                            f"{vol.data.shape} of {vol.path}")
        img = pp.to_ras(vol.data, vol.affine)
        seg = pp.to_ras(seg, vol.affine)
        gt = case.load_healthy(modality)
        gt = pp.to_ras(gt.data, vol.affine) if gt is not None else None
        if layout == "lits":
            foreground = img > -500
            img01 = pp.ct_window(img, *window)
            gt01 = pp.ct_window(gt, *window) if gt is not None else None
        else:
            foreground = img > 0
            img01, upper = pp.clip_and_scale(img)
            gt01 = pp.clip_and_scale(gt, upper=upper)[0] if gt is not None else None
            uppers[case.case_id] = upper
        mask = region_mask(seg, layout, region)
        zs = pp.select_slices(img.shape[2], n_slices, *(slice_range or (None, None)))
        s_img, s_mask, s_seg = (pp.axial_slices(a)[zs] for a in (img01, mask, seg))
        labels = pp.label_slices(s_mask, min_area)
        keep = labels != pp.AMBIGUOUS
        box = pp.square_box(pp.axial_slices(foreground)[zs])
        cols["images"].append(pp.crop_resize(s_img[keep], size, box).astype(np.float16))
        if gt01 is not None:
            cols["healthy"].append(pp.crop_resize(pp.axial_slices(gt01)[zs][keep], size, box).astype(np.float16))
        cols["masks"].append(pp.crop_resize(s_mask[keep].astype(np.uint8), size, box, "nearest"))
        cols["seg"].append(pp.crop_resize(s_seg[keep].astype(np.uint8), size, box, "nearest"))
        cols["labels"].append(labels[keep])
        cols["subjects"].append(np.array([case.case_id] * int(keep.sum())))
        cols["slice_index"].append(zs[keep].astype(np.int16))
    arrays = {k: np.concatenate(v) for k, v in cols.items() if v}
    if "healthy" in arrays and len(cols["healthy"]) != len(cols["images"]):
        del arrays["healthy"]            # ground truth only for some cases: drop it, never mix
    arrays["split"] = np.array([split_of[s] for s in arrays["subjects"]])
    region = region or {"brats2018": "wt", "brats2023": "wt", "isles2015": "lesion", "lits": "tumour"}[layout]
    meta = {"source": str(data), "layout": layout, "modality": modality, "size": size,
            "n_slices": n_slices, "slice_range": slice_range, "min_area": min_area,
            "region": region, "region_name": REGION_NAMES[region], "fractions": list(fractions),
            "seed": seed, "window": list(window) if layout == "lits" else None, "v99_5": uppers,
            "value_range": [0, 1]}
    arrays["meta"] = np.array(json.dumps(meta))
    out = Path(out)
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    return out


def load_prepared(path: str | Path) -> PreparedSlices:
    """Load a file written by :func:`prepare` (raises :class:`~pseudohealthy_lib.utils.DataError` naming it if bad)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared file not found (make one with `python -m pseudohealthy_lib prepare`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: not a prepared slice file, missing {missing}")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: cannot read prepared file, corrupt or truncated ({e})") from e
    meta = json.loads(str(arrays.pop("meta")))
    return PreparedSlices(meta=meta, **arrays)


class _SliceDataset(Dataset):
    def __init__(self, data: PreparedSlices, value_range: str):
        if value_range not in ("tanh", "unit"):
            raise ValueError("value_range must be 'tanh' ([-1, 1]) or 'unit' ([0, 1])")
        self.data, self.tanh = data, value_range == "tanh"

    def _img(self, arr: np.ndarray, i: int) -> torch.Tensor:
        x = torch.from_numpy(arr[i].astype(np.float32))[None]
        return pp.to_tanh_range(x) if self.tanh else x


class UnpairedDataset(_SliceDataset):
    """Unpaired batches for CycleGAN-style training between two domains.

    Domain A is always a pathological slice. Domain B is ``'healthy'`` (an unrelated healthy
    slice: ANT-GAN's normal domain) or ``'mask'`` (the lesion mask of an unrelated pathological
    slice, drawn as an image in [-1, 1]: the image-to-mask translation of the CycleGAN chapter).

    Items are dicts of (1, S, S) float tensors: ``A``, ``B``, ``A_mask`` (A's own lesion mask,
    in {0, 1}) and, for phantoms, ``A_healthy`` (A's ground truth, for evaluation only). The
    length is the larger of the two pools; :meth:`set_epoch` reshuffles the pairing (seeded).
    """

    def __init__(self, data: PreparedSlices, split: str = "train", value_range: str = "tanh",
                 seed: int = 0, domain_b: str = "healthy"):
        super().__init__(data, value_range)
        if domain_b not in ("healthy", "mask"):
            raise ValueError(f"domain_b must be 'healthy' or 'mask', not '{domain_b}'")
        self.domain_b = domain_b
        self.path = data.select(split, pp.PATHOLOGICAL)
        self.other = data.select(split, pp.HEALTHY) if domain_b == "healthy" else self.path
        if len(self.path) == 0 or len(self.other) == 0:
            raise ValueError(f"split '{split}' needs pathological ({len(self.path)}) and "
                             f"{domain_b} ({len(self.other)}) slices")
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairing of pathological and domain-B slices for ``epoch`` (seeded)."""
        rng = np.random.default_rng([self.seed, epoch])
        self._pa, self._pb = rng.permutation(len(self.path)), rng.permutation(len(self.other))

    def __len__(self) -> int:
        return max(len(self.path), len(self.other))

    def __getitem__(self, i: int) -> dict:
        a = self.path[self._pa[i % len(self.path)]]
        b = self.other[self._pb[i % len(self.other)]]
        mask_a = torch.from_numpy(self.data.masks[a].astype(np.float32))[None]
        if self.domain_b == "healthy":
            img_b = self._img(self.data.images, b)
        else:
            m = torch.from_numpy(self.data.masks[b].astype(np.float32))[None]
            img_b = pp.to_tanh_range(m) if self.tanh else m
        item = {"A": self._img(self.data.images, a), "B": img_b, "A_mask": mask_a}
        if self.data.healthy is not None:
            item["A_healthy"] = self._img(self.data.healthy, a)
        return item


class PairedDataset(_SliceDataset):
    """Image-mask pairs (``image``, ``mask``, ``label`` and ``healthy`` for phantoms).

    ``label=None`` serves healthy and pathological slices; 1 only pathological ones.
    """

    def __init__(self, data: PreparedSlices, split: str = "train", label: int | None = None,
                 value_range: str = "tanh"):
        super().__init__(data, value_range)
        self.index = data.select(split, label)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        j = self.index[i]
        item = {"image": self._img(self.data.images, j),
                "mask": torch.from_numpy(self.data.masks[j].astype(np.float32))[None],
                "label": int(self.data.labels[j])}
        if self.data.healthy is not None:
            item["healthy"] = self._img(self.data.healthy, j)
        return item
