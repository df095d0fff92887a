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


def benchmark(models: dict, name: str = "glioma", judge=None, references: bool = True, data=None,
              keep_outputs: bool = False, device: str = "cpu"):
    """One table (pandas) of ``models`` (label -> a model or a list of the seeds of one recipe)
    on benchmark set ``name`` (or on ``data``), judged by ``judge`` (default: the zoo's judge of
    the set's lesion). Each metric of :data:`METRICS` is the mean over seeds, ``<metric> sd`` its
    standard deviation over seeds (NaN for one seed); ``given the mask`` marks inpainters, which
    are told where the lesion is (their detection scores are NaN: their difference map only
    repeats the mask they were given); ``trained with`` names what a model's training saw beyond
    the slices and their labels (:meth:`~pseudohealthy_lib.methods.base.Method.trained_with`: lesion
    masks, a phantom's healthy twins; blank for none); ``params`` (millions), ``train minutes``
    (from the zoo manifest, where there is one) and ``slices/s`` (this machine) follow. With
    ``references`` the reference rows (doing nothing, the oracle, inpainting given the true mask,
    the intensity threshold as a detector) come first. ``keep_outputs`` returns ``(table, results)``
    instead, ``results[label]`` the list of each seed's :class:`~pseudohealthy_lib.evaluate.Result`
    with its outputs kept (for :func:`worst_cases` and :func:`pr_curves`). Models and judge run on
    ``device`` (e.g. ``'cuda'`` on Colab; ``slices/s`` is then that device's)."""
    import pandas as pd

    from . import zoo

    if data is None:
        data = benchmark_data(name)
    elif judge is None and name not in SETS:
        raise OptionError(f"benchmark: no judge given for data of set {name!r}, which has no default judge "
                          f"(the sets with one: {', '.join(SETS)})")
    judge = load_model(judge or zoo.judge_name(SETS[name]["lesion"]), device)
    rows, kept, cache = {}, {}, {}                 # the judge's work on the inputs, done once for all models
    if references:
        refs = compute_references(data, "all", judge)
        for label in ("do nothing", "oracle", "inpainting", "intensity threshold"):
            if label in refs:
                rows[f"({label})"] = {k: refs[label].get(k, np.nan) for k in METRICS}
    for label, seeds in models.items():
        seeds = seeds if isinstance(seeds, (list, tuple)) else [seeds]
        loaded = [load_model(m, device) for m in seeds]
        res = [evaluate(m, data, "all", segmentor=judge, keep_outputs=keep_outputs, judge_cache=cache) for m in loaded]
        kept[label] = res
        row = {}
        for k in METRICS:
            vals = np.array([np.nan if r.get(k) is None else r[k] for r in res], float)
            row[k] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
            row[f"{k} sd"] = float(np.nanstd(vals, ddof=1)) if np.isfinite(vals).sum() > 1 else np.nan
        if getattr(loaded[0], "needs_mask", False):    # told where the lesion is: its map detects nothing
            row["auprc"] = row["dice_max"] = row["auprc sd"] = row["dice_max sd"] = np.nan
        row["given the mask"] = bool(getattr(loaded[0], "needs_mask", False))
        row["trained with"] = ", ".join(loaded[0].trained_with()) if hasattr(loaded[0], "trained_with") else ""
        params = n_parameters(loaded[0])
        manifest = getattr(loaded[0], "manifest", None) or {}
        row.update({"seeds": len(seeds), "params (M)": params / 1e6 if params else np.nan,
                    "train minutes": manifest.get("wall_seconds", np.nan) / 60 if manifest else np.nan,
                    "slices/s": float(np.mean([np.nan if r["slices_per_s"] is None else r["slices_per_s"] for r in res]))})
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")        # a dtype per column (numbers, flags, text)
    return (table, kept) if keep_outputs else table


def worst_cases(result, n: int = 2, key: str = "psnr_lesion", higher_is_better: bool = True,
                min_area: int = 0, masks=None) -> np.ndarray:
    """Positions, in the order of the slices ``result`` was computed on (all of a benchmark set's,
    as :func:`benchmark` scores them), of the ``n`` slices with the worst per-slice ``key``
    (lowest, or highest with ``higher_is_better=False``): where a method fails, to be looked at,
    not only averaged. ``min_area`` (with the same slices' ``masks``) skips lesions of fewer pixels,
    whose few-pixel PSNR is noisy."""
    vals = np.asarray(result.per_slice[key], float)
    ok = np.isfinite(vals)
    if min_area:
        ok &= np.asarray(masks).reshape(len(vals), -1).sum(1) >= min_area
    ok = np.nonzero(ok)[0]
    order = np.argsort(vals[ok] if higher_is_better else -vals[ok], kind="stable")
    return ok[order[:n]]


def pr_curves(results: dict, data) -> dict:
    """Each method's difference map ``|x - G(x)|`` as a pixel-wise lesion detector over the tissue
    of ``data`` (all slices): ``{label: metrics.detection(..., curve=True)}`` from the first seed's
    kept outputs (``benchmark(..., keep_outputs=True)``), plus the intensity itself as a detector
    under ``'(intensity threshold)'``."""
    from . import metrics as M

    x = data.images.astype(np.float32)
    tissue = M.tissue_mask(x)
    curves = {"(intensity threshold)": M.intensity_detection(x, data.masks, tissue, curve=True)}   # as the reference row
    for label, res in results.items():
        if res[0].outputs is None:
            raise OptionError(f"pr_curves: no outputs kept for {label!r}; run benchmark(..., keep_outputs=True)")
        curves[label] = M.detection(np.abs(x - res[0].outputs.astype(np.float32)), data.masks, tissue, curve=True)
    return curves


def write_leaderboard(table, path, name: str) -> dict:
    """Write a benchmark ``table`` for set ``name`` to ``path`` as JSON (atomically): the rows, the
    library version and commit, the date, and the set's seed and size."""
    from . import __version__
    from .engine import git_commit, hardware

    def plain(v):                                     # numpy scalars as Python ones; no NaN or Infinity in JSON
        v = v.item() if isinstance(v, np.generic) else v
        return None if isinstance(v, float) and not np.isfinite(v) else v

    rows = {label: {k: plain(v) for k, v in row.items()} for label, row in table.to_dict(orient="index").items()}
    board = {"set": name, "phantom": {"seed": SEED, **SETS.get(name, {})}, "version": __version__,
             "commit": git_commit(), "hardware": hardware(), "date": time.strftime("%Y-%m-%d"), "rows": rows}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(board, indent=1))
    return board


def _methods(table):
    """The rows of a benchmark table that are methods, not references (labels in brackets)."""
    return table[[not str(k).startswith("(") for k in table.index]]


def guide(table, healthy_enough: float = 0.85, gain_db: float = 4.0, speed_tie: float = 0.2) -> dict:
    """The chapter's guide, computed from a benchmark ``table``: ``{situation: (label, evidence)}``.

    ``fidelity``: the highest lesion PSNR of the methods *not* given the mask; ``given``: the
    same among those given it; ``identity`` and ``speed``: the highest identity and the most slices
    per second among the *useful* methods not given the mask, those whose healthiness reaches
    ``healthy_enough`` and whose lesion PSNR is at least ``gain_db`` above doing nothing's (doing
    nothing has the best identity, and a fast method the judge sees through is no use).
    A situation no method qualifies for says so. Reference rows (labels in brackets) never compete.
    Timings vary from run to run, so the speed pick names every other useful method within
    ``speed_tie`` (a fraction) of the fastest.
    """
    rows = _methods(table)
    told = (rows["given the mask"] == True) if "given the mask" in rows else np.zeros(len(rows), bool)   # noqa: E712  NaN: not told
    if "(do nothing)" not in table.index:
        raise OptionError("guide: the table has no '(do nothing)' row to measure gains against (benchmark(..., references=True))")
    nothing = float(table.loc["(do nothing)", "psnr_lesion"])

    def best(sub, key, text, fmt, none, tie: float = 0.0):
        sub = sub[~np.isnan(sub[key].astype(float))]
        if not len(sub):
            return (none, "-")
        v = sub[key].astype(float)
        k = v.idxmax()
        evidence = text.format(fmt.format(v[k]))
        close = [o for o in v.index if o != k and v[o] >= (1 - tie) * v[k]] if tie else []
        if close:                                     # a lead smaller than the measurement's own noise
            evidence += f"; within {tie:.0%} of it, as good given the noise: " + ", ".join(
                f"{o} ({fmt.format(v[o])})" for o in close)
        return (k, evidence)

    psnr = "lesion PSNR {} dB"
    useful = ~told & (rows["healthiness"].astype(float) >= healthy_enough) & (rows["psnr_lesion"].astype(float) >= nothing + gain_db)
    none = f"no method reaches healthiness {healthy_enough} and gains {gain_db:g} dB"
    return {
        "fidelity": best(rows[~told], "psnr_lesion", psnr, "{:.2f}", "no method without the mask"),
        "given": best(rows[told], "psnr_lesion", psnr, "{:.2f}", "no method given the mask"),
        "identity": best(rows[useful], "identity", "identity {}", "{:.3f}", none),
        "speed": best(rows[useful], "slices/s", "{} slices per second", "{:.0f}", none, tie=speed_tie),
    }


def formatted(table, columns, digits: int = 3):
    """``table``'s ``columns`` as strings for display: ``mean ± sd`` where the ``<metric> sd`` column
    has a value (several seeds), the mean alone otherwise, blank where there is none; text as it is."""
    import pandas as pd

    def cell(row, c):
        if isinstance(row.get(c), str):
            return row[c]
        v, sd = float(row.get(c, np.nan)), float(row.get(f"{c} sd", np.nan))
        if np.isnan(v):
            return ""
        return f"{v:.{digits}f}" + (f" ± {sd:.{digits}f}" if np.isfinite(sd) else "")

    return pd.DataFrame({c: [cell(row, c) for _, row in table.iterrows()] for c in columns}, index=table.index)


def plot_tradeoff(table, x: str, y: str, ax=None, logx: bool = False, legend: bool = True):
    """One point per row of a benchmark ``table`` at (``x``, ``y``), a colour and a legend entry
    each, with error bars from the ``<metric> sd`` columns where there are several seeds;
    reference rows as open grey markers."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    markers = "osD^vP*X"
    for n, (label, row) in enumerate(table.iterrows()):
        px, py = float(row.get(x, np.nan)), float(row.get(y, np.nan))
        if not (np.isfinite(px) and np.isfinite(py)):
            continue
        ref = str(label).startswith("(")
        ax.errorbar(px, py, xerr=_sd(row, x), yerr=_sd(row, y), fmt=markers[n % len(markers)], ms=7, capsize=2,
                    mfc="none" if ref else None, color="grey" if ref else None, label=str(label), alpha=0.85)
    ax.set(xlabel=x, ylabel=y)
    if legend:
        ax.legend(fontsize=7)
    if logx:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    return ax


def _sd(row, key):
    v = float(row.get(f"{key} sd", np.nan))
    return v if np.isfinite(v) else None
