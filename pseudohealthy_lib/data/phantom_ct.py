"""A LiTS-like liver CT phantom: an abdomen at liver level with hypodense tumours, and its
healthy ground truth.

The brain phantom (:mod:`.phantom`) gives the MRI chapters a lesion-free twin of every
subject; this module does the same for CT. It writes the LiTS release layout
(``volume-N.nii.gz``, ``segmentation-N.nii.gz`` with 0 background, 1 liver, 2 tumour) and adds
``healthy-N.nii.gz``: the same scan without the tumours.

How one case is made (all random draws come from ``numpy.random.default_rng([seed, index])``,
so case ``index`` of seed ``seed`` is the same voxels however many cases are asked for):

1. **Anatomy.** A tissue-label volume is painted back to front from superellipses whose
   centres, radii and outline wobble (a few Fourier modes of the polar angle) vary smoothly
   with z, with per-case random sizes and positions: air, a curved scanner table, an
   elliptical body with skin, subcutaneous fat and a muscle wall, a peritoneal cavity of fat
   with bowel loops (enhancing wall, fluid or gas inside), the stomach (gas above fluid: the
   patient lies supine), the liver (right lobe and a left lobe that tapers away inferiorly)
   with its enhancing vessels, the spleen, both kidneys in perirenal fat (cortex brighter
   than the medullary pyramids, sinus fat and collecting system at the hilum), the aorta and
   inferior vena cava in front of the spine, a vertebra (cancellous bone in a cortical rim,
   intervertebral discs and end plates every ~32 mm, spinal canal with cord, neural arch,
   spinous and transverse processes), paraspinal, quadratus and psoas muscles, and rib
   cross-sections that slide along the wall from slice to slice as oblique ribs do.
2. **Contrast.** Portal venous phase, the phase most LiTS scans were taken in. Each tissue's
   HU value is drawn per case from :data:`HU_RANGES` (liver 95-110 HU) and a smooth random
   texture is added (:data:`TEXTURE_HU`).
3. **Tumours.** One to four hypodense (20-45 HU) roundish tumours with irregular outlines,
   inside the liver label: the first (dominant) one has a radius of 10-25 mm, the others
   4-18 mm; about half have a slightly brighter (+15-30 HU) enhancing rim. Label 2, the rest
   of the liver label 1. Tumours replace liver tissue, vessels included.
4. **Scanner.** Partial-volume blur (a Gaussian of :data:`PV_SIGMA` voxels cut at
   :data:`PV_RADIUS`), then Gaussian noise with a standard deviation of 10-20 HU per case,
   slightly correlated in-plane like CT noise. The healthy image gets the *same* blur and
   the *same* noise draws. Values are clipped to [-1024, 3071] HU and stored as int16.

The tumours change nothing further than :data:`LESION_MARGIN` voxels from their label mask,
so outside :func:`lesion_support` the volume and the healthy ground truth are equal voxel for
voxel, noise included (a test checks it).

Orientation: the affine is diagonal with the voxel spacing, so ``nib.aff2axcodes`` gives
``('R', 'A', 'S')``: array axis 0 points to the patient's right, axis 1 anterior, axis 2
superior. The liver (patient's right) is therefore at *high* x index, the spleen at low x
index, the spine at low y index. ``preprocess.axial_slices(volume)`` shows slices in the
radiological convention (patient's right on the image's left, anterior up).

The patient is an adult of fixed physical size (about 30-35 cm wide): ``shape`` and
``spacing`` only set the field of view, centred on the body. The default 256 x 256 x 48
voxels of 1.5 x 1.5 x 2.5 mm cover 384 x 384 x 120 mm; a smaller field of view crops the
body, so for small test volumes pass a coarser ``spacing`` (e.g. 4 mm in-plane).

What it is not: no lungs or heart (the slab is below the dome), no gallbladder, pancreas,
adrenals, diaphragmatic crura, portal vein trunk or mesenteric vessels; bowel loops are blobs
of a random field, not tubes; no beam-hardening, streaks or other artefacts, no mass effect,
and HU values come from a label map, not from attenuation physics. Tumours are only
hypodense (no hyperenhancing HCC in arterial phase, no calcified metastases), and the liver
label includes its intrahepatic vessels but not the IVC, as in LiTS.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..utils import OptionError, at_least
from .nifti import save_volume
from .phantom import lesion_support as brain_lesion_support
from .phantom import output_folder

VERSION = 1                     #: bump when the generated voxels change (names the cache folders)
SHAPE = (256, 256, 48)          # voxels (x: right, y: anterior, z: superior)
SPACING = (1.5, 1.5, 2.5)       # mm, a typical LiTS resolution
LESION_MARGIN = 2               #: how far, in voxels, the tumour may change the image (PV blur radius)
PV_SIGMA = (0.6, 0.6, 0.4)      #: partial-volume blur of the whole image (Gaussian sigma in voxels)
PV_RADIUS = (2, 2, 1)           #: the blur kernel is cut here, in voxels (never above LESION_MARGIN)
NOISE_SIGMA = (10.0, 20.0)      # HU: standard deviation of the noise, drawn per case
HU_MIN, HU_MAX = -1024, 3071    # range of a 12-bit CT scanner

#: Portal venous phase, HU value of each tissue drawn uniformly per case from this range.
HU_RANGES = {
    "air": (-1000, -1000),
    "table_shell": (100, 200),
    "table_core": (-350, -250),
    "skin": (20, 40),
    "fat": (-110, -90),
    "muscle": (45, 60),
    "bowel": (5, 30),
    "bowel_wall": (60, 90),
    "gas": (-1000, -990),
    "stomach_wall": (50, 70),
    "fluid": (5, 20),
    "liver": (95, 110),
    "liver_vessel": (150, 175),
    "spleen": (105, 120),
    "kidney_cortex": (170, 200),
    "kidney_medulla": (110, 140),
    "aorta": (150, 190),
    "ivc": (115, 140),
    "cancellous": (220, 280),
    "cortical": (700, 950),
    "disc": (80, 100),
    "csf": (5, 15),
    "cord": (30, 40),
}
TISSUES = tuple(HU_RANGES)
ID = {name: i for i, name in enumerate(TISSUES)}
#: amplitude (HU) of the smooth random texture added to each tissue
TEXTURE_HU = {"fat": 6.0, "muscle": 5.0, "bowel": 12.0, "liver": 4.0, "spleen": 4.0,
              "kidney_medulla": 6.0, "cancellous": 35.0, "fluid": 4.0}
TUMOUR_HU = (20.0, 45.0)        # core, drawn per tumour
TUMOUR_RIM_HU = (15.0, 30.0)    # rim enhancement above the core, about half of the tumours
TUMOUR_RADIUS = ((10.0, 25.0), (4.0, 18.0))   # mm: dominant tumour, satellites
LABEL_LIVER, LABEL_TUMOUR = 1, 2


@dataclass
class CTCase:
    """One generated case. Arrays have the shape asked for (x, y, z), RAS orientation."""

    case_id: str                # the LiTS case number, e.g. "0"
    volume: np.ndarray          # int16 HU, with tumours
    healthy: np.ndarray         # int16 HU, same scan without tumours
    seg: np.ndarray             # uint8 LiTS labels: 0 background, 1 liver, 2 tumour
    affine: np.ndarray


def lesion_support(seg: np.ndarray, margin: int = LESION_MARGIN) -> np.ndarray:
    """Voxels the tumours may change: the tumour label (2) dilated by ``margin`` voxels with a
    full 3x3x3 structuring element (Chebyshev distance, which contains the blur kernel)."""
    return brain_lesion_support(seg == LABEL_TUMOUR, margin)


# ----------------------------------------------------------------------------------------
# smooth random functions


class _Field:
    """Smooth random field of unit variance: Gaussian bumps with N(0, 1) weights on a regular
    grid of ``length`` mm covering ``lo``..``hi`` (mm). Evaluated separably on any sub-grid."""

    def __init__(self, rng: np.random.Generator, lo, hi, length: float):
        self.width = 0.7 * length
        self.centres = [np.arange(a - 2 * length, b + 2 * length + 1e-3, length, dtype=np.float32)
                        for a, b in zip(lo, hi)]
        self.coef = rng.standard_normal(tuple(len(c) for c in self.centres)).astype(np.float32)
        # sum of squared bumps along one axis is about sqrt(pi) * width / length
        self.norm = float((np.sqrt(np.pi) * self.width / length) ** -1.5)

    def __call__(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        mats, keep = [], []
        for pts, c in zip((x, y, z), self.centres):
            w = np.exp(-0.5 * ((np.asarray(pts, np.float32)[:, None] - c[None]) / self.width) ** 2)
            used = np.flatnonzero(w.max(0) > 1e-4)
            if used.size == 0:
                return np.zeros((len(x), len(y), len(z)), np.float32)
            used = slice(used[0], used[-1] + 1)
            mats.append(w[:, used].astype(np.float32))
            keep.append(used)
        c = self.coef[tuple(keep)]
        c = np.tensordot(c, mats[2], axes=([2], [1]))                      # (a, b, Z)
        c = np.tensordot(mats[1], c, axes=([1], [1]))                      # (Y, a, Z)
        c = np.tensordot(mats[0], c, axes=([1], [1]))                      # (X, Y, Z)
        return c * np.float32(self.norm)


def _drift(rng: np.random.Generator, amp: float):
    """Smooth function of z (mm) with values of about +-amp: linear, quadratic and a slow wave."""
    a, b, c = rng.uniform(-1, 1, 3)
    ph = rng.uniform(0, 2 * np.pi)

    def f(z):
        zn = np.asarray(z, np.float64) / 100.0
        return amp * (a * zn + 0.5 * b * zn ** 2 + 0.4 * c * np.sin(2.5 * zn + ph))
    return f


def _wobble(rng: np.random.Generator, amp: float, kmax: int = 5):
    """Smoothly z-varying Fourier coefficients (modes 2..kmax) of a relative radius change."""
    k = np.arange(2, kmax + 1, dtype=np.float64)
    base = rng.standard_normal((len(k), 2)) * (amp / k ** 1.3)[:, None]
    slope = rng.standard_normal((len(k), 2)) * (0.5 * amp / k ** 1.3)[:, None]
    ph = rng.uniform(0, 2 * np.pi, (len(k), 2))

    def f(z):
        zn = np.asarray(z, np.float64)[None, None] / 100.0
        return base[..., None] + slope[..., None] * np.sin(1.5 * zn + ph[..., None])   # (K, 2, nz)
    return f


def _profile(z, zc: float, half: float):
    """Size factor of an organ along z: 1 at ``zc``, 0 beyond ``half`` mm (an ellipsoid cap)."""
    return np.sqrt(np.clip(1.0 - ((np.asarray(z, np.float64) - zc) / half) ** 2, 0.0, None))


# ----------------------------------------------------------------------------------------
# painting


class _Canvas:
    """The tissue-label volume and its mm coordinates (origin at the field-of-view centre)."""

    def __init__(self, shape, spacing):
        self.shape, self.spacing = tuple(shape), tuple(float(s) for s in spacing)
        self.x, self.y, self.z = [((np.arange(n) - (n - 1) / 2) * s).astype(np.float32)
                                  for n, s in zip(self.shape, self.spacing)]
        self.lab = np.zeros(self.shape, np.uint8)   # 0 = air

    def box(self, x0, x1, y0, y1):
        """Voxel slices covering the mm rectangle (all slices in z); None if outside the view."""
        sx, sy = self.spacing[:2]
        i0 = max(int(np.floor(x0 / sx + (self.shape[0] - 1) / 2)), 0)
        i1 = min(int(np.ceil(x1 / sx + (self.shape[0] - 1) / 2)) + 1, self.shape[0])
        j0 = max(int(np.floor(y0 / sy + (self.shape[1] - 1) / 2)), 0)
        j1 = min(int(np.ceil(y1 / sy + (self.shape[1] - 1) / 2)) + 1, self.shape[1])
        if i0 >= i1 or j0 >= j1:
            return None
        return slice(i0, i1), slice(j0, j1), slice(None)

    def blob(self, cx, cy, rx, ry, p=2.0, rot=0.0, wob=None, box=None):
        """Level function of a superellipse (< 1 inside) in a box, per slice parameters.

        ``cx, cy, rot`` are scalars or arrays over z; ``rx``/``ry`` scalars, arrays, or pairs
        (towards +, towards -) for asymmetric shapes; ``wob`` are Fourier coefficients
        (K, 2, nz) of a relative outline perturbation. Returns (box, level) or (None, None).
        """
        nz = self.shape[2]

        def col(v):
            return np.broadcast_to(np.asarray(v, np.float64), (nz,)).astype(np.float32)[None, None]

        rxp, rxn = (rx if isinstance(rx, tuple) else (rx, rx))
        ryp, ryn = (ry if isinstance(ry, tuple) else (ry, ry))
        cx, cy, rot = col(cx), col(cy), col(rot)
        rxp, rxn, ryp, ryn = (np.maximum(col(r), 1e-3) for r in (rxp, rxn, ryp, ryn))
        grow = 1.0 if wob is None else 1.0 + float(np.abs(wob).sum(axis=(0, 1)).max())
        if box is None:
            reach = grow * np.maximum(np.maximum(rxp, rxn), np.maximum(ryp, ryn)) + 2 * max(self.spacing[:2])
            active = reach > 0.01 + 2 * max(self.spacing[:2])
            if not active.any():
                return None, None
            box = self.box(float((cx - reach)[active].min()), float((cx + reach)[active].max()),
                           float((cy - reach)[active].min()), float((cy + reach)[active].max()))
            if box is None:
                return None, None
        gx = self.x[box[0]][:, None, None]
        gy = self.y[box[1]][None, :, None]
        dx, dy = gx - cx, gy - cy
        if np.any(rot != 0):
            c, s = np.cos(rot), np.sin(rot)
            dx, dy = c * dx + s * dy, -s * dx + c * dy
        ax = np.abs(dx) / np.where(dx >= 0, rxp, rxn)
        ay = np.abs(dy) / np.where(dy >= 0, ryp, ryn)
        if p == 2.0:
            u = np.sqrt(ax * ax + ay * ay)
        else:
            p = np.float32(p)
            u = (ax ** p + ay ** p) ** (1 / p)
        if wob is not None:
            r = np.sqrt(dx * dx + dy * dy) + np.float32(1e-6)
            c1, s1 = dx / r, dy / r
            ck, sk = c1 * c1 - s1 * s1, 2 * s1 * c1        # mode 2
            pert = np.zeros_like(u)
            w = np.asarray(wob, np.float32)
            for k in range(w.shape[0]):
                pert += w[k, 0][None, None] * ck + w[k, 1][None, None] * sk
                ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
            u = u / (1 + pert)
        return box, u.astype(np.float32, copy=False)

    def paint(self, box, mask, tissue: str):
        if box is not None:
            self.lab[box][mask] = ID[tissue]

    def bone(self, box, u, rmin, cortex_mm=1.8, where=None):
        """Paint a bone: cancellous inside a cortical rim ``cortex_mm`` thick (level units)."""
        if box is None:
            return
        rim = 1.0 - cortex_mm / np.maximum(np.asarray(rmin, np.float32), cortex_mm * 1.5)
        inside = u < 1
        if where is not None:
            inside &= where
        self.paint(box, inside, "cortical")
        self.paint(box, inside & (u < rim), "cancellous")


class _Concentric:
    """Superellipses sharing a centre (per slice) and exponent, over the whole grid, fast:
    |dx|^p and |dy|^p are separable, and the outline wobble is looked up by polar angle."""

    N_ANGLES = 360

    def __init__(self, cv: _Canvas, cx, cy, p: float):
        self.p = np.float32(p)
        self.dx = cv.x[:, None] - np.asarray(cx, np.float32)[None]                 # (X, Z)
        self.dy = cv.y[:, None] - np.asarray(cy, np.float32)[None]                 # (Y, Z)
        self.pdx, self.pdy = np.abs(self.dx) ** self.p, np.abs(self.dy) ** self.p
        theta = np.arctan2(self.dy[None], self.dx[:, None])                       # (X, Y, Z)
        bins = ((theta * np.float32(0.5 / np.pi) + np.float32(0.5)) * self.N_ANGLES).astype(np.int32)
        np.minimum(bins, self.N_ANGLES - 1, out=bins)
        nz = cv.shape[2]
        self.flat = bins * nz + np.arange(nz, dtype=np.int32)[None, None]
        self.angles = ((np.arange(self.N_ANGLES) + 0.5) / self.N_ANGLES - 0.5) * 2 * np.pi

    def inside(self, rx, ry, wob=None, shrink=0.0) -> np.ndarray:
        """Mask of the superellipse with radii ``rx``/``ry`` (pairs: towards +, towards -),
        outline wobble ``wob`` (K, 2, nz) and the outline pulled in by the fraction ``shrink``."""
        rxp, rxn = rx if isinstance(rx, tuple) else (rx, rx)
        ryp, ryn = ry if isinstance(ry, tuple) else (ry, ry)
        ax = self.pdx / np.where(self.dx >= 0, np.asarray(rxp, np.float32), np.asarray(rxn, np.float32)) ** self.p
        ay = self.pdy / np.where(self.dy >= 0, np.asarray(ryp, np.float32), np.asarray(ryn, np.float32)) ** self.p
        pert = np.zeros((self.N_ANGLES, self.dx.shape[1]))
        if wob is not None:
            for k in range(wob.shape[0]):
                pert += (np.cos((k + 2) * self.angles)[:, None] * wob[k, 0][None]
                         + np.sin((k + 2) * self.angles)[:, None] * wob[k, 1][None])
        thr = (((1 + pert) * (1 - np.asarray(shrink))) ** float(self.p)).astype(np.float32)
        return (ax[:, None, :] + ay[None, :, :]) < np.take(thr.ravel(), self.flat)


def _ellipse_point(cx, cy, rx, ry_pos, ry_neg, theta):
    """Point at polar angle ``theta`` on an ellipse with different anterior/posterior radii."""
    s = np.sin(theta)
    return cx + rx * np.cos(theta), cy + np.where(s >= 0, ry_pos, ry_neg) * s


def _anatomy(cv: _Canvas, rng: np.random.Generator) -> None:
    """Paint the healthy abdomen into ``cv.lab``."""
    z = cv.z.astype(np.float64)
    U = rng.uniform
    deg = np.pi / 180

    # --- body: lean core (muscle outer surface) plus subcutaneous fat
    adip = U(0, 1)
    am = U(125, 145) * (1 + _drift(rng, 0.03)(z))               # muscle-outer half width
    bm_a = U(80, 95) * (1 + _drift(rng, 0.03)(z))
    bm_p = U(85, 100) * (1 + _drift(rng, 0.02)(z))
    bx = U(-8, 8) + _drift(rng, 4)(z)
    by = U(-12, 2) + _drift(rng, 3)(z)
    f_a, f_l, f_p = (lo + adip * (hi - lo) + U(-3, 3) for lo, hi in ((8, 35), (8, 30), (6, 18)))
    m_a, m_l, m_p = U(7, 12), U(9, 15), U(12, 18)
    p_body = U(2.1, 2.5)
    wob_body = _wobble(rng, 0.015)(z)
    wob_musc = _wobble(rng, 0.02)(z)
    wob_cav = _wobble(rng, 0.03)(z)

    layers = _Concentric(cv, bx, by, p_body)
    body = layers.inside(am + f_l, (bm_a + f_a, bm_p + f_p), wob_body)

    # --- table (constant along z): curved plate under the back, the patient lies on it
    gap, k_curve, thick = U(0, 2), U(4e-4, 7e-4), U(12, 18)
    rows = np.flatnonzero(body.any(axis=(0, 2)))
    y_back = float(cv.y[rows[0]]) if rows.size else float(np.min(by - bm_p - f_p))
    top = y_back - gap - 0.5 * cv.spacing[1] + k_curve * (cv.x[:, None] - float(bx.mean())) ** 2   # (X, 1)
    yy = cv.y[None, :]
    plate = (yy < top) & (yy > top - thick) & (np.abs(cv.x[:, None]) < 220)
    shell = plate & ((yy > top - 3.5) | (yy < top - thick + 3.5))
    cv.lab[plate] = ID["table_core"]
    cv.lab[shell] = ID["table_shell"]
    cv.lab[body] = ID["skin"]
    cv.lab[layers.inside(am + f_l, (bm_a + f_a, bm_p + f_p), wob_body, 2.0 / (bm_p + f_p))] = ID["fat"]
    muscle_outer = layers.inside(am, (bm_a, bm_p), wob_musc)
    cv.lab[muscle_outer] = ID["muscle"]
    cavity = layers.inside(am - m_l, (bm_a - m_a, bm_p - m_p), wob_cav)
    cav_in = layers.inside(am - m_l, (bm_a - m_a, bm_p - m_p), wob_cav, 0.025)
    cv.lab[cavity] = ID["fat"]
    del layers

    sx, sy = am / 135.0, (bm_a + bm_p) / 180.0                    # body scale factors (over z)
    # spine position (everything retroperitoneal is placed relative to it)
    xv = bx + U(-4, 4)
    yv = by - bm_p + U(64, 72) * sy

    # --- bowel loops and gas (the organs painted later cover most of them)
    lo = (float(cv.x[0]), float(cv.y[0]), float(cv.z[0]))
    hi = (float(cv.x[-1]), float(cv.y[-1]), float(cv.z[-1]))
    f_bowel = _Field(rng, lo, hi, U(14, 18))
    f_gas = _Field(rng, lo, hi, U(8, 12))
    tau_b, tau_g = U(0.3, 0.7), U(0.6, 1.2)
    cbox = cv.box(float((bx - am).min()), float((bx + am).max()), float((by - bm_p).min()), float((by + bm_a).max()))
    if cbox is not None:
        xs, ys = cv.x[cbox[0]], cv.y[cbox[1]]
        fb = f_bowel(xs, ys, cv.z)
        # no loops behind the front of the spine (retroperitoneum): the threshold rises there
        fb -= np.clip(((yv + 25)[None, None] - ys[None, :, None]) / 30.0, 0, None).astype(np.float32)
        bowel = cavity[cbox] & (fb > tau_b)
        cv.paint(cbox, bowel, "bowel_wall")                   # enhancing wall around each loop
        lumen = bowel & (fb > tau_b + 0.25)
        cv.paint(cbox, lumen, "bowel")
        cv.paint(cbox, lumen & (f_gas(xs, ys, cv.z) > tau_g), "gas")

    # --- stomach (left anterior, upper slices): wall, fluid, gas on top (patient supine)
    prof = _profile(z, U(30, 70), U(70, 100))
    st_cx = bx - U(0.3, 0.45) * am + _drift(rng, 6)(z)
    st_cy = by + U(0.15, 0.35) * bm_a + _drift(rng, 5)(z)
    st_rx, st_ry = U(32, 48) * sx * prof, U(25, 38) * sy * prof
    box, u = cv.blob(st_cx, st_cy, st_rx, st_ry, 2.0, U(-30, 30) * deg, _wobble(rng, 0.06)(z))
    if box is not None:
        inside = (u < 1) & cav_in[box]
        cv.paint(box, inside, "stomach_wall")
        lumen = inside & (u < 1 - 4.0 / np.maximum(np.minimum(st_rx, st_ry), 6.0)[None, None].astype(np.float32))
        cv.paint(box, lumen, "fluid")
        if U() < 0.75:
            level = st_cy + U(0.0, 0.6) * st_ry
            cv.paint(box, lumen & (cv.y[box[1]][None, :, None] > level[None, None]), "gas")

    # --- liver: right lobe filling the right upper abdomen, left lobe anterior, tapering
    prof_r = _profile(z, U(10, 35), U(110, 140))
    prof_l = _profile(z, U(25, 50), U(60, 90))
    lv_cx = bx + U(0.36, 0.44) * am + (1 - prof_r) * 0.3 * am + _drift(rng, 5)(z)
    lv_cy = by + U(-0.05, 0.08) * bm_a + _drift(rng, 5)(z)
    box, u_r = cv.blob(lv_cx, lv_cy, (0.8 * am * prof_r, U(0.45, 0.55) * am * prof_r),
                       (0.95 * bm_a * prof_r, U(0.55, 0.65) * bm_p * prof_r), 2.0,
                       U(-10, 10) * deg, _wobble(rng, 0.05)(z))
    ll_args = (bx + U(-0.15, 0.0) * am + _drift(rng, 5)(z), by + U(0.4, 0.5) * bm_a + _drift(rng, 4)(z),
               (0.4 * am * prof_l, U(0.25, 0.45) * am * prof_l), U(0.25, 0.35) * bm_a * prof_l,
               2.0, U(-15, 5) * deg, _wobble(rng, 0.06)(z))
    vessel_fields = [_Field(rng, lo, hi, U(22, 30)) for _ in range(2)]
    vessel_w = U(0.2, 0.26)
    if box is not None:
        cv.paint(box, (u_r < 1) & cav_in[box], "liver")
    box_l, u_l = cv.blob(*ll_args)
    if box_l is not None:
        cv.paint(box_l, (u_l < 1) & cav_in[box_l], "liver")
    liver = cv.lab == ID["liver"]
    lbox = _bbox(liver)
    if lbox is not None:
        xs, ys, zs = cv.x[lbox[0]], cv.y[lbox[1]], cv.z[lbox[2]]
        g1, g2 = (f(xs, ys, zs) for f in vessel_fields)
        core = ndimage.binary_erosion(liver[lbox], iterations=2)
        cv.paint(lbox, core & (g1 * g1 + g2 * g2 < vessel_w ** 2), "liver_vessel")

    # --- spleen: crescent along the left posterolateral wall
    prof = _profile(z, U(10, 40), U(70, 95))
    th = U(200, 215) * deg                                              # polar angle, left-posterior
    px, py = _ellipse_point(bx, by, am - m_l, bm_a - m_a, bm_p - m_p, th)
    sp_cx, sp_cy = px + U(0.25, 0.35) * (bx - px), py + U(0.25, 0.35) * (by - py)
    tang = np.arctan2((bm_p - m_p) * np.cos(th), -(am - m_l) * np.sin(th))    # wall tangent
    sp_rl, sp_rw = U(45, 60) * prof * sy, U(20, 28) * prof * sx
    box, u = cv.blob(sp_cx, sp_cy, sp_rl, sp_rw, 2.0, tang, _wobble(rng, 0.05)(z))
    if box is not None:
        ox, oy = np.cos(tang + np.pi / 2), np.sin(tang + np.pi / 2)            # towards the centre?
        sgn = np.sign((bx - sp_cx) * ox + (by - sp_cy) * oy)
        _, u_hole = cv.blob(sp_cx + sgn * ox * 1.2 * sp_rw, sp_cy + sgn * oy * 1.2 * sp_rw,
                            0.8 * sp_rl, 0.75 * sp_rw, 2.0, tang, box=box)
        cv.paint(box, (u < 1) & (u_hole > 1) & cav_in[box], "spleen")

    # --- retroperitoneum: kidneys in perirenal fat, fat around the spine and great vessels
    vb_rx, vb_ry = U(20, 24), U(14, 17)
    aorta = (xv - U(10, 16) + _drift(rng, 2)(z), yv + vb_ry + U(13, 17) + _drift(rng, 2)(z), U(10, 13))
    ivc = (xv + U(22, 30) + _drift(rng, 3)(z), yv + vb_ry + U(12, 20) + _drift(rng, 3)(z), U(11, 15), U(8, 11))
    kidneys = []
    zc_r = U(-50, -25)
    for side, zc in ((1, zc_r), (-1, zc_r + U(10, 25))):
        prof = _profile(z, zc, U(50, 60))
        kidneys.append(dict(
            cx=xv + side * U(58, 70) * sx + _drift(rng, 4)(z), cy=yv + U(-12, -2) + _drift(rng, 3)(z),
            rx=U(25, 30) * prof, ry=U(19, 23) * prof, rot=-side * U(30, 45) * deg, prof=prof,
            lobes=int(rng.integers(5, 8)), lobe_phase=U(0, 2 * np.pi),
            side=side, wob=_wobble(rng, 0.04)(z), halo=U(2, 6), cortex=U(5, 7), wob_halo=_wobble(rng, 0.12)(z)))
    for k in kidneys:
        on = k["prof"] > 0
        box, u = cv.blob(k["cx"] + k["side"] * 0.5 * k["halo"], k["cy"] - 0.5 * k["halo"],
                         k["rx"] + k["halo"] * on, k["ry"] + k["halo"] * on, 2.0, k["rot"], k["wob_halo"])
        if box is not None:
            cv.paint(box, (u < 1) & muscle_outer[box], "fat")
    box, u = cv.blob(aorta[0], aorta[1], aorta[2] + 3, aorta[2] + 3, 2.0, 0.0, _wobble(rng, 0.1)(z))
    cv.paint(box, (u < 1) & muscle_outer[box] if box else None, "fat")
    box, u = cv.blob(xv, yv, vb_rx + 4, vb_ry + 4, 2.0, 0.0, _wobble(rng, 0.1)(z))
    cv.paint(box, (u < 1) & muscle_outer[box] if box else None, "fat")
    for k in kidneys:
        box, u = cv.blob(k["cx"], k["cy"], k["rx"], k["ry"], 2.0, k["rot"], k["wob"])
        if box is None:
            continue
        inside = (u < 1) & muscle_outer[box]
        cv.paint(box, inside, "kidney_cortex")
        rmin = np.maximum(np.minimum(k["rx"], k["ry"]), 1.0)
        # medulla: pyramids separated by columns of cortex
        dx = cv.x[box[0]][:, None, None] - k["cx"][None, None].astype(np.float32)
        dy = cv.y[box[1]][None, :, None] - k["cy"][None, None].astype(np.float32)
        ang = np.arctan2(dy, dx)
        pyramids = np.cos(k["lobes"] * ang + k["lobe_phase"]) > -0.4
        cv.paint(box, inside & pyramids & (u < 1 - k["cortex"] / rmin[None, None].astype(np.float32))
                 & (u > 0.35), "kidney_medulla")
        # renal sinus: fat and the collecting system, opening anteromedially
        hx, hy = -k["side"] * 0.7071, 0.7071
        _, u2 = cv.blob(k["cx"] + hx * 0.55 * k["rx"], k["cy"] + hy * 0.55 * k["ry"],
                        0.55 * k["ry"], 0.35 * k["ry"], 2.0, np.arctan2(hy, hx) + np.pi / 2, box=box)
        cv.paint(box, inside & (u2 < 1), "fat")
        _, u3 = cv.blob(k["cx"] + hx * 0.4 * k["rx"], k["cy"] + hy * 0.4 * k["ry"],
                        0.25 * k["ry"], 0.15 * k["ry"], 2.0, np.arctan2(hy, hx) + np.pi / 2, box=box)
        cv.paint(box, inside & (u3 < 1), "fluid")

    # --- muscles beside and behind the spine
    y_canal = yv - 0.9 * vb_ry - U(7, 9)
    for side in (1, -1):
        box, u = cv.blob(xv + side * U(26, 32) * sx, y_canal - U(18, 24), U(24, 30) * sx, (U(20, 26), 60.0), 2.5,
                         0.0, _wobble(rng, 0.04)(z))                             # erector spinae
        cv.paint(box, (u < 1) & muscle_outer[box] if box else None, "muscle")
        box, u = cv.blob(xv + side * U(58, 68) * sx, y_canal - U(0, 8), U(16, 22), U(9, 13), 2.0,
                         side * U(10, 30) * deg, _wobble(rng, 0.06)(z))          # quadratus lumborum
        cv.paint(box, (u < 1) & muscle_outer[box] if box else None, "muscle")
        prof = np.clip((U(-10, 10) - z) / 80.0, 0, 1) ** 0.5
        box, u = cv.blob(xv + side * (vb_rx + U(4, 8)), yv + U(-2, 6), U(9, 14) * prof, U(8, 12) * prof)   # psoas
        cv.paint(box, (u < 1) & muscle_outer[box] if box else None, "muscle")

    # --- vertebra: neural arch, processes, body with discs and end plates, canal and cord
    period, disc_t = U(30, 34), U(7, 9)
    phase = np.mod(z - U(0, period), period)                         # 0..period along z
    wave = 0.5 + 0.5 * np.cos(2 * np.pi * (phase - 0.55 * period) / period)   # processes come and go
    box, u = cv.blob(xv, y_canal, U(15, 18), U(13, 15), 2.0)
    if box is not None:
        cv.bone(box, u, 5.0, 2.0, where=cv.y[box[1]][None, :, None] < (yv - 0.3 * vb_ry)[None, None])
    sp_len = U(14, 20) * (0.45 + 0.55 * wave)
    box, u = cv.blob(xv, y_canal - 9 - sp_len, U(4, 5.5), sp_len, 2.0, _drift(rng, 0.05)(z))
    cv.bone(box, u, 4.0, 1.5)
    for side in (1, -1):
        tl = U(12, 16) * wave
        box, u = cv.blob(xv + side * (U(12, 14) + tl), y_canal + U(0, 4), tl, U(4.5, 6), 2.0, side * U(5, 20) * deg)
        cv.bone(box, u, 4.5, 1.5)
    disc = phase < disc_t
    plate = ((phase >= disc_t) & (phase < disc_t + 1.8)) | (phase > period - 1.8)
    box, u = cv.blob(xv, yv, vb_rx * np.where(disc, 1.05, 1.0), (vb_ry, 0.85 * vb_ry), 2.3)
    if box is not None:
        inside = u < 1
        dz, pz = disc[None, None], plate[None, None]
        cv.bone(box, u, min(vb_rx, vb_ry), 1.8, where=~dz)
        cv.paint(box, inside & pz, "cortical")
        cv.paint(box, inside & dz, "disc")
    box, u = cv.blob(xv, y_canal, U(9, 11), U(7, 8.5))
    cv.paint(box, u < 1 if box else None, "csf")
    box, u = cv.blob(xv, y_canal + 1, U(4, 5), U(3, 4))
    cv.paint(box, u < 1 if box else None, "cord")

    # --- great vessels
    box, u = cv.blob(aorta[0], aorta[1], aorta[2], aorta[2] * U(0.92, 1.0))
    cv.paint(box, u < 1 if box else None, "aorta")
    box, u = cv.blob(ivc[0], ivc[1], ivc[2], ivc[3], 2.0, U(-20, 20) * deg)
    cv.paint(box, u < 1 if box else None, "ivc")

    # --- ribs: oblique, so their cross-sections slide along the wall from slice to slice
    r_x, r_a, r_p = am - 0.5 * m_l, bm_a - 0.5 * m_a, bm_p - 0.5 * m_p
    step, drift = U(26, 34) * deg, U(0.7, 1.0) * deg               # angle between ribs, per mm of z
    sizes = rng.uniform((6.0, 3.0, -2.0), (11.0, 4.5, 2.0), (16, 3))   # tangential, radial, offset (mm)
    ribcage = [(side, U(0, step), U(25, 45) * deg, U(-55, -45) * deg) for side in (1, -1)]   # phase, top, bottom
    for side, phase0, top, bottom in ribcage:
        for kz in range(cv.shape[2]):
            lo_th, hi_th = bottom, top + 0.3 * deg * z[kz]
            shift = phase0 - drift * z[kz]
            for n in range(int(np.ceil((lo_th - shift) / step)), int(np.floor((hi_th - shift) / step)) + 1):
                th = shift + n * step
                a, b, off = sizes[n % 16]
                thp = th if side > 0 else np.pi - th
                px, py = _ellipse_point(bx[kz], by[kz], r_x[kz] + off, r_a[kz] + off, r_p[kz] + off, thp)
                tang = np.arctan2(np.where(np.sin(thp) >= 0, r_a[kz], r_p[kz]) * np.cos(thp), -r_x[kz] * np.sin(thp))
                _paint_ellipse_2d(cv, kz, float(px), float(py), a, b, float(tang))


def _paint_ellipse_2d(cv: _Canvas, kz: int, cx, cy, a, b, rot, cortex_mm=1.6):
    box = cv.box(cx - a - 2, cx + a + 2, cy - a - 2, cy + a + 2)
    if box is None:
        return
    dx = cv.x[box[0]][:, None] - cx
    dy = cv.y[box[1]][None, :] - cy
    c, s = np.cos(rot), np.sin(rot)
    u = np.sqrt(((c * dx + s * dy) / a) ** 2 + ((-s * dx + c * dy) / b) ** 2)
    view = cv.lab[box[0], box[1], kz]
    view[u < 1] = ID["cortical"]
    view[u < 1 - cortex_mm / b] = ID["cancellous"]


def _bbox(mask: np.ndarray, pad: int = 0):
    """Slices of the bounding box of ``mask`` (padded, clipped), or None if it is empty."""
    if not mask.any():
        return None
    out = []
    for ax in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(idx[0]) - pad, 0), min(int(idx[-1]) + 1 + pad, mask.shape[ax])))
    return tuple(out)


def _tumours(cv: _Canvas, rng: np.random.Generator, liver: np.ndarray):
    """Tumour masks and HU values inside ``liver``: returns (mask, hu) over the full grid (hu
    only meaningful inside mask), or (None, None) if the liver is not in view."""
    n = int(rng.integers(1, 5))
    lbox = _bbox(liver, pad=1)
    mask = np.zeros(cv.shape, bool)
    hu = np.zeros(cv.shape, np.float32)
    if lbox is None:
        return None, None
    dist = ndimage.distance_transform_edt(liver[lbox], sampling=cv.spacing)   # mm to the capsule
    dmax = float(dist.max())
    spacing = np.array(cv.spacing)
    for t in range(n):
        lo_r, hi_r = TUMOUR_RADIUS[0 if t == 0 else 1]
        r = min(rng.uniform(lo_r, hi_r), max(1.6 * dmax, lo_r))
        need = min(0.7 * r, 0.8 * dmax)
        cand = np.argwhere(dist >= need)
        centre_vox = cand[rng.integers(len(cand))] + [s.start for s in lbox]
        centre = np.array([cv.x[centre_vox[0]], cv.y[centre_vox[1]], cv.z[centre_vox[2]]], np.float64)
        elong = rng.uniform(0.8, 1.2, 3)
        core_hu = rng.uniform(*TUMOUR_HU)
        rim = rng.uniform(*TUMOUR_RIM_HU) if rng.random() < 0.5 else 0.0
        rim_mm = rng.uniform(1.5, 3.0)
        reach = 1.5 * r * elong.max() + 2 * spacing
        field = _Field(rng, centre - reach, centre + reach, max(3.0, 0.5 * r))
        tex = _Field(rng, centre - reach, centre + reach, 4.0)
        box = tuple(slice(max(int(np.floor((c - rr) / s + (nn - 1) / 2)), 0),
                          min(int(np.ceil((c + rr) / s + (nn - 1) / 2)) + 1, nn))
                    for c, rr, s, nn in zip(centre, reach, spacing, cv.shape))
        xs, ys, zs = cv.x[box[0]], cv.y[box[1]], cv.z[box[2]]
        d = np.sqrt(((xs[:, None, None] - centre[0]) / elong[0]) ** 2
                    + ((ys[None, :, None] - centre[1]) / elong[1]) ** 2
                    + ((zs[None, None, :] - centre[2]) / elong[2]) ** 2).astype(np.float32)
        u = d / (r * (1 + 0.18 * np.clip(field(xs, ys, zs), -2.5, 2.5)))
        m = (u < 1) & liver[box]
        lab, nlab = ndimage.label(m)
        if nlab > 1:                                      # keep the part around the centre
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            m = lab == int(np.argmax(sizes))
        if not m.any():
            continue
        val = core_hu + 5.0 * tex(xs, ys, zs)
        if rim:
            val = np.where(u > 1 - rim_mm / r, val + rim, val)
        view_m, view_hu = mask[box], hu[box]
        view_hu[m] = val[m]
        view_m |= m
    return mask, hu


def make_case(seed: int, index: int, shape=SHAPE, spacing=SPACING) -> CTCase:
    """Generate case ``index`` of dataset ``seed`` (deterministic). See the module docstring."""
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or len(spacing) != 3 or min(shape) < 1 or min(spacing) <= 0:
        raise OptionError(f"shape and spacing must be 3 positive numbers each, got {shape} and {spacing}")
    rng = np.random.default_rng([seed, index])
    cv = _Canvas(shape, spacing)
    _anatomy(cv, rng)

    # tissue HU values and texture
    hu = np.array([rng.uniform(*HU_RANGES[t]) for t in TISSUES], np.float32)
    amp = np.array([TEXTURE_HU.get(t, 2.0) for t in TISSUES], np.float32)
    amp[ID["air"]] = amp[ID["gas"]] = 0.0
    lo = (float(cv.x[0]), float(cv.y[0]), float(cv.z[0]))
    hi = (float(cv.x[-1]), float(cv.y[-1]), float(cv.z[-1]))
    texture = _Field(rng, lo, hi, 5.0)(cv.x, cv.y, cv.z)
    clean = hu[cv.lab]
    clean += amp[cv.lab] * texture
    del texture

    liver = (cv.lab == ID["liver"]) | (cv.lab == ID["liver_vessel"])
    tmask, thu = _tumours(cv, rng, liver)
    seg = liver.astype(np.uint8)

    healthy = ndimage.gaussian_filter(clean, PV_SIGMA, mode="nearest", radius=PV_RADIUS)
    lesion = healthy.copy()
    if tmask is not None and tmask.any():
        seg[tmask] = LABEL_TUMOUR
        box = _bbox(tmask, pad=max(PV_RADIUS))
        diff = np.where(tmask[box], thu[box] - clean[box], np.float32(0))
        lesion[box] += ndimage.gaussian_filter(diff, PV_SIGMA, mode="constant", radius=PV_RADIUS)
    del clean

    sigma = rng.uniform(*NOISE_SIGMA)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, (0.5, 0.5, 0.0), radius=(1, 1, 0), mode="wrap")
    noise *= np.float32(sigma / (noise.std() + 1e-6))

    def to_hu(img):
        img += noise
        np.rint(img, out=img)
        np.clip(img, HU_MIN, HU_MAX, out=img)
        return img.astype(np.int16)

    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.array(shape) - 1) / 2 * np.array(spacing)
    return CTCase(str(index), to_hu(lesion), to_hu(healthy), seg, affine)


def case_files(out_dir: str | Path, case_id: str) -> tuple[Path, Path, Path]:
    """Paths of (volume, segmentation, healthy) of one case in the LiTS layout."""
    out_dir = Path(out_dir)
    return (out_dir / f"volume-{case_id}.nii.gz", out_dir / f"segmentation-{case_id}.nii.gz",
            out_dir / f"healthy-{case_id}.nii.gz")


def write_case(case: CTCase, out_dir: str | Path) -> Path:
    """Write one case in the LiTS layout into ``out_dir``; returns the volume's path.

    The healthy ground truth goes beside the volume as ``healthy-N.nii.gz``. The volume is
    written last, so a case whose three files exist is complete even after a crash.
    """
    vol, seg, healthy = case_files(out_dir, case.case_id)
    save_volume(case.seg, case.affine, seg)
    save_volume(case.healthy, case.affine, healthy)
    save_volume(case.volume, case.affine, vol)
    return vol


def generate(out: str | Path, cases: int, seed: int = 0, progress: bool = True,
             shape=SHAPE, spacing=SPACING) -> list[str]:
    """Write ``cases`` phantom CT cases (numbered 0, 1, ...) to ``out`` in the LiTS layout;
    returns their ids. Cases whose three files already exist are kept (resume)."""
    from tqdm.auto import tqdm

    at_least(cases, "cases")
    at_least(seed, "seed", 0)
    out = output_folder(out)
    ids = [str(i) for i in range(cases)]
    todo = [i for i in range(cases) if not all(p.is_file() for p in case_files(out, str(i)))]
    t0 = time.perf_counter()
    for i in tqdm(todo, desc="CT phantom", unit="case", disable=not progress or not todo):
        write_case(make_case(seed, i, shape, spacing), out)
    generate.last_seconds = time.perf_counter() - t0
    return ids
