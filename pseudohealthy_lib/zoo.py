"""The model zoo: small checkpoints shipped under ``data/zoo/<name>/`` with a manifest.

A zoo entry is what a chapter needs to *use* a trained model: the inference networks in half
precision (``weights.pt``) and ``manifest.json``: method, preset, full config, steps, wall time,
hardware, git commit, the training command, a short loss history and metrics on the phantom
test split. Entries are written by the training command (``train ... --export NAME``), never by
hand.

Where the zoo is: ``$PH_ZOO``, else the checkout's ``data/zoo`` (see
:func:`~pseudohealthy_lib.config.zoo_dir`). On Colab, the chapters' first cell clones the
repository and sets ``PH_ZOO``. A model that is not there raises :class:`ZooMissing`, saying
where the zoo was looked for and how to get the models; nothing is trained behind the reader's
back (the recipes that make the models, and training on request, are in
:mod:`pseudohealthy_lib.recipes`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .config import zoo_dir
from .engine import CHECKPOINT, TrainConfig, Trainer, git_commit, hardware, load_nets, read_checkpoint
from .methods import from_config, get_method
from .utils import DataError, atomic_path

SEGMENTOR = "segmentor-phantom"     # f_pre, the judge of the healthiness metric (glioma phantom)
#: The healthiness judge of each phantom lesion (translators trained on that lesion are judged by it).
JUDGES = {"glioma": SEGMENTOR, "stroke": "segmentor-stroke", "liver": "segmentor-liver"}


def judge_name(lesion: str, modality: str = "flair") -> str:
    """The zoo judge of translators trained on the phantom with ``lesion``, in ``modality``:
    :data:`JUDGES` for FLAIR, that name with ``-MODALITY`` appended for another contrast (a judge
    must read the contrast it judges; e.g. ``segmentor-phantom-t2``)."""
    if lesion not in JUDGES:
        raise ValueError(f"no healthiness judge for lesion {lesion!r}; known: {', '.join(JUDGES)}")
    return JUDGES[lesion] if modality == "flair" else f"{JUDGES[lesion]}-{modality}"


class ZooMissing(DataError):
    """A zoo model is not where the zoo is looked for; the message says where and how to get it."""


def missing_message(names: list[str]) -> str:
    """Where the zoo was looked for, what it holds, and how to get ``names``."""
    here = zoo_dir()
    state = "does not exist" if not here.is_dir() else f"holds {', '.join(available()) or 'no models'}"
    cmd = " ".join(f"'{n}'" for n in names)
    return (f"the model zoo lacks {', '.join(names)}: looked in {here} (PH_ZOO, else the checkout's data/zoo), "
            f"which {state}. Get the shipped models by cloning the book's repository and setting "
            f"PH_ZOO=<clone>/data/zoo (the chapters' first cell does this on Colab), or train them: "
            f"python -m pseudohealthy_lib zoo --train {cmd} (minutes on a GPU, up to about 30 minutes each "
            "on two CPU cores), or set PH_TRAIN_MISSING=1 to let the chapter train them")


def available() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.parent.name for p in zoo_dir().glob("*/manifest.json"))


def manifest(name: str) -> dict:
    """The manifest of zoo model ``name``; a :class:`~pseudohealthy_lib.utils.DataError` naming the file if it is not a JSON object."""
    path = zoo_dir() / name / "manifest.json"
    if not path.is_file():
        raise ZooMissing(missing_message([name]))
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: zoo manifest is not valid JSON ({e})") from None
    if not isinstance(info, dict):
        raise DataError(f"{path}: zoo manifest must be a JSON object, got {type(info).__name__}")
    return info


def training_facts(name: str) -> dict:
    """What zoo model ``name`` was trained with, from its manifest: image size, steps, batch,
    learning rate, seed and every option of its method resolved to the value it had (defaults
    included, read with the config's version), plus the minutes of training and the commit."""
    info = manifest(name)
    cfg = TrainConfig.from_dict(info["config"])
    opts = get_method(cfg.method).resolve_options(cfg.options, cfg.version)
    return {"size": cfg.size, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
            **opts, "minutes": round(info.get("wall_seconds", 0) / 60, 1), "commit": str(info.get("commit"))[:8]}


def export_model(trainer: Trainer, name: str, metrics: dict | None = None, command: str | None = None) -> Path:
    """Write the trainer's inference networks (fp16) and a manifest to ``zoo_dir()/name``;
    ``command`` is the command line that trained it (default: this process's arguments).
    With ``ema`` call it inside ``trainer.averaged()``: the zoo ships the weight average."""
    d = zoo_dir() / name
    m = trainer.method
    weights = {k: {p: t.detach().to("cpu", torch.float16) if t.is_floating_point() else t.cpu()
                   for p, t in m.nets[k].state_dict().items()} for k in m.exported()}
    with atomic_path(d / "weights.pt") as tmp:
        torch.save(weights, tmp)
    hist = [h for h in trainer.history if not any(k.startswith("val_") for k in h)]
    every = max(1, len(hist) // 200)
    info = {"name": name, "method": trainer.cfg.method, "preset": trainer.cfg.preset,
            "config": trainer.cfg.to_dict(), "steps": trainer.step, "wall_seconds": round(trainer.wall, 1),
            "hardware": hardware(), "precision": str(trainer.dtype), "world_size": trainer.world,
            "commit": git_commit(), "command": command or "python -m pseudohealthy_lib " + " ".join(sys.argv[1:]),
            "weights_bytes": (d / "weights.pt").stat().st_size, "history": hist[::every],
            "validation": [h for h in trainer.history if any(k.startswith("val_") for k in h)], "best": trainer.best,
            "metrics": metrics or {}}
    write_manifest(name, info)
    return d


def write_manifest(name: str, info: dict) -> None:
    with atomic_path(zoo_dir() / name / "manifest.json") as tmp:
        tmp.write_text(json.dumps(info, indent=1))


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
    method = from_config(config, path)
    wpath = zoo_dir() / name / "weights.pt"
    if not wpath.is_file():
        raise DataError(f"{wpath}: weights file not found; the zoo model '{name}' has a manifest but no weights")
    weights = read_checkpoint(wpath, "zoo weights", keys=())
    load_nets(method, weights, wpath, method.exported())
    method.manifest = info
    return method.to(device).eval()




def load_model(spec, device: str | torch.device = "cpu"):
    """A trained model from a zoo name, a run folder or a checkpoint file (in eval mode); an
    object that is already a model is returned as it is.

    A file that is truncated, garbage, not a training checkpoint or holds weights that do not fit
    its config raises :class:`~pseudohealthy_lib.utils.DataError` naming the file; a plain name
    that is neither a file nor a zoo model raises :class:`ZooMissing`.
    """
    if not isinstance(spec, (str, Path)):
        return spec
    path = Path(spec)
    if path.is_dir():
        path = path / CHECKPOINT
    if path.is_file():
        s = read_checkpoint(path)
        method = from_config(s["config"], path)
        load_nets(method, s["nets"], path)
        if s.get("average"):                              # a run with ema: its weight average is the model
            load_nets(method, s["average"], f"{path} (its weight average)", list(s["average"]))
        method.manifest = None
        return method.to(device).eval()
    if str(spec) in available():
        return load_pretrained(str(spec), device)
    if not path.suffix and len(path.parts) == 1:          # a plain name: a zoo model that is not there
        raise ZooMissing(f"{spec}: no checkpoint or run folder of that name here, and {missing_message([str(spec)])}")
    raise FileNotFoundError(f"{spec}: neither a checkpoint, a run folder nor a zoo model "
                            f"(zoo {zoo_dir()}: {', '.join(available()) or 'empty'})")
