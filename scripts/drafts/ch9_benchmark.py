"""Draft of the chapter "The benchmark" (issue 17): writes book/09_benchmark.ipynb, unexecuted.

    .venv/bin/python scripts/drafts/ch9_benchmark.py && python scripts/execute_notebooks.py book/09_benchmark.ipynb

It reads every translator the zoo ships (missing ones are left out and named) and grows as the
method chapters add theirs; once the stroke-trained models and SMILE, GVS and VA-GAN exist the
notebook is the artefact and this draft is deleted."""
from _cells import code, colab_setup, md, write

md(r"""
# The benchmark: every method against the truth

[![Open in Colab](_static/colab-badge.svg)](https://colab.research.google.com/github/pseudohealthy/pseudohealthy-book/blob/main/book/09_benchmark.ipynb)

Each paper in this book judged its method with the scores its data allowed. On real scans nobody
knows what the tissue under a tumour looked like, so Xia et al. scored *identity* and
*healthiness*, Sun et al. showed pictures and downstream tasks, and nobody could say how close a
pseudo-healthy image is to the right answer. The phantom can: every subject is rendered twice,
with and without its lesion. This chapter puts every method of the book on the same held-out
phantoms and asks four questions a user has:

1. Which method comes closest to the true healthy tissue, and at what cost to the rest of the image?
2. Which one leaves a lesion that a segmentor still finds?
3. Which one gives the best lesion *map* (the difference $|x - G(x)|$ as a detector)?
4. What does each cost: parameters, training time, seconds per slice?

And one a method's author has: how do I put *my* model on this table?
""")

colab_setup()

md(r"""
## 1. The test sets

Three phantoms generated with a seed, 9001, that no training run, recipe trial, test or floor
check of the book uses, so no model has seen these subjects and no recipe was chosen on them.
Every slice is scored, the healthy ones included (what a model does to them counts too).
""")

code(r"""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from myst_nb import glue
from pseudohealthy_lib import benchmark as B, evaluate as E, recipes, viz, zoo
from pseudohealthy_lib.config import fast_mode

import torch
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"       # every model and judge runs here
sets = {name: B.benchmark_data(name) for name in B.SETS}      # generated once, then read from the cache
""", tags=["remove-output"])

code(r"""
pd.DataFrame({name: {"lesion": B.SETS[name]["lesion"], "seed": B.SEED, "subjects": len(set(d.subjects.tolist())),
                     "slices": len(d), "lesion slices": int((d.labels == 1).sum()), "judge": zoo.judge_name(B.SETS[name]["lesion"])}
              for name, d in sets.items()}).T
""")

md(r"""
## 2. Your model on the benchmark

Anything that maps a batch of slices to pseudo-healthy slices can be scored: a zoo name, a run
folder, a checkpoint, a method object, or a plain Python function from tensors of shape
(B, 1, H, W) in $[-1, 1]$ to the same. From the shell the same evaluation is

```bash
FILE=$(python -c "from pseudohealthy_lib.data import default; print(default.phantom_dataset(20, 'glioma', seed=9001))")
python -m pseudohealthy_lib evaluate MODEL --data $FILE --split all --segmentor segmentor-phantom --json
```

and `--data` takes any prepared file, a phantom's or your own BraTS prepared with
`python -m pseudohealthy_lib prepare` (on real scans the metrics that need the healthy truth come
back empty). A method that must be *told* where the lesion is (an inpainter) is an object with
`needs_mask = True` and a `translate(x, mask=m)` method; the benchmark records that (its table's
`given the mask` column, which the guide below reads) and gives it no detection score, since its
difference map only repeats the mask it was given. As an example of a method that is not a network, here is a rule a student might
try first: no pixel of a slice may be brighter than the 90th percentile of that slice's tissue.
FLAIR lesions are bright, so the rule dims them; it has no idea what should be there instead.
""")

code(r"""
def clip_bright(x: torch.Tensor) -> torch.Tensor:
    # (B, 1, H, W) in [-1, 1]: cap each slice at the 90th percentile of its tissue
    out = x.clone()
    for i, xi in enumerate(x):
        tissue = xi > -1 + 1e-3
        if tissue.any():
            out[i] = torch.minimum(xi, torch.quantile(xi[tissue].float(), 0.9).to(xi.dtype))
    return out
""")

md(r"""
Before a method goes on the table, check it on a slice whose answer is known. Ten tissue pixels
of values 0.1 to 1.0 on a background of -1: the 90th percentile of the tissue is 0.91, so only
the brightest pixel should change, and the background not at all.
""")

code(r"""
toy = torch.full((1, 1, 4, 4), -1.0)
toy.view(-1)[:10] = torch.linspace(0.1, 1.0, 10)
print(clip_bright(toy)[0, 0])
""", check=True)

md(r"""
The book's own models, by the chapter that made them. A recipe trained with several seeds is
one row: the mean over seeds, with the standard deviation over seeds beside it. The diffusion
model is different in kind: it is *told* where the lesion is and only fills it in (chapter 8), so
it competes with the inpainting reference, not with the translators, and it gets no detection score.
""")

code(r"""
HEADLINE = {"CycleGAN": "phsgan-cyclegan", "conditional GAN": "phsgan-cgan", "ANT-GAN": "antgan",
            "PHS-GAN, paired": "phsgan-paired", "PHS-GAN, unpaired": "phsgan-unpaired",
            "diffusion (given the mask)": "diffusion"}
RULE = "clip bright (a rule)"
shipped = set(zoo.available())
models = {label: [n for n in recipes.seeds(name) if n in shipped] for label, name in HEADLINE.items()}
unshipped = [label for label, names in models.items() if not names]
no_recipe = recipes.methods_without_recipe()                  # library methods no recipe trains yet
models = {label: names for label, names in models.items() if names} | {RULE: clip_bright}
glue("missing", "; ".join([f"{' and '.join(unshipped)} (no model in the zoo yet)"] * bool(unshipped)
                          + [f"the library's methods {' and '.join(no_recipe)} (no recipe yet)"] * bool(no_recipe))
     or "nothing", display=False)
def recipe(names):                                             # what a row's first seed was trained with
    if not isinstance(names, list):
        return {"models (seeds)": "a Python function"}
    c = zoo.manifest(names[0])["config"]
    o = c["options"]
    return {"models (seeds)": ", ".join(names), "steps × batch": f"{c['steps']} × {c['batch_size']}",
            "generator": f"{o.get('generator', 'resnet') if c['method'] in ('cyclegan', 'antgan') else c['method']}"
                         + (f", ngf {o['ngf']}" if "ngf" in o else "")}
def budget(rows):                                              # minutes and machines of every trained model
    m = [zoo.manifest(n) for names in rows for n in names]
    minutes = [x["wall_seconds"] / 60 for x in m]
    where = sorted({f"{x['hardware'].get('gpu')}" if x["hardware"].get("gpu") else f"{x['hardware']['cpu_count']} CPU cores"
                    for x in m})
    return f"{min(minutes):.0f} to {max(minutes):.0f} minutes of training each on {' or '.join(where)}"
glue("budget", budget([v for v in models.values() if isinstance(v, list)]), display=False)
pd.DataFrame({label: recipe(names) for label, names in models.items()}).T.fillna("")
""")

md(r"""
Not on the table yet: {glue:text}`missing`. The table grows as the method
chapters ship them; nothing below is typed, so a re-run ranks whatever is there. Every network
was trained on the phantom's gliomas at the book's teaching size (128 px, {glue:text}`budget`), a
few percent of the papers' budgets: the table compares recipes at that budget, not the methods at
their best. The CycleGAN row is the baseline of PHS-GAN's comparison (recipe `phsgan-cyclegan`,
a ResNet generator), not chapter 2's pair of generators.

## 3. Glioma: the headline table

The columns are the evaluation chapter's: identity (masked MS-SSIM between output and input
outside the lesion, PHS-GAN's score); healthiness (PHS-GAN's other score: 1 minus the number of
pixels the judge, a segmentor trained on other phantoms, marks as lesion anywhere in the outputs,
over the number of true lesion pixels, both averaged over the lesion slices; 1 when it marks
nothing, and below 0 if it marks more than there was, false alarms included); the fidelity inside
the lesion against the true healthy tissue (PSNR, SSIM, and the bias, the mean of output minus
truth there, in grey levels scaled so that 0 and 1 are the 0.5th and 99.5th percentiles of the
tissue the model can see, and clipped to that range, so a lesion brighter than nearly all the
tissue counts as 1: above 0 the output is brighter than the truth); the PSNR of the output
against the *input* over the tissue outside the lesion, the one number of Sun et al.'s Table IV
(how much healthy tissue was left alone); the mean change on lesion-free slices (on the raw
[0, 1] scale, not clipped); and the difference map as a
detector (AUPRC and the optimistic ⌈Dice⌉). Reference rows come first: doing nothing, the oracle (the truth itself), biharmonic
inpainting given the true mask widened by 2 pixels (a lesion's edge blurs into the tissue around
it, so the widened mask also replaces that halo, which is why inpainting's healthy-tissue PSNR,
scored outside the unwidened mask, is below the ceiling), and the image intensity used as a
lesion detector (that row, and the detection columns, are in the second table below). The oracle is
not perfect everywhere: a lesion pushes and brightens the tissue around it beyond its label, so
even the true healthy image differs from the input outside the mask (its identity and its
healthy-tissue PSNR are below the ceiling). Each slice's PSNR is capped at {glue:text}`ceiling` dB,
an error far below one grey level, so that a slice left exactly as it was cannot make a mean
infinite: the oracle's {glue:text}`ceiling` dB inside the lesion means no error at all.
""")

code(r"""
QUALITY = ["identity", "healthiness", "psnr_lesion", "ssim_lesion", "bias_lesion", "psnr_tissue", "change_healthy"]
DETECTORS = ["(intensity threshold)"]                         # a reference for the detection columns only
COST = ["trained with", "auprc", "dice_max", "seeds", "params (M)", "train minutes", "slices/s"]
glue("ceiling", f"{E.PSNR_CEILING:g}", display=False)
glioma, kept = B.benchmark(models, "glioma", data=sets["glioma"], keep_outputs=True, device=DEVICE)
print(E.judge_caption(kept[next(iter(kept))][0]))
B.formatted(glioma.drop(index=DETECTORS), QUALITY)
""")

md(r"""
The same rows, what each was trained with, their difference map as a detector and their cost
(training minutes from each model's manifest, on the machine that trained it; slices per second
on this one). *Trained with* names what a model's training saw beyond the slices and their
lesion / no-lesion labels: lesion masks, or the phantom's healthy twins, which no real dataset
has. Whatever stands there is an advantage the other rows did not have; read their scores with it.
""")

code(r"""
B.formatted(glioma, COST, digits=2).replace(r"\.00$", "", regex=True)
""")

code(r"""
from pathlib import Path
from pseudohealthy_lib.config import runs_dir
board_dir = runs_dir() / "leaderboard" if fast_mode() else Path("leaderboard")   # smoke runs never overwrite the book's
board = B.write_leaderboard(glioma, board_dir / "glioma.json", "glioma")
print(f"leaderboard written: {board_dir / 'glioma.json'} ({len(board['rows'])} rows, library {board['version']})")
""", tags=["remove-output"])

md(r"""
The table is also written to `book/leaderboard/glioma.json` with the library's version and commit,
so that a later version of a method can be compared with this one row by row.

Two scores pull against each other (the introduction's healthiness and identity), so one column
cannot rank the methods. Plot them against each other: the top right corner is the goal, and
doing nothing sits at identity 1 with healthiness {glue:text}`nothing_h`. The third panel asks
what fidelity inside the lesion costs in speed: up is truer tissue, right is faster, and the
dashed line is doing nothing.
""")

code(r"""
glue("nothing_h", f"{glioma.loc['(do nothing)', 'healthiness']:.2f}", display=False)
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
B.plot_tradeoff(glioma, "identity", "healthiness", ax=axes[0], legend=False)
B.plot_tradeoff(glioma, "identity", "healthiness", ax=axes[1], legend=False)
axes[1].set(xlim=(0.95, 1.001), ylim=(0.9, 1.005), title="the top right corner, enlarged")
B.plot_tradeoff(glioma, "slices/s", "psnr_lesion", ax=axes[2], logx=True, legend=False)
axes[2].axhline(glioma.loc["(do nothing)", "psnr_lesion"], color="grey", lw=0.8, ls="--")
fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=5, fontsize=8, frameon=False)
fig.tight_layout(rect=(0, 0.12, 1, 1))
""", figure=("fig-09-tradeoffs", "Left: identity against healthiness on the glioma test set, one point per method "
             "(error bars: standard deviation over seeds, where there are several; open grey markers: reference rows); "
             "middle: its top right corner enlarged; right: fidelity inside the "
             "lesion (PSNR against the true healthy tissue) against inference speed on this machine, the dashed "
             "line doing nothing's PSNR."))

code(r"""
HEALTHY_ENOUGH, GAIN_DB = 0.85, 4.0
ranked = B.guide(glioma, healthy_enough=HEALTHY_ENOUGH, gain_db=GAIN_DB)
for key, (label, value) in ranked.items():
    extra = glioma["trained with"].get(label, "") if label in glioma.index else ""
    glue(f"g_{key}", label.replace(" (given the mask)", ""), display=False)
    first, *ties = value.split("; within", 1)                 # "trained with" belongs to the pick, not to its ties
    glue(f"g_{key}_v", first + (f"; trained with {extra}" if isinstance(extra, str) and extra else "")
         + "".join("; within" + t for t in ties), display=False)
glue("g_thresholds", f"healthiness reaches {HEALTHY_ENOUGH}", display=False)
glue("g_gain", f"{GAIN_DB:g} dB", display=False)
psnr = glioma["psnr_lesion"].astype(float)
sd = glioma["psnr_lesion sd"].astype(float).fillna(0)
free = [k for k in models if k != RULE and not glioma.loc[k, "given the mask"]]
second = psnr[free].drop(index=[ranked["fidelity"][0]], errors="ignore")
glue("g_close", (f"; the next, {second.idxmax()}, is {psnr[ranked['fidelity'][0]] - second.max():.2f} dB behind"
                 + (", within the larger of the two standard deviations over seeds" if psnr[ranked["fidelity"][0]] - second.max()
                    < max(sd[ranked["fidelity"][0]], sd[second.idxmax()]) else "") if len(second) else ""), display=False)
glue("g_inpaint", f"{glioma.loc['(inpainting)', 'psnr_lesion']:.2f} dB", display=False)
""", tags=["hide-input"])

md(r"""
The guide below is computed, not written: `B.guide` applies four rules to the table. On a
hand-made table whose answer is plain: *A* is the most faithful inside the lesion but repaints
the brain (identity 0.90) and is slow; *B* is fast and keeps the brain, but the judge still finds
the lesion (healthiness 0.40); *C* is given the mask; *D* keeps the brain and looks healthy but is
hardly better than doing nothing inside the lesion (1 dB). Only *A* both gains 4 dB and looks
healthy, so it is the pick for identity and for speed as well, however slow and however much it
repaints: the other rows do not do the job, and doing nothing keeps the brain best of all.
""")

code(r"""
toy = pd.DataFrame({"identity":       [1.00, 0.90, 0.99, 0.98, 0.97],
                    "healthiness":    [0.10, 0.95, 0.40, 0.99, 0.90],
                    "psnr_lesion":    [10.0, 19.0, 15.0, 18.0, 11.0],
                    "slices/s":       [1e4, 5.0, 50.0, 0.5, 500.0],
                    "given the mask": [False, False, False, True, False]},
                   index=["(do nothing)", "A", "B", "C", "D"])
for situation, (label, evidence) in B.guide(toy, healthy_enough=0.85, gain_db=4.0).items():
    print(f"{situation:9s} -> {label}: {evidence}")
""", check=True)

md(r"""
A short guide, computed from the table:

- **No mask, the truest tissue inside the lesion:** {glue:text}`g_fidelity` ({glue:text}`g_fidelity_v`{glue:text}`g_close`).
- **The mask is known** (a radiologist drew it, or a segmentor did; scored here with the true
  mask, so a drawn or segmented one, which misses part of the lesion, will score lower): {glue:text}`g_given`
  ({glue:text}`g_given_v`, against {glue:text}`g_inpaint` for classical biharmonic inpainting).
- **Identity first, among the methods not given the mask whose {glue:text}`g_thresholds` and that gain at least {glue:text}`g_gain` inside the lesion over doing nothing:** {glue:text}`g_identity` ({glue:text}`g_identity_v`).
- **Speed, among the same methods:**
  {glue:text}`g_speed` ({glue:text}`g_speed_v`; slices per second on this machine, which vary
  by a few tens of percent from run to run).
""")

code(r"""
rule = glioma.loc[RULE]
nets = glioma.loc[free, ["identity", "healthiness", "psnr_lesion"]].astype(float) if free else None
if nets is None:
    glue("rule_verdict", "No network is shipped yet to compare the rule with.", display=False)
else:
    TIE = 0.005                                              # differences smaller than this are one seed's noise
    n = len(nets)
    dominate = nets.index[(nets["identity"] >= rule["identity"] - TIE) & (nets["healthiness"] >= rule["healthiness"] - TIE)]
    costly = nets[(nets["healthiness"] > rule["healthiness"]) & (nets["identity"] < rule["identity"] - TIE)]
    lower = int((nets["psnr_lesion"] < rule["psnr_lesion"]).sum())
    verdict = (f"The rule of section 2 scores identity {rule['identity']:.3f} and healthiness {rule['healthiness']:.3f}, "
               f"up from doing nothing's {glioma.loc['(do nothing)', 'healthiness']:.3f}. ")
    def count(k, what):                                      # "1 network has", "3 networks have", "no network has"
        return f"{k or 'no'} {what}{'s' if k > 1 else ''} {'have' if k > 1 else 'has'}"
    verdict += (f"Of the {n} networks not given the mask, {count(len(dominate), 'network')} at least its identity "
                f"(to within {TIE}) and its healthiness, PHS-GAN's two scores, together"
                + (f" ({', '.join(dominate)})" if len(dominate) else "") + "; "
                + (f"{count(len(costly), 'network')} a higher healthiness paid for with identity "
                   f"({costly['identity'].min():.3f} to {costly['identity'].max():.3f})" if len(costly) else
                   "none buys a higher healthiness with identity") + ". ")
    verdict += f"Inside the lesion, {count(lower, 'network')} a lower PSNR than the rule's {rule['psnr_lesion']:.2f} dB."
    if rule["healthiness"] - glioma.loc["(do nothing)", "healthiness"] > 0.5:
        verdict += (" Capping the brightness is enough for the judge, a segmentor, to lose most of the lesions: it looks "
                    "for what lesions looked like in its training data, and a capped lesion no longer looks like one. "
                    "Healthiness measures \"the judge finds nothing\", not \"the tissue is right\"; the lesion's fidelity "
                    "and bias, and the worst cases of section 5, show what the rule leaves.")
    glue("rule_verdict", verdict, display=False)
""", tags=["hide-input"])

md(r"""
{glue:text}`rule_verdict`

## 4. The difference map as a lesion detector

A pseudo-healthy model is also a detector: where it changed the image is where it thinks the
lesion was. Each curve below is that map, pooled over the tissue of every slice of the test set,
against the floor every detector must beat: the FLAIR intensity itself. The area under a
precision-recall curve (AUPRC) is 1 for a map that ranks every lesion pixel above every healthy
one and, for a map that knows nothing, about the share of lesion pixels ({glue:text}`share`
of the tissue on the glioma test set). On a toy whose answer is known:
""")

code(r"""
from pseudohealthy_lib import metrics
rng = np.random.default_rng(0)
lesion = rng.random((20, 32, 32)) < 0.05
maps = {"perfect": lesion + 0.1 * rng.random(lesion.shape), "random": rng.random(lesion.shape),
        "inverted": ~lesion + 0.1 * rng.random(lesion.shape)}
print({k: round(metrics.detection(m, lesion)["auprc"], 2) for k, m in maps.items()}, f"share of lesion pixels {lesion.mean():.2f}")
""", check=True)

code(r"""
g = sets["glioma"]
glue("share", f"{(g.masks > 0)[metrics.tissue_mask(g.images.astype(np.float32))].mean():.1%}", display=False)
curves = B.pr_curves({k: v for k, v in kept.items() if not glioma.loc[k, "given the mask"]}, sets["glioma"])
auprc = glioma["auprc"].astype(float)                       # the table's: the mean over seeds
fig, ax = plt.subplots(figsize=(5.5, 4.2))
for label, c in curves.items():                           # the first seed's curve
    step = max(1, len(c["recall"]) // 2000)                 # thin the curve for plotting
    ax.plot(c["recall"][::step], c["precision"][::step], lw=1.2, ls="--" if label.startswith("(") else "-",
            label=f"{label} ({auprc[label]:.2f})")
ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02)); ax.grid(alpha=0.3); ax.legend(fontsize=7)
fig.tight_layout()
floor = auprc["(intensity threshold)"]
best_det = auprc[free].idxmax() if free else None
gap = auprc[best_det] - floor if best_det else np.nan
glue("det_verdict", (f"The best map among the networks is {best_det}'s (AUPRC {auprc[best_det]:.3f}), which "
                     + ("matches" if abs(gap) < 0.01 else "beats" if gap > 0 else "falls below")
                     + f" the intensity floor ({floor:.3f})"
                     + "".join(f"; the {auprc[k]:.2f} ± {glioma.loc[k, 'auprc sd']:.2f} of {k} is within its spread over seeds"
                               for k in free if k != best_det and pd.notna(glioma.loc[k, "auprc sd"])
                               and auprc[best_det] - auprc[k] <= glioma.loc[k, "auprc sd"]) if best_det else
                     f"No network is shipped yet; the intensity floor is {floor:.3f}"), display=False)
glue("det_rule", f"{auprc[RULE]:.2f}", display=False)
""", figure=("fig-09-pr", "Precision-recall curves of each method's difference map as a pixel-wise lesion detector "
             "(glioma test set, all slices, tissue pixels), each from the first seed's model; in brackets the "
             "table's AUPRC, the mean over seeds where there are several. Dashed: the image intensity as the detector; "
             "a curve that starts far from recall 0 begins with many pixels tied at its top score (intensities "
             "saturated at the top of the scale)."))

md(r"""
{glue:text}`det_verdict`. The rule's map ({glue:text}`det_rule`) is no
new detector: it is the intensity above a cap, the floor again in another form. The floor is a
demanding one on FLAIR, where gliomas are among the brightest tissue; a learned map earns its
keep where intensity alone fails (the lesion's edge, dark necrosis, other contrasts).

## 5. The worst cases

Averages hide failures. For each method, the lesion slice (of at least 30 pixels) on which its
fidelity inside the lesion was lowest, beside the truth:
""")

code(r"""
data = sets["glioma"]
import textwrap
MIN_AREA = 30                                               # pixels: a smaller lesion's PSNR rests on too few of them
worst = [(label, res[0], i) for label, res in kept.items() for i in B.worst_cases(res[0], 1, min_area=MIN_AREA, masks=data.masks)]
fig = viz.image_grid([[data.images[i], r.outputs[i].astype(np.float32), data.healthy[i]] for _, r, i in worst],
                     ["input", "output", "true healthy"],
                     [textwrap.fill(label, 16) + f"\n{r.per_slice['psnr_lesion'][i]:.1f} dB, {int(data.masks[i].sum())} px"
                      for label, r, i in worst], size=1.7)
for ax, (_, _, i) in zip(fig.axes[::3], worst):
    viz.mask_contour(ax, data.masks[i], lw=0.6)
bias = {label: r.per_slice["bias_lesion"][i] for label, r, i in worst if label in free}
GHOST = 0.1                                                 # a tenth of the grey range brighter than the truth
ghosts = [k for k, b in bias.items() if b > GHOST]
glue("worst_ghosts", (f"In the worst slice of {len(ghosts)} of the {len(bias)} networks not given the mask "
                      f"({'; '.join(ghosts)}) the output inside the lesion is on average more than {GHOST} brighter than "
                      "the truth (bias " + ", ".join(f"{bias[k]:+.2f}" for k in ghosts) + "): there the lesion was left "
                      "in place, at most dimmed" if ghosts else f"No network's worst slice leaves the lesion brighter than the truth "
                      f"by more than {GHOST} on average; the failures are tissue drawn wrong, not lesions left")
     + ". Compare the rows given the mask: they redraw everything inside it, so their worst slice is a wrong "
     "fill there, never a lesion left in place (only its halo beyond the label remains).", display=False)
""", figure=("fig-09-worst", "For each method (first seed), the glioma test slice with its lowest PSNR inside "
             "the lesion: input with the lesion outlined, output, true healthy image."))

md(r"""
{glue:text}`worst_ghosts`

## 6. Stroke: a lesion none of the models was trained on

The translators above learned from {glue:text}`trained_on`. A stroke lesion is different: a
wedge that follows a vascular territory, with no mass effect. Asking glioma models to remove
strokes tests what they learned: if they learned "remove what is bright and abnormal" it should
carry over, if they learned "remove what a glioma looks like" it should not. Inpainting given the
mask does not depend on what the lesion looked like.
""")

code(r"""
lesions = {zoo.manifest(n)["config"].get("lesion", "glioma") for names in models.values() if isinstance(names, list) for n in names}
glue("trained_on", "gliomas only" if lesions == {"glioma"} else "these lesions: " + ", ".join(sorted(lesions)), display=False)
stroke_trained = sorted(n for n in shipped if zoo.manifest(n)["config"].get("lesion") == "stroke" and not n.startswith("segmentor"))
glue("stroke_models", ("Models trained on strokes belong on this table too; none is in the zoo yet." if not stroke_trained else
                       "The zoo also has models trained on strokes (" + ", ".join(stroke_trained) + "); put them on this "
                       "table with `B.benchmark({...}, \"stroke\")` to see what training on the lesion itself gains."),
     display=False)
stroke = B.benchmark(models, "stroke", data=sets["stroke"], device=DEVICE)
B.formatted(stroke, QUALITY + ["auprc", "dice_max"])          # the costs are the glioma table's
""")

code(r"""
both = pd.DataFrame({"glioma": glioma["psnr_lesion"] - glioma.loc["(do nothing)", "psnr_lesion"],
                     "stroke": stroke["psnr_lesion"] - stroke.loc["(do nothing)", "psnr_lesion"]}).drop(
                         index=["(do nothing)", "(oracle)", "(intensity threshold)"], errors="ignore").astype(float)
glue("stroke_gain", "; ".join(f"{k} {v:+.1f} dB" for k, v in both["stroke"].items() if np.isfinite(v)), display=False)
# the test set itself moves the gains (other baselines, other lesions): measure each network against the
# rule, which learned nothing, on the same set
lead = both.sub(both.loc[RULE], axis=1)
drop = (lead["glioma"] - lead["stroke"])[free] if free else pd.Series(dtype=float)
TOL = 0.5                                                    # dB: about the spread over seeds of the table's rows
glue("stroke_rule", (f"The test set alone moves these gains: doing nothing scores {glioma.loc['(do nothing)', 'psnr_lesion']:.1f} dB "
                     f"on gliomas and {stroke.loc['(do nothing)', 'psnr_lesion']:.1f} dB on strokes, and the rule, which learned "
                     f"nothing, gains {both.loc[RULE, 'glioma']:+.1f} and {both.loc[RULE, 'stroke']:+.1f} dB. So compare each network "
                     "with the rule on the same set."), display=False)
losers = drop[drop > TOL].sort_values(ascending=False)
glue("stroke_drop", ("No translator is shipped yet." if drop.empty else
                     f"Every translator not given the mask keeps its lead over the rule on strokes to within {TOL} dB or "
                     "widens it: what they learned to remove is not specific to gliomas." if losers.empty else
                     f"{', '.join(f'{k} ({v:.1f} dB)' for k, v in losers.items())} "
                     + ("loses" if len(losers) == 1 else "lose") + f" more than {TOL} dB of {'its' if len(losers) == 1 else 'their'} "
                     f"lead over the rule, so part of what was learned there is specific to gliomas; "
                     + (f"{len(drop) - len(losers)} of the {len(drop)} keep or widen it." if len(drop) > len(losers) else
                        "no translator keeps its lead.")), display=False)
h = stroke["healthiness"].astype(float)
h_rule, h_oracle = h[RULE], h["(oracle)"]
above = h.drop(index=[RULE])[lambda v: v > h_rule]
glue("stroke_rule_h", (f"The rule's healthiness on strokes, {h_rule:.3f}, is at least the oracle's ({h_oracle:.3f}) and "
                       + ("the highest on the table" if above.empty else "below only " + "; ".join(f"{k} ({v:.3f})"
                          for k, v in above.items()))
                       + ": capping the brightness hides a stroke from the judge, while its PSNR inside the lesion gains "
                       f"only {both.loc[RULE, 'stroke']:+.1f} dB. Healthiness is not fidelity." if h_rule >= h_oracle else
                       f"The rule's healthiness on strokes is {h_rule:.3f}."), display=False)
pd.concat([both.rename(columns=lambda c: f"{c}: gain over doing nothing (dB)"),
           lead.drop(index=[RULE]).rename(columns=lambda c: f"{c}: lead over the rule (dB)")], axis=1).map(
               lambda v: "" if pd.isna(v) else f"{v:+.2f}")
""")

md(r"""
On strokes the gains over doing nothing are {glue:text}`stroke_gain`. {glue:text}`stroke_rule`
{glue:text}`stroke_drop` {glue:text}`stroke_rule_h` {glue:text}`stroke_models`

## 7. Liver CT

The liver phantom's tumours are *darker* than the liver in the CT window, so the
intensity reference scores darkness there. A model trained on brains has never seen an abdomen,
so only models trained on the CT phantom are scored, beside the references and the rule (written
for bright lesions: a test of whether a rule carries over).
""")

code(r"""
ct_models = {label: names for label, names in {"ANT-GAN (CT)": ["antgan-liver"]}.items() if set(names) <= shipped}
liver = B.benchmark(ct_models | {RULE: clip_bright}, "liver", data=sets["liver"], device=DEVICE)
B.formatted(liver, QUALITY + ["auprc", "dice_max"])
""")

code(r"""
d_rule = liver.loc[RULE, "psnr_lesion"] - liver.loc["(do nothing)", "psnr_lesion"]
ct_int = liver.loc["(intensity threshold)", "auprc"]
ct_share = float((sets["liver"].masks > 0)[metrics.tissue_mask(sets["liver"].images.astype(np.float32))].mean())
glue("ct_intensity", (f"{ct_int:.3f}, against {ct_share:.3f} for a detector that knows nothing (the share of tumour pixels "
                      "in the tissue)" + (": in CT a tumour is no darker than much of the healthy abdomen, so a learned "
                      "map has a low floor to beat and much to gain" if ct_int < 5 * ct_share else
                      ": darkness alone already finds much of the tumours")), display=False)
r = liver.loc[RULE]
glue("ct_rule", (("leaves the tumours as they were (its lesion PSNR is doing nothing's)" if abs(d_rule) < 0.05 else
                  f"changes the tumours' PSNR by {d_rule:+.2f} dB")
                 + (f" and still changes healthy tissue (identity {r['identity']:.3f}, healthy-tissue PSNR "
                    f"{r['psnr_tissue']:.1f} dB): a cap written for bright brain lesions clips the brightest healthy "
                    "tissue of the CT window" if r["identity"] < 0.99 else "")), display=False)
ct_gain = {k: liver.loc[k, "psnr_lesion"] - liver.loc["(do nothing)", "psnr_lesion"] for k in ct_models}
glue("ct_gain", ("; the CT-trained model's gain over doing nothing: " + ", ".join(f"{k} {v:+.1f} dB" for k, v in ct_gain.items())
                 if ct_gain else "; no CT-trained model is shipped yet"), display=False)
for name, table in (("stroke", stroke), ("liver", liver)):
    B.write_leaderboard(table, board_dir / f"{name}.json", name)
""", tags=["hide-input"])

md(r"""
On CT the rule {glue:text}`ct_rule`{glue:text}`ct_gain`. The intensity alone, darkness here,
finds tumour pixels with an AUPRC of {glue:text}`ct_intensity`. The stroke and liver tables
are written as leaderboards beside `glioma.json`.
""")

code(r"""
q = glioma.loc[free, ["identity", "healthiness", "psnr_lesion", "slices/s", "params (M)"]].astype(float) if free else None
inpaint = glioma.loc["(inpainting)", "psnr_lesion"]
if q is None:
    for k in ("a_fidelity", "a_found", "a_cost"):
        glue(k, "No network is shipped yet.", display=False)
else:
    top = q["psnr_lesion"].idxmax()
    glue("a_fidelity", (f"{top} ({q.loc[top, 'psnr_lesion']:.2f} dB inside the "
                        f"lesion, identity {q.loc[top, 'identity']:.3f}). " + (
                        f"No network that finds the lesion itself reaches classical inpainting given the mask "
                        f"({inpaint:.2f} dB): knowing where the lesion is is worth more, at this budget, than anything "
                        "these networks learned about what should be there." if q["psnr_lesion"].max() < inpaint else
                        f"It beats classical inpainting given the mask ({inpaint:.2f} dB) without being told where the lesion is.")),
         display=False)
    seen, unseen = q["healthiness"].idxmin(), q["healthiness"].idxmax()
    h_lo, h_hi = q["healthiness"].min(), q["healthiness"].max()
    glue("a_found", ((f"little in any network's outputs: healthiness from {h_lo:.3f} ({seen}) to {h_hi:.3f} ({unseen}), "
                      f"so the judge marks at most {1 - h_lo:.0%} as many pixels as the lesions had. " if h_lo >= HEALTHY_ENOUGH else
                      f"most in {seen}'s outputs (healthiness {h_lo:.3f}), least in {unseen}'s ({h_hi:.3f}). ")
                     + "A high healthiness says the judge finds nothing, which a removed lesion and a judge fooled by "
                     "a dimmed one both give (the rule of section 2); whether the tissue put there is right is the "
                     "question of the fidelity columns."), display=False)
    fast, slow = q["slices/s"].idxmax(), q["slices/s"].idxmin()
    masked = [k for k in models if k != RULE and k not in free]
    sampled = "".join(f"; {k} samples {float(glioma.loc[k, 'slices/s']):.1f} slices per second, the price of its many "
                      "denoising steps" for k in masked if pd.notna(glioma.loc[k, "slices/s"]))
    speeds = (f"the fastest is {fast} ({q.loc[fast, 'slices/s']:.0f} slices per second here), the slowest {slow} "
              f"({q.loc[slow, 'slices/s']:.1f})" if q.loc[slow, "slices/s"] < (1 - 0.2) * q.loc[fast, "slices/s"] else
              f"they run from {q['slices/s'].min():.0f} to {q['slices/s'].max():.0f} slices per second here, within the "
              "20% the guide calls as good given the timing noise")
    glue("a_cost", (f"Among the networks not given the mask: from {q['params (M)'].min():.2f} to "
                    f"{q['params (M)'].max():.2f} million parameters, and {speeds}{sampled}; the rule, no network at all, "
                    f"runs {float(glioma.loc[RULE, 'slices/s']):.0f} slices per second. The table gives each one's training minutes."),
         display=False)
""", tags=["hide-input"])

md(r"""
## What it means

The four questions of the introduction, answered from the glioma table:

1. **Closest to the truth without the mask:** {glue:text}`a_fidelity`
2. **A lesion the judge still finds:** the judge finds {glue:text}`a_found`
3. **The best lesion map:** {glue:text}`det_verdict`.
4. **Cost:** {glue:text}`a_cost`

A benchmark with the truth changes what can be said. "Looks healthy" (healthiness) and "is the
same patient" (identity) are what a benchmark without the truth can measure; section 3 put them
beside the lesion's PSNR and bias, which measure whether the tissue put into the lesion is right,
and section 5 showed what a wrong one looks like. On real scans there is no true healthy image:
identity, healthiness and, where lesions were outlined, the difference map as a detector are all
that can be scored, with the healthy-tissue PSNR and the change on lesion-free slices, which
compare the output with the input. The rule of section 2 shows what they cannot see.

## Exercises

1. **Your method.** Write a function that replaces each pixel above `clip_bright`'s cap by the
   median of its 7x7 neighbourhood (`torch.nn.functional.unfold` helps) and put it on the glioma
   table with `pd.concat([glioma, B.benchmark({"median": f}, "glioma", data=sets["glioma"], references=False, device=DEVICE)])`.
   Where does it land on the identity-healthiness plot, and what does it do inside a large lesion?
2. **A blind spot of healthiness.** Make a function that returns every slice blurred with a wide
   Gaussian. Which of the table's columns catch it, and which do not?
3. **Seeds.** Compare the lesion PSNR of two rows over the same test subjects with a paired test,
   for example `a, b = "PHS-GAN, paired", "ANT-GAN"`:
   `E.paired_test(E.combine_seeds(kept[a]), E.combine_seeds(kept[b]), "psnr_lesion")`. Is the gap
   larger than their standard deviations over seeds? A row trained with one seed has no such
   spread (the table leaves it blank, not 0): what does that leave you able to claim?

```{admonition} Solution 1
:class: dropdown
The median of a 7x7 window is the middle value of its 49 pixels. Near the edge of a lesion most of
those pixels are healthy, so the median is healthy tissue and the pixel is repaired; inside a
lesion wider than about 7 pixels most of the window is lesion, so the median is lesion again and
the core is left as it was. Expect identity near 1 (only bright pixels change), a healthiness
that depends on how much of the lesion is core, and a lesion PSNR above doing nothing's near
small lesions; whether it beats the rule's depends on the lesions' sizes, since a large core
keeps its full brightness where the rule at least caps it. A neighbourhood method cannot invent what lies under a large lesion; that is what the
learned methods are for.
```

```{admonition} Solution 2
:class: dropdown
Expect a wide blur to spread the lesion's brightness over its surroundings, so that a segmentor
finds less of it and healthiness rises (unless the judge fires on the blurred brain itself),
while every healthy pixel changes, so that identity and the healthy-tissue PSNR fall and the
change on lesion-free slices rises. The lesion's PSNR may even improve over doing nothing, since a
blur dims a bright lesion; the difference map lights up every edge, so expect its AUPRC below
the best learned maps' (it may still beat the weakest, and doing nothing's, which detects nothing). Run it and
check: if healthiness rose, healthiness alone would have praised a method that destroyed the
image, which is why the table is never ranked on one column.
```

```{admonition} Solution 3
:class: dropdown
The standard deviation over seeds says how much the recipe's result moves when only the random
seed changes; from three seeds it is itself a rough estimate. A gap smaller than it is within
what a re-run could undo. The paired test compares the two methods subject by subject on the
same test set, which removes the differences between subjects from the comparison; a claim that
one method is better needs both, a paired test that holds and a gap beyond the seed-to-seed spread.
With one seed of a row the second condition cannot be checked: the paired test then says that
*this trained model* is better on these subjects, not that its recipe is.

```
""")

write("book/09_benchmark.ipynb")
