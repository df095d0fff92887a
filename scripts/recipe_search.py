"""One trial of the teaching-recipe search: train a short run, score it on a selection phantom.

    python scripts/recipe_search.py NAME STEPS [KEY=VALUE ...]
    python scripts/recipe_search.py --references [METHOD [MODALITY [LESION]]]   # rows for doing nothing and inpainting
    python scripts/recipe_search.py --score RUN NAME  # score a finished run folder (e.g. a preset's run)

KEY is a training setting (``batch_size``, ``lr``, ``size``, ``beta1``, ``decay_from``, ``lesion``, ``modality``, ``ema``,
``seed``: a recipe must work for more than one; ``val_every`` with ``select``: score the validation
split so often and keep the step with the best ``select`` score, e.g. ``select=ssim_lesion``), ``method``
(default ``antgan``) or a method option (``ngf``, ``n_blocks``, ``ndf``, ``lambda_am``,
``lambda_cc``, ``healthy``, ``am_dilate``, ``use_ac``, ...). The trial starts from the ``cpu``
preset of the method with its :data:`BASE` options (ANT-GAN: ``ngf=16 n_blocks=4 ndf=32
lambda_am=100``) unless overridden, trains on
the default phantom (seed 0) and is scored with :func:`pseudohealthy_lib.evaluate.evaluate`
on every slice of the *selection* phantom (seed 7, 20 subjects): a phantom that no test and no
chapter uses, so choosing a recipe on it does not tune to the book's test data. The line
appended to ``pseudohealthy_lib/records/<method>.jsonl`` holds the settings, the training time, the hardware
and the scores; chapter 3's section on training on a budget reads that file. One trial at a
time: two trainings on two cores slow each other down many times over.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pseudohealthy_lib import presets, zoo                                    # noqa: E402
from pseudohealthy_lib.data import default, load_prepared                 # noqa: E402
from pseudohealthy_lib.engine import CHECKPOINT, TrainConfig, Trainer, git_commit, hardware, read_checkpoint  # noqa: E402
from pseudohealthy_lib.evaluate import compute_references, critic_scores, evaluate, load_model, own_map   # noqa: E402
from pseudohealthy_lib.methods import get_method                          # noqa: E402
from pseudohealthy_lib.utils import append_records                          # noqa: E402

SELECTION_SEED, SELECTION_SUBJECTS = 7, 20
TOP = ("batch_size", "lr", "size", "beta1", "beta2", "decay_from", "lesion", "modality", "ema", "seed", "val_every", "select")
#: the starting options of a trial, per method (a trial's KEY=VALUE pairs override them)
BASE = {"antgan": {"ngf": 16, "n_blocks": 4, "ndf": 32, "lambda_am": 100.0},
        "phsgan": {"ngf": 16, "n_blocks": 4, "ndf": 16, "s_ngf": 8},
        "smile": {"ngf": 16, "s_ngf": 16}, "vagan": {"ngf": 16, "ndf": 32}}
KEYS = ("psnr_lesion", "ssim_lesion", "bias_lesion", "psnr_tissue", "identity", "dice_max", "healthiness",
        "change_healthy", "checkerboard")


def parse(value: str):
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value                                # a word, e.g. healthy=twins


def main(argv: list[str]) -> dict:
    name, steps, *pairs = argv
    pairs = dict(kv.partition("=")[::2] for kv in pairs)
    method = pairs.pop("method", "antgan")
    top, opts = {"batch_size": 8, "lr": 2e-4}, dict(BASE.get(method, {}))
    for k, v in pairs.items():
        if k in TOP:
            top[k] = parse(v)
        else:
            opts[k] = parse(v)
    cfg = presets.config(method, "cpu", steps=int(steps), log_every=25, ckpt_every=max(int(steps) // 4, 1),
                         options=opts, **top)
    trainer = Trainer(cfg, REPO / "runs" / "recipe-search" / name, method=get_method(cfg.method))     # a finished run is only scored
    trainer.fit()
    if not trainer.use_best():                        # the selected step's weights, if the trial selects
        trainer.swap_average()                        # else the weight average, if the trial keeps one
    return append(method, score(name, trainer.method, cfg, trainer.wall) | ({"best": trainer.best} if cfg.select else {}))


def score(name: str, model, cfg, seconds: float) -> dict:
    """The row of one trained trial: its settings, time and scores on the selection phantom.
    (A model that should work on smaller images than the book's says so itself, e.g. the
    diffusion model's ``work_size``, so the data and the scores stay at the book's size.)"""
    data = selection_data(cfg.size, cfg.lesion, cfg.modality)
    res = evaluate(model, data, split="all",
                   segmentor=load_model(zoo.judge_name(cfg.lesion, cfg.modality)))
    if getattr(model, "critic", None) is not None:
        res["critic"] = critic_scores(model, data, "all")
    return {"name": name, "method": cfg.method, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
            "size": cfg.size, **{k: getattr(cfg, k) for k in ("seed", "ema", "decay_from", "val_every", "select") if getattr(cfg, k) != getattr(TrainConfig, k)},
            "lesion": cfg.lesion, **({"modality": cfg.modality} if cfg.modality != "flair" else {}), "options": cfg.options, "version": cfg.version, "train_seconds": round(seconds),
            "selection_phantom": {"seed": SELECTION_SEED, "subjects": SELECTION_SUBJECTS},
            "hardware": hardware(), "git_commit": git_commit(),
            **{k: res[k] for k in KEYS if isinstance(res.get(k), (int, float))}, **own_map_scores(model, data),
            **({"critic": res["critic"]} if "critic" in res else {})}


def own_map_scores(model, data) -> dict:
    """A factorising model's own lesion map (PHS-GAN's S) scored on the same slices: where an
    unpaired S collapses, its Dice shows it."""
    if not hasattr(model, "segment"):
        return {}
    own = own_map(model, data, split="all")
    return {"s_dice": own["dice"], "s_false_alarm": own["false_alarm_rate"]}


def score_run(run: str, name: str) -> dict:
    """Score a finished run folder (trained by ``train``, e.g. with a preset) as a trial."""
    state = read_checkpoint(Path(run) / CHECKPOINT)
    cfg = TrainConfig.from_dict(state["config"])
    if state["step"] < cfg.steps:
        raise SystemExit(f"{run}: stopped at step {state['step']} of {cfg.steps}; finish it first")
    return append(cfg.method, score(name, load_model(run), cfg, state["wall_seconds"]))


def selection_data(size: int = 128, lesion: str = "glioma", modality: str = "flair"):
    return load_prepared(default.phantom_dataset(SELECTION_SUBJECTS, lesion, seed=SELECTION_SEED, size=size, modality=modality))


def references(method: str = "antgan", modality: str = "flair", lesion: str = "glioma") -> None:
    """The reference rows of :func:`pseudohealthy_lib.evaluate.compute_references` on the selection
    phantom with ``lesion`` in ``modality`` (judged by that phantom's judge)."""
    refs = compute_references(selection_data(lesion=lesion, modality=modality), "all",
                              load_model(zoo.judge_name(lesion, modality)))
    for name in ("do nothing", "inpainting"):
        append(method, {"name": f"reference: {name}", "selection_phantom": {"seed": SELECTION_SEED,
                        "subjects": SELECTION_SUBJECTS}, **({"modality": modality} if modality != "flair" else {}),
                        **({"lesion": lesion} if lesion != "glioma" else {}),
                        "git_commit": git_commit(),
                        **{k: refs[name][k] for k in KEYS if isinstance(refs[name].get(k), (int, float))}})


def append(method: str, row: dict) -> dict:
    append_records(REPO / "pseudohealthy_lib" / "records" / f"{method}.jsonl", row)
    print(json.dumps({k: row[k] for k in ("name", *KEYS, "s_dice", "s_false_alarm") if k in row}))
    return row


if __name__ == "__main__":
    if sys.argv[1:2] == ["--references"]:
        references(*sys.argv[2:5])
    elif sys.argv[1:2] == ["--score"]:
        score_run(*sys.argv[2:4])
    else:
        main(sys.argv[1:])
