"""ANT-GAN's downstream studies (Sun et al., Sec. IV-C and V-B): does a pseudo-healthy image help?

Three studies, each comparing *arms* that train the same network on different inputs or data:

===================  =====================================================  ============================
study                arms                                                   repeats
===================  =====================================================  ============================
``segmentation``     Plain UNet (x, x) / ANT-UNet (x, G_A2N(x)), Table V    5 folds, split by patient
``classification``   Plain VGG (x, x) / ANT-VGG (x, G_A2N(x)), Table VI     5 folds, split by patient
``augmentation``     AlexNet on dataset A / on dataset B, Table VII         5 draws of A
===================  =====================================================  ============================

Every run is an ordinary ``train`` command (:data:`STUDIES` holds them; the augmentation study
passes its small datasets in memory, :func:`augmented_sets`), scored on its fold's held-out
patients and appended to ``records/downstream.jsonl`` with its manifest: command, config, steps,
training time, hardware, commit and scores. :func:`run_study` skips the runs already recorded
with the same config (a study resumes), :func:`study_table` reads them back.

The studies use a phantom of their own (``--data-seed 1``): ANT-GAN (``antgan``, the guide) was
trained on the book's phantom (seed 0) and has seen none of these patients, as a model trained
once and then used on new data would be.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics as M
from .config import RECORDS_DIR, cache_dir, runs_dir
from .data import preprocess as pp
from .engine import Trainer, git_commit, hardware
from .evaluate import _run, evaluate
from .methods import get_method
from .presets import add_train_arguments, train_config
from .utils import OptionError, append_records

RECORDS = RECORDS_DIR / "downstream.jsonl"
GUIDE = "antgan"                                    #: the pseudo-healthy translator the studies use
REGIONS = ("wt", "tc", "et")                        #: BraTS' whole tumour, tumour core, enhancing tumour
DATA = "--subjects 40 --data-seed 1"

#: study -> base ``train`` arguments, the arms (label -> extra arguments) and the repeats
#: (folds, or draws of dataset A for the augmentation study)
STUDIES = {
    "segmentation": {"base": f"segmentor --preset cpu --steps 1600 {DATA} --folds 5 --set regions={','.join(REGIONS)}",
                     "arms": {"Plain UNet": "--set guide=copy", "ANT-UNet": f"--set guide={GUIDE}"}, "repeats": 5},
    "classification": {"base": f"classifier --preset cpu --steps 600 --batch-size 16 --lr 1e-4 {DATA} --folds 5 "
                                "--set width=8 --set hidden=256",
                       "arms": {"Plain VGG": "--set guide=copy", "ANT-VGG": f"--set guide={GUIDE}"}, "repeats": 5},
    "augmentation": {"base": f"classifier --preset cpu --steps 400 --batch-size 16 --lr 1e-4 {DATA} --set arch=alexnet",
                     "arms": {"dataset A": "", "dataset B": ""}, "repeats": 5},
}
AUGMENT_N = 50                                      #: lesion and healthy slices in dataset A (the paper's 50 + 50)


def study_config(study: str, arm: str, repeat: int, **changes):
    """The :class:`~pseudohealthy_lib.engine.TrainConfig` and ``train`` command of one run."""
    if study not in STUDIES:
        raise OptionError(f"unknown study {study!r}; choose from {', '.join(STUDIES)}")
    s = STUDIES[study]
    if arm not in s["arms"]:
        raise OptionError(f"study {study} has no arm {arm!r}; its arms are {', '.join(s['arms'])}")
    folds = " --fold %d" % repeat if "--folds" in s["base"] else f" --seed {repeat}"
    command = f"{s['base']} {s['arms'][arm]}{folds}".split()
    p = argparse.ArgumentParser(prog=f"study {study}")
    add_train_arguments(p)
    cfg = train_config(p.parse_args(command))
    return (dataclasses.replace(cfg, **changes) if changes else cfg), " ".join(command)


def study_data():
    """The studies' phantom (seed 1; 40 patients, 4 in fast mode), prepared and cached."""
    from .config import fast_mode
    from .data import default, load_prepared

    return load_prepared(default.phantom_dataset(4 if fast_mode() else 40, seed=1))


# ---------------------------------------------------------------------------------------------
# scores


def difference_segmentation(scores, masks, labels, threshold: float = 0.1, thresholds=None) -> dict:
    """A score map (N, H, W) as a lesion segmentation (the paper's Fig. 9: ``|x - G_A2N(x)|``
    binarised at ``threshold``) and as a pixel-wise detector.

    Returns ``dice_slices``: the mean Dice of the binarised map over the lesion slices (label 1);
    ``thresholds`` and ``dice``: the Dice pooled over every slice's pixels at each threshold
    (lesion-free slices count: each pixel they flag is a false positive); ``precision``,
    ``recall`` and ``auprc``: the precision-recall curve of the pixel scores over all slices.
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    scores, truth, lesion = np.asarray(scores, np.float32), np.asarray(masks) > 0, np.asarray(labels) == 1
    thresholds = np.linspace(0.02, 0.5, 25) if thresholds is None else np.asarray(thresholds, float)
    flagged = scores > threshold
    dice_slices = [M.dice(flagged[i], truth[i]) for i in np.nonzero(lesion)[0]]
    pooled = [M.dice(scores > t, truth) for t in thresholds]
    step = max(1, scores.size // 2_000_000)             # the curve from at most ~2 million pixels
    prec, rec, _ = precision_recall_curve(truth.ravel()[::step], scores.ravel()[::step])
    return {"threshold": threshold, "dice_slices": float(np.mean(dice_slices)) if dice_slices else float("nan"),
            "thresholds": thresholds, "dice": np.array(pooled), "precision": prec, "recall": rec,
            "auprc": float(average_precision_score(truth.ravel(), scores.ravel()))}


@torch.no_grad()
def region_dice(model, data, split: str = "test", batch_size: int = 32) -> dict:
    """Dice of each region of a segmentor's ``regions`` option, per patient (the patient's slices
    of ``split`` pooled, as a volume's Dice), then averaged over patients: ``dice_wt``, ...,
    and ``by_subject`` (region -> subject -> Dice). A patient without the region, predicted or
    true, is left out of that region's mean."""
    from .data.layouts import region_mask

    idx = data.select(split)
    dev = next(model.nets.parameters()).device
    probs = []
    for s in range(0, len(idx), batch_size):
        x = pp.to_tanh_range(torch.from_numpy(data.images[idx[s:s + batch_size]].astype(np.float32))[:, None])
        probs.append(model.predict_regions(x.to(dev)).cpu().numpy())
    pred = np.concatenate(probs) > 0.5
    out, subjects = {"by_subject": {}}, data.subjects[idx]
    for c, region in enumerate(model.region_names):
        truth = region_mask(data.seg[idx], data.meta["layout"], region)
        per = {str(s): M.dice(pred[subjects == s, c], truth[subjects == s], empty=np.nan) for s in sorted(set(subjects))}
        out["by_subject"][region] = {s: v for s, v in per.items() if np.isfinite(v)}
        out[f"dice_{region}"] = float(np.mean(list(out["by_subject"][region].values())))
    return out


def classification_scores(model, data, split: str = "test") -> dict:
    """Precision, recall, F1, accuracy and ROC AUC of the lesion class on ``split``
    (:func:`~pseudohealthy_lib.evaluate.evaluate`)."""
    res = evaluate(model, data, split)
    return {k: res[k] for k in ("precision", "recall", "f1", "accuracy", "roc_auc")}


# ---------------------------------------------------------------------------------------------
# the augmentation study's data


@torch.no_grad()
def augmented_sets(data, translator, n: int = AUGMENT_N, seed: int = 0, batch_size: int = 32):
    """Datasets A and B of ANT-GAN's Table VII, from ``data``'s training patients.

    A: ``n`` lesion and ``n`` healthy slices drawn (with ``seed``) from the ``'train'`` split. B: A,
    plus ``translator``'s pseudo-abnormal images of A's healthy slices (direction ``'BA'``,
    G_N2A: labelled lesion) and its pseudo-healthy images of A's lesion slices (``'AB'``, G_A2N:
    labelled healthy). In both, every slice of the other patients keeps its split (``'val'`` or
    ``'test'``); the study scores the ``'test'`` patients.
    Synthetic slices have empty masks (no true mask exists) and keep their source's patient.
    """
    rng = np.random.default_rng(seed)
    pools = [data.select("train", label) for label in (1, 0)]
    if min(map(len, pools)) < n:
        raise OptionError(f"augmented_sets: the training split has {len(pools[0])} lesion and {len(pools[1])} healthy "
                          f"slices; dataset A needs {n} of each")
    lesion, healthy = (np.sort(rng.choice(p, n, replace=False)) for p in pools)
    test = np.nonzero(data.split != "train")[0]
    a = data.subset(np.concatenate([lesion, healthy, test]))
    dev = next(translator.parameters()).device

    def translate(idx, direction):                     # evaluate's batched runner: [0, 1] in and out
        fn = lambda t: translator.translate(t, direction)  # noqa: E731
        return _run(fn, data.images[idx].astype(np.float32), dev, batch_size)[0].astype(np.float16)

    synth = data.subset(np.concatenate([healthy, lesion]))
    images = np.concatenate([translate(healthy, "BA"), translate(lesion, "AB")])
    changes = {"images": images, "labels": np.repeat(np.array([1, 0], data.labels.dtype), n),
               "masks": np.zeros_like(synth.masks), "split": np.full(2 * n, "train", dtype=data.split.dtype)}
    if synth.seg is not None:
        changes["seg"] = np.zeros_like(synth.seg)
    if synth.healthy is not None:
        changes["healthy"] = images
    synth = dataclasses.replace(synth, **changes)
    arrays = {f.name: np.concatenate([getattr(a, f.name), getattr(synth, f.name)])
              for f in dataclasses.fields(a) if isinstance(getattr(a, f.name), np.ndarray)}
    return a, dataclasses.replace(a, **arrays)


# ---------------------------------------------------------------------------------------------
# running and reading a study


def recorded(study: str | None = None) -> list[dict]:
    """The records of ``study`` (all studies if None), oldest first."""
    if not RECORDS.is_file():
        return []
    rows = [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]
    return [r for r in rows if study is None or r["study"] == study]


def run_study(study: str, repeats: int | None = None, arms=None, record: bool = True, **changes) -> list[dict]:
    """Train and score every run of ``study`` not yet recorded (``repeats``: the first few folds
    or draws only; ``changes``: config fields to override, e.g. ``steps=20`` for a smoke run,
    which is then not recorded unless ``record``). Returns the new records."""
    s = STUDIES.get(study) or {}
    done = {(r["arm"], r["repeat"], json.dumps(r["config"], sort_keys=True)) for r in recorded(study)} if record else set()
    guide, new = None, []
    jobs = [(arm, k) for k in range(repeats or s.get("repeats", 0)) for arm in (arms or s.get("arms", ()))]
    for arm, k in tqdm(jobs, desc=f"study {study}"):
        cfg, command = study_config(study, arm, k, **changes)
        key = (arm, k, json.dumps(dataclasses.asdict(cfg), sort_keys=True))
        if key in done:
            continue
        data = None
        if study == "augmentation":
            from . import zoo
            from .data import default

            if guide is None:
                guide = zoo.load_pretrained(GUIDE)
            sets = augmented_sets(default.training_data(cfg, progress=False), guide, seed=k)
            data = sets[arm == "dataset B"]
        # recorded runs beside the zoo's runs; changed ones (smoke runs, exercises) in the cache
        out = (cache_dir() / "runs" if changes else runs_dir()) / f"study-{study}-{arm.replace(' ', '-')}-{k}"
        trainer = Trainer(cfg, out, method=get_method(cfg.method), data=data, progress=False)
        trainer.fit()
        model = trainer.method.eval()
        scores = region_dice(model, trainer.data) if study == "segmentation" else classification_scores(model, trainer.data)
        row = {"study": study, "arm": arm, "repeat": k, "command": f"python -m pseudohealthy_lib train {command}",
               "config": dataclasses.asdict(cfg), "steps": trainer.step, "train_seconds": round(trainer.wall, 1),
               "dtype": str(trainer.dtype), "hardware": hardware(), "git_commit": git_commit(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **scores}
        if record and not changes:
            append_records(RECORDS, row)
        new.append(row)
    return new


def claim_verdict(tests: dict, names: dict | None = None, over: str = "folds") -> str:
    """In words, what paired tests (``key -> paired_difference(...)``, second arm minus first) say
    about the claim "the second arm is better": which keys it holds for at the 5 % level, which
    it is reversed for, and which are undecided (with their wins and p). ``names`` maps keys to
    the words used (default the keys); ``over`` names the repeats ("folds", "draws")."""
    names = names or {k: k for k in tests}
    better = [names[k] for k, t in tests.items() if t["mean_difference"] > 0 and t["p"] < 0.05]
    worse = [names[k] for k, t in tests.items() if t["mean_difference"] < 0 and t["p"] < 0.05]
    unclear = [f"{names[k]} ({t['wins']} of {t['repeats']} {over} in its favour, p = {t['p']:.3f})"
               for k, t in tests.items() if t["p"] >= 0.05]
    listed = ", ".join(unclear[:-1]) + " and " + unclear[-1] if len(unclear) > 1 else "".join(unclear)
    rest = f"; for {listed} the difference is not significant at the 5 % level" if unclear else ""
    if better and not worse:
        return f"holds significantly (paired t-test over the {over}, p < 0.05) for {', '.join(better)}" + rest
    if worse and not better:
        return f"is reversed: the first arm is significantly better for {', '.join(worse)}" + rest
    if better:
        return f"holds for {', '.join(better)} but is reversed for {', '.join(worse)}" + rest
    return f"is not borne out: no difference is significant at the 5 % level ({listed})"


def study_table(study: str, keys=None, rows: list[dict] | None = None, paper: dict | None = None):
    """Mean and standard deviation over repeats of each arm's scores (a pandas table), from the
    records (or ``rows``); the latest record of each arm and repeat counts. ``paper`` (arm ->
    score -> value) adds the paper's numbers as a third column per score."""
    import pandas as pd

    latest = {(r["arm"], r["repeat"]): r for r in (rows if rows is not None else recorded(study))}
    keys = keys or ([f"dice_{r}" for r in REGIONS] if study == "segmentation" else ["precision", "recall", "f1"])
    table = {}
    for arm in dict.fromkeys(a for a, _ in latest):
        vals = pd.DataFrame([{k: r[k] for k in keys} for (a, _), r in sorted(latest.items()) if a == arm], dtype=float)
        table[arm] = {("repeats", ""): len(vals), **{(k, "mean"): vals[k].mean() for k in keys},
                      **{(k, "sd"): vals[k].std(ddof=1) for k in keys},
                      **{(k, "paper"): (paper or {}).get(arm, {}).get(k, np.nan) for k in keys if paper}}
    table = pd.DataFrame(table).T
    return table[[("repeats", "")] + [(k, c) for k in keys for c in ("mean", "sd", "paper") if (k, c) in table]]


def paired_difference(study: str, key: str, a: str, b: str, rows: list[dict] | None = None) -> dict:
    """``b - a`` on ``key``, paired by repeat (fold or draw): the mean difference, how many repeats
    ``b`` wins, and the two-sided paired t-test's p over the repeats (scipy)."""
    from scipy.stats import ttest_rel

    latest = {(r["arm"], r["repeat"]): r[key] for r in (rows if rows is not None else recorded(study))}
    reps = sorted(k for (arm, k) in latest if arm == a and (b, k) in latest)
    if len(reps) < 2:
        raise OptionError(f"paired_difference: {study} has {len(reps)} repeats with both {a!r} and {b!r}; need 2")
    va, vb = np.array([latest[(a, k)] for k in reps]), np.array([latest[(b, k)] for k in reps])
    p = float(ttest_rel(vb, va).pvalue) if np.any(vb != va) else 1.0
    return {"mean_difference": float((vb - va).mean()), "wins": int((vb > va).sum()), "repeats": len(reps), "p": p}
