"""The book's default data: a phantom dataset generated and prepared on first use, then cached.

>>> path = phantom_dataset()          # doctest: +SKIP
>>> data = load_prepared(path)        # doctest: +SKIP

In fast mode (``PH_FAST=1``) the dataset is tiny so that notebooks run in seconds.
"""
from __future__ import annotations

from pathlib import Path

from ..config import cache_dir, fast_mode
from . import phantom, phantom_ct
from .prepared import prepare

TEACHING_SUBJECTS = 40
FAST_SUBJECTS = 4


def default_subjects() -> int:
    return FAST_SUBJECTS if fast_mode() else TEACHING_SUBJECTS


def phantom_volumes(subjects: int | None = None, lesion: str = "glioma", seed: int = 0,
                    modalities=phantom.MODALITIES, progress: bool = True, workers: int | None = None) -> Path:
    """Folder of phantom volumes, generated if missing (resumes if interrupted): the brain
    phantom in the BraTS layout (``lesion`` ``'glioma'`` or ``'stroke'``; ``workers`` processes,
    see :func:`~pseudohealthy_lib.data.phantom.generate`), or for ``'liver'`` the liver CT
    phantom in the LiTS layout (:mod:`~pseudohealthy_lib.data.phantom_ct`, one process)."""
    subjects = subjects or default_subjects()
    if lesion == "liver":
        out = cache_dir() / f"phantom-ct-v{phantom_ct.VERSION}-seed{seed}"
        phantom_ct.generate(out, subjects, seed, progress=progress)
        return out
    out = cache_dir() / f"phantom-v{phantom.VERSION}-{lesion}-seed{seed}"
    phantom.generate(out, subjects, seed, lesion, modalities, workers=workers, progress=progress)
    return out


def phantom_dataset(subjects: int | None = None, lesion: str = "glioma", seed: int = 0,
                    modality: str = "flair", size: int = 128, progress: bool = True, **prepare_kw) -> Path:
    """Prepared ``.npz`` of the first ``subjects`` phantom subjects, made once and cached. The
    liver CT phantom (``lesion='liver'``) is CT whatever ``modality`` says, windowed for soft
    tissue (W400/L40), every axial slice kept. ``prepare_kw`` go to
    :func:`~pseudohealthy_lib.data.prepared.prepare` (e.g. ``window=(60, 150)``, level and width in
    HU) and name their own cached file."""
    subjects = subjects or default_subjects()
    vols = phantom_volumes(subjects, lesion, seed, progress=progress)
    extra = "".join(f"-{k}{'x'.join(map(str, v)) if isinstance(v, (tuple, list)) else v}"   # e.g. -window60x150
                    for k, v in sorted(prepare_kw.items()))
    if lesion == "liver":
        modality = "ct"
        prepare_kw.setdefault("n_slices", None)
    out = vols.with_name(f"{vols.name}-n{subjects}-{modality}-{size}{extra}.npz")
    if not out.is_file():
        prepare(vols, out, modality=modality, size=size, max_cases=subjects, seed=seed,
                progress=progress, **prepare_kw)
    return out


def training_data(cfg, progress: bool = True):
    """The prepared slices a training config names: its ``data`` file, else the default phantom
    of its ``subjects``, ``data_seed``, ``lesion``, ``modality`` and ``size`` (made and cached on
    first use; ``lesion='liver'``: the liver CT phantom)."""
    from .prepared import load_prepared

    return load_prepared(cfg.data or phantom_dataset(cfg.subjects, cfg.lesion, seed=cfg.data_seed,
                                                     modality=cfg.modality, size=cfg.size, progress=progress))
