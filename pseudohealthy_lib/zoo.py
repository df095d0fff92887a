"""The model zoo: small checkpoints shipped under ``data/zoo/<name>/`` with a manifest.

A zoo entry is what a chapter needs to *use* a trained model: the inference networks in half
precision (``weights.pt``) and ``manifest.json``: method, preset, full config, steps, wall time,
hardware, git commit, the training command, a short loss history and metrics on the phantom
test split. Entries are written by the training command (``train ... --export NAME``), never by
hand.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

from .config import REPO_DIR
from .engine import TrainConfig, Trainer, git_commit, hardware, load_nets, method_from_config, read_checkpoint
from .utils import DataError, atomic_path

SEGMENTOR = "segmentor-phantom"     # f_pre, the judge of the healthiness metric

#: The arguments of ``python -m pseudohealthy_lib train`` that make each shipped model, run
#: with ``--out runs/NAME --export NAME``. The segmentor comes first, because the others'
#: healthiness is measured with it when they are exported.
RECIPES = {
    # the judge trains on its own phantom (100 subjects, seed 1), so it has never seen a subject
    # of the phantoms the translators are trained and tested on (seed 0) or of fresh test phantoms
    SEGMENTOR: "segmentor --preset cpu --subjects 100 --data-seed 1 --set healthy_twins=true --set lambda_clean=0.2",
    "cyclegan-resnet-mask": "cyclegan --preset cpu --set generator=resnet --set domain_b=mask",
    "cyclegan-unet-mask": "cyclegan --preset cpu --set generator=unet --set ngf=16 --set domain_b=mask",
    # ANT-GAN's ablation study (Fig. 5, Table IV): one preset, one seed
    "antgan": "antgan --preset cpu",
    "antgan-cyclegan": "antgan --preset cpu --variant cyclegan",
    "antgan-cyclegan-shortcut": "antgan --preset cpu --variant cyclegan+shortcut",
    "antgan-gan": "antgan --preset cpu --variant gan",
    "antgan-gan+ac": "antgan --preset cpu --variant gan+ac",
    "antgan-gan+nc": "antgan --preset cpu --variant gan+nc",
    # the lambda_AM sensitivity study (Fig. 12), with the smaller sweep preset
    **{f"antgan-sweep-lam{lam:g}": f"antgan --preset sweep --set lambda_am={lam:g}" for lam in (0, 0.01, 0.1, 1, 10, 100)},
    # a remedy for checkerboards, a labelled variant (the paper's transposed convs stay the default)
    "antgan-resize": "antgan --preset cpu --set upsample=resize",
}


def train_args(name: str) -> list[str]:
    """The ``train`` command line that makes zoo model ``name`` (see :data:`RECIPES`)."""
    if name not in RECIPES:
        raise KeyError(f"no recipe for '{name}'; known: {', '.join(RECIPES)}")
    return ["train", *RECIPES[name].split(), "--out", f"runs/{name}", "--export", name]


def ensure(*names: str) -> None:
    """Train and export, with its recipe, every named model that is not in the zoo yet.

    Shipped models are only checked; a missing one costs its full training run (minutes on a
    GPU, up to about 20 minutes each on two CPU cores). Runs resume from ``runs/NAME``.
    """
    from .__main__ import main

    missing = [n for n in names if n not in available()]
    if missing and SEGMENTOR not in available() and SEGMENTOR not in missing:
        missing.insert(0, SEGMENTOR)
    for name in missing:
        args = train_args(name)
        print(f"{name} is not in the zoo ({zoo_dir()}): training it now with\n"
              f"  python -m pseudohealthy_lib {' '.join(args)}", flush=True)
        cwd = os.getcwd()
        os.chdir(REPO_DIR)                      # runs/NAME relative to the repository, as from a shell
        try:
            if main(args) != 0:
                raise DataError(f"zoo: training '{name}' failed (the error is printed above)")
        finally:
            os.chdir(cwd)


def zoo_dir() -> Path:
    """``data/zoo`` in the repository, or ``$PH_ZOO`` if set."""
    return Path(os.environ.get("PH_ZOO", REPO_DIR / "data" / "zoo"))


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.parent.name for p in zoo_dir().glob("*/manifest.json"))


def manifest(name: str) -> dict:
    """The manifest of zoo model ``name``; a :class:`~pseudohealthy_lib.utils.DataError` naming the file if it is not a JSON object."""
    path = zoo_dir() / name / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no zoo model '{name}' (available: {', '.join(available()) or 'none'})")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: zoo manifest is not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: zoo manifest must be a JSON object, got {type(info).__name__}")
    return info


def export(trainer: Trainer, name: str, metrics: dict | None = None, command: str | None = None) -> Path:
    """Write the trainer's inference networks (fp16) and a manifest to ``zoo_dir()/name``;
    ``command`` is the command line that trained it (default: this process's arguments)."""
    d = zoo_dir() / name
    m = trainer.method
    weights = {k: {p: t.detach().to("cpu", torch.float16) if t.is_floating_point() else t.cpu()
                   for p, t in m.nets[k].state_dict().items()} for k in m.exported()}
    with atomic_path(d / "weights.pt") as tmp:
        torch.save(weights, tmp)
    hist = trainer.history
    every = max(1, len(hist) // 200)
    info = {"name": name, "method": trainer.cfg.method, "preset": trainer.cfg.preset,
            "config": trainer.cfg.to_dict(), "steps": trainer.step, "wall_seconds": round(trainer.wall, 1),
            "hardware": hardware(), "precision": str(trainer.dtype), "world_size": trainer.world,
            "commit": git_commit(), "command": command or "python -m pseudohealthy_lib " + " ".join(sys.argv[1:]),
            "weights_bytes": (d / "weights.pt").stat().st_size, "history": hist[::every],
            "metrics": metrics or {}}
    _write_manifest(name, info)
    return d


def _write_manifest(name: str, info: dict) -> None:
    with atomic_path(zoo_dir() / name / "manifest.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1))


def manifest_metrics(model, data, device="cpu") -> dict:
    """What a manifest stores as ``metrics``: :func:`~pseudohealthy_lib.evaluate.evaluate` on the
    test split of ``data`` (translators judged by ``SEGMENTOR`` when it is shipped), as JSON,
    without the per-metric uncertainty."""
    from .evaluate import evaluate, to_json

    judge = load_pretrained(SEGMENTOR, device) if (
        getattr(model, "pseudo_healthy", False) and SEGMENTOR in available()) else None
    res = to_json(evaluate(model, data, "test", segmentor=judge))
    res.pop("uncertainty", None)
    return res


def reevaluate(name: str, data=None) -> dict:
    """Evaluate zoo model ``name`` again with the current :mod:`~pseudohealthy_lib.evaluate` on
    the test split of its training data (the default phantom unless its config names a file),
    and store the result as the manifest's ``metrics`` (the training record stays as it was).
    Translators are judged by ``SEGMENTOR``. Returns the new metrics."""
    from .data import default, load_prepared

    info = manifest(name)
    cfg = info["config"]
    if data is None:
        data = load_prepared(cfg.get("data") or default.phantom_dataset(
            cfg.get("subjects"), seed=cfg.get("data_seed", 0), size=cfg["size"]))
    info["metrics"] = manifest_metrics(load_pretrained(name), data)
    _write_manifest(name, info)
    return info["metrics"]


def load_pretrained(name: str, device: str | torch.device = "cpu"):
    """The zoo model ``name`` as a ready method in eval mode (fp32 weights, on ``device``).

    A manifest or weights file that is broken, missing or does not fit raises
    :class:`~pseudohealthy_lib.utils.DataError` naming the file.
    """
    info = manifest(name)
    path = zoo_dir() / name / "manifest.json"
    config = info.get("config")
    if not isinstance(config, dict):
        raise DataError(f"{path}: zoo manifest has no config")
    if "method" in info and config.get("method") != info["method"]:
        raise DataError(f"{path}: zoo manifest is for method {info['method']!r}, its config for {config.get('method')!r}")
    method = method_from_config(config, path)
    wpath = zoo_dir() / name / "weights.pt"
    if not wpath.is_file():
        raise DataError(f"{wpath}: weights file not found; the zoo model '{name}' has a manifest but no weights")
    weights = read_checkpoint(wpath, "zoo weights", keys=())
    load_nets(method, weights, wpath, method.exported())
    method.manifest = info
    return method.to(device).eval()


def load_or_train(name: str, cfg: TrainConfig, out: str | Path | None = None):
    """A zoo model if it is shipped, else train ``cfg`` now (resumable) and return that."""
    if name in available():
        return load_pretrained(name)
    trainer = Trainer(cfg, out or REPO_DIR / "runs" / name)
    trainer.fit()
    trainer.method.eval()
    trainer.method.manifest = None
    return trainer.method
