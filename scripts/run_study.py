"""Run one of ANT-GAN's downstream studies and record every run (pseudohealthy_lib.downstream).

    python scripts/run_study.py segmentation [--repeats 5]

Runs already recorded in ``pseudohealthy_lib/records/downstream.jsonl`` with the same config are
skipped, so an interrupted study resumes; each run also resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pseudohealthy_lib import downstream  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("study", choices=sorted(downstream.STUDIES))
    ap.add_argument("--repeats", type=int, default=None, help="the first N folds or draws only")
    a = ap.parse_args()
    for row in downstream.run_study(a.study, repeats=a.repeats):
        print({k: v for k, v in row.items() if k not in ("config", "by_subject", "hardware")}, flush=True)
    print(downstream.study_table(a.study).round(3).to_string())
