"""PHS-GAN (Xia, Chartsias and Tsaftaris): pseudo-healthy synthesis by factorising pathology.

A pathological slice x_p is split into two factors, a healthy-looking image and a map of where
the disease is, and the two must be enough to put x_p back together::

    x~_h = G(x_p)          the pseudo-healthy image        (generator, Table 2)
    m~_p = S(x_p)          the pathology map, in [0, 1]    (segmentor: a residual U-Net)
    x^_p = R(x~_h, m~_p)   the reconstruction              (reconstructor, Table 3)

Because R is *told* where the lesion was, G has no reason to hide it in its output: this is the
paper's answer to CycleGAN's one-to-many problem (one healthy image, many possible lesions).
A second cycle starts from a healthy slice x_h and a black map m_h = 0::

    Cycle P-H:  x_p -> (G, S) -> (x~_h, m~_p) -> R -> x^_p
    Cycle H-H:  (x_h, m_h) -> R -> x~_h' -> G -> x^_h,   x~_h' -> S -> m^_h

The losses (Sec. 3.4; numbered here as in the book's chapter)::

    L_CC   = |R(G(x_p), S(x_p)) - x_p|_1 + |G(R(x_h, m_h)) - x_h|_1 + |S(R(x_h, m_h)) - m_h|_1     (1)
    L_GAN1 = 1/2 (D_x(G(x_p)) - 1)^2 + 1/2 (D_x(R(x_h, m_h)) - 1)^2      for G and R          (2)
             D_x: real healthy slices -> 1, both kinds of fake -> 0 (least squares)
    L_Seg  = Dice loss of S(x_p) against x_p's own mask                   paired setting      (3)
    L_GAN2 = 1/2 (D_m(S(x_p)) - 1)^2; D_m: real masks of *other* volumes -> 1   unpaired       (4)

    L_paired   = 10 L_CC + 1 L_GAN1 + 10 L_Seg                                                  (5)
    L_unpaired = 10 L_CC + 2 L_GAN1 + 10 L_GAN2

The third term of (1) is a mean absolute error, not a Dice loss: against an all-black target
every prediction has Dice loss 1, so Dice could not tell a clean map from a noisy one.

The library's additions, all off by default (the paper's model), and why each exists. Nothing in
(1)-(5) asks G(x_p) to *be* x_p outside the lesion, and R can read back whatever G leaves in the
lesion: at the CPU budget G writes a texture over the brain and keeps a ghost of the lesion.
The recipe search that chose among these (``pseudohealthy_lib/records/phsgan.jsonl``, chapter 6)
kept (6), (7) on the training mask, the PatchGAN, ``hh_mask='paste'`` with ``paste_dilate=2``
(paired) or ``hh_mask='other'`` with (8), a Dice mask term, ``s_prior`` and lambda_3 = 0.5
(unpaired), a 50-image history and S's own learning rate; on the stroke phantom the paired recipe
adds the shortcut, six residual blocks, ``lambda_hh=30`` and (10)::

    L_id   = |G(x_h) - x_h|_1                          lambda_id: CycleGAN's identity term     (6)
    L_keep = |(1 - m) * (G(x_p) - x_p)|_1              lambda_keep: keep x_p outside the map   (7)

* ``lambda_keep``, ``keep_dilate``, ``keep_map``: in (7) m is S's map, detached (so that (7) does
  not teach S to call everything a lesion), widened by ``keep_dilate`` pixels (a lesion brightens
  a thin ring just outside its label), or the training mask (``keep_map='truth'``, paired setting).
* ``hh_mask``: what Cycle H-H starts from. ``'black'`` is the paper's m_h = 0. ``'other'`` paints
  the lesion mask m of another subject into x_h with R; G must take it out again and S find it::

      L_CC(H-H) = |G(R(x_h, m)) - x_h|_1 + |S(R(x_h, m)) - m|_1                             (1')

  and R's image is then no longer among D_x's fakes (nor in the first half of (2) for R).
  Nothing then asks R's painting to look like a lesion: R and S can agree on any mark R leaves
  and S finds. ``mask_loss='dice'`` scores S's map in (1') with the Dice loss of (3) instead of
  the mean absolute error: the target now holds a lesion of a few hundred pixels, which an
  absolute error over the whole image barely notices (a map of zeros scores 0.03).
  ``lambda_paint`` adds a critic D_p that tells real pathological slices from R's
  paintings, so that the lesions S learns to find in Cycle H-H look like the real ones::

      L_GAN3 = 1/2 (D_p(R(x_h, m)) - 1)^2;  D_p: real x_p -> 1, R(x_h, m) -> 0            (8)

  ``'paste'`` (paired) pastes a *real* lesion, x_p inside its mask m_p and inside x_h's head, over
  x_h and applies (1') to it; R then learns from Cycle P-H alone. A painting is made by R, which
  the same cycle trains, so R can leave in it what G needs to undo it; a pasted lesion carries
  nothing of x_h::

      x_h' = m * x_p + (1 - m) * x_h,   m = m_p * [x_h is not background]                  (1'')

  ``paste_dilate`` cuts the lesion out with m_p widened by that many pixels, taking along the
  bright border a lesion leaves just outside its label (S must still answer m_p).
  ``lambda_lesion`` adds (1'')'s image error averaged over the cut c alone. In (1') a lesion of
  150 pixels is 1 % of a 128x128 slice's error, so G can leave half of it in place and lose
  little; averaged over c, its error weighs the same whatever its size::

      L_lesion = sum(c * |G(x_h') - x_h|) / sum(c),   c = m widened by paste_dilate          (10)

  With ``lambda_selfpaste`` the same average is taken of (9)'s error over its cut (S's map).
* ``lambda_selfpaste`` (no masks needed): the unpaired analogue of (1''). The lesion is cut
  out of x_p with S's own map, thresholded at 0.5 and detached, and pasted over x_h; G must give
  back x_h. It trains G alone, on *real* lesions, wherever S already finds them::

      x_h'' = paste(x_p, [S(x_p) > 0.5], x_h) as in (1''),   L_self = |G(x_h'') - x_h|_1    (9)

  While S finds nothing the pasted image is x_h itself and (9) is the identity term (6). Without
  it the only lesions G learns to remove *towards a known answer* are R's paintings of (1'), and
  an unpaired G filled S's lesions with dark, ventricle-like blobs that D_x accepted (chapter 6).
  ``paste_dilate`` widens the cut as in (1'').
* ``block_hiding`` / ``map_grad``: the P-H cycle's gradient reaches G inside S's map multiplied
  by ``map_grad`` (``block_hiding`` is 0): R still learns to rebuild the lesion, but G is not
  rewarded for writing something readable there. It did not remove the lesion ghost in the trials.
* ``hh_detach`` (with ``'other'``): R's painting is detached before G and S, so (1') trains G
  and S only. ``lambda_hh``: the weight of (1')'s image term apart from ``lambda_cc``.
* ``cycle_noise``: Gaussian noise on each cycle's intermediate image, to make a faint code
  unreadable (``evaluate.hidden_lesion`` measures such codes). ``shortcut``: ANT-GAN's global
  shortcut in G. ``critic='patchgan'``: ANT-GAN's PatchGAN in place of Table 4's critics.
  ``lr_s``: S's own learning rate (S's map collapsed to black at 1e-3 in a trial); ``lr_d``: the
  critics' (with ``lambda_lesion`` on strokes, D_x jumped near step 1000 at 1e-3 and then scored
  every image 0.5, healthy or not, for the rest of the run). ``s_prior``:
  S's output bias set so that its first maps say "lesion" with this probability everywhere (as
  RetinaNet starts its classifier at a small prior), instead of 0.5: an unpaired S that starts
  at 0.5 stayed there for the 150 steps of a trial, its Cycle H-H error stuck at 0.49.
* ``setting='gan'`` is the paper's conditional-GAN baseline: G alone, trained with the first half
  of (2) against real healthy slices; nothing ties its output to its input. ``lambda_seg`` is the
  paper's lambda_3 in both settings: the weight of L_Seg (paired) or of L_GAN2 (unpaired). At the
  paper's 10, once D_m tells S's soft maps from binary masks (within 50 steps in a trial), the
  gradient of (4) on S's weights was 50-100 times the cycle terms' together
  (``explore.term_gradients``): S followed the critic and found no lesion (Dice 0.00-0.02 on the
  validation split at steps 100-200 in three trials). At 0.5 the cycle terms lead and S's Dice passed 0.7 by step 300.

Choices where the paper is silent or unclear: images are in [-1, 1] with a tanh output (the
paper's sigmoid on [0, 1] images, rescaled); the critics see one channel (Table 4 lists two
without saying what the second is) and output raw least-squares scores (no sigmoid); each
critic's loss is the mean of its real and fake terms (half the paper's sum; Adam makes the scale
irrelevant); R outputs one image (Table 3 lists two channels, but no loss uses a second); leaky
ReLUs have slope 0.2; reflection padding in G and R (Keras pads with zeros); S is a residual
U-Net of depth 4 with ``s_ngf=16`` base channels (Ronneberger's has 64) and instance norm; no
image history (``pool_size=0``); Adam at the engine's lr 2e-4, beta1 0.5, with the engine's
default schedule (constant, then linear decay to zero; the paper gives none).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import losses as L
from ..data.prepared import UnpairedDataset
from ..networks import PatchGAN, PHSCritic, ResnetGenerator, ResUnet, init_weights
from ..utils import OptionError
from .base import ImagePool, Translator, register

SETTINGS = ("paired", "unpaired", "gan")
CRITICS = ("D_x", "D_m", "D_p")


@register
class PHSGAN(Translator):
    name = "phsgan"
    pseudo_healthy = True
    critic_key = "D_x"             # real healthy slices against G's outputs, Eq. (2)
    defaults = {"setting": "paired", "ngf": 32, "n_blocks": 6, "s_ngf": 16, "s_depth": 4, "ndf": 32,
                "lambda_cc": 10.0, "lambda_hh": None, "lambda_gan": None, "lambda_seg": 10.0, "lambda_id": 0.0, "cycle_noise": 0.0, "shortcut": False,
                "lambda_keep": 0.0, "keep_dilate": 0, "keep_map": "S", "block_hiding": False, "map_grad": 1.0, "lr_s": None, "lr_d": None,
                "critic": "table4", "hh_mask": "black", "paste_dilate": 0, "hh_detach": False, "lambda_paint": 0.0, "lambda_selfpaste": 0.0, "lambda_lesion": 0.0, "s_prior": None, "mask_loss": "l1", "pool_size": 0,
                "init": "normal", "init_gain": 0.02}
    choices = {"setting": SETTINGS, "keep_map": ("S", "truth"), "mask_loss": ("l1", "dice"), "critic": ("table4", "patchgan"), "hh_mask": ("black", "other", "paste"), "init": ("normal", "xavier", "kaiming", "orthogonal", "pytorch")}
    ranges = {"ngf": (1, None), "n_blocks": (0, None), "s_ngf": (1, None), "s_depth": (1, None), "ndf": (1, None),
              "lambda_cc": (0, None), "lambda_seg": (0, None), "lambda_id": (0, None), "cycle_noise": (0, None), "lambda_keep": (0, None), "keep_dilate": (0, None), "paste_dilate": (0, None), "lambda_paint": (0, None), "lambda_selfpaste": (0, None), "lambda_lesion": (0, None), "map_grad": (0.0, 1.0), "pool_size": (0, None),
              "init_gain": (0, None)}
    variants = {"paired": {"setting": "paired"}, "unpaired": {"setting": "unpaired"},
                "conditional-gan": {"setting": "gan"}}

    @classmethod
    def resolve_options(cls, options, version):
        o = super().resolve_options(options, version)
        for key, what, ok in (("lambda_gan", "of at least 0", lambda v: v >= 0), ("lambda_hh", "of at least 0", lambda v: v >= 0),
                              ("lr_s", "above 0", lambda v: v > 0), ("lr_d", "above 0", lambda v: v > 0), ("s_prior", "between 0 and 1", lambda v: 0 < v < 1)):              # null or a number
            v = o[key]
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v)):
                raise OptionError(f"phsgan option {key}: expected a finite number {what} or null, got {v!r}")
        if o["keep_map"] == "truth" and o["setting"] != "paired":
            raise OptionError(f"phsgan option keep_map='truth' needs the training masks of the paired setting, "
                              f"not setting={o['setting']!r}: use keep_map='S'")
        if o["hh_mask"] != "black" and o["setting"] == "gan":
            raise OptionError(f"phsgan option hh_mask={o['hh_mask']!r} changes Cycle H-H, which setting='gan' does not have")
        if o["hh_mask"] == "paste" and o["setting"] != "paired":
            raise OptionError(f"phsgan option hh_mask='paste' pastes lesions cut out with the training masks of the "
                              f"paired setting, not setting={o['setting']!r}: use hh_mask='other'")
        if o["paste_dilate"] and o["hh_mask"] != "paste" and not o["lambda_selfpaste"]:
            raise OptionError(f"phsgan option paste_dilate={o['paste_dilate']} widens the pasted lesion of hh_mask='paste' "
                              f"or lambda_selfpaste, neither of which is on (hh_mask={o['hh_mask']!r})")
        if o["lambda_lesion"] and o["hh_mask"] != "paste" and not o["lambda_selfpaste"]:
            raise OptionError(f"phsgan option lambda_lesion={o['lambda_lesion']} weighs the pasted lesion of "
                              f"hh_mask='paste' or lambda_selfpaste, neither of which is on (hh_mask={o['hh_mask']!r})")
        if o["lambda_selfpaste"] and o["setting"] == "gan":
            raise OptionError(f"phsgan option lambda_selfpaste={o['lambda_selfpaste']} cuts lesions out with S's map, "
                              "which setting='gan' does not have")
        if o["hh_detach"] and o["hh_mask"] != "other":
            raise OptionError("phsgan option hh_detach=true needs hh_mask='other' (with the paper's black mask, "
                              "Cycle H-H is what trains R to make healthy images)")
        if o["lambda_paint"] and o["hh_mask"] != "other":
            raise OptionError(f"phsgan option lambda_paint={o['lambda_paint']} judges R's paintings of another "
                              f"subject's mask, made only with hh_mask='other', not hh_mask={o['hh_mask']!r}")
        if o["mask_loss"] == "dice" and o["hh_mask"] == "black":
            raise OptionError("phsgan option mask_loss='dice' needs a lesion in Cycle H-H's mask (hh_mask='other' "
                              "or 'paste'): against the paper's black mask every map has Dice loss 1")
        if o["lambda_hh"] is None:                       # the paper: one weight for every term of Eq. (1)
            o["lambda_hh"] = o["lambda_cc"]
        if o["lambda_gan"] is None:                      # Sec. 4.1: 1 paired, 2 unpaired ("focus on synthesis")
            o["lambda_gan"] = 2.0 if o["setting"] == "unpaired" else 1.0
        return o

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt

        def generator(in_ch, shortcut=False):            # Tables 2 and 3
            return ResnetGenerator(in_ch, 1, o["ngf"], o["n_blocks"], shortcut=shortcut, upsample="resize",
                                   deconv1_width=2 * o["ngf"], block_act="leaky", final_kernel=3)
        critic = PHSCritic if o["critic"] == "table4" else PatchGAN
        nets = {"G": generator(1, o["shortcut"]), "D_x": critic(1, o["ndf"])}
        if o["setting"] != "gan":
            nets |= {"S": ResUnet(1, 1, o["s_ngf"], o["s_depth"]), "R": generator(2)}
        if o["setting"] == "unpaired":
            nets["D_m"] = critic(1, o["ndf"])
        if o["lambda_paint"]:
            nets["D_p"] = critic(1, o["ndf"])
        self.nets = nn.ModuleDict({k: init_weights(v, o["init"], o["init_gain"]) for k, v in nets.items()})
        if o["s_prior"] is not None and "S" in self.nets:   # S starts out saying "lesion" with this probability
            nn.init.constant_(self.nets["S"].out.bias, math.log(o["s_prior"] / (1 - o["s_prior"])))
        self.pool = ImagePool(o["pool_size"], seed=cfg.seed)

    def check_side(self, side):
        need = max(16, 2 ** self.opt["s_depth"]) if self.opt["setting"] != "gan" else 16
        if side % need:
            raise OptionError(f"images of {side}x{side} do not suit phsgan: its critics (and its segmentor of depth "
                              f"{self.opt['s_depth']}) need sides divisible by {need}")

    # -- engine interface
    def trained_with(self):
        # the paired setting's S learns from each slice's own mask (Eq. 3); the unpaired one's critic
        # D_m sees real masks of other slices (Eq. 4), as do Cycle H-H's hh_mask='other' paintings
        return {"paired": ("lesion masks",), "unpaired": ("unpaired lesion masks",), "gan": ()}[self.opt["setting"]]

    def dataset(self, data, split):
        other = self.opt["setting"] == "unpaired" or self.opt["hh_mask"] == "other"      # 'paste' uses x_p's own mask
        return UnpairedDataset(data, split, seed=self.cfg.seed, other_mask=other)

    def example_batch(self, batch_size, size, device="cpu"):
        batch = super().example_batch(batch_size, size, device)
        return batch | {"M": batch["A_mask"].flip(-1)}

    def optimizers(self):
        gens = [self.nets[k] for k in ("G", "S", "R") if k in self.nets]
        critics = [self.nets[k] for k in CRITICS if k in self.nets]
        own_lr = self.opt["lr_s"] is not None and "S" in self.nets
        opt_g = self.adam(*(n for n in gens if not (own_lr and n is self.nets["S"])))
        if own_lr:                                                  # S at its own learning rate
            opt_g.add_param_group({"params": list(self.nets["S"].parameters()), "lr": self.opt["lr_s"]})
        return {"G": opt_g, "D": self.adam(*critics, lr=self.opt["lr_d"])}          # lr_d None: the config's lr

    def exported(self):
        return [k for k in ("G", "S", "R") if k in self.nets]

    def validate(self, data, split: str = "val") -> dict[str, float]:
        """S's own map on ``split`` (:func:`~pseudohealthy_lib.evaluate.own_map`): Dice on lesion
        slices and the false-alarm rate on healthy ones, logged as ``val_s_dice``, ``val_s_false_alarm``."""
        from ..evaluate import own_map

        if "S" not in self.nets:
            return {}
        own = own_map(self, data, split)
        return {k: v for k, v in (("s_dice", own["dice"]), ("s_false_alarm", own["false_alarm_rate"])) if v is not None}

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """S: the pathology map, probabilities (B, 1, H, W)."""
        return torch.sigmoid(self.nets["S"](x).float())

    def reconstruct(self, healthy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """R: a pathological image from a healthy-looking one and a map in [0, 1]."""
        return self.nets["R"](torch.cat([healthy, mask.to(healthy.dtype)], 1))

    def forward(self, batch) -> dict[str, torch.Tensor]:
        """Both cycles' outputs for one batch (the names follow the module docstring)."""
        x_p, x_h = batch["A"], batch["B"]
        out = {"x_h_fake": self.nets["G"](x_p)}
        if self.opt["lambda_id"]:
            out["x_h_id"] = self.nets["G"](x_h)                                      # Eq. (6)
        if self.opt["setting"] == "gan":
            return out
        out["m_p_fake"] = torch.sigmoid(self.nets["S"](x_p))
        to_r = out["x_h_fake"]
        scale = 0.0 if self.opt["block_hiding"] else self.opt["map_grad"]
        if scale < 1:                                # the cycle gradient reaches G inside the map scaled
            m = self._lesion_map(batch, out)         # (not at all with block_hiding); the image is the same
            inside = scale * to_r + (1 - scale) * to_r.detach()
            to_r = m * inside + (1 - m) * to_r
        out["x_p_rec"] = self.reconstruct(self._noisy(to_r), out["m_p_fake"])                # Cycle P-H
        if self.opt["lambda_selfpaste"]:                    # Eq. (9): a real lesion, cut out with S's own map
            found = (out["m_p_fake"].detach() > 0.5).to(x_h.dtype)
            out["x_h_selfpasted"], out["m_self"] = L.paste_lesion(x_p, found, x_h, self.opt["paste_dilate"])
            out["x_h_selfrec"] = self.nets["G"](out["x_h_selfpasted"])
        if self.opt["hh_mask"] == "paste":                                                        # Cycle H-H, Eq. (1'')
            out["x_h_lesioned"], out["m_h"] = L.paste_lesion(x_p, batch["A_mask"], x_h, self.opt["paste_dilate"])
        else:                                                                                     # Cycle H-H
            m_h = batch["M"].to(x_h.dtype) if self.opt["hh_mask"] == "other" else torch.zeros_like(x_h)
            out["m_h"], out["x_h_lesioned"] = m_h, self.reconstruct(x_h, m_h)
        mid = self._noisy(out["x_h_lesioned"].detach() if self.opt["hh_detach"] else out["x_h_lesioned"])
        g_and_s = self.nets["G"](mid), torch.sigmoid(self.nets["S"](mid))
        out["x_h_rec"], out["m_h_rec"] = g_and_s
        return out

    def _lesion_map(self, batch, out) -> torch.Tensor:
        """Where Eq. (7) and block_hiding let G change x_p: S's map, detached, or the training mask."""
        return batch["A_mask"].to(out["x_h_fake"].dtype) if self.opt["keep_map"] == "truth" else out["m_p_fake"].detach()

    def _noisy(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` plus N(0, cycle_noise^2) noise while training (the cycles' intermediate images)."""
        sigma = self.opt["cycle_noise"]
        return x + sigma * torch.randn_like(x) if sigma and self.training else x

    def generator_losses(self, batch, out) -> dict[str, torch.Tensor]:
        """The weighted terms of Eq. (5), plus Eqs. (6) and (7) when asked (G, S and R minimise their sum)."""
        o, n = self.opt, self.nets
        lsgan = lambda pred: L.gan_loss(pred, True, "lsgan")        # noqa: E731
        terms = {"gan_G": o["lambda_gan"] * 0.5 * lsgan(n["D_x"](out["x_h_fake"]))}                      # Eq. (2)
        if o["lambda_id"]:
            terms["id"] = o["lambda_id"] * L.cycle_loss(out["x_h_id"], batch["B"])                          # Eq. (6)
        if o["setting"] == "gan":
            return terms
        if o["lambda_keep"]:                                                                                  # Eq. (7)
            inside = L.dilate(self._lesion_map(batch, out).float(), o["keep_dilate"])
            terms["keep"] = o["lambda_keep"] * L.anomaly_mask_loss(out["x_h_fake"].float(), batch["A"].float(), inside, power=1)
        if o["hh_mask"] == "black":                  # R(x_h, m) with a lesion in m is not meant to look healthy
            terms["gan_R"] = o["lambda_gan"] * 0.5 * lsgan(n["D_x"](out["x_h_lesioned"]))                  # Eq. (2)
        if o["lambda_paint"]:                        # R's painting should look like a real lesion slice
            terms["gan_P"] = o["lambda_paint"] * 0.5 * lsgan(n["D_p"](out["x_h_lesioned"]))                # Eq. (8)
        terms["cc_P"] = o["lambda_cc"] * L.cycle_loss(out["x_p_rec"], batch["A"])                          # Eq. (1)
        if o["lambda_selfpaste"]:
            terms["self"] = o["lambda_selfpaste"] * L.cycle_loss(out["x_h_selfrec"], batch["B"])           # Eq. (9)
        terms["cc_H"] = o["lambda_hh"] * L.cycle_loss(out["x_h_rec"], batch["B"])                          # Eq. (1)
        for key, rec, m in (("lesion", "x_h_rec", "m_h"), ("self_lesion", "x_h_selfrec", "m_self")):          # Eq. (10)
            if o["lambda_lesion"] and (o["hh_mask"] == "paste" if key == "lesion" else o["lambda_selfpaste"]):
                cut = L.lesion_cut(out[m].float(), batch["B"].float(), o["paste_dilate"])           # as in (1'')
                terms[key] = o["lambda_lesion"] * L.masked_l1(out[rec].float(), batch["B"].float(), cut)
        if o["mask_loss"] == "dice":                 # the mask holds a lesion: Dice weighs its few pixels
            terms["cc_M"] = o["lambda_cc"] * L.soft_dice_loss(out["m_h_rec"].float(), out["m_h"].float())
        else:
            terms["cc_M"] = o["lambda_cc"] * (out["m_h_rec"].float() - out["m_h"].float()).abs().mean()  # Eq. (1)
        if o["setting"] == "paired":
            terms["seg"] = o["lambda_seg"] * L.soft_dice_loss(out["m_p_fake"].float(), batch["A_mask"])    # Eq. (3)
        else:
            terms["gan_S"] = o["lambda_seg"] * 0.5 * lsgan(n["D_m"](out["m_p_fake"]))                    # Eq. (4)
        return terms

    def training_step(self, batch, ctx):
        n = self.nets
        out, terms, loss_g = self.update_generators(batch, ctx, [n[k] for k in CRITICS if k in n])
        with ctx.autocast():
            from_r = "x_h_lesioned" in out and self.opt["hh_mask"] == "black"
            fakes = [out["x_h_fake"].detach()] + ([out["x_h_lesioned"].detach()] if from_r else [])
            fake = self.pool.query(torch.cat(fakes))
            pred_real, pred_fake = n["D_x"](torch.cat([batch["B"], fake])).split([len(batch["B"]), len(fake)])
            d_x = 0.5 * (L.gan_loss(pred_real, True) + L.gan_loss(pred_fake, False))
            logs = {"D_x": d_x.detach()}
            loss_d = d_x
            if "D_m" in n:
                m_real, m_fake = batch["M"], out["m_p_fake"].detach()
                pr, pf = n["D_m"](torch.cat([m_real, m_fake.to(m_real.dtype)])).chunk(2)
                d_m = 0.5 * (L.gan_loss(pr, True) + L.gan_loss(pf, False))
                logs["D_m"] = d_m.detach()
                loss_d = loss_d + d_m
            if "D_p" in n:                                                                 # Eq. (8)
                pr, pf = n["D_p"](torch.cat([batch["A"], out["x_h_lesioned"].detach()])).chunk(2)
                d_p = 0.5 * (L.gan_loss(pr, True) + L.gan_loss(pf, False))
                logs["D_p"] = d_p.detach()
                loss_d = loss_d + d_p
        ctx.backward(loss_d)
        ctx.update("D")
        return {"G": loss_g.detach(), **{k: v.detach() for k, v in terms.items()}, **logs}

    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        """G: pseudo-healthy images (B, 1, H, W) in [-1, 1] (only direction ``'AB'`` exists)."""
        if direction != "AB":
            raise ValueError("PHS-GAN translates pathological to healthy only (direction 'AB')")
        return self.nets["G"](x)

    def samples(self, batch):
        out = {"x_p": batch["A"], "G(x_p)": self.nets["G"](batch["A"])}
        if "S" in self.nets:
            m = self.segment(batch["A"])
            out |= {"S(x_p)": m * 2 - 1, "R(G, S)": self.reconstruct(out["G(x_p)"], m)}
        return out

    def extra_state(self):
        return {"pool": self.pool.state_dict()}

    def load_extra_state(self, state):
        self.pool.load_state_dict(state["pool"], next(self.parameters()).device)
