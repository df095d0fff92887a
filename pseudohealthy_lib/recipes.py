"""How the shipped models are made: their recipes, and training on request.

Every model in the zoo (:mod:`pseudohealthy_lib.zoo`) was made by one command,
``python -m pseudohealthy_lib train <RECIPES[name]> --out runs/NAME --export NAME``, and its
manifest records that command. :func:`train_and_export` is what the command runs: train (resuming), then
evaluate on the test split and export. :func:`ensure` and :func:`load_or_train` are the
chapters' way to get models: they load what the zoo has and train what it lacks only when
asked (``train=True`` or ``PH_TRAIN_MISSING=1``), into :func:`~pseudohealthy_lib.config.runs_dir`,
saying so; otherwise a missing model is a :class:`~pseudohealthy_lib.zoo.ZooMissing` error that
says where the zoo was looked for and how to get it.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from . import zoo
from .config import runs_dir, truthy, zoo_dir
from .data import default
from .data.phantom import MODALITIES
from .engine import TrainConfig, Trainer
from .evaluate import manifest_metrics
from .methods import METHODS, get_method
from .presets import add_train_arguments, train_config

#: The phantoms of PHS-GAN's Table 1 (chapter 6), by lesion, with the tag their models' names carry.
PHSGAN_LESIONS = {"glioma": "", "stroke": "-stroke"}


def phsgan_name(kind: str, lesion: str = "glioma", seed: int = 0) -> str:
    """The zoo name of a chapter-6 model: ``kind`` is ``'paired'``, ``'unpaired'``, ``'cgan'`` or
    ``'cyclegan'``; e.g. ``phsgan_name('paired', 'stroke', 1) == 'phsgan-paired-stroke-s1'``."""
    return f"phsgan-{kind}{PHSGAN_LESIONS[lesion]}{f'-s{seed}' if seed else ''}"


def _lesion_arg(lesion: str) -> str:
    return "" if lesion == "glioma" else f" --lesion {lesion}"


#: what the paired recipe adds on the stroke phantom: there normal tissue is as bright as a lesion
#: after the per-volume V99.5 scaling, and G underfitted the removal task (a light patch left in
#: every lesion); ANT-GAN's global shortcut, six residual blocks and Cycle H-H weighted 30 lifted
#: the stroke selection phantom's lesion PSNR from 14.5 to 17.8 dB, and the removal error averaged
#: over the pasted lesion alone (lambda_lesion, Eq. 10: a stroke is 1 % of a slice) to 21.6 dB
#: (trials stroke-paired-* in records/phsgan.jsonl; chapter 6)
_PAIRED_STROKE = " --set shortcut=true --set n_blocks=6 --set lambda_hh=30 --set lambda_lesion=10"

#: what the unpaired recipe adds on the stroke phantom: the same shortcut and six blocks, and Eq. (10)
#: over the cut of Eq. (9) (S's own map: the unpaired setting has no training mask to cut with);
#: trial stroke-unpaired-shortcut-lesion10 on the stroke selection phantom: lesion PSNR 21.2 dB
#: (doing nothing 12.2, the paired recipe 21.6), identity 0.985, every lesion filled
_UNPAIRED_STROKE = " --set shortcut=true --set n_blocks=6 --set lambda_lesion=10"

_UNPAIRED = (" --set hh_mask=other --set lambda_paint=2 --set mask_loss=dice --set lambda_seg=0.5 --set s_prior=0.02"
             " --set lambda_selfpaste=10 --set paste_dilate=2 --val-every 100")

#: The arguments of ``python -m pseudohealthy_lib train`` that make each shipped model, run
#: with ``--out runs/NAME --export NAME``. The segmentors come first, because the others'
#: healthiness is measured with them when they are exported (:data:`~pseudohealthy_lib.zoo.JUDGES`).
RECIPES = {
    # the judge trains on its own phantom (100 subjects, seed 1), so it has never seen a subject
    # of the phantoms the translators are trained and tested on (seed 0) or of fresh test phantoms
    zoo.SEGMENTOR: "segmentor --preset cpu --subjects 100 --data-seed 1 --set healthy_twins=true --set lambda_clean=0.2",
    # the judge of the stroke phantom's translators, made the same way on a stroke phantom
    zoo.JUDGES["stroke"]: "segmentor --preset cpu --subjects 100 --data-seed 1 --lesion stroke --set healthy_twins=true "
                          "--set lambda_clean=0.2",
    # the judges of the other MR contrasts of the glioma phantom (SMILE trains on T2; ANT-GAN's Fig. 10)
    **{zoo.judge_name("glioma", m): f"segmentor --preset cpu --subjects 100 --data-seed 1 --modality {m} "
       "--set healthy_twins=true --set lambda_clean=0.2" for m in ("t1", "t1ce", "t2")},
    # the judge of the liver CT phantom's translators (ANT-GAN's Fig. 11)
    zoo.JUDGES["liver"]: "segmentor --preset cpu --subjects 100 --data-seed 1 --lesion liver --set healthy_twins=true "
                         "--set lambda_clean=0.2",
    "cyclegan-resnet-mask": "cyclegan --preset cpu --set generator=resnet --set domain_b=mask",
    "cyclegan-unet-mask": "cyclegan --preset cpu --set generator=unet --set ngf=16 --set domain_b=mask",
    # ANT-GAN's ablation study (Fig. 5, Table IV): one preset, one seed
    "antgan": "antgan --preset cpu",
    # the same recipe with two more seeds, for the spread of the headline model (chapter 3)
    **{f"antgan-s{seed}": f"antgan --preset cpu --seed {seed}" for seed in (1, 2)},
    "antgan-cyclegan": "antgan --preset cpu --variant cyclegan",
    "antgan-cyclegan-shortcut": "antgan --preset cpu --variant cyclegan+shortcut",
    "antgan-gan": "antgan --preset cpu --variant gan",
    "antgan-gan+ac": "antgan --preset cpu --variant gan+ac",
    "antgan-gan+nc": "antgan --preset cpu --variant gan+nc",
    # the lambda_AM sensitivity study (Fig. 12), with the smaller sweep preset
    **{f"antgan-sweep-lam{lam:g}": f"antgan --preset sweep --set lambda_am={lam:g}" for lam in (0, 0.01, 0.1, 1, 10, 100)},
    # a remedy for checkerboards, a labelled variant (the paper's transposed convs stay the default)
    "antgan-resize": "antgan --preset cpu --set upsample=resize",
    # ANT-GAN on the other MR contrasts (Fig. 10) and on liver CT (Fig. 11), with the FLAIR recipe
    **{f"antgan-{m}": f"antgan --preset cpu --modality {m}" for m in ("t1", "t1ce", "t2")},
    "antgan-liver": "antgan --preset cpu --lesion liver",
    # PHS-GAN's Table 1 (chapter 6) on the glioma and the stroke phantom: the proposed settings with
    # three seeds each, and the paper's two baselines trained as it defines them (no identity or
    # keep term), with the same budget and widths. Cycle H-H starts from a real lesion pasted over
    # the healthy slice in the paired setting, which has the masks to cut one out (cut with the mask
    # widened by 2 pixels: paste_dilate), and from another subject's mask in the unpaired one
    # (hh_mask); the paired models keep the image outside their training mask (keep_map): the
    # recipes the search selected. The unpaired segmentor learns where lesions are only from R's
    # paintings, so they must look real (lambda_paint: a critic of them), be scored with Dice
    # (mask_loss), and not be drowned by the mask critic's gradient (lambda_seg 0.5 for the
    # paper's 10: measured 50-100 times the cycles' on S); S starts from a 2 % lesion prior
    # (s_prior), and logs its Dice on the validation split (val_every). Without more, its S worked
    # (validation Dice 0.70) but its G filled lesions with dark blobs and kept what S missed (lesion
    # PSNR below doing nothing's on the fresh phantoms, records/floors.jsonl). The unpaired analogue
    # of the paired paste (lambda_selfpaste: a real lesion cut out with S's own map, widened by 2
    # pixels, pasted over a healthy slice; G must give the healthy slice back) lifted it above doing
    # nothing's and CycleGAN's there, still far below the paired models' (trial unpaired-selfpaste in
    # records/phsgan.jsonl; floors.jsonl). On the stroke phantom both settings add their stroke options above.
    **{phsgan_name(setting, lesion, seed): f"phsgan --preset cpu --variant {setting}"
       + (" --set keep_map=truth --set hh_mask=paste --set paste_dilate=2" if setting == "paired" else _UNPAIRED)
       + ({"paired": _PAIRED_STROKE, "unpaired": _UNPAIRED_STROKE}[setting] if lesion == "stroke" else "") + _lesion_arg(lesion)
       + (f" --seed {seed}" if seed else "") for lesion in PHSGAN_LESIONS for setting in ("paired", "unpaired") for seed in (0, 1, 2)},
    **{phsgan_name("cgan", lesion): "phsgan --preset cpu --variant conditional-gan --set lambda_id=0 --set lambda_keep=0"
       + _lesion_arg(lesion) for lesion in PHSGAN_LESIONS},
    **{phsgan_name("cyclegan", lesion): "cyclegan --preset cpu --steps 2400 --set generator=resnet --set ngf=16 --set n_blocks=4 "
       "--set ndf=32 --set init=normal --set dropout=0" + _lesion_arg(lesion) for lesion in PHSGAN_LESIONS},
    # the diffusion chapter: one model of healthy slices per seed; inpainting and partial noising
    # are two ways of sampling it (Diffusion.inference), not two models
    **{"diffusion" + (f"-s{seed}" if seed else ""): "diffusion --preset cpu" + (f" --seed {seed}" if seed else "") for seed in (0, 1, 2)},
    # the same recipe trained with coarse (blurred) noise, for partial noising without a mask
    "diffusion-coarse": "diffusion --preset cpu --set noise_blur=2",
}


def seeds(name: str) -> list[str]:
    """Recipe ``name`` and the same recipe with other seeds (``name-s1``, ``name-s2``, ...), the names a
    table averages over; e.g. ``seeds('antgan') == ['antgan', 'antgan-s1', 'antgan-s2']``."""
    if name not in RECIPES:
        raise KeyError(f"no recipe for '{name}'; known: {', '.join(RECIPES)}")
    return [name] + sorted((n for n in RECIPES if re.fullmatch(re.escape(name) + r"-s\d+", n)),
                           key=lambda n: int(n.rsplit("-s", 1)[1]))


def methods_without_recipe() -> list[str]:
    """The translators of ``pseudohealthy_lib.methods.METHODS`` that no zoo recipe trains yet."""
    used = {RECIPES[n].split()[0] for n in RECIPES}
    return sorted(m for m, cls in METHODS.items() if cls.kind == "translator" and m not in used)


def train_args(name: str) -> list[str]:
    """The ``train`` command line that makes zoo model ``name`` (see :data:`RECIPES`)."""
    if name not in RECIPES:
        raise KeyError(f"no recipe for '{name}'; known: {', '.join(RECIPES)}")
    return ["train", *RECIPES[name].split(), "--out", f"runs/{name}", "--export", name]


def recipe_config(name: str) -> TrainConfig:
    """The :class:`TrainConfig` of zoo model ``name``'s recipe."""
    p = argparse.ArgumentParser(prog=f"zoo recipe {name}")
    add_train_arguments(p)
    return train_config(p.parse_args(train_args(name)[1:]))


def train_and_export(cfg: TrainConfig, out: str | Path, export: str | None = None, command: str | None = None,
          data=None, progress: bool = True) -> Trainer:
    """Train ``cfg`` into the run folder ``out`` (resuming), then, if ``export`` names it, write
    the zoo model with its manifest. What ``python -m pseudohealthy_lib train`` runs."""
    trainer = Trainer(cfg, out, method=get_method(cfg.method), data=data, progress=progress)
    start = trainer.step
    trainer.fit()
    if trainer.rank == 0:
        print(f"{cfg.method} ({cfg.preset}): step {start} -> {trainer.step} in {out}, "
              f"{trainer.wall:.0f} s of training in total", flush=True)
        if export and trainer.use_best():        # the validation's choice, not the last step
            print(f"exporting the weights of step {trainer.best['step']} ({cfg.select} {trainer.best['score']:.4g} "
                  "on the validation split)", flush=True)
        if export:
            with trainer.averaged():                 # the weight average, if the run keeps one (ema)
                metrics = manifest_metrics(trainer.method, trainer.data, trainer.device)
                d = zoo.export_model(trainer, export, metrics, command=command)
            print(f"exported to {d}: {metrics}", flush=True)
    return trainer


def _training_allowed(train: bool | None) -> bool:
    return truthy("PH_TRAIN_MISSING") if train is None else bool(train)


def ensure(*names: str, train: bool | None = None) -> None:
    """Check that every named model is in the zoo. A missing one raises :class:`~pseudohealthy_lib.zoo.ZooMissing`
    unless training is asked for (``train=True``, or ``PH_TRAIN_MISSING=1`` when ``train`` is
    None); then it is trained with its recipe into ``runs_dir()/NAME`` (resumable) and exported
    to the zoo, the judges first (the others' healthiness is measured with them)."""
    missing = [n for n in names if n not in zoo.available()]
    if not missing:
        return
    if not _training_allowed(train):
        raise zoo.ZooMissing(zoo.missing_message(missing))
    judges = {zoo.judge_name(lesion, m) for lesion in zoo.JUDGES for m in MODALITIES}    # every contrast's
    for name in [n for n in missing if n not in judges and n in RECIPES]:      # each translator's judge first
        cfg = recipe_config(name)
        judge = zoo.judge_name(cfg.lesion, cfg.modality)
        if judge not in zoo.available() and judge not in missing:
            missing.insert(0, judge)
    for name in sorted(missing, key=lambda n: n not in judges):
        args = train_args(name)
        out = runs_dir() / name
        print(f"{name} is not in the zoo ({zoo_dir()}): training it now into {out} with\n"
              f"  python -m pseudohealthy_lib {' '.join(args)}", flush=True)
        train_and_export(recipe_config(name), out, export=name, command="python -m pseudohealthy_lib " + " ".join(args))


def reevaluate(name: str, data=None) -> dict:
    """Evaluate zoo model ``name`` again with the current :mod:`~pseudohealthy_lib.evaluate` on
    the test split of its training data (the default phantom unless its config names a file),
    and store the result as the manifest's ``metrics`` (the training record stays as it was).
    Translators are judged by the zoo's judge. Returns the new metrics."""
    info = zoo.manifest(name)
    cfg = info["config"]
    if data is None:
        data = default.training_data(TrainConfig.from_dict(cfg))
        if cfg.get("folds"):                             # the fold it was trained on: its own test patients
            data = data.with_folds(cfg["folds"], cfg.get("fold", 0))
    info["metrics"] = manifest_metrics(zoo.load_pretrained(name), data)
    zoo.write_manifest(name, info)
    return info["metrics"]


def load_or_train(name: str, cfg: TrainConfig, out: str | Path | None = None, train: bool | None = None):
    """Zoo model ``name`` if it is there; else, where training is asked for (``train=True``, or
    ``PH_TRAIN_MISSING=1`` when ``train`` is None), train ``cfg`` now into ``out`` (default
    ``runs_dir()/name``; resumable), saying so, and return that; else raise :class:`~pseudohealthy_lib.zoo.ZooMissing`."""
    if name in zoo.available():
        return zoo.load_pretrained(name)
    if not _training_allowed(train):
        raise zoo.ZooMissing(zoo.missing_message([name]))
    out = Path(out or runs_dir() / name)
    print(f"{name} is not in the zoo ({zoo_dir()}): training it now into {out}", flush=True)
    trainer = Trainer(cfg, out, method=get_method(cfg.method))
    trainer.fit()
    trainer.swap_average()                           # the weight average, if the run keeps one (ema)
    trainer.method.eval()
    trainer.method.manifest = None
    return trainer.method
