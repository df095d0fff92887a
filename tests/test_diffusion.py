"""The diffusion model: its noising (Eq. 2), its samplers (Eqs. 4-6) on a case with a known
answer, its option checks, and how evaluate() hands an inpainter the lesion masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.engine import TrainConfig
from pseudohealthy_lib.evaluate import evaluate
from pseudohealthy_lib.methods import Diffusion
from pseudohealthy_lib.methods.diffusion import HealthyImages
from pseudohealthy_lib.utils import OptionError


def model(**options) -> Diffusion:
    opts = {"channels": 8, "levels": 2, "attention": False, "sample_steps": 20} | options
    return Diffusion(TrainConfig(method="diffusion", size=16, options=opts)).eval()


class Oracle(nn.Module):
    """The best possible noise predictor when every training image is ``target``: from Eq. (2),
    eps = (x_t - sqrt(abar_t) target) / sqrt(1 - abar_t)."""

    def __init__(self, target, alphas_cumprod):
        super().__init__()
        self.target, self.acp = target, alphas_cumprod

    def forward(self, x, t):
        a = self.acp[t].view(-1, 1, 1, 1).to(x.dtype)
        return (x - a.sqrt() * self.target) / (1 - a).sqrt()


class Blind(nn.Module):
    """A noise predictor that never finds any noise."""

    def forward(self, x, t):
        return torch.zeros_like(x)


def with_oracle(m: Diffusion, target) -> Diffusion:
    m.nets["ema"] = Oracle(target, m.scheduler.alphas_cumprod.clone())
    return m


def test_noising_follows_eq_2_and_its_limits():
    m = model()
    x0, eps = torch.rand(2, 1, 16, 16) * 2 - 1, torch.randn(2, 1, 16, 16)
    acp = m.scheduler.alphas_cumprod
    for t in (0, 500, 999):
        x_t = m.scheduler.add_noise(x0, eps, torch.tensor([t, t]))
        assert torch.allclose(x_t, acp[t].sqrt() * x0 + (1 - acp[t]).sqrt() * eps, atol=1e-6)
    assert acp[0] > 0.999 and acp[-1] < 1e-4          # t = 0: the image; t = T - 1: almost pure noise


def test_samplers_recover_the_one_image_an_oracle_knows():
    target = torch.linspace(-0.8, 0.8, 256).view(1, 1, 16, 16)
    m = with_oracle(model(resample=2), target)
    x = target.clone()
    mask = torch.zeros_like(x)
    mask[..., 4:10, 5:11] = 1
    x[mask > 0] = 1.0                                      # a bright "lesion" on the known image
    out = m.inpaint(x, mask)
    grown = torch.nn.functional.max_pool2d(mask, 5, 1, 2) > 0      # mask_dilate 2
    assert torch.allclose(out[grown], target[grown], atol=1e-4)    # inside: the healthy image
    assert torch.equal(out[~grown], x[~grown])                     # outside: the input, untouched
    for level in (0.2, 0.6, 1.0):
        assert torch.allclose(m.partial(x, level), target, atol=1e-4)
    assert torch.equal(m.partial(x, 0.0), x)                      # no noise: nothing changes


def test_a_wrong_noise_predictor_does_not_recover_the_image():
    target = torch.linspace(-0.8, 0.8, 256).view(1, 1, 16, 16)
    m = with_oracle(model(), -target)                               # it believes in the negative
    mask = torch.ones_like(target)
    assert (m.inpaint(target, mask) - target).abs().mean() > 0.5
    assert (m.partial(target, 1.0) - target).abs().mean() > 0.5


def test_draws_average_the_noise_of_partial_noising_away():
    # a predictor that finds no noise leaves every draw's noise in x0_hat (Eq. 4): the output is
    # x plus noise, and the mean of k independent draws has 1/sqrt(k) of its spread
    x = torch.zeros(4, 1, 16, 16)
    m = model(sample_steps=10)
    m.nets["ema"] = Blind()
    one, eight = m.partial(x, 0.2), m.inference(draws=8).partial(x, 0.2)
    ratio = eight.std() / one.std()
    assert one.std() > 0.2 and 0.25 < ratio < 0.45               # 1 / sqrt(8) = 0.35
    assert torch.equal(m.inference(draws=8).partial(x, 0.2), eight)     # still seeded


def test_partial_noising_walks_the_grid_below_its_level_one_pass_per_step():
    m = model(timesteps=1000, sample_steps=25)
    assert m.walk(0.1) == [100, 60, 20] and m.walk(0.2) == [200, 160, 120, 80, 40, 0]
    assert m.walk(0) == [] and m.walk(1.0)[0] == 999 and len(m.walk(1.0)) == 25
    calls = []

    class Counting(Blind):
        def forward(self, x, t):
            calls.append(int(t[0]))
            return super().forward(x, t)

    m.nets["ema"] = Counting()
    m.inference(draws=2).partial(torch.zeros(1, 1, 16, 16), 0.2)
    assert calls == m.walk(0.2) * 2                         # each draw walks the same levels


def test_coarse_noise_has_unit_variance_and_its_power_at_low_frequencies():
    gen = torch.Generator().manual_seed(0)
    white, coarse = model().noise((64, 1, 32, 32), gen), model(noise_blur=2.0).noise((64, 1, 32, 32), gen)
    for eps in (white, coarse):              # the blurred noise's mean varies more (neighbours agree)
        assert abs(eps.std() - 1) < 0.03 and abs(eps.mean()) < 0.1
    def low_share(eps):                         # share of the power below a quarter of the band
        p = torch.fft.fft2(eps[:, 0]).abs().square().mean(0)
        f = torch.fft.fftfreq(32).abs()
        low = (f[:, None] < 0.125) & (f[None, :] < 0.125)
        return float(p[low].sum() / p.sum())
    assert low_share(white) < 0.1 and low_share(coarse) > 0.5           # white: 1/16 of the bins
    neighbours = (coarse[..., 1:] * coarse[..., :-1]).mean()
    assert neighbours > 0.8 and abs((white[..., 1:] * white[..., :-1]).mean()) < 0.05


def test_sampling_is_seeded_and_the_seed_matters():
    m = model()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    mask = torch.zeros_like(x)
    mask[..., 3:9, 3:9] = 1
    assert torch.equal(m.inpaint(x, mask), m.inpaint(x, mask))
    assert torch.equal(m.partial(x, 0.5), m.partial(x, 0.5))
    other = model(sample_seed=1)
    other.load_state_dict(m.state_dict())
    assert not torch.equal(other.partial(x, 0.5), m.partial(x, 0.5))


def test_translate_follows_the_mode_and_asks_for_the_mask():
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    inp = model()
    assert inp.needs_mask
    with pytest.raises(OptionError, match="needs the lesion mask"):
        inp.translate(x)
    with pytest.raises(OptionError, match="mask has shape"):
        inp.translate(x, mask=torch.zeros(1, 1, 8, 8))
    part = model(mode="partial", noise_level=0.4)
    assert not part.needs_mask and torch.equal(part.translate(x), part.partial(x, 0.4))
    # a trained model samples another way without retraining: same weights, other sampling options
    other = inp.inference(mode="partial", noise_level=0.4, sample_steps=10)
    assert other.nets is inp.nets and inp.needs_mask and not other.needs_mask
    assert other.cfg.options["noise_level"] == 0.4 and "noise_level" not in inp.cfg.options
    assert torch.equal(other.translate(x), other.partial(x))
    with pytest.raises(OptionError, match=r"\['channels'\] are not sampling options"):
        inp.inference(channels=32)
    with pytest.raises(OptionError, match="sample_steps: 2000 is more than the 1000 time steps"):
        inp.inference(sample_steps=2000)
    with pytest.raises(OptionError, match="mode: expected one of"):
        inp.inference(mode="both")


def test_options_are_checked():
    with pytest.raises(OptionError, match="sample_steps: 50 is more than the 20 time steps"):
        model(timesteps=20, sample_steps=50)
    with pytest.raises(OptionError, match="mode: expected one of"):
        model(mode="repaint")
    with pytest.raises(OptionError, match="noise_level"):
        model(noise_level=1.5)
    with pytest.raises(OptionError, match="noise_level"):
        model().partial(torch.zeros(1, 1, 16, 16), 2.0)
    with pytest.raises(OptionError, match="images of 20x20 do not suit .* the side must divide by 8"):
        model(levels=4).check_side(20)
    with pytest.raises(OptionError, match="work_size=36 does not suit"):
        model(levels=4, work_size=36).check_side(128)
    model(levels=4, work_size=64).check_side(100)              # the data's side does not matter then


def test_healthy_images_are_the_lesion_free_slices_and_optionally_the_twins(tiny_prepared):
    data = load_prepared(tiny_prepared)
    slices, twins = HealthyImages(data, "train"), HealthyImages(data, "train", twins=True)
    n_healthy = int(((data.split == "train") & (data.labels == 0)).sum())
    n_lesion = int(((data.split == "train") & (data.labels == 1)).sum())
    assert len(slices) == n_healthy and len(twins) == n_healthy + n_lesion
    first_twin = twins[n_healthy]["B"]
    j = data.select("train", 1)[0]
    assert torch.allclose(first_twin, torch.from_numpy(data.healthy[j].astype(np.float32))[None] * 2 - 1)


def test_evaluate_gives_an_inpainter_the_masks_of_its_slices(tiny_prepared):
    data = load_prepared(tiny_prepared)

    class Spy(nn.Module):
        needs_mask, kind = True, "translator"

        def __init__(self):
            super().__init__()
            self.seen = []

        def translate(self, x, direction="AB", mask=None):
            self.seen.append(mask)
            return torch.where(mask > 0, -torch.ones_like(x), x)   # paint the lesion black

    spy = Spy()
    res = evaluate(spy, data, "test")
    test = data.select("test")
    assert torch.equal(torch.cat(spy.seen[:1])[:, 0].bool(),
                       torch.from_numpy(data.masks[test][:len(spy.seen[0])] > 0))
    assert res["dice_max"] > 0.9            # the change is exactly the lesion (a real inpainter's need not be)


def test_work_size_trains_the_unet_on_smaller_images():
    from pseudohealthy_lib.engine import StepContext

    m = model(work_size=8).train()
    seen = []
    net = m.nets["eps"].forward
    m.nets["eps"].forward = lambda x, t: seen.append(x.shape) or net(x, t)
    m.training_step({"B": torch.rand(2, 1, 16, 16) * 2 - 1}, StepContext(torch.device("cpu"), None, m.optimizers(), None, 1))
    assert seen == [(2, 1, 8, 8)] and m.side() == 8 and model().side() == 16


def test_images_of_another_size_go_to_the_models_size_and_back():
    import torch.nn.functional as F

    target = torch.linspace(-0.8, 0.8, 256).view(1, 1, 16, 16)          # the model's size is 16
    m = with_oracle(model(), target)
    check = 0.1 * (torch.arange(32).view(-1, 1) + torch.arange(32)).remainder(2) * 2 - 0.1   # fine detail, mean 0 per 2x2
    x = F.interpolate(target, scale_factor=2, mode="nearest") + check       # area-averaged back: exactly target
    mask = torch.zeros_like(x)
    mask[..., 8:20, 10:22] = 1
    out = m.translate(x, mask=mask)
    region = torch.nn.functional.max_pool2d(mask, 9, 1, 4) > 0             # mask_dilate 2 model pixels = 4 here
    assert torch.equal(out[~region], x[~region])                            # outside: the full-size input
    smooth = F.interpolate(target, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(out[region], smooth[region], atol=1e-4)           # inside: the drawing, upsampled
    # partial noising adds its (upsampled) change to the full-size input: the detail survives
    other = with_oracle(model(mode="partial", noise_level=1.0), -target)
    expect = x + F.interpolate(-target - target, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(other.translate(x), expect.clamp(-1, 1), atol=1e-4)
