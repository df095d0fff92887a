"""Metrics against hand-computed values and scikit-image."""
import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from pseudohealthy_lib import metrics as M
from pseudohealthy_lib.profiling import activation_bytes


def test_psnr_by_hand_and_against_skimage():
    x = np.zeros((4, 4))
    y = np.full((4, 4), 0.1)
    assert M.psnr(x, y) == pytest.approx(20.0)                       # 10 log10(1 / 0.01)
    rng = np.random.default_rng(0)
    a, b = rng.random((32, 32)), rng.random((32, 32))
    assert M.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=1.0))
    assert M.psnr(a, a) == float("inf")


def test_masked_psnr_uses_only_the_mask():
    x = np.zeros((2, 2))
    y = np.array([[0.1, 0.5], [0.5, 0.5]])
    mask = np.array([[1, 0], [0, 0]])
    assert M.psnr(x, y, mask) == pytest.approx(20.0)
    assert np.isnan(M.psnr(x, y, np.zeros((2, 2))))
    assert M.psnr(torch.zeros(1, 2, 2), torch.tensor(y)[None], torch.tensor(mask)[None]) == pytest.approx(20.0)


def test_dice():
    a = np.array([[1, 1], [0, 0]])
    b = np.array([[1, 0], [0, 0]])
    assert M.dice(a, b) == pytest.approx(2 * 1 / 3)
    assert M.dice(a, a) == 1.0 and M.dice(a, 1 - a) == 0.0
    assert M.dice(np.zeros(3), np.zeros(3)) == 1.0


def test_ssim_matches_skimage_gaussian():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    b = np.clip(a + 0.1 * rng.standard_normal((32, 32)), 0, 1)
    ref = structural_similarity(a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert M.ssim(a, b) == pytest.approx(ref, rel=1e-6)
    assert M.ssim(a, b) != pytest.approx(structural_similarity(a, b, data_range=1.0), rel=1e-3)   # not the 7x7 box
    assert M.ssim(a, a) == pytest.approx(1.0)


def test_masked_ssim_and_mae_average_inside_the_mask_only():
    rng = np.random.default_rng(2)
    a = rng.random((40, 40))
    b = a.copy()
    b[:, :20] = rng.random((40, 20))                 # left half changed, right half identical
    right = np.zeros((40, 40), bool)
    right[:, 28:] = True                             # far enough from the change for the 11-wide window
    assert M.ssim(b, a, right) == pytest.approx(1.0)
    assert M.ssim(b, a) < 0.8
    assert M.mae(b, a, right) == 0.0 and M.mae(b, a) == pytest.approx(np.abs(b - a).mean())
    assert np.isnan(M.ssim(b, a, np.zeros((40, 40)))) and np.isnan(M.mae(b, a, np.zeros((40, 40))))


def test_activation_bytes_counts_saved_tensors():
    w = torch.ones(3, requires_grad=True)
    x = torch.ones(1000, 3)
    # d(x*w)/dw needs x: autograd keeps the 1000x3 input (float32), nothing else
    assert activation_bytes(lambda: (x * w).sum()) == 3000 * 4
    x.requires_grad_(True)                           # now d/dx needs w as well
    assert activation_bytes(lambda: (x * w).sum()) == (3000 + 3) * 4
    with torch.no_grad():
        assert activation_bytes(lambda: (x * w).sum()) == 0


def _smooth_noise(sigma, n=16, side=128, seed=0):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return np.stack([ndimage.gaussian_filter(rng.normal(size=(side, side)), sigma) for _ in range(n)])


@pytest.mark.parametrize("sigma", [0, 0.5, 0.8, 1, 2, 4, 8])
def test_checkerboard_ratio_is_about_one_on_smooth_noise_of_any_width(sigma):
    assert M.checkerboard_ratio(_smooth_noise(sigma)) < 1.5


def test_checkerboard_ratio_on_upsampling_and_transposed_convolutions():
    rng = np.random.default_rng(3)
    low = torch.tensor(rng.normal(size=(16, 1, 64, 64)), dtype=torch.float32)
    for mode in ("nearest", "bilinear"):                      # no period-2 pattern: low
        up = torch.nn.functional.interpolate(low, scale_factor=2, mode=mode)[:, 0].numpy()
        assert M.checkerboard_ratio(up) < 1.0, mode
    smooth = torch.tensor(_smooth_noise(2, side=64), dtype=torch.float32)[:, None]
    torch.manual_seed(0)
    tconv = torch.nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1)
    with torch.no_grad():
        artefact = tconv(smooth)[:, 0].numpy()                # uneven overlap: a period-2 gain pattern
    assert M.checkerboard_ratio(artefact) > 5
    board = np.indices((128, 128)).sum(0) % 2 * 0.2 - 0.1
    assert M.checkerboard_ratio(_smooth_noise(1) * 0.05 + board) > 20
    with pytest.raises(ValueError, match="even sides"):
        M.checkerboard_ratio(np.zeros((2, 33, 33)))


def test_diversity_ratio():
    rng = np.random.default_rng(1)
    x = rng.random((20, 16, 16))
    assert M.diversity_ratio(x, x) == pytest.approx(1.0)
    assert M.diversity_ratio(0.5 * x, x) == pytest.approx(0.5)
    collapsed = np.repeat(x[:1], 20, 0)
    assert M.diversity_ratio(collapsed, x) == 0.0


def test_error_removed():
    truth = np.zeros((2, 4, 4))
    x = truth.copy()
    x[:, :2, :2] = 1.0                                   # the lesion: +1 on four pixels per image
    region = x > 0
    assert M.error_removed(truth, x, truth, region) == 1.0       # restored exactly
    assert M.error_removed(x, x, truth, region) == 0.0           # did nothing
    assert M.error_removed(0.25 * x, x, truth, region) == pytest.approx(0.75)
    assert M.error_removed(2 * x, x, truth, region) == pytest.approx(-1.0)   # made it worse
    assert np.isnan(M.error_removed(x, x, truth, np.zeros_like(x)))


def test_surrounding_ring_and_lesion_gap_on_hand_made_images():
    m = np.zeros((2, 12, 12), bool)
    m[0, 4:6, 4:6] = True                                      # a 2x2 lesion on the first slice only
    ring = M.surrounding(m, 1)
    assert ring[0].sum() == 16 - 4 and not ring[1].any() and not (ring & m).any()   # the 4x4 square less the lesion
    assert M.surrounding(m, 2)[0].sum() == 36 - 4 and not M.surrounding(m, 0).any()
    within = np.ones_like(m)
    within[:, :, 6:] = False                                   # tissue on the left only
    assert M.surrounding(m, 1, within)[0].sum() == 8          # columns 3..5 of rows 3..6, less the lesion
    x = np.full((2, 12, 12), 0.5)
    x[m] = 0.8
    c = M.lesion_contrast(x, m, ring)
    assert c["gap"] == pytest.approx(0.3) and np.isnan(c["cnr"])   # flat tissue: a gap, but no noise to divide by
    assert np.isnan(M.lesion_contrast(x, np.zeros_like(m), ring)["gap"])


def test_contrast_to_noise_on_hand_made_images():
    rng = np.random.default_rng(0)
    x = 0.4 + 0.05 * rng.standard_normal((4, 32, 32))           # tissue: mean 0.4, sd 0.05
    tissue = np.ones_like(x, bool)
    tissue[:, :, :4] = False                                   # a background strip that must not count
    x[:, :, :4] = 0.0
    lesion = np.zeros_like(tissue)
    lesion[:, 10:16, 10:16] = True
    bright, dark, hidden = x.copy(), x.copy(), x.copy()
    bright[lesion] += 0.25                                     # 5 sd brighter
    dark[lesion] -= 0.10                                       # 2 sd darker
    bg = tissue & ~lesion
    assert M.contrast_to_noise(bright, lesion, tissue) == pytest.approx(
        (bright[lesion].mean() - bright[bg].mean()) / bright[bg].std())
    assert M.contrast_to_noise(bright, lesion, tissue) == pytest.approx(5.0, abs=0.4)
    assert M.contrast_to_noise(dark, lesion, tissue) == pytest.approx(-2.0, abs=0.4)
    assert abs(M.contrast_to_noise(hidden, lesion, tissue)) < 0.5       # invisible in the intensity: scores badly
    # the background strip is excluded: counting it as tissue would inflate the sd and shrink the CNR
    assert M.contrast_to_noise(bright, lesion, np.ones_like(tissue)) < 3
    assert np.isnan(M.contrast_to_noise(bright, np.zeros_like(lesion), tissue))
    assert np.isnan(M.contrast_to_noise(np.full_like(x, 0.4), lesion, tissue))


def test_intensity_detection_scores_brightness_or_darkness_by_the_lesions_sign():
    rng = np.random.default_rng(0)
    tissue = np.zeros((4, 32, 32), bool); tissue[:, 4:28, 4:28] = True
    lesion = np.zeros_like(tissue); lesion[:, 10:16, 10:16] = True
    x = np.where(tissue, 0.5 + 0.02 * rng.standard_normal(tissue.shape), 0.0).astype(np.float32)
    bright, dark = np.where(lesion, 0.9, x), np.where(lesion, 0.1, x)
    b, d = M.intensity_detection(bright, lesion, tissue), M.intensity_detection(dark, lesion, tissue)
    assert not b["lesion_darker"] and d["lesion_darker"]
    assert b["auprc"] == pytest.approx(1.0) and d["auprc"] == pytest.approx(1.0)   # each found by its own sign
    assert M.detection(dark, lesion, tissue)["auprc"] < 0.2                         # brightness would miss it
    hidden = np.where(lesion, x, x)                                                 # no lesion contrast at all
    assert M.intensity_detection(hidden, lesion, tissue)["auprc"] < 0.2             # about the prevalence: says no
    assert M.intensity_detection(bright, lesion)["auprc"] == pytest.approx(1.0)     # region defaults to the tissue
