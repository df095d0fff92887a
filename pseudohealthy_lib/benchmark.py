"""The book's benchmark: every method on held-out phantoms whose healthy truth is known.

Three test sets, generated with a seed that no training run, recipe trial, test or floor check
uses (:data:`SEED`), every slice of every subject scored::

    glioma   20 brain phantom subjects, FLAIR, BraTS-like gliomas       judge: segmentor-phantom
    stroke   20 brain phantom subjects, FLAIR, ISLES-like strokes       judge: segmentor-stroke
    liver    10 liver CT phantom cases, soft-tissue window, tumours    judge: segmentor-liver

:func:`benchmark` evaluates translators (zoo names, run folders, checkpoints, methods or plain
functions from a batch of slices to pseudo-healthy slices, as :func:`~pseudohealthy_lib.evaluate.evaluate`
accepts) on one test set and returns one table: every metric of the evaluation chapter, as the
mean over seeds where a recipe was trained several times (with the standard deviation over seeds),
the reference rows, parameters, training minutes (from the manifests) and inference speed.
:func:`write_leaderboard` stores such a table as JSON with the library version and commit, so
that results can be compared across versions.
"""
from __future__ import annotations

import json
import time

import numpy as np

from .config import fast_mode
from .evaluate import compute_references, evaluate
from .utils import OptionError, atomic_path
from .zoo import load_model

SEED = 9001                                     #: the benchmark phantoms' seed (used nowhere else)
SETS = {"glioma": {"lesion": "glioma", "subjects": 20}, "stroke": {"lesion": "stroke", "subjects": 20},
        "liver": {"lesion": "liver", "subjects": 10}}
#: the columns of a benchmark table, best first where a direction exists
METRICS = ("identity", "healthiness", "psnr_lesion", "ssim_lesion", "bias_lesion", "psnr_tissue",
           "change_healthy", "auprc", "dice_max")


def benchmark_data(name: str):
    """The prepared test set ``name`` (``'glioma'``, ``'stroke'`` or ``'liver'``; 2 subjects in fast mode)."""
    from .data import default, load_prepared

    if name not in SETS:
        raise OptionError(f"unknown benchmark set {name!r}; choose from {', '.join(SETS)}")
    s = SETS[name]
    return load_prepared(default.phantom_dataset(2 if fast_mode() else s["subjects"], s["lesion"], seed=SEED))


def n_parameters(model) -> int | None:
    """Parameters of the networks a model needs at inference (its exported ones); None for a plain function."""
    nets = getattr(model, "nets", None)
    if nets is None:
        return None
    names = model.exported() if hasattr(model, "exported") else list(nets)
    return int(sum(p.numel() for k in names for p in nets[k].parameters()))


def benchmark(models: dict, name: str = "glioma", judge=None, references: bool = True, data=None):
    """One table (pandas) of ``models`` (label -> a model or a list of the seeds of one recipe)
    on benchmark set ``name`` (or on ``data``), judged by ``judge`` (default: the zoo's judge of
    the set's lesion). Each metric of :data:`METRICS` is the mean over seeds, ``<metric> sd`` its
    standard deviation over seeds (NaN for one seed); ``params`` (millions), ``train minutes``
    (from the zoo manifest, where there is one) and ``slices/s`` (this machine) follow. With
    ``references`` the reference rows (doing nothing, the oracle, inpainting given the true mask)
    come first."""
    import pandas as pd

    from . import zoo

    data = benchmark_data(name) if data is None else data
    judge = load_model(judge or zoo.judge_name(SETS.get(name, {"lesion": "glioma"})["lesion"]))
    rows = {}
    if references:
        refs = compute_references(data, "all", judge)
        for label in ("do nothing", "oracle", "inpainting"):
            if label in refs:
                rows[f"({label})"] = {k: refs[label].get(k, np.nan) for k in METRICS}
    for label, seeds in models.items():
        seeds = seeds if isinstance(seeds, (list, tuple)) else [seeds]
        loaded = [load_model(m) for m in seeds]
        res = [evaluate(m, data, "all", segmentor=judge) for m in loaded]
        row = {}
        for k in METRICS:
            vals = np.array([np.nan if r.get(k) is None else r[k] for r in res], float)
            row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            row[f"{k} sd"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else np.nan
        params = n_parameters(loaded[0])
        manifest = getattr(loaded[0], "manifest", None) or {}
        row.update({"seeds": len(seeds), "params (M)": params / 1e6 if params else np.nan,
                    "train minutes": manifest.get("wall_seconds", np.nan) / 60 if manifest else np.nan,
                    "slices/s": float(np.mean([r["slices_per_s"] for r in res]))})
        rows[label] = row
    return pd.DataFrame(rows).T


def write_leaderboard(table, path, name: str) -> dict:
    """Write a benchmark ``table`` for set ``name`` to ``path`` as JSON (atomically): the rows, the
    library version and commit, the date, and the set's seed and size."""
    from . import __version__
    from .engine import git_commit, hardware

    rows = {label: {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()}
            for label, row in table.to_dict(orient="index").items()}
    board = {"set": name, "phantom": {"seed": SEED, **SETS.get(name, {})}, "version": __version__,
             "commit": git_commit(), "hardware": hardware(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(board, indent=1))
    return board
