"""One evaluation path for every model in the book.

``python -m pseudohealthy_lib evaluate MODEL [MODEL ...] --data FILE [--json]`` calls
:func:`evaluate` (several MODELs: one recipe trained with different seeds, see
:func:`evaluate_seeds`). MODEL is a zoo name, a run folder or a ``checkpoint.pt``; from Python
it may also be any object with ``translate``, ``predict`` or ``classify``, or a plain function
from a batch of slices (B, 1, H, W) in [-1, 1] to pseudo-healthy slices.

What kind of model it is decides what is measured (all images compared in [0, 1]):

=============  ===============================================================================
kind           metrics (per slice unless pooled; see :data:`TRANSLATOR_KEYS` for definitions)
=============  ===============================================================================
translator     identity, healthiness (with a judge), tissue and lesion fidelity, detection
               from the difference map, change on healthy slices, checkerboard, speed
segmentor      Dice on lesion slices, false-alarm rate on lesion-free slices, detection
classifier     accuracy, precision, recall, F1, ROC AUC
mask           CycleGAN with domain B = masks: A -> B judged as segmentation (Dice of
translator     G_AB(x) > 0), B -> A as synthesis (PSNR and SSIM of G_BA(mask) against x)
=============  ===============================================================================

Every result keeps its per-slice values and the subject of each slice, so that aggregates come
with their spread: the mean over slices (as the papers report), the mean and standard
deviation over subjects and a 95 % bootstrap interval over subjects (:func:`summarise`).
:func:`paired_test` compares two results subject by subject (Wilcoxon signed-rank).
:func:`compute_references` computes the reference rows every table shows: doing nothing, the oracle
(the true healthy image, phantoms only), classical inpainting given the true mask, and, for
detection, thresholding the image intensity itself. :func:`critic_scores` asks a GAN's trained
critic (from its run folder) how much of its verdict a perfect removal of the lesion would change.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from . import zoo
from .data import preprocess as pp
from .zoo import load_model

#: The highest PSNR a slice can score (dB). A slice with no error at all has an infinite PSNR,
#: and one such slice would make the mean over slices infinite however badly the others did, so
#: each slice's PSNR is capped here, as piq does by adding 1e-8 to the MSE: 80 dB is an error
#: far below one grey level of an 8-bit image (48 dB) and below float16's rounding of [0, 1].
PSNR_CEILING = 80.0

#: Per-slice metrics of a translator (pathological slices unless said otherwise).
TRANSLATOR_KEYS = {
    "identity": "PHS-GAN identity: masked MS-SSIM of output and input outside the lesion (1 = untouched)",
    "psnr_tissue": "PSNR (dB) of output vs input over tissue outside the lesion (not background), "
                   "at most PSNR_CEILING",
    "ssim_tissue": "SSIM of output vs input, averaged over tissue outside the lesion",
    "psnr_lesion": "PSNR (dB) inside the lesion vs the true healthy image (BraTS 2023 inpainting scoring), "
                   "at most PSNR_CEILING",
    "ssim_lesion": "SSIM inside the lesion vs the true healthy image",
    "mae_lesion": "mean absolute error inside the lesion vs the true healthy image",
    "bias_lesion": "mean of output minus true healthy image inside the lesion (> 0: a bright ghost left)",
    "change_healthy": "mean |G(x) - x| over tissue of lesion-free slices (should be ~0)",
}
#: Pooled metrics of a translator (computed over all slices of the split at once).
POOLED_KEYS = {
    "healthiness": "PHS-GAN: 1 - mean lesion pixels the judge finds in G(x) / mean true lesion pixels",
    "healthiness_smile": "SMILE: 1 - lesion pixels the judge finds in G(x) / those it finds in x",
    "auprc": "area under the precision-recall curve of |x - G(x)| as a lesion detector (tissue "
             "pixels of lesion and lesion-free slices)",
    "dice_max": "⌈Dice⌉ of |x - G(x)|: best Dice over thresholds (optimistic: chosen on the test data)",
    "dice_val": "Dice of |x - G(x)| > t, t chosen on the validation split (pooled; per slice in "
                "uncertainty['dice_val'])",
    "checkerboard": "checkerboard ratio of the changes to tissue outside the lesion (about 1: none)",
}


# ---------------------------------------------------------------------------------------------
# models


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode and restore every submodule's own mode afterwards, whatever
    happens inside (dropout and batch-norm layers must not be left in the wrong state)."""
    if not isinstance(model, torch.nn.Module):
        yield model
        return
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode


def _device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FunctionTranslator(torch.nn.Module):
    """Wraps a plain function ``f(x) -> G(x)`` on (B, 1, H, W) tensors in [-1, 1] as a translator."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


class DoNothing(torch.nn.Module):
    """The baseline every pseudo-healthy generator has to beat: output = input."""

    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        return x


def kind_of(model) -> str:
    """``'mask translator'``, ``'translator'``, ``'segmentor'`` or ``'classifier'``: a method's
    declared ``kind``, else what the object can do (``translate``, ``predict``, ``classify``, or
    a plain function, taken as a translator)."""
    kind = getattr(model, "kind", None)
    if kind in ("segmentor", "classifier"):
        return kind
    if kind == "translator" or hasattr(model, "translate"):
        opt = getattr(model, "opt", {}) or {}
        return "mask translator" if opt.get("domain_b") == "mask" else "translator"
    if hasattr(model, "predict"):
        return "segmentor"
    if hasattr(model, "classify"):
        return "classifier"
    if callable(model):
        return "translator"
    raise TypeError(f"cannot evaluate {type(model).__name__}: it has no translate, predict or classify "
                    "method and is not a function")


# ---------------------------------------------------------------------------------------------
# data


def _split(data, split: str | None, label: int | None = None) -> np.ndarray:
    return data.select(None if split in (None, "all") else split, label)


def _stack(arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return arr[idx].astype(np.float32)


@torch.no_grad()
def _run(fn, x01: np.ndarray, device, batch_size: int, masks=None) -> tuple[np.ndarray, float]:
    """Apply ``fn`` (tensors in [-1, 1] -> [-1, 1]) to images in [0, 1]; outputs in [0, 1] and
    the seconds spent in ``fn`` (device synchronised). With ``masks`` (N, H, W), ``fn(x, m)``
    also gets each batch's masks (B, 1, H, W) in {0, 1}."""
    out, t = [], 0.0
    for s in range(0, len(x01), batch_size):
        x = pp.to_tanh_range(torch.from_numpy(x01[s:s + batch_size])[:, None]).to(device)
        m = None if masks is None else torch.from_numpy(np.asarray(masks[s:s + batch_size], np.float32))[:, None].to(device)
        _sync(device)
        t0 = time.perf_counter()
        y = fn(x) if m is None else fn(x, m)
        _sync(device)
        t += time.perf_counter() - t0
        out.append(pp.from_tanh_range(y.float()).clamp(0, 1)[:, 0].cpu().numpy())
    return (np.concatenate(out) if out else np.zeros((0,) + x01.shape[1:], np.float32)), t


def judge_masks(judge, images01: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The judge's binary lesion masks (N, H, W) for images in [0, 1]."""
    dev = _device(judge)
    with eval_mode(judge):
        fn = getattr(judge, "predict_mask", None) or (lambda x: judge.predict(x) > 0.5)   # any segmentor
        masks = [fn(pp.to_tanh_range(torch.from_numpy(images01[s:s + batch_size])[:, None]).to(dev))[:, 0].cpu().numpy()
                 for s in range(0, len(images01), batch_size)]
    return np.concatenate(masks).astype(bool) if masks else np.zeros(images01.shape, bool)


# ---------------------------------------------------------------------------------------------
# results and their uncertainty


class Result(dict):
    """A JSON-ready dict of headline metrics, plus ``per_slice`` values and ``subjects``.

    Keys: every headline metric (mean over slices, or the pooled value), ``uncertainty``
    (:func:`summarise` of each per-slice metric), ``kind``, ``slices``, ``subjects_n`` and
    ``notes`` (how metrics were computed, e.g. the MS-SSIM scales used for identity).
    """

    def __init__(self, *a, per_slice=None, subjects=None, by_subject=None, **kw):
        super().__init__(*a, **kw)
        self.per_slice = per_slice or {}
        self.subjects = subjects
        self.by_subject = by_subject or {}        # pooled metrics computed subject by subject
        self.outputs = None                       # a translator's outputs (N, H, W), when asked to keep them

    def subject_means(self, key: str) -> dict:
        """Each subject's value of metric ``key``: the mean of its slices' values (``nan`` slices
        ignored), or, for a pooled metric in ``by_subject`` such as healthiness, the metric
        computed over that subject's slices."""
        if key in self.by_subject:
            return dict(self.by_subject[key])
        vals, subj = np.asarray(self.per_slice[key], float), np.asarray(self.subjects)
        return {s: float(np.nanmean(vals[subj == s])) for s in sorted(set(subj.tolist()))
                if (~np.isnan(vals[subj == s])).any()}


@np.errstate(invalid="ignore")
def bootstrap_ci(values, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (e.g. one value per subject)."""
    v = np.asarray([x for x in values if not np.isnan(x)], float)
    if len(v) == 0:
        return float("nan"), float("nan")
    means = v[np.random.default_rng(seed).integers(0, len(v), (n, len(v)))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


@np.errstate(invalid="ignore")
def summarise(values, subjects) -> dict:
    """Mean and std over slices; mean, std and 95 % bootstrap interval over subjects
    (``nan`` values are left out; an infinite PSNR makes the spread undefined, ``nan``)."""
    v, s = np.asarray(values, float), np.asarray(subjects)
    ok = ~np.isnan(v)
    if not ok.any():
        return {"mean": None, "std": None, "subject_mean": None, "subject_std": None, "ci95": [None, None],
                "n_slices": 0, "n_subjects": 0}
    per = np.array([v[ok & (s == k)].mean() for k in sorted(set(s[ok].tolist()))])
    lo, hi = bootstrap_ci(per)
    return {"mean": float(v[ok].mean()), "std": float(v[ok].std()), "subject_mean": float(per.mean()),
            "subject_std": float(per.std(ddof=1)) if len(per) > 1 else 0.0, "ci95": [lo, hi],
            "n_slices": int(ok.sum()), "n_subjects": len(per)}


def paired_test(a: Result, b: Result, key: str, higher_is_better: bool = True, alpha: float = 0.05) -> dict:
    """Does ``a`` beat ``b`` on metric ``key``? Wilcoxon signed-rank test over the subjects both
    were evaluated on (:meth:`Result.subject_means`: the mean of a per-slice metric, or a pooled
    metric such as healthiness computed subject by subject), two-sided.

    Returns ``n`` (subjects), ``mean_difference`` (a - b), ``p`` and ``verdict``: ``'a better'``,
    ``'b better'`` or ``'no significant difference'`` at level ``alpha``.
    """
    from scipy.stats import wilcoxon

    ma, mb = a.subject_means(key), b.subject_means(key)
    common = sorted(set(ma) & set(mb))
    da = np.array([ma[s] for s in common])
    db = np.array([mb[s] for s in common])
    d = da - db
    finite = np.isfinite(d)
    d = d[finite]
    if len(d) < 2 or not np.any(d != 0):
        p = 1.0
    else:
        p = float(wilcoxon(da[finite], db[finite]).pvalue)
    diff = float(d.mean()) if len(d) else float("nan")
    better = diff > 0 if higher_is_better else diff < 0
    verdict = "no significant difference" if p >= alpha else ("a better" if better else "b better")
    return {"key": key, "n": int(len(d)), "mean_difference": diff, "p": p, "verdict": verdict}


# ---------------------------------------------------------------------------------------------
# scoring arrays (shared by models and reference rows)


def _val_threshold(data, fn, device, batch_size, with_masks: bool = False) -> float | None:
    """The threshold of ``|x - G(x)|`` with the best pooled Dice on the validation split."""
    if "val" not in set(data.split.tolist()):
        return None
    idx = _split(data, "val")
    x = _stack(data.images, idx)
    y, _ = _run(fn, x, device, batch_size, data.masks[idx] if with_masks else None)
    det = M.detection(np.abs(y - x), data.masks[idx], M.tissue_mask(x))
    return det["threshold_max"] if np.isfinite(det["threshold_max"]) else None


def score_translation(x, y, masks, subjects, labels, truth=None, judge=None, threshold=None,
                      found_on_input=None) -> Result:
    """Every translator metric from arrays (N, H, W) in [0, 1]: inputs ``x``, outputs ``y``,
    lesion ``masks``, ``labels`` (1 = lesion slice), optional healthy ``truth``, an optional
    ``judge`` segmentor and a detection ``threshold`` chosen on validation data."""
    lesion = labels == 1
    per = {k: np.full(len(x), np.nan) for k in TRANSLATOR_KEYS}
    tissue = M.tissue_mask(x)
    li = np.nonzero(lesion)[0]
    if len(li):
        per["identity"][li] = M.identity(y[li], x[li], masks[li])
    for i in range(len(x)):
        m = masks[i] > 0
        if lesion[i]:
            keep = tissue[i] & ~m
            per["psnr_tissue"][i] = min(M.psnr(y[i], x[i], keep), PSNR_CEILING)
            per["ssim_tissue"][i] = M.ssim(y[i], x[i], keep)
            if truth is not None:
                f = M.lesion_fidelity(y[i], truth[i], x[i], m)
                for k in ("ssim", "mae", "bias"):
                    per[f"{k}_lesion"][i] = f[k]
                per["psnr_lesion"][i] = min(f["psnr"], PSNR_CEILING)
        elif tissue[i].any():
            per["change_healthy"][i] = float(np.abs(y[i] - x[i])[tissue[i]].mean())
    res = Result(per_slice=per, subjects=np.asarray(subjects))
    for k, v in per.items():
        res[k] = float(np.nanmean(v)) if (~np.isnan(v)).any() else None
    # pooled
    score = np.abs(y - x)
    det = M.detection(score, masks, tissue)
    res["auprc"], res["dice_max"] = det["auprc"], det["dice_max"]
    res["dice_val"] = M.dice(score[tissue] > threshold, masks[tissue]) if threshold is not None else None
    res["threshold_val"] = threshold
    res.per_slice["dice_val"] = np.full(len(x), np.nan)          # per lesion slice, at the same threshold
    if threshold is not None:
        for i in li:
            res.per_slice["dice_val"][i] = M.dice((score[i] > threshold) & tissue[i], masks[i])
    # detection per subject: each subject's pixels pooled, then the spread over subjects
    subj = np.asarray(subjects)
    by_subject = {s: M.detection(score[subj == s], masks[subj == s], tissue[subj == s])
                  for s in sorted(set(subj[lesion].tolist()))}
    res["detection_by_subject"] = {k: summarise([d[k] for d in by_subject.values()], list(by_subject))
                                   for k in ("auprc", "dice_max")}
    changes = (y - x)[li] * (tissue[li] & (masks[li] == 0))
    res["checkerboard"] = M.checkerboard_ratio(changes) if len(li) and min(x.shape[1:]) >= 32 else None
    res["healthiness"] = res["healthiness_smile"] = None
    if judge is not None and len(li):
        found = judge_masks(judge, y[li])
        on_in = found_on_input if found_on_input is not None else judge_masks(judge, x[li])
        res["healthiness"] = M.healthiness(found, true_masks=masks[li])
        res["healthiness_smile"] = M.healthiness(found, pred_masks_on_input=on_in)
        res.per_slice["judge_found_px"] = np.full(len(x), np.nan)
        res.per_slice["judge_found_px"][li] = found.reshape(len(li), -1).sum(1)
        subj = np.asarray(subjects)[li]              # healthiness of each subject, pooled over its slices
        res.by_subject["healthiness"] = {s: M.healthiness(found[subj == s], true_masks=masks[li][subj == s])
                                         for s in sorted(set(subj.tolist()))}
    res["slices"], res["subjects_n"] = int(lesion.sum()), int(len(set(np.asarray(subjects)[lesion].tolist())))
    res["uncertainty"] = {k: summarise(v, subjects) for k, v in res.per_slice.items() if (~np.isnan(v)).any()}
    for k, per_subject in res.by_subject.items():    # one value per subject: their spread and interval
        res["uncertainty"][k] = summarise(list(per_subject.values()), list(per_subject))
    res["notes"] = {"identity": M.identity_note(x.shape[-1]), "psnr": f"each slice's PSNR at most {PSNR_CEILING:g} dB",
                    "tissue": "pixels of the input above 1e-3 (background excluded), lesion excluded"}
    return res


def score_segmentation(prob, masks, subjects, labels, pred=None) -> Result:
    """Segmentor metrics from its lesion probabilities (N, H, W) and binary masks ``pred``
    (default: probability > 0.5)."""
    pred = prob > 0.5 if pred is None else pred
    lesion = labels == 1
    per = {"dice": np.full(len(prob), np.nan), "false_alarm": np.full(len(prob), np.nan),
           "flagged_px": pred.reshape(len(pred), -1).sum(1).astype(float)}
    for i in range(len(prob)):
        if lesion[i]:
            per["dice"][i] = M.dice(pred[i], masks[i])
        else:
            per["false_alarm"][i] = float(pred[i].any())
    res = Result(per_slice=per, subjects=np.asarray(subjects))
    res["dice"] = float(np.nanmean(per["dice"])) if lesion.any() else None
    li = np.nonzero(lesion)[0]
    res["dice_pooled"] = M.dice(pred[li], masks[li]) if len(li) else None
    res["false_alarm_rate"] = float(np.nanmean(per["false_alarm"])) if (~lesion).any() else None
    res["missed"] = float(1 - (pred[li] & (masks[li] > 0)).sum() / max((masks[li] > 0).sum(), 1)) if len(li) else None
    det = M.detection(prob, masks)
    res["auprc"], res["dice_max"] = det["auprc"], det["dice_max"]
    res["slices"], res["lesion_slices"] = len(prob), int(lesion.sum())
    res["subjects_n"] = len(set(np.asarray(subjects).tolist()))
    res["uncertainty"] = {k: summarise(v, subjects) for k, v in per.items() if (~np.isnan(v)).any()}
    res["notes"] = {"false_alarm": "a lesion-free slice with at least one flagged pixel"}
    return res


# ---------------------------------------------------------------------------------------------
# the entry point


def evaluate(model, data, split: str = "test", segmentor=None, batch_size: int = 16,
             references: bool = False, keep_outputs: bool = False, judge_cache: dict | None = None) -> Result:
    """Evaluate ``model`` on ``split`` of the prepared slices ``data`` (a file or loaded data).

    ``segmentor`` (a model with ``predict``, a zoo name or a checkpoint) is the judge for
    healthiness; the result then also carries ``judge`` (its Dice and false-alarm rate on the
    same slices) and ``healthiness_input`` (the healthiness of doing nothing). ``references``
    adds the reference rows of :func:`compute_references`. ``keep_outputs`` keeps a translator's
    outputs, (N, H, W) float16 in [0, 1] in the order of ``data.select(split)``, as ``result.outputs``
    (not a key, so results stay JSON-ready). ``judge_cache``, a dict shared by calls on the same
    ``data``, ``split`` and judge, keeps what depends on the judge and the inputs only (its own
    scores, its masks on the inputs), so that a table of many models runs the judge on the inputs
    once. The model's train/eval mode is restored.
    """
    from .data import load_prepared

    if isinstance(data, (str, Path)):
        data = load_prepared(data)
    model = load_model(model)
    kind = kind_of(model)
    idx = _split(data, split)
    if kind in ("translator", "mask translator") and not (data.labels[idx] == 1).any():
        from .utils import OptionError

        raise OptionError(f"split '{split}' has no pathological slices to evaluate a translator on")
    dev = _device(model)
    x = _stack(data.images, idx)
    masks, subjects, labels = data.masks[idx], data.subjects[idx], data.labels[idx]
    with eval_mode(model):
        if kind == "segmentor":
            fn = lambda t: model.predict(t) * 2 - 1          # noqa: E731  probabilities through [-1, 1]
            prob, secs = _run(fn, x, dev, batch_size)
            to_mask = getattr(model, "to_mask", None)
            res = score_segmentation(prob, masks, subjects, labels, to_mask(prob) if to_mask else None)
            res["reference_intensity"] = _intensity_row(x, masks)
        elif kind == "classifier":
            res = _score_classifier(model, x, labels, subjects, dev, batch_size)
            secs = res.pop("_seconds")
        elif kind == "mask translator":
            res, secs = _score_mask_translation(model, x, masks, subjects, labels, dev, batch_size)
        else:
            fn = model.translate if hasattr(model, "translate") else model
            inpainter = getattr(model, "needs_mask", False)     # it is given the true lesion masks
            if inpainter:
                fn = lambda t, m: model.translate(t, mask=m)   # noqa: E731
            y, secs = _run(fn, x, dev, batch_size, masks if inpainter else None)
            judge = load_model(segmentor) if segmentor is not None else None
            if judge is not None and kind_of(judge) != "segmentor":
                from .utils import OptionError

                raise OptionError(f"segmentor: the judge must be a segmentor (a model with predict), "
                                  f"not a {kind_of(judge)}")
            truth = _stack(data.healthy, idx) if data.has_ground_truth else None
            thr = _val_threshold(data, fn, dev, batch_size, inpainter) if split not in ("val", None, "all") else None
            cache = judge_cache if judge_cache is not None else {}
            if judge is not None and "on_in" not in cache:
                cache["on_in"] = judge_masks(judge, x[labels == 1])
            on_in = cache.get("on_in")
            res = score_translation(x, y, masks, subjects, labels, truth, judge, thr, on_in)
            if keep_outputs:
                res.outputs = y.astype(np.float16)
            if judge is not None:
                jr = cache["judge"] if "judge" in cache else cache.setdefault("judge", evaluate(judge, data, split))
                res["judge"] = {"name": getattr(judge, "manifest", None) and judge.manifest.get("name"),
                                "dice": jr["dice"], "false_alarm_rate": jr["false_alarm_rate"],
                                "missed": jr["missed"]}
                res["healthiness_input"] = M.healthiness(on_in, true_masks=masks[labels == 1])
            if references:
                res["references"] = compute_references(data, split, judge, on_in)
    res["kind"] = kind
    res["slices_per_s"] = len(x) / secs if secs > 0 else None
    return res


def _intensity_row(x, masks) -> dict:
    """Detection by the image intensity itself over tissue: brightness as the lesion score where
    the lesions are brighter than the tissue on average (FLAIR), darkness where they are darker
    (hypodense CT tumours; ``lesion_darker``). The sign is the one bit read from the test masks."""
    det = M.intensity_detection(x, masks)
    return {k: det[k] for k in ("auprc", "dice_max", "threshold_max", "lesion_darker")}


def _score_classifier(model, x, labels, subjects, dev, batch_size) -> Result:
    from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

    probs, t = [], 0.0
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = pp.to_tanh_range(torch.from_numpy(x[s:s + batch_size])[:, None]).to(dev)
            _sync(dev)
            t0 = time.perf_counter()
            p = model.classify(xb)
            _sync(dev)
            t += time.perf_counter() - t0
            p = p[:, 1] if p.dim() == 2 and p.shape[1] > 1 else p.reshape(-1)    # (B, classes): class 1 is "lesion"
            probs.append(p.float().cpu().numpy())
    p = np.concatenate(probs)
    pred, y = (p > 0.5).astype(int), (labels == 1).astype(int)
    per = {"correct": (pred == y).astype(float)}
    res = Result(per_slice=per, subjects=np.asarray(subjects))
    res |= {"accuracy": float(per["correct"].mean()),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)),
            "f1": float(f1_score(y, pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
            "slices": len(x), "_seconds": t,
            "uncertainty": {"correct": summarise(per["correct"], subjects)}}
    return res


def _score_mask_translation(model, x, masks, subjects, labels, dev, batch_size):
    """CycleGAN between images and masks: A -> B as segmentation, B -> A as synthesis."""
    li = np.nonzero(labels == 1)[0]
    y, secs = _run(lambda t: model.translate(t, "AB"), x[li], dev, batch_size)
    per = {"dice_AB": np.array([M.dice(y[i] > 0.5, masks[k]) for i, k in enumerate(li)])}
    if "G_BA" in getattr(model, "nets", {}):
        syn, _ = _run(lambda t: model.translate(t, "BA"), masks[li].astype(np.float32), dev, batch_size)
        per["psnr_BA"] = np.array([M.psnr(syn[i], x[k]) for i, k in enumerate(li)])
        per["ssim_BA"] = np.array([M.ssim(syn[i], x[k]) for i, k in enumerate(li)])
    res = Result(per_slice=per, subjects=np.asarray(subjects)[li])
    res |= {k: float(np.mean(v)) for k, v in per.items()}
    res["slices"] = len(li)
    res["uncertainty"] = {k: summarise(v, res.subjects) for k, v in per.items()}
    return res, secs


# ---------------------------------------------------------------------------------------------
# reference rows


def inpaint_biharmonic(x, masks, dilate: int = 2) -> np.ndarray:
    """Classical inpainting of the lesion from the surrounding tissue, given the true mask
    (scikit-image's biharmonic inpainting): a floor that uses no learning. Arrays (N, H, W).

    The mask is first dilated by ``dilate`` pixels: a lesion's edge blurs into the tissue around
    it (partial volume; the phantom's lesions change the image up to 2 voxels beyond their
    mask), and inpainting from a still-bright border would paint the lesion back in.
    """
    from scipy import ndimage
    from skimage.restoration import inpaint_biharmonic as ib

    out = x.copy()
    for i in range(len(x)):
        m = masks[i] > 0
        if m.any():
            m = ndimage.binary_dilation(m, iterations=dilate) if dilate else m
            out[i] = np.clip(ib(x[i], m), 0, 1)
    return out


def way_back(model):
    """The function ``back(x, h)`` with which ``model`` puts the lesion of pathological slices
    ``x`` back into healthy-looking slices ``h`` (both (B, 1, H, W) in [-1, 1]): CycleGAN's
    second generator, ``G_BA(h)`` (it never sees x), or PHS-GAN's reconstructor given the map its
    segmentor finds in x, ``R(h, S(x))``."""
    from .utils import OptionError

    nets = getattr(model, "nets", {})
    if "G_BA" in nets:
        return lambda x, h: model.translate(h, "BA")
    if "R" in nets and "S" in nets:
        return lambda x, h: model.reconstruct(h, model.segment(x))
    raise OptionError("hidden_lesion needs a way back to the lesion: a second generator G_BA (CycleGAN) "
                      "or a reconstructor R with a segmentor S (PHS-GAN); this model has neither")


def hidden_lesion(model, data, split: str = "test", judge=None, batch_size: int = 16) -> Result:
    """How much of the lesion a CycleGAN-style model's pseudo-healthy output still carries.

    The AC cycle asks G_BA to put the lesion back into G_AB(x). A truly healthy image holds no
    trace of where the lesion was (PHS-GAN's one-to-many problem), so G_BA should rebuild it no
    better from G_AB(x) than from the phantom's true healthy image x_h. Both reconstructions are
    scored against x inside the lesion, as mean absolute errors normalised like
    :func:`~pseudohealthy_lib.metrics.lesion_fidelity` (MAE, not PSNR: a lesion rebuilt exactly
    would give an infinite PSNR and no mean):

    * ``mae_from_output``: mean ``|G_BA(G_AB(x)) - x|``, what the cycle term trains;
    * ``mae_from_truth``: mean ``|G_BA(x_h) - x|``, what an honest healthy image allows;
    * ``leak``: 1 - mae_from_output / mae_from_truth, per slice. 0: the output tells G_BA no more
      about the lesion than the true healthy image does; 1: the lesion comes back exactly, so the
      output hides it in its pixels (CycleGAN's "steganography"), a ghost that keeps the cycle
      loss low. Negative: the output is an even worse starting point than the truth.

    PHS-GAN rebuilds with its reconstructor and the map its segmentor finds in x,
    ``R(., S(x))``: told where the lesion is, it needs no hidden copy, so its leak should be
    near 0 whatever its generator does (the paper's answer to the one-to-many problem).

    With a ``judge`` segmentor, *where* each reconstruction puts its lesion is measured too:
    ``dice_from_output`` and ``dice_from_truth`` are the Dice of the judge's lesion mask on the
    two reconstructions against the input's true lesion (1 for a slice where both are empty).
    From the true healthy image CycleGAN can only guess where a lesion goes (the paper's Fig. 2:
    one healthy image, many lesions), so its ``dice_from_truth`` is low; PHS-GAN's R is given the
    place and its ``dice_from_truth`` should be as high as its ``dice_from_output``.

    Needs a model with both generators (``translate(x, "AB")`` and ``translate(x, "BA")``) or
    PHS-GAN's ``reconstruct`` and ``segment``, and phantom data (a healthy ground truth).
    """
    from .data import load_prepared
    from .utils import OptionError

    if isinstance(data, (str, Path)):
        data = load_prepared(data)
    model = load_model(model)
    if not data.has_ground_truth:
        raise OptionError("hidden_lesion needs a phantom's healthy ground truth; this data has none")
    back = way_back(model)
    idx = _split(data, split, 1)
    x, truth, masks = _stack(data.images, idx), _stack(data.healthy, idx), data.masks[idx]
    dev, w = _device(model), x.shape[-1]
    with eval_mode(model):
        rec, _ = _run(lambda t: back(t, model.translate(t, "AB")), x, dev, batch_size)
        # input and truth side by side in one array, so that each batch holds both
        from_truth, _ = _run(lambda t: back(t[..., :w], t[..., w:]), np.concatenate([x, truth], -1), dev, batch_size)
    per = {key: [M.lesion_fidelity(r, xi, xi, m)["mae"] for r, xi, m in zip(out, x, masks)]
           for key, out in (("mae_from_output", rec), ("mae_from_truth", from_truth))}
    with np.errstate(divide="ignore", invalid="ignore"):
        per["leak"] = list(1 - np.divide(per["mae_from_output"], per["mae_from_truth"]))
    if judge is not None:
        for key, out in (("dice_from_output", rec), ("dice_from_truth", from_truth)):
            per[key] = [M.dice(f, m) for f, m in zip(judge_masks(judge, out), masks)]
    subjects = data.subjects[idx]
    res = Result({k: float(np.nanmean(v)) for k, v in per.items()}, per_slice=per, subjects=subjects)
    res["uncertainty"] = {k: summarise(v, subjects) for k, v in per.items()}
    return res


def own_map(model, data, split: str = "test", batch_size: int = 16) -> Result:
    """How well a factorising model's *own* lesion map finds the lesion (PHS-GAN's and SMILE's
    segmentor S, ``model.segment``): the segmentor scores of :func:`score_segmentation` (Dice on
    lesion slices, false alarms on healthy ones, AUPRC) for that map on ``split``. In the paired
    setting S is trained on the masks; in the unpaired one nothing but the cycles and the mask
    critic tells it where the lesion is, and this is where a collapsed S shows."""
    from .data import load_prepared

    if isinstance(data, (str, Path)):
        data = load_prepared(data)
    model = load_model(model)
    if not hasattr(model, "segment"):
        from .utils import OptionError

        raise OptionError(f"own_map needs a model with its own lesion map (segment), such as PHS-GAN; "
                          f"{type(model).__name__} has none")
    idx = _split(data, split)
    with eval_mode(model):
        prob, _ = _run(lambda t: model.segment(t) * 2 - 1, _stack(data.images, idx), _device(model), batch_size)
    return score_segmentation(prob, data.masks[idx], data.subjects[idx], data.labels[idx])


def compute_references(data, split: str = "test", judge=None, found_on_input=None) -> dict:
    """The reference rows of every results table, computed on ``split``:

    ``do nothing`` (output = input), ``oracle`` (the true healthy image; phantoms only),
    ``inpainting`` (:func:`inpaint_biharmonic` with the true mask, dilated by 2 pixels) and ``intensity threshold``
    (detection only: the image intensity as the lesion score, which on FLAIR rivals many
    unsupervised detectors; Meissen et al. report ⌈Dice⌉ 0.738 on BraTS with it).
    """
    idx = _split(data, split)
    x = _stack(data.images, idx)
    masks, subjects, labels = data.masks[idx], data.subjects[idx], data.labels[idx]
    truth = _stack(data.healthy, idx) if data.has_ground_truth else None
    on_in = found_on_input
    if judge is not None and on_in is None:
        on_in = judge_masks(judge, x[labels == 1])
    rows = {"do nothing": x}
    if truth is not None:
        rows["oracle"] = truth
    rows["inpainting"] = inpaint_biharmonic(x, masks)
    out = {}
    for name, y in rows.items():
        r = score_translation(x, y, masks, subjects, labels, truth, judge, None, on_in)
        keys = (*TRANSLATOR_KEYS, "healthiness", "healthiness_smile", "checkerboard")
        # detection from the difference map: not for inpainting, which was handed the true mask
        keys += () if name == "inpainting" else ("auprc", "dice_max")
        out[name] = {k: r[k] for k in keys}
    out["intensity threshold"] = _intensity_row(x, masks)
    return out


def evaluate_seeds(models, data, split: str = "test", segmentor=None, **kw) -> dict:
    """Evaluate several models of one recipe (different seeds): each result, and for every
    headline metric the mean and standard deviation across seeds."""
    from .data import load_prepared

    if isinstance(data, (str, Path)):
        data = load_prepared(data)
    results = [evaluate(m, data, split, segmentor=segmentor, **kw) for m in models]
    keys = [k for k, v in results[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    spread = {}
    for k in keys:
        vals = np.array([r[k] for r in results if r.get(k) is not None], float)
        vals = vals[np.isfinite(vals)]
        if len(vals):
            spread[k] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                         "n_seeds": int(len(vals))}
    return {"seeds": results, "across_seeds": spread}


def combine_seeds(results: list, keys=("identity", "healthiness", "psnr_lesion")) -> Result:
    """One result for several trainings of a recipe (different seeds), evaluated on the same data.

    Each metric of ``keys`` is the mean of the seeds' values, ``seed_std[key]`` their standard
    deviation (0 for one seed), and each subject's value (``by_subject``) is its mean over the
    seeds, so that :func:`paired_test` compares two recipes rather than two single runs.
    """
    out = Result(by_subject={})
    out["seeds"], out["seed_std"] = len(results), {}
    for k in keys:
        vals = np.array([r[k] for r in results], float)
        out[k] = float(vals.mean())
        out["seed_std"][k] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        subj = [r.subject_means(k) for r in results]
        common = sorted(set.intersection(*(set(d) for d in subj)))
        out.by_subject[k] = {s: float(np.mean([d[s] for d in subj])) for s in common}
    return out


def seed_table(groups: dict, keys=("identity", "healthiness", "psnr_lesion")):
    """A pandas table, one row per recipe of ``groups`` (label -> list of results, one per seed):
    for each metric of ``keys`` its mean over the seeds, the standard deviation over test
    subjects (of the subjects' values averaged over the seeds) and over seeds (NaN for one seed)."""
    import pandas as pd

    rows = {}
    for label, results in groups.items():
        c = combine_seeds(results, keys)
        row = {("seeds", ""): len(results)}
        for k in keys:
            per = np.array(list(c.by_subject[k].values()), float)
            row[(k, "mean")] = c[k]
            row[(k, "sd subjects")] = float(per.std(ddof=1)) if len(per) > 1 else float("nan")
            row[(k, "sd seeds")] = c["seed_std"][k] if len(results) > 1 else float("nan")
        rows[label] = row
    return pd.DataFrame(rows).T


TABLE_COLUMNS = ["identity", "healthiness", "psnr_tissue", "psnr_lesion", "ssim_lesion", "mae_lesion",
                 "auprc", "dice_max", "change_healthy"]


def results_table(results: dict, columns=None):
    """A pandas table, one row per entry of ``results`` (label -> result or reference row);
    missing metrics are NaN."""
    import pandas as pd

    columns = columns or TABLE_COLUMNS
    return pd.DataFrame({label: {c: r.get(c) for c in columns} for label, r in results.items()}).T.astype(float)


def reference_rows(result: dict) -> dict:
    """The reference rows stored in ``result`` (computed with ``references=True``), labelled."""
    labels = {"do nothing": "do nothing (output = input)", "oracle": "oracle (true healthy image)",
              "inpainting": "inpainting, given the true mask", "intensity threshold": "intensity threshold (detection)"}
    return {labels.get(k, k): v for k, v in result.get("references", {}).items()}


@torch.no_grad()
def critic_scores(model, data, split: str = "test", batch_size: int = 16) -> dict:
    """What a translator's trained healthy-image critic (``model.critic``, e.g. ANT-GAN's D_B)
    makes of four sets of slices of ``split``: its lesion-free slices (``healthy``: the real
    healthy images it was trained to accept), its lesion slices as they are (``inputs``), the
    translator's outputs for them (``outputs``) and, on a phantom, their true healthy images
    (``truth``). Each is the mean score (least squares: 1 = real, 0 = fake); for the lesion
    slices also over the score-map cells that lie on the lesion (``*_on_lesion``: the mask
    max-pooled to the map's grid) and the others (``*_off_lesion``).

    ``removal_share`` = (truth - inputs) / (healthy - inputs) is how much of the critic's gap
    between the two domains a *perfect* removal of the lesion closes: near 1, the critic judges
    the lesion; near 0, it tells the domains apart by something else (the slice's level, mass
    effect, intensity scale), and the adversarial loss gives the generator little reason to
    remove the lesion. ``output_share`` is the same for the translator's outputs (None without
    a gap to close, or without truth)."""
    import torch.nn.functional as F

    from .data import load_prepared
    from .utils import OptionError

    if isinstance(data, (str, Path)):
        data = load_prepared(data)
    model = load_model(model)
    critic = getattr(model, "critic", None)
    if critic is None:
        raise OptionError(f"{getattr(model, 'name', type(model).__name__)}: no trained critic to score with (a zoo "
                          "model keeps only its generators: load its training run folder or checkpoint instead)")
    dev = _device(model)
    sick, well = _split(data, split, 1), _split(data, split, 0)
    if not len(sick) or not len(well):
        raise OptionError(f"split '{split}' needs slices with and without lesions to score a critic "
                          f"(it has {len(sick)} and {len(well)})")

    def scores(images01: np.ndarray, masks: np.ndarray | None = None, translate: bool = False) -> dict:
        total, on, off = [], [], []
        for s in range(0, len(images01), batch_size):
            x = pp.to_tanh_range(torch.from_numpy(images01[s:s + batch_size])[:, None]).to(dev)
            if translate:
                x = model.translate(x)
            p = critic(x).float()
            total.append(p.flatten(1).mean(1).cpu())
            if masks is not None and p.dim() == 4:
                m = torch.from_numpy(np.asarray(masks[s:s + batch_size], np.float32))[:, None].to(dev)
                cells = F.adaptive_max_pool2d(m, p.shape[-2:]) > 0
                on.append(p[cells].cpu())
                off.append(p[~cells].cpu())
        out = {"": torch.cat(total).mean().item()}
        if on:
            on, off = torch.cat(on), torch.cat(off)
            out |= {"_on_lesion": on.mean().item() if len(on) else None, "_off_lesion": off.mean().item() if len(off) else None}
        return out

    x, masks = _stack(data.images, sick), data.masks[sick]
    with eval_mode(model):
        res = {"healthy": scores(_stack(data.images, well))[""]}
        sets = {"inputs": (x, False), "outputs": (x, True)}
        if data.has_ground_truth:
            sets["truth"] = (_stack(data.healthy, sick), False)
        for name, (images, translate) in sets.items():
            res |= {name + k: v for k, v in scores(images, masks, translate).items()}
    gap = res["healthy"] - res["inputs"]
    for key, name in (("removal_share", "truth"), ("output_share", "outputs")):
        res[key] = (res[name] - res["inputs"]) / gap if name in res and abs(gap) > 1e-6 else None
    return res


def manifest_metrics(model, data, device="cpu") -> dict:
    """What a manifest stores as ``metrics``: :func:`~pseudohealthy_lib.evaluate.evaluate` on the
    test split of ``data`` (translators judged by the zoo's judge of their phantom's lesion,
    :func:`~pseudohealthy_lib.zoo.judge_name`, when it is there), as JSON, without the per-metric
    uncertainty; a translator that still has its trained critic adds what the critic makes of
    the inputs, the outputs and the truth (:func:`critic_scores`)."""
    name = zoo.judge_name(model.cfg.lesion, model.cfg.modality) if getattr(model, "pseudo_healthy", False) else None
    judge = zoo.load_pretrained(name, device) if name in zoo.available() else None
    res = to_json(evaluate(model, data, "test", segmentor=judge))
    res.pop("uncertainty", None)
    if getattr(model, "critic", None) is not None and getattr(model, "pseudo_healthy", False):
        res["critic"] = critic_scores(model, data, "test")      # only a training run still has its critic
    return res


def metrics_table(models: dict[str, str], columns=None, extra_rows: dict | None = None):
    """A pandas table of the test metrics recorded in zoo manifests (written by ``train`` or
    ``zoo --reevaluate`` through :func:`evaluate`). ``models`` maps zoo name -> row label;
    ``extra_rows`` (label -> metrics) come first. Missing zoo models are an error."""
    missing = [n for n in models if n not in zoo.available()]
    if missing:
        raise FileNotFoundError(f"not in the zoo ({zoo.zoo_dir()}): {', '.join(missing)}; "
                                "train them with `python -m pseudohealthy_lib zoo --train NAME ...`")
    rows = dict(extra_rows or {}) | {label: zoo.manifest(n)["metrics"] for n, label in models.items()}
    return results_table(rows, columns)


#: What a pseudo-healthy translator must reach on a phantom to be said to do its job (the book's
#: floors): metric -> (the floor in words, test of (value, doing nothing's value)).
FLOORS = {
    "psnr_lesion": ("lesion PSNR at least 4 dB above doing nothing's", lambda v, n: v >= n + 4),
    "ssim_lesion": ("lesion SSIM no lower than doing nothing's", lambda v, n: v >= n),
    "psnr_tissue": ("healthy-tissue PSNR at least 30 dB", lambda v, n: v >= 30),
    "dice_max": ("⌈Dice⌉ of the difference map at least 0.75", lambda v, n: v >= 0.75),
    "healthiness": ("healthiness at least 0.80", lambda v, n: v >= 0.80),
}
#: The floors of PHS-GAN's chapter, the paper's two scores and the lesion against the phantom's truth.
PHSGAN_FLOORS = {
    "identity": ("identity at least 0.95", lambda v, n: v >= 0.95),
    "healthiness": ("healthiness at least 0.85", lambda v, n: v >= 0.85),
    "psnr_lesion": ("lesion PSNR at least 6 dB above doing nothing's", lambda v, n: v >= n + 6),
}
#: Each set of floors by the name ``scripts/check_floors.py --floors`` knows it by.
FLOOR_SETS = {"antgan": FLOORS, "phsgan": PHSGAN_FLOORS}


def check_floors(result: dict, nothing: dict | None = None, floors: dict | None = None):
    """A pandas table: each floor of ``floors`` (default :data:`~pseudohealthy_lib.evaluate.FLOORS`; see
    :data:`~pseudohealthy_lib.evaluate.FLOOR_SETS`)
    with the model's value, doing nothing's and whether the floor is met. ``nothing`` defaults
    to ``result["references"]["do nothing"]``."""
    import pandas as pd

    nothing = nothing if nothing is not None else result["references"]["do nothing"]
    rows = {key: {"floor": text, "value": result[key], "do nothing": nothing.get(key),
                  "met": bool(ok(result[key], nothing.get(key, float("nan"))))}
            for key, (text, ok) in (FLOORS if floors is None else floors).items()}
    return pd.DataFrame(rows).T.astype({"value": float, "do nothing": float, "met": bool})


def recipe_trials(method: str = "antgan", scores=("psnr_lesion", "ssim_lesion", "psnr_tissue", "dice_max", "healthiness"),
                  modality: str = "flair", lesion: str = "glioma"):
    """The recorded trials of a teaching-recipe search (``pseudohealthy_lib/records/METHOD.jsonl``, written by
    ``scripts/recipe_search.py``) as a pandas table: one row per trial, the settings that differ
    between trials, the minutes of training and the ``scores`` on the selection phantom. Reference
    rows (doing nothing, inpainting) come first, each from its latest recording. Only the trials and
    references scored on ``modality``'s selection phantom with ``lesion`` (a record without them is
    FLAIR's, of the glioma phantom): scores on different contrasts or phantoms are not comparable."""
    import json

    import pandas as pd

    from .config import RECORDS_DIR
    from .engine import TrainConfig
    from .methods import get_method

    path = RECORDS_DIR / f"{method}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no recorded recipe search for {method}")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("modality", "flair") == modality and (r.get("lesion") or "glioma") == lesion]
    refs = list({r["name"]: r for r in rows if r["name"].startswith("reference")}.values())   # a re-run replaces
    trials = [r for r in rows if not r["name"].startswith("reference")]
    resolve = get_method(method).resolve_options      # options a trial did not set had their values of its version
    # a trial records seed, ema and decay_from only where they differ from TrainConfig's defaults
    flat = [{"batch_size": r["batch_size"], "lr": r["lr"], "size": r["size"],
             **{k: r.get(k, getattr(TrainConfig, k)) for k in ("seed", "ema", "decay_from")},
             **resolve(r["options"], r.get("version", 1))} for r in trials]
    varying = [k for k in flat[0] if len({json.dumps(f.get(k)) for f in flat}) > 1] if flat else []
    table = [{"trial": r["name"].removeprefix("reference: "), **{k: "" for k in varying}, "steps": None,
              "minutes": None, **{k: r.get(k) for k in scores}} for r in refs]
    table += [{"trial": r["name"], **{k: f.get(k) for k in varying}, "steps": r["steps"],
               "minutes": round(r["train_seconds"] / 60, 1), **{k: r.get(k) for k in scores}}
              for r, f in zip(trials, flat)]
    return pd.DataFrame(table).set_index("trial")


def judge_caption(result: dict) -> str:
    """The line printed beside every healthiness figure: the judge's quality and the
    healthiness of doing nothing, and how identity was computed."""
    j = result.get("judge")
    parts = []
    if j:
        parts.append(f"judge f_pre ({j.get('name') or 'segmentor'}) on these slices: Dice {j['dice']:.3f}, "
                     f"false alarms on {100 * j['false_alarm_rate']:.1f} % of lesion-free slices, "
                     f"misses {100 * j['missed']:.1f} % of lesion pixels; healthiness of doing nothing "
                     f"{result['healthiness_input']:.3f}")
    if "notes" in result:
        parts.append(result["notes"]["identity"])
    return "\n".join(parts)


def to_json(res) -> dict:
    """``res`` with NumPy values made plain (for ``json.dumps``); per-slice values left out."""
    if isinstance(res, dict):
        return {k: to_json(v) for k, v in res.items() if not k.startswith("_")}
    if isinstance(res, (list, tuple)):
        return [to_json(v) for v in res]
    if isinstance(res, (np.floating, float)):
        return None if np.isnan(res) else float(res)           # inf stays (json.dumps writes it as Infinity)
    if isinstance(res, np.integer):
        return int(res)
    return res
