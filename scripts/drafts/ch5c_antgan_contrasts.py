"""Draft of the chapter "ANT-GAN beyond FLAIR" (issue 13, second part): writes
book/05c_antgan_contrasts.ipynb, unexecuted, from the cells below.

    .venv/bin/python scripts/drafts/ch5c_antgan_contrasts.py && python scripts/execute_notebooks.py book/05c_antgan_contrasts.ipynb

It needs the zoo's antgan-t1, antgan-t1ce, antgan-t2 and antgan-liver and their judges
(segmentor-phantom-t1, -t1ce, -t2, segmentor-liver): ``python -m pseudohealthy_lib zoo --train NAME``.
Once they exist the notebook is the artefact and this draft is deleted."""
from _cells import code, colab_setup, md, write

md(r"""
# ANT-GAN beyond FLAIR: other MR contrasts and liver CT

[![Open in Colab](_static/colab-badge.svg)](https://colab.research.google.com/github/pseudohealthy/pseudohealthy-book/blob/main/book/05c_antgan_contrasts.ipynb)

Everything so far used FLAIR, the MR contrast in which a glioma and its oedema shine brightest.
Sun et al. chose it for that reason {cite}`sun2020antgan`, then showed in two short sections that
the method is not tied to it: ANT-GAN trained on T1, T1ce and T2 (their Sec. IV-D, Fig. 10) and on
liver CT from the LiTS challenge (Sec. IV-E, Fig. 11). Both sections are pictures without numbers,
and the CT one makes two observations: the liver lesions have "much lower contrast" than brain
lesions in MRI, and the outputs show "more deformations". This chapter repeats both experiments
with the same recipe as chapter 3's `antgan` and turns the pictures into measurements:

1. how visible the same lesion is in each contrast (a contrast-to-noise ratio, Eq. (1));
2. ANT-GAN on each MR contrast, judged by the floors of chapter 3;
3. ANT-GAN on the liver CT phantom, and whether lower contrast costs what the paper says.
""")

colab_setup()

md(r"""
## 1. One lesion, four contrasts

The book's phantom renders every subject in the four BraTS contrasts from one anatomy, so the
same slice can be shown in each. How visible a lesion is can be put in one number, the
**contrast-to-noise ratio**: the gap between the mean intensity of the lesion and of the tissue
around it, in units of that tissue's standard deviation,

$$
\mathrm{CNR} = \frac{\bar{x}_{\text{lesion}} - \bar{x}_{\text{tissue}}}{\sigma_{\text{tissue}}}. \tag{1}
$$

A CNR of 0 means that the intensity alone cannot tell lesion from tissue; its sign says whether
the lesion is brighter or darker. `metrics.contrast_to_noise` computes it, pooling the pixels of
every test slice. On a hand-made image whose answer is known, a tissue of mean 0.4 and standard
deviation 0.05 with a square lesion 0.25 brighter, it gives 5:
""")

code(r"""
import numpy as np
from pseudohealthy_lib import metrics
rng = np.random.default_rng(0)
toy = 0.4 + 0.05 * rng.standard_normal((64, 64))
square = np.zeros((64, 64), bool); square[20:36, 20:36] = True
print(f"CNR, lesion 0.25 brighter: {metrics.contrast_to_noise(toy + 0.25 * square, square, np.ones_like(square)):.1f}")
print(f"CNR, lesion 0.10 darker:   {metrics.contrast_to_noise(toy - 0.10 * square, square, np.ones_like(square)):.1f}")
print(f"CNR, no lesion at all:     {metrics.contrast_to_noise(toy, square, np.ones_like(square)):.1f}")
""", check=True)

code(r"""
import pandas as pd
import matplotlib.pyplot as plt
from myst_nb import glue
from pseudohealthy_lib import explore, viz, zoo
from pseudohealthy_lib.data import default, load_prepared

CONTRASTS = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}
data = {name: load_prepared(default.phantom_dataset(modality=m)) for name, m in CONTRASTS.items()}
flair = data["FLAIR"]
assert all((d.subjects == flair.subjects).all() and (d.slice_index == flair.slice_index).all() for d in data.values())
test = flair.select("test", 1)
case = explore.spread_cases(flair, "test", 3)[1]
fig = viz.image_grid([[d.images[case].astype(np.float32) for d in data.values()]], list(data), size=2.4,
                     suptitle=f"One slice of subject {flair.subjects[case]} in the phantom's four contrasts")
for ax in fig.axes:
    viz.mask_contour(ax, flair.masks[case], lw=0.8)
""", figure=("fig-05c-contrasts", "One test slice of the book's phantom in FLAIR, T1, T1ce and T2, with the lesion's outline "
             "in red: one anatomy and one lesion, four appearances."))

code(r"""
REGIONS = {"whole lesion": (1, 2, 4), "oedema": (2,), "necrosis": (1,), "enhancing rim": (4,)}
def cnr_row(d, idx, tissue):
    return {region: metrics.contrast_to_noise(d.images[idx], np.isin(d.seg[idx], labels), tissue)
            for region, labels in REGIONS.items()}
brain = metrics.tissue_mask(flair.healthy[test].astype(np.float32))       # the brain, from the healthy twin
cnr = pd.DataFrame({name: cnr_row(d, test, brain) for name, d in data.items()}).T.rename_axis("contrast")
cnr.round(2)
""")

code(r"""
whole = cnr["whole lesion"]
glue("cnr_order", ", ".join(f"{k} ({v:+.1f})" for k, v in whole.abs().sort_values(ascending=False).items()), display=False)
glue("cnr_best", whole.abs().idxmax(), display=False)
glue("cnr_worst", whole.abs().idxmin(), display=False)
rim = cnr["enhancing rim"]
glue("cnr_rim", f"{rim.abs().idxmax()} ({rim[rim.abs().idxmax()]:+.1f} against {rim['FLAIR']:+.1f} in FLAIR)", display=False)
""", tags=["hide-input"])

md(r"""
Ranked by how far the whole lesion stands out, the contrasts go {glue:text}`cnr_order`. The
enhancing rim stands out most in {glue:text}`cnr_rim`, which is why BraTS methods read T1ce
for it. A pseudo-healthy translator has less to find where the CNR is small, and also less to
repair: a lesion that barely differs from tissue changes little when it is removed.

## 2. The same recipe on each MR contrast (Fig. 10)

`antgan-t1`, `antgan-t1ce` and `antgan-t2` were trained with `antgan`'s recipe, changing only
`--modality`. Each is judged as chapter 3 judged `antgan`: the metrics on the test split, the
healthiness measured by a segmentor trained on the *same* contrast (a FLAIR judge cannot read a
T1 image), and the five floors of the evaluation chapter. Their training records:
""")

code(r"""
MODELS = {"FLAIR": "antgan", "T1": "antgan-t1", "T1ce": "antgan-t1ce", "T2": "antgan-t2"}
KEYS = ("steps", "batch_size", "lr", "ngf", "n_blocks", "lambda_am", "seed", "minutes")
pd.DataFrame({name: {"model": n} | {k: zoo.training_facts(n)[k] for k in KEYS}
              | {"precision": zoo.manifest(n)["precision"].removeprefix("torch."),
                 "judge": zoo.judge_name("glioma", CONTRASTS[name])} for name, n in MODELS.items()}).T
""", check=True)

code(r"""
from pseudohealthy_lib.evaluate import check_floors, evaluate, results_table

models = {name: zoo.load_pretrained(n) for name, n in MODELS.items()}
results = {name: evaluate(models[name], data[name], "test", references=True,
                          segmentor=zoo.load_pretrained(zoo.judge_name("glioma", CONTRASTS[name])))
           for name in MODELS}
results_table(results)[["psnr_lesion", "ssim_lesion", "psnr_tissue", "dice_max", "healthiness", "identity"]].round(3)
""")

md(r"""
The healthiness column is only as good as its judge, and the judges are not equally good: a
lesion that is faint in a contrast is faint for a segmentor too. Before reading healthiness,
read what each judge makes of the *inputs*, where every test slice with a lesion still has it:
""")

code(r"""
judges = pd.DataFrame({name: {"judge": zoo.judge_name("glioma", CONTRASTS[name]),
                              "judge's Dice on the inputs": r["judge"]["dice"],
                              "lesion pixels it misses": r["judge"]["missed"],
                              "healthiness of the inputs": r["healthiness_input"],
                              "healthiness of the outputs": r["healthiness"]} for name, r in results.items()}).T
judges
""")

code(r"""
free = judges["healthiness of the inputs"].astype(float)
glue("judge_miss", ", ".join(f"{k} {v:.0%}" for k, v in judges["lesion pixels it misses"].items()), display=False)
glue("judge_free", ", ".join(f"{k} {v:.2f}" for k, v in free.items()), display=False)
glue("judge_worst", (f"so {free.idxmax()}'s healthiness starts from {free.max():.2f} before the translator does anything, "
     f"against {free.min():.2f} for {free.idxmin()}: compare healthiness within a contrast, against its own inputs, "
     "not across contrasts") if free.max() - free.min() > 0.05 else
     "so the judges start from a similar place and their healthiness scores can be compared across contrasts", display=False)
""", tags=["hide-input"])

md(r"""
The judges miss {glue:text}`judge_miss` of the lesion pixels on the test inputs, and doing nothing
already earns a healthiness of {glue:text}`judge_free`; {glue:text}`judge_worst`. A judge that
cannot see a lesion cannot say that it is still there.
""")

code(r"""
floors = pd.DataFrame({name: check_floors(r)["met"] for name, r in results.items()}).T
gain = pd.Series({name: r["psnr_lesion"] - r["references"]["do nothing"]["psnr_lesion"] for name, r in results.items()},
                 name="lesion PSNR gain over doing nothing (dB)")
floors.join(gain.round(2))
""")

code(r"""
passed = [n for n in floors.index if floors.loc[n].all()]
failed = {n: [k for k in floors.columns if not floors.loc[n, k]] for n in floors.index if n not in passed}
glue("fig10_verdict", ("every contrast meets all five floors" if not failed else
     (f"{', '.join(passed)} meet{'s' if len(passed) == 1 else ''} all five floors; " if passed else "no contrast meets all five floors; ")
     + "; ".join(f"{n} misses {', '.join(ks)}" for n, ks in failed.items())), display=False)
glue("fig10_gain", ", ".join(f"{k} {v:+.1f} dB" for k, v in gain.items()), display=False)
glue("fig10_cnr_link", "the contrasts with the larger lesion CNR gain more" if
     np.corrcoef(whole.abs()[gain.index], gain)[0, 1] > 0.5 else
     "the gain does not simply follow the lesion CNR of section 1", display=False)
""", tags=["hide-input"])

code(r"""
rows = []
for name, d in data.items():
    x = d.images[[case]].astype(np.float32)
    y = explore.translate_slices(models[name], x)[0]
    rows.append([x[0], y, np.abs(x[0] - y), d.healthy[case].astype(np.float32)])
fig = viz.image_grid(rows, ["input $x$", "$G_{A2N}(x)$", "$|x - G_{A2N}(x)|$", "true healthy"], list(data), size=2.3,
                     cmap=["gray", "gray", viz.diff_cmap(), "gray"], ranges={2: (0, 0.5)}, colorbar=(2,),
                     suptitle="ANT-GAN on each contrast, one recipe (the paper's Fig. 10)")
""", figure=("fig-05c-fig10", "ANT-GAN trained with one recipe on each contrast of the phantom, on the slice of the "
             "first figure: input, output, absolute difference (colour bar in intensity units) and the true healthy image."))

md(r"""
On the test patients {glue:text}`fig10_verdict`. Inside the lesion the outputs gain, over
handing back the input, {glue:text}`fig10_gain`: {glue:text}`fig10_cnr_link`. Read the figure
with the table: a translator that leaves a faint lesion in T1 can still score well, because in
T1 the lesion was faint to begin with. This is why the floors compare each model with doing
nothing *on its own contrast*.

## 3. Liver CT (Fig. 11)

The LiTS-layout phantom is an abdominal CT: Hounsfield units (HU), a liver of about 100 HU with
hypodense tumours of 20 to 45 HU, and the noise of a real scanner. To show soft tissue a
radiologist chooses a **window**, a level $L$ and a width $W$, and maps
$[L - W/2,\; L + W/2]$ to black..white. The book prepares CT with the soft-tissue window
$L = 40$, $W = 400$ HU,

$$
x = \operatorname{clip}\left(\frac{\mathrm{HU} - (L - W/2)}{W},\, 0,\, 1\right), \tag{2}
$$

so one grey level step of 0.1 is 40 HU. `antgan-liver` is `antgan`'s recipe with `--lesion
liver`, judged by a segmentor trained on other CT patients. Eq. (2) on the tissues of an
abdominal scan:
""")

code(r"""
level, width = 40, 400
hu = {"air": -1000, "fat": -100, "water": 0, "tumour": 30, "liver": 100, "contrast-filled vessel": 180, "bone": 700}
pd.Series({k: float(np.clip((v - (level - width / 2)) / width, 0, 1)) for k, v in hu.items()}, name="grey level, Eq. (2)")
""", check=True)

code(r"""
ct = load_prepared(default.phantom_dataset(lesion="liver"))
liver_model = zoo.load_pretrained("antgan-liver")
ct_result = evaluate(liver_model, ct, "test", references=True, segmentor=zoo.load_pretrained(zoo.judge_name("liver")))
ct_floors = check_floors(ct_result)
ct_floors
""")

code(r"""
picks = explore.spread_cases(ct, "test", 3)
x = ct.images[picks].astype(np.float32)
y = explore.translate_slices(liver_model, x)
rows = [[x[i], y[i], np.abs(x[i] - y[i]), ct.healthy[p].astype(np.float32)] for i, p in enumerate(picks)]
fig = viz.image_grid(rows, ["CT, W400/L40", "$G_{A2N}(x)$", "$|x - G_{A2N}(x)|$", "true healthy"], size=2.3,
                     cmap=["gray", "gray", viz.diff_cmap(), "gray"], ranges={2: (0, 0.25)}, colorbar=(2,),
                     suptitle="ANT-GAN on the liver CT phantom (the paper's Fig. 11)")
""", figure=("fig-05c-fig11", "ANT-GAN on three test slices of the liver CT phantom, from large to small tumour, shown in "
             "the W400/L40 window: input, output, absolute difference (colour bar in grey levels) and the true healthy image."))

md(r"""
The paper's two observations can now be checked. *Lower contrast*: the CNR of Eq. (1) for the
liver tumours against the liver around them, beside the glioma in FLAIR against the brain.
*More deformation*: how much the output changes healthy tissue, which chapter 3 measured as the
healthy-tissue PSNR and the identity score. And what lower contrast does to the difference map as
a lesion detector (chapter 5b, section 1): its area under the precision-recall curve.
""")

code(r"""
ct_test = ct.select("test", 1)
liver = ct.seg[ct_test] > 0                                               # liver and tumour
ct_cnr = metrics.contrast_to_noise(ct.images[ct_test], ct.masks[ct_test], liver)
def detector(d, model, idx):
    x = d.images[idx].astype(np.float32)
    return metrics.detection(np.abs(x - explore.translate_slices(model, x)), d.masks[idx])["auprc"]
compare = pd.DataFrame({
    "glioma in FLAIR": {"lesion CNR, Eq. (1)": whole["FLAIR"], "healthy-tissue PSNR (dB)": results["FLAIR"]["psnr_tissue"],
                        "identity": results["FLAIR"]["identity"], "difference-map AUPRC": detector(flair, models["FLAIR"], test)},
    "liver tumour in CT": {"lesion CNR, Eq. (1)": ct_cnr, "healthy-tissue PSNR (dB)": ct_result["psnr_tissue"],
                           "identity": ct_result["identity"], "difference-map AUPRC": detector(ct, liver_model, ct_test)}})
compare.round(3)
""")

code(r"""
c = compare
glue("ct_cnr", f"{c.loc['lesion CNR, Eq. (1)', 'liver tumour in CT']:+.1f}", display=False)
glue("flair_cnr", f"{c.loc['lesion CNR, Eq. (1)', 'glioma in FLAIR']:+.1f}", display=False)
glue("ct_contrast_verdict", "confirms the paper's first observation" if abs(ct_cnr) < abs(whole["FLAIR"]) else
     "does not reproduce the paper's first observation: the phantom's CT lesions are not the fainter ones", display=False)
worse = (c.loc["healthy-tissue PSNR (dB)", "liver tumour in CT"] < c.loc["healthy-tissue PSNR (dB)", "glioma in FLAIR"]
         and c.loc["identity", "liver tumour in CT"] < c.loc["identity", "glioma in FLAIR"])
glue("ct_deform_verdict", "ANT-GAN changes more healthy tissue in CT than in FLAIR, as the paper saw" if worse else
     "ANT-GAN does not change more healthy tissue in CT than in FLAIR on both measures, so the paper's second "
     "observation is not reproduced here", display=False)
glue("ct_auprc", f"{c.loc['difference-map AUPRC', 'liver tumour in CT']:.2f} in CT against "
     f"{c.loc['difference-map AUPRC', 'glioma in FLAIR']:.2f} in FLAIR", display=False)
ct_failed = [k for k in ct_floors.index if not ct_floors.loc[k, "met"]]
glue("ct_floors", "meets all five floors" if not ct_failed else f"misses the floors on {', '.join(ct_failed)}", display=False)
""", tags=["hide-input"])

md(r"""
On the liver phantom ANT-GAN {glue:text}`ct_floors`. The tumours' CNR is
{glue:text}`ct_cnr` (negative: darker than the liver) against {glue:text}`flair_cnr` for the
glioma in FLAIR, which {glue:text}`ct_contrast_verdict`. On the second observation,
{glue:text}`ct_deform_verdict`. As a detector the difference map reaches an AUPRC of
{glue:text}`ct_auprc`: a lesion that differs from its surroundings by a few grey levels leaves a
difference of a few grey levels, which the scanner's noise competes with.

## What it means

The method has no knowledge of contrast built in: the anomaly-mask loss only says *where* change
is allowed, so the same code and recipe run on any image with a lesion mask. What changes with
the contrast is how much there is to remove and how easy it is to see, and that is measured by
Eq. (1) before any network is trained. A reader of Figs. 10 and 11 cannot tell a good result from
an easy one; the floors, each against doing nothing on the same images, can.

## Exercises

1. **Window.** Prepare the liver phantom with a narrower window (`default.phantom_dataset(lesion="liver",
   window=(60, 150))`) and recompute the tumour CNR. Does the CNR change? What does change, and
   why might a network still learn better from the narrower window?
2. **Which contrast for the judge?** The T1 model is judged by a T1 segmentor. Judge the T1 outputs
   with the FLAIR judge instead (`zoo.load_pretrained("segmentor-phantom")`) and explain the result.
3. **Multi-contrast.** BraTS gives all four contrasts of each patient. Sketch how ANT-GAN could take
   the four as input channels and output four pseudo-healthy contrasts. Which of its losses need
   changing?

```{admonition} Solution 1
:class: dropdown
Eq. (1) divides a difference of means by a standard deviation; a linear window scales both by the
same factor, so inside the window the CNR does not change. Clipping does change it: pixels outside
the window are flattened. What the narrower window changes is the *spread of grey levels*: the
tumour and the liver are further apart in [0, 1], so a loss that is not scale-free (the L1 and
least-squares terms of Eqs. (1)-(5) of chapter 3) weighs them more.
```

```{admonition} Solution 2
:class: dropdown
A segmentor trained on FLAIR has learned "bright blob in the white matter"; in T1 the lesion is dark
or invisible, so the FLAIR judge finds little in the T1 *inputs* already. Its healthiness score on
the T1 outputs is then high whatever the translator did: a judge that cannot see the lesion cannot
say that it is still there. Always check that the judge finds the lesion on the inputs first.
```

```{admonition} Solution 3
:class: dropdown
The generators take and give 4 channels (`in_channels=4, out_channels=4`) and the discriminators read
4; the anomaly-mask loss and the cycle and adversarial terms apply per channel unchanged, since the
lesion mask is shared by all four contrasts. The shortcut adds the 4-channel input to the 4-channel
output. What needs care is the balance: contrasts in which the lesion is faint should not dominate
the loss, for instance by normalising each channel's terms.
```
""")

write("book/05c_antgan_contrasts.ipynb")
