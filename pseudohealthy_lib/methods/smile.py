"""SMILE (Du, Quan, Han and Zhou): semi-supervised pseudo-normality synthesis, and its GVS baseline.

Three U-Nets (Sec. 3; the paper's notation, Table 1)::

    P_n  = G(I)          the pseudo-normal image of an input I              (generator)
    M    = S(image)      a lesion map, softmax over {healthy, lesion}       (segmentor)
    P_ab = R(P_n, M)     the pseudo-abnormal image: the lesion put back     (reconstructor)

G and S play a game: S must still find the lesion in G(I), G must leave nothing for S to find.
R and S play a second one on R's images. The losses, numbered as in the paper::

    L_gen    = MSE((1 - M) * I, (1 - M) * G(I)) + CE(S(G(I)), 0)                    G     (1)
    L_seg    = CE(S(G(I)), M) + CE(S(P_ab), M)                                      S     (2)
    L_recons = MSE(R(G(I), M), I)                                                   R     (3)
    P_L      = [S(U) > eps]   (the lesion probability, eps = 0.9)                          (4)
    L_semi   = CE(S(U), P_L)                                                        S     (5)

In (1) M is the input's lesion mask in the MSE (the identity is asked for outside the lesion
only) and the CE's target is the all-healthy map 0 ("the segmentation mask of the expected
normal image"). A healthy input has M = 0, so (1) asks G for the identity on it, as Sec. 3.1 says.
R is trained with (3) and with S's verdict on its image, CE(S(P_ab), M): its lesion must be found
where M says (Fig. 2c's game, R's side; Sec. 3.3 gives only (3)).

**Semi-supervision** (Sec. 3.4): ``labelled`` is the fraction of the training slices whose masks
are kept (SMILE-75: 0.75, SMILE-50: 0.5; a fixed, seeded choice of slices, healthy and lesion
slices alike, as the paper removes labels from its own training set). For an unlabelled slice U
S's own confident pixels (4) stand in for M everywhere, and (5) trains S to be surer of them.
``eps_update=True`` replaces eps after each pass over the data by the mean lesion probability
of the pixels S called lesion (p > 0.5) on unlabelled slices during that pass: our reading of
"update eps by the average confidence value every epoch".

**Step-by-step training** (Sec. 3.5): four stages of equal length, ``stages`` below: G with S
(``'gs'``), R alone with G and S fixed (``'r'``), R with S (``'rs'``), then all three together
(``'all'``; G then also receives (3)'s gradient through R). The paper trains 10 epochs per stage.

**GVS** (``setting='gvs'``, Zhang et al., "Generator versus segmentor"): G and S alone, (1) and
the first term of (2), one stage. SMILE's Sec. 5.2 describes GVS as its own model without R,
which is how it is built here.

Choices where the paper is silent, all options: ``lambda_pix`` weighs the MSE of (1) (1 in the
paper; in [-1, 1] units an MSE is small next to a cross-entropy); ``am_dilate`` widens M in that
MSE by so many pixels (ANT-GAN's option of the same name: a lesion brightens a thin border just
outside its label, which an MSE outside M would otherwise ask G to keep; 0: the paper);
``lambda_paste`` adds the library's supervised removal task of the other chapters (ANT-GAN's
Eq. P, PHS-GAN's Eq. 1''): the batch's lesion, cut out with M (widened by ``paste_dilate``
pixels), is pasted over its healthy slice and G must give that slice back,
``L_paste = |G(paste(I_a, M, I_h)) - I_h|_1``, the only term that says what tissue a lesion hides
(0: the paper, where inside M only S's verdict reaches G); ``lambda_dice`` adds a soft Dice
of S's lesion map to each of S's terms of (2) and to (5), against the class imbalance of lesion
pixels (0: the paper's plain CE); ``lambda_real`` adds S's cross-entropy on the real labelled
input, CE(S(I), M) (0: the paper, where S learns from G's and R's images only); ``pool_size``
gives S's term on G(I) in (2) a history of that many past (G(I), M) pairs (CycleGAN's image pool;
0: the paper), so that S keeps finding the textures G used to fool it before; ``lambda_fool``
weighs (1)'s cross-entropy, the only term of (1) inside M (1: the paper). U-Nets are the
pix2pix U-Net of the other chapters (``unet_downs`` levels, ``ngf`` and ``s_ngf`` base channels;
``upsample='resize'``: G and R upsample by nearest resizing and a 3x3 conv instead of transposed
convs, a remedy for dot and checkerboard textures; ``'transpose'``: the paper's U-Net);
Adam with the config's lr (the paper: 1e-4) and beta1; images in [-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from .. import losses as L
from ..data.prepared import UnpairedDataset
from ..networks import UnetGenerator, init_weights
from ..utils import OptionError
from .base import ImagePool, Translator, register, set_requires_grad


class HiddenLabels(Dataset):
    """Unpaired items (:class:`~pseudohealthy_lib.data.prepared.UnpairedDataset`: ``A`` a lesion
    slice, ``B`` a healthy one) with ``A_labelled`` and ``B_labelled``: 1.0 for the slices whose
    masks are kept, 0.0 for the others. Exactly ``round(labelled * n)`` of the split's ``n``
    slices keep their masks; which ones is a function of ``seed``."""

    def __init__(self, base: UnpairedDataset, labelled: float, seed: int):
        self.base = base
        pool = np.unique(np.concatenate([base.path, base.other]))
        chosen = np.random.default_rng([seed, 2020]).permutation(pool)[:round(labelled * len(pool))]
        self.keep = np.zeros(len(base.data.images), bool)
        self.keep[chosen] = True

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict:
        item = self.base[i]
        a, b = item.pop("A_index"), item.pop("B_index")
        return item | {"A_labelled": float(self.keep[a]), "B_labelled": float(self.keep[b])}


@register
class SMILE(Translator):
    name = "smile"
    pseudo_healthy = True
    defaults = {"setting": "smile", "ngf": 32, "s_ngf": 16, "unet_downs": 7, "labelled": 1.0, "eps": 0.9,
                "eps_update": False, "lambda_pix": 1.0, "am_dilate": 0, "lambda_paste": 0.0, "paste_dilate": 0,
                "lambda_dice": 0.0, "lambda_real": 0.0, "pool_size": 0, "lambda_fool": 1.0,
                "upsample": "transpose", "init": "normal", "init_gain": 0.02}
    choices = {"setting": ("smile", "gvs"), "upsample": ("transpose", "resize"), "init": ("normal", "xavier", "kaiming", "orthogonal", "pytorch")}
    ranges = {"ngf": (1, None), "s_ngf": (1, None), "unet_downs": (1, None), "labelled": (0.0, 1.0), "eps": (0.5, 1.0),
              "lambda_pix": (0, None), "am_dilate": (0, None), "lambda_paste": (0, None), "paste_dilate": (0, None),
              "lambda_dice": (0, None), "lambda_real": (0, None), "pool_size": (0, None),
              "lambda_fool": (0, None), "init_gain": (0, None)}
    variants = {"smile-sup": {"labelled": 1.0}, "smile-75": {"labelled": 0.75}, "smile-50": {"labelled": 0.5},
                "gvs": {"setting": "gvs"}}

    @classmethod
    def resolve_options(cls, options, version):
        o = super().resolve_options(options, version)
        if o["setting"] == "gvs" and o["labelled"] < 1:
            raise OptionError(f"smile option labelled={o['labelled']}: GVS (setting='gvs') is supervised; "
                              "it has no confidence enhancer to learn from unlabelled slices")
        if o["paste_dilate"] and not o["lambda_paste"]:
            raise OptionError(f"smile option paste_dilate={o['paste_dilate']} widens the cut of the pasted lesions "
                              "of lambda_paste, which is off")
        return o

    def __init__(self, cfg):
        super().__init__(cfg)
        o = self.opt
        unet = lambda cin, cout, ngf, final, up="transpose": UnetGenerator(  # noqa: E731
            cin, cout, ngf, o["unet_downs"], final=final, upsample=up)
        nets = {"G": unet(1, 1, o["ngf"], "tanh", o["upsample"]), "S": unet(1, 2, o["s_ngf"], "none")}
        if o["setting"] == "smile":
            nets["R"] = unet(2, 1, o["ngf"], "tanh", o["upsample"])
        self.nets = nn.ModuleDict({k: init_weights(v, o["init"], o["init_gain"]) for k, v in nets.items()})
        # Sec. 3.5's four stages, of equal length; GVS has one
        self.stages = ((("gs", 0.25), ("r", 0.5), ("rs", 0.75), ("all", 1.0)) if o["setting"] == "smile"
                       else (("gs", 1.0),))
        self.eps = float(o["eps"])
        self._conf = [0.0, 0]                 # sum and count of lesion probabilities this pass (eps_update)
        self._pass_steps = 1                  # steps per pass over the data (set by dataset())
        self.pool = ImagePool(o["pool_size"], seed=cfg.seed)     # past (G(I), M) pairs for S (pool_size)

    def check_side(self, side):
        need = 2 ** self.opt["unet_downs"]
        if side % need:
            raise OptionError(f"images of {side}x{side} do not suit smile: its U-Nets of unet_downs="
                              f"{self.opt['unet_downs']} need sides divisible by {need}")

    # -- engine interface
    def trained_with(self):
        return (f"lesion masks of {self.opt['labelled']:.0%} of the training slices",) if self.opt["labelled"] else ()

    def dataset(self, data, split):
        ds = HiddenLabels(UnpairedDataset(data, split, seed=self.cfg.seed, with_index=True), self.opt["labelled"],
                          self.cfg.seed)
        self._pass_steps = max(1, len(ds) // self.cfg.batch_size)
        return ds

    def example_batch(self, batch_size, size, device="cpu"):
        flags = torch.ones(batch_size, device=device)
        flags[::2] = float(self.opt["labelled"] == 1)
        return super().example_batch(batch_size, size, device) | {"A_labelled": flags, "B_labelled": flags.flip(0)}

    def optimizers(self):
        gen = [self.nets[k] for k in ("G", "R") if k in self.nets]
        return {"G": self.adam(*gen), "S": self.adam(self.nets["S"])}

    def exported(self):
        return [k for k in ("G", "S", "R") if k in self.nets]

    # -- the pieces
    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """S: the lesion probability, (B, 1, H, W) in [0, 1] (the softmax's lesion channel)."""
        return self.nets["S"](x).float().softmax(1)[:, 1:2]

    def reconstruct(self, normal: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """R: a pseudo-abnormal image (B, 1, H, W) from a normal-looking image and a lesion map in [0, 1]."""
        return self.nets["R"](torch.cat([normal, mask.to(normal.dtype)], 1))

    def _seg_loss(self, logits: torch.Tensor, target: torch.Tensor, weight=None) -> torch.Tensor:
        """S's loss on one of its terms: CE, plus ``lambda_dice`` soft Dice, against a 0/1 map."""
        return L.segmentation_loss(logits.float(), target, self.opt["lambda_dice"], weight)

    # -- training
    def training_step(self, batch, ctx):
        o, n, stage = self.opt, self.nets, ctx.stage or "all"          # no stage (profiling): every network
        image = torch.cat([batch["A"], batch["B"]])
        truth = torch.cat([batch["A_mask"], torch.zeros_like(batch["A_mask"])])
        known = torch.cat([batch["A_labelled"], batch["B_labelled"]]).float()
        train_g, train_r, train_s = stage in ("gs", "all"), stage in ("r", "rs", "all"), stage in ("gs", "rs", "all")
        use_r = stage != "gs"
        unknown = 1 - known
        with ctx.autocast(), torch.no_grad():
            if unknown.any():                                                     # Eq. (4): pseudo-labels
                logits = n["S"](image).float()
                pseudo = L.pseudo_labels(logits, self.eps)
                self._track_confidence(logits.softmax(1)[:, 1:2], unknown)
                mask = known.view(-1, 1, 1, 1) * truth + unknown.view(-1, 1, 1, 1) * pseudo
            else:
                mask = truth
        if o["eps_update"] and (ctx.step + 1) % self._pass_steps == 0:
            self._end_pass()                                                      # after this step's labels
        logs = {}
        # G and R against a fixed S
        set_requires_grad([n["S"]], False)
        with ctx.autocast():
            with torch.set_grad_enabled(train_g):
                p_n = n["G"](image)
            terms = {}
            if train_g:                                                            # Eq. (1)
                free = L.dilate(mask, o["am_dilate"])                             # where G may change the image
                terms["pix"] = o["lambda_pix"] * L.anomaly_mask_loss(p_n.float(), image, free)   # ANT-GAN's Eq. (2)
                terms["fool_S"] = o["lambda_fool"] * self._seg_loss(n["S"](p_n), torch.zeros_like(mask))
                if o["lambda_paste"]:                                              # a lesion with a known answer
                    pasted = L.paste_lesion(batch["A"], mask[:len(batch["A"])], batch["B"], o["paste_dilate"])[0]
                    terms["paste"] = o["lambda_paste"] * L.cycle_loss(n["G"](pasted).float(), batch["B"])
            if use_r:
                p_ab = self.reconstruct(p_n if stage == "all" else p_n.detach(), mask)
                if train_r:                                                        # Eq. (3) and R's side of Fig. 2c
                    terms["recons"] = nn.functional.mse_loss(p_ab.float(), image)
                    terms["R_found"] = self._seg_loss(n["S"](p_ab), mask)
        if terms:
            loss = sum(terms.values())
            ctx.backward(loss)
            ctx.update("G")
            logs |= {"G": loss.detach(), **{k: v.detach() for k, v in terms.items()}}
        set_requires_grad([n["S"]], True)
        if not train_s:
            return logs
        # S: find the lesion in G's (and R's) images, Eq. (2); be sure of itself on unlabelled ones, Eq. (5)
        with ctx.autocast():
            seen = self.pool.query(torch.cat([p_n.detach(), mask.to(p_n.dtype)], 1))   # the pair itself at pool_size 0
            s_terms = {"seg_Pn": self._seg_loss(n["S"](seen[:, :1]), seen[:, 1:].float())}
            if use_r:
                s_terms["seg_Pab"] = self._seg_loss(n["S"](p_ab.detach()), mask)
            if o["lambda_real"] or unknown.any():
                logits = n["S"](image)
                if o["lambda_real"] and known.any():
                    s_terms["seg_real"] = o["lambda_real"] * self._seg_loss(logits, truth, known)
                if unknown.any():                                                  # Eq. (5)
                    s_terms["semi"] = L.confidence_loss(logits.float(), self.eps, unknown, o["lambda_dice"])
            loss_s = sum(s_terms.values())
        ctx.backward(loss_s)
        ctx.update("S")
        return logs | {"S": loss_s.detach(), **{k: v.detach() for k, v in s_terms.items()}}

    def _track_confidence(self, p: torch.Tensor, unknown: torch.Tensor) -> None:
        """Add this batch's lesion probabilities where S says lesion, on unlabelled slices (eps_update)."""
        if self.opt["eps_update"]:
            sel = (p > 0.5) & (unknown.view(-1, 1, 1, 1) > 0)
            self._conf = [self._conf[0] + p[sel].sum().double(), self._conf[1] + sel.sum()]   # tensors: no sync per step

    def _end_pass(self) -> None:
        """eps <- the mean lesion probability of the pass's lesion pixels (kept if S found none)."""
        total, count = float(self._conf[0]), int(self._conf[1])                 # one sync per pass
        if count:
            self.eps = min(max(total / count, 0.5), 0.999)
        self._conf = [0.0, 0]

    # -- inference
    @torch.no_grad()
    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        """G: pseudo-normal images (B, 1, H, W) in [-1, 1] (only direction ``'AB'`` exists)."""
        if direction != "AB":
            raise ValueError("SMILE translates abnormal to pseudo-normal only (direction 'AB'); "
                             "for pseudo-abnormal images use reconstruct(image, mask)")
        return self.nets["G"](x)

    def samples(self, batch):
        out = {"I": batch["A"], "G(I)": self.nets["G"](batch["A"]), "S(I)": self.segment(batch["A"]) * 2 - 1}
        if "R" in self.nets:
            out["R(G(I), M)"] = self.reconstruct(out["G(I)"], batch["A_mask"])
        return out

    def extra_state(self):
        return {"eps": self.eps, "confidence": [float(self._conf[0]), int(self._conf[1])], "pool": self.pool.state_dict()}

    def load_extra_state(self, state):
        self.eps, self._conf = float(state["eps"]), list(state["confidence"])
        if "pool" in state:                                  # checkpoints written before pool_size existed have none
            self.pool.load_state_dict(state["pool"], next(self.parameters()).device)
