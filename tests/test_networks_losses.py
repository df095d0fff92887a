"""Network shapes and parameter counts from the papers' tables; losses on hand-made tensors."""
import math

import pytest
import torch

from pseudohealthy_lib import losses as L
from pseudohealthy_lib.networks import PatchGAN, ResnetGenerator, UnetGenerator
from pseudohealthy_lib.networks.generators import _up


def conv(k, cin, cout):
    return k * k * cin * cout + cout


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet_generator_matches_antgan_table_1():
    g = ResnetGenerator(shortcut=True)
    expected = (conv(7, 1, 64) + conv(3, 64, 128) + conv(3, 128, 256)            # Conv1-3
                + 9 * 2 * conv(3, 256, 256)                                      # RB x 9 (Table II)
                + conv(3, 256, 256) + conv(3, 256, 64) + conv(7, 64, 1))         # Deconv1-2, Conv4
    assert n_params(g) == expected == 11_734_401
    feats = {}
    hooks = [g.body[i].register_forward_hook(lambda m, a, o, i=i: feats.__setitem__(i, o.shape)) for i in (3, 6, 9, 18, 21, 24)]
    y = g(torch.zeros(1, 1, 240, 240))
    assert y.shape == (1, 1, 240, 240)
    assert [feats[i][1:] for i in (3, 6, 9, 18, 21, 24)] == [
        (64, 240, 240), (128, 120, 120), (256, 60, 60), (256, 60, 60), (256, 120, 120), (64, 240, 240)]
    for h in hooks:
        h.remove()


def test_global_shortcut_passes_the_input_through():
    g = ResnetGenerator(ngf=8, n_blocks=1, shortcut=True)
    last = g.body[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    x = torch.rand(2, 1, 32, 32) * 1.6 - 0.8
    assert torch.allclose(g(x), torch.tanh(x))          # residual branch silent: output = tanh(x)
    g.shortcut = False
    assert torch.allclose(g(x), torch.zeros_like(x))


def test_resize_upsampling_variant_has_same_shapes():
    g = ResnetGenerator(ngf=8, n_blocks=2, upsample="resize")
    assert g(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError, match="unknown upsampling"):
        ResnetGenerator(upsample="pixelshuffle")


def test_patchgan_matches_antgan_table_3():
    d = PatchGAN()
    assert d(torch.zeros(1, 1, 240, 240)).shape == (1, 1, 30, 30)
    expected = conv(4, 1, 64) + conv(4, 64, 128) + conv(4, 128, 256) + conv(4, 256, 256) + conv(4, 256, 1)
    assert n_params(d) == expected == 1_709_761
    ref = PatchGAN(conv4_width=512)                        # the pix2pix / CycleGAN 70x70 PatchGAN: Conv4 8 ndf
    assert ref(torch.zeros(1, 1, 240, 240)).shape == (1, 1, 30, 30)
    assert n_params(ref) == conv(4, 1, 64) + conv(4, 64, 128) + conv(4, 128, 256) + conv(4, 256, 512) + conv(4, 512, 1) == 2_762_689


def test_a_deeper_patchgan_sees_a_larger_patch():
    torch.manual_seed(0)
    table3, deeper = PatchGAN(ndf=8).eval(), PatchGAN(ndf=8, n_down=4).eval()
    assert deeper(torch.zeros(1, 1, 128, 128)).shape == (1, 1, 8, 8)
    assert [k for k in table3.state_dict()] == [k for k in PatchGAN(ndf=8, n_down=3).state_dict()]
    # the receptive field is the convolutions' (instance norm's statistics reach everywhere): drop the norms
    local = lambda d: torch.nn.Sequential(*[m for m in d.body if not isinstance(m, torch.nn.InstanceNorm2d)])  # noqa: E731
    x = torch.randn(1, 1, 128, 128)
    far = x.clone()
    far[..., 100, 100] += 10.0                             # 60 px from the score of the patch around (40, 40)
    d3 = (local(table3)(far) - local(table3)(x)).abs()[0, 0]   # 16x16 map: cell (5, 5) is centred near (40, 40)
    d4 = (local(deeper)(far) - local(deeper)(x)).abs()[0, 0]   # 8x8 map: cell (2, 2)
    assert d3[5, 5] == 0 and d4[2, 2] > 0                  # only the deeper critic's patch reaches 60 px away
    with pytest.raises(ValueError, match="n_down"):
        PatchGAN(n_down=0)


def test_unet_8_down_8_up():
    u = UnetGenerator(num_downs=8)
    assert len(u.down) == 8 and len(u.up) == 8
    assert u(torch.zeros(1, 1, 256, 256)).shape == (1, 1, 256, 256)
    dropouts = [j for j, blk in enumerate(u.up) if any(isinstance(m, torch.nn.Dropout) for m in blk)]
    assert dropouts == []                                  # no dropout unless asked (the reference CycleGAN)
    u = UnetGenerator(num_downs=8, dropout=0.5)
    dropouts = [j for j, blk in enumerate(u.up) if any(isinstance(m, torch.nn.Dropout) for m in blk)]
    assert dropouts == [1, 2, 3]                           # pix2pix: the 8 - 5 blocks after the bottleneck
    assert all(isinstance(blk[0], torch.nn.LeakyReLU) for blk in list(u.down)[1:])
    with pytest.raises(ValueError, match="divisible by 256"):
        u(torch.zeros(1, 1, 240, 240))
    assert UnetGenerator(num_downs=7)(torch.zeros(1, 1, 128, 128)).shape == (1, 1, 128, 128)


def test_resize_upsampling_cannot_print_a_checkerboard():
    """A flat input through a stride-2 transposed conv with random weights comes out with a 2-pixel
    period (each output parity sees other kernel taps); through resize + conv it stays flat."""
    torch.manual_seed(0)
    flat = torch.ones(1, 4, 8, 8)
    for kernel in (3, 4):
        y = torch.nn.Sequential(*_up(4, 1, "transpose", kernel))(flat)[0, 0, 2:-2, 2:-2]
        assert y.shape == (12, 12) and (y[0::2, 0::2] - y[1::2, 1::2]).abs().min() > 1e-4
    y = torch.nn.Sequential(*_up(4, 1, "resize"))(flat)[0, 0]
    assert y.shape == (16, 16) and torch.allclose(y, y[0, 0].expand_as(y), atol=1e-6)
    u = UnetGenerator(num_downs=5, ngf=4, upsample="resize")
    assert u(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in u.modules())
    plain = UnetGenerator(num_downs=5, ngf=4)
    assert [k for k in plain.state_dict()][-2:] == ["up.4.1.weight", "up.4.1.bias"]   # checkpoints' keys unchanged
    with pytest.raises(ValueError, match="unknown upsampling 'bilinear'"):
        UnetGenerator(num_downs=5, upsample="bilinear")


def test_lsgan_and_vanilla_gan_losses():
    pred = torch.tensor([[[[0.5, 1.0], [0.0, 2.0]]]])
    assert L.gan_loss(pred, True).item() == pytest.approx((0.25 + 0 + 1 + 1) / 4)
    assert L.gan_loss(pred, False).item() == pytest.approx((0.25 + 1 + 0 + 4) / 4)
    logit = torch.zeros(1, 1, 1, 1)                        # D = sigmoid(0) = 0.5
    assert L.gan_loss(logit, True, "vanilla").item() == pytest.approx(math.log(2))
    assert L.gan_loss(torch.full((1, 1, 1, 1), 20.0), True, "vanilla").item() < 1e-8
    with pytest.raises(ValueError):
        L.gan_loss(pred, True, "wgan")


def test_cycle_and_identity_losses():
    a, b = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])
    assert L.cycle_loss(b, a).item() == pytest.approx(1.0)
    assert L.identity_loss(a, a).item() == 0


def test_anomaly_mask_loss_ignores_the_lesion():
    x = torch.zeros(1, 1, 2, 2)
    g = torch.tensor([[[[3.0, 1.0], [0.0, 0.0]]]])         # changes pixel (0,0) by 3 and (0,1) by 1
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])      # lesion at (0,0): free to change
    assert L.anomaly_mask_loss(g, x, mask).item() == pytest.approx(1 / 4)
    assert L.anomaly_mask_loss(g, x, torch.ones_like(mask)).item() == 0


def test_dilated_mask_frees_the_lesion_border():
    mask = torch.zeros(1, 1, 7, 7)
    mask[..., 3, 3] = 1
    assert torch.equal(L.dilate(mask, 0), mask)
    grown = L.dilate(mask, 1)
    assert grown.sum() == 9 and grown[..., 2:5, 2:5].sum() == 9          # a 3x3 square around the pixel
    assert L.dilate(mask, 2).sum() == 25
    x, g = torch.zeros(1, 1, 7, 7), torch.zeros(1, 1, 7, 7)
    g[..., 3, 4] = 1.0                                                 # a change next to the lesion
    assert L.anomaly_mask_loss(g, x, mask).item() == pytest.approx(1 / 49)
    assert L.anomaly_mask_loss(g, x, L.dilate(mask, 1)).item() == 0    # free once the mask is dilated


def test_paste_lesion_cuts_the_mask_to_the_healthy_head():
    lesioned, healthy = torch.full((1, 1, 4, 4), 0.9), torch.full((1, 1, 4, 4), -0.3)
    healthy[..., :, 0] = -1                                            # background column
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 1:3, 0:2] = 1                                            # a lesion half in the air
    pasted, m = L.paste_lesion(lesioned, mask, healthy)
    assert m.sum() == 2 and m[..., 1:3, 1].sum() == 2                  # the two pixels inside the head
    assert torch.equal(pasted, torch.where(m.bool(), lesioned, healthy))
    assert torch.equal(L.paste_lesion(lesioned, torch.zeros_like(mask), healthy)[0], healthy)   # no lesion: x_b itself


def test_paste_lesion_grow_takes_the_border_but_answers_with_the_lesion_mask():
    lesioned, healthy = torch.full((1, 1, 7, 7), 0.9), torch.full((1, 1, 7, 7), -0.3)
    healthy[..., :, 0] = -1                                            # background column
    mask = torch.zeros(1, 1, 7, 7)
    mask[..., 3, 3] = 1
    pasted, m = L.paste_lesion(lesioned, mask, healthy, grow=1)
    assert torch.equal(m, mask)                                        # S's answer: the lesion itself
    assert (pasted == 0.9).sum() == 9 and (pasted[..., 2:5, 2:5] == 0.9).all()   # the 3x3 cut went over
    mask[..., 3, 3], mask[..., 3, 1] = 0, 1                            # next to the background column
    pasted, _ = L.paste_lesion(lesioned, mask, healthy, grow=1)
    assert (pasted[..., :, 0] == -1).all() and (pasted == 0.9).sum() == 6     # never into the air
    assert torch.equal(L.lesion_cut(mask, healthy, grow=1), (pasted == 0.9).float())    # the cut is what was pasted


def test_cyclegan_paste_term_asks_g_ab_to_give_back_the_healthy_slice():
    """lambda_paste: G_AB's output on a real lesion pasted over x_b is compared with x_b (Eq. P);
    the pasted images go through G_AB in the same call as the others, without changing them."""
    from pseudohealthy_lib.engine import TrainConfig
    from pseudohealthy_lib.methods import get_method
    from pseudohealthy_lib.utils import OptionError
    torch.manual_seed(0)
    opts = {"ngf": 4, "n_blocks": 1, "ndf": 4, "init": "pytorch"}
    antgan = get_method("antgan")
    with_paste, without = (antgan(TrainConfig(method="antgan", options=opts | {"lambda_paste": lam})) for lam in (10.0, 0.0))
    without.load_state_dict(with_paste.state_dict())
    batch = with_paste.example_batch(2, 32)
    a, b = with_paste(batch), without(batch)
    assert torch.allclose(a["fake_B"], b["fake_B"], atol=1e-6) and torch.allclose(a["rec_B"], b["rec_B"], atol=1e-6)
    pasted, _ = L.paste_lesion(batch["A"], batch["A_mask"], batch["B"])
    assert torch.allclose(a["unpasted"], with_paste.nets["G_AB"](pasted), atol=1e-6)
    terms = with_paste.generator_losses(batch, a)
    assert terms["paste"].item() == pytest.approx(10 * (a["unpasted"] - batch["B"]).abs().mean().item())
    assert "paste" not in without.generator_losses(batch, b)
    assert with_paste.generator_losses(batch, a | {"unpasted": batch["B"]})["paste"] == 0    # a perfect removal costs nothing
    with pytest.raises(OptionError, match="lambda_paste pastes lesions over healthy slices: it needs domain_b='healthy'"):
        get_method("cyclegan")(TrainConfig(method="cyclegan", options={"lambda_paste": 1.0, "domain_b": "mask"}))


def test_soft_dice_loss():
    t = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert L.soft_dice_loss(t, t).item() == pytest.approx(0, abs=1e-6)
    assert L.soft_dice_loss(1 - t, t).item() == pytest.approx(1, abs=1e-6)
    half = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert L.soft_dice_loss(half, t).item() == pytest.approx(1 - 2 * 1 / 3, abs=1e-6)
    empty = torch.zeros(1, 1, 2, 2)
    assert L.soft_dice_loss(empty, empty).item() == pytest.approx(0, abs=1e-6)


def test_segmentation_loss():
    logits = torch.zeros(1, 1, 2, 2)
    assert L.segmentation_loss(logits, torch.ones(1, 1, 2, 2)).item() == pytest.approx(math.log(2))
    two = torch.zeros(1, 2, 2, 2)
    assert L.segmentation_loss(two, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(math.log(2))
    sure = torch.tensor([[[[-9.0, 9.0]]], [[[9.0, -9.0]]]])         # image 0 right, image 1 wrong
    target = torch.tensor([[[[0.0, 1.0]]], [[[0.0, 1.0]]]])
    assert L.segmentation_loss(sure, target, weight=torch.tensor([1.0, 0.0])).item() < 1e-3
    assert L.segmentation_loss(sure, target, weight=torch.tensor([0.0, 1.0])).item() == pytest.approx(9, abs=1e-3)
    # soft Dice of image 1: p = (1, 0) against (0, 1): no overlap, Dice loss 1
    assert (L.segmentation_loss(sure, target, 2.0, torch.tensor([0.0, 1.0])).item()
            == pytest.approx(9 + 2, abs=1e-3))


def test_confidence_loss_uses_confident_pixels_as_labels():
    logits = torch.tensor([[[[4.0, 0.5], [-3.0, 1.0]]]])    # p = .982, .622, .047, .731
    pseudo = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])     # only p > 0.9 becomes lesion
    assert torch.equal(L.pseudo_labels(logits, 0.9), pseudo)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, pseudo)
    assert L.confidence_loss(logits, 0.9).item() == pytest.approx(expected.item())
    two = torch.cat([torch.zeros_like(logits), logits], 1)     # softmax: the same probabilities in channel 1
    assert torch.equal(L.pseudo_labels(two, 0.9), pseudo)
    assert L.confidence_loss(two, 0.9).item() == pytest.approx(expected.item(), rel=1e-5)
    logits.requires_grad_(True)
    L.confidence_loss(logits, 0.9).backward()
    assert logits.grad[0, 0, 0, 1] > 0                     # the unsure pixel is pushed towards 0


def test_masked_l1_is_the_mean_error_over_the_mask_alone():
    out, target = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, :2, :2] = 1                                      # 4 pixels in image 0
    mask[1, 0, 0, 0] = 1                                        # 1 pixel in image 1
    out[0, 0, 0, 0], out[1, 0, 0, 0], out[1, 0, 3, 3] = 1.0, -3.0, 9.0     # the last is outside the mask
    assert L.masked_l1(out, target, mask).item() == pytest.approx((1 + 3) / 5)
    assert L.masked_l1(out, target, torch.zeros_like(mask)).item() == 0      # an empty mask: no error, no NaN
