"""The benchmark (pseudohealthy_lib.benchmark): one table per test set, and its leaderboard file."""
import json

import numpy as np
import pytest
import torch

from pseudohealthy_lib import benchmark as B
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.evaluate import DoNothing, compute_references
from pseudohealthy_lib.methods import ANTGAN
from pseudohealthy_lib import presets


class Perfect(torch.nn.Module):
    """A judge that finds exactly the true lesion: it knows the test slices' masks."""

    def __init__(self, data):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.table = {np.float32(data.images[i]).tobytes(): data.masks[i] for i in range(len(data))}

    def predict(self, x):
        out = [torch.from_numpy(self.table.get(((xi[0] + 1) / 2).numpy().astype(np.float32).tobytes(),
                                               np.zeros(xi.shape[1:], np.uint8)).astype(np.float32)) for xi in x]
        return torch.stack(out)[:, None]


def test_benchmark_rows_references_seeds_and_leaderboard(tiny_prepared, tmp_path):
    data = load_prepared(tiny_prepared)
    judge = Perfect(data)
    net = ANTGAN(presets.config("antgan", "fast", options={"unet_downs": 5}))
    models = {"nothing": DoNothing(), "a function": lambda x: x * 0.5, "two seeds": [lambda x: x * 0.9, lambda x: x * 0.8],
              "a network": net}
    table = B.benchmark(models, data=data, judge=judge)
    refs = compute_references(data, "all", judge)
    assert list(table.index[:3]) == ["(do nothing)", "(oracle)", "(inpainting)"]
    assert table.loc["nothing", "identity"] == pytest.approx(1.0, abs=1e-5)
    assert table.loc["nothing", "psnr_lesion"] == pytest.approx(refs["do nothing"]["psnr_lesion"])
    assert table.loc["nothing", "healthiness"] == pytest.approx(0.0)     # the perfect judge finds every lesion
    assert table.loc["(oracle)", "psnr_lesion"] == np.inf
    assert table.loc["(do nothing)", "psnr_lesion"] < table.loc["(inpainting)", "psnr_lesion"]
    # two seeds: their mean and their spread
    from pseudohealthy_lib.evaluate import evaluate
    vals = [evaluate(f, data, "all", segmentor=judge)["mae_lesion"] for f in models["two seeds"]]
    two = B.benchmark({"s": models["two seeds"]}, data=data, judge=judge, references=False)
    assert list(two.index) == ["s"] and two.loc["s", "seeds"] == 2
    psnr = [evaluate(f, data, "all", segmentor=judge)["psnr_lesion"] for f in models["two seeds"]]
    assert two.loc["s", "psnr_lesion"] == pytest.approx(np.mean(psnr))
    assert two.loc["s", "psnr_lesion sd"] == pytest.approx(np.std(psnr, ddof=1)) and vals[0] != vals[1]
    assert np.isnan(table.loc["a function", "params (M)"]) and table.loc["a function", "slices/s"] > 0
    expected = sum(p.numel() for k in net.exported() for p in net.nets[k].parameters()) / 1e6
    assert table.loc["a network", "params (M)"] == pytest.approx(expected)
    board = B.write_leaderboard(table, tmp_path / "board.json", "tiny")
    back = json.loads((tmp_path / "board.json").read_text())      # strict JSON: no Infinity or NaN
    assert back == json.loads(json.dumps(board)) and back["phantom"]["seed"] == B.SEED
    assert back["rows"]["(oracle)"]["psnr_lesion"] is None and back["rows"]["nothing"]["identity"] == pytest.approx(1.0, abs=1e-5)


def test_unknown_set_is_named():
    from pseudohealthy_lib.utils import OptionError
    with pytest.raises(OptionError, match="unknown benchmark set 'brain'"):
        B.benchmark_data("brain")
