"""Loss functions of the four papers, each on (B, C, H, W) tensors, returning a scalar.

Equation numbers refer to ANT-GAN (Sun et al.) unless another paper is named.
Pixel losses are *means* over pixels, so their weights (lambda) do not depend on image size;
a squared norm summed over an H x W image equals the mean times H*W.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gan_loss(pred: torch.Tensor, real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Adversarial loss of a discriminator output map ``pred`` against a real/fake target.

    ``'lsgan'``: least squares, mean (D(x) - t)^2 with t = 1 for real and 0 for fake: the
    PatchGAN regression target of ANT-GAN's implementation section and LSGAN (Mao et al.).
    ``'vanilla'``: the log-loss GAN of Eq. (3), as binary cross-entropy on logits
    (-ln D(x) for real, -ln(1 - D(x)) for fake, D = sigmoid(pred)).
    A generator uses ``real=True`` on its fakes (the non-saturating form).
    """
    target = torch.ones_like(pred) if real else torch.zeros_like(pred)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, target)
    raise ValueError(f"unknown GAN loss '{mode}': use 'lsgan' or 'vanilla'")


def cycle_loss(reconstruction: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """Eq. (4), one direction: mean ``|G_back(G(x)) - x|``."""
    return F.l1_loss(reconstruction, original)


def anomaly_mask_loss(fake_normal: torch.Tensor, abnormal: torch.Tensor, mask: torch.Tensor,
                      power: int = 2) -> torch.Tensor:
    """Eq. (2): mean ((1 - M) * (G_A2N(x_a) - x_a))^2, the penalty for changing healthy pixels.

    ``mask`` is 1 on the lesion (where changes are free) and 0 elsewhere, or a soft map in
    [0, 1]. ``power=1``: the mean absolute change instead (PHS-GAN's Eq. 7 in this library).
    """
    return ((1 - mask) * (fake_normal - abnormal)).abs().pow(power).mean()


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary mask (B, 1, H, W) grown by ``pixels`` in every direction (a square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


def paste_lesion(lesioned: torch.Tensor, mask: torch.Tensor, healthy: torch.Tensor,
                 grow: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A real lesion cut out of ``lesioned`` with its ``mask`` and pasted over ``healthy`` (all
    (B, 1, H, W), images in [-1, 1]): the input of a supervised removal task whose answer is
    ``healthy``. The mask is first cut to ``healthy``'s head (pixels above the background -1), so
    no lesion is pasted into the air. ``grow`` > 0 cuts the lesion out with its mask dilated by
    that many pixels, so that the soft border a lesion leaves just outside its label travels with
    it. Returns ``(pasted, m)``: ``pasted = m' * lesioned + (1 - m') * healthy`` with ``m'`` the
    (grown) cut, and ``m`` the lesion's own mask inside the head, the answer for a segmentor."""
    head = (healthy > -1 + 1e-3).to(healthy.dtype)
    m = mask.to(healthy.dtype) * head
    cut = dilate(m, grow) * head
    return cut * lesioned + (1 - cut) * healthy, m


def identity_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``|G(y) - y|``: a generator fed an image of its target domain should leave it alone."""
    return F.l1_loss(output, target)


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, eps: float = 1e-6,
                   per_image: bool = True) -> torch.Tensor:
    """``1 - 2|P.T| / (|P| + |T|)``. ``prob`` in [0, 1].

    ``per_image=True``: computed per image and averaged over the batch; an image with an empty
    target scores ~1 unless its prediction is empty to within ``eps``, so lesion-free images
    add a constant and almost no gradient. ``per_image=False`` ("batch Dice", as nnU-Net offers):
    the sums run over the whole batch, so lesion-free images in a batch are penalised for
    every pixel they flag, through the denominator.
    """
    dims = tuple(range(1, prob.dim())) if per_image else tuple(range(prob.dim()))
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1 - (2 * inter + eps) / (denom + eps)).mean()


def segmentation_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of a segmentor. One logit channel: binary (sigmoid) with a 0/1 mask;
    several channels: softmax over classes with an integer (B, H, W) or (B, 1, H, W) target."""
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, target.float())
    if target.dim() == logits.dim():
        target = target[:, 0]
    return F.cross_entropy(logits, target.long())


def confidence_loss(logits: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """SMILE Eqs. (4)-(5): cross-entropy of the segmentor against its own confident pixels.

    Pseudo-label P_L = 1 where the predicted lesion probability exceeds ``threshold`` (epsilon),
    else 0; the loss pushes the segmentor to be more certain on unlabelled images. Binary
    (one logit channel) or softmax (lesion = channel 1) segmentors.
    """
    with torch.no_grad():
        p = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)[:, 1:2]
        pseudo = (p > threshold).float()
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits, pseudo)
    return F.cross_entropy(logits, pseudo[:, 0].long())
