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

Everything so far used FLAIR. Sun et al. chose it "because the entire tumor is represented well
by this modality" {cite}`sun2020antgan`, then showed in two short sections that
the method is not tied to it: ANT-GAN trained on T1, T1ce and T2 (their Sec. IV-D, Fig. 10) and on
liver CT from the LiTS challenge (Sec. IV-E, Fig. 11). Both sections are pictures without numbers,
and the CT one makes two observations: the liver lesions have "much lower contrast" than brain
lesions in MRI, and the outputs show "more deformations". This chapter repeats both experiments
with the same recipe as chapter 3's `antgan` and turns the pictures into measurements:

1. how far the same lesion stands from its surroundings in each contrast (an intensity gap and a
   contrast-to-noise ratio, Eq. (1));
2. ANT-GAN on each MR contrast, judged by the floors of chapter 3;
3. ANT-GAN on the liver CT phantom, and whether lower contrast costs what the paper says.
""")

colab_setup()

md(r"""
## 1. One lesion, four contrasts

The book's phantom renders every subject in the four BraTS contrasts from one anatomy, so the
same slice can be shown in each. How far a lesion stands out can be put in two numbers. The
**gap** $\bar{x}_{\text{lesion}} - \bar{x}_{\text{tissue}}$ is the difference between the mean
intensity of the lesion and that of the tissue around it, in the image's own units: it is how
much a translator has to change. The **contrast-to-noise ratio** divides the gap by the tissue's
standard deviation,

$$
\mathrm{CNR} = \frac{\bar{x}_{\text{lesion}} - \bar{x}_{\text{tissue}}}{\sigma_{\text{tissue}}}, \tag{1}
$$

which says how easily the lesion is *seen*: a CNR of 0 means that the intensity alone cannot
tell lesion from tissue, and its sign says whether the lesion is brighter or darker. "The tissue
around it" is taken literally here: a ring of tissue 5 pixels wide around each lesion
(`metrics.surrounding`), not the whole brain, whose spread would mostly measure anatomy (dark
fluid, grey and white matter). `metrics.lesion_contrast` computes both numbers, pooling the
pixels of every test slice (so differences between subjects' scaling add to $\sigma$). On a
hand-made image whose answer is known, a tissue of mean 0.4 and standard deviation 0.05 with a
square lesion 0.25 brighter, the CNR is 5:
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
from pseudohealthy_lib import evaluate as E, explore, recipes, viz, zoo
from pseudohealthy_lib.data import default, load_prepared

CONTRASTS = {"FLAIR": "flair", "T1": "t1", "T1ce": "t1ce", "T2": "t2"}
data = {name: load_prepared(default.phantom_dataset(modality=m)) for name, m in CONTRASTS.items()}
flair = data["FLAIR"]
assert all((d.subjects == flair.subjects).all() and (d.slice_index == flair.slice_index).all() for d in data.values())
test = flair.select("test", 1)
cases = explore.spread_cases(flair, "test", 3)
case = cases[len(cases) // 2]
fig = viz.image_grid([[d.images[case].astype(np.float32) for d in data.values()]], list(data), size=2.4,
                     suptitle=f"One slice of subject {flair.subjects[case]} in the phantom's four contrasts")
for ax in fig.axes:
    viz.mask_contour(ax, flair.masks[case], lw=0.8)
""", figure=("fig-05c-contrasts", "One test slice of the book's phantom in FLAIR, T1, T1ce and T2, with the lesion's outline "
             "in red: one anatomy and one lesion, four appearances."))

code(r"""
REGIONS = {"whole lesion": (1, 2, 4), "oedema": (2,), "necrosis / non-enhancing core": (1,), "enhancing rim": (4,)}
brain = metrics.tissue_mask(flair.healthy[test].astype(np.float32))       # the brain, from the healthy twin
def contrast_rows(d, idx):
    rows = {}
    for region, labels in REGIONS.items():
        inside = np.isin(d.seg[idx], labels)
        ring = metrics.surrounding(inside, 5, within=brain)          # the tissue just around this region
        rows[region] = metrics.lesion_contrast(d.images[idx], inside, ring)
    return rows
measured = {name: contrast_rows(d, test) for name, d in data.items()}
cnr = pd.DataFrame({n: {r: v["cnr"] for r, v in rows.items()} for n, rows in measured.items()}).T.rename_axis("contrast")
gap = pd.DataFrame({n: {r: v["gap"] for r, v in rows.items()} for n, rows in measured.items()}).T.rename_axis("contrast")
pd.concat({"gap (intensity units)": gap, "CNR, Eq. (1)": cnr}, axis=1).round(2)
""")

code(r"""
whole, whole_gap = cnr["whole lesion"], gap["whole lesion"]
order = whole.abs().sort_values(ascending=False)
glue("cnr_order", ", ".join(f"{k} ({whole[k]:+.1f})" for k in order.index), display=False)
glue("cnr_tie", (f" {order.index[0]} and {order.index[1]} are within {order.iloc[0] - order.iloc[1]:.1f} of each other."
                 if order.iloc[0] - order.iloc[1] < 0.3 else ""), display=False)
glue("cnr_worst", f"{order.index[-1]} ({whole[order.index[-1]]:+.1f}, a gap of {whole_gap[order.index[-1]]:+.2f})", display=False)
rim = cnr["enhancing rim"].dropna()
glue("cnr_rim", (f"T1ce, where it stands {rim['T1ce']:+.1f} against {rim['FLAIR']:+.1f} in FLAIR: this is why BraTS "
                 "methods read T1ce for the enhancing tumour" if rim.abs().idxmax() == "T1ce" else
                 f"{rim.abs().idxmax()} ({rim[rim.abs().idxmax()]:+.1f}; T1ce {rim.get('T1ce', np.nan):+.1f}), although "
                 "the phantom draws the rim to *enhance* in T1ce"), display=False)
""", tags=["hide-input"])

md(r"""
Ranked by the CNR of the whole lesion against the tissue around it, the contrasts go
{glue:text}`cnr_order`.{glue:text}`cnr_tie` The faintest is {glue:text}`cnr_worst`. Against its
own surroundings the enhancing rim stands out most in {glue:text}`cnr_rim`. Where the CNR is
small a translator has a harder lesion to *find*, and where the gap is small it has less to
*repair*: a lesion that barely differs from tissue changes the image little when it is removed,
so even a translator that misses it scores well inside it.

The CNR compares the lesion with the tissue *next to it*. A translator, and the critic that
trains it, must also tell the lesion from healthy tissue *anywhere* in the brain that looks the
same: in T2, for example, fluid is bright too. Two numbers measure that ambiguity: the share of
the healthy slices' tissue that is at least as extreme (as bright, or for a darker lesion as
dark) as the lesion's median pixel, and how well the intensity alone finds lesion pixels over
the tissue of every test slice (the area under its precision-recall curve, AUPRC; the floor a
learned lesion map must beat).
""")

code(r"""
def ambiguity(d, idx):
    x, m = d.images[idx].astype(np.float32), d.masks[idx]
    tissue = metrics.tissue_mask(x)
    det = metrics.intensity_detection(x, m, tissue)              # brightness, or darkness for a darker lesion
    healthy = x[d.labels[idx] == 0][tissue[d.labels[idx] == 0]]
    median = np.median(x[m > 0])
    return {"healthy tissue as extreme as the lesion's median":
                float((healthy <= median if det["lesion_darker"] else healthy >= median).mean()),
            "intensity AUPRC": det["auprc"]}
amb = pd.DataFrame({name: ambiguity(d, test) for name, d in data.items()}).T.rename_axis("contrast")
amb.join(cnr["whole lesion"].rename("CNR")).round(3)
""")

code(r"""
share = amb["healthy tissue as extreme as the lesion's median"]
glue("amb_rank", ", ".join(f"{k} {v:.2f}" for k, v in amb["intensity AUPRC"].sort_values(ascending=False).items()), display=False)
close = whole.sub(whole["FLAIR"]).abs().drop("FLAIR")
twin = close.idxmin() if len(close) else None
glue("amb_twin", (f"{twin}'s lesion stands out from its surroundings about as much as FLAIR's (CNR {whole[twin]:+.2f} against "
                  f"{whole['FLAIR']:+.2f}), yet {share[twin]:.1%} of its healthy tissue is as {'dark' if whole[twin] < 0 else 'bright'} "
                  f"as its lesion's median "
                  f"pixel, against {share['FLAIR']:.1%} in FLAIR"
                  if twin is not None and close.min() < 0.3 else
                  "no other contrast's lesion stands out from its surroundings as much as FLAIR's"), display=False)
""", tags=["hide-input"])

md(r"""
Ranked by how well the intensity alone finds the lesion: {glue:text}`amb_rank`. The two
measurements need not agree: {glue:text}`amb_twin`. Local contrast says how visible the lesion
is where it is; the ambiguity says whether "bright" (or "dark") is enough to tell it from
healthy tissue. A critic that judges patches of a healthy brain learns what healthy tissue can
look like; where some of it looks like a lesion, a lesion left in place can pass as healthy.

## 2. The same recipe on each MR contrast (Fig. 10)

`antgan-t1`, `antgan-t1ce` and `antgan-t2` were trained with `antgan`'s recipe, changing only
`--modality`. Each is judged as chapter 3 judged `antgan`: the metrics on the test split, the
healthiness measured by a segmentor trained on the *same* contrast (a judge trained on FLAIR has
never seen a T1 image), and the five floors of chapter 3. Their training records:
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
The healthiness column is only as good as its judge, and the judges need not be equally good: a
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
def listed(items):
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
floor_text = {k: E.FLOORS[k][0] for k in E.FLOORS}
passed = [n for n in floors.index if floors.loc[n].all()]
failed = {n: [k for k in floors.columns if not floors.loc[n, k]] for n in floors.index if n not in passed}
glue("fig10_verdict", ("every contrast meets all five floors" if not failed else
     (f"{listed(passed)} meet{'s' if len(passed) == 1 else ''} all five floors; " if passed else "no contrast meets all five floors; ")
     + "; ".join(f"{n} misses the floor{'s' if len(ks) > 1 else ''} {listed(floor_text[k] for k in ks)}" for n, ks in failed.items())),
     display=False)
glue("fig10_gain", ", ".join(f"{k} {v:+.1f} dB" for k, v in gain.items()), display=False)
r_gap = np.corrcoef(whole_gap.abs()[gain.index], gain)[0, 1]
r_amb = np.corrcoef(amb["intensity AUPRC"][gain.index], gain)[0, 1]
glue("fig10_gap_link", (f"across these four contrasts the gain follows the lesion's gap of section 1 "
                        f"(correlation {r_gap:+.2f})" if r_gap > 0.5 else f"across these four contrasts the gain does not "
                        f"simply follow the lesion's gap of section 1 (correlation {r_gap:+.2f})")
     + (f"; it follows the intensity's AUPRC, the ambiguity measure, more closely ({r_amb:+.2f})" if r_amb > max(r_gap, 0.5) else
        f"; with the intensity's AUPRC its correlation is {r_amb:+.2f}"), display=False)
faint = order.index[-1]
glue("fig10_faint", f"{faint}, where the gap is {whole_gap[faint]:+.2f}", display=False)
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
             "first figure: input, output, absolute difference (colour bar in grey levels) and the true healthy image."))

md(r"""
On the test patients {glue:text}`fig10_verdict`. Inside the lesion the outputs gain, over
handing back the input, {glue:text}`fig10_gain`; {glue:text}`fig10_gap_link`. Read the figure
with the table: in the faintest contrast, {glue:text}`fig10_faint`, a translator that leaves the
lesion where it is loses little, because there was little to remove. This is why the floors
compare each model with doing nothing *on its own contrast*.

### What the critic rewards

The generator removes a lesion only because the critic rewards it: the adversarial loss pushes
$\mathcal{G}_{A2N}$ towards whatever makes $D_B$ say "real healthy slice". If $D_B$ tells the two
domains apart by something that removing the lesion cannot change (the slice's anatomical
level, the way a tumour pushes the ventricles aside, the image's intensity scale), then even a
perfect removal hardly moves its verdict, and the generator, held to the input everywhere else
by the AM loss, has little reason to try. This can be measured on the trained critic.
`evaluate.critic_scores` gives $D_B$'s mean score (least squares: 1 means real) on the real
healthy slices, on the lesion slices, on the model's outputs and on the lesion slices' *true*
healthy images, which only the phantom has, and the **removal share**

$$
\rho = \frac{\bar{D}_B(\text{truth}) - \bar{D}_B(\text{inputs})}{\bar{D}_B(\text{healthy}) - \bar{D}_B(\text{inputs})}, \tag{2a}
$$

the part of the critic's gap between the domains that a perfect removal would close: near 1, the
critic judges the lesion; near 0, it judges something else. A zoo model keeps only its
generators, so `train` records these numbers in the manifest while the critic still exists:
""")

code(r"""
CRITIC_MODELS = {**{f"FLAIR ({n})": n for n in recipes.seeds("antgan")}, **{name: n for name, n in MODELS.items() if name != "FLAIR"}}
recorded = {label: n for label, n in CRITIC_MODELS.items() if n in zoo.available() and "critic" in zoo.manifest(n)["metrics"]}
critics = pd.DataFrame({label: zoo.manifest(n)["metrics"]["critic"] | {k: zoo.manifest(n)["metrics"][k] for k in ("psnr_lesion", "healthiness")}
                        for label, n in recorded.items()}).T     # written by train, on each model's test split
critics[["healthy", "inputs", "outputs", "truth", "removal_share", "output_share", "psnr_lesion", "healthiness"]].astype(float).round(3)
""")

code(r"""
rho, health = critics["removal_share"].astype(float), critics["healthiness"].astype(float)
# does the share order the models? look for a pair where the lower share goes with the higher healthiness
reversed_pair = next(((a, b) for a in rho.index for b in rho.index if rho[a] < rho[b] - 0.1 and health[a] > health[b] + 0.1), None)
glue("critic_verdict", (f"A perfect removal would close {listed(f'{v:.0%} ({n})' for n, v in rho.items())} of the critics' gaps. "
     + (f"The share does not order the models: {reversed_pair[0]}'s critic, at {rho[reversed_pair[0]]:.0%}, judges the lesion less "
        f"than {reversed_pair[1]}'s ({rho[reversed_pair[1]]:.0%}), yet its model hides the lesion better from the judge "
        f"(healthiness {health[reversed_pair[0]]:.2f} against {health[reversed_pair[1]]:.2f}). What a critic judges at the end "
        "of training is one part of the story; how the generator follows it during training is another"
        if reversed_pair else "Along these rows a higher share goes with a higher healthiness")) if len(rho) else
     "No model's manifest holds its critic's scores yet (they are written when a model is trained).", display=False)
""", tags=["hide-input"])

md(r"""
{glue:text}`critic_verdict`. The shares are measured on each critic at the end of training, on
its test split; they describe what these critics learned, not what any critic could learn. The
FLAIR rows are one recipe with different seeds: how far they spread is the yardstick for
reading a difference between contrasts.

## 3. Liver CT (Fig. 11)

The LiTS-layout phantom is an abdominal CT: Hounsfield units (HU), a liver of about 100 HU with
hypodense tumours of 20 to 45 HU, and the noise of a real scanner. To show soft tissue a
radiologist chooses a **window**, a level $L$ and a width $W$, and maps
$[L - W/2,\; L + W/2]$ to black to white. The book prepares CT with the soft-tissue window
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
The paper's two observations can now be checked. *Lower contrast*: the gap and the CNR of Eq. (1)
for the liver tumours against the liver around them, beside the glioma in FLAIR against the brain
around it.
*More deformation*: how much the output changes healthy tissue, which chapter 3 measured as the
healthy-tissue PSNR and the identity score. And what lower contrast does to the difference map as
a lesion detector (chapter 5b, section 1): its area under the precision-recall curve, over the
tissue of every test slice as `evaluate` scores it.
""")

code(r"""
ct_test = ct.select("test", 1)
liver = ct.seg[ct_test] > 0                                               # liver and tumour
ct_contrast = metrics.lesion_contrast(ct.images[ct_test], ct.masks[ct_test],
                                      metrics.surrounding(ct.masks[ct_test], 5, within=liver))
compare = pd.DataFrame({
    "glioma in FLAIR": {"lesion gap (intensity units)": whole_gap["FLAIR"], "lesion CNR, Eq. (1)": whole["FLAIR"],
                        "healthy-tissue PSNR (dB)": results["FLAIR"]["psnr_tissue"], "identity": results["FLAIR"]["identity"],
                        "difference-map AUPRC": results["FLAIR"]["auprc"]},
    "liver tumour in CT": {"lesion gap (intensity units)": ct_contrast["gap"], "lesion CNR, Eq. (1)": ct_contrast["cnr"],
                           "healthy-tissue PSNR (dB)": ct_result["psnr_tissue"], "identity": ct_result["identity"],
                           "difference-map AUPRC": ct_result["auprc"]}})
compare.round(3)
""")

code(r"""
c = compare["liver tumour in CT"], compare["glioma in FLAIR"]
ct_gap, fl_gap = abs(c[0]["lesion gap (intensity units)"]), abs(c[1]["lesion gap (intensity units)"])
glue("ct_gap", f"{c[0]['lesion gap (intensity units)']:+.2f} (CNR {c[0]['lesion CNR, Eq. (1)']:+.1f})", display=False)
glue("flair_gap", f"{c[1]['lesion gap (intensity units)']:+.2f} (CNR {c[1]['lesion CNR, Eq. (1)']:+.1f})", display=False)
glue("ct_contrast_verdict", (f"so in the image's own units the CT tumours are {fl_gap / ct_gap:.1f} times fainter, as the paper "
                             "observed" if ct_gap < fl_gap else "so the phantom's CT tumours are not the fainter ones in the "
                             "image's own units, and the paper's first observation is not reproduced here"), display=False)
glue("ct_cnr_note", ("Their CNR is the smaller one too" if abs(c[0]["lesion CNR, Eq. (1)"]) < abs(c[1]["lesion CNR, Eq. (1)"])
                     else "Their CNR is nonetheless not the smaller one, because the liver around them is more uniform than "
                     "the brain around a glioma: fainter and easier to see are not the same thing"), display=False)
psnr_worse = c[0]["healthy-tissue PSNR (dB)"] < c[1]["healthy-tissue PSNR (dB)"]
id_worse = c[0]["identity"] < c[1]["identity"]
glue("ct_deform_verdict", ("ANT-GAN changes more healthy tissue in CT than in FLAIR on both measures, as the paper saw"
                           if psnr_worse and id_worse else
                           "the two measures disagree: ANT-GAN changes more healthy tissue in CT by "
                           + ("the healthy-tissue PSNR" if psnr_worse else "identity") + " but not by "
                           + ("identity" if psnr_worse else "the healthy-tissue PSNR") + ", so the paper's second observation "
                           "is only partly reproduced" if psnr_worse or id_worse else
                           "ANT-GAN changes healthy tissue no more in CT than in FLAIR on either measure, so the paper's "
                           "second observation is not reproduced here"), display=False)
ct_auc, fl_auc = c[0]["difference-map AUPRC"], c[1]["difference-map AUPRC"]
glue("ct_auprc", f"{ct_auc:.2f} in CT against {fl_auc:.2f} in FLAIR", display=False)
glue("ct_auprc_why", (f"lower in CT: a tumour that differs from the liver by {ct_gap:.2f} leaves a difference map of about "
                      "that size, with the scanner's noise and the model's own small changes of healthy tissue competing "
                      "with it" if ct_auc < fl_auc else "no lower in CT, so the fainter tumours did not cost the difference "
                      "map its use as a detector here"), display=False)
ct_failed = [k for k in ct_floors.index if not ct_floors.loc[k, "met"]]
glue("ct_floors", "meets all five floors" if not ct_failed else
     f"misses the floor{'s' if len(ct_failed) > 1 else ''} {listed(floor_text[k] for k in ct_failed)}", display=False)
""", tags=["hide-input"])

md(r"""
On the liver phantom ANT-GAN {glue:text}`ct_floors`. *Lower contrast*: the tumours differ from
the liver around them by {glue:text}`ct_gap` (negative: darker), the gliomas from the brain
around them in FLAIR by {glue:text}`flair_gap`, {glue:text}`ct_contrast_verdict`.
{glue:text}`ct_cnr_note`. (The paper also notes that CT shows "greater noise-like artifacts than
MRI", its Sec. IV-A.) *More deformation*: {glue:text}`ct_deform_verdict`. Both measures compare
different tissues, though: in CT "healthy tissue" is the whole body in the window (fat, bowel,
muscle, each with its own noise), in FLAIR the brain. As a detector the difference map reaches an
AUPRC of {glue:text}`ct_auprc`, {glue:text}`ct_auprc_why`.

## What it means

The method has no knowledge of contrast built in: the anomaly-mask loss only says *where* change
is allowed, so the same code and recipe run on any image with a lesion mask. What changes with
the contrast is how much there is to remove (the gap) and how easy it is to see (the CNR of
Eq. (1)), and both can be measured before any network is trained. A reader of Figs. 10 and 11 cannot tell a good result from
an easy one; the floors, each against doing nothing on the same images, can.

## Exercises

1. **Window.** Prepare the liver phantom with a narrower window (`default.phantom_dataset(lesion="liver",
   window=(60, 150))`) and recompute the tumour's gap and CNR with `metrics.lesion_contrast`. Does
   the CNR change? What does change, and why might a network still learn better from the narrower
   window?
2. **Which contrast for the judge?** The T1 model is judged by a T1 segmentor. Judge the T1 outputs
   with the FLAIR judge instead (`zoo.load_pretrained(zoo.judge_name("glioma"))`) and explain the result.
3. **Multi-contrast.** BraTS gives all four contrasts of each patient. Sketch how ANT-GAN could take
   the four as input channels and output four pseudo-healthy contrasts. Which of its losses need
   changing?

```{admonition} Solution 1
:class: dropdown
Eq. (1) divides a difference of means by a standard deviation; a linear window scales both by the
same factor, so as long as no pixel is clipped the CNR does not change. Clipping does change it:
W150/L60 spans -15 to 135 HU, so the contrast-filled vessels inside the liver (about 150-180 HU)
are flattened to white, the liver's standard deviation falls and the tumours' CNR grows a little
(the tumours, 20-45 HU, are not clipped). What the narrower window changes most is the *gap*:
tumour and liver are 400/150 = 2.7 times further apart in [0, 1], so the losses of chapter 3 that
are not scale-free (the cycle terms' absolute error, the anomaly-mask loss's squared error) see
a larger error where the tumour is, and the lesion becomes a larger part of what the generators
must get right.
```

```{admonition} Solution 2
:class: dropdown
A segmentor trained on FLAIR has learned what a lesion looks like in FLAIR; a T1 image breaks its
assumptions (in T1 the white matter, not the lesion, is the brightest tissue). Two things can
happen, and `r["judge"]` (its Dice, missed share and false-alarm rate on the inputs) tells which:
if it finds little of the lesion on the T1 *inputs*, its healthiness on the outputs is high whatever
the translator did (a judge that cannot see the lesion cannot say that it is still there); if it
fires on healthy T1 tissue, healthiness, normalised by the true lesion size, can even go negative.
Either way the score says nothing about the translator. Check the judge on the inputs first.
```

```{admonition} Solution 3
:class: dropdown
The generators take and give 4 channels and the discriminators read all 4 at once (one
real/fake map for the 4-channel image, so the critic can use the contrasts together). The
anomaly-mask and cycle losses are pixel losses and apply to the 4 channels unchanged, since one
lesion mask serves all four contrasts; the shortcut adds the 4-channel input to the 4-channel
output. What needs care is the balance: a contrast in which the lesion is faint contributes little
to the losses and can be neglected while the bright, high-variance contrasts dominate, so the
channels should be normalised alike (or their terms weighed) before they are summed.
```
""")

write("book/05c_antgan_contrasts.ipynb")
