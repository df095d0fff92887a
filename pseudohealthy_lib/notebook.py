"""First-cell helper of every chapter: environment report and run mode."""
from __future__ import annotations

import platform
import sys

from .config import fast_mode


def setup_notebook(seed: int = 0) -> dict:
    """Seed everything, pick matplotlib defaults, and print where and how the notebook runs."""
    import matplotlib.pyplot as plt
    import torch

    from .utils import seed_everything

    seed_everything(seed)
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "font.size": 9})
    if torch.cuda.is_available():
        device, preset = f"GPU: {torch.cuda.get_device_name(0)}", "colab"
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        device, preset = "Apple GPU (MPS)", "cpu"
    else:
        device, preset = f"CPU ({torch.get_num_threads()} threads)", "cpu"
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "preset": preset, "fast_mode": fast_mode(), "colab": "google.colab" in sys.modules}
    mode = "FAST smoke mode (PH_FAST=1): tiny data, results are not meaningful" if info["fast_mode"] else "full mode"
    print(f"{device} | torch {torch.__version__} | preset '{preset}' | {mode}")
    return info


def show_code(*objects) -> None:
    """Display the source of library functions or classes, syntax-highlighted: the code that runs,
    not a copy of it. Each block is headed by the file it comes from."""
    import inspect

    from IPython.display import Code, display

    for obj in objects:
        path = inspect.getsourcefile(obj) or "?"
        short = path[path.rfind("pseudohealthy_lib"):] if "pseudohealthy_lib" in path else path
        display(Code(f"# {short}\n" + inspect.getsource(obj), language="python"))
