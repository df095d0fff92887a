"""Check a shipped translator against the book's floors on a fresh phantom.

    python scripts/check_floors.py MODEL [MODEL ...] [--seed 2026] [--subjects 20] [--floors phsgan] [--lesion stroke]

MODEL is a zoo name or a run folder; several MODELs are seeds of one recipe and are checked one
by one, then summarised as mean and standard deviation. The phantom is generated with a seed
that no test, no chapter and no recipe trial uses (2026 by default), and every slice of it is
scored. The floors are :data:`pseudohealthy_lib.evaluate.FLOORS` (ANT-GAN's chapter) or another set of
:data:`pseudohealthy_lib.evaluate.FLOOR_SETS` (``--floors phsgan``). ``--lesion stroke`` generates a
stroke phantom instead of a glioma one.

The results are appended to ``pseudohealthy_lib/records/floors.jsonl``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pseudohealthy_lib import zoo                                         # noqa: E402
from pseudohealthy_lib.data import default, load_prepared                 # noqa: E402
from pseudohealthy_lib.engine import git_commit                           # noqa: E402
from pseudohealthy_lib.evaluate import FLOOR_SETS, check_floors, compute_references, evaluate, load_model  # noqa: E402
from pseudohealthy_lib.utils import append_records                          # noqa: E402

def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--subjects", type=int, default=20)
    ap.add_argument("--floors", choices=sorted(FLOOR_SETS), default="antgan")
    ap.add_argument("--lesion", choices=["glioma", "stroke", "liver"], default="glioma")
    ap.add_argument("--modality", choices=["flair", "t1", "t1ce", "t2"], default="flair")
    ap.add_argument("--judge", default=None, help="zoo segmentor that judges healthiness (default: the zoo's judge of --lesion)")
    a = ap.parse_args(argv)
    FLOORS = FLOOR_SETS[a.floors]
    judge = load_model(a.judge or zoo.judge_name(a.lesion, a.modality))
    data = load_prepared(default.phantom_dataset(a.subjects, a.lesion, seed=a.seed, modality=a.modality))
    refs = compute_references(data, "all", judge)
    nothing = refs["do nothing"]
    rows = []
    for spec in a.models:
        res = evaluate(load_model(spec), data, "all", segmentor=judge)
        phantom = {"seed": a.seed, "subjects": a.subjects, "lesion": a.lesion} | ({"modality": a.modality}
                                                                                   if a.modality != "flair" else {})
        row = {"model": spec, "phantom": phantom,
               "floors": a.floors, "git_commit": git_commit(),
               "judge": res.get("judge"), "do_nothing": {k: nothing[k] for k in FLOORS if k in nothing},
               # a yardstick, not a floor: the classical inpainting handed the true mask
               "inpainting": {k: refs["inpainting"][k] for k in FLOORS if k in refs["inpainting"]}}
        for key, r in check_floors(res, nothing, FLOORS).iterrows():
            row[key] = {"value": r["value"], "passes": r["met"], "floor": r["floor"]}
        rows.append(row)
        print(f"{spec}: " + ", ".join(f"{k} {row[k]['value']:.3f} {'ok' if row[k]['passes'] else 'FAILS'}"
                                        for k in FLOORS))
    if len(rows) > 1:
        for key in FLOORS:
            v = [r[key]["value"] for r in rows]
            print(f"  {key}: {np.mean(v):.3f} ± {np.std(v, ddof=1):.3f} over {len(v)} seeds")
    print("do nothing:", {k: round(v, 3) for k, v in rows[0]["do_nothing"].items()})
    print("inpainting with the true mask:", {k: round(v, 3) for k, v in rows[0]["inpainting"].items()})
    append_records(REPO / "pseudohealthy_lib" / "records" / "floors.jsonl", *rows)
    return rows


if __name__ == "__main__":
    main()
