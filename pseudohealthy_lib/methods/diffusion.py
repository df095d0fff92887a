"""A denoising diffusion model of healthy slices, and two ways to make a slice healthy with it.

The model (Ho et al., DDPM, 2020) learns one thing: to find the noise in a noised *healthy*
slice. With T steps and a fixed schedule beta_1..beta_T, alpha_t = 1 - beta_t and
abar_t = alpha_1 ... alpha_t (MONAI's ``DDPMScheduler`` holds them)::

    q(x_t | x_0) = N( sqrt(abar_t) x_0, (1 - abar_t) I )                                     (1)
    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,           eps ~ N(0, I)                    (2)
    L = E_{x_0, t, eps} | eps - eps_theta(x_t, t) |^2        t uniform in 0..T-1              (3)

eps_theta is a small U-Net (MONAI's ``DiffusionModelUNet``: residual blocks with the time step
added to every block, self-attention only at the lowest resolution). Sampling runs (2)
backwards. DDIM (Song et al., 2021) does it deterministically and on a coarse grid of steps
t > t' (MONAI's ``DDIMScheduler.step`` with eta = 0)::

    x0_hat = ( x_t - sqrt(1 - abar_t) eps_theta(x_t, t) ) / sqrt(abar_t)                     (4)
    x_t'   = sqrt(abar_t') x0_hat + sqrt(1 - abar_t') eps_theta(x_t, t)

The model has only ever seen healthy tissue; that is the whole idea. Two uses follow.

**Inpainting with a mask** (RePaint, Lugmayr et al., 2022): start from pure noise; after each
step, overwrite the pixels outside the mask m with the *input* noised to the same level, so the
model only invents the inside, in agreement with what surrounds it::

    x_t' <- m * x_t'(model) + (1 - m) * q(x_t' | x)                                           (5)

``resample`` > 1 repeats each step that many times, going back up one step in between,
x_t = sqrt(abar_t / abar_t') x_t' + sqrt(1 - abar_t / abar_t') z (the forward process from t'
to t): the inside then gets more than one chance to agree with the outside.

**Partial noising without a mask** (the partial diffusion of AnoDDPM, Wyatt et al., 2022, here
with Gaussian noise and DDIM steps): noise the whole slice to an intermediate level
t0 = ``noise_level`` * T (rounded) with (2), then run (4) back to 0 in steps of T // ``sample_steps``
(t0, t0 - T // n, ...; the last step lands on the clean image). Noise at level t0
drowns details up to some size; the model rebuilds them as healthy tissue, because healthy
tissue is all it knows. A small t0 keeps the patient (identity) but cannot erase a large
lesion; a large t0 erases the lesion and the patient's details with it::

    x_hat = DDIM_{t0 -> 0}( sqrt(abar_t0) x + sqrt(1 - abar_t0) eps )                         (6)

The difference ``|x - x_hat|`` is then the lesion detector (the detection metrics score it).
Each noise draw rebuilds the healthy tissue a little differently, and those differences look
like lesions to the detector; ``draws`` > 1 averages (6) over that many draws (their mean is
the output), which shrinks the random part of the difference at the cost of one walk per draw.

**Coarse noise** (``noise_blur`` > 0): white noise cannot drown a large lesion without drowning
every fine detail first (its power is the same at every spatial frequency, where the image's sits
mostly at low ones). AnoDDPM's remedy is noise with more power at low frequencies (simplex
noise); here it is white noise blurred by a Gaussian of ``noise_blur`` U-Net pixels and scaled
back to unit variance, so Eqs. (1)-(6) hold as written with eps ~ N(0, Sigma). The model must be
trained with the noise it samples with (it learns to predict that noise), so the option is fixed
at training.

Choices: images in [-1, 1]; T = 1000 with DDPM's linear schedule (beta from 1e-4 to 0.02);
the weights used at inference are an exponential moving average of the trained ones (``ema``,
as DDPM does: the raw weights of the last step are noisier);
``work_size`` (default 0: the data's size) lets the U-Net work on smaller images than the
data's, area-averaged, four times fewer pixels at half the side: the data, the metrics and the
judge stay at the book's size, and :meth:`Diffusion.translate` brings images to the U-Net's size
and its result back; the DDIM grid is t = k * (T // sample_steps), so each step lands on the next step of the grid
(MONAI's ``set_timesteps`` spreads the grid with ``linspace`` while ``step`` assumes steps of
T // n: we set the grid ourselves); the mask is widened by ``mask_dilate`` pixels so the
lesion's blurred rim is redrawn too; noise at inference comes from a generator seeded with
``sample_seed``, so a model gives the same output for the same input every time.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from .. import losses as L
from ..data import preprocess as pp
from ..utils import OptionError
from .base import Translator, register

MODES = ("inpaint", "partial")
#: options that change only sampling (a trained model takes new values with :meth:`Diffusion.inference`)
SAMPLING = ("mode", "noise_level", "draws", "sample_steps", "resample", "mask_dilate", "sample_seed")


@register
class Diffusion(Translator):
    """A DDPM of healthy slices (Eqs. 1-3) that makes a slice healthy by inpainting its lesion
    mask (Eq. 5, mode ``'inpaint'``) or by partial noising (Eq. 6, mode ``'partial'``).

    ``nets['eps']`` is the trained U-Net, ``nets['ema']`` its moving average (what sampling and
    the zoo use); ``scheduler`` is MONAI's DDIM scheduler for the options' ``timesteps``."""

    name = "diffusion"
    pseudo_healthy = True
    defaults = {"channels": 16, "levels": 4, "res_blocks": 1, "attention": True, "timesteps": 1000,
                "healthy": "slices", "ema": 0.999, "mode": "inpaint", "noise_level": 0.3, "draws": 1, "sample_steps": 25,
                "resample": 1, "mask_dilate": 2, "sample_seed": 0, "work_size": 0, "noise_blur": 0.0}
    choices = {"healthy": ("slices", "twins"), "mode": MODES}
    ranges = {"channels": (8, None), "levels": (2, 6), "res_blocks": (1, None), "timesteps": (10, None),
              "ema": (0, 0.99999), "noise_level": (0.0, 1.0), "draws": (1, None), "sample_steps": (1, None), "resample": (1, None),
              "mask_dilate": (0, None), "sample_seed": (0, None), "work_size": (0, None),
              "noise_blur": (0.0, None)}

    def __init__(self, cfg):
        super().__init__(cfg)
        from monai.networks.nets import DiffusionModelUNet
        from monai.networks.schedulers import DDIMScheduler

        o = self.opt
        _check_steps(o)
        c = o["channels"]
        widths = tuple(min(c * 2 ** i, 4 * c) for i in range(o["levels"]))      # e.g. 16, 32, 64, 64
        net = DiffusionModelUNet(spatial_dims=2, in_channels=1, out_channels=1, num_res_blocks=o["res_blocks"],
                                 channels=widths, attention_levels=(False,) * (o["levels"] - 1) + (o["attention"],),
                                 norm_num_groups=math.gcd(8, c), num_head_channels=widths[-1])
        ema = copy.deepcopy(net).requires_grad_(False)
        self.nets = nn.ModuleDict({"eps": net, "ema": ema})
        self.scheduler = DDIMScheduler(num_train_timesteps=o["timesteps"], schedule="linear_beta", clip_sample=True)

    def inference(self, **options) -> "Diffusion":
        """The same trained model (its weights shared, not copied) sampling with other values of
        the :data:`SAMPLING` options, e.g. ``model.inference(mode="partial", noise_level=0.4)``."""
        other = set(options) - set(SAMPLING)
        if other:
            raise OptionError(f"diffusion inference: {sorted(other)} are not sampling options; "
                              f"choose from {', '.join(SAMPLING)} (the rest is fixed by training)")
        self.check_options(options)
        opt = _check_steps({**self.opt, **options})
        twin = copy.copy(self)                       # a shallow copy: the same networks
        twin.opt, twin.cfg = opt, dataclasses.replace(self.cfg, options={**self.cfg.options, **options})
        return twin

    def trained_with(self):
        return ("healthy twins (phantom only)",) if self.opt["healthy"] == "twins" else ()

    @property
    def needs_mask(self) -> bool:
        """True when :meth:`translate` inpaints (it then needs the lesion mask)."""
        return self.opt["mode"] == "inpaint"

    def check_side(self, side):
        need, work = 2 ** (self.opt["levels"] - 1), self.opt["work_size"] or side
        if work % need:
            what = f"work_size={work}" if self.opt["work_size"] else f"images of {side}x{side}"
            raise OptionError(f"{what} {'does' if self.opt['work_size'] else 'do'} not suit diffusion with levels={self.opt['levels']}: "
                              f"the U-Net halves its input {self.opt['levels'] - 1} times, so the side must divide by {need}")

    def side(self) -> int:
        """The side of the images the U-Net works on: ``work_size``, else the training data's."""
        return self.opt["work_size"] or self.cfg.size

    def to_work_size(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) area-averaged to the U-Net's side (unchanged if it has it already)."""
        s = self.side()
        return x if tuple(x.shape[-2:]) == (s, s) else F.interpolate(x, size=(s, s), mode="area")

    # -- engine interface
    def dataset(self, data, split):
        return HealthyImages(data, split, twins=self.opt["healthy"] == "twins")

    def optimizers(self):
        return {"eps": self.adam(self.nets["eps"], betas=(0.9, 0.999))}

    def exported(self):
        return ["ema"]

    def example_batch(self, batch_size, size, device="cpu"):
        return {"B": torch.rand(batch_size, 1, size, size, device=device) * 2 - 1}

    def training_step(self, batch, ctx):
        x0 = self.to_work_size(batch["B"])
        t = torch.randint(self.opt["timesteps"], (len(x0),), device=x0.device)
        noise = self.noise(x0.shape, device=x0.device, dtype=x0.dtype)
        with ctx.autocast():
            x_t = self.scheduler.add_noise(x0, noise, t)                                   # Eq. (2)
            loss = F.mse_loss(self.nets["eps"](x_t, t).float(), noise)                      # Eq. (3)
        ctx.backward(loss)
        ctx.update("eps")
        with torch.no_grad():                       # the averaged weights used at inference
            for a, p in zip(self.nets["ema"].parameters(), self.nets["eps"].parameters()):
                a.lerp_(p, 1 - self.opt["ema"])
        return {"loss": loss.detach()}

    def samples(self, batch):
        return {"x": batch["B"], "partial": self.inference(mode="partial").translate(batch["B"])}

    # -- inference
    def _grid(self) -> int:
        """The DDIM grid's spacing T // sample_steps (and MONAI's scheduler set to it)."""
        T, n = self.opt["timesteps"], self.opt["sample_steps"]
        self.scheduler.set_timesteps(n)             # step() then moves t -> t - T // n
        return T // n

    def _eps(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.nets["ema"](x, torch.full((len(x),), t, device=x.device, dtype=torch.long)).float()

    def noise(self, shape, generator=None, device="cpu", dtype=torch.float32) -> torch.Tensor:
        """The model's noise eps of ``shape`` (B, 1, H, W): standard normal per pixel, white, or
        with ``noise_blur`` > 0 blurred by a Gaussian of that many pixels (wrapping round the
        border, so every pixel is alike) and scaled back to unit variance."""
        eps = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        sigma = self.opt["noise_blur"]
        if sigma <= 0:
            return eps
        r = max(1, math.ceil(3 * sigma))
        g = torch.exp(-0.5 * (torch.arange(-r, r + 1, device=device, dtype=dtype) / sigma) ** 2)
        k = torch.outer(g, g)
        k = (k / k.square().sum().sqrt()).view(1, 1, 2 * r + 1, 2 * r + 1)    # sum of k^2 = 1: unit variance
        return F.conv2d(F.pad(eps, (r, r, r, r), mode="circular"), k)

    def _generator(self, device) -> torch.Generator:
        return torch.Generator(device).manual_seed(self.opt["sample_seed"])

    def walk(self, noise_level: float) -> list[int]:
        """The levels that partial noising at ``noise_level`` steps through, one network pass
        each: t0 = ``noise_level`` * T (rounded, at most T - 1) down to 0 in steps of
        T // ``sample_steps``; none at level 0, where the input is returned as it is."""
        T = self.opt["timesteps"]
        if noise_level == 0:
            return []
        t0 = min(int(noise_level * T + 0.5), T - 1)
        return list(range(t0, -1, -(T // self.opt["sample_steps"])))

    @torch.no_grad()
    def partial(self, x: torch.Tensor, noise_level: float | None = None) -> torch.Tensor:
        """Eq. (6): ``x`` (B, 1, H, W) in [-1, 1] noised to ``noise_level`` * T (default: the
        option) and denoised with DDIM, averaged over ``draws`` noise draws; the output has the
        shape of ``x``."""
        level = self.opt["noise_level"] if noise_level is None else float(noise_level)
        if not 0 <= level <= 1:
            raise OptionError(f"diffusion noise_level: expected a number from 0 to 1, got {noise_level!r}")
        if level == 0:
            return x.clone()
        self._grid()
        ts = self.walk(level)
        g, total = self._generator(x.device), torch.zeros_like(x)
        for _ in range(self.opt["draws"]):
            noise = self.noise(x.shape, g, x.device, x.dtype)
            sample = self.scheduler.add_noise(x, noise, torch.tensor([ts[0]], device=x.device))   # Eq. (2)
            for t in ts:
                sample = self.scheduler.step(self._eps(sample, t), t, sample)[0]                # Eq. (4)
            total += sample.clamp(-1, 1)
        return total / self.opt["draws"]

    @torch.no_grad()
    def inpaint(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Eq. (5): redraw the pixels of ``x`` (B, 1, H, W) in [-1, 1] where ``mask`` (B, 1, H, W,
        1 = lesion) is set, widened by ``mask_dilate``; elsewhere the output is ``x`` itself."""
        m = L.dilate(_lesion(x, mask), self.opt["mask_dilate"])
        if not m.any():                              # nothing to redraw (lesion-free slices)
            return x.clone()
        dt, g = self._grid(), self._generator(x.device)
        acp = self.scheduler.alphas_cumprod.to(x.device, x.dtype)

        def randn():
            return self.noise(x.shape, g, x.device, x.dtype)

        sample = randn()
        for t in range((self.opt["sample_steps"] - 1) * dt, -1, -dt):
            last = t - dt < 0
            for r in range(1 if last else self.opt["resample"]):
                if r:                                                  # back up from t - dt to t
                    ratio = acp[t] / acp[t - dt]
                    sample = ratio.sqrt() * sample + (1 - ratio).sqrt() * randn()
                prev = self.scheduler.step(self._eps(sample, t), t, sample)[0]                  # Eq. (4)
                known = x if last else self.scheduler.add_noise(x, randn(), torch.tensor([t - dt], device=x.device))
                sample = m * prev + (1 - m) * known                                            # Eq. (5)
        return (m * sample + (1 - m) * x).clamp(-1, 1)

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AB", mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pseudo-healthy images (B, 1, H, W) in [-1, 1]: :meth:`inpaint` with ``mask`` (mode
        ``'inpaint'``) or :meth:`partial` (mode ``'partial'``, no mask).

        Images of another size than the U-Net's (:meth:`side`) are brought to its size (area
        averaging) and the result is brought back: an inpainting replaces the masked region
        (widened by ``mask_dilate`` model pixels) with the upsampled drawing, and a partial
        noising adds its upsampled *change* to the full-size input, so the details it never saw
        stay as they were."""
        if direction != "AB":
            raise ValueError("a diffusion model of healthy slices translates to healthy only (direction 'AB')")
        partial = self.opt["mode"] == "partial"
        if not partial and mask is None:
            raise OptionError("diffusion mode 'inpaint' needs the lesion mask: translate(x, mask=...); "
                              "evaluate() passes the data's masks, or use model.inference(mode='partial')")
        lesion = None if partial else _lesion(x, mask)
        side, shape = self.side(), x.shape[-2:]
        if tuple(shape) == (side, side):
            return self.partial(x) if partial else self.inpaint(x, mask)

        def up(t):
            return F.interpolate(t, size=shape, mode="bilinear", align_corners=False)
        small = self.to_work_size(x)
        if partial:
            return (x + up(self.partial(small) - small)).clamp(-1, 1)
        m_small = (self.to_work_size(lesion) > 0).to(x.dtype)         # any lesion in a small pixel
        region = L.dilate(lesion, math.ceil(self.opt["mask_dilate"] * max(shape) / side))
        return region * up(self.inpaint(small, m_small)) + (1 - region) * x


def _lesion(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The binary lesion mask of images ``x`` as their dtype, after checking its shape."""
    if mask.shape != x.shape:
        raise OptionError(f"diffusion inpaint: the mask has shape {tuple(mask.shape)}, the images {tuple(x.shape)}")
    return (mask > 0.5).to(x.dtype)


def _check_steps(opt: dict) -> dict:
    if opt["sample_steps"] > opt["timesteps"]:
        raise OptionError(f"diffusion option sample_steps: {opt['sample_steps']} is more than the "
                          f"{opt['timesteps']} time steps of the model (option timesteps)")
    return opt


class HealthyImages(Dataset):
    """Healthy slices of ``split`` as ``{"B": (1, S, S) in [-1, 1]}``: its lesion-free slices,
    and with ``twins`` (phantoms only) also the healthy ground truth of its lesion slices (a
    healthy cohort that covers the lesions' levels of the brain too)."""

    def __init__(self, data, split: str = "train", twins: bool = False):
        if twins and not data.has_ground_truth:
            raise OptionError("diffusion option healthy='twins' needs a phantom's healthy ground truth; this data has none")
        self.data = data
        self.items = [(data.images, int(i)) for i in data.select(split, pp.HEALTHY)]
        if twins:
            self.items += [(data.healthy, int(i)) for i in data.select(split, pp.PATHOLOGICAL)]
        if not self.items:
            raise ValueError(f"split '{split}' has no healthy slices to train a diffusion model on")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        arr, j = self.items[i]
        return {"B": pp.to_tanh_range(torch.from_numpy(np.asarray(arr[j], np.float32))[None])}
