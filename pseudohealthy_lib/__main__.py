"""Command line: ``python -m pseudohealthy_lib {phantom,prepare} ...`` (``--help`` on each)."""
from __future__ import annotations

import argparse
import sys
import time

from .utils import DataError, OptionError, arg_at_least as _at_least, exit_on_sigterm


def _slice_range(text: str) -> tuple[int | None, int | None]:
    """argparse type of --slice-range: ``START:STOP`` (either may be left out) with 0 <= START < STOP."""
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        start, stop = (int(v) if v.strip() else None for v in (start, stop))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP such as 40:100, got '{text}'") from None
    if (start is not None and start < 0) or (start is not None and stop is not None and start >= stop):
        raise argparse.ArgumentTypeError(f"'{text}' is empty or negative; need 0 <= START < STOP")
    return start, stop


def _phantom(a: argparse.Namespace) -> None:
    exit_on_sigterm()
    if a.organ == "liver":
        from .data import phantom_ct

        if a.lesion is not None or a.modalities is not None:
            raise OptionError("--lesion and --modalities are options of --organ brain, not liver")
        t0 = time.perf_counter()
        ids = phantom_ct.generate(a.out, a.subjects, a.seed)
    else:
        from .data import phantom

        mods = phantom.MODALITIES if a.modalities is None else tuple(m.strip() for m in a.modalities.split(","))
        t0 = time.perf_counter()
        ids = phantom.generate(a.out, a.subjects, a.seed, a.lesion or "glioma", mods, workers=a.workers)
    dt = time.perf_counter() - t0
    print(f"wrote {len(ids)} {a.organ} subjects to {a.out} in {dt:.1f} s")


def _prepare(a: argparse.Namespace) -> None:
    exit_on_sigterm()
    from .data.prepared import load_prepared, prepare

    out = prepare(a.data, a.out, modality=a.modality, size=a.size, n_slices=a.slices, slice_range=a.slice_range,
                  min_area=a.min_area, region=a.region, seed=a.seed)
    p = load_prepared(out)
    print(f"wrote {out}: {len(p)} slices of {a.size}x{a.size}; {p.summary()}")


def _train(a: argparse.Namespace) -> None:
    from . import presets, recipes

    exit_on_sigterm()
    if a.export is not None and (not a.export.strip() or a.export.startswith(".") or "/" in a.export or "\\" in a.export):
        raise OptionError(f"--export '{a.export}': a zoo name is one plain folder name, such as antgan-lam1")
    cfg = presets.train_config(a)
    recipes.train_and_export(cfg, a.out or f"runs/{a.method}-{cfg.preset}", export=a.export,
              command="python -m pseudohealthy_lib " + " ".join(a.argv))


def _zoo(a: argparse.Namespace) -> None:
    from . import recipes, zoo

    if a.train:
        unknown = [n for n in a.train if n not in recipes.RECIPES and a.train != ["all"]]
        if unknown:
            raise OptionError(f"--train: no recipe for {', '.join(unknown)}; known: all, {', '.join(recipes.RECIPES)}")
        recipes.ensure(*(recipes.RECIPES if a.train == ["all"] else a.train), train=True)
        return
    if a.reevaluate:
        for name in (zoo.available() if a.reevaluate == ["all"] else a.reevaluate):
            print(f"{name}: {recipes.reevaluate(name)}", flush=True)
        return
    have = set(zoo.available())
    print(f"zoo: {zoo.zoo_dir()}")
    for name in dict.fromkeys([*recipes.RECIPES, *sorted(have)]):
        if name in have:
            n = zoo.manifest(name).get("weights_bytes")
            size = f"{n / 1e6:5.1f} MB" if isinstance(n, (int, float)) else "  unknown"
        else:
            size = "  missing"
        print(f"{name:26s} {size}  train {recipes.RECIPES.get(name, '(no recipe)')}")


def _evaluate(a: argparse.Namespace) -> None:
    import json

    from .data import load_prepared
    from .evaluate import evaluate, evaluate_seeds, kind_of, load_model, to_json

    data = load_prepared(a.data)
    side = data.images.shape[-1]

    def model(spec, what):
        m = load_model(spec)
        try:
            m.check_side(side)
        except OptionError as e:
            raise OptionError(f"{what} {spec} on --data {a.data}: {e}") from None
        return m

    judge = model(a.segmentor, "--segmentor") if a.segmentor else None
    if judge is not None and kind_of(judge) != "segmentor":
        raise OptionError(f"--segmentor {a.segmentor}: is a {kind_of(judge)} ({judge.name}), not a segmentor")
    models = [model(m, "model") for m in a.model]
    if len({(m.name, kind_of(m)) for m in models}) > 1:
        raise OptionError("several models are the seeds of one recipe: these are of different methods or kinds ("
                          + ", ".join(f"{s}: {m.name}" for s, m in zip(a.model, models)) + ")")
    try:
        if len(models) > 1:
            res = evaluate_seeds(models, data, a.split, segmentor=judge)
        else:
            res = evaluate(models[0], data, a.split, segmentor=judge, references=a.references)
    except OptionError as e:
        raise OptionError(f"--data {a.data}: {e}") from None
    res = to_json(res)
    if a.json:
        print(json.dumps(res))
        return
    if "across_seeds" in res:
        print(f"{len(a.model)} models (seeds): mean ± std across seeds")
        for k, v in res["across_seeds"].items():
            print(f"  {k:20s} {v['mean']:.4f} ± {v['std']:.4f}")
        return
    unc = res.get("uncertainty", {})
    for k, v in res.items():
        if isinstance(v, (dict, list)):
            continue
        line = f"{k:20s} {'n/a (needs ground truth, a judge or a validation split)' if v is None else (round(v, 4) if isinstance(v, float) else v)}"
        if k in unc and unc[k]["subject_mean"] is not None:
            u = unc[k]
            line += (f"   subjects: {u['subject_mean']:.4f} ± {u['subject_std']:.4f}, "
                     f"95% CI [{u['ci95'][0]:.4f}, {u['ci95'][1]:.4f}], n={u['n_subjects']}")
        print(line)
    for k in ("judge", "notes"):
        if k in res:
            print(f"{k}: {res[k]}")
    for name, row in res.get("references", {}).items():
        print(f"reference '{name}': " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if isinstance(v, float)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pseudohealthy_lib",
                                 description="Pseudo-healthy synthesis: data, training and evaluation.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="generate a synthetic dataset with healthy ground truth")
    p.add_argument("--out", required=True, help="output folder (BraTS 2018-2021 layout; LiTS layout for --organ liver)")
    p.add_argument("--subjects", type=_at_least(1), default=10)
    p.add_argument("--seed", type=_at_least(0), default=0)
    p.add_argument("--lesion", choices=["glioma", "stroke"], default=None, help="brain only (default: glioma)")
    p.add_argument("--organ", choices=["brain", "liver"], default="brain")
    p.add_argument("--modalities", default=None, help="comma-separated, brain only (default: flair,t1,t1ce,t2)")
    p.add_argument("--workers", type=_at_least(1), default=None, help="processes (default: CPU cores, at most 4)")
    p.set_defaults(func=_phantom)

    p = sub.add_parser("prepare", help="turn volumes into one cached file of 2-D slices")
    p.add_argument("--data", default=None,
                   help="dataset folder (BraTS, ISLES 2015, LiTS or a phantom); default: $PH_DATA_ROOT")
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--modality", default="flair")
    p.add_argument("--size", type=_at_least(1), default=128)
    p.add_argument("--slices", type=_at_least(1), default=60, help="middle band of N axial slices")
    p.add_argument("--slice-range", type=_slice_range, default=None,
                   help="START:STOP (STOP excluded) instead of the middle band")
    p.add_argument("--min-area", type=_at_least(1), default=100, help="lesion pixels for a pathological slice")
    p.add_argument("--region", default=None, help="lesion region: wt, tc, et (BraTS), lesion, tumour, liver")
    p.add_argument("--seed", type=_at_least(0), default=0, help="seed of the patient-level split")
    p.set_defaults(func=_prepare)

    from .methods import METHODS
    from .presets import PRESETS, add_train_arguments

    p = sub.add_parser("train", help="train a method (resumes from OUT/checkpoint.pt)",
                       description="Train a method. Methods: " + ", ".join(sorted(METHODS)) +
                       ". Presets: " + ", ".join(PRESETS) + ". Running the same command again resumes.")
    add_train_arguments(p)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="metrics of a trained model on a prepared dataset",
                       description="Evaluate a translator, segmentor or classifier (see pseudohealthy_lib.evaluate). "
                                   "Several MODELs: one recipe trained with different seeds; prints the spread across seeds.")
    p.add_argument("model", nargs="+", help="zoo name, run folder or checkpoint.pt (several: seeds of one recipe)")
    p.add_argument("--data", required=True, help="prepared .npz (phantom or real data)")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="test")
    p.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                   help="add the reference rows to a translator's result: doing nothing, oracle, inpainting "
                        "with the true mask, intensity threshold (default: on)")
    p.add_argument("--segmentor", default=None, help="f_pre for healthiness: zoo name or checkpoint")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("zoo", help="list the model zoo, or train the models it is missing",
                       description="Without options: every model with its recipe and whether it is shipped. "
                                   "--train NAME ... trains and exports the missing ones ('all' for every recipe).")
    p.add_argument("--train", nargs="+", metavar="NAME", default=None)
    p.add_argument("--reevaluate", nargs="+", metavar="NAME", default=None,
                   help="evaluate shipped models again with the current metrics and store them in their manifests")
    p.set_defaults(func=_zoo)

    argv = sys.argv[1:] if argv is None else list(argv)
    a = ap.parse_args(argv)
    a.argv = argv
    try:
        a.func(a)
    # User mistakes (bad data, bad options, paths that are missing, folders or not allowed) get one
    # line and exit code 2; anything else is a bug in the library and keeps its traceback.
    except (DataError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
