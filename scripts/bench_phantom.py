"""Phantom generation speed: subjects per second (writes to a temporary folder).

Usage: python scripts/bench_phantom.py [--subjects 20] [--workers N]
"""
import argparse
import os
import tempfile
import time

from pseudohealthy_lib.data import phantom

ap = argparse.ArgumentParser()
ap.add_argument("--subjects", type=int, default=20)
ap.add_argument("--workers", type=int, default=None)
ap.add_argument("--lesion", default="glioma")
a = ap.parse_args()
with tempfile.TemporaryDirectory() as d:
    t = time.perf_counter()
    phantom.generate(d, a.subjects, seed=123, lesion=a.lesion, workers=a.workers, progress=False)
    dt = time.perf_counter() - t
print(f"{a.subjects} subjects ({a.lesion}, 4 modalities + healthy ground truth + seg) on "
      f"{os.cpu_count()} cores: {dt:.1f} s, {a.subjects / dt:.2f} subjects/s; "
      f"100 subjects would take about {100 * dt / a.subjects:.0f} s")
