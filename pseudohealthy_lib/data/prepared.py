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
from ..utils import DataError, OptionError, at_least, atomic_path
from . import preprocess as pp
from .layouts import LABELS, REGION_NAMES, list_cases, region_mask

KEYS = ("images", "masks", "seg", "labels", "subjects", "slice_index", "split", "meta")
SPLITS = ("train", "val", "test")
#: What ``load_prepared`` checks, per key: the leading shape (``"slices"`` = (N, S, S),
#: ``"n"`` = (N,)) and the kind of values.
SCHEMA = {"images": ("slices", "unit"), "healthy": ("slices", "unit"), "masks": ("slices", "binary"),
          "seg": ("slices", "labels"), "labels": ("n", "binary"), "subjects": ("n", "text"),
          "slice_index": ("n", "index"), "split": ("n", "split")}
SPACE_TOLERANCE = 0.1       #: largest offset between the voxel grids of one case's files, in voxels


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
                raise OptionError(f"no split '{split}' in this dataset (have {sorted(set(self.split.tolist()))})")
            keep &= self.split == split
        if label is not None:
            keep &= self.labels == label
        return np.nonzero(keep)[0]

    def subset(self, idx) -> "PreparedSlices":
        """The slices ``idx`` only (indices or a boolean array), in that order, with their split,
        e.g. ``data.subset(data.select("test")[::3])`` for a quicker look at a third of the test
        slices."""
        import dataclasses

        idx = np.asarray(idx)
        if idx.dtype == bool:
            if len(idx) != len(self):
                raise OptionError(f"subset: a boolean selection needs {len(self)} values, got {len(idx)}")
            idx = np.nonzero(idx)[0]
        if idx.size == 0:
            raise OptionError("subset: no slices selected")
        if idx.dtype.kind not in "iu" or idx.min() < -len(self) or idx.max() >= len(self):
            raise OptionError(f"subset: expected slice indices from 0 to {len(self) - 1}")
        arrays = {f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self)
                  if isinstance(getattr(self, f.name), np.ndarray)}
        return dataclasses.replace(self, **arrays)

    def with_folds(self, folds: int, fold: int, seed: int = 0) -> "PreparedSlices":
        """The same slices with the split of patient-level ``folds``-fold cross-validation.

        Patients are dealt into ``folds`` groups by scikit-learn's ``StratifiedGroupKFold``
        (a patient's slices stay together; each group gets about the same share of pathological
        slices). Group ``fold`` is ``'test'``; with three folds or more the next group,
        ``(fold + 1) % folds``, is ``'val'``; the others are ``'train'``. The file's own split is
        ignored; the folds depend on ``seed`` and the data only, so every fold of one study sees
        the same partition.
        """
        import dataclasses

        from sklearn.model_selection import StratifiedGroupKFold

        at_least(folds, "folds", 2)
        if not 0 <= fold < folds:
            raise OptionError(f"fold must be from 0 to {folds - 1} for {folds} folds, got {fold}")
        patients = sorted(set(self.subjects.tolist()))
        if len(patients) < folds:
            raise OptionError(f"{folds} folds need at least {folds} patients; this data has {len(patients)}")
        cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        group = np.empty(len(self), int)
        for k, (_, test) in enumerate(cv.split(np.zeros(len(self)), self.labels, self.subjects)):
            group[test] = k
        split = np.full(len(self), "train", dtype="<U5")
        split[group == fold] = "test"
        if folds >= 3:
            split[group == (fold + 1) % folds] = "val"
        return dataclasses.replace(self, split=split)

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
            n_slices: int | None = 60, slice_range: tuple[int | None, int | None] | None = None,
            min_area: int = 100, region: str | None = None, fractions=(0.7, 0.1, 0.2),
            seed: int = 0, window: tuple[float, float] = (40.0, 400.0), max_cases: int | None = None,
            progress: bool = True) -> Path:
    """Turn a folder of volumes (any supported layout) into one prepared ``.npz`` file.

    ``data`` is the dataset folder; ``None`` means ``$PH_DATA_ROOT``. ``out`` is the file to
    write (any name; it holds NumPy's ``.npz`` format), written atomically.
    ``min_area`` is the smallest lesion area, in pixels of the original slice, for a slice to
    count as pathological; slices with fewer (but some) lesion pixels are dropped.
    ``window`` = (level, width) in HU is used for CT (LiTS) instead of percentile scaling.

    Every file of a case is reoriented to RAS by its own affine, and the segmentation and the
    healthy ground truth must lie in the image's world space. Bad options raise
    :class:`~pseudohealthy_lib.utils.OptionError`, bad data :class:`~pseudohealthy_lib.utils.DataError`.
    """
    from tqdm.auto import tqdm

    at_least(size, "size")
    at_least(min_area, "min_area (lesion pixels of a pathological slice)")
    if n_slices is not None:
        at_least(n_slices, "n_slices")
    if max_cases is not None:
        at_least(max_cases, "max_cases")
    if slice_range is not None:
        slice_range = _check_slice_range(slice_range)
    out = _output_file(out)
    data = data_root(data)
    cases = list_cases(data)
    if max_cases:
        cases = cases[:max_cases]
    split_of = pp.patient_split([c.case_id for c in cases], fractions, seed)
    layout = cases[0].layout
    if layout == "lits":
        modality = "ct"
        pp.ct_window(np.zeros(1), *window)                  # checks the window before any work
    region = region or LABELS[layout]["lesion"]
    region_mask(np.zeros(1), layout, region)                # checks the region name
    cols = {k: [] for k in ("images", "healthy", "masks", "seg", "labels", "subjects", "slice_index")}
    uppers = {}
    for case in tqdm(cases, desc="prepare", unit="case", disable=not progress):
        img, seg, gt = _load_case(case, modality)
        path = case.files[modality]
        if layout == "lits":
            foreground = img > -500
            img01 = pp.ct_window(img, *window)
            gt01 = pp.ct_window(gt, *window) if gt is not None else None
        else:
            foreground = img > 0
            img01, upper = _scale_mr(img, path)
            gt01 = _scale_mr(gt, case.healthy[modality], upper)[0] if gt is not None else None
            uppers[case.case_id] = upper
        mask = region_mask(seg, layout, region)
        try:
            zs = pp.select_slices(img.shape[2], n_slices, *(slice_range or (None, None)))
        except OptionError as e:
            raise OptionError(f"{path}: {e}") from None
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
    if not len(arrays["images"]):
        raise DataError(f"{data}: no slice left to write: every selected slice has a lesion smaller than "
                        f"min_area={min_area} pixels")
    if "healthy" in arrays and len(cols["healthy"]) != len(cols["images"]):
        del arrays["healthy"]            # ground truth only for some cases: drop it, never mix
    arrays["split"] = np.array([split_of[s] for s in arrays["subjects"]])
    meta = {"source": str(data), "layout": layout, "modality": modality, "size": size,
            "n_slices": n_slices, "slice_range": slice_range, "min_area": min_area,
            "region": region, "region_name": REGION_NAMES[region], "fractions": list(fractions),
            "seed": seed, "window": list(window) if layout == "lits" else None, "v99_5": uppers,
            "value_range": [0, 1]}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)            # a file object: np.savez would append .npz to a name
    return out


def _check_slice_range(rng) -> tuple[int | None, int | None]:
    """``(start, stop)`` with ``0 <= start < stop`` (either may be None), else OptionError."""
    try:
        start, stop = (None if v is None else at_least(v, "slice range", 0) for v in rng)
    except (TypeError, ValueError):
        raise OptionError(f"slice range must be (start, stop) with 0 <= start < stop, got {rng!r}") from None
    if start is not None and stop is not None and start >= stop:
        raise OptionError(f"slice range {start}:{stop} is empty: start must be below stop")
    return start, stop


def _output_file(out: str | Path) -> Path:
    """``out`` as a Path, refused (naming it) when it is a folder or lies below a file."""
    out = Path(out)
    if out.is_dir():
        raise DataError(f"{out}: is a folder; the output must be a file name, e.g. {out / 'slices.npz'}")
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise DataError(f"{parent}: is a file, so {out} cannot be written below it")
    return out


def _load_case(case, modality: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Image, segmentation and healthy ground truth (or None) of ``case`` in RAS, checked to share
    the image's world space."""
    vol = case.load(modality)
    img, affine = pp.to_ras_with_affine(vol.data, vol.affine)
    _check_not_blank(img, vol.path)
    seg = _same_space(case.load_seg_volume(), "segmentation", vol, img.shape, affine)
    gt = case.load_healthy(modality)
    if gt is not None:
        gt = _same_space(gt, "healthy ground truth", vol, img.shape, affine)
        _check_not_blank(gt, case.healthy[modality])
    return img, seg, gt


def _same_space(other, what: str, ref, ref_shape: tuple, ref_affine: np.ndarray) -> np.ndarray:
    """``other``'s data in RAS, after checking that it lies on the grid of the image ``ref``, whose
    RAS shape and affine are ``ref_shape`` and ``ref_affine``.

    Voxel centres of the two files may differ by at most :data:`SPACE_TOLERANCE` of a voxel.
    """
    data, affine = pp.to_ras_with_affine(other.data, other.affine)
    if data.shape != ref_shape:
        raise DataError(f"{other.path}: {what} shape {other.data.shape} differs from image shape "
                        f"{ref.data.shape} of {ref.path} (stored as {other.orientation} and {ref.orientation}, "
                        f"compared in RAS)")
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in data.shape], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    gap = float(np.abs((affine - ref_affine) @ corners)[:3].max())
    voxel = float(np.sqrt((ref_affine[:3, :3] ** 2).sum(0)).min())
    if gap > SPACE_TOLERANCE * voxel:
        raise DataError(f"{other.path}: {what} is not in the world space of the image {ref.path}: "
                        f"their voxels are up to {gap:.3g} mm apart; resample it onto the image's grid")
    return data


def _check_not_blank(data: np.ndarray, path: Path) -> None:
    """Refuse a volume whose voxels all have one value (an empty or failed export)."""
    if data.min() == data.max():
        raise DataError(f"{path}: every voxel is {float(data.min()):g}; the volume is blank")


def _scale_mr(img: np.ndarray, path: Path, upper: float | None = None) -> tuple[np.ndarray, float]:
    """:func:`~.preprocess.clip_and_scale` of an MR volume, refusing values well below 0.

    Released MR images have a background of 0; negative values (z-scored or otherwise
    normalised data) would be clipped away silently, so they are an error. Slight ones (above
    -1% of the volume's own 99.5th percentile: interpolation ringing) are clipped as before.
    """
    scaled, upper = pp.clip_and_scale(img, upper=upper)
    low = float(img.min())
    if low < 0 and low < -0.01 * max(float(np.percentile(img, 99.5)), 0.0):     # percentile only if needed
        raise DataError(f"{path}: intensities go down to {low:.4g}; prepare expects MR images as released, "
                        "with a background of 0, not z-scored or shifted ones")
    if upper <= 0:
        raise DataError(f"{path}: fewer than 0.5% of the voxels are above 0, so the 99.5th percentile used "
                        "for scaling is 0; is the volume almost empty?")
    return scaled, upper


def load_prepared(path: str | Path) -> PreparedSlices:
    """Load a file written by :func:`prepare`.

    Raises :class:`~pseudohealthy_lib.utils.DataError` naming the file and the problem if it is
    missing, unreadable, or breaks the format of the module docstring: shapes (N, S, S) and
    (N,), dtypes, finite images in [0, 1], masks and labels in {0, 1}, known split names,
    readable meta JSON.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: prepared file not found (make one with `python -m pseudohealthy_lib prepare`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: not a prepared slice file, missing {missing}")
            arrays = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read prepared file, corrupt or truncated ({e})") from e
    except ValueError as e:
        raise DataError(f"{path}: cannot read prepared file ({e})") from e
    try:
        meta = json.loads(str(arrays.pop("meta")))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: 'meta' is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: 'meta' must be a JSON object, got {type(meta).__name__}")
    unknown = sorted(set(arrays) - set(SCHEMA))
    if unknown:
        raise DataError(f"{path}: unknown keys {unknown} in a prepared file")
    for key in SCHEMA:
        if key in arrays:
            _check_array(path, key, arrays[key], arrays["images"].shape)
    return PreparedSlices(meta=meta, **arrays)


def _check_array(path: Path, key: str, a: np.ndarray, image_shape: tuple) -> None:
    """Check one array of a prepared file against :data:`SCHEMA`; raise DataError naming it."""
    def bad(problem: str):
        return DataError(f"{path}: '{key}' {problem}")

    shape, kind = SCHEMA[key]
    if key == "images" and (len(image_shape) != 3 or image_shape[1] != image_shape[2] or not image_shape[0]):
        raise bad(f"has shape {image_shape}; expected (N, S, S) with N >= 1 square slices")
    want = image_shape if shape == "slices" else image_shape[:1]
    if a.shape != want:
        raise bad(f"has shape {a.shape}; expected {want} to match 'images' {image_shape}")
    numeric = a.dtype.kind in "biu"
    if kind == "unit":
        if a.dtype.kind != "f":
            raise bad(f"has dtype {a.dtype}; expected floating-point intensities in [0, 1]")
        lo, hi = float(a.min()), float(a.max())                   # NaN and inf show up here too
        if not np.isfinite([lo, hi]).all():
            raise bad(f"holds {int((~np.isfinite(a)).sum())} NaN or infinite values")
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise bad(f"has values in [{lo:.4g}, {hi:.4g}]; expected intensities in [0, 1]")
    elif kind in ("binary", "labels", "index") and not numeric:
        raise bad(f"has dtype {a.dtype}; expected integers")
    elif kind in ("text", "split") and a.dtype.kind not in "US":
        raise bad(f"has dtype {a.dtype}; expected strings")
    if kind == "binary" and a.size and (a.min() < 0 or a.max() > 1):     # min/max: fast on big masks
        raise bad(f"has values {sorted(set(np.unique(a).tolist()) - {0, 1})[:5]}; expected only [0, 1]")
    if kind == "split" and not set(np.unique(a).tolist()) <= set(SPLITS):
        raise bad(f"has values {sorted(set(np.unique(a).tolist()) - set(SPLITS))[:5]}; expected only {sorted(SPLITS)}")
    if kind in ("labels", "index") and a.size and a.min() < 0:
        raise bad(f"has negative values (down to {a.min()})")


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

    ``healthy`` says where healthy slices come from: ``'slices'`` (the lesion-free slices of the
    split; on BraTS-like data they lie lower and higher in the head than the lesions do) or
    ``'twins'`` (phantoms only: the healthy ground truth of the split's pathological slices, so
    domain B covers the same anatomical levels as domain A). A pathological slice is never
    paired with a twin of its own subject, so the pairs stay unpaired. ``'level'`` (any
    registered data, real scans included) pairs each pathological slice with a lesion-free slice
    of *another* subject at nearly the same axial level (``slice_index`` within ``level_tol``,
    or the nearest level there is), so that domain B is the healthy anatomy of the levels where
    lesions are, without any ground truth; a critic can then no longer tell the domains apart by
    the level alone.

    Items are dicts of (1, S, S) float tensors: ``A``, ``B``, ``A_mask`` (A's own lesion mask,
    in {0, 1}) and, for phantoms, ``A_healthy`` (A's ground truth, for evaluation only). With
    ``other_mask=True`` they also hold ``M``: the lesion mask (in {0, 1}) of a pathological
    slice of *another subject* (PHS-GAN's unpaired setting: real masks that do not belong to A).
    With ``with_index=True`` they also hold ``A_index`` and ``B_index``, the two slices' indices in
    ``data`` (SMILE hides the labels of a fixed set of slices). The length is the larger of the two pools; :meth:`set_epoch` reshuffles the pairing (seeded).
    """

    def __init__(self, data: PreparedSlices, split: str = "train", value_range: str = "tanh",
                 seed: int = 0, domain_b: str = "healthy", healthy: str = "slices", other_mask: bool = False,
                 with_index: bool = False, level_tol: int = 4):
        super().__init__(data, value_range)
        if domain_b not in ("healthy", "mask"):
            raise ValueError(f"domain_b must be 'healthy' or 'mask', not '{domain_b}'")
        if healthy not in ("slices", "twins", "level"):
            raise OptionError(f"healthy must be 'slices', 'twins' or 'level', not {healthy!r}")
        self.twins = domain_b == "healthy" and healthy == "twins"
        if self.twins and data.healthy is None:
            raise OptionError("healthy='twins' needs a phantom's healthy ground truth; this data has none")
        self.domain_b = domain_b
        self.path = data.select(split, pp.PATHOLOGICAL)
        self.other = data.select(split, pp.HEALTHY) if domain_b == "healthy" and not self.twins else self.path
        if len(self.path) == 0 or len(self.other) == 0:
            raise ValueError(f"split '{split}' needs pathological ({len(self.path)}) and "
                             f"{domain_b} ({len(self.other)}) slices")
        for flag, what in ((self.twins, "healthy='twins' pairs each slice with another subject's twin"),
                           (other_mask, "other_mask=True draws each slice's mask from another subject")):
            if flag and len(set(data.subjects[self.path].tolist())) < 2:
                raise ValueError(f"split '{split}': {what}, so it needs lesion slices of at least 2 subjects")
        self.seed, self.other_mask, self.with_index = seed, other_mask, with_index
        self.level = domain_b == "healthy" and healthy == "level"
        if self.level:
            self._level_pools = self._pools_by_level(level_tol)
        self.set_epoch(0)

    def _pools_by_level(self, tol: int) -> list[np.ndarray]:
        """For each pathological slice, the lesion-free slices of other subjects within ``tol``
        axial slices of it (or, where there are none, those at the nearest level there is)."""
        z, subj = self.data.slice_index.astype(int), self.data.subjects
        pools = []
        for a in self.path:
            others = self.other[subj[self.other] != subj[a]]
            if len(others) == 0:
                raise ValueError(f"healthy='level': no lesion-free slice of another subject than {subj[a]!r}")
            dz = np.abs(z[others] - z[a])
            pools.append(others[dz <= max(tol, dz.min())])
        return pools

    def level_gap(self) -> float:
        """Mean absolute level gap ``abs(slice_index(A) - slice_index(B))`` of the current epoch's pairs:
        about the spread of the levels with ``healthy='slices'``, at most ``level_tol`` (where it can)
        with ``'level'``."""
        z = self.data.slice_index.astype(int)
        gaps = [abs(z[self._pair(i)[0]] - z[self._pair(i)[1]]) for i in range(len(self))]
        return float(np.mean(gaps))

    def set_epoch(self, epoch: int) -> None:
        """Draw the pairing of pathological and domain-B slices for ``epoch`` (seeded)."""
        rng = np.random.default_rng([self.seed, epoch])
        self._pa, self._pb = rng.permutation(len(self.path)), rng.permutation(len(self.other))
        self._pm = rng.permutation(len(self.path))

    def __len__(self) -> int:
        return max(len(self.path), len(self.other))

    def _pair(self, i: int) -> tuple[int, int]:
        """The indices in ``data`` of item ``i``'s pathological slice and domain-B slice."""
        k = self._pa[i % len(self.path)]
        a = self.path[k]
        b = self.other[self._pb[i % len(self.other)]]
        if self.twins:                    # the next twin in the shuffled order from another subject
            b = self._other_subject(a, self.other, self._pb, i)
        elif self.level:                  # a healthy slice of another subject at a's level
            pool = self._level_pools[k]
            b = pool[self._pb[i % len(self.other)] % len(pool)]
        return a, b

    def __getitem__(self, i: int) -> dict:
        a, b = self._pair(i)
        mask_a = torch.from_numpy(self.data.masks[a].astype(np.float32))[None]
        if self.domain_b == "healthy":
            img_b = self._img(self.data.healthy if self.twins else self.data.images, b)
        else:
            m = torch.from_numpy(self.data.masks[b].astype(np.float32))[None]
            img_b = pp.to_tanh_range(m) if self.tanh else m
        item = {"A": self._img(self.data.images, a), "B": img_b, "A_mask": mask_a}
        if self.other_mask:
            m = self._other_subject(a, self.path, self._pm, i)
            item["M"] = torch.from_numpy(self.data.masks[m].astype(np.float32))[None]
        if self.data.healthy is not None:
            item["A_healthy"] = self._img(self.data.healthy, a)
        if self.with_index:
            item |= {"A_index": int(a), "B_index": int(b)}
        return item

    def _other_subject(self, a: int, pool: np.ndarray, order: np.ndarray, i: int) -> int:
        """The slice of ``pool`` at position ``i`` of ``order``, or the next one there whose
        subject is not slice ``a``'s."""
        for k in range(len(pool)):
            b = pool[order[(i + k) % len(pool)]]
            if self.data.subjects[b] != self.data.subjects[a]:
                return b
        return b


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
