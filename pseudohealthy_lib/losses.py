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


def masked_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean ``|output - target|`` over the pixels where ``mask`` (B, 1, H, W) is 1, all images of
    the batch together (0 for an empty mask): an error that does not shrink with the region's area."""
    return (mask * (output - target)).abs().sum() / mask.sum().clamp_min(1)


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary mask (B, 1, H, W) grown by ``pixels`` in every direction (a square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, 2 * pixels + 1, stride=1, padding=pixels)


def head_mask(x: torch.Tensor) -> torch.Tensor:
    """1 on the pixels of ``x`` (images in [-1, 1]) above the background value -1, else 0."""
    return (x > -1 + 1e-3).to(x.dtype)


def lesion_cut(mask: torch.Tensor, healthy: torch.Tensor, grow: int = 0) -> torch.Tensor:
    """The region :func:`paste_lesion` takes from the lesioned image (B, 1, H, W): ``mask`` cut to
    ``healthy``'s head, grown by ``grow`` pixels, and cut to the head again."""
    head = head_mask(healthy)
    return dilate(mask.to(healthy.dtype) * head, grow) * head


def paste_lesion(lesioned: torch.Tensor, mask: torch.Tensor, healthy: torch.Tensor,
                 grow: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A real lesion cut out of ``lesioned`` with its ``mask`` and pasted over ``healthy`` (all
    (B, 1, H, W), images in [-1, 1]): the input of a supervised removal task whose answer is
    ``healthy``. The mask is first cut to ``healthy``'s head (pixels above the background -1), so
    no lesion is pasted into the air. ``grow`` > 0 cuts the lesion out with its mask dilated by
    that many pixels, so that the soft border a lesion leaves just outside its label travels with
    it. Returns ``(pasted, m)``: ``pasted = m' * lesioned + (1 - m') * healthy`` with ``m'`` the
    (grown) cut, and ``m`` the lesion's own mask inside the head, the answer for a segmentor."""
    cut = lesion_cut(mask, healthy, grow)
    return cut * lesioned + (1 - cut) * healthy, mask.to(healthy.dtype) * head_mask(healthy)


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


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, lambda_dice: float = 0.0,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of a segmentor's ``logits`` against a 0/1 ``target`` (B, 1, H, W), plus
    ``lambda_dice`` times the soft Dice loss of its lesion probability, per image, then averaged
    over the batch (or weighted by ``weight`` (B,): images of weight 0 do not count).

    One logit channel: binary (sigmoid); several: softmax over classes, the lesion being class 1
    (an integer target (B, H, W) works too).
    """
    if logits.shape[1] == 1:
        ce = F.binary_cross_entropy_with_logits(logits, target.float(), reduction="none").flatten(1).mean(1)
        prob = torch.sigmoid(logits)
    else:
        labels = (target[:, 0] if target.dim() == logits.dim() else target).long()
        ce = F.cross_entropy(logits, labels, reduction="none").flatten(1).mean(1)
        prob = logits.softmax(1)[:, 1:2]
    if lambda_dice:
        t = target.float().reshape(prob.shape)
        inter, denom = (prob * t).flatten(1).sum(1), (prob + t).flatten(1).sum(1)
        ce = ce + lambda_dice * (1 - (2 * inter + 1e-6) / (denom + 1e-6))
    if weight is None:
        return ce.mean()
    return (ce * weight).sum() / weight.sum().clamp_min(1e-12)


def pseudo_labels(logits: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """SMILE Eq. (4): P_L = 1 where the segmentor's lesion probability exceeds ``threshold``
    (epsilon), else 0; (B, 1, H, W), without gradient. Binary or softmax (lesion = channel 1) logits."""
    with torch.no_grad():
        p = torch.sigmoid(logits) if logits.shape[1] == 1 else logits.softmax(1)[:, 1:2]
        return (p > threshold).float()


def confidence_loss(logits: torch.Tensor, threshold: float = 0.9, weight: torch.Tensor | None = None,
                    lambda_dice: float = 0.0) -> torch.Tensor:
    """SMILE Eq. (5): the segmentor's loss against its own confident pixels (Eq. 4), which pushes
    it to be surer of them on unlabelled images; ``weight`` and ``lambda_dice`` as in
    :func:`segmentation_loss`."""
    return segmentation_loss(logits, pseudo_labels(logits, threshold), lambda_dice, weight)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al.): the mean over the batch of ``(norm(grad D(x^)) - 1)^2`` at random
    points ``x^ = e * real + (1 - e) * fake`` between the two batches, e ~ U(0, 1) per image.

    A critic that outputs a map of patch scores is read as their mean, D(x) = mean(critic(x)).
    Computed in float32 (outside autocast); it keeps the graph, so it trains the critic.
    """
    e = torch.rand(len(real), *[1] * (real.dim() - 1), device=real.device)
    between = (e * real.detach().float() + (1 - e) * fake.detach().float()).requires_grad_(True)
    with torch.autocast(real.device.type, enabled=False):
        score = critic(between).flatten(1).mean(1)
        grad, = torch.autograd.grad(score.sum(), between, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
