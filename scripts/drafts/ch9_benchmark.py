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
from pseudohealthy_lib import benchmark as B, viz, zoo
from pseudohealthy_lib.config import fast_mode

sets = {name: B.benchmark_data(name) for name in B.SETS}
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
python -m pseudohealthy_lib evaluate MODEL --data PREPARED_FILE --judge segmentor-phantom --json
```

where `PREPARED_FILE` is any prepared file, a phantom's or your own BraTS prepared with
`python -m pseudohealthy_lib prepare` (on real scans the metrics that need the healthy truth come
back empty). As an example of a method that is not a network, here is a rule a student might
try first: no pixel of a slice may be brighter than the 90th percentile of that slice's tissue.
FLAIR lesions are bright, so the rule dims them; it has no idea what should be there instead.
""")

code(r"""
import torch

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
The book's own models, by the chapter that made them. A recipe trained with several seeds is
one row: the mean over seeds, with the standard deviation over seeds beside it. The diffusion
model is different in kind: it is *told* where the lesion is and only fills it in (chapter 8), so
it competes with the inpainting reference, not with the translators, and it gets no detection score.
""")

code(r"""
CANDIDATES = {
    "CycleGAN": ["phsgan-cyclegan"],
    "conditional GAN": ["phsgan-cgan"],
    "ANT-GAN": ["antgan", "antgan-s1", "antgan-s2"],
    "PHS-GAN, paired": ["phsgan-paired", "phsgan-paired-s1", "phsgan-paired-s2"],
    "PHS-GAN, unpaired": ["phsgan-unpaired", "phsgan-unpaired-s1", "phsgan-unpaired-s2"],
    "SMILE": ["smile"], "GVS": ["gvs"], "VA-GAN": ["vagan"],
    "diffusion (given the mask)": ["diffusion", "diffusion-s1", "diffusion-s2"],
}
shipped = set(zoo.available())
models = {label: [n for n in names if n in shipped] for label, names in CANDIDATES.items()}
missing = [label for label, names in models.items() if not names]
models = {label: names for label, names in models.items() if names} | {"clip bright (a rule)": clip_bright}
glue("missing", ", ".join(missing) if missing else "none", display=False)
pd.Series({label: ", ".join(names) if isinstance(names, list) else "a Python function" for label, names in models.items()},
          name="models (seeds)").to_frame()
""")

md(r"""
Not in the zoo yet, so not on the table: {glue:text}`missing`. The table grows as the method
chapters ship them; nothing below is typed, so a re-run ranks whatever is there.

## 3. Glioma: the headline table

The columns are the evaluation chapter's: identity (masked MS-SSIM outside the lesion, PHS-GAN's
score), healthiness (how much of the lesion the judge, a segmentor trained on other phantoms,
still finds), the fidelity inside the lesion against the true healthy tissue (PSNR, SSIM, and the
bias: above 0 the output is brighter than the truth there), the healthy-tissue PSNR, the mean
change on lesion-free slices, and the difference map as a detector (AUPRC and the optimistic
⌈Dice⌉). Reference rows come first: doing nothing, the oracle (the truth itself), biharmonic
inpainting given the true mask, and the image intensity used as a lesion detector.
""")

code(r"""
QUALITY = ["identity", "healthiness", "psnr_lesion", "ssim_lesion", "bias_lesion", "psnr_tissue", "change_healthy"]
COST = ["auprc", "dice_max", "seeds", "params (M)", "train minutes", "slices/s"]
glioma, kept = B.benchmark(models, "glioma", data=sets["glioma"], keep_outputs=True)
B.formatted(glioma, QUALITY)
""")

md(r"""
The same rows, their difference map as a detector and their cost (training minutes from each
model's manifest, on the machine that trained it; slices per second on this one):
""")

code(r"""
B.formatted(glioma, COST, digits=2)
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
doing nothing sits at identity 1 with healthiness near 0.
""")

code(r"""
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
B.plot_tradeoff(glioma, "identity", "healthiness", ax=axes[0], legend=False)
B.plot_tradeoff(glioma, "slices/s", "psnr_lesion", ax=axes[1], logx=True)
axes[1].axhline(glioma.loc["(do nothing)", "psnr_lesion"], color="grey", lw=0.8, ls="--")
fig.tight_layout()
""", figure=("fig-09-tradeoffs", "Left: identity against healthiness on the glioma test set, one point per method "
             "(error bars: standard deviation over seeds, where there are several); right: fidelity inside the "
             "lesion (PSNR against the true healthy tissue) against inference speed on this machine, the dashed "
             "line doing nothing's PSNR."))

code(r"""
ranked = B.guide(glioma)
for key, (label, value) in ranked.items():
    glue(f"g_{key}", label, display=False)
    glue(f"g_{key}_v", value, display=False)
nets = glioma.loc[[k for k in models if k != "clip bright (a rule)" and not glioma.loc[k, "given the mask"]]]
rule = glioma.loc["clip bright (a rule)"]
glue("rule_scores", f"identity {rule['identity']:.3f} and healthiness {rule['healthiness']:.3f}", display=False)
glue("rule_nets", f"{nets['identity'].astype(float).max():.3f} and {nets['healthiness'].astype(float).max():.3f}", display=False)
fooled = rule["healthiness"] >= nets["healthiness"].astype(float).min() and rule["identity"] >= nets["identity"].astype(float).min()
glue("rule_verdict", (f"so on the paper's two scores it is not worse than every network; only the fidelity "
                      f"inside the lesion (PSNR {rule['psnr_lesion']:.2f} dB, bias {rule['bias_lesion']:+.3f}) and the worst "
                      "cases of section 5 show that it leaves the lesion as a flat grey patch") if fooled else
     "so the paper's two scores already rank it below the networks", display=False)
""", tags=["hide-input"])

md(r"""
Inside the lesion the closest to the truth of the methods that are not told where the lesion is:
**{glue:text}`g_fidelity`** ({glue:text}`g_fidelity_v`). With the mask given:
**{glue:text}`g_given`** ({glue:text}`g_given_v`). The best identity among the methods whose
healthiness reaches 0.85: **{glue:text}`g_identity`** ({glue:text}`g_identity_v`). The fastest
method that gains at least 4 dB inside the lesion over doing nothing: **{glue:text}`g_speed`**
({glue:text}`g_speed_v`).

The rule of section 2 reaches {glue:text}`rule_scores`, against best values among the networks
not given the mask of {glue:text}`rule_nets`, {glue:text}`rule_verdict`. The judge is a
segmentor; it looks for what lesions look like in its training data, and a lesion whose
brightness has been capped no longer looks like one. Healthiness measures "the judge finds
nothing", not "the tissue is right".

## 4. The difference map as a lesion detector

A pseudo-healthy model is also a detector: where it changed the image is where it thinks the
lesion was. Each curve below is that map, pooled over the tissue of every slice of the test set,
against the floor every detector must beat: the FLAIR intensity itself.
""")

code(r"""
curves = B.pr_curves({k: v for k, v in kept.items() if not glioma.loc[k, "given the mask"]}, sets["glioma"])
fig, ax = plt.subplots(figsize=(5.5, 4.2))
for label, c in curves.items():
    ax.plot(c["recall"], c["precision"], lw=1.2, ls="--" if label.startswith("(") else "-", label=f"{label} ({c['auprc']:.2f})")
ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02)); ax.grid(alpha=0.3); ax.legend(fontsize=7)
fig.tight_layout()
best_det = max((k for k in curves if not k.startswith("(")), key=lambda k: curves[k]["auprc"])
glue("det_best", f"{best_det} ({curves[best_det]['auprc']:.2f})", display=False)
glue("det_floor", f"{curves['(intensity threshold)']['auprc']:.2f}", display=False)
glue("det_verdict", "beats" if curves[best_det]["auprc"] > curves["(intensity threshold)"]["auprc"] else "does not beat", display=False)
""", figure=("fig-09-pr", "Precision-recall curves of each method's difference map as a pixel-wise lesion detector "
             "(glioma test set, all slices, tissue pixels); the area under each curve (AUPRC) in brackets. "
             "Dashed: the image intensity as the detector."))

md(r"""
The best map is {glue:text}`det_best`, which {glue:text}`det_verdict` the intensity floor
({glue:text}`det_floor`). On FLAIR the floor is high because the phantom's lesions, like real
gliomas, are the brightest tissue; a detector earns its keep where intensity alone fails (the
lesion's edge, dark necrosis, other contrasts).

## 5. The worst cases

Averages hide failures. For each method, the lesion slice on which its fidelity inside the
lesion was lowest, beside the truth:
""")

code(r"""
data = sets["glioma"]
worst = [(label, res[0], i) for label, res in kept.items() for i in B.worst_cases(res[0], 1)]
fig = viz.image_grid([[data.images[i], r.outputs[i].astype(np.float32), data.healthy[i]] for _, r, i in worst],
                     ["input", "output", "true healthy"],
                     [f"{label}\n{r.per_slice['psnr_lesion'][i]:.1f} dB" for label, r, i in worst], size=1.7)
for ax, (_, _, i) in zip(fig.axes[::3], worst):
    viz.mask_contour(ax, data.masks[i], lw=0.6)
""", figure=("fig-09-worst", "For each method (first seed), the glioma test slice with its lowest PSNR inside "
             "the lesion: input with the lesion outlined, output, true healthy image."))

md(r"""
## 6. Stroke: a lesion none of the models was trained on

Every translator above learned from gliomas. A stroke lesion is different: a wedge that follows
a vascular territory, with no mass effect. Asking the glioma models to remove strokes tests what
they learned: "remove what is bright and abnormal" carries over, "remove what a glioma looks
like" does not. Inpainting given the mask does not care what the lesion looked like.
""")

code(r"""
stroke = B.benchmark(models, "stroke", data=sets["stroke"])
B.formatted(stroke, QUALITY)
""")

code(r"""
both = pd.DataFrame({"glioma": glioma["psnr_lesion"] - glioma.loc["(do nothing)", "psnr_lesion"],
                     "stroke": stroke["psnr_lesion"] - stroke.loc["(do nothing)", "psnr_lesion"]}).drop(
                         index=["(do nothing)", "(oracle)", "(intensity threshold)"]).astype(float)
drop = (both["glioma"] - both["stroke"]).drop(index=["(inpainting)"])
glue("stroke_gain", ", ".join(f"{k} {v:+.1f} dB" for k, v in both["stroke"].items() if np.isfinite(v)), display=False)
glue("stroke_drop", f"{drop.idxmax()} ({drop.max():.1f} dB less than on gliomas)", display=False)
both.round(2).rename(columns=lambda c: f"{c}: gain over doing nothing (dB)")
""")

md(r"""
On strokes the gains over doing nothing are {glue:text}`stroke_gain`. The largest loss of the
gain it had on gliomas is {glue:text}`stroke_drop`. Stroke-trained models of each method will
join this table as they are shipped (chapter 6 trains PHS-GAN on both lesions).

## 7. Liver CT

The liver phantom's tumours are *darker* than the liver, in a CT window (chapter 5c). A rule
that dims bright pixels has nothing to do there, and a model trained on brains has never seen an
abdomen, so only the CT-trained ANT-GAN and the references are scored.
""")

code(r"""
ct_models = {label: names for label, names in {"ANT-GAN (CT)": ["antgan-liver"]}.items() if set(names) <= shipped}
liver = B.benchmark(ct_models | {"clip bright (a rule)": clip_bright}, "liver", data=sets["liver"])
B.formatted(liver, QUALITY + ["auprc"])
""")

code(r"""
glue("ct_rule", f"{liver.loc['clip bright (a rule)', 'psnr_lesion'] - liver.loc['(do nothing)', 'psnr_lesion']:+.2f}", display=False)
ct_gain = {k: liver.loc[k, "psnr_lesion"] - liver.loc["(do nothing)", "psnr_lesion"] for k in ct_models}
glue("ct_gain", ", ".join(f"{k} {v:+.1f} dB" for k, v in ct_gain.items()) or "no CT model shipped yet", display=False)
""", tags=["hide-input"])

md(r"""
The rule changes the lesion's PSNR by {glue:text}`ct_rule` dB on CT, as expected of a rule written
for bright lesions; the CT-trained model's gain over doing nothing: {glue:text}`ct_gain`.

## What it means

A benchmark with the truth changes what can be said. "Looks healthy" (healthiness) and "is the
same patient" (identity) can both be near perfect while the tissue put into the lesion is wrong:
the lesion PSNR and bias columns measure that directly, and the worst cases show what it looks
like. On real scans only identity and healthiness are available; read them knowing what they
cannot see.

## Exercises

1. **Your method.** Write a function that replaces each lesion-looking pixel by the median of
   its 7x7 neighbourhood (`torch.nn.functional.unfold` helps) and put it on the glioma table with
   `B.benchmark({"median": f}, "glioma")`. Where does it land on the identity-healthiness plot?
2. **A blind spot of healthiness.** Make a function that returns every slice blurred with a wide
   Gaussian. Which of the table's columns catch it, and which do not?
3. **Seeds.** For the recipes with three seeds, is the gap between two methods' lesion PSNR larger
   than their standard deviations over seeds? What would you need to claim one is better?

```{admonition} Solution 2
:class: dropdown
Expect a wide blur to spread the lesion's brightness over its surroundings, so that a segmentor
finds less of it and healthiness rises, while every healthy pixel changes, so that identity, the
healthy-tissue PSNR and the change on lesion-free slices fall. Run it and check: if healthiness
rose, healthiness alone would have praised a method that destroyed the image, which is why the
table is never ranked on one column.
```

```{admonition} Solution 3
:class: dropdown
The standard deviation over seeds says how much the recipe's result moves when only the random
seed changes. A gap smaller than that is within what a re-run could undo. To claim one method is
better you need a paired test over the same test slices or subjects (`evaluate.paired_test`) and,
ideally, several seeds of each so that the seed-to-seed spread is part of the comparison.
```
""")

write("book/09_benchmark.ipynb")
