"""Draft of the chapter "ANT-GAN in practice" (issue 13, first part): writes
book/05b_antgan_in_practice.ipynb, unexecuted, from the cells below.

    .venv/bin/python scripts/drafts/ch5b_antgan_practice.py && python scripts/execute_notebooks.py book/05b_antgan_in_practice.ipynb

The chapter reads the studies' records (pseudohealthy_lib/records/downstream.jsonl), which
``downstream.run_study`` writes (about an hour and a half of CPU for the three studies); once they
exist the notebook is the artefact and this draft is deleted."""
from _cells import code, colab_setup, md, write

md(r"""
# ANT-GAN in practice: segmentation, classification and augmentation

[![Open in Colab](_static/colab-badge.svg)](https://colab.research.google.com/github/pseudohealthy/pseudohealthy-book/blob/main/book/05b_antgan_in_practice.ipynb)

Chapters 3 to 5 asked whether ANT-GAN's pseudo-healthy image is *right*. Sun et al. also ask
whether it is *useful* {cite}`sun2020antgan`: given to a segmentation or a classification
network beside the original image, does it help? And can its second generator, which paints
lesions into healthy slices, enlarge a small training set? Their Sections IV-C and V-B answer yes
three times, with a U-Net (Table V), a VGG (Table VI) and an AlexNet (Table VII). This chapter
repeats the three experiments on a phantom, each with the paper's design:

1. the difference $|x - \mathcal{G}_{A2N}(x)|$ as a segmentation by itself (the paper's Fig. 9);
2. **ANT-UNet** against **Plain UNet**: the same U-Net given $(x, \mathcal{G}_{A2N}(x))$ or
   $(x, x)$, five-fold cross-validation (the paper does not say how it split; we split by patient)
   (Table V);
3. **ANT-VGG** against **Plain VGG**, the same design for "does this slice have a lesion?" (Table VI);
4. an AlexNet trained on 100 real slices against one trained on those plus 100 made by ANT-GAN
   (Table VII).

A claim of the form "X helps" needs a comparison in which only X changes, repeated enough times to
tell a difference from noise. Each section says what was held fixed, and every table reports the
spread over folds or draws and a paired test.
""")

colab_setup()

md(r"""
## The studies' phantom

ANT-GAN (the zoo's `antgan`, chapter 3's model) was trained on the book's phantom (seed 0). Here
it is used as a finished tool on **new patients**: the studies run on a phantom of 40 other
subjects (seed 1), which ANT-GAN never saw, as a hospital would use a model trained elsewhere.
""")

code(r"""
import numpy as np
import pandas as pd
import matplotlib.pyplot as plt
from myst_nb import glue
from pseudohealthy_lib import downstream, explore, viz, zoo

data = downstream.study_data()
antgan = zoo.load_pretrained(downstream.GUIDE)
pd.DataFrame(data.summary()).T
""")

md(r"""
## 1. The difference map as a segmentation (Fig. 9)

ANT-GAN changes only what it takes for a lesion, so the absolute difference between input and
output should light up the lesion and nothing else. The paper binarises it at a fixed threshold,
$\hat{m} = [\,|x - \mathcal{G}_{A2N}(x)| > 0.1\,]$, and shows the result (its Fig. 9; it reports no
number). We measure it on the studies' phantom: the Dice of $\hat{m}$ on each lesion slice, the
Dice pooled over *all* slices at every threshold (lesion-free slices count: what they flag is a
false alarm), and the precision-recall curve of the difference as a pixel-wise detector. Beside
it, the floor every detector must beat: the FLAIR intensity itself used as the score (a lesion is
bright in FLAIR).
""")

code(r"""
x, masks, labels = data.images.astype(np.float32), data.masks, data.labels
out = explore.translate_slices(antgan, x)
diff = np.abs(x - out)
seg = {"ANT-GAN difference": downstream.difference_segmentation(diff, masks, labels),      # thresholds 0.02..0.5
       "FLAIR intensity": downstream.difference_segmentation(x, masks, labels, thresholds=np.linspace(0.3, 1.0, 36))}
fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
for name, r in seg.items():
    a.plot(r["thresholds"], r["dice"], label=name)
    b.plot(r["recall"], r["precision"], label=f"{name} (AUPRC {r['auprc']:.2f})")
a.axvline(0.1, color="grey", ls=":", label="the paper's threshold 0.1")
a.set(xlabel="threshold on the score (intensity units)", ylabel="Dice, pooled over all slices", title="binarised at a threshold")
b.set(xlabel="recall", ylabel="precision", title="as a pixel-wise detector")
a.legend(); b.legend(); fig.tight_layout()
""", figure=("fig-05b-fig9-curves", "The absolute difference |x − G_A2N(x)| as a lesion segmentation on the studies' phantom: "
             "Dice pooled over all slices at each threshold (left) and precision against recall of the pixel-wise detector "
             "(right), beside the FLAIR intensity used as the score."))

code(r"""
picks = explore.spread_cases(data, "test", 3)
rows = [[x[i], out[i], diff[i], (diff[i] > 0.1).astype(np.float32), masks[i].astype(np.float32)] for i in picks]
fig = viz.image_grid(rows, ["input $x$", "$G_{A2N}(x)$", "$|x - G_{A2N}(x)|$", "binarised at 0.1", "true mask"],
                     size=2.3, cmap=["gray", "gray", viz.diff_cmap(), "gray", "gray"], ranges={2: (0, 0.5)}, colorbar=(2,),
                     suptitle="The difference map as a segmentation (the paper's Fig. 9)")
""", figure=("fig-05b-fig9-cases", "Three test lesions of the studies' phantom, from large to small: input, ANT-GAN's "
             "output, the absolute difference (colour bar in intensity units), the difference binarised at the paper's 0.1, "
             "and the true lesion mask."))

code(r"""
d, f = seg["ANT-GAN difference"], seg["FLAIR intensity"]
best = {k: (r["thresholds"][np.argmax(r["dice"])], r["dice"].max()) for k, r in seg.items()}
glue("fig9_dice", f"{d['dice_slices']:.2f}", display=False)
glue("fig9_auprc", f"{d['auprc']:.2f}", display=False)
glue("fig9_flair_auprc", f"{f['auprc']:.2f}", display=False)
glue("fig9_best", f"{best['ANT-GAN difference'][1]:.2f} at a threshold of {best['ANT-GAN difference'][0]:.2f}", display=False)
glue("fig9_verdict", "beats" if d["auprc"] > f["auprc"] else "does not beat", display=False)
glue("fig9_flair_best", f"{best['FLAIR intensity'][1]:.2f} (at {best['FLAIR intensity'][0]:.2f})", display=False)
""", tags=["hide-input"])

md(r"""
At the paper's threshold the binarised difference has a mean Dice of {glue:text}`fig9_dice` on
the lesion slices. Pooled over every slice, the best Dice of the sweep, written ⌈Dice⌉ because
its threshold is chosen on the very slices it is scored on (an optimistic number), is
{glue:text}`fig9_best`, against {glue:text}`fig9_flair_best` for the FLAIR intensity thresholded
on its own scale. As a detector
the difference has an AUPRC of {glue:text}`fig9_auprc`, and it {glue:text}`fig9_verdict` the FLAIR
intensity ({glue:text}`fig9_flair_auprc`). Keep the threshold in mind: 0.1 is a choice, and the
sweep shows how much the answer depends on it. The pseudo-healthy images are chapter 3's `antgan`,
flaws included (chapter 3 measures how far they are from the true healthy images); for a
segmentation only the difference counts.

## 2. ANT-UNet against Plain UNet (Table V)

The paper gives a U-Net two input channels. **ANT-UNet** sees $(x, \mathcal{G}_{A2N}(x))$; **Plain
UNet** sees $(x, x)$, the image twice, so that both networks have exactly the same parameters and
the only difference is the information in the second channel. Both segment the three BraTS
sub-regions, the whole tumour (WT), the tumour core (TC) and the enhancing tumour (ET), which the
phantom's labels hold too: one sigmoid output per region, as the regions are nested. The library's
segmentor does this with two options, `guide` (`'copy'` or a zoo translator, which is frozen and
run inside the model) and `regions`:
""")

code(r"""
from pseudohealthy_lib.notebook import show_code
from pseudohealthy_lib.methods.segmentor import Guided
show_code(Guided.inputs)
""")

code(r"""
for arm in downstream.STUDIES["segmentation"]["arms"]:
    print(f"{arm} (fold 0):\n  python -m pseudohealthy_lib train {downstream.study_config('segmentation', arm, 0)[1]}")
""", check=True)

md(r"""
The five folds re-split the 40 patients into five groups of 8: each fold tests on one group,
validates on the next and trains on the other 24 (the split in the first table, 28 / 4 / 8, is the
file's own, which only section 4 uses). The Dice of each region is computed per patient, over the patient's slices as one volume, then averaged over
the fold's test patients. The five folds were run with `downstream.run_study("segmentation")`,
which records each run with its training command, time and hardware:
""")

code(r"""
PAPER_V = {"Plain UNet": {"dice_et": 0.7544, "dice_wt": 0.8760, "dice_tc": 0.7753},
           "ANT-UNet": {"dice_et": 0.7777, "dice_wt": 0.8910, "dice_tc": 0.7977}}
downstream.study_table("segmentation", paper=PAPER_V).round(3)
""", check=True)

code(r"""
tests5 = {r: downstream.paired_difference("segmentation", f"dice_{r}", "Plain UNet", "ANT-UNet") for r in downstream.REGIONS}
pd.DataFrame(tests5).T.astype({"wins": int, "repeats": int}).rename_axis("region").round(4)
""", check=True)

code(r"""
REGION_NAMES = {"wt": "the whole tumour", "tc": "the tumour core", "et": "the enhancing tumour"}
glue("table5_verdict", downstream.claim_verdict(tests5, REGION_NAMES), display=False)
glue("table5_diffs", ", ".join(f"{k.upper()} {t['mean_difference']:+.3f}" for k, t in tests5.items()), display=False)
""", tags=["hide-input"])

md(r"""
The paper's claim, ANT-UNet better than Plain UNet, {glue:text}`table5_verdict`. The mean
differences in Dice (ANT minus Plain) are {glue:text}`table5_diffs`. The paper's own gains were
1.5 to 2.3 points of Dice on BraTS 2018, without a spread or a test.

Two cautions on reading such tests. Each table tests three scores without correcting for it; a
Bonferroni correction would ask for p < 0.05 / 3 ≈ 0.017 before calling any one of them
significant, so a single p near 0.03 is weak evidence. And five folds are few: even when one arm
wins all five, a two-sided sign test cannot go below p = 2 / 2⁵ = 0.0625. The paired t-test also
uses how large the differences are, which is why it can reach 0.05 with five pairs, and why it
cannot when the differences vary a lot from fold to fold.

Both networks find the tumour core and the enhancing tumour far less well than the whole tumour.
What FLAIR shows of each sub-region is one place to look, here the mean intensity of each label of
the studies' phantom:
""")

code(r"""
LABEL_NAMES = {0: "background and healthy tissue", 1: "necrosis / non-enhancing core", 2: "oedema", 4: "enhancing tumour"}
flair = pd.Series({name: float(data.images[data.seg == lab].astype(np.float32).mean()) for lab, name in LABEL_NAMES.items()},
                  name="mean FLAIR intensity")
gap = abs(flair["enhancing tumour"] - flair["oedema"])
glue("et_gap", f"{gap:.3f}", display=False)
glue("et_story", ("so a network reading FLAIR alone can tell the enhancing rim from the oedema around it only by its "
                  "shape and place; BraTS methods read T1ce, where the enhancing rim lights up"
                  if gap < 0.05 else "so FLAIR does separate the enhancing rim from the oedema here"), display=False)
flair.to_frame().round(3)
""")

md(r"""
The enhancing tumour and the oedema differ by {glue:text}`et_gap` in mean FLAIR intensity,
{glue:text}`et_story`.

## 3. ANT-VGG against Plain VGG (Table VI)

The same design for a slice-level question, "does this slice contain a lesion?": a VGG-11 with a
two-channel first convolution sees $(x, \mathcal{G}_{A2N}(x))$ or $(x, x)$. The library's VGG has
torchvision's layers (a test checks its parameter count against torchvision's 132,863,336) at a
width the CPU can train:
""")

code(r"""
from pseudohealthy_lib.networks import VGG
cfg6, command6 = downstream.study_config("classification", "ANT-VGG", 0)
o = cfg6.options
print(command6)
print(f"VGG-11 at width {o['width']} (torchvision: 64), {o['hidden']} hidden units (torchvision: 4096): "
      f"{sum(p.numel() for p in VGG(2, 2, o['width'], o['hidden']).parameters()) / 1e6:.2f} M parameters")
""")

code(r"""
PAPER_VI = {"Plain VGG": {"precision": 0.8941, "recall": 0.8986, "f1": 0.896},
            "ANT-VGG": {"precision": 0.9235, "recall": 0.9096, "f1": 0.917}}
downstream.study_table("classification", paper=PAPER_VI).round(3)
""", check=True)

code(r"""
tests6 = {k: downstream.paired_difference("classification", k, "Plain VGG", "ANT-VGG") for k in ("precision", "recall", "f1")}
glue("table6_verdict", downstream.claim_verdict(tests6, {"precision": "precision", "recall": "recall", "f1": "F1"}), display=False)
pd.DataFrame(tests6).T.astype({"wins": int, "repeats": int}).rename_axis("score").round(4)
""", check=True)

md(r"""
The paper's claim, ANT-VGG better than Plain VGG, {glue:text}`table6_verdict`. The absolute
numbers are not comparable with the paper's, since a phantom is not BraTS and the networks are far
narrower; what can carry over is the difference between two arms trained alike.

## 4. Augmenting a small training set (Table VII)

ANT-GAN's second generator $\mathcal{G}_{N2A}$ paints lesions into healthy slices. The paper draws
50 lesion and 50 healthy slices (dataset A), lets $\mathcal{G}_{N2A}$ turn A's healthy slices into
50 "lesion" slices and $\mathcal{G}_{A2N}$ turn A's lesion slices into 50 "healthy" ones (dataset B,
200 slices), trains an AlexNet on each and tests both on the rest of the data. Here the 100 slices
are drawn from the file's training patients and the test is every slice of its 8 test patients (the
4 validation patients are not used); the draw is repeated five times
(`augmented_sets(data, antgan, seed=k)`). Note what else changes from A to B: B has twice as many
slices, so "ANT-GAN's slices help" and "more slices help" are mixed (exercise 4 separates them). First, what the synthetic slices
look like beside real ones:
""")

code(r"""
from pseudohealthy_lib.config import fast_mode
n = 10 if fast_mode() else downstream.AUGMENT_N              # fast mode's phantom has 4 patients
a, b = downstream.augmented_sets(data, antgan, n=n, seed=0)
train_b = b.select("train")                                   # A's n lesion, A's n healthy, then the synthetic slices
pick = np.linspace(0, n - 1, 4).astype(int)                # four slices spread over the draw
real_lesion, source, synth_lesion = train_b[pick], train_b[n + pick], train_b[2 * n + pick]
rows = [[b.images[s].astype(np.float32), b.images[t].astype(np.float32), b.images[r].astype(np.float32)]
        for s, t, r in zip(source, synth_lesion, real_lesion)]
fig = viz.image_grid(rows, ["healthy slice $x$", "$G_{N2A}(x)$: synthetic lesion", "a real lesion slice"], size=2.3,
                     suptitle="Dataset B's synthetic lesions beside real ones")
""", figure=("fig-05b-synthetic", "Dataset B of the first draw: healthy slices (left), the lesions G_N2A painted into "
             "them (middle), and real lesion slices of dataset A (right)."))

md(r"""
Look at the middle column as a radiologist would: which synthetic lesions would pass for real, and
which are faint or textured? The AlexNet does not care how real they look, only whether they carry
what separates the two classes, and the table answers that:
""")

code(r"""
PAPER_VII = {"dataset A": {"precision": 0.6556, "recall": 0.6336, "f1": 0.644},
             "dataset B": {"precision": 0.7719, "recall": 0.7794, "f1": 0.776}}
downstream.study_table("augmentation", paper=PAPER_VII).round(3)
""", check=True)

code(r"""
tests7 = {k: downstream.paired_difference("augmentation", k, "dataset A", "dataset B") for k in ("precision", "recall", "f1")}
glue("table7_verdict", downstream.claim_verdict(tests7, {"precision": "precision", "recall": "recall", "f1": "F1"}, over="draws"), display=False)
glue("table7_f1", f"{tests7['f1']['mean_difference']:+.3f}", display=False)
pd.DataFrame(tests7).T.astype({"wins": int, "repeats": int}).rename_axis("score").round(4)
""", check=True)

md(r"""
The claim that the synthetic slices help {glue:text}`table7_verdict`. The mean change in F1 from
A to B is {glue:text}`table7_f1`.

## 5. What it means

Three claims, three designs, five repeats each. The verdicts are computed from the records each
time the chapter runs, so they say what this library's models do on this phantom:

- ANT-UNet better than Plain UNet (Table V) {glue:text}`table5_verdict`;
- ANT-VGG better than Plain VGG (Table VI) {glue:text}`table6_verdict`;
- the claim that ANT-GAN's slices help a small training set (Table VII) {glue:text}`table7_verdict`.

Two things to remember when reading the paper's tables. First, a single mean per arm, which is
all the paper reports, cannot separate a gain of one or two points from the noise of training: the
spread over folds or draws in the tables above is the yardstick, and the paired test uses the fact
that both arms saw the same patients in each fold. Second, a guide can only add what the network
could not find by itself. The phantom's lesions are bright in FLAIR (section 1's intensity floor)
and section 2 printed what FLAIR shows of each sub-region, so where a gain is small the question
is whether the plain network was already near what FLAIR allows.

## Exercises

1. **The threshold.** Section 1 swept the threshold over all 40 patients' slices and took the best,
   which is optimistic. Choose the threshold on the *training* patients' slices only and report the
   pooled Dice on the *test* patients at that threshold. How far is it from the best threshold of
   the test patients themselves?
2. **A different guide.** Is a smoother pseudo-healthy image a better guide? Chapter 4's
   `upsample=resize` option is the standard remedy for the checkerboard. Design the experiment so that only the
   upsampling changes, and say how you would decide.
3. **Fair comparison.** Why does Plain UNet get $(x, x)$ rather than $x$ alone? What would a
   one-channel U-Net's result add to Table V, and what could it not tell you?
4. **More slices or better slices?** Dataset B is twice the size of A. Design a control arm that
   separates "more training slices" from "ANT-GAN's slices".

```{admonition} Solution 1
:class: dropdown
With `tr, te = data.select("train"), data.select("test")`, compute
`r = downstream.difference_segmentation(diff[tr], masks[tr], labels[tr])` and take
`t = r["thresholds"][np.argmax(r["dice"])]`; then
`downstream.difference_segmentation(diff[te], masks[te], labels[te], thresholds=[t])["dice"][0]`
is the honest pooled Dice on the test patients. The best threshold of the test set itself gives
the optimistic ⌈Dice⌉; the gap between the two is what choosing on the test data is worth.
```

```{admonition} Solution 2
:class: dropdown
The zoo's `antgan-resize` is that guide: `antgan`'s own recipe plus `--set upsample=resize`
(`zoo.training_facts` shows the two side by side). Run the same five folds with it:
`cfg = downstream.study_config("segmentation", "ANT-UNet", 0)[0]`,
`rows = downstream.run_study("segmentation", arms=["ANT-UNet"], options={**cfg.options, "guide": "antgan-resize"})`,
rename their arm (`for r in rows: r["arm"] = "ANT-UNet smooth"`) and compare fold by fold with
`downstream.paired_difference("segmentation", "dice_wt", "ANT-UNet", "ANT-UNet smooth", rows=downstream.recorded("segmentation") + rows)`.
A difference smaller than the spread over folds is no difference.
```

```{admonition} Solution 3
:class: dropdown
With $(x, x)$ the two weight sets of the first convolution simply add up, so Plain UNet computes
exactly what a one-channel U-Net can: the duplicate only makes the parameter counts equal, and the
first layer is a tiny part of the network anyway. A difference between the arms can then only come
from what the second channel holds. A one-channel U-Net would add a check that duplicating the
input changes nothing (it should not); it cannot tell you anything about the guide.
```

```{admonition} Solution 4
:class: dropdown
A third arm, dataset A′: A plus 100 more *real* slices (50 lesion, 50 healthy) drawn from the same
training patients, so that A′ and B have the same size. If B beats A′, ANT-GAN's slices add more
than their number; if A′ matches B, size was the reason. Cheaper but weaker: A plus flipped copies
of its own slices, which adds size but no new anatomy.
```
""")

write("book/05b_antgan_in_practice.ipynb")
