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

    a = ap.parse_args(argv)
    try:
        a.func(a)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
