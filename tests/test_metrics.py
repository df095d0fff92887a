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


def test_ssim_matches_skimage():
    rng = np.random.default_rng(1)
    a = rng.random((32, 32))
    b = np.clip(a + 0.1 * rng.standard_normal((32, 32)), 0, 1)
    assert M.ssim(a, b) == pytest.approx(structural_similarity(a, b, data_range=1.0))
    assert M.ssim(a, a) == pytest.approx(1.0)


def test_activation_bytes_counts_saved_tensors():
    w = torch.ones(3, requires_grad=True)
    x = torch.ones(1000, 3)
    # d(x*w)/dw needs x: autograd keeps the 1000x3 input (float32), nothing else
    assert activation_bytes(lambda: (x * w).sum()) == 3000 * 4
    x.requires_grad_(True)                           # now d/dx needs w as well
    assert activation_bytes(lambda: (x * w).sum()) == (3000 + 3) * 4
    with torch.no_grad():
        assert activation_bytes(lambda: (x * w).sum()) == 0


def test_checkerboard_ratio():
    rng = np.random.default_rng(0)
    smooth = rng.normal(size=(64, 64, 64))
    assert 0.7 < M.checkerboard_ratio(smooth) < 1.4                 # white noise: flat spectrum
    board = np.indices((64, 64)).sum(0) % 2 * 0.2 - 0.1            # period-2 pattern
    assert M.checkerboard_ratio(smooth * 0.05 + board[None]) > 20


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
