"""Execute notebooks in place, top to bottom in one kernel, so their stored outputs are fresh.

Usage: python scripts/execute_notebooks.py [book/01_data.ipynb ...]   (default: every chapter)
Run it without PH_FAST: the stored outputs are what a reader of the notebook sees first.
"""
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

root = Path(__file__).resolve().parent.parent
paths = [Path(p) for p in sys.argv[1:]] or sorted((root / "book").glob("*.ipynb"))
for p in paths:
    nb = nbformat.read(p, as_version=4)
    t = time.perf_counter()
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(p.parent)}}).execute()
    nbformat.write(nb, p)
    print(f"{p}: executed in {time.perf_counter() - t:.0f} s")
