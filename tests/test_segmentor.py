"""The lesion segmentor that judges healthiness: its losses, options and post-processing."""
import pytest
import torch

from pseudohealthy_lib import losses as L
from pseudohealthy_lib import presets
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.methods.segmentor import Segmentor, WithTwins


def test_batch_dice_penalises_flags_on_lesion_free_images():
    target = torch.zeros(2, 1, 8, 8)
    target[0, :, 2:5, 2:5] = 1                               # one image with a lesion, one without
    prob = target.clone()
    prob[1, :, 0, 0] = 0.3                                   # a faint false flag on the lesion-free image

    def grad_on_flag(per_image):
        p = prob.clone().requires_grad_(True)
        L.soft_dice_loss(p, target, per_image=per_image).backward()
        return float(p.grad[1, 0, 0, 0])

    # per image, the lesion-free image's loss is ~1 for any flag: almost no gradient against it
    assert abs(grad_on_flag(True)) < 1e-4
    # pooled over the batch, the flag raises the loss and the gradient pushes it down
    assert grad_on_flag(False) > 0.01
    assert float(L.soft_dice_loss(target, target, per_image=False)) == pytest.approx(0.0, abs=1e-6)


def _segmentor(**options):
    return Segmentor(presets.config("segmentor", "fast", options={"unet_downs": 5, **options}))


def test_predict_mask_drops_small_components():
    seg = _segmentor(min_size=5)
    prob = torch.zeros(1, 1, 32, 32)
    prob[..., 2:4, 2:4] = 1                                  # 4 pixels: a speck
    prob[..., 10:15, 10:15] = 1                              # 25 pixels: a lesion
    seg.predict = lambda x: prob
    m = seg.predict_mask(torch.zeros(1, 1, 32, 32))[0, 0].numpy()
    assert m.sum() == 25 and not m[2:4, 2:4].any()
    seg.opt["min_size"] = 0
    assert seg.predict_mask(torch.zeros(1, 1, 32, 32)).sum() == 29


def test_augment_moves_image_and_mask_together():
    torch.manual_seed(0)
    img = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    mask = (img % 7 == 0).float()
    for _ in range(8):
        a, m = Segmentor.augment(img, mask)
        assert torch.equal(m, (a % 7 == 0).float())          # the mask still marks the same pixels
        assert sorted(a.flatten().tolist()) == sorted(img.flatten().tolist())


def test_healthy_twins_add_lesion_free_copies(tiny_prepared):
    data = load_prepared(tiny_prepared)
    seg = _segmentor(healthy_twins=True)
    ds = seg.dataset(data, "train")
    assert isinstance(ds, WithTwins)
    n_lesion = int((data.labels[data.select("train")] == 1).sum())
    assert len(ds) == len(data.select("train")) + n_lesion
    twin = ds[len(ds) - 1]
    assert twin["label"] == 0 and twin["mask"].sum() == 0 and torch.equal(twin["image"], twin["healthy"])
    data.healthy = None
    with pytest.raises(ValueError, match="healthy ground truth"):
        seg.dataset(data, "train")
