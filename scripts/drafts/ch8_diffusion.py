"""Draft of chapter 8 (diffusion models): writes book/08_diffusion.ipynb, unexecuted, from the cells below.

    .venv/bin/python scripts/drafts/ch8_diffusion.py && python scripts/execute_notebooks.py book/08_diffusion.ipynb

The chapter needs its zoo models (recipes diffusion, diffusion-s1, diffusion-s2; issue 16); once
they are shipped and the notebook is in the book, the notebook is the artefact and this draft is
deleted."""
from _cells import code, colab_setup, md, write

md(r"""
# Beyond the papers: diffusion models

[![Open in Colab](_static/colab-badge.svg)](https://colab.research.google.com/github/pseudohealthy/pseudohealthy-book/blob/main/book/08_diffusion.ipynb)

Every method so far was a GAN: a generator that learns, against a critic, to turn one kind of
image into another in a single forward pass. Since about 2022 much of the work on generating and
repairing medical images has moved to **denoising diffusion models** {cite}`ho2020ddpm`. The
BraTS challenge's local-inpainting task asks for exactly our job (fill a tumour region with the
healthy tissue that belongs there) {cite}`kazerooni2024brats_inpainting`, and diffusion models were
among its leading entries.

A diffusion model learns something very different from a GAN's generator. It never sees a lesion:
it learns, from healthy slices only, to remove noise. Everything else follows from that one skill:

1. noise a healthy slice step by step until nothing is left, and train a network to predict the
   noise (sections 1 and 2);
2. run the process backwards from pure noise to draw new healthy slices (section 3);
3. give it a slice and a lesion mask, and let it redraw only the masked region, in agreement with
   the tissue around it: inpainting (section 4);
4. give it a slice and no mask: noise the whole slice part of the way and denoise it; what the
   model has never seen, the lesion, does not come back (section 5).

The phantom can measure what studies on real scans cannot: the true healthy tissue under the
lesion. The chapter ends with the cost: a GAN translates a slice in one pass; a diffusion model
needs one pass per step.
""")

colab_setup()

code(r"""
import numpy as np
import pandas as pd
import torch
from myst_nb import glue
from pseudohealthy_lib import explore, recipes, viz, zoo
from pseudohealthy_lib.data import default, load_prepared
from pseudohealthy_lib.data import preprocess as pp
from pseudohealthy_lib.methods import Diffusion
from pseudohealthy_lib.notebook import show_code

SEEDS = ["diffusion", "diffusion-s1", "diffusion-s2"]
recipes.ensure(zoo.SEGMENTOR, "antgan", *SEEDS)
model = zoo.load_pretrained("diffusion")
data = load_prepared(default.phantom_dataset())
""")

md(r"""
## 1. Forward: drowning a slice in noise

Take a healthy slice $x_0$ and a fixed schedule of small noise variances
$\beta_1, \dots, \beta_T$ ($T = 1000$, growing linearly from $10^{-4}$ to $0.02$, as in
{cite}`ho2020ddpm`). With $\alpha_t = 1 - \beta_t$ and $\bar\alpha_t = \alpha_1 \cdots \alpha_t$,
adding the noise one step at a time adds up to a single Gaussian step from $x_0$:

$$
q(x_t \mid x_0) = \mathcal N\!\left(\sqrt{\bar\alpha_t}\, x_0,\; (1 - \bar\alpha_t) I\right)
\tag{1}
$$

so any noise level can be reached directly:

$$
x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon, \qquad \epsilon \sim \mathcal N(0, I).
\tag{2}
$$

The library does not write the schedule itself: `model.scheduler` is MONAI's DDIM scheduler
{cite}`pinaya2023monaigenerative`, which holds $\bar\alpha_t$ and applies Eq. (2)
(`add_noise`). Below, one healthy test slice at six levels of $t$, with the same $\epsilon$:
""")

code(r"""
case = int(explore.spread_cases(data, "test", 1)[0])
x0 = model.to_work_size(pp.to_tanh_range(torch.from_numpy(data.healthy[case:case + 1].astype(np.float32))[:, None]))
eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
ts = [0, 50, 150, 300, 600, 999]
noisy = [model.scheduler.add_noise(x0, eps, torch.tensor([t]))[0, 0].numpy() for t in ts]
viz.image_grid([[(n + 1) / 2 for n in noisy]], [f"t = {t}" for t in ts], size=1.9);
""")

code(r"""
acp = model.scheduler.alphas_cumprod.numpy()
half = int(np.argmax(np.sqrt(acp) < np.sqrt(1 - acp)))        # first t where the noise outweighs the image
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(5, 2.6))
ax.plot(np.sqrt(acp), label=r"$\sqrt{\bar\alpha_t}$ (image)")
ax.plot(np.sqrt(1 - acp), label=r"$\sqrt{1-\bar\alpha_t}$ (noise)")
ax.axvline(half, color="grey", lw=0.8, ls="--")
ax.set(xlabel="t", ylabel="weight in Eq. (2)"); ax.legend(); ax.grid(alpha=0.3); fig.tight_layout()
glue("t_half", f"{half}", display=False)
""")

md(r"""
The image's weight falls and the noise's rises; they cross at $t =$ {glue:text}`t_half`. (MONAI
counts steps from 0, so its $t = 0$ is the first noising step of Eq. (1), already a whisper of
noise.) Fine detail is drowned first: the noise is white, as strong at every spatial frequency,
while a brain slice has most of its power at low frequencies (the outline, the ventricles) and
little at high ones (texture, thin edges). So at a moderate $t$ the noise outweighs the fine
detail long before it outweighs the large shapes; look for it in the panels above. Keep that
order in mind: section 5 uses it.
""")

md(r"""
## 2. What the network learns

A network $\epsilon_\theta(x_t, t)$ gets the noisy slice and the step $t$ and guesses the noise
that was added. Its loss is the squared error of the guess, over random slices, steps and noise:

$$
\mathcal L = \mathbb E_{x_0, t, \epsilon}\, \big\| \epsilon - \epsilon_\theta(x_t, t) \big\|^2,
\qquad t \sim \mathcal U\{0, \dots, T-1\}.
\tag{3}
$$

That is all of training. The network is MONAI's `DiffusionModelUNet`: a U-Net whose residual
blocks all receive an embedding of $t$, with self-attention only at its lowest resolution (8x8
here). The library's training step is Eqs. (2) and (3), plus an exponential moving average of the
weights, which is what sampling uses:
""")

code(r"""
show_code(Diffusion.training_step)
""")

md(r"""
A slice of 64x64 has a quarter of the pixels of one of 128x128, and the U-Net's cost grows with
the pixels, so the recipe lets the U-Net work at 64x64 (`work_size=64`) to fit two CPU cores: the
data, the metrics and the judge stay at the book's 128x128, and the model brings images to its
size (area averaging) and its result back (bilinear upsampling). A short live run shows the loss of Eq. (3) falling:
""")

code(r"""
from pseudohealthy_lib import presets
from pseudohealthy_lib.config import cache_dir, fast_mode
from pseudohealthy_lib.engine import Trainer
short = presets.config("diffusion", steps=6 if fast_mode() else 300, log_every=10)
history = Trainer(short, cache_dir() / "runs" / f"diffusion-short-{short.preset}", method=Diffusion).fit()
viz.plot_history(history, ["loss"], smooth=5, title="short run");
""")

md(r"""
The shipped models were trained by the library's own command,

```bash
python -m pseudohealthy_lib train diffusion --preset cpu --export diffusion
```

three times, with seeds 0, 1 and 2 (`--seed 1 --export diffusion-s1`, and so on). The option
`healthy=twins` in the table below is explained after it:
""")

code(r"""
facts = pd.DataFrame({n: zoo.training_facts(n) for n in SEEDS}).T
facts[["size", "work_size", "steps", "batch_size", "lr", "channels", "levels", "healthy", "ema", "seed", "minutes"]]
""")

md(r"""
`healthy=twins`: the U-Net learns from the lesion-free slices of the training subjects *and* from
the healthy twins of their lesion slices. In a real study that is a cohort of healthy volunteers
scanned the same way, which covers every level of the brain; the lesion-free slices of tumour
patients alone lie mostly above and below the tumours (chapter 1). No test subject's twin is seen.
""")

md(r"""
## 3. Backwards: drawing healthy slices from noise

If the network can say which part of $x_t$ is noise, the clean image it implies is

$$
\hat x_0 = \frac{x_t - \sqrt{1-\bar\alpha_t}\, \epsilon_\theta(x_t, t)}{\sqrt{\bar\alpha_t}},
\qquad
x_{t'} = \sqrt{\bar\alpha_{t'}}\, \hat x_0 + \sqrt{1-\bar\alpha_{t'}}\, \epsilon_\theta(x_t, t)
\tag{4}
$$

and Eq. (4) moves to a lower level $t' < t$ by mixing that guess with the same noise at the new
level. (The scheduler clips $\hat x_0$ to the images' range $[-1, 1]$ before mixing.) This deterministic step is DDIM's {cite}`song2021ddim`: it can jump many levels at once, so
the library walks a grid of `sample_steps` levels (25 by default) instead of all 1000 (MONAI's
`DDIMScheduler.step`). Starting from pure noise gives new slices, at the U-Net's 64x64. (The
library has no separate sampling function: below, Eq. (5) of the next section is run with a mask
that covers the whole image, which leaves nothing known and so draws everything.)
""")

code(r"""
with torch.no_grad():
    side = model.side()
    blank = torch.zeros(6, 1, side, side)
    drawn = model.inpaint(blank, torch.ones_like(blank))          # a mask over everything: draw it all
viz.image_grid([[(d[0].numpy() + 1) / 2 for d in drawn]], [f"sample {i + 1}" for i in range(6)], size=1.9);
""")

md(r"""
## 4. Inpainting: redraw only the lesion

To repair a slice $x$ with a lesion mask $m$, run the same backward walk, but after every step
overwrite everything *outside* the mask with the input itself, noised to the same level by Eq. (2)
{cite}`lugmayr2022repaint`:

$$
x_{t'} \leftarrow m \odot x_{t'}^{\text{model}} + (1 - m) \odot \left(\sqrt{\bar\alpha_{t'}}\, x + \sqrt{1-\bar\alpha_{t'}}\, \epsilon'\right),
\qquad \epsilon' \sim \mathcal N(0, I).
\tag{5}
$$

Here $m$ is 1 on the lesion (RePaint writes its mask the other way round, 1 on the known pixels),
widened by `mask_dilate` pixels so that the lesion's blurred rim is redrawn too. The model only
ever fills in the inside, and at every level it sees the true surroundings at that level of
noise, which pulls what it draws towards agreement with them. Lugmayr et al. found that pull too
weak in one pass: RePaint goes back up a step and repeats it (`resample` here), and samples with
DDPM's random steps, 250 of them. The library uses the same replacement on the few deterministic
DDIM steps of section 3, without resampling in the recipe; section 6 measures what resampling adds.

The mask can be the true one (what the BraTS inpainting task provides) or one predicted by a
segmentor; here the book's judge $f_\text{pre}$ plays that part. (The judge then also grades the
result for healthiness, so that row's healthiness is not an independent verdict: the judge
cannot find what it did not mark.) Against them: ANT-GAN (no mask)
and the classical inpainting of chapter 1, given the true mask.
""")

code(r"""
from pseudohealthy_lib.evaluate import FunctionTranslator, evaluate, inpaint_biharmonic, judge_caption, results_table
judge = zoo.load_pretrained(zoo.SEGMENTOR)
antgan = zoo.load_pretrained("antgan")
with_judge = FunctionTranslator(lambda t: model.translate(t, mask=judge.predict_mask(t).to(t.dtype)))
test = data.select("test", 1)
cases = [int(np.flatnonzero(test == i)[0]) for i in explore.spread_cases(data, "test", 3)]
x, truth, masks = (a[test][cases].astype(np.float32) for a in (data.images, data.healthy, data.masks))
xt, mt = pp.to_tanh_range(torch.from_numpy(x)[:, None]), torch.from_numpy(masks)[:, None]
with torch.no_grad():
    shown = {"ANT-GAN": explore.translate_slices(antgan, x),
             "classical, true mask": inpaint_biharmonic(x, masks),
             "diffusion, true mask": pp.from_tanh_range(model.translate(xt, mask=mt))[:, 0].numpy(),
             "diffusion, judge's mask": pp.from_tanh_range(with_judge.translate(xt))[:, 0].numpy()}
viz.image_grid([[x[i]] + [y[i] for y in shown.values()] + [truth[i]] for i in range(len(cases))],
               ["input"] + list(shown) + ["true healthy"], size=1.9);
""")

code(r"""
results = {"diffusion, true mask": evaluate(model, data, "test", segmentor=judge, references=True),
           "diffusion, judge's mask": evaluate(with_judge, data, "test", segmentor=judge),
           "ANT-GAN": evaluate(antgan, data, "test", segmentor=judge)}
print(judge_caption(results["ANT-GAN"]))
cols = ["identity", "healthiness", "psnr_tissue", "psnr_lesion", "ssim_lesion", "bias_lesion", "slices_per_s"]
refs = {"do nothing": results["diffusion, true mask"]["references"]["do nothing"],
        "classical, true mask": results["diffusion, true mask"]["references"]["inpainting"]}
table = results_table(refs | results, cols)
table.round(3)
""")

code(r"""
t = table["psnr_lesion"]
glue("inp_psnr", f"{t['diffusion, true mask']:.1f}", display=False)
glue("bih_psnr", f"{t['classical, true mask']:.1f}", display=False)
glue("ant_psnr", f"{t['ANT-GAN']:.1f}", display=False)
by_judge = t["diffusion, judge's mask"]
glue("judge_psnr", f"{by_judge:.1f}", display=False)
glue("inp_bias", f"{table.loc['diffusion, true mask', 'bias_lesion']:+.3f}", display=False)
glue("ant_bias", f"{table.loc['ANT-GAN', 'bias_lesion']:+.3f}", display=False)
best = t.drop(["do nothing"]).idxmax()
glue("inp_verdict", "the best row of the table" if best == "diffusion, true mask" else f"behind {best}", display=False)
gap = t["diffusion, true mask"] - by_judge
glue("judge_gap", f"{abs(gap):.1f} dB {'lower' if gap > 0 else 'higher'}", display=False)
glue("judge_story", "whatever part of the lesion the segmentor misses is never redrawn and stays as it was: "
     "a masked method can only be as good as its mask" if gap > 0 else
     "the segmentor's mask serves as well as the truth here, since the inpainting redraws a widened region anyway", display=False)
""", tags=["hide-input"])

md(r"""
Given the true mask, the diffusion model's lesion PSNR is {glue:text}`inp_psnr` dB, 
{glue:text}`inp_verdict`: the classical inpainting with the same mask reaches
{glue:text}`bih_psnr` dB and ANT-GAN, which has no mask, {glue:text}`ant_psnr` dB. The signed
bias inside the lesion (output minus truth) is {glue:text}`inp_bias` for the diffusion model and
{glue:text}`ant_bias` for ANT-GAN. For ANT-GAN a positive bias is a bright trace of the lesion
left behind; the masked methods redraw every lesion pixel, so their bias says only whether the
new tissue is drawn too bright or too dark. The two masked methods differ in how they fill: the
classical inpainting solves for the smoothest surface that meets the hole's border, the diffusion
model draws what it learned healthy tissue looks like, at 64x64, brought up to 128x128 (so its
fill can have no detail finer than two pixels).

With the judge's mask instead of the truth the lesion PSNR is {glue:text}`judge_psnr` dB,
{glue:text}`judge_gap`: {glue:text}`judge_story`.
""")

md(r"""
## 5. No mask: partial noising

Without a mask, the model can still be asked to repair the whole slice: noise it to an
intermediate level $t_0$ with Eq. (2) and walk back with Eq. (4). This is the *partial diffusion*
of AnoDDPM {cite}`wyatt2022anoddpm`, here with DDIM steps and Gaussian noise. (AnoDDPM's own
point was that Gaussian noise leaves large anomalies half-erased, and that noise with more power at
low frequencies, simplex noise, does better; our model was trained with Gaussian noise, so it is
the Gaussian version we can test.)

$$
\hat x = \mathrm{DDIM}_{t_0 \to 0}\!\left(\sqrt{\bar\alpha_{t_0}}\, x + \sqrt{1-\bar\alpha_{t_0}}\, \epsilon\right).
\tag{6}
$$

Section 1 showed what noise at level $t_0$ drowns: the fine detail first, larger shapes as
$t_0$ grows. The walk back
rebuilds them the only way the model knows, as healthy tissue. A small $t_0$ keeps the patient
but cannot erase a large lesion; a large $t_0$ erases the lesion and the patient's own details
with it. The `noise_level` option is $t_0 / T$ (the walk back then takes steps of $T / 25$ from
$t_0$), and the difference $|x - \hat x|$ is a lesion
detector. Since the U-Net works at 64x64, the library adds its *change* $\hat x - x$, brought back
to 128x128, to the full-size input (`Diffusion.translate`).
""")

code(r"""
quick = data.subset(data.select("test")[::3])      # every third test slice: each walks the grid, lesion or not
LEVELS = (0.1, 0.15, 0.2, 0.3, 0.4)
partial = {lv: model.inference(mode="partial", noise_level=lv) for lv in LEVELS}
levels = {lv: evaluate(m, quick, "test", segmentor=judge, references=lv == LEVELS[0]) for lv, m in partial.items()}
ex = explore.LambdaExplorer(partial, data, metrics=levels, label="noise level", output="x̂", log=False)
curve = results_table({f"{lv:g}": r for lv, r in levels.items()}, ["identity", "healthiness", "psnr_lesion", "auprc", "dice_max"])
curve.index.name = "noise level"
curve.round(3)
""")

code(r"""
fig = ex.figure(lam=0.2, case=0, metric="identity")
""")

code(r"""
ex.widget(lam=0.2, case=0, metric="identity")
""", tags=["remove-output"])

code(r"""
thr_auprc = levels[LEVELS[0]]["references"]["intensity threshold"]["auprc"]
best_lv = curve["auprc"].idxmax()
glue("best_lv", best_lv, display=False)
glue("best_auprc", f"{curve.loc[best_lv, 'auprc']:.3f}", display=False)
glue("thr_auprc", f"{thr_auprc:.3f}", display=False)
glue("quick_n", f"{len(quick)}", display=False)
lo, hi = curve.index[0], curve.index[-1]
glue("id_lo", f"{curve.loc[lo, 'identity']:.3f}", display=False); glue("id_hi", f"{curve.loc[hi, 'identity']:.3f}", display=False)
glue("h_lo", f"{curve.loc[lo, 'healthiness']:.3f}", display=False); glue("h_hi", f"{curve.loc[hi, 'healthiness']:.3f}", display=False)
glue("lv_lo", lo, display=False); glue("lv_hi", hi, display=False)
glue("trade", "trade identity for healthiness, as Eq. (6) predicts" if curve["identity"].iloc[-1] < curve["identity"].iloc[0]
     and curve["healthiness"].iloc[-1] > curve["healthiness"].iloc[0] else "do not show the expected trade between identity and healthiness", display=False)
""", tags=["hide-input"])

md(r"""
The curve is measured on every third slice of the test split ({glue:text}`quick_n` slices, all
test subjects), since partial noising walks the grid for every slice, lesion or not. From noise
level {glue:text}`lv_lo` to {glue:text}`lv_hi`, identity goes from {glue:text}`id_lo` to
{glue:text}`id_hi` and healthiness from {glue:text}`h_lo` to {glue:text}`h_hi`: the levels
{glue:text}`trade`. As a detector, the difference map is best at level {glue:text}`best_lv`
(AUPRC {glue:text}`best_auprc`); the intensity threshold of chapter 1 reaches
{glue:text}`thr_auprc` on the same slices. Move the slider in the explorer (in a live notebook)
to see where each lesion stops fading.

Look at the difference map in the figure (level 0.2): besides the lesion, healthy tissue lights
up too, drawn a little differently, because the noise drawn in Eq. (6) is random and every draw
rebuilds the fine structure its own way. That part of the difference is random, so averaging the
output over several draws (option `draws`) should shrink it, one walk per draw. At level
{glue:text}`best_lv`:
""")

code(r"""
DRAWS = (1, 2) if fast_mode() else (1, 4, 16)
lv = float(best_lv)
by_draws = {k: levels[lv] if k == 1 else evaluate(partial[lv].inference(draws=k), quick, "test", segmentor=judge) for k in DRAWS}
draws = results_table({k: r for k, r in by_draws.items()}, ["identity", "healthiness", "auprc", "dice_max"])
draws["seconds per slice"] = [1 / r["slices_per_s"] for r in by_draws.values()]
draws.index.name = "draws"
draws.round(3)
""")

code(r"""
best_draws = draws["auprc"].idxmax()
glue("draws_help", f"raises the detector's AUPRC from {draws.loc[1, 'auprc']:.3f} with one draw to "
     f"{draws.loc[best_draws, 'auprc']:.3f} with {best_draws} draws, at {draws.loc[best_draws, 'seconds per slice']:.2f} s per slice"
     if best_draws != 1 else f"does not raise the detector's AUPRC ({draws.loc[1, 'auprc']:.3f} with one draw)", display=False)
best_any = max(curve["auprc"].max(), draws["auprc"].max())
glue("partial_verdict", (
    f"stays below the intensity threshold ({best_any:.3f} against {thr_auprc:.3f}). On FLAIR a lesion is "
    "brighter than the healthy tissue around it, so brightness alone is a strong detector, while the "
    "difference map also carries every error the model makes in rebuilding healthy tissue"
    if best_any <= thr_auprc else
    f"beats the intensity threshold ({best_any:.3f} against {thr_auprc:.3f}): the model's idea of healthy "
    "tissue adds something to brightness alone"), display=False)
""", tags=["hide-input"])

md(r"""
Averaging {glue:text}`draws_help`. On real FLAIR scans, Meissen et al. found that a plain
threshold on brightness beat every anomaly-detection model they compared it with, autoencoders
and GANs from before the diffusion models {cite}`meissen2021challenging`. Here, the best difference map
of this section {glue:text}`partial_verdict`.
""")

md(r"""
## 6. Seeds and cost

Three trainings of the same recipe, inpainting with the true mask:
""")

code(r"""
from pseudohealthy_lib.evaluate import seed_table
runs = [results["diffusion, true mask"]] + [evaluate(zoo.load_pretrained(n), data, "test", segmentor=judge) for n in SEEDS[1:]]
seeds = seed_table({"diffusion, true mask": runs}, keys=("identity", "healthiness", "psnr_lesion", "ssim_lesion"))
psnr = [r["psnr_lesion"] for r in runs]
glue("seed_lo", f"{min(psnr):.1f}", display=False); glue("seed_hi", f"{max(psnr):.1f}", display=False)
glue("seed_sd", f"{np.std(psnr, ddof=1):.2f}", display=False)
sd_subj, sd_seed = seeds.loc["diffusion, true mask", ("psnr_lesion", "sd subjects")], seeds.loc["diffusion, true mask", ("psnr_lesion", "sd seeds")]
glue("seed_vs_subj", f"the test subjects differ from each other more than the seeds do ({sd_subj:.2f} against {sd_seed:.2f} dB)"
     if sd_subj > sd_seed else f"the seeds differ as much as the test subjects do ({sd_seed:.2f} against {sd_subj:.2f} dB)", display=False)
seeds.round(3)
""")

md(r"""
Over the three seeds the lesion PSNR lies between {glue:text}`seed_lo` and {glue:text}`seed_hi`
dB (standard deviation {glue:text}`seed_sd` dB). In lesion PSNR, {glue:text}`seed_vs_subj`.
""")

code(r"""
import time
def seconds_per_slice(fn, n=16):
    xs = pp.to_tanh_range(torch.from_numpy(data.images[test][:n].astype(np.float32))[:, None])
    ms = torch.from_numpy(data.masks[test][:n].astype(np.float32))[:, None]
    with torch.no_grad():
        t0 = time.perf_counter(); fn(xs, ms); return (time.perf_counter() - t0) / n
cost = pd.Series({"ANT-GAN (one pass)": seconds_per_slice(lambda x, m: antgan.translate(x)),
                  "diffusion inpainting (25 steps)": seconds_per_slice(lambda x, m: model.translate(x, mask=m)),
                  f"diffusion partial, level {lv:g}, 1 draw": seconds_per_slice(lambda x, m: partial[lv].translate(x))},
                 name="seconds per slice (this machine)")
glue("cost_ratio", f"{cost.iloc[1] / cost.iloc[0]:.0f}", display=False)
glue("cost_inp", f"{cost.iloc[1]:.2f}", display=False)
glue("cost_partial", f"{cost.iloc[2]:.2f}", display=False); glue("cost_lv", f"{lv:g}", display=False)
cost.to_frame().round(4)
""")

md(r"""
The number of DDIM steps and RePaint's resampling trade time for lesion fidelity. Measured on every sixth lesion slice of the test split (at most 48), with the true mask:
""")

code(r"""
from pseudohealthy_lib import metrics as M
few = data.select("test", 1)[::6][:48]
xs = pp.to_tanh_range(torch.from_numpy(data.images[few].astype(np.float32))[:, None])
ms = torch.from_numpy(data.masks[few].astype(np.float32))[:, None]
def sampling_row(**opts):
    m = model.inference(**opts)
    t0 = time.perf_counter()
    with torch.no_grad():
        y = torch.cat([m.translate(xs[i:i + 16], mask=ms[i:i + 16]) for i in range(0, len(xs), 16)])
    sec = (time.perf_counter() - t0) / len(xs)
    y01 = pp.from_tanh_range(y)[:, 0].numpy()
    psnr = np.mean([M.lesion_fidelity(y01[k], data.healthy[j], data.images[j], data.masks[j])["psnr"] for k, j in enumerate(few)])
    return {"lesion PSNR": psnr, "seconds per slice": sec}
SAMPLING = {"5 steps": dict(sample_steps=5), "25 steps (recipe)": dict(sample_steps=25), "50 steps": dict(sample_steps=50),
            "25 steps, resample 3": dict(resample=3)}
sampling = pd.DataFrame({k: sampling_row(**v) for k, v in SAMPLING.items()}).T
for k, key in zip(SAMPLING, ("s5", "s25", "s50", "r3")):
    glue(f"{key}_psnr", f"{sampling.loc[k, 'lesion PSNR']:.2f}", display=False)
    glue(f"{key}_sec", f"{sampling.loc[k, 'seconds per slice']:.2f}", display=False)
sampling.round(3)
""")

md(r"""
On this machine the diffusion model needs {glue:text}`cost_inp` s per slice to inpaint,
{glue:text}`cost_ratio` times ANT-GAN's single pass: one U-Net pass per DDIM step. Partial
noising at level {glue:text}`cost_lv` with one draw takes {glue:text}`cost_partial` s per slice:
it walks only the part of the grid below $t_0$, once per draw.

## 7. Summary

* A diffusion model learns one thing from healthy slices: to find the noise in a noised slice
  (Eqs. 1-3). Sampling walks the noise back (Eq. 4).
* Given a lesion mask, it redraws only the (widened) lesion, steered by the tissue around it
  (Eq. 5); on the phantom the result is measured against the true healthy tissue (section 4).
* Without a mask, partial noising (Eq. 6) has one knob, the noise level, that sets how much of
  the slice is redrawn; section 5 measures what it does to identity, healthiness and detection,
  and what averaging several noise draws changes. On FLAIR the detector has a strong rival:
  brightness alone.
* The price is time: one network pass per step, and per draw.

## Exercises

1. **Steps and PSNR.** Section 6's table puts lesion PSNR beside the number of DDIM steps. Why
   can a few coarse steps lose less PSNR than you might expect? What would you look at, besides
   PSNR, to tell 5 steps from 50?
2. **Agreement at the border.** RePaint's resampling is meant to make the inside agree with the
   outside. Write a measure of that agreement (for instance the mean jump in intensity across the
   border of the widened mask, against the same jump in the true healthy image) and compare
   `resample=1` with `resample=3`.
3. **A mask too small.** Inpaint with the true mask eroded by 2 pixels
   (`scipy.ndimage.binary_erosion`), first as the recipe does, then with `mask_dilate=0`
   (`model.inference(mask_dilate=0)`). What is left of the lesion, and where?
4. **Why healthy only?** What would partial noising do if the model had also been trained on
   lesion slices?

```{admonition} Solution 1
:class: dropdown
On this machine 5, 25 and 50 steps gave a lesion PSNR of {glue:text}`s5_psnr`,
{glue:text}`s25_psnr` and {glue:text}`s50_psnr` dB in {glue:text}`s5_sec`, {glue:text}`s25_sec`
and {glue:text}`s50_sec` s per slice. With few steps each jump of Eq. (4) trusts a guess
$\hat x_0$ made at a high noise level, and such guesses are close to the *average* of the
plausible fills: smooth. PSNR rewards a smooth fill that is right on average, so it hides part of
what is lost. Look at the fills themselves (texture, sharp borders of the ventricles) and at SSIM
inside the lesion, which compares structure and contrast as well as intensity.
```

```{admonition} Solution 2
:class: dropdown
Each step is done `resample` times, going back up one step in between (the forward process from
$t'$ to $t$), so the time grows with it: {glue:text}`r3_sec` s per slice with `resample=3`
against {glue:text}`s25_sec` in section 6, for a lesion PSNR of {glue:text}`r3_psnr` dB against
{glue:text}`s25_psnr`. For the border measure: dilate the mask by one pixel and erode it by one;
the ring between them straddles the border. Compare the output's values on the inner and outer
edge of the ring, slice by slice, with the true healthy image's; a fill that agrees with its
surroundings has jumps like the truth's.
```

```{admonition} Solution 3
:class: dropdown
Outside the mask the input is kept exactly (Eq. 5). With `mask_dilate=0` the eroded rim of the
lesion is outside the mask, so it stays in the image as a bright ring around redrawn tissue, and a
lesion thinner than about four pixels disappears from the eroded mask altogether and is not
touched. The recipe's `mask_dilate=1` (one pixel at 64x64, two at 128x128) widens the eroded mask
by about what the erosion took, so most of the ring is redrawn after all: the widening is a margin
against masks that are a little too small, such as a segmentor's.
```

```{admonition} Solution 4
:class: dropdown
Expect it to learn to rebuild lesions too: a noised lesion would then be a plausible thing to
denoise into a lesion, the difference map would darken where the lesions are, and the method
would lose its point. Partial noising can only work if the model's idea of a plausible slice has
no lesions in it. (The library has no option for it, on purpose; to check it, write a dataset like
`HealthyImages` that returns every training slice, lesion or not.)
```
""")

write("book/08_diffusion.ipynb")
