"""Check the shipped diffusion models against issue 16's floors on a fresh phantom.

    python scripts/check_diffusion.py [diffusion diffusion-s1 diffusion-s2] [--seed 2026] [--subjects 8]
                                      [--level 0.15] [--draws 16]

The floors: inpainting with the true mask beats, inside the lesion (PSNR against the true
healthy image), both the classical inpainting given the same mask and the shipped ANT-GAN;
partial noising (``--level``, averaged over ``--draws`` noise draws, on every other slice) beats
the intensity threshold as a detector (AUPRC); sampling takes under a second per slice. The first model listed
is the one whose partial noising is checked: the coarse-noise model was checked with
``diffusion-coarse --level 0.1 --draws 16`` (level and draws chosen on the selection phantom). The
phantom's seed is one that no test, chapter or recipe trial uses. Rows are appended to
``pseudohealthy_lib/records/floors.jsonl``.
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
from pseudohealthy_lib.evaluate import compute_references, evaluate, load_model  # noqa: E402
from pseudohealthy_lib.utils import append_records                           # noqa: E402


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=["diffusion", "diffusion-s1", "diffusion-s2"])
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--subjects", type=int, default=8)
    ap.add_argument("--level", type=float, default=0.15)
    ap.add_argument("--draws", type=int, default=16)
    a = ap.parse_args(argv)
    judge = load_model(zoo.SEGMENTOR)
    data = load_prepared(default.phantom_dataset(a.subjects, "glioma", seed=a.seed))
    refs = compute_references(data, "all", judge)
    antgan = evaluate(load_model("antgan"), data, "all", segmentor=judge)
    row = {"check": "diffusion", "phantom": {"seed": a.seed, "subjects": a.subjects, "lesion": "glioma"},
           "git_commit": git_commit(), "inpainting_psnr_lesion": refs["inpainting"]["psnr_lesion"],
           "antgan_psnr_lesion": antgan["psnr_lesion"], "inpaint": {}}
    for spec in a.models:
        r = evaluate(load_model(spec), data, "all", segmentor=judge)
        row["inpaint"][spec] = {k: r[k] for k in ("psnr_lesion", "ssim_lesion", "identity", "healthiness")}
        row["inpaint"][spec]["seconds_per_slice"] = 1 / r["slices_per_s"]
        print(f"{spec} inpainting: lesion PSNR {r['psnr_lesion']:.2f} dB, {1 / r['slices_per_s']:.3f} s/slice", flush=True)
    psnr = [v["psnr_lesion"] for v in row["inpaint"].values()]
    row["inpaint_psnr_mean"], row["inpaint_psnr_std"] = float(np.mean(psnr)), float(np.std(psnr, ddof=1)) if len(psnr) > 1 else 0.0
    half = data.subset(np.arange(0, len(data), 2))
    partial = load_model(a.models[0]).inference(mode="partial", noise_level=a.level, draws=a.draws)
    p = evaluate(partial, half, "all", segmentor=judge, references=True)
    row["partial"] = {"level": a.level, "draws": a.draws, "slices": len(half), "auprc": p["auprc"],
                      "dice_max": p["dice_max"], "identity": p["identity"], "healthiness": p["healthiness"],
                      "seconds_per_slice": 1 / p["slices_per_s"],
                      "threshold_auprc": p["references"]["intensity threshold"]["auprc"]}
    row["floors"] = {
        "inpaint above classical inpainting": min(psnr) > row["inpainting_psnr_lesion"],
        "inpaint above ANT-GAN": min(psnr) > row["antgan_psnr_lesion"],
        "partial AUPRC above the intensity threshold": p["auprc"] > row["partial"]["threshold_auprc"],
        "under 1 s per slice": max(v["seconds_per_slice"] for v in row["inpaint"].values()) < 1
                               and row["partial"]["seconds_per_slice"] < 1}
    print(f"inpainting {np.mean(psnr):.2f} ± {row['inpaint_psnr_std']:.2f} dB over {len(psnr)} seeds; "
          f"classical inpainting {row['inpainting_psnr_lesion']:.2f}, ANT-GAN {row['antgan_psnr_lesion']:.2f}")
    print(f"partial noising (level {a.level}, {a.draws} draws): AUPRC {p['auprc']:.3f} against the intensity "
          f"threshold's {row['partial']['threshold_auprc']:.3f}, {row['partial']['seconds_per_slice']:.2f} s/slice")
    for k, ok in row["floors"].items():
        print(f"  {k}: {'met' if ok else 'NOT met'}")
    append_records(REPO / "pseudohealthy_lib" / "records" / "floors.jsonl", row)
    return row


if __name__ == "__main__":
    main()
