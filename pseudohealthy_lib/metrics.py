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
    """Dice ``2|P and T| / (|P| + |T|)`` of two binary masks; ``empty`` when both are empty."""
    p, t = _np(pred) > 0.5, _np(target) > 0.5
    s = p.sum() + t.sum()
    return empty if s == 0 else float(2 * (p & t).sum() / s)


def ssim_map(x, y, data_range: float = 1.0) -> np.ndarray:
    """Local SSIM of two 2-D images at every pixel (Wang et al. 2004: Gaussian window of width
    11 and sigma 1.5, population covariances), computed by scikit-image. Shape of ``x``."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(_np(x), _np(y), data_range=data_range, gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=False, full=True)
    return smap


def ssim(x, y, mask=None, data_range: float = 1.0) -> float:
    """SSIM of two 2-D images (the window of :func:`ssim_map`; the book uses this one SSIM
    everywhere). Without ``mask``: scikit-image's mean, which leaves out a 5-pixel border where
    the window does not fit; with ``mask``: the mean of the map over the mask (``nan`` if empty)."""
    if mask is None:
        from skimage.metrics import structural_similarity

        return float(structural_similarity(_np(x), _np(y), data_range=data_range, gaussian_weights=True,
                                           sigma=1.5, use_sample_covariance=False))
    smap = ssim_map(x, y, data_range)
    m = _np(mask).reshape(smap.shape) > 0.5
    return float(smap[m].mean()) if m.any() else float("nan")


def mae(x, y, mask=None) -> float:
    """Mean absolute error, over ``mask`` if given (``nan`` for an empty mask)."""
    d = np.abs(_np(x) - _np(y))
    if mask is not None:
        m = np.broadcast_to(_np(mask) > 0.5, d.shape)
        return float(d[m].mean()) if m.any() else float("nan")
    return float(d.mean())


def tissue_mask(image, eps: float = 1e-3) -> np.ndarray:
    """Brain (or body) pixels of images in [0, 1] whose background is 0 (skull-stripped MRI after
    :func:`~pseudohealthy_lib.data.preprocess.clip_and_scale`, windowed CT): ``image > eps``."""
    return _np(image) > eps


def contrast_to_noise(images, lesion, tissue) -> float:
    """Contrast-to-noise ratio of a lesion: how many standard deviations of the surrounding
    tissue separate the lesion's mean intensity from the tissue's::

        CNR = (mean(x[lesion]) - mean(x[tissue \\ lesion])) / std(x[tissue \\ lesion])

    ``images``, ``lesion`` and ``tissue`` of one shape (pixels pooled over every slice given).
    Positive: the lesion is brighter (FLAIR), negative: darker (hypodense CT tumours); 0: the
    intensity alone cannot see it. ``nan`` if either region is empty or the tissue is flat.
    """
    return lesion_contrast(images, lesion, tissue)["cnr"]


def lesion_contrast(images, lesion, tissue) -> dict:
    """How far a lesion's intensity stands from the tissue's, two ways: ``gap``, the difference of
    their means in intensity units (what a translator must remove), and ``cnr``, that gap in units
    of the tissue's standard deviation (:func:`contrast_to_noise`: how easily it is seen). The
    tissue is ``tissue`` less the lesion; ``nan`` where a region is empty (or flat, for ``cnr``)."""
    x = _np(images).astype(np.float64)
    les = _np(lesion) > 0.5
    bg = (_np(tissue) > 0.5) & ~les
    if not les.any() or not bg.any():
        return {"gap": float("nan"), "cnr": float("nan")}
    gap = float(x[les].mean() - x[bg].mean())
    sd = x[bg].std() if bg.sum() >= 2 else 0.0
    return {"gap": gap, "cnr": gap / sd if sd > 0 else float("nan")}


def surrounding(mask, width: int, within=None) -> np.ndarray:
    """The ring of tissue around ``mask``: pixels at most ``width`` pixels (8-connected steps) from
    it, not in it, and inside ``within`` where given. Slice by slice for (N, H, W) stacks."""
    from scipy.ndimage import binary_dilation

    m = _np(mask) > 0.5
    step = np.ones((3, 3), bool) if m.ndim == 2 else np.ones((1, 3, 3), bool)
    ring = binary_dilation(m, step, iterations=width) & ~m if width > 0 else np.zeros_like(m)
    return ring & (_np(within) > 0.5) if within is not None else ring


# ---------------------------------------------------------------------------------------------
# pseudo-healthy synthesis metrics (PHS-GAN Sec. 4.2, SMILE, BraTS 2023 inpainting)

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)   # Wang et al. 2003, five scales


def ms_ssim_scales(side: int, window: int = 11, max_scales: int = 5) -> int:
    """How many MS-SSIM scales an image of ``side`` pixels allows.

    Every scale halves the image, and the coarsest one must still be larger than the window:
    ``side > (window - 1) * 2**(scales - 1)``. Five scales need more than 160 pixels with an
    11-wide window, so 128x128 slices get four and 64x64 slices three. The weights (betas) of
    the scales used are renormalised to sum to one.
    """
    k = max_scales
    while k > 1 and side <= (window - 1) * 2 ** (k - 1):
        k -= 1
    return k


def _images(a) -> torch.Tensor:
    """(H, W), (B, H, W) or (B, 1, H, W) -> a float tensor (B, 1, H, W)."""
    a = torch.as_tensor(_np(a), dtype=torch.float32)
    return a.reshape(-1, 1, *a.shape[-2:])


def ms_ssim(x, y, data_range: float = 1.0, window: int = 11, reduction: str = "mean"):
    """Multi-scale SSIM (Gaussian window of width ``window``, sigma 1.5) of (H, W), (B, H, W) or
    (B, 1, H, W) images, with as many scales as the size allows (:func:`ms_ssim_scales`, weights
    renormalised). ``reduction='mean'``: one float for the batch; ``'none'``: one value per image."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    x, y = _images(x), _images(y)
    betas = torch.tensor(MS_SSIM_BETAS[:ms_ssim_scales(min(x.shape[-2:]), window)])
    vals = msssim(x, y, data_range=data_range, kernel_size=window, betas=tuple((betas / betas.sum()).tolist()),
                  normalize="relu", reduction="none").reshape(-1)
    return float(vals.mean()) if reduction == "mean" else vals.numpy().astype(np.float64)


def identity(output, image, mask, data_range: float = 1.0) -> np.ndarray:
    """PHS-GAN's identity (Sec. 4.2), one value per slice: MS-SSIM of (1 - m) * G(x) and
    (1 - m) * x, with the scales :func:`identity_note` states (1 for an untouched image).

    ``output``, ``image``, ``mask``: (H, W), (B, H, W) or (B, 1, H, W). Returns shape (B,).
    Aggregate per-slice values yourself (the mean of chunk means is not the mean).
    """
    keep = 1 - _images(mask)
    return ms_ssim(keep * _images(output), keep * _images(image), data_range, reduction="none")


def identity_note(side: int) -> str:
    """How identity is computed at this image size, printed beside every identity figure."""
    k = ms_ssim_scales(side)
    return (f"identity = masked MS-SSIM, 11-wide Gaussian window, {k} of 5 scales at {side} px "
            f"(weights renormalised{'' if k < 5 else ', the standard setting'})")


def healthiness(pred_masks_on_output, true_masks=None, pred_masks_on_input=None) -> float:
    """Healthiness h = 1 - E[N(f_pre(G(x)))] / E[N(ref)], N = number of lesion pixels.

    PHS-GAN normalises by the ground-truth masks (``true_masks``); SMILE's variant by the
    segmentor's own masks on the inputs (``pred_masks_on_input``). h = 1 when the segmentor
    finds no lesion left in the outputs; it can be negative if it finds more than the reference.
    """
    ref = true_masks if pred_masks_on_input is None else pred_masks_on_input
    if ref is None:
        raise ValueError("give true_masks (PHS-GAN) or pred_masks_on_input (SMILE)")
    found = (_np(pred_masks_on_output) > 0.5).reshape(len(pred_masks_on_output), -1).sum(1).mean()
    norm = (_np(ref) > 0.5).reshape(len(ref), -1).sum(1).mean()
    return float("nan") if norm == 0 else float(1 - found / norm)


def percentile_normalize(img, reference, p_low: float = 0.5, p_high: float = 99.5) -> np.ndarray:
    """Clip ``img`` to the [p_low, p_high] percentiles of ``reference`` (lower bound at least 0)
    and scale to [0, 1], as the BraTS 2023 inpainting challenge normalises before scoring."""
    lo, hi = np.percentile(_np(reference), [p_low, p_high])
    lo = max(lo, 0.0)
    return (np.clip(_np(img), lo, hi) - lo) / max(hi - lo, 1e-8)


def lesion_fidelity(output, truth, image, mask) -> dict:
    """How close the synthesis is to the true healthy tissue *inside* the lesion, on one 2-D
    slice, scored as the BraTS 2023 local-inpainting challenge describes its evaluation:

    1. both images are normalised with :func:`percentile_normalize`, using the 0.5 and 99.5
       percentiles of the *voided* input (its tissue outside the lesion: what a model can see);
    2. PSNR (range 1) and MAE over the lesion pixels;
    3. SSIM computed on the whole normalised images (:func:`ssim_map`), averaged inside the lesion;
    4. the *bias*, the mean of output minus truth over the lesion pixels (not a challenge
       metric): above 0 the output is brighter than the healthy tissue there, the mark of a faint
       copy of a bright lesion left behind; below 0, darker. PSNR alone cannot tell which.

    Returns ``{"psnr", "ssim", "mae", "bias"}`` (``nan`` for an empty mask).
    """
    m = _np(mask) > 0.5
    if not m.any():
        return dict.fromkeys(("psnr", "ssim", "mae", "bias"), float("nan"))
    img = _np(image)
    visible = ~m & tissue_mask(img)
    ref = img[visible] if visible.any() else img
    o, t = percentile_normalize(output, ref), percentile_normalize(truth, ref)
    return {"psnr": psnr(o[m], t[m]), "ssim": float(ssim_map(o, t)[m].mean()), "mae": float(np.abs(o - t)[m].mean()),
            "bias": float((o - t)[m].mean())}


def dice_of_difference(output, image, mask, threshold: float = 0.1) -> float:
    """Dice of the changed pixels ``|x - G(x)| > threshold`` against the lesion mask."""
    return dice(np.abs(_np(output) - _np(image)) > threshold, mask)


def detection(scores, masks, region=None, curve: bool = False) -> dict:
    """A pixel-wise lesion detector judged over a set of slices (pixels pooled).

    ``scores`` (any shape): higher = more likely lesion (e.g. ``|x - G(x)|``, or the FLAIR
    intensity itself); ``masks``: the true lesion; ``region``: pixels to judge (e.g. the tissue;
    default all). Returns ``auprc`` (area under the precision-recall curve, as average
    precision), ``dice_max`` (the best Dice over all thresholds, written ⌈Dice⌉: optimistic,
    since the threshold is chosen on the test data) and ``threshold_max`` (where it is reached).
    ``nan`` where the region has no lesion pixel. ``curve`` adds the ``precision`` and ``recall``
    arrays of the curve (scikit-learn's, recall falling), for plotting.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    s, t = _np(scores).ravel(), (_np(masks) > 0.5).ravel()
    if region is not None:
        keep = (_np(region) > 0.5).ravel()
        s, t = s[keep], t[keep]
    if not t.any():
        return {"auprc": float("nan"), "dice_max": float("nan"), "threshold_max": float("nan")} | (
            {"precision": np.array([np.nan]), "recall": np.array([np.nan])} if curve else {})
    prec, rec, thr = precision_recall_curve(t, s)
    f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
    best = int(np.argmax(f1))
    out = {"auprc": float(average_precision_score(t, s)), "dice_max": float(f1[best]), "threshold_max": float(thr[best])}
    return out | ({"precision": prec, "recall": rec} if curve else {})


# --------------------------------------------------------------------------- failure-mode measures
def intensity_detection(images, masks, region=None, curve: bool = False) -> dict:
    """The image intensity itself as a lesion detector (:func:`detection` over ``region``, default
    the tissue): brightness is the score where the lesions are brighter than the tissue on average
    (FLAIR), darkness where they are darker (T1, hypodense CT tumours); ``lesion_darker`` says which.
    That sign is the one bit read from the masks. The floor a learned lesion map must beat."""
    x = _np(images).astype(np.float32)
    region = tissue_mask(x) if region is None else region
    darker = bool(lesion_contrast(x, masks, region)["gap"] < 0)
    return {**detection(-x if darker else x, masks, region, curve=curve), "lesion_darker": darker}


def checkerboard_ratio(changes, floor: float = 1e-2) -> float:
    """How much a set of change maps (N, H, W) shows a period-2 (checkerboard) pattern.

    A checkerboard puts energy at and around the period-2 frequencies (1/2, 1/2), (1/2, 0) and
    (0, 1/2) cycles per pixel: a stride-2 transposed convolution modulates the image by a
    pattern of period 2, which copies the image's spectrum to those corners. Each map has its
    mean removed and a Hann window applied (so the border leaks no energy); then

        ratio = (P_peak + f) / (P_ref + f)

    with P_peak the mean power in the 3x3 bins around each period-2 frequency, P_ref the mean
    power at the bins H/16 to H/8 steps back from them towards lower frequencies, and the floor
    f = ``floor`` x the mean power of all bins (energy below 1 % of an average bin is invisible).
    A spectrum that falls with frequency (white noise, noise smoothed with any width, nearest
    or bilinear upsampling) scores at most about 1; a period-2 pattern scores far above 1.
    Sides must be even and at least 32 pixels.
    """
    d = _np(changes).astype(np.float64)
    d = d.reshape(-1, *d.shape[-2:])
    h, w = d.shape[-2:]
    if h % 2 or w % 2 or min(h, w) < 32:
        raise ValueError(f"checkerboard_ratio needs even sides of at least 32 pixels, got {h}x{w}")
    d = d - d.mean(axis=(-2, -1), keepdims=True)
    d = d * np.outer(np.hanning(h), np.hanning(w))
    power = (np.abs(np.fft.fft2(d)) ** 2).mean(0)          # index h // 2 is the frequency 1/2
    near, far = range(-1, 2), range(min(h, w) // 16, min(h, w) // 8 + 1)
    peak, ref = [], []
    for fy, fx in ((h // 2, w // 2), (h // 2, 0), (0, w // 2)):
        peak += [power[(fy + i) % h, (fx + j) % w] for i in near for j in near]
        steps = [(1, 0)] * bool(fy) + [(0, 1)] * bool(fx) + [(1, 1)] * bool(fy and fx)
        ref += [power[fy - k * sy, fx - k * sx] for sy, sx in steps for k in far]
    if not power.any():
        return float("nan")                                  # no change at all: nothing to judge
    f = floor * power.mean()
    return float((np.mean(peak) + f) / (np.mean(ref) + f))


def diversity_ratio(outputs, inputs, pairs: int = 2000, seed: int = 0) -> float:
    """Mean L1 distance between random pairs of outputs over the same for their inputs.

    About 1 when outputs differ from each other as much as the inputs do; near 0 when a generator
    has *collapsed* to (almost) the same image for every input (ANT-GAN Sec. IV-B, Fig. 5).
    """
    y, x = _np(outputs), _np(inputs)
    n = len(x)
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    dy = np.abs(y[i] - y[j]).reshape(len(i), -1).mean(1)
    dx = np.abs(x[i] - x[j]).reshape(len(i), -1).mean(1)
    return float(dy.mean() / max(dx.mean(), 1e-12))


def error_removed(outputs, inputs, truths, region) -> float:
    """Share of the lesion's deviation from the true healthy image that a model removed, over
    ``region`` (e.g. one tumour part): ``1 - mean|G(x) - truth| / mean|x - truth|``.
    1 = the truth restored, 0 = nothing done, < 0 = made worse; ``nan`` for an empty region."""
    r = _np(region) > 0.5
    if not r.any():
        return float("nan")
    y, x, t = _np(outputs), _np(inputs), _np(truths)
    return float(1 - np.abs(y - t)[r].mean() / max(np.abs(x - t)[r].mean(), 1e-12))
