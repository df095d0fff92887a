"""Pseudo-healthy metrics on cases with known answers, and the evaluate command."""
import json

import numpy as np
import pytest
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_msssim

from pseudohealthy_lib import metrics as M
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data import preprocess as pp
from pseudohealthy_lib.evaluate import evaluate


def test_ms_ssim_scales():
    assert M.ms_ssim_scales(256) == 5 and M.ms_ssim_scales(161) == 5
    assert M.ms_ssim_scales(160) == 4 and M.ms_ssim_scales(128) == 4
    assert M.ms_ssim_scales(64) == 3 and M.ms_ssim_scales(32) == 2


def test_ms_ssim_against_torchmetrics():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 192, 192, generator=g)
    b = (a + 0.1 * torch.randn(2, 1, 192, 192, generator=g)).clamp(0, 1)
    ref = tm_msssim(b, a, data_range=1.0, normalize="relu")                 # five standard scales
    assert M.ms_ssim(b, a) == pytest.approx(float(ref), rel=1e-5)
    small_a, small_b = a[..., :128, :128], b[..., :128, :128]
    betas = torch.tensor(M.MS_SSIM_BETAS[:4])
    ref4 = tm_msssim(small_b, small_a, data_range=1.0, betas=tuple((betas / betas.sum()).tolist()), normalize="relu")
    assert M.ms_ssim(small_b, small_a) == pytest.approx(float(ref4), rel=1e-5)
    assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-5)


def test_identity_ignores_the_lesion():
    x = torch.rand(1, 1, 64, 64)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:40, 20:40] = 1
    y = x.clone()
    y[..., 20:40, 20:40] = 0                      # changed only inside the lesion
    assert M.identity(y, x, mask) == pytest.approx(1.0, abs=1e-5)
    y[..., :5, :] = 1                             # now also outside
    assert M.identity(y, x, mask) < 0.99


def test_healthiness_known_cases():
    true = np.zeros((2, 4, 4))
    true[0, :2, :2] = 1                           # lesion sizes 4 and 4 -> mean 4
    true[1, 2:, 2:] = 1
    nothing = np.zeros((2, 4, 4))
    assert M.healthiness(nothing, true_masks=true) == 1.0            # segmentor finds nothing: h = 1
    assert M.healthiness(true, true_masks=true) == 0.0               # finds every lesion: h = 0
    half = np.zeros((2, 4, 4))
    half[0, 0, :2] = 1                            # 2 pixels in slice 0, 0 in slice 1 -> mean 1
    assert M.healthiness(half, true_masks=true) == pytest.approx(1 - 1 / 4)
    assert M.healthiness(half, pred_masks_on_input=half) == 0.0      # SMILE's normalisation
    with pytest.raises(ValueError):
        M.healthiness(half)


def test_lesion_fidelity_and_difference_metrics():
    truth = np.tile(np.linspace(0.2, 0.8, 32), (32, 1))        # healthy tissue: a smooth ramp
    image = truth.copy()
    mask = np.zeros((32, 32), bool)
    mask[10:20, 10:20] = True
    image[mask] = 1.0                             # a bright lesion
    perfect = M.lesion_fidelity(truth, truth, image, mask)
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0)
    nothing = M.lesion_fidelity(image, truth, image, mask)
    assert nothing["psnr"] < 10
    assert M.dice_of_difference(truth, image, mask) == 1.0          # changed exactly the lesion
    assert M.dice_of_difference(image, image, mask) == 0.0
    assert M.average_precision_of_difference(truth[None], image[None], mask[None]) == pytest.approx(1.0)


class Oracle(torch.nn.Module):
    """A 'model' whose output is a fixed table of images (for hand-computed answers)."""

    def __init__(self, table):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.table = table

    def translate(self, x):
        return torch.cat([self.table.get(xi.numpy().tobytes(), xi[None]) for xi in x])


def test_evaluate_do_nothing_and_oracle(tiny_prepared):
    data = load_prepared(tiny_prepared)
    test = data.select("test", 1)
    ident = Oracle({})                                              # G(x) = x
    r = evaluate(ident, data, "test")
    assert r["identity"] == pytest.approx(1.0, abs=1e-5) and r["psnr_healthy"] == float("inf")
    assert r["dice_diff"] == 0.0 and r["change_on_healthy"] == 0.0
    assert r["psnr_lesion_gt"] == pytest.approx(r["psnr_lesion_input"]) and r["slices"] == len(test)
    # an oracle that returns the phantom's healthy truth is perfect inside the lesion
    table = {}
    for i in test:
        x = pp.to_tanh_range(torch.from_numpy(data.images[i].astype(np.float32)))[None]
        table[x.numpy().tobytes()] = pp.to_tanh_range(torch.from_numpy(data.healthy[i].astype(np.float32)))[None, None]
    r2 = evaluate(Oracle(table), data, "test")
    assert r2["psnr_lesion_gt"] == float("inf") and r2["ssim_lesion_gt"] == pytest.approx(1.0)
    assert r2["psnr_lesion_gt"] > r2["psnr_lesion_input"]


def test_evaluate_cli_json(tiny_prepared, tmp_path, capsys):
    from pseudohealthy_lib.__main__ import main
    from pseudohealthy_lib.evaluate import load_model

    assert main(["train", "antgan", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "2",
                 "--out", str(tmp_path / "run"), "--set", "n_blocks=1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tiny_prepared), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    keys = {"identity", "healthiness", "psnr_healthy", "psnr_lesion_gt", "ssim_lesion_gt", "dice_diff", "ap_diff", "slices_per_s"}
    assert keys <= set(res) and res["healthiness"] is None               # no segmentor given
    # psnr_healthy by hand from the model's own outputs
    model, data = load_model(str(tmp_path / "run")), load_prepared(tiny_prepared)
    idx = data.select("test", 1)
    x = pp.to_tanh_range(torch.from_numpy(data.images[idx].astype(np.float32)))[:, None]
    y = pp.from_tanh_range(model.translate(x)).clamp(0, 1).numpy()
    x01, keep = pp.from_tanh_range(x).numpy(), 1 - data.masks[idx][:, None]
    by_hand = np.mean([10 * np.log10(1 / ((y[i] - x01[i])[keep[i] > 0] ** 2).mean()) for i in range(len(idx))])
    assert res["psnr_healthy"] == pytest.approx(by_hand, rel=1e-4)
    assert main(["evaluate", "no-such-model", "--data", str(tiny_prepared)]) == 2


def test_do_nothing_and_metrics_table(tiny_prepared):
    from pseudohealthy_lib import zoo
    from pseudohealthy_lib.evaluate import DoNothing, metrics_table

    data = load_prepared(tiny_prepared)
    base = evaluate(DoNothing(), data, "test")
    assert base["psnr_healthy"] == float("inf") and base["dice_diff"] == 0.0
    name = zoo.available()[0]
    t = metrics_table({name: "shipped"}, ["psnr_healthy", "identity"], extra_rows={"do nothing": base})
    assert list(t.index) == ["do nothing", "shipped"]
    assert t.loc["shipped", "psnr_healthy"] == pytest.approx(zoo.manifest(name)["metrics"].get("psnr_healthy", float("nan")), nan_ok=True)
    with pytest.raises(FileNotFoundError, match="not-a-model"):
        metrics_table({"not-a-model": "x"})
