"""Command line: ``python -m pseudohealthy_lib {phantom,prepare} ...`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import sys
import time

from .utils import DataError


def _phantom(a: argparse.Namespace) -> None:
    if a.organ == "liver":
        from .data import phantom_ct

        t0 = time.perf_counter()
        ids = phantom_ct.generate(a.out, a.subjects, a.seed)
    else:
        from .data import phantom

        mods = tuple(a.modalities.split(","))
        t0 = time.perf_counter()
        ids = phantom.generate(a.out, a.subjects, a.seed, a.lesion, mods, workers=a.workers)
    dt = time.perf_counter() - t0
    print(f"wrote {len(ids)} {a.organ} subjects to {a.out} in {dt:.1f} s")


def _prepare(a: argparse.Namespace) -> None:
    from .data.prepared import load_prepared, prepare

    rng = tuple(int(v) for v in a.slice_range.split(":")) if a.slice_range else None
    out = prepare(a.data, a.out, modality=a.modality, size=a.size, n_slices=a.slices, slice_range=rng,
                  min_area=a.min_area, region=a.region, seed=a.seed)
    p = load_prepared(out)
    print(f"wrote {out}: {len(p)} slices of {a.size}x{a.size}; {p.summary()}")


def _value(text: str):
    """Parse a --set value: JSON (numbers, true/false, null) or a plain string."""
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _metrics_for_zoo(trainer) -> dict:
    """Test-split metrics stored in a zoo manifest: the full pseudo-healthy set (with the shipped
    f_pre segmentor for healthiness, if present) or the method's own."""
    from . import zoo
    from .evaluate import evaluate

    m = trainer.method
    m.eval()
    if getattr(m, "pseudo_healthy", False):
        seg = zoo.load_pretrained(zoo.SEGMENTOR, trainer.device) if zoo.SEGMENTOR in zoo.available() else None
        res = evaluate(m, trainer.data, "test", segmentor=seg)
        res["segmentor"] = zoo.SEGMENTOR if seg is not None else None
        return res
    return m.evaluate(trainer.data, "test") if hasattr(m, "evaluate") else {}


def _train(a: argparse.Namespace) -> None:
    from . import presets, zoo
    from .data import load_prepared
    from .engine import Trainer

    options = {}
    if a.variant:
        from .methods.antgan import VARIANTS

        if a.variant not in VARIANTS:
            raise ValueError(f"unknown variant '{a.variant}'; choose from {sorted(VARIANTS)}")
        options |= VARIANTS[a.variant]
    for kv in a.set or []:
        k, _, v = kv.partition("=")
        options[k] = _value(v)
    over = {"options": options}
    for k in ("steps", "batch_size", "seed", "data", "amp", "size", "subjects"):
        if getattr(a, k) is not None:
            over[k] = getattr(a, k)
    cfg = presets.config(a.method, a.preset, **over)
    out = a.out or f"runs/{a.method}-{a.preset}"
    trainer = Trainer(cfg, out)
    start = trainer.step
    trainer.fit()
    if trainer.rank == 0:
        print(f"{cfg.method} ({cfg.preset}): step {start} -> {trainer.step} in {out}, "
              f"{trainer.wall:.0f} s of training in total")
        if a.export:
            metrics = _metrics_for_zoo(trainer)
            d = zoo.export(trainer, a.export, metrics, command="python -m pseudohealthy_lib " + " ".join(a.argv))
            print(f"exported to {d}: {metrics}")


def _zoo(a: argparse.Namespace) -> None:
    from . import zoo

    if a.train:
        zoo.ensure(*(zoo.RECIPES if a.train == ["all"] else a.train))
        return
    have = set(zoo.available())
    for name in dict.fromkeys([*zoo.RECIPES, *sorted(have)]):
        size = f"{zoo.manifest(name)['weights_bytes'] / 1e6:5.1f} MB" if name in have else "  missing"
        print(f"{name:26s} {size}  train {zoo.RECIPES.get(name, '(no recipe)')}")


def _evaluate(a: argparse.Namespace) -> None:
    import json

    from .data import load_prepared
    from .evaluate import evaluate, load_model

    model = load_model(a.model)
    segmentor = load_model(a.segmentor) if a.segmentor else None
    res = evaluate(model, load_prepared(a.data), a.split, segmentor=segmentor)
    if a.json:
        print(json.dumps(res))
    else:
        width = max(map(len, res))
        for k, v in res.items():
            print(f"{k:{width}s}  {'n/a (needs ground truth or a segmentor)' if v is None else round(v, 4)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pseudohealthy_lib",
                                 description="Pseudo-healthy synthesis: data, training and evaluation.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="generate a synthetic dataset with healthy ground truth")
    p.add_argument("--out", required=True, help="output folder (BraTS 2018-2021 layout; LiTS layout for --organ liver)")
    p.add_argument("--subjects", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lesion", choices=["glioma", "stroke"], default="glioma")
    p.add_argument("--organ", choices=["brain", "liver"], default="brain")
    p.add_argument("--modalities", default="flair,t1,t1ce,t2", help="comma-separated, brain only")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores, at most 4)")
    p.set_defaults(func=_phantom)

    p = sub.add_parser("prepare", help="turn volumes into one cached file of 2-D slices")
    p.add_argument("--data", default=None,
                   help="dataset folder (BraTS, ISLES 2015, LiTS or a phantom); default: $PH_DATA_ROOT")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--modality", default="flair")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--slices", type=int, default=60, help="middle band of N axial slices")
    p.add_argument("--slice-range", default=None, help="START:STOP instead of the middle band")
    p.add_argument("--min-area", type=int, default=100, help="lesion pixels for a pathological slice")
    p.add_argument("--region", default=None, help="lesion region: wt, tc, et (BraTS), lesion, tumour, liver")
    p.add_argument("--seed", type=int, default=0, help="seed of the patient-level split")
    p.set_defaults(func=_prepare)

    from .methods import METHODS
    from .presets import PRESETS

    p = sub.add_parser("train", help="train a method (resumes from OUT/checkpoint.pt)",
                       description="Train a method. Methods: " + ", ".join(sorted(METHODS)) +
                       ". Presets: " + ", ".join(PRESETS) + ". Running the same command again resumes.")
    p.add_argument("method", choices=sorted(METHODS))
    p.add_argument("--preset", choices=list(PRESETS), default=None, help="default: cpu (fast with PH_FAST=1)")
    p.add_argument("--data", default=None, help="prepared .npz (default: the phantom dataset, made on first use)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--size", type=int, default=None, help="image side for the default phantom data")
    p.add_argument("--subjects", type=int, default=None, help="phantom subjects for the default data")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None)
    p.add_argument("--out", default=None, help="run folder (default runs/METHOD-PRESET)")
    p.add_argument("--variant", default=None, help="ANT-GAN ablation variant (gan, gan+ac, ..., antgan)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="method option, e.g. generator=unet")
    p.add_argument("--export", default=None, metavar="NAME", help="after training, write data/zoo/NAME")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="metrics of a trained generator on a prepared dataset")
    p.add_argument("model", help="zoo name, run folder or checkpoint.pt")
    p.add_argument("--data", required=True, help="prepared .npz (phantom or real data)")
    p.add_argument("--split", default="test")
    p.add_argument("--segmentor", default=None, help="f_pre for healthiness: zoo name or checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("zoo", help="list the model zoo, or train the models it is missing",
                       description="Without options: every model with its recipe and whether it is shipped. "
                                   "--train NAME ... trains and exports the missing ones ('all' for every recipe).")
    p.add_argument("--train", nargs="+", metavar="NAME", default=None)
    p.set_defaults(func=_zoo)

    argv = sys.argv[1:] if argv is None else list(argv)
    a = ap.parse_args(argv)
    a.argv = argv
    try:
        a.func(a)
    except (DataError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
