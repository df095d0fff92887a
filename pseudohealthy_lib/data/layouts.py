"""Find and load cases in the folder layouts the public datasets are released in.

Supported layouts (detected from the folder, see :func:`detect_layout`):

=========  ==================================================================  ========================
layout     files of one case                                                   labels
=========  ==================================================================  ========================
brats2018  ``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2018-21)     0, 1 NCR/NET, 2 ED, 4 ET
brats2023  ``BraTS-GLI-xxxxx-xxx/BraTS-GLI-xxxxx-xxx-{t2f,t1n,t1c,t2w,seg}``   0, 1 NCR, 2 ED, 3 ET
isles2015  ``<n>/VSD.Brain.XX.O.{MR_Flair,MR_T1,MR_T2,MR_DWI,OT}.<id>/*.nii``  0, 1 lesion
lits       ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]``               0, 1 liver, 2 tumour
=========  ==================================================================  ========================

Modalities get one canonical name whatever the release calls them: ``flair``, ``t1``,
``t1ce``, ``t2``, ``dwi`` and ``ct``. The phantoms of this library add a healthy ground
truth beside each image (``<case>_flair_healthy.nii.gz``; ``healthy-N.nii.gz`` for LiTS).

Hidden files and folders (``.name``, macOS's ``._name`` and ``__MACOSX``) and backups such as
``segmentation-3.nii.gz.orig`` are ignored. A file present both as ``.nii`` and ``.nii.gz``,
or a case id found twice, is refused: the loader never guesses which copy is meant.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import data_root
from ..utils import DataError, OptionError
from .nifti import Volume, load_volume

# label conventions: allowed labels and the sub-regions built from them
LABELS = {
    "brats2018": {"labels": (0, 1, 2, 4), "regions": {"wt": (1, 2, 4), "tc": (1, 4), "et": (4,)}, "lesion": "wt"},
    "brats2023": {"labels": (0, 1, 2, 3), "regions": {"wt": (1, 2, 3), "tc": (1, 3), "et": (3,)}, "lesion": "wt"},
    "isles2015": {"labels": (0, 1), "regions": {"lesion": (1,)}, "lesion": "lesion"},
    "lits": {"labels": (0, 1, 2), "regions": {"liver": (1, 2), "tumour": (2,)}, "lesion": "tumour"},
}
REGION_NAMES = {"wt": "whole tumour", "tc": "tumour core", "et": "enhancing tumour",
                "lesion": "lesion", "liver": "liver", "tumour": "liver tumour"}

BRATS2018_MODS = {"flair": "flair", "t1": "t1", "t1ce": "t1ce", "t2": "t2"}
BRATS2023_MODS = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w"}
ISLES_MODS = {"MR_Flair": "flair", "MR_T1": "t1", "MR_T2": "t2", "MR_DWI": "dwi"}
NII = (".nii.gz", ".nii")


@dataclass
class Case:
    """One subject: where its files are and how its labels are coded."""

    case_id: str
    layout: str
    files: dict[str, Path]
    seg: Path | None = None
    healthy: dict[str, Path] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        return sorted(self.files)

    def load(self, modality: str) -> Volume:
        """Load one modality; a missing one raises :class:`~pseudohealthy_lib.utils.DataError` naming the case folder."""
        if modality not in self.files:
            where = next(iter(self.files.values())).parent if self.files else self.case_id
            raise DataError(f"{where}: case {self.case_id} has no '{modality}' image "
                            f"(found: {', '.join(self.modalities) or 'none'})")
        return load_volume(self.files[modality])

    def load_healthy(self, modality: str) -> Volume | None:
        """The healthy ground truth of a phantom case, or ``None`` for real data."""
        return load_volume(self.healthy[modality]) if modality in self.healthy else None

    def load_seg(self) -> np.ndarray:
        """Integer label volume, checked against the layout's label convention."""
        return self.load_seg_volume().data

    def load_seg_volume(self) -> Volume:
        """The segmentation as a :class:`~pseudohealthy_lib.data.nifti.Volume` (int16 labels and the file's own affine)."""
        if self.seg is None:
            raise DataError(f"case {self.case_id}: no segmentation file found")
        vol = load_volume(self.seg)
        vol.data = check_labels(vol.data, self.layout, self.seg)
        return vol

    def lesion_mask(self, region: str | None = None, seg: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask of a sub-region (default: the layout's lesion, e.g. BraTS whole tumour)."""
        seg = self.load_seg() if seg is None else seg
        return region_mask(seg, self.layout, region)


def check_labels(seg: np.ndarray, layout: str, path: Path | str = "segmentation") -> np.ndarray:
    """Return ``seg`` as int16 after checking that it holds only the layout's labels."""
    if not np.all(np.equal(np.mod(seg, 1), 0)):
        raise DataError(f"{path}: segmentation has non-integer values; expected labels {LABELS[layout]['labels']}")
    seg = seg.astype(np.int16)
    found = set(np.unique(seg).tolist())
    unknown = found - set(LABELS[layout]["labels"])
    if unknown:
        raise DataError(f"{path}: segmentation has unknown labels {sorted(unknown)}; "
                        f"the {layout} convention allows only {list(LABELS[layout]['labels'])}")
    return seg


def region_mask(seg: np.ndarray, layout: str, region: str | None = None) -> np.ndarray:
    """Boolean mask of ``region`` (``wt``, ``tc``, ``et``, ``lesion``, ``liver``, ``tumour``)."""
    conv = LABELS[layout]
    region = region or conv["lesion"]
    if region not in conv["regions"]:
        raise OptionError(f"region '{region}' is not defined for {layout}; choose from {sorted(conv['regions'])}")
    return np.isin(seg, conv["regions"][region])


def _visible(path: Path, root: Path) -> bool:
    """False for anything hidden below ``root``: ``.name``, macOS's ``._name`` and ``__MACOSX``."""
    return not any(part.startswith(".") or part == "__MACOSX" for part in path.relative_to(root).parts)


def _one_file(found: list[Path], what: str) -> Path | None:
    """The single file of ``found``; two or more copies (``.nii`` and ``.nii.gz``) are refused."""
    if len(found) > 1:
        raise DataError(f"{what} is there {len(found)} times: {', '.join(map(str, found))}; "
                        "keep one and remove the others")
    return found[0] if found else None


def _nii(folder: Path, stem: str) -> Path | None:
    return _one_file([p for ext in NII if (p := folder / f"{stem}{ext}").is_file()], stem)


def detect_layout(root: str | Path | None = None) -> str:
    """Name the layout of the dataset folder ``root`` (default ``$PH_DATA_ROOT``).

    Raises :class:`~pseudohealthy_lib.utils.DataError` naming the folder if the layout is unknown.
    """
    root = data_root(root)
    if root.is_file():
        raise DataError(f"{root}: is a file; give the dataset's folder")
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d, root)]
    for d in subdirs:
        if _nii(d, f"{d.name}-t2f") or _nii(d, f"{d.name}-seg"):
            return "brats2023"
        if _nii(d, f"{d.name}_flair") or _nii(d, f"{d.name}_seg"):
            return "brats2018"
    if any(_visible(p, root) for p in root.glob("**/VSD.Brain*")):
        return "isles2015"
    if any(_visible(p, root) for p in root.glob("**/volume-*.nii*")):
        return "lits"
    if not any(root.iterdir()):
        raise DataError(f"{root}: the data folder is empty")
    shown = ", ".join(p.name for p in sorted(root.iterdir())[:5])
    raise DataError(f"{root}: unknown folder layout (first entries: {shown}); expected BraTS 2018-2021, "
                    "BraTS 2023+, ISLES 2015 SISS or LiTS, see pseudohealthy_lib.data.layouts")


def list_cases(root: str | Path | None = None, layout: str | None = None) -> list[Case]:
    """All cases below ``root`` (default ``$PH_DATA_ROOT``), sorted by id.

    ``layout`` defaults to :func:`detect_layout`.
    """
    root = data_root(root)
    layout = layout or detect_layout(root)
    finder = {"brats2018": _brats2018, "brats2023": _brats2023, "isles2015": _isles2015, "lits": _lits}
    if layout not in finder:
        raise OptionError(f"unknown layout '{layout}'; choose from {sorted(finder)}")
    cases = finder[layout](root)
    if not cases:
        raise DataError(f"{root}: no {layout} cases found")
    seen: dict[str, Case] = {}
    for c in cases:
        if c.case_id in seen:
            raise DataError(f"{root}: case id '{c.case_id}' is there twice ({_where(seen[c.case_id])} and "
                            f"{_where(c)}); keep one")
        seen[c.case_id] = c
    return cases


def _where(case: Case) -> Path | str:
    """A file of ``case`` that shows where it lives, for error messages."""
    return next(iter(case.files.values()), case.seg) or case.case_id


def _brats(root: Path, layout: str, mods: dict[str, str], sep: str) -> list[Case]:
    cases = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and _visible(p, root)):
        files = {m: p for m, tag in mods.items() if (p := _nii(d, f"{d.name}{sep}{tag}"))}
        seg = _nii(d, f"{d.name}{sep}seg")
        if not files and seg is None:
            continue
        healthy = {m: p for m, tag in mods.items() if (p := _nii(d, f"{d.name}{sep}{tag}_healthy"))}
        cases.append(Case(d.name, layout, files, seg, healthy))
    return cases


def _brats2018(root: Path) -> list[Case]:
    return _brats(root, "brats2018", BRATS2018_MODS, "_")


def _brats2023(root: Path) -> list[Case]:
    return _brats(root, "brats2023", BRATS2023_MODS, "-")


def _isles2015(root: Path) -> list[Case]:
    by_case: dict[Path, Case] = {}
    pattern = re.compile(r"VSD\.Brain(?:_\d+more)?\.XX\.O\.(\w+?)\.(\d+)$")
    for d in sorted(root.glob("**/VSD.Brain*")):
        m = pattern.match(d.name)
        if not d.is_dir() or not m or not _visible(d, root):
            continue
        kind = m.group(1)
        nii = _one_file([p for p in sorted(d.iterdir()) if p.name.endswith(NII) and _visible(p, root)],
                        "a .nii image")
        if nii is None:
            raise DataError(f"{d}: ISLES folder holds no .nii file")
        case = by_case.setdefault(d.parent, Case(d.parent.name, "isles2015", {}))
        if kind == "OT":
            case.seg = nii
        elif kind in ISLES_MODS:
            case.files[ISLES_MODS[kind]] = nii
    return sorted(by_case.values(), key=lambda c: _natural(c.case_id))


def _lits(root: Path) -> list[Case]:
    files: dict[tuple[str, str], list[Path]] = {}
    for p in sorted(root.glob("**/*.nii*")):
        m = re.match(r"(volume|segmentation)-(\d+)\.nii(\.gz)?$", p.name)
        if m and _visible(p, root):
            files.setdefault((m.group(1), m.group(2)), []).append(p)
    cases = []
    for (kind, num), vols in files.items():
        if kind == "volume":
            vol = _one_file(vols, f"volume-{num}")
            seg = _one_file(files.get(("segmentation", num), []), f"segmentation-{num}")
            healthy = _nii(vol.parent, f"healthy-{num}")
            cases.append(Case(num, "lits", {"ct": vol}, seg, {"ct": healthy} if healthy else {}))
    return sorted(cases, key=lambda c: int(c.case_id))


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]
