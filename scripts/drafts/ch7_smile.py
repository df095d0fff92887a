"""Draft of chapter 7 (SMILE, with the GVS and VA-GAN baselines): writes book/07_smile.ipynb, unexecuted.

    .venv/bin/python scripts/drafts/ch7_smile.py && python scripts/execute_notebooks.py book/07_smile.ipynb

Not in the book yet (issue 15). What it still needs before it can be executed:
* a SMILE-sup recipe that meets the floors on T2 (records/smile.jsonl has the trials so far: G
  learns to fool S with a dot texture inside the lesion), then the recipes ``smile-sup``,
  ``smile-75``, ``smile-50``, ``smile-25``, ``smile-0`` (the labelled fractions), ``gvs``,
  ``vagan`` in ``recipes.RECIPES``, all with ``--modality t2``, trained and shipped;
* the T2 models of the other methods of Table 2 (``antgan-t2``, ``phsgan-paired-t2``), or the
  table restricted to what exists, saying why;
* Table 3's study (``downstream.run_study('smile-augmentation')``: a lesion segmentor trained with
  none / pseudo-normal / pseudo-abnormal / both, repeated over seeds), not written yet.
* room in the zoo (150 MB, 131 MB used): a SMILE model at the trials' widths (three U-Nets of
  ngf 16 / s_ngf 16, 7 levels, 2.6 M parameters each) is ~16 MB in fp16, so seven of them do not
  fit; narrower or shallower U-Nets (measured), and the ANT-GAN ablation variants retrained at the
  current recipe's width (#12; they are 8 MB each now), make the room.
Once the notebook is in the book, the notebook is the artefact and this draft is deleted."""
from _cells import code, colab_setup, md, write

md(r"""
# SMILE: a segmentor as the adversary, and labels for only some slices

[![Open in Colab](_static/colab-badge.svg)](https://colab.research.google.com/github/pseudohealthy/pseudohealthy-book/blob/main/book/07_smile.ipynb)

Every method so far judged its pseudo-healthy image with a *discriminator*: a network that says
"real healthy slice" or "made up". A discriminator answers one bit per image (or per patch). A
lesion segmentor answers a whole map: *where* in this image is there still something that looks
like a lesion? Zhang et al. turned that into a game, **generator versus segmentor** (GVS)
{cite}`zhang2020gvs`: the generator must leave nothing for the segmentor to find, the segmentor
must keep finding the lesion in the generator's output. Du, Quan, Han and Zhou build SMILE
{cite}`du2021smile` on the same game and add three things:

1. a **reconstructor** $R$ that paints the lesion back, giving the segmentor a second game to play;
2. a **confidence enhancer**, so that slices *without* a lesion mask can train the models too: the
   segmentor's own confident pixels stand in for the mask (semi-supervised learning);
3. a **step-by-step schedule** that trains the networks in four stages.

This chapter writes SMILE's losses (Eqs. 1-5) and its two baselines from the paper's Table 2 that
no other chapter has, GVS and VA-GAN {cite}`baumgartner2018vagan`; trains them on the T2 phantom,
as the paper trains on BraTS T2; reproduces Table 2 (identity and healthiness, with the phantom's
truth inside the lesion beside them), Fig. 3's triplets and Table 3 (pseudo-healthy and
pseudo-abnormal images as data augmentation for a lesion segmentor); and measures how healthiness
moves as the share of labelled slices goes from 0 % to 100 %.
""")

colab_setup()

md(r"""
## 1. Three U-Nets and two games (Eqs. 1-3)

SMILE's notation (the paper's Table 1): $I$ an input slice with its lesion mask $M$ (all zeros for
a healthy slice), $P_n = G(I)$ the pseudo-normal image, $S$ a segmentor whose softmax gives a
lesion probability per pixel, and $P_{ab} = R(P_n, M)$ the pseudo-abnormal image. All three
networks are U-Nets (chapter 2's U-Net generator; $R$ takes two channels, image and mask).

The generator pays for changing anything outside the lesion, and for every lesion pixel the
segmentor still finds in its output:

$$
\mathcal{L}_{gen} = \text{MSE}\big((1 - M) \odot I,\ (1 - M) \odot G(I)\big) + \text{CE}\big(S(G(I)),\ \mathbf{0}\big) \tag{1}
$$

The target of the cross-entropy is the all-healthy map $\mathbf{0}$, "the mask of the expected
normal image". The first term is ANT-GAN's anomaly-mask loss (chapter 3, Eq. 2) with a mean in
place of a sum. For a healthy input $M = \mathbf{0}$ and Eq. (1) asks for the identity.

The segmentor plays the other side. It must find the lesion *where it was* in $G$'s output, and
find the lesion $R$ painted where the mask says:

$$
\mathcal{L}_{seg} = \text{CE}\big(S(G(I)),\ M\big) + \text{CE}\big(S(P_{ab}),\ M\big) \tag{2}
$$

and the reconstructor must rebuild the input from the pseudo-normal image and the mask:

$$
P_{ab} = R(G(I), M), \qquad \mathcal{L}_{recons} = \text{MSE}(P_{ab}, I) \tag{3}
$$

Compare with PHS-GAN (chapter 6): there too a network rebuilds the lesion from the healthy image
and a map, but the map is the *segmentor's* and the judge of healthiness is a discriminator. Here
the mask is given and the segmentor is the judge. Notice also what Eq. (1) does *not* say: inside
the lesion, nothing but the segmentor's verdict tells $G$ what to paint. Section 4 shows what a
generator does with that freedom.

The library's training step is these equations; the stage (section 3) decides which networks a
step updates:
""")

code(r"""
import numpy as np
import pandas as pd
import torch
from myst_nb import glue
from pseudohealthy_lib import explore, losses, presets, recipes, viz, zoo
from pseudohealthy_lib.config import cache_dir, fast_mode
from pseudohealthy_lib.data import default, load_prepared
from pseudohealthy_lib.engine import Trainer
from pseudohealthy_lib.methods import SMILE, VAGAN
from pseudohealthy_lib.notebook import show_code
show_code(SMILE.training_step)
""")

md(r"""
## 2. The confidence enhancer (Eqs. 4 and 5)

Masks are expensive: an expert outlines every lesion slice by slice. SMILE's semi-supervised
setting removes the masks of some training slices and lets the segmentor label them itself. For
an unlabelled slice $U$ the segmentor's lesion probability is turned into a pseudo-label by a
threshold $\varepsilon$, and the segmentor is trained to agree with its own confident pixels:

$$
P_L = [\,S(U) > \varepsilon\,] \tag{4}
$$
$$
\mathcal{L}_{semi} = \text{CE}\big(S(U),\ P_L\big) \tag{5}
$$

with $\varepsilon = 0.9$. Everywhere else $P_L$ replaces the missing $M$: in Eq. (1)'s mask, in
Eq. (2)'s targets, in $R$'s input. Eq. (5) pushes a probability of 0.95 towards 1 and one of 0.6
towards 0: it *sharpens* what the segmentor already believes. A hand-made case, three pixels of
one slice:
""")

code(r"""
logits = torch.tensor([[[[0.0, 0.0, 0.0]], [[0.0, 0.4, 3.0]]]])     # (1, 2, 1, 3): healthy and lesion logits
p = logits.softmax(1)[:, 1]
print("lesion probability  ", p.numpy().round(3).tolist())
print("pseudo-label (Eq. 4)", losses.pseudo_labels(logits, 0.9)[:, 0].numpy().tolist())
""", check=True)

md(r"""
Only the pixel above 0.9 becomes lesion. The paper also suggests updating $\varepsilon$ "by the
average confidence value every epoch"; the library reads that as the mean lesion probability of
the pixels the segmentor called lesion on unlabelled slices during the pass (`eps_update=True`).
The danger is plain from Eq. (5): a segmentor that is confidently wrong teaches itself to be more
so. The paper saw its framework "crash" below 50 % labels; section 6 measures where ours does.

## 3. Four stages (Sec. 3.5)

SMILE does not train everything at once. Its schedule has four stages of equal length (the paper:
10 epochs each): $G$ with $S$ (Eqs. 1 and 2's first term); $R$ alone, with $G$ and $S$ fixed
(Eq. 3 and $S$'s verdict on $R$'s image); $R$ with $S$; then all three. A short run with the
library's engine, and which network each logged term belongs to:
""")

code(r"""
short = presets.config("smile", steps=8 if fast_mode() else 80, log_every=2, modality="t2")
history = Trainer(short, cache_dir() / "runs" / f"smile-short-{short.preset}", method=SMILE).fit()
viz.plot_history(history, ["pix", "fool_S", "recons", "R_found", "seg_Pn", "seg_Pab"], smooth=3,
                 title="SMILE, four stages (short run)", panels=True);
""")

md(r"""
The curves start and stop with their stages: `recons` (Eq. 3) appears only once $R$ trains, in
the second quarter, and `pix` and `fool_S` (Eq. 1) pause while $G$ is fixed in the second and
third.

## 4. The baselines: GVS and VA-GAN

**GVS** is the first game alone: $G$ and $S$ with Eq. (1) and the first term of Eq. (2), no
reconstructor and one stage (the library's `setting='gvs'`). SMILE's own ablation is therefore
GVS against SMILE-sup.

**VA-GAN** needs no mask at all. Baumgartner et al. ask a map generator $M_\theta$ for an additive
map that turns a diseased image into a healthy-looking one, $y = x + M_\theta(x)$, judged by a
Wasserstein critic with a gradient penalty {cite}`gulrajani2017wgangp` and an L1 price on the map:

$$
\mathcal{L}_D = D(y) - D(x_h) + \lambda_{gp}\big(\lVert\nabla_{\hat{x}} D(\hat{x})\rVert_2 - 1\big)^2, \qquad
\mathcal{L}_M = -D(y) + \lambda_{map}\lVert M_\theta(x)\rVert_1 \tag{V}
$$

with $\hat{x}$ a random point between a real healthy slice and $y$, and five critic updates per
generator step (a hundred at the start and every hundredth step, as the authors' code does). The
penalty is easy to check by hand: a linear critic $D(x) = \langle w, x\rangle$ has the gradient
$w$ everywhere, so its penalty is $(\lVert w\rVert_2 - 1)^2$ whatever the images:
""")

code(r"""
w = torch.full((1, 1, 4, 4), 0.5)                                   # |w|_2 = 0.5 * 4 = 2
linear = lambda x: (x * w).flatten(1).sum(1)                        # noqa: E731
real, fake = torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
print(f"gradient penalty {losses.gradient_penalty(linear, real, fake).item():.3f}  (by hand: (2 - 1)^2 = 1)")
""", check=True)

code(r"""
show_code(VAGAN.training_step)
""")

md(r"""
## 5. Training on a budget

The paper trains for 40 epochs (four stages of ten) at batch 8 and learning rate 1e-4 on a GPU.
Each trial below trained SMILE-sup on the T2 phantom and was scored on every slice of the T2
selection phantom (seed 7), which no chapter and no test uses; the reference rows need no
training. The last two columns score the trained $S$ itself: its Dice on the real lesion slices,
and how often it finds a lesion in a healthy slice.
""")

code(r"""
from pseudohealthy_lib.evaluate import recipe_trials
trials = recipe_trials("smile", scores=("identity", "healthiness", "psnr_lesion", "psnr_tissue", "checkerboard", "s_dice"))
trials.round(3)
""")

md(r"""
### What a segmentor rewards

A discriminator and a segmentor can both be fooled. With the paper's losses a generator soon
learns that a lesion does not have to be *removed* for the segmentor to miss it: a fine pattern
painted over it does. The figure below zooms on the lesion of four test slices; the second column
is the shipped SMILE-sup, the third the true healthy image.

(figure: input / SMILE-sup / GVS / truth, zoomed, with the checkerboard ratio of each output)

The checkerboard ratio of chapter 3 (the energy of the change at the highest spatial frequency,
relative to a smooth change; about 1 for a smooth fill) measures the pattern. Two library options
go after it, each off by default and labelled as ours, not the paper's: `pool_size`, a history of
past $(G(I), M)$ pairs for the segmentor's Eq. (2), so that it keeps finding the patterns that
fooled it before (CycleGAN's image pool); and `lambda_paste`, the pasted-lesion task of chapters 3
and 6, which for the first time tells $G$ what tissue a lesion hides:

$$
\mathcal{L}_{paste} = \mathbb{E}\,\big\lVert G\big(m \odot I_a + (1 - m) \odot I_h\big) - I_h\big\rVert_1 \tag{P}
$$

with $I_a$ a lesion slice, $m$ its mask widened by `paste_dilate` pixels and $I_h$ a healthy slice.

## 6. Table 2 and the labelled fraction

(Table 2: VA-GAN, PHS-GAN, ANT-GAN, GVS, SMILE-50, SMILE-75, SMILE-sup on the T2 phantom's test
split; identity iD and healthiness h as the paper defines them (Eqs. 6 and 7 of SMILE, the same as
PHS-GAN's), lesion PSNR against the truth, the judge's quality beside healthiness; the paper's
numbers beside ours as the paper's; a glued verdict on "SMILE-75 ≈ SMILE-sup" with the paired test
and on "SMILE above GVS".)

(Plot: healthiness, identity and lesion PSNR against the labelled fraction 0, 25, 50, 75, 100 %.)

The paper's Table 2, quoted: VA-GAN 0.809 / 0.605, PHS-GAN 0.960 / 0.731, ANT-GAN 0.969 / 0.747,
GVS 0.997 / 0.792, SMILE-50 0.978 / 0.653, SMILE-75 0.987 / 0.810, SMILE-sup 1.000 / 0.822
(identity / healthiness).

## 7. Triplets and augmentation (Fig. 3, Table 3)

(Fig. 3: abnormal, pseudo-normal $G(I)$, pseudo-abnormal $R(H, M')$ with $H$ a healthy slice and
$M'$ a mask from another slice.)

(Table 3: a lesion segmentor trained with no augmentation, with pseudo-normal images, with
pseudo-abnormal images and with both; Dice, mean ± std over seeds; the paper's 0.72 / 0.76 / 0.77
/ 0.82 beside it.)

## 8. Floors

SMILE-sup is held to PHS-GAN's floors (`evaluate.PHSGAN_FLOORS`): identity at least 0.95,
healthiness at least 0.85, and at least 6 dB of lesion PSNR above doing nothing, on the T2
phantom's test split and on fresh phantoms (`scripts/check_floors.py --floors phsgan --modality t2`).

## Exercises

1. **Sharpening.** Apply Eq. (5) by hand to the three pixels of section 2: which way does the
   gradient push each probability? What happens to a segmentor that starts out calling a healthy
   ventricle "lesion" with probability 0.95?
2. **No mask, no game.** Set `labelled=0` (SMILE-0). At the first step $S$ is unsure everywhere
   (probabilities near 0.5). What is $P_L$, and what does Eq. (1) then ask of $G$?
3. **A linear critic's penalty.** Change `w` in section 4 so that the penalty is zero. Why does the
   Wasserstein critic need the penalty at all?
""")

write("book/07_smile.ipynb")
