"""Evaluate a pseudo-healthy generator on a prepared dataset: every metric the book reports.

``python -m pseudohealthy_lib evaluate MODEL --data FILE [--json]`` calls :func:`evaluate`.
MODEL is a zoo name, a run folder or a ``checkpoint.pt``. Metrics that need the phantom's
healthy ground truth are ``None`` on real data.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import metrics as M
from .data import preprocess as pp
from .data.prepared import PairedDataset


def load_model(spec: str, device: str | torch.device = "cpu"):
    """A trained method from a zoo name, a run folder or a checkpoint file (eval mode)."""
    from . import zoo
    from .engine import CHECKPOINT, TrainConfig
    from .methods import get_method

    path = Path(spec)
    if path.is_dir():
        path = path / CHECKPOINT
    if path.is_file():
        s = torch.load(path, map_location="cpu", weights_only=True)
        method = get_method(s["config"]["method"])(TrainConfig.from_dict(s["config"]))
        for k, net in method.nets.items():
            net.load_state_dict(s["nets"][k])
        method.manifest = None
        return method.to(device).eval()
    if spec in zoo.available():
        return zoo.load_pretrained(spec, device)
    raise FileNotFoundError(f"{spec}: neither a checkpoint, a run folder nor a zoo model "
                            f"(zoo: {', '.join(zoo.available()) or 'empty'})")


class DoNothing(torch.nn.Module):
    """The baseline every pseudo-healthy generator has to beat: output = input."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))      # so that it has a device

    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        return x


TABLE_COLUMNS = ["psnr_healthy", "identity", "healthiness", "dice_diff", "ap_diff",
                 "psnr_lesion_gt", "ssim_lesion_gt", "change_on_healthy"]


def metrics_table(models: dict[str, str], columns=None, extra_rows: dict | None = None):
    """A pandas table of the test metrics recorded in zoo manifests (written by ``train``).

    ``models`` maps zoo name -> row label; ``extra_rows`` (label -> metrics dict, e.g. the
    do-nothing baseline computed with :func:`evaluate`) come first. Missing zoo models are
    reported, not skipped silently.
    """
    import pandas as pd

    from . import zoo

    columns = columns or TABLE_COLUMNS
    missing = [n for n in models if n not in zoo.available()]
    if missing:
        raise FileNotFoundError(f"not in the zoo ({zoo.zoo_dir()}): {', '.join(missing)}; "
                                "train them with `python -m pseudohealthy_lib zoo --train NAME ...`")
    rows = dict(extra_rows or {}) | {label: zoo.manifest(n)["metrics"] for n, label in models.items()}
    return pd.DataFrame({label: {c: m.get(c) for c in columns} for label, m in rows.items()}).T.astype(float)


@torch.no_grad()
def evaluate(model, data, split: str = "test", segmentor=None, batch_size: int = 16) -> dict:
    """Metrics of ``model`` (anything with ``translate(x)``: A -> B = pathological -> healthy)
    on the pathological slices of ``split``; images are compared in [0, 1].

    Keys of the returned dict::

        identity        PHS-GAN: MS-SSIM of the images outside the lesion (1 = untouched)
        healthiness     PHS-GAN: 1 - lesion pixels f_pre finds in G(x) / mean true lesion size
        healthiness_smile  SMILE's variant: normalised by f_pre's lesion pixels on the inputs
        psnr_healthy    ANT-GAN Table IV: PSNR of G(x) against x outside the lesion (dB)
        psnr_lesion_gt, ssim_lesion_gt   inside the lesion against the true healthy image
                        (BraTS 2023 inpainting scoring); *_input: the same for doing nothing
        dice_diff       Dice of |x - G(x)| > 0.1 against the lesion mask
        ap_diff         average precision of |x - G(x)| as a lesion detector (brain pixels)
        change_on_healthy  mean |G(x) - x| on healthy slices (should be ~0)
        slices_per_s    generator throughput
    """
    dev = next(model.parameters()).device
    ds = PairedDataset(data, split, label=1)
    if len(ds) == 0:
        raise ValueError(f"split '{split}' has no pathological slices")
    xs, ys, ms, gts = [], [], [], []
    t = 0.0
    for s in range(0, len(ds), batch_size):
        items = [ds[i] for i in range(s, min(s + batch_size, len(ds)))]
        x = torch.stack([it["image"] for it in items]).to(dev)
        t0 = time.perf_counter()
        y = model.translate(x)
        t += time.perf_counter() - t0
        xs.append(pp.from_tanh_range(x).cpu())
        ys.append(pp.from_tanh_range(y).float().clamp(0, 1).cpu())
        ms.append(torch.stack([it["mask"] for it in items]))
        if "healthy" in items[0]:
            gts.append(pp.from_tanh_range(torch.stack([it["healthy"] for it in items])))
    x, y, m = torch.cat(xs), torch.cat(ys), torch.cat(ms)
    gt = torch.cat(gts) if gts else None
    n = len(x)
    out = {
        "identity": float(np.mean([M.identity(y[i:i + 32], x[i:i + 32], m[i:i + 32]) for i in range(0, n, 32)])),
        "psnr_healthy": float(np.mean([M.psnr(y[i], x[i], 1 - m[i]) for i in range(n)])),
        "dice_diff": float(np.mean([M.dice_of_difference(y[i], x[i], m[i]) for i in range(n)])),
        "ap_diff": M.average_precision_of_difference(y, x, m, foreground=x > 0),
        "healthiness": None, "healthiness_smile": None,
        "psnr_lesion_gt": None, "ssim_lesion_gt": None, "psnr_lesion_input": None, "ssim_lesion_input": None,
    }
    if gt is not None:
        fid = [M.lesion_fidelity(y[i, 0], gt[i, 0], x[i, 0], m[i, 0]) for i in range(n)]
        base = [M.lesion_fidelity(x[i, 0], gt[i, 0], x[i, 0], m[i, 0]) for i in range(n)]
        out |= {"psnr_lesion_gt": float(np.mean([f["psnr"] for f in fid])),
                "ssim_lesion_gt": float(np.mean([f["ssim"] for f in fid])),
                "psnr_lesion_input": float(np.mean([f["psnr"] for f in base])),
                "ssim_lesion_input": float(np.mean([f["ssim"] for f in base]))}
    if segmentor is not None:
        sdev = next(segmentor.parameters()).device
        on_out = torch.cat([segmentor.predict((y[i:i + 32] * 2 - 1).to(sdev)).cpu() for i in range(0, n, 32)])
        on_in = torch.cat([segmentor.predict((x[i:i + 32] * 2 - 1).to(sdev)).cpu() for i in range(0, n, 32)])
        out["healthiness"] = M.healthiness(on_out, true_masks=m)
        out["healthiness_smile"] = M.healthiness(on_out, pred_masks_on_input=on_in)
    healthy = PairedDataset(data, split, label=0)
    if len(healthy):
        xh = torch.stack([healthy[i]["image"] for i in range(min(len(healthy), 64))]).to(dev)
        out["change_on_healthy"] = float((model.translate(xh).float() - xh).abs().mean() / 2)
    else:
        out["change_on_healthy"] = None
    out["slices_per_s"] = n / max(t, 1e-9)
    out["slices"] = n
    return out
