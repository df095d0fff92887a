"""Interactive explorers for the ANT-GAN chapters, built so that the controls respond at once,
and the helpers that run a model on NumPy slices for the chapters' figures.

* :class:`LambdaExplorer`: the lambda_AM sensitivity study (ANT-GAN Fig. 12). One shipped model
  per lambda_AM; their outputs on a few test slices and every picture the widget can show are
  computed when the explorer is built, so a slider move only swaps pre-encoded PNG images.
* :class:`TSNEExplorer`: the manifold picture (ANT-GAN Fig. 2). Healthy and lesion test slices and
  their translations G_A2N(x_a), G_N2A(x_n) are embedded with t-SNE (van der Maaten & Hinton) in
  a chosen feature space; every embedding is cached on disk, keyed by its settings.

Both have ``figure()`` (a static matplotlib figure of one state, for the rendered book) and
``widget()`` (ipywidgets controls). Images are handled in [0, 1], shapes (N, H, W).
"""
from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

from .config import cache_dir
from .data import preprocess as pp


# --------------------------------------------------------------------------- shared helpers
@torch.no_grad()
def translate_slices(model, images: np.ndarray, direction: str = "AB", batch_size: int = 32) -> np.ndarray:
    """``model.translate`` on (N, H, W) images in [0, 1]; returns (N, H, W) float32 in [0, 1]."""
    dev = next(model.parameters()).device
    x = pp.to_tanh_range(torch.from_numpy(np.asarray(images, np.float32))[:, None])
    out = [model.translate(x[i:i + batch_size].to(dev), direction).float().cpu() for i in range(0, len(x), batch_size)]
    return pp.from_tanh_range(torch.cat(out)).clamp(0, 1)[:, 0].numpy()


@torch.no_grad()
def rebuild_slices(model, inputs: np.ndarray, healthy: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Put the lesions of ``inputs`` back into ``healthy`` images with the model's way back
    (:func:`~pseudohealthy_lib.evaluate.way_back`: CycleGAN's G_BA, PHS-GAN's R with S's map).
    Both (N, H, W) in [0, 1]; returns (N, H, W) float32 in [0, 1]."""
    from .evaluate import way_back

    back, dev = way_back(model), next(model.parameters()).device
    x, h = (pp.to_tanh_range(torch.from_numpy(np.asarray(a, np.float32))[:, None]) for a in (inputs, healthy))
    out = [back(x[i:i + batch_size].to(dev), h[i:i + batch_size].to(dev)).float().cpu() for i in range(0, len(x), batch_size)]
    return pp.from_tanh_range(torch.cat(out)).clamp(0, 1)[:, 0].numpy()


@torch.no_grad()
def segment_slices(model, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """A factorising model's pathology map ``model.segment`` (PHS-GAN's S) on (N, H, W) images in
    [0, 1]; returns probabilities (N, H, W) float32."""
    dev = next(model.parameters()).device
    x = pp.to_tanh_range(torch.from_numpy(np.asarray(images, np.float32))[:, None])
    return torch.cat([model.segment(x[i:i + batch_size].to(dev)).float().cpu()
                      for i in range(0, len(x), batch_size)])[:, 0].numpy()


def term_gradients(method, batch: dict, nets=None) -> dict[str, dict[str, float]]:
    """Which loss term moves which network: for each weighted term of
    ``method.generator_losses(batch, method(batch))``, the norm of its gradient with respect to
    the parameters of each of ``nets`` (default: every network the terms train, that is all but
    the critics). A term whose gradient on a network is tens of times the others' decides where
    that network goes (Adam follows the sum). Returns ``{term: {net: norm}}``; the critics' and
    networks' own gradients are left as they were."""
    params = {k: [p for p in method.nets[k].parameters() if p.requires_grad]
              for k in (nets or [k for k in method.nets if not k.startswith("D")])}
    terms = method.generator_losses(batch, method(batch))
    out = {}
    for name, value in terms.items():
        out[name] = {}
        for k, ps in params.items():
            grads = torch.autograd.grad(value, ps, retain_graph=True, allow_unused=True)
            out[name][k] = float(sum((g.float() ** 2).sum() for g in grads if g is not None) ** 0.5)
    return out


def _rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(np.clip(gray, 0, 1)[..., None], 3, -1)


def panel(image: np.ndarray, output: np.ndarray, mask: np.ndarray, diff_max: float = 0.5) -> np.ndarray:
    """One RGB row (H, 4W + 3 gaps, 3): the input, the output, the absolute difference
    ``|output - input|`` and the lesion mask over the input."""
    cmap = plt.get_cmap("inferno")
    diff = cmap(np.clip(np.abs(output - image) / diff_max, 0, 1))[..., :3]
    over = _rgb(image)
    over[mask > 0.5] = 0.55 * over[mask > 0.5] + 0.45 * np.array([1.0, 0.2, 0.2])
    gap = np.ones((image.shape[0], 3, 3))
    return np.concatenate([_rgb(image), gap, _rgb(output), gap, diff, gap, over], 1)


def png_bytes(rgb: np.ndarray, scale: int = 2) -> bytes:
    """PNG encoding of an RGB float image in [0, 1], enlarged ``scale`` times (nearest)."""
    from PIL import Image

    a = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    a = a.repeat(scale, 0).repeat(scale, 1)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def fig_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def spread_cases(data, split: str = "test", n: int = 8) -> np.ndarray:
    """Indices into ``data`` of ``n`` pathological slices of ``split``, from the largest lesion
    to small ones (evenly spaced in the ranking by lesion area), a slice per subject at most."""
    idx = data.select(split, 1)
    area = data.masks[idx].reshape(len(idx), -1).sum(1)
    order = idx[np.argsort(-area, kind="stable")]
    seen, picks = set(), []
    for i in order:                                     # one slice per subject: the largest lesion
        if data.subjects[i] not in seen:
            seen.add(data.subjects[i])
            picks.append(i)
    picks = np.array(picks)
    take = np.unique(np.linspace(0, len(picks) - 1, min(n, len(picks))).round().astype(int))
    return picks[take]


# --------------------------------------------------------------------------- lambda_AM (Fig. 12)
LAMBDA_METRICS = {
    "psnr_tissue": "PSNR of healthy tissue (dB)",
    "psnr_lesion": "PSNR in the lesion vs truth (dB)",
    "ssim_lesion": "SSIM in the lesion vs truth",
    "identity": "identity (MS-SSIM)",
    "healthiness": "healthiness",
    "dice_max": "⌈Dice⌉ of the difference map",
}


class LambdaExplorer:
    """ANT-GAN's lambda_AM sensitivity (Fig. 12) from one trained model per lambda_AM.

    ``models`` maps lambda_AM -> a model with ``translate`` (or a zoo name); ``metrics`` maps
    lambda_AM -> the model's test metrics (for zoo names: the manifest's, written by ``train``).
    Any other setting can take lambda_AM's place: ``label`` names it, ``output`` names the
    model's output in the titles, and ``log=False`` draws the curve on a linear axis (the noise
    level of the diffusion chapter, one model sampled at several levels).
    """

    def __init__(self, models: dict, data, metrics: dict | None = None, split: str = "test", n_cases: int = 8,
                 label: str = "λ_AM", output: str = "G_A2N(x)", log: bool = True):
        from . import zoo

        self.label, self.output, self.log = label, output, log
        self.lams = sorted(models)
        self.data = data
        self.cases = spread_cases(data, split, n_cases)
        self.x = data.images[self.cases].astype(np.float32)
        self.m = data.masks[self.cases].astype(np.float32)
        self.metrics = {}
        self.out = {}
        for lam in self.lams:
            model = models[lam]
            if isinstance(model, str):
                self.metrics[lam] = zoo.manifest(model)["metrics"]
                model = zoo.load_pretrained(model)
            self.out[lam] = translate_slices(model, self.x)
        if metrics:
            self.metrics.update(metrics)
        self.metric_names = [k for k in LAMBDA_METRICS if all(self.metrics.get(l, {}).get(k) is not None for l in self.lams)]
        # everything a control can show, encoded once
        self._panels = {(lam, c): png_bytes(panel(self.x[c], self.out[lam][c], self.m[c]))
                        for lam in self.lams for c in range(len(self.cases))}
        self._curves = {(k, lam): fig_png(self.curve_figure(k, lam)) for k in self.metric_names for lam in self.lams}

    def curve_figure(self, metric: str, lam=None, ax=None):
        """The metric against lambda_AM (log axis; 0 drawn at the left edge), ``lam`` marked."""
        if ax is None:
            fig, ax = plt.subplots(figsize=(4.2, 2.6))
        pos = self._positions()
        ys = [self.metrics[l][metric] for l in self.lams]
        ax.plot([pos[l] for l in self.lams], ys, "o-", color="tab:blue")
        if lam is not None:
            ax.plot(pos[lam], self.metrics[lam][metric], "o", ms=12, mfc="none", mec="tab:red", mew=2)
        ax.set_xticks([pos[l] for l in self.lams], [f"{l:g}" for l in self.lams])
        ax.set(xlabel=self.label, ylabel=LAMBDA_METRICS[metric])
        ax.grid(alpha=0.3)
        ax.figure.tight_layout()
        return ax.figure

    def _positions(self) -> dict:
        """x positions: log10(lambda), with lambda = 0 one decade left of the smallest positive one
        (or lambda itself, on a linear axis)."""
        if not self.log:
            return {l: float(l) for l in self.lams}
        pos_l = [l for l in self.lams if l > 0]
        lo = np.log10(min(pos_l)) - 1 if pos_l else 0.0
        return {l: (np.log10(l) if l > 0 else lo) for l in self.lams}

    def figure(self, lam=None, case: int = 0, metric: str = "psnr_tissue"):
        """Static figure of one state: the case's four panels and the metric curve."""
        lam = self.lams[len(self.lams) // 2] if lam is None else lam
        fig = plt.figure(figsize=(12, 2.9))
        gs = fig.add_gridspec(1, 5, width_ratios=[1, 1, 1, 1, 1.6])
        titles = ["input x", f"{self.output}, {self.label}={lam:g}", f"|{self.output} - x|", "lesion mask"]
        pics = [self.x[case], self.out[lam][case], np.abs(self.out[lam][case] - self.x[case]), None]
        for j in range(4):
            ax = fig.add_subplot(gs[j])
            if j == 3:
                ax.imshow(panel(self.x[case], self.x[case], self.m[case])[:, -self.x.shape[2]:])
            else:
                ax.imshow(pics[j], cmap="inferno" if j == 2 else "gray", vmin=0, vmax=0.5 if j == 2 else 1)
            ax.set_title(titles[j], fontsize=9)
            ax.axis("off")
        self.curve_figure(metric, lam, ax=fig.add_subplot(gs[4]))
        fig.tight_layout()
        return fig

    def widget(self, lam=None, case: int = 0, metric: str = "psnr_tissue"):
        """ipywidgets: lambda slider, case picker, metric picker; images are looked up, not drawn.
        The controls start at ``lam``, ``case`` and ``metric`` (the defaults of :meth:`figure`, so
        that a static figure and the live widget open on the same view)."""
        import ipywidgets as W

        lam = self.lams[len(self.lams) // 2] if lam is None else lam
        if lam not in self.lams or metric not in self.metric_names or not 0 <= case < len(self.cases):
            raise ValueError(f"no view lam={lam!r}, case={case!r}, metric={metric!r}: lambdas {self.lams}, "
                             f"cases 0-{len(self.cases) - 1}, metrics {self.metric_names}")
        lam_w = W.SelectionSlider(options=[(f"{l:g}", l) for l in self.lams], value=lam,
                                  description=self.label, continuous_update=True)
        case_w = W.Dropdown(options=[(f"case {c + 1}: {self.data.subjects[i]} slice {self.data.slice_index[i]}, "
                                      f"lesion {int(self.m[c].sum())} px", c) for c, i in enumerate(self.cases)],
                            value=case, description="test case", layout=W.Layout(width="420px"))
        met_w = W.Dropdown(options=[(LAMBDA_METRICS[k], k) for k in self.metric_names], value=metric,
                           description="metric", layout=W.Layout(width="360px"))
        img = W.Image(format="png", layout=W.Layout(width="780px"))
        curve = W.Image(format="png", layout=W.Layout(width="380px"))
        caption = W.HTML("input &nbsp;|&nbsp; output &nbsp;|&nbsp; difference &nbsp;|&nbsp; mask")
        self._controls = (lam_w, case_w, met_w, img, curve)

        def update(_=None):
            img.value = self._panels[(lam_w.value, case_w.value)]
            curve.value = self._curves[(met_w.value, lam_w.value)]

        for w in (lam_w, case_w, met_w):
            w.observe(update, names="value")
        update()
        return W.VBox([W.HBox([lam_w, case_w, met_w]), caption, img, curve])

    def time_interaction(self, repeats: int = 20) -> float:
        """Mean seconds per control change (moving the slider through every lambda_AM), measured on
        the widget's own callbacks; the controls are set back afterwards. Call after :meth:`widget`."""
        lam_w, case_w, met_w, *_ = self._controls
        start = (lam_w.value, case_w.value, met_w.value)
        t0 = time.perf_counter()
        n = 0
        for r in range(repeats):
            for lam in self.lams:
                lam_w.value = lam
                n += 1
            case_w.value = r % len(self.cases)
            met_w.value = self.metric_names[r % len(self.metric_names)]
            n += 2
        seconds = (time.perf_counter() - t0) / n
        lam_w.value, case_w.value, met_w.value = start          # leave the explorer as it was
        return seconds


# --------------------------------------------------------------------------- t-SNE (Fig. 2)
def tsne_2d(features: np.ndarray, perplexity: float = 30, seed: int = 0) -> np.ndarray:
    """scikit-learn's t-SNE of (N, D) features to (N, 2), PCA-initialised and seeded.

    The perplexity is capped below N / 3 (t-SNE needs perplexity < N). It runs on one thread:
    for a few hundred points that is as fast as several, and it does not stall when other work
    (a training run) holds the other cores, which multi-threaded Barnes-Hut does badly.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    perp = min(float(perplexity), (len(features) - 1) / 3)
    with threadpool_limits(1):
        return TSNE(2, perplexity=perp, init="pca", random_state=seed).fit_transform(np.asarray(features, np.float32))


_CACHE_VERSION = 2          # bump when features or embeddings change meaning

#: The four groups of points of a t-SNE plot, each with its label, colour and marker.
GROUPS = {
    "healthy": ("healthy x_n", "tab:blue", "o"),
    "lesion": ("lesion x_a", "tab:red", "o"),
    "pseudo_healthy": ("G_A2N(x_a)", "tab:cyan", "^"),
    "pseudo_lesion": ("G_N2A(x_n)", "tab:orange", "^"),
}


class TSNEExplorer:
    """t-SNE of healthy and lesion test slices and of their translations, for several models.

    ``models`` maps a display name to a zoo name (or a model). For each model the explorer holds
    the four groups of ``GROUPS`` (G_N2A(x_n) only where the model has a G_N2A). Feature spaces:

    * ``pixels``: the raw images, flattened;
    * ``pca``: the first 50 principal components of the pixels (fitted on the real slices only);
    * ``segmentor``: the f_pre segmentor's encoder activations (a deep level, rectified and
      averaged over space), a feature a network learnt for *finding lesions*.
    """

    features = ("pixels", "pca", "segmentor")

    def __init__(self, models: dict, data, n: int = 100, split: str = "test", seed: int = 0,
                 segmentor=None, cache: Path | None = None):
        from . import zoo

        rng = np.random.default_rng(seed)
        healthy, lesion = data.select(split, 0), data.select(split, 1)
        n = min(n, len(healthy), len(lesion))
        self.n, self.seed = n, seed
        self.idx = {"healthy": np.sort(rng.choice(healthy, n, replace=False)),
                    "lesion": np.sort(rng.choice(lesion, n, replace=False))}
        self.real = {g: data.images[i].astype(np.float32) for g, i in self.idx.items()}
        self.images = {}
        for name, model in models.items():
            if isinstance(model, str):
                model = zoo.load_pretrained(model)
            imgs = dict(self.real)
            imgs["pseudo_healthy"] = translate_slices(model, self.real["lesion"], "AB")
            if "G_BA" in model.nets:
                imgs["pseudo_lesion"] = translate_slices(model, self.real["healthy"], "BA")
            self.images[name] = imgs
        self.models = list(models)
        self.segmentor = segmentor
        self.cache = Path(cache) if cache else cache_dir() / "tsne"
        # an embedding's cache key includes a digest of the model's images, so that a retrained
        # model or other data never reuse a stale embedding
        self._digest = {name: hashlib.sha1(b"".join(np.ascontiguousarray(im).tobytes() for im in imgs.values())).hexdigest()[:12]
                        for name, imgs in self.images.items()}
        self._mem = {}

    # -- features
    def _features(self, name: str, space: str) -> tuple[np.ndarray, list[str]]:
        key = ("features", name, space)
        if key not in self._mem:
            self._mem[key] = self._compute_features(name, space)
        return self._mem[key]

    def _compute_features(self, name: str, space: str) -> tuple[np.ndarray, list[str]]:
        imgs = self.images[name]
        groups = [g for g in GROUPS if g in imgs]
        labels = [g for g in groups for _ in range(len(imgs[g]))]
        flat = np.concatenate([imgs[g].reshape(len(imgs[g]), -1) for g in groups])
        if space == "pixels":
            return flat, labels
        if space == "pca":
            from sklearn.decomposition import PCA

            real = np.concatenate([self.real[g].reshape(self.n, -1) for g in ("healthy", "lesion")])
            pca = PCA(n_components=min(50, len(real) - 1), random_state=self.seed).fit(real)
            return pca.transform(flat), labels
        if space == "segmentor":
            if self.segmentor is None:
                raise ValueError("the 'segmentor' feature space needs a segmentor (pass segmentor=...)")
            return self._segmentor_features(np.concatenate([imgs[g] for g in groups])), labels
        raise ValueError(f"unknown feature space '{space}': choose from {self.features}")

    @torch.no_grad()
    def _segmentor_features(self, images: np.ndarray) -> np.ndarray:
        net = self.segmentor.nets["S"]
        dev = next(net.parameters()).device
        depth = max(1, net.num_downs - 2)               # a deep level whose map is still > 1 pixel
        feats = []
        for s in range(0, len(images), 32):
            h = pp.to_tanh_range(torch.from_numpy(images[s:s + 32])[:, None]).to(dev)
            for d in net.down[:depth]:
                h = d(h)
            # instance norm leaves every channel with zero spatial mean: pool its rectified response
            feats.append(torch.relu(h.float()).mean((2, 3)).cpu().numpy())
        return np.concatenate(feats)

    # -- embeddings
    def embed(self, name: str, space: str = "pca", perplexity: float = 30, n: int | None = None) -> dict:
        """2-D t-SNE of model ``name``'s points: ``{'xy': (M, 2), 'groups': [...], 'seconds': s}``,
        cached in memory and on disk. ``n`` (<= the explorer's n) takes the first n of each group."""
        n = self.n if n is None else min(n, self.n)
        key = (name, space, float(perplexity), n)
        if key in self._mem:
            return self._mem[key]
        tag = hashlib.sha1(json.dumps([_CACHE_VERSION, self._digest[name], name, space, float(perplexity), n, self.seed]).encode()).hexdigest()[:16]
        path = self.cache / f"tsne-{tag}.npz"
        if path.is_file():
            z = np.load(path)
            res = {"xy": z["xy"], "groups": list(z["groups"]), "seconds": float(z["seconds"])}
        else:
            from .utils import atomic_path

            feats, groups = self._features(name, space)
            keep = np.concatenate([np.flatnonzero(np.array(groups) == g)[:n] for g in dict.fromkeys(groups)])
            feats, groups = feats[keep], [groups[i] for i in keep]
            t0 = time.perf_counter()
            xy = tsne_2d(feats, perplexity, self.seed)
            res = {"xy": xy, "groups": groups, "seconds": time.perf_counter() - t0}
            self.cache.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as f:
                    np.savez(f, xy=xy, groups=np.array(groups), seconds=res["seconds"])
        self._mem[key] = res
        return res

    def healthy_vote(self, name: str, space: str = "pca", k: int = 5) -> dict:
        """A check that does not rely on t-SNE: in the feature space itself, the share of each
        group's points whose k nearest *real* slices are mostly healthy (a k-NN vote; a real
        slice does not vote for itself)."""
        key = ("vote", name, space, k)
        if key not in self._mem:
            from sklearn.neighbors import NearestNeighbors

            feats, groups = self._features(name, space)
            groups = np.array(groups)
            real = np.isin(groups, ["healthy", "lesion"])
            is_healthy = groups[real] == "healthy"
            nn_ = NearestNeighbors(n_neighbors=k + 1).fit(feats[real])
            out = {}
            for g in dict.fromkeys(groups):
                sel = groups == g
                nb = nn_.kneighbors(feats[sel], return_distance=False)
                nb = nb[:, 1:] if g in ("healthy", "lesion") else nb[:, :k]   # drop the point itself
                out[g] = float(np.mean(is_healthy[nb].mean(1) > 0.5))
            self._mem[key] = out
        return self._mem[key]

    # -- drawing
    def draw(self, name: str, space: str = "pca", perplexity: float = 30, n: int | None = None,
             arrows: bool = True, ax=None):
        """Scatter of one embedding; arrows from each input to its translation."""
        res = self.embed(name, space, perplexity, n)
        xy, groups = res["xy"], np.array(res["groups"])
        if ax is None:
            _, ax = plt.subplots(figsize=(6, 5))
        for g, (label, col, mk) in GROUPS.items():
            sel = groups == g
            if sel.any():
                ax.scatter(*xy[sel].T, s=14, c=col, marker=mk, label=f"{label} ({sel.sum()})", alpha=0.85, lw=0)
        if arrows:
            for src, dst, col in (("lesion", "pseudo_healthy", "tab:cyan"), ("healthy", "pseudo_lesion", "tab:orange")):
                a, b = xy[groups == src], xy[groups == dst]
                for p, q in zip(a, b):
                    ax.annotate("", q, p, arrowprops=dict(arrowstyle="-|>", color=col, lw=0.5, alpha=0.35))
        ax.set(title=f"{name}: t-SNE of {space} features, perplexity {perplexity:g}", xticks=[], yticks=[])
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7, loc="best", markerscale=1.2)
        return ax

    def figure(self, names=None, space: str = "pca", perplexity: float = 30, arrows: bool = True):
        """Static side-by-side figure of several models at one setting."""
        names = names or self.models
        fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 4.8), squeeze=False)
        for ax, name in zip(axes[0], names):
            self.draw(name, space, perplexity, arrows=arrows, ax=ax)
        fig.tight_layout()
        return fig

    def widget(self, perplexities=(5, 15, 30, 50), sizes=(25, 50, 100), model=None, space: str = "pca"):
        """ipywidgets: model, feature space, perplexity, samples per group, arrows. The first view
        of a setting runs t-SNE (seconds) and caches it; later views are instant. The controls
        start at ``model`` (default: the first) and ``space``, e.g. the view a static figure shows."""
        import ipywidgets as W

        sizes = sorted({min(s, self.n) for s in sizes})
        spaces = [f for f in self.features if f != "segmentor" or self.segmentor is not None]
        model = self.models[0] if model is None else model
        if model not in self.models or space not in spaces:
            raise ValueError(f"no view model={model!r}, space={space!r}: models {self.models}, spaces {spaces}")
        model_w = W.Dropdown(options=self.models, value=model, description="model")
        feat_w = W.ToggleButtons(options=spaces, value=space, description="features")
        perp_w = W.SelectionSlider(options=list(perplexities), value=30 if 30 in perplexities else perplexities[0],
                                   description="perplexity", continuous_update=False)
        n_w = W.SelectionSlider(options=sizes, value=sizes[-1], description="per group", continuous_update=False)
        arr_w = W.Checkbox(value=True, description="arrows input → output")
        img = W.Image(format="png", layout=W.Layout(width="560px"))
        info = W.HTML()
        self._controls = (model_w, feat_w, perp_w, n_w, arr_w)

        def update(_=None):
            t0 = time.perf_counter()
            fig, ax = plt.subplots(figsize=(6, 5))
            self.draw(model_w.value, feat_w.value, perp_w.value, n_w.value, arr_w.value, ax=ax)
            img.value = fig_png(fig)
            vote = self.healthy_vote(model_w.value, feat_w.value)
            info.value = ("share judged healthy by a 5-NN vote in the feature space: "
                          + ", ".join(f"{GROUPS[g][0]} {v:.0%}" for g, v in vote.items())
                          + f" &nbsp; (view drawn in {time.perf_counter() - t0:.2f} s)")

        for w in self._controls:
            w.observe(update, names="value")
        update()
        return W.VBox([W.HBox([model_w, feat_w]), W.HBox([perp_w, n_w, arr_w]), img, info])
