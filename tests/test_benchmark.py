"""The benchmark (pseudohealthy_lib.benchmark): one table per test set, and its leaderboard file."""
import json

import numpy as np
import pytest
import torch

from pseudohealthy_lib import benchmark as B
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib import evaluate as E
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
    assert list(table.index[:4]) == ["(do nothing)", "(oracle)", "(inpainting)", "(intensity threshold)"]
    assert table.loc["(intensity threshold)", "auprc"] == pytest.approx(refs["intensity threshold"]["auprc"])
    assert np.isnan(table.loc["(intensity threshold)", "identity"]) and not table.loc["a function", "given the mask"]
    assert table.loc["nothing", "identity"] == pytest.approx(1.0, abs=1e-5)
    assert table.loc["nothing", "psnr_lesion"] == pytest.approx(refs["do nothing"]["psnr_lesion"])
    assert table.loc["nothing", "healthiness"] == pytest.approx(0.0)     # the perfect judge finds every lesion
    assert table.loc["(oracle)", "psnr_lesion"] == E.PSNR_CEILING
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
    table["flag"] = np.bool_(True)                                # numpy scalars must not break the JSON
    table["endless"] = np.inf                                     # nor an infinite value
    board = B.write_leaderboard(table, tmp_path / "board.json", "tiny")
    back = json.loads((tmp_path / "board.json").read_text())      # strict JSON: no Infinity or NaN
    assert back == json.loads(json.dumps(board)) and back["phantom"]["seed"] == B.SEED
    assert back["rows"]["(oracle)"]["endless"] is None and back["rows"]["(oracle)"]["psnr_lesion"] == E.PSNR_CEILING and back["rows"]["nothing"]["identity"] == pytest.approx(1.0, abs=1e-5)


def test_unknown_set_is_named():
    from pseudohealthy_lib.utils import OptionError
    with pytest.raises(OptionError, match="unknown benchmark set 'brain'"):
        B.benchmark_data("brain")


def test_kept_outputs_worst_cases_and_pr_curves(tiny_prepared):
    from pseudohealthy_lib.evaluate import evaluate
    from pseudohealthy_lib.utils import OptionError
    data = load_prepared(tiny_prepared)
    judge = Perfect(data)
    x = data.images.astype(np.float32)
    truth = {np.float32(x[i]).tobytes(): data.healthy[i].astype(np.float32) for i in range(len(data))}

    def oracle(t):                                   # knows each slice's healthy truth: a perfect detector too
        x01 = ((t[:, 0] + 1) / 2).numpy().astype(np.float32)
        return torch.from_numpy(np.stack([truth.get(xi.tobytes(), xi) for xi in x01]))[:, None] * 2 - 1

    table, kept = B.benchmark({"oracle": oracle, "half": lambda t: t * 0.5}, data=data, judge=judge,
                              references=False, keep_outputs=True)
    half = kept["half"][0]
    assert half.outputs.shape == x.shape and half.outputs.dtype == np.float16
    assert np.abs(half.outputs - np.clip(((x * 2 - 1) * 0.5 + 1) / 2, 0, 1)).max() < 2e-3
    assert "outputs" not in half and kept["oracle"][0].outputs is not None
    psnr = np.asarray(half.per_slice["psnr_lesion"], float)
    worst = B.worst_cases(half, 2)
    best = B.worst_cases(half, 1, higher_is_better=False)                   # the highest PSNR, read as "worst"
    assert psnr[best[0]] == np.nanmax(psnr)
    area = data.masks.reshape(len(data), -1).sum(1)
    big = B.worst_cases(half, 50, min_area=int(np.median(area[area > 0])), masks=data.masks)
    assert len(big) and (area[big] >= np.median(area[area > 0])).all()
    lesion = np.nonzero(data.labels == 1)[0]
    assert set(worst) <= set(lesion) and psnr[worst[0]] == np.nanmin(psnr) and psnr[worst[0]] <= psnr[worst[1]]
    curves = B.pr_curves(kept, data)
    assert list(curves) == ["(intensity threshold)", "oracle", "half"]
    assert curves["oracle"]["auprc"] > 0.95 > curves["half"]["auprc"]     # the truth changes the lesion only
    assert curves["oracle"]["auprc"] == pytest.approx(table.loc["oracle", "auprc"], abs=1e-6)
    with pytest.raises(OptionError, match="no outputs kept for 'plain'"):
        B.pr_curves({"plain": [evaluate(lambda t: t, data, "all")]}, data)


def test_an_inpainter_given_the_mask_gets_no_detection_score(tiny_prepared):
    data = load_prepared(tiny_prepared)

    class Told(torch.nn.Module):
        needs_mask = True

        def translate(self, x, mask):
            return x * (1 - mask) - mask                 # blacks out exactly the lesion it was given

    table = B.benchmark({"told": Told()}, data=data, judge=Perfect(data), references=False)
    assert table.loc["told", "given the mask"] and np.isnan(table.loc["told", "auprc"])
    assert np.isfinite(table.loc["told", "psnr_lesion"])


def test_the_guide_is_computed_from_the_table():
    import pandas as pd
    from pseudohealthy_lib.utils import OptionError
    table = pd.DataFrame({
        "(do nothing)": {"identity": 1.0, "healthiness": 0.0, "psnr_lesion": 10.0, "slices/s": np.nan, "given the mask": np.nan},
        "(oracle)": {"identity": 0.99, "healthiness": 1.0, "psnr_lesion": np.inf, "slices/s": np.nan, "given the mask": np.nan},
        "fast": {"identity": 0.90, "healthiness": 0.90, "psnr_lesion": 14.5, "slices/s": 300.0, "given the mask": False},
        "faithful": {"identity": 0.99, "healthiness": 0.80, "psnr_lesion": 16.0, "slices/s": 50.0, "given the mask": False},
        "careful": {"identity": 0.97, "healthiness": 0.95, "psnr_lesion": 13.0, "slices/s": 900.0, "given the mask": False},
        "blind": {"identity": 0.99, "healthiness": 0.40, "psnr_lesion": 15.0, "slices/s": 600.0, "given the mask": False},
        "told": {"identity": 0.995, "healthiness": 0.99, "psnr_lesion": 22.0, "slices/s": 5.0, "given the mask": True},
    }).T
    g = B.guide(table)
    assert g["fidelity"] == ("faithful", "lesion PSNR 16.00 dB")      # the told inpainter and the oracle are apart
    assert g["given"] == ("told", "lesion PSNR 22.00 dB")
    assert g["identity"] == ("fast", "identity 0.900")               # healthy, gains 4 dB, not told the mask
    assert B.guide(table, gain_db=3)["identity"] == ("careful", "identity 0.970")   # 'careful' gains 3 dB
    assert g["speed"] == ("fast", "300 slices per second")            # 'careful' gains only 3 dB, 'blind' is not healthy
    worse = table.drop(index=["told"]).assign(healthiness=0.5)
    assert B.guide(worse)["identity"] == ("no method reaches healthiness 0.85 and gains 4 dB", "-")
    assert B.guide(worse)["given"] == ("no method given the mask", "-")
    assert B.guide(table, gain_db=7)["speed"] == ("no method reaches healthiness 0.85 and gains 7 dB", "-")
    assert B.guide(table, healthy_enough=0.92, gain_db=3)["speed"] == ("careful", "900 slices per second")
    # timings are noisy: a useful method within 20 % of the fastest is named beside it, a slower one is not
    close = table.assign(**{"slices/s": table["slices/s"].where(table.index != "careful", 260.0),
                            "healthiness": table["healthiness"].where(table.index != "careful", 0.9)})
    close.loc["careful", "psnr_lesion"] = 15.0
    assert B.guide(close)["speed"] == ("fast", "300 slices per second; within 20% of it, as good given the noise: careful (260)")
    assert B.guide(close, speed_tie=0.1)["speed"] == ("fast", "300 slices per second")
    with pytest.raises(OptionError, match="no '\\(do nothing\\)' row"):
        B.guide(table.drop(index=["(do nothing)"]))


def test_the_tradeoff_plot_has_a_point_per_row_with_seed_error_bars():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    table = pd.DataFrame({"(do nothing)": {"identity": 1.0, "healthiness": 0.0},
                          "a": {"identity": 0.9, "healthiness": 0.8, "healthiness sd": 0.05},
                          "b": {"identity": np.nan, "healthiness": 0.5}}).T
    ax = B.plot_tradeoff(table, "identity", "healthiness")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["(do nothing)", "a"]   # b has no identity: not drawn
    bars = [c for c in ax.containers if c.has_yerr]
    assert len(bars) == 1 and bars[0].lines[0].get_ydata()[0] == pytest.approx(0.8)
    plt.close("all")


def test_formatted_shows_the_spread_over_seeds_where_there_is_one():
    import pandas as pd
    table = pd.DataFrame({"one": {"psnr_lesion": 15.2, "psnr_lesion sd": np.nan, "identity": 0.99},
                          "three": {"psnr_lesion": 16.76123, "psnr_lesion sd": 0.3321, "identity": np.nan}}).T
    f = B.formatted(table, ["psnr_lesion", "identity"], digits=2)
    assert f.loc["one", "psnr_lesion"] == "15.20" and f.loc["three", "psnr_lesion"] == "16.76 ± 0.33"
    assert f.loc["three", "identity"] == "" and f.loc["one", "identity"] == "0.99"


def test_the_intensity_reference_scores_dark_lesions_by_their_darkness():
    from pseudohealthy_lib.evaluate import _intensity_row
    rng = np.random.default_rng(0)
    x = 0.5 + 0.02 * rng.standard_normal((3, 24, 24))
    masks = np.zeros_like(x, bool)
    masks[:, 8:12, 8:12] = True
    dark, bright = x.copy(), x.copy()
    dark[masks] -= 0.2                                            # hypodense, as CT tumours
    bright[masks] += 0.2                                          # hyperintense, as FLAIR lesions
    d, b = _intensity_row(dark.astype(np.float32), masks), _intensity_row(bright.astype(np.float32), masks)
    assert d["lesion_darker"] and not b["lesion_darker"]
    assert d["auprc"] == pytest.approx(1.0) and b["auprc"] == pytest.approx(1.0)   # either way the intensity finds it
    from pseudohealthy_lib import metrics as M
    assert M.detection(dark, masks, M.tissue_mask(dark))["auprc"] < 0.1         # scored as bright, a dark lesion is missed


def test_a_shared_judge_cache_gives_the_same_scores_with_less_judging(tiny_prepared):
    from pseudohealthy_lib.evaluate import evaluate
    data = load_prepared(tiny_prepared)
    judge = Perfect(data)
    calls = []
    predict = judge.predict
    judge.predict = lambda x: calls.append(len(x)) or predict(x)
    f = lambda t: t * 0.5                                             # noqa: E731
    plain = evaluate(f, data, "all", segmentor=judge)
    n_plain = sum(calls)
    calls.clear()
    cache = {}
    first, second = (evaluate(f, data, "all", segmentor=judge, judge_cache=cache) for _ in range(2))
    assert sum(calls) < 2 * n_plain and set(cache) == {"on_in", "judge"}
    for r in (first, second):
        for k in ("healthiness", "healthiness_smile", "healthiness_input", "psnr_lesion"):
            assert r[k] == pytest.approx(plain[k])
        assert r["judge"] == plain["judge"]


def test_models_and_judge_are_loaded_on_the_asked_device(tiny_prepared, monkeypatch):
    seen, real = [], B.load_model
    monkeypatch.setattr(B, "load_model", lambda spec, device="cpu": seen.append(str(device)) or real(spec, device))
    data = load_prepared(tiny_prepared)
    table = B.benchmark({"f": lambda x: x, "g": [lambda x: x, lambda x: x * 0.9]}, data=data, judge=Perfect(data),
                        references=False, device="cpu:0")
    assert seen == ["cpu:0"] * 4 and list(table.index) == ["f", "g"]     # the judge and each of the three models


def test_what_each_model_was_trained_with_is_a_column(tiny_prepared):
    from pseudohealthy_lib.methods import PHSGAN, SMILE, Diffusion
    cfg = lambda method, **o: presets.config(method, "fast", options=o)          # noqa: E731
    assert PHSGAN(cfg("phsgan", setting="paired")).trained_with() == ("lesion masks",)
    assert PHSGAN(cfg("phsgan", setting="unpaired")).trained_with() == ("unpaired lesion masks",)
    assert PHSGAN(cfg("phsgan", setting="gan")).trained_with() == ()
    assert Diffusion(cfg("diffusion", healthy="twins")).trained_with() == ("healthy twins (phantom only)",)
    assert Diffusion(cfg("diffusion", healthy="slices")).trained_with() == ()
    assert SMILE(cfg("smile", labelled=0.25)).trained_with() == ("lesion masks of 25% of the training slices",)
    assert ANTGAN(cfg("antgan")).trained_with() == ("lesion masks",)          # the anomaly-mask loss (Eq. 2)
    assert ANTGAN(cfg("antgan", **ANTGAN.variants["cyclegan"])).trained_with() == ()             # no mask in its losses
    data = load_prepared(tiny_prepared)
    table = B.benchmark({"paired": PHSGAN(cfg("phsgan", setting="paired")), "f": lambda x: x},
                        data=data, judge=Perfect(data))
    assert table.loc["paired", "trained with"] == "lesion masks" and table.loc["f", "trained with"] == ""
    shown = B.formatted(table, ["trained with", "identity"])
    assert shown.loc["paired", "trained with"] == "lesion masks" and shown.loc["(do nothing)", "trained with"] == ""
