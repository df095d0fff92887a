"""A BraTS-like brain MRI phantom built on real anatomy, with a healthy ground truth.

Why a phantom? BraTS and ISLES need registration to download, and no real dataset has what
pseudo-healthy synthesis needs most for evaluation: the *same* patient imaged without the
lesion. The phantom has it by construction, so every chapter can measure how faithfully a
model fills in the lesion, not only how well it leaves healthy tissue alone.

How one subject is made (all random draws come from ``numpy.random.default_rng([seed, i])``,
so subject ``i`` of seed ``s`` is the same voxels however many subjects are asked for):

1. **Anatomy.** The MNI152 (ICBM 2009a) grey- and white-matter probability maps and brain
   mask that nilearn ships, placed in BraTS's 240x240x155 grid at 1 mm. CSF is the rest of
   the brain mask. The maps are warped by a random small affine (rotation, scale, shift) plus
   a smooth random displacement field, so no two subjects have the same shape.
2. **Lesion.** A glioma (necrotic core, enhancing rim, oedema whose spread follows white
   matter, irregular borders from smooth random fields; about one in four is a
   non-enhancing, lower-grade-like tumour whose FLAIR-bright core is label 1) or a stroke-like wedge reaching from the cortex
   inwards. Labels follow BraTS 2018-2021: 1 necrosis / non-enhancing core, 2 oedema,
   4 enhancing tumour (strokes are label 1).
3. **Contrast.** Each modality is a tissue model: image = sum over tissues of probability x
   mean intensity, with subject-specific means, a slow texture field and the lesion mixed in
   with soft (2-voxel) borders. Then a smooth multiplicative bias field and Rician noise.
   The healthy image is made with the *same* anatomy, bias field and noise draws, without
   the lesion. Background outside the brain is 0, as in skull-stripped BraTS.

The lesion changes nothing further than :data:`LESION_MARGIN` voxels from its label mask,
so outside the mask dilated by that margin, image and healthy ground truth are equal voxel
for voxel (a test checks it).

What it is not: there is no skull, no mass effect (the tumour does not push the ventricles),
no infratentorial tumours, and intensities come from a four-class tissue model, not physics.
The book's appendix on the phantom's limits says more.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..utils import DataError, OptionError, at_least, exit_on_sigterm, remove_stale_temps
from .nifti import save_volume

VERSION = 2                      # bump when the generated voxels change (names the cache folders)
SHAPE = (240, 240, 155)          #: BraTS grid, 1 mm isotropic
MODALITIES = ("flair", "t1", "t1ce", "t2")
LESION_MARGIN = 2                #: soft lesion border radius in voxels (see _soft)
INTENSITY_SCALE = 1000.0         # written as int16, white matter of FLAIR ~ 450
BRAIN_BOX = (slice(34, 206), slice(18, 224), slice(0, SHAPE[2]))   # holds every warped brain

# Mean intensity of each class, relative units, per modality.
# Columns: CSF, grey matter, white matter | oedema, necrosis, enhancing rim,
# non-enhancing core (lower-grade-like tumours), stroke
TISSUE = {
    #         CSF   GM    WM     ED    NCR   ET    NET   stroke
    "flair": (0.10, 0.60, 0.45, 1.00, 0.50, 0.85, 0.92, 0.95),
    "t1":    (0.20, 0.55, 0.80, 0.45, 0.25, 0.55, 0.40, 0.38),
    "t1ce":  (0.22, 0.55, 0.76, 0.45, 0.20, 1.25, 0.42, 0.40),
    "t2":    (1.00, 0.62, 0.42, 0.88, 1.05, 0.70, 0.95, 0.90),
}
LESION_CLASSES = ("oedema", "necrosis", "enhancing", "non-enhancing core", "stroke")


@dataclass
class PhantomSubject:
    """One generated subject. Arrays have shape :data:`SHAPE`."""

    subject_id: str
    images: dict[str, np.ndarray]   # modality -> int16 image with lesion
    healthy: dict[str, np.ndarray]  # modality -> int16 image without lesion
    seg: np.ndarray                 # uint8 BraTS labels (0, 1, 2, 4)
    affine: np.ndarray
    tissue: np.ndarray              # (3, X, Y, Z) uint8: warped CSF, GM, WM probability x 255


def subject_id(seed: int, index: int, lesion: str = "glioma") -> str:
    """Case id of a phantom subject, e.g. ``PHG_0000_0003`` (G glioma, S stroke)."""
    return f"PH{'G' if lesion == 'glioma' else 'S'}_{seed:04d}_{index:04d}"


def parse_subject_id(sid: str) -> tuple[int, int, str]:
    """Inverse of :func:`subject_id`: ``(seed, index, lesion)``."""
    kind, seed, index = sid.split("_")
    return int(seed), int(index), {"PHG": "glioma", "PHS": "stroke"}[kind]

@functools.lru_cache(maxsize=1)
def template() -> tuple[np.ndarray, np.ndarray]:
    """MNI152 tissue maps in the BraTS grid: (3, X, Y, Z) float32 [CSF, GM, WM] and the affine."""
    from nilearn import datasets

    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj, np.float32)
    gm, wm = gm * mask, wm * mask
    csf = np.clip(mask - gm - wm, 0, 1)
    maps = np.zeros((3, *SHAPE), np.float32)
    x0, y0 = (SHAPE[0] - gm.shape[0]) // 2, (SHAPE[1] - gm.shape[1]) // 2
    for c, m in enumerate((csf, gm, wm)):
        maps[c, x0:x0 + m.shape[0], y0:y0 + m.shape[1], :] = m[:, :, : SHAPE[2]]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-98 - x0, -134 - y0, -72)   # keeps MNI world coordinates
    return maps, affine


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], coarse: tuple[int, ...]) -> np.ndarray:
    """Smooth random field with unit standard deviation: coarse noise, trilinear upsampling."""
    c = torch.from_numpy(rng.standard_normal(coarse).astype(np.float32))[None, None]
    f = F.interpolate(c, size=shape, mode="trilinear", align_corners=True)[0, 0].numpy()
    return f / (f.std() + 1e-6)


def _warp(maps: np.ndarray, rng: np.random.Generator, box: tuple[slice, ...]) -> np.ndarray:
    """Warp tissue maps (C, X, Y, Z) inside ``box`` by a random affine + smooth displacement."""
    sub = maps[(slice(None), *box)]
    shape = sub.shape[1:]
    ang = np.deg2rad(rng.uniform(-4, 4, 3))
    cx, cy, cz = np.cos(ang)
    sx, sy, sz = np.sin(ang)
    rot = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
           @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
    theta = np.zeros((3, 4))
    theta[:, :3] = rot * rng.uniform(0.93, 1.07, 3)
    theta[:, 3] = rng.uniform(-0.03, 0.03, 3)
    # torch grids address (W, H, D) = (Z, Y, X) of our arrays: permute the maps accordingly
    inp = torch.from_numpy(np.ascontiguousarray(sub))[None]
    grid = F.affine_grid(torch.from_numpy(theta).float()[None], (1, 3, *shape), align_corners=False)
    disp = np.stack([_smooth_field(rng, shape, (4, 5, 4)) for _ in range(3)], -1)
    disp *= 2.5 * 2 / np.array(shape[::-1], np.float32)   # ~2.5 mm in grid units (W, H, D order)
    grid = grid + torch.from_numpy(disp.astype(np.float32))[None]
    out = F.grid_sample(inp, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()
    full = np.zeros_like(maps)
    full[(slice(None), *box)] = out
    return full


def _soft(mask: np.ndarray) -> np.ndarray:
    """Soft version of a binary mask whose support grows by exactly :data:`LESION_MARGIN` voxels."""
    return ndimage.gaussian_filter(mask.astype(np.float32), sigma=1.0, truncate=LESION_MARGIN)


def lesion_support(seg: np.ndarray, margin: int = LESION_MARGIN) -> np.ndarray:
    """Voxels the lesion may change: the label mask dilated by ``margin`` voxels (a cube, i.e.
    Chebyshev distance, matching the separable Gaussian used for soft borders)."""
    return ndimage.binary_dilation(seg > 0, structure=np.ones((3,) * seg.ndim, bool), iterations=margin)


def _lesion_box(center: np.ndarray, radius: int) -> tuple[slice, ...]:
    return tuple(slice(max(int(c) - radius, b.start), min(int(c) + radius, b.stop)) for c, b in zip(center, BRAIN_BOX))


def _glioma(tissue: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[slice, ...]]:
    """BraTS-labelled glioma inside a box. Returns (labels in the box, box)."""
    csf, gm, wm = tissue
    brain = (csf + gm + wm) > 0.5
    zlo, zhi = 50, 115
    cand = np.argwhere((wm[:, :, zlo:zhi] > 0.7) & brain[:, :, zlo:zhi])
    center = cand[rng.integers(len(cand))] + (0, 0, zlo)
    r_ed = rng.uniform(12, 26)                       # oedema extent (mm)
    r_core = r_ed * rng.uniform(0.5, 0.8)
    enhancing = rng.random() > 0.25                  # else a non-enhancing, LGG-like tumour
    r_nec = r_core * rng.uniform(0.3, 0.65)
    reach = int(r_ed * 2) + 2 * LESION_MARGIN + 2
    box = _lesion_box(center, reach)
    grids = np.meshgrid(*[np.arange(s.start, s.stop) - c for s, c in zip(box, center)], indexing="ij")
    dist = np.sqrt(sum(g.astype(np.float32) ** 2 for g in grids))
    bshape = dist.shape

    def bumpy(r, amp, sigma):
        noise = ndimage.gaussian_filter(rng.standard_normal(bshape).astype(np.float32), sigma)
        return dist / r * (1 + amp * noise / (noise.std() + 1e-6))

    tissue_box = (gm[box] + wm[box]) > 0.5
    core = (bumpy(r_core, 0.18, 4) < 1) & tissue_box
    core = ndimage.binary_opening(core, iterations=1)
    # oedema spreads further where white matter is: its radius grows with the WM probability
    ed = (bumpy(r_ed, 0.25, 5) * (1.35 - 0.7 * wm[box]) < 1) & tissue_box & (dist < reach - 2 * LESION_MARGIN)
    labels = np.zeros(bshape, np.uint8)
    labels[ed] = 2
    if enhancing:
        nec = (bumpy(r_nec, 0.2, 3) < 1) & core
        labels[core] = 4
        labels[nec] = 1
    else:
        labels[core] = 3            # internal code for a non-enhancing core; written as BraTS label 1
    # keep only the connected component at the centre (no floating islands)
    comp, _ = ndimage.label(labels > 0)
    keep = comp[tuple(np.array(center) - [s.start for s in box])]
    if keep > 0:
        labels[comp != keep] = 0
    return labels, box


def _stroke(tissue: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Stroke-like lesion: a wedge from the cortical surface inwards, in one hemisphere."""
    csf, gm, wm = tissue
    brain = (csf + gm + wm) > 0.5
    inner = ndimage.binary_erosion(brain[:, :, 45:120], iterations=4)
    surface = brain[:, :, 45:120] & ~inner & (gm[:, :, 45:120] > 0.4)
    cand = np.argwhere(surface) + (0, 0, 45)
    start = cand[rng.integers(len(cand))].astype(np.float32)
    centroid = np.argwhere(brain[::4, ::4, ::4]).mean(0) * 4
    axis = centroid - start
    axis /= np.linalg.norm(axis)
    depth = rng.uniform(18, 40)
    half_angle = np.deg2rad(rng.uniform(18, 35))
    mid = start + axis * depth / 2
    box = _lesion_box(mid, int(depth) + 6)
    grids = np.stack(np.meshgrid(*[np.arange(s.start, s.stop) - c for s, c in zip(box, start)], indexing="ij"), -1)
    along = grids @ axis
    across = np.linalg.norm(grids - along[..., None] * axis, axis=-1)
    noise = ndimage.gaussian_filter(rng.standard_normal(along.shape).astype(np.float32), 4)
    noise /= noise.std() + 1e-6
    wedge = (along > -2) & (along < depth * (1 + 0.15 * noise)) & (across < (along + 4) * np.tan(half_angle) * (1 + 0.2 * noise))
    labels = (wedge & ((gm[box] + wm[box]) > 0.5)).astype(np.uint8)
    return labels, box


def check_options(seed: int, lesion: str, modalities) -> None:
    """Raise :class:`~pseudohealthy_lib.utils.OptionError` for a negative seed, an unknown lesion
    type or modality, or no modality at all."""
    at_least(seed, "seed", 0)
    if lesion not in ("glioma", "stroke"):
        raise OptionError(f"unknown lesion type '{lesion}'; choose 'glioma' or 'stroke'")
    if isinstance(modalities, str) or not modalities:
        raise OptionError(f"modalities must be a non-empty list such as {list(MODALITIES)}, got {modalities!r}")
    for m in modalities:
        if m not in TISSUE:
            raise OptionError(f"unknown modality '{m}'; choose from {MODALITIES}")


def make_subject(seed: int, index: int, lesion: str = "glioma", modalities=MODALITIES) -> PhantomSubject:
    """Generate subject ``index`` of dataset ``seed`` (deterministic)."""
    check_options(seed, lesion, modalities)
    rng = np.random.default_rng([seed, index, 0 if lesion == "glioma" else 1])
    maps, affine = template()
    tissue = _warp(maps, rng, BRAIN_BOX)                        # (3, X, Y, Z): CSF, GM, WM
    brain = tissue.sum(0) > 0.5
    labels_box, box = (_glioma if lesion == "glioma" else _stroke)(tissue, rng)
    labels_box = labels_box * brain[box]
    seg = np.zeros(SHAPE, np.uint8)
    seg[box] = labels_box

    # lesion classes as soft weights, in the order of LESION_CLASSES (inside the box only)
    codes = (2, 1, 4, 3, None) if lesion == "glioma" else (None, None, None, None, 1)
    soft = [(_soft(labels_box == c) * brain[box]) if c is not None and (labels_box == c).any() else None for c in codes]
    total = np.clip(sum(s for s in soft if s is not None), 0, 1)
    seg[seg == 3] = 1                                        # BraTS: non-enhancing core is label 1

    # all intensity work happens on the brain voxels of the brain box only (flat arrays)
    b = BRAIN_BOX
    bshape = tissue[(0, *b)].shape
    in_brain = brain[b]
    tis = tissue[(slice(None), *b)][:, in_brain]                               # (3, Nb)
    texture = np.exp(0.05 * _smooth_field(rng, bshape, (12, 14, 10)))[in_brain]
    bias = np.exp(0.12 * _smooth_field(rng, bshape, (3, 3, 3)))[in_brain]
    inner = tuple(slice(s.start - bb.start, s.stop - bb.start) for s, bb in zip(box, b))
    weights = np.zeros((len(soft) + 1, *bshape), np.float32)                    # [total, classes...]
    weights[(0, *inner)] = total
    for k, w in enumerate(soft):
        if w is not None:
            weights[(k + 1, *inner)] = w
    weights = weights[:, in_brain]
    les = weights[0] > 0
    les_w = weights[1:, les]
    les_tex = np.exp(0.08 * _smooth_field(rng, bshape, (20, 24, 18)))[in_brain][les]
    sigma_rel = rng.uniform(0.015, 0.035)
    noise = rng.standard_normal((2, tis.shape[1]), dtype=np.float32)

    images, healthy = {}, {}
    for m in modalities:
        mu = (np.array(TISSUE[m]) * rng.uniform(0.94, 1.06, len(TISSUE[m]))).astype(np.float32)
        clean = (mu[:3] @ tis) * texture
        lesion_mu = mu[3:]                                                      # LESION_CLASSES
        with_lesion = clean.copy()
        mix = (lesion_mu[:, None] * les_w).sum(0) * les_tex * texture[les]
        with_lesion[les] = clean[les] * (1 - weights[0, les]) + mix
        sigma = sigma_rel * mu[2]
        for out, img in ((healthy, clean), (images, with_lesion)):
            img = img * bias
            img = np.sqrt((img + sigma * noise[0]) ** 2 + (sigma * noise[1]) ** 2)   # Rician noise
            vol = np.zeros(SHAPE, np.int16)
            view = vol[b]
            view[in_brain] = np.rint(img * INTENSITY_SCALE).astype(np.int16)
            out[m] = vol
    tissue8 = np.rint(np.clip(tissue, 0, 1) * 255).astype(np.uint8)
    return PhantomSubject(subject_id(seed, index, lesion), images, healthy, seg, affine, tissue8)


def write_subject(subj: PhantomSubject, out: str | Path) -> Path:
    """Write one subject in the BraTS 2018-2021 layout, healthy ground truth beside each image."""
    d = Path(out) / subj.subject_id
    for m, vol in subj.images.items():
        save_volume(vol, subj.affine, d / f"{subj.subject_id}_{m}.nii.gz")
        save_volume(subj.healthy[m], subj.affine, d / f"{subj.subject_id}_{m}_healthy.nii.gz")
    save_volume(subj.seg, subj.affine, d / f"{subj.subject_id}_seg.nii.gz")
    return d


def _one(args) -> str:
    seed, i, lesion, modalities, out = args
    return write_subject(make_subject(seed, i, lesion, modalities), out).name


def _worker(parent: int, jobs: list, conn) -> None:
    """One worker process of :func:`generate`: write ``jobs`` one by one, sending ``None`` after
    each (or the error's text, then stop). It uses one torch thread, runs its clean-up when
    terminated (SIGTERM), and exits as soon as the parent process is gone."""
    torch.set_num_threads(1)
    exit_on_sigterm()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
    for job in jobs:
        try:
            _one(job)
        except Exception as e:                  # noqa: BLE001 -- reported to the parent, which raises it
            conn.send(f"{type(e).__name__}: {e}")
            return
        conn.send(None)


def _run_workers(todo: list, workers: int, bar) -> None:
    """Share ``todo`` among ``workers`` processes, advancing ``bar`` as subjects are written.

    Plain processes, each with its own share and pipe, rather than a ``multiprocessing.Pool``:
    a pool's handler threads can start new workers while the parent is being stopped, so a
    killed ``generate`` could wait for them forever. Here, whatever ends the loop (an error, a
    signal, a worker that died) terminates every worker and waits for it before leaving.
    """
    import multiprocessing as mp
    from multiprocessing.connection import wait

    procs, left = [], {}                        # left: a worker's pipe -> [process, subjects it still owes]
    try:
        for k in range(workers):
            recv, send = mp.Pipe(duplex=False)
            share = todo[k::workers]
            p = mp.Process(target=_worker, args=(os.getpid(), share, send), daemon=True)
            procs.append(p)
            p.start()
            send.close()
            left[recv] = [p, len(share)]
        while left:
            for conn in wait(list(left)):
                p, n = left[conn]
                try:
                    msg = conn.recv()
                except EOFError:                # the worker is gone before finishing its share
                    p.join()
                    raise RuntimeError(f"phantom worker {p.name} stopped (exit code {p.exitcode}) "
                                       f"with {n} subject(s) not written") from None
                if msg is not None:
                    raise RuntimeError(f"phantom worker {p.name} failed: {msg}")
                bar.update()
                left[conn][1] = n - 1
                if n == 1:
                    del left[conn]
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()                   # SIGTERM: the worker removes its temporary files
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()


def output_folder(out: str | Path) -> Path:
    """``out`` created as a folder; :class:`~pseudohealthy_lib.utils.DataError` if a file is in the way.

    Temporary files that a killed run left there are removed.
    """
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists() and not p.is_dir():
            raise DataError(f"{p}: is a file; the output must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=True)
    return out


def generate(out: str | Path, subjects: int, seed: int = 0, lesion: str = "glioma",
             modalities=MODALITIES, workers: int | None = None, progress: bool = True) -> list[str]:
    """Write ``subjects`` phantom subjects to ``out`` in the BraTS layout; returns their ids.

    Subjects already on disk (all files present) are kept, so an interrupted run resumes and
    gives the same voxels as an uninterrupted one. ``workers`` processes share the work
    (default: the number of CPU cores, at most 4); they stop when ``generate`` is stopped.
    """
    from tqdm.auto import tqdm

    at_least(subjects, "subjects")
    check_options(seed, lesion, modalities)
    if workers is not None:
        at_least(workers, "workers")
    out = output_folder(out)
    todo, ids = [], []
    for i in range(subjects):
        sid = subject_id(seed, i, lesion)
        ids.append(sid)
        files = [out / sid / f"{sid}_{m}{h}.nii.gz" for m in modalities for h in ("", "_healthy")] + [out / sid / f"{sid}_seg.nii.gz"]
        if not all(f.is_file() for f in files):
            todo.append((seed, i, lesion, tuple(modalities), out))
    workers = workers or min(os.cpu_count() or 1, 4)
    t0 = time.perf_counter()
    bar = tqdm(total=len(todo), desc=f"phantom ({lesion})", unit="subject", disable=not progress or not todo)
    if workers <= 1 or len(todo) <= 1:
        for a in todo:
            _one(a)
            bar.update()
    else:
        _run_workers(todo, min(workers, len(todo)), bar)
    bar.close()
    generate.last_seconds = time.perf_counter() - t0
    return ids
