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


def ssim(x, y, data_range: float = 1.0) -> float:
    """Mean structural similarity of two 2-D images (scikit-image, 7x7 uniform window)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_np(x), _np(y), data_range=data_range))


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


def ms_ssim(x, y, data_range: float = 1.0, window: int = 11) -> float:
    """Multi-scale SSIM (Gaussian 11-wide window, sigma 1.5) of (H, W) or (B, 1, H, W) images,
    with as many scales as the size allows (:func:`ms_ssim_scales`), averaged over the batch."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as msssim

    x = torch.as_tensor(_np(x), dtype=torch.float32)
    y = torch.as_tensor(_np(y), dtype=torch.float32)
    while x.dim() < 4:
        x, y = x[None], y[None]
    k = ms_ssim_scales(min(x.shape[-2:]), window)
    betas = torch.tensor(MS_SSIM_BETAS[:k])
    betas = tuple((betas / betas.sum()).tolist())
    return float(msssim(x, y, data_range=data_range, kernel_size=window, betas=betas, normalize="relu"))


def identity(output, image, mask, data_range: float = 1.0) -> float:
    """PHS-GAN's identity: MS-SSIM of (1 - m) * G(x) and (1 - m) * x (1 for an untouched image)."""
    keep = 1 - torch.as_tensor(_np(mask), dtype=torch.float32)
    return ms_ssim(keep * torch.as_tensor(_np(output)), keep * torch.as_tensor(_np(image)), data_range)


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
    """How close the synthesis is to the true healthy tissue *inside* the lesion, scored the way
    the BraTS 2023 inpainting challenge scores healthy-tissue synthesis, on one 2-D slice:

    both images are masked to the lesion and normalised with the percentiles of the input's
    tissue outside the lesion (what the model could see); PSNR (range 1) over lesion pixels;
    SSIM as the mean of the SSIM map (Gaussian 11x11) inside the lesion.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim_fn

    m = _np(mask) > 0.5
    if not m.any():
        return {"psnr": float("nan"), "ssim": float("nan")}
    img = _np(image)
    ref = img[~m & (img > 0)] if (~m & (img > 0)).any() else img
    o = percentile_normalize(_np(output) * m, ref)
    t = percentile_normalize(_np(truth) * m, ref)
    _, smap = ssim_fn(torch.tensor(o, dtype=torch.float32)[None, None], torch.tensor(t, dtype=torch.float32)[None, None],
                      data_range=1.0, return_full_image=True)
    return {"psnr": psnr(o[m], t[m]), "ssim": float(smap[0, 0].numpy()[m].mean())}


def dice_of_difference(output, image, mask, threshold: float = 0.1) -> float:
    """Dice of the changed pixels ``|x - G(x)| > threshold`` against the lesion mask."""
    return dice(np.abs(_np(output) - _np(image)) > threshold, mask)


def average_precision_of_difference(outputs, images, masks, foreground=None) -> float:
    """Average precision of ``|x - G(x)|`` as a pixel-wise lesion detector over a set of slices
    (over ``foreground`` pixels only, e.g. the brain, if given)."""
    from sklearn.metrics import average_precision_score

    score = np.abs(_np(outputs) - _np(images)).ravel()
    truth = (_np(masks) > 0.5).ravel()
    if foreground is not None:
        keep = (_np(foreground) > 0.5).ravel()
        score, truth = score[keep], truth[keep]
    return float(average_precision_score(truth, score)) if truth.any() else float("nan")


# --------------------------------------------------------------------------- failure-mode measures
def checkerboard_ratio(changes) -> float:
    """How much a set of change maps (N, H, W) looks like a period-2 checkerboard.

    The mean magnitude spectrum at the three period-2 frequencies ((0.5, 0.5), (0.5, 0) and
    (0, 0.5) cycles per pixel), divided by its mean over the 4x4 block of high frequencies just
    inside the corner (0.5, 0.5). About 1 (0.9 for white noise) for changes without a period-2
    pattern; well above 1 when transposed convolutions print their
    uneven overlap into the output. Pass changes in healthy tissue only (output - input, masked).
    """
    d = _np(changes)
    d = d.reshape(-1, *d.shape[-2:])
    spec = np.abs(np.fft.fftshift(np.fft.fft2(d), axes=(-2, -1))).mean(0)
    c = spec.shape[-1] // 2
    nyq = np.mean([spec[0, 0], spec[0, c], spec[c, 0]])
    near = spec[1:5, 1:5].mean()
    return float(nyq / max(near, 1e-12))


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
