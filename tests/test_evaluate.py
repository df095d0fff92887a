"""The one evaluation path: metrics on cases with known answers, uncertainty, reference rows,
every kind of model, mode restoration and the evaluate command."""
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as tm_msssim

from pseudohealthy_lib import evaluate as E
from pseudohealthy_lib import metrics as M
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data import preprocess as pp
from pseudohealthy_lib.utils import OptionError


def test_ms_ssim_scales():
    assert M.ms_ssim_scales(256) == 5 and M.ms_ssim_scales(161) == 5
    assert M.ms_ssim_scales(160) == 4 and M.ms_ssim_scales(128) == 4
    assert M.ms_ssim_scales(64) == 3 and M.ms_ssim_scales(32) == 2
    assert "4 of 5 scales at 128 px" in M.identity_note(128)


def test_ms_ssim_against_torchmetrics():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 1, 192, 192, generator=g)
    b = (a + 0.1 * torch.randn(2, 1, 192, 192, generator=g)).clamp(0, 1)
    ref = tm_msssim(b, a, data_range=1.0, normalize="relu")                 # five standard scales
    assert M.ms_ssim(b, a) == pytest.approx(float(ref), rel=1e-5)
    assert M.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-5)


def test_identity_is_per_slice_and_ignores_the_lesion():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(40, 1, 64, 64, generator=g)
    mask = torch.zeros(40, 1, 64, 64)
    mask[..., 20:40, 20:40] = 1
    y = x.clone()
    y[..., 20:40, 20:40] = 0                      # changed only inside the lesion: identity 1
    assert np.allclose(M.identity(y, x, mask), 1.0, atol=1e-5)
    y[:8, :, :10, :] = torch.rand(8, 1, 10, 64, generator=g)    # 8 of 40 slices changed outside too
    vals = M.identity(y, x, mask)
    assert vals.shape == (40,) and (vals[:8] < 0.95).all() and np.allclose(vals[8:], 1.0, atol=1e-5)
    one_by_one = [float(M.identity(y[i], x[i], mask[i])[0]) for i in range(40)]
    assert np.allclose(vals, one_by_one, atol=1e-6)
    # the mean over slices, not the mean of chunk means (chunks of 32 and 8 would give another value)
    chunks = np.mean([vals[:32].mean(), vals[32:].mean()])
    assert vals.mean() != pytest.approx(chunks, abs=1e-3)


def test_healthiness_known_cases():
    true = np.zeros((2, 4, 4))
    true[0, :2, :2] = 1
    true[1, 2:, 2:] = 1
    assert M.healthiness(np.zeros((2, 4, 4)), true_masks=true) == 1.0
    assert M.healthiness(true, true_masks=true) == 0.0
    half = np.zeros((2, 4, 4))
    half[0, 0, :2] = 1
    assert M.healthiness(half, true_masks=true) == pytest.approx(1 - 1 / 4)
    assert M.healthiness(half, pred_masks_on_input=half) == 0.0
    with pytest.raises(ValueError):
        M.healthiness(half)


def _lesion_case():
    truth = np.tile(np.linspace(0.2, 0.8, 48), (48, 1))          # healthy tissue: a smooth ramp
    truth[:, :6] = 0                                                # background
    image = truth.copy()
    mask = np.zeros((48, 48), bool)
    mask[18:30, 18:30] = True
    image[mask] = 1.0                                               # a bright lesion
    return truth, image, mask


def test_lesion_fidelity_known_cases_and_normalisation():
    truth, image, mask = _lesion_case()
    perfect = M.lesion_fidelity(truth, truth, image, mask)
    assert perfect["psnr"] == float("inf") and perfect["ssim"] == pytest.approx(1.0) and perfect["mae"] == 0
    assert perfect["bias"] == 0
    nothing = M.lesion_fidelity(image, truth, image, mask)
    assert nothing["psnr"] < 10 and nothing["ssim"] < 0.9
    # the bias has a sign: a bright lesion left is > 0, a hole painted black < 0, and they can
    # have the same PSNR (a half-bright ghost and a half-dark hole: |error| equal, sign opposite)
    assert nothing["bias"] == pytest.approx(nothing["mae"]) and nothing["bias"] > 0.3
    d = 0.15
    ghost, hole = truth.copy(), truth.copy()
    ghost[mask] += d
    hole[mask] -= d
    g, h = M.lesion_fidelity(ghost, truth, image, mask), M.lesion_fidelity(hole, truth, image, mask)
    assert g["psnr"] == pytest.approx(h["psnr"]) and g["bias"] == pytest.approx(-h["bias"])
    lo, hi = np.percentile(image[~mask & (image > 0)], [0.5, 99.5])
    assert g["bias"] == pytest.approx(d / (hi - lo))
    # the normalisation uses the visible tissue's percentiles: scaling every image changes nothing
    scaled = M.lesion_fidelity(3 * image, 3 * truth, 3 * image, mask)
    assert scaled["psnr"] == pytest.approx(nothing["psnr"]) and scaled["mae"] == pytest.approx(nothing["mae"])
    # MAE by hand: percentiles of the voided input's tissue
    lo, hi = np.percentile(image[~mask & (image > 0)], [0.5, 99.5])
    by_hand = np.abs((np.clip(image, lo, hi) - np.clip(truth, lo, hi)) / (hi - lo))[mask].mean()
    assert nothing["mae"] == pytest.approx(by_hand)
    # SSIM is computed on the whole images, then averaged in the lesion (not on masked-out images)
    o, t = M.percentile_normalize(image, image[~mask & (image > 0)]), M.percentile_normalize(truth, image[~mask & (image > 0)])
    assert nothing["ssim"] == pytest.approx(M.ssim_map(o, t)[mask].mean())


def test_detection_against_sklearn_and_brute_force():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 16, 16), bool)
    masks[:, 4:8, 4:8] = True
    scores = masks + 0.8 * rng.random(masks.shape)
    det = M.detection(scores, masks)
    assert det["auprc"] == pytest.approx(average_precision_score(masks.ravel(), scores.ravel()))
    brute = max(M.dice(scores > t, masks) for t in np.unique(scores))
    assert det["dice_max"] == pytest.approx(brute)
    perfect = M.detection(masks.astype(float), masks)
    assert perfect["auprc"] == 1.0 and perfect["dice_max"] == 1.0
    chance = M.detection(rng.random(masks.shape), masks)
    assert chance["auprc"] < 0.2                                     # about the lesion share, 1/16
    region = np.zeros_like(masks)
    region[:, :8, :8] = True                                         # judging part of the image only
    assert M.detection(scores, masks, region)["auprc"] == pytest.approx(
        average_precision_score(masks[region], scores[region]))
    curve = M.detection(scores, masks, curve=True)                  # the curve, for plotting
    assert curve["auprc"] == det["auprc"] and "precision" not in det
    rec_at = lambda t: (scores[masks] >= t).mean()                   # noqa: E731  recall at threshold t, by hand
    assert curve["recall"][0] == 1.0 and curve["recall"][-1] == 0.0 and np.all(np.diff(curve["recall"]) <= 0)
    assert curve["recall"][len(curve["recall"]) // 2] in {rec_at(t) for t in np.unique(scores)}
    assert curve["precision"].max() == 1.0                            # the top scores are all lesion
    assert np.isnan(M.detection(scores, np.zeros_like(masks), curve=True)["precision"]).all()


def test_tissue_psnr_excludes_background():
    truth, image, mask = _lesion_case()
    out = image.copy()
    out[~mask & (image > 0)] += 0.1                                 # every tissue pixel off by 0.1
    keep = M.tissue_mask(image) & ~mask
    assert M.psnr(out, image, keep) == pytest.approx(20.0)         # 10 log10(1 / 0.01)
    assert M.psnr(out, image, ~mask) > 20.5                         # background would flatter it


def test_summarise_weights_subjects_equally_and_bootstrap():
    values = np.array([1.0, 0.0, 0.0, 0.0])
    subjects = np.array(["a", "b", "b", "b"])
    s = E.summarise(values, subjects)
    assert s["mean"] == 0.25 and s["subject_mean"] == 0.5 and s["n_subjects"] == 2
    lo, hi = E.bootstrap_ci([2.0] * 5)
    assert lo == hi == 2.0
    lo, hi = E.bootstrap_ci(np.arange(20.0))
    assert lo < 9.5 < hi and hi - lo < 10


def _result(values_by_subject):
    subjects = np.repeat(list(values_by_subject), 2)
    values = np.repeat(list(values_by_subject.values()), 2).astype(float)
    return E.Result(per_slice={"m": values}, subjects=subjects)


def test_paired_test():
    base = {f"s{i}": float(i) for i in range(8)}
    better = _result({k: v + 1 + 0.1 * i for i, (k, v) in enumerate(base.items())})
    t = E.paired_test(better, _result(base), "m")
    assert t["verdict"] == "a better" and t["p"] < 0.01 and t["n"] == 8
    assert E.paired_test(better, _result(base), "m", higher_is_better=False)["verdict"] == "b better"
    same = E.paired_test(_result(base), _result(base), "m")
    assert same["verdict"] == "no significant difference" and same["p"] == 1.0


class Lookup(torch.nn.Module):
    """A 'model' whose output is a fixed table of images (for hand-computed answers)."""

    def __init__(self, table, kind="translate"):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.table = table
        self.drop = torch.nn.Dropout(0.5)
        self.seen_training = []
        setattr(self, kind, self._apply_table)

    def _apply_table(self, x, *args):
        self.seen_training.append(self.drop.training)
        return torch.cat([self.table.get(xi.numpy().tobytes(), xi[None]) for xi in x])


def _tanh(a):
    return pp.to_tanh_range(torch.from_numpy(np.asarray(a, np.float32)))


def test_evaluate_do_nothing_oracle_and_references(tiny_prepared):
    data = load_prepared(tiny_prepared)
    test = data.select("test", 1)
    r = E.evaluate(E.DoNothing(), data, "test", references=True)
    assert r["identity"] == pytest.approx(1.0, abs=1e-5) and r["psnr_tissue"] == E.PSNR_CEILING
    assert r["change_healthy"] == 0.0 and r["slices"] == len(test) and r["kind"] == "translator"
    refs = r["references"]
    assert refs["do nothing"]["psnr_lesion"] == pytest.approx(r["psnr_lesion"])
    assert refs["oracle"]["psnr_lesion"] == E.PSNR_CEILING
    assert refs["do nothing"]["psnr_lesion"] < refs["inpainting"]["psnr_lesion"] < E.PSNR_CEILING
    assert 0 < refs["intensity threshold"]["auprc"] <= 1
    table = {_tanh(data.images[i])[None].numpy().tobytes(): _tanh(data.healthy[i])[None, None] for i in test}
    r2 = E.evaluate(Lookup(table), data, "test")
    assert r2["psnr_lesion"] == E.PSNR_CEILING and r2["ssim_lesion"] == pytest.approx(1.0) and r2["mae_lesion"] == 0
    u = r2["uncertainty"]["mae_lesion"]
    assert u["n_subjects"] == 1 and u["subject_mean"] == 0
    det = r2["detection_by_subject"]["auprc"]                       # the oracle's map is the lesion's change
    assert det["n_subjects"] == u["n_subjects"] and det["subject_mean"] == pytest.approx(r2["auprc"])


def test_evaluate_restores_the_mode_and_accepts_functions(tiny_prepared):
    data = load_prepared(tiny_prepared)
    model = Lookup({})
    model.train()
    E.evaluate(model, data, "test")
    assert model.training and model.drop.training and not any(model.seen_training)   # eval inside, train after
    model.eval()
    E.evaluate(model, data, "test")
    assert not model.training

    class Broken(Lookup):
        def _apply_table(self, x, *args):
            raise RuntimeError("boom")

    b = Broken({})
    b.train()
    with pytest.raises(RuntimeError, match="boom"):
        E.evaluate(b, data, "test")
    assert b.training and b.drop.training
    halve = E.evaluate(lambda x: x * 0.5, data, "test")             # a user's plain function
    assert halve["kind"] == "translator" and halve["identity"] < 1


def test_evaluate_segmentors_and_the_judge(tiny_prepared):
    data = load_prepared(tiny_prepared)
    idx = data.select("test")
    truth = {_tanh(data.images[i])[None].numpy().tobytes(): _tanh(data.masks[i])[None, None] for i in idx}
    perfect = Lookup(truth, "predict")
    perfect.predict = lambda x: (perfect._apply_table(x) + 1) / 2
    r = E.evaluate(perfect, data, "test")
    assert r["kind"] == "segmentor" and r["dice"] == 1.0 and r["false_alarm_rate"] == 0.0 and r["missed"] == 0
    everything = Lookup({}, "predict")
    everything.predict = lambda x: torch.ones_like(x)
    r = E.evaluate(everything, data, "test")
    assert r["false_alarm_rate"] == 1.0 and r["dice"] < 1
    # a translator judged by the perfect segmentor: doing nothing leaves every lesion (h = 0)
    t = E.evaluate(E.DoNothing(), data, "test", segmentor=perfect)
    assert t["healthiness"] == pytest.approx(0.0) and t["healthiness_input"] == pytest.approx(0.0)
    assert t["judge"]["dice"] == 1.0 and t["judge"]["false_alarm_rate"] == 0.0


def test_evaluate_classifier(tiny_prepared):
    data = load_prepared(tiny_prepared)
    idx = data.select("test")
    table = {_tanh(data.images[i])[None].numpy().tobytes(): torch.tensor([float(data.labels[i])]) for i in idx}
    clf = Lookup(table, "classify")
    r = E.evaluate(clf, data, "test")
    assert r["kind"] == "classifier" and r["accuracy"] == 1.0 and r["f1"] == 1.0


def test_evaluate_seeds_reports_the_spread(tiny_prepared):
    data = load_prepared(tiny_prepared)
    res = E.evaluate_seeds([lambda x: x * 0.9, lambda x: x * 0.8], data)
    s = res["across_seeds"]["mae_lesion"]
    vals = [r["mae_lesion"] for r in res["seeds"]]
    assert s["n_seeds"] == 2 and s["mean"] == pytest.approx(np.mean(vals)) and s["std"] == pytest.approx(np.std(vals, ddof=1))


def test_evaluate_cli_json(tiny_prepared, tmp_path, capsys):
    from pseudohealthy_lib.__main__ import main

    assert main(["train", "antgan", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "2",
                 "--out", str(tmp_path / "run"), "--set", "n_blocks=1"]) == 0
    assert main(["train", "segmentor", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "2",
                 "--out", str(tmp_path / "seg"), "--set", "unet_downs=5"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--data", str(tiny_prepared), "--json",
                 "--segmentor", str(tmp_path / "seg"), "--references"]) == 0
    res = json.loads(capsys.readouterr().out)
    keys = {"identity", "healthiness", "psnr_tissue", "psnr_lesion", "ssim_lesion", "mae_lesion", "bias_lesion", "auprc",
            "dice_max", "slices_per_s", "judge", "healthiness_input", "references", "uncertainty", "notes"}
    assert keys <= set(res) and {"dice", "false_alarm_rate"} <= set(res["judge"])
    assert res["threshold_val"] is not None and res["uncertainty"]["dice_val"]["n_slices"] == res["slices"]
    assert set(res["detection_by_subject"]) == {"auprc", "dice_max"}
    assert main(["evaluate", str(tmp_path / "seg"), "--data", str(tiny_prepared), "--json"]) == 0
    seg = json.loads(capsys.readouterr().out)
    assert seg["kind"] == "segmentor" and {"dice", "false_alarm_rate"} <= set(seg)
    # psnr_tissue by hand from the model's own outputs
    model, data = E.load_model(str(tmp_path / "run")), load_prepared(tiny_prepared)
    idx = data.select("test", 1)
    x = pp.to_tanh_range(torch.from_numpy(data.images[idx].astype(np.float32)))[:, None]
    y = pp.from_tanh_range(model.translate(x)).clamp(0, 1).numpy()[:, 0]
    x01 = data.images[idx].astype(np.float32)
    keep = (x01 > 1e-3) & (data.masks[idx] == 0)
    by_hand = np.mean([10 * np.log10(1 / ((y[i] - x01[i])[keep[i]] ** 2).mean()) for i in range(len(idx))])
    assert res["psnr_tissue"] == pytest.approx(by_hand, rel=1e-4)
    assert main(["evaluate", str(tmp_path / "run"), str(tmp_path / "run"), "--data", str(tiny_prepared), "--json"]) == 0
    seeds = json.loads(capsys.readouterr().out)
    assert seeds["across_seeds"]["identity"]["std"] == 0.0
    assert main(["evaluate", "no-such-model", "--data", str(tiny_prepared)]) == 2


class TwoWay(torch.nn.Module):
    """A CycleGAN-shaped model: ``nets`` with G_AB and G_BA, and ``translate(x, direction)``."""

    def __init__(self, ab, ba):
        super().__init__()
        self.nets = torch.nn.ModuleDict({"G_AB": torch.nn.Identity(), "G_BA": torch.nn.Identity()})
        self.fns = {"AB": ab, "BA": ba}

    def translate(self, x, direction="AB"):
        return self.fns[direction](x)


def test_hidden_lesion_tells_a_ghost_from_an_honest_output(tiny_prepared):
    data = load_prepared(tiny_prepared)
    # G_AB keeps the lesion (the worst ghost) and G_BA is the identity: the lesion comes back
    # exactly from the output, and not at all from the true healthy image
    ghost = E.hidden_lesion(TwoWay(lambda x: x, lambda y: y), data, "test")
    assert ghost["mae_from_output"] == 0 and ghost["mae_from_truth"] > 0.05 and ghost["leak"] == 1
    # a near-identity G_BA: still far better from the output than from the truth
    near = E.hidden_lesion(TwoWay(lambda x: x, lambda y: 0.9 * y + 0.05), data, "test")
    assert 0.3 < near["leak"] < 1
    # G_BA ignores its input: nothing can be rebuilt from anything, the leak is exactly 0
    blind = E.hidden_lesion(TwoWay(lambda x: x, lambda y: torch.zeros_like(y)), data, "test")
    assert blind["leak"] == pytest.approx(0.0, abs=1e-9)
    # an honest G_AB that outputs the truth: both reconstructions are the same, leak 0
    table = {_tanh(data.images[i])[None].numpy().tobytes(): _tanh(data.healthy[i])[None, None]
             for i in data.select("test", 1)}
    honest = Lookup(table)
    honest.nets = {"G_AB": None, "G_BA": None}
    honest.translate = lambda x, d="AB": honest._apply_table(x) if d == "AB" else 0.9 * x + 0.05
    assert E.hidden_lesion(honest, data, "test")["leak"] == pytest.approx(0.0, abs=1e-6)
    assert blind["uncertainty"]["leak"]["n_subjects"] == len(set(data.subjects[data.select("test", 1)]))
    with pytest.raises(OptionError, match="G_BA"):
        E.hidden_lesion(Lookup({}), data, "test")


class Factorised(torch.nn.Module):
    """A PHS-GAN-shaped model: G (``translate``), S (``segment``) and R (``reconstruct``)."""

    def __init__(self, g, s, r):
        super().__init__()
        self.nets = torch.nn.ModuleDict({"G": torch.nn.Identity(), "S": torch.nn.Identity(), "R": torch.nn.Identity()})
        self.w = torch.nn.Parameter(torch.zeros(1))                # a device for the explore helpers
        self.translate, self.segment, self.reconstruct = (lambda x, d="AB": g(x)), s, r


def test_own_map_scores_a_factorising_models_segmentor(tiny_prepared):
    """own_map: S's map scored as a segmentor. A map equal to the truth is perfect; an empty map
    finds nothing; a map that flags everything raises a false alarm on every healthy slice."""
    data = load_prepared(tiny_prepared)
    idx = data.select("test")
    truth = {_tanh(data.images[i])[None].numpy().tobytes(): torch.from_numpy(data.masks[i].astype(np.float32))[None, None]
             for i in idx}
    exact = Factorised(lambda x: x, lambda x: torch.cat([truth[xi[None].numpy().tobytes()] for xi in x]), None)
    perfect = E.own_map(exact, data)
    assert perfect["dice"] == 1 and perfect["false_alarm_rate"] == 0 and perfect["missed"] == 0
    assert perfect["slices"] == len(idx) and perfect["lesion_slices"] == int((data.labels[idx] == 1).sum())
    empty = E.own_map(Factorised(lambda x: x, torch.zeros_like, None), data)
    assert empty["dice"] == 0 and empty["missed"] == 1 and empty["false_alarm_rate"] == 0
    everything = E.own_map(Factorised(lambda x: x, torch.ones_like, None), data)
    assert everything["false_alarm_rate"] == 1 and everything["missed"] == 0 and 0 < everything["dice"] < 0.5
    with pytest.raises(OptionError, match="own_map needs a model with its own lesion map"):
        E.own_map(TwoWay(lambda x: x, lambda y: y), data)


def test_explore_rebuilds_with_the_map_found_in_the_input_not_in_the_healthy_image():
    from pseudohealthy_lib import explore

    bright = lambda x: (x > 0.5).float()                                          # noqa: E731  (in [-1, 1])
    model = Factorised(lambda x: x, bright, lambda h, m: torch.where(m > 0.5, torch.ones_like(h), h))
    inputs, healthy = np.zeros((2, 8, 8), np.float32), np.full((2, 8, 8), 0.25, np.float32)
    inputs[0, :2, :2] = inputs[1, 5:, 5:] = 1.0                                    # each input's "lesion"
    out = explore.rebuild_slices(model, inputs, healthy)
    assert out.shape == (2, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.where(inputs > 0.75, 1.0, 0.25), atol=1e-6)
    np.testing.assert_array_equal(explore.segment_slices(model, inputs), (inputs > 0.75).astype(np.float32))


def test_hidden_lesion_of_a_factorised_model(tiny_prepared):
    """Given the map, R needs no hidden copy: rebuilding from G's output and from the truth agree
    when G is honest (leak 0); a G that keeps the lesion still shows as a ghost (leak 1)."""
    data = load_prepared(tiny_prepared)
    table = {_tanh(data.images[i])[None].numpy().tobytes(): _tanh(data.healthy[i])[None, None]
             for i in data.select("test", 1)}
    truth = Lookup(table)._apply_table
    paint = lambda h, m: h + 0.5 * m                                             # noqa: E731
    honest = E.hidden_lesion(Factorised(truth, lambda x: (x > 0).float(), paint), data, "test")
    assert honest["leak"] == pytest.approx(0.0, abs=1e-6) and honest["mae_from_output"] > 0
    ghost = E.hidden_lesion(Factorised(lambda x: x, lambda x: torch.zeros_like(x), lambda h, m: h), data, "test")
    assert ghost["mae_from_output"] == 0 and ghost["leak"] == 1


# a reconstruction's "lesion" is where it paints SENTINEL, a value no (float16-stored) image pixel can
# have: (SENTINEL + 1) / 2 lies halfway between two neighbouring float16 numbers
SENTINEL = 2 * (0.125 + 2 ** -13 * 50.5) - 1


class SentinelJudge(torch.nn.Module):
    """A judge that finds exactly the pixels equal to SENTINEL."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def predict_mask(self, x):
        return (x - SENTINEL).abs() < 1e-5

    def predict(self, x):
        return self.predict_mask(x).float()


def test_hidden_lesion_measures_where_the_reconstruction_puts_the_lesion(tiny_prepared):
    """Dice of the judge's mask on each reconstruction against the input's lesion: a
    reconstructor told the lesion's place puts it there from the truth too (Dice 1); a second
    generator that must guess (here: always the top-left corner) misses it (Dice 0)."""
    data = load_prepared(tiny_prepared)
    test = data.select("test", 1)
    truth = Lookup({_tanh(data.images[i])[None].numpy().tobytes(): _tanh(data.healthy[i])[None, None]
                    for i in test})._apply_table
    mask_of = Lookup({_tanh(data.images[i])[None].numpy().tobytes(): torch.from_numpy(data.masks[i] > 0)[None, None].float()
                      for i in test})._apply_table
    paint = lambda h, m: torch.where(m > 0.5, torch.full_like(h, SENTINEL), h)   # noqa: E731
    told = E.hidden_lesion(Factorised(truth, mask_of, paint), data, "test", judge=SentinelJudge())
    assert told["dice_from_output"] == 1.0 and told["dice_from_truth"] == 1.0

    def corner(y):
        out = y.clone()
        out[..., :6, :6] = SENTINEL
        return out
    guess = E.hidden_lesion(TwoWay(truth, corner), data, "test", judge=SentinelJudge())
    assert guess["dice_from_truth"] == 0.0 and guess["dice_from_output"] == 0.0
    assert "dice_from_truth" not in E.hidden_lesion(TwoWay(truth, corner), data, "test")


def test_healthiness_per_subject_is_pooled_over_its_slices(tiny_prepared):
    """The paper's healthiness, 1 - mean found / mean true lesion pixels, computed subject by
    subject: the spread in the tables and the paired test use these values."""
    data = load_prepared(tiny_prepared)

    def corner(x):
        out = x.clone()
        out[..., :6, :6] = SENTINEL                    # the judge finds 36 pixels on every output
        return out
    res = E.evaluate(E.FunctionTranslator(corner), data, "test", segmentor=SentinelJudge())
    li = data.select("test", 1)
    for s, h in res.by_subject["healthiness"].items():
        true_px = (data.masks[li][data.subjects[li] == s] > 0).sum((1, 2)).mean()
        assert h == pytest.approx(1 - 36 / true_px, rel=1e-9)
    assert res["uncertainty"]["healthiness"]["n_subjects"] == len(res.by_subject["healthiness"])
    clean = E.evaluate(E.FunctionTranslator(lambda x: x), data, "test", segmentor=SentinelJudge())
    assert set(clean.subject_means("healthiness").values()) == {1.0}
    assert E.paired_test(clean, res, "healthiness")["mean_difference"] > 0


def _seed(identity_by_subject):
    r = E.Result(per_slice={"identity": np.array(list(identity_by_subject.values()), float)},
                 subjects=np.array(list(identity_by_subject)))
    r["identity"] = float(np.mean(list(identity_by_subject.values())))
    return r


def test_seeds_are_combined_subject_by_subject():
    a = [_seed({"s1": 0.90, "s2": 0.80, "s3": 0.70}), _seed({"s1": 0.92, "s2": 0.82, "s3": 0.72})]
    c = E.combine_seeds(a, ("identity",))
    assert c["identity"] == pytest.approx(0.81) and c["seed_std"]["identity"] == pytest.approx(np.std([0.8, 0.82], ddof=1))
    assert c.by_subject["identity"] == pytest.approx({"s1": 0.91, "s2": 0.81, "s3": 0.71})
    t = E.seed_table({"two seeds": a, "one seed": [_seed({"s1": 0.5, "s2": 0.5, "s3": 0.8})]}, ("identity",))
    assert t.loc["two seeds", ("identity", "sd subjects")] == pytest.approx(0.1)
    assert np.isnan(t.loc["one seed", ("identity", "sd seeds")]) and t.loc["one seed", ("seeds", "")] == 1
    worse = E.combine_seeds([_seed({"s1": 0.5, "s2": 0.4, "s3": 0.3})], ("identity",))
    assert E.paired_test(c, worse, "identity")["mean_difference"] == pytest.approx(0.41)


def test_phsgan_floors_say_no_to_doing_nothing_and_to_a_model_that_redraws_the_brain():
    nothing = {"identity": 1.0, "healthiness": 0.02, "psnr_lesion": 10.0}
    t = E.check_floors(nothing, nothing, E.PHSGAN_FLOORS)
    assert list(t.index) == ["identity", "healthiness", "psnr_lesion"]
    assert list(t.query("not met").index) == ["healthiness", "psnr_lesion"]
    redraws = {"identity": 0.90, "healthiness": 0.99, "psnr_lesion": 17.0}      # healthy, but not this patient
    assert list(E.check_floors(redraws, nothing, E.PHSGAN_FLOORS).query("not met").index) == ["identity"]
    edge = {"identity": 0.95, "healthiness": 0.85, "psnr_lesion": 16.0}
    assert E.check_floors(edge, nothing, E.FLOOR_SETS["phsgan"])["met"].all()


def test_recipe_trials_table_of_the_recorded_search():
    t = E.recipe_trials("antgan")
    assert list(t.index[:2]) == ["do nothing", "inpainting"]             # references first
    runs = t[t["steps"].notna()]
    assert len(runs) >= 5 and (runs["minutes"] > 0).all()
    assert {"lr", "batch_size", "healthy"} <= set(t.columns)              # settings that differ between trials
    assert "ngf" not in t.columns                                        # ... and not those all trials share
    assert (runs["psnr_lesion"] > t.loc["do nothing", "psnr_lesion"]).all()
    assert "t2-cpu-recipe" not in t.index                                # other contrasts are not mixed in
    t2 = E.recipe_trials("antgan", modality="t2")
    assert "t2-cpu-recipe" in t2.index and "A_base" not in t2.index
    glioma, stroke = E.recipe_trials("phsgan"), E.recipe_trials("phsgan", lesion="stroke")    # nor other phantoms
    assert "stroke-paired-recipe" in stroke.index and "stroke-paired-recipe" not in glioma.index
    assert "phs-paired-paste-dil2" in glioma.index and "phs-paired-paste-dil2" not in stroke.index
    assert stroke.loc["do nothing", "psnr_lesion"] != glioma.loc["do nothing", "psnr_lesion"]
    with pytest.raises(FileNotFoundError, match="no recorded recipe search"):
        E.recipe_trials("no-such-method")


def test_recipe_trials_keeps_the_latest_recording_of_a_reference(tmp_path, monkeypatch):
    import json

    import pseudohealthy_lib.config as C
    trial = {"name": "t", "steps": 10, "train_seconds": 60, "batch_size": 4, "lr": 1e-3, "size": 64, "options": {},
             "psnr_lesion": 12.0}
    rows = [{"name": "reference: do nothing", "psnr_lesion": 9.0}, trial,
            {"name": "reference: do nothing", "psnr_lesion": 9.5, "bias_lesion": 0.3}]
    (tmp_path / "antgan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setattr(C, "RECORDS_DIR", tmp_path)
    t = E.recipe_trials("antgan", scores=("psnr_lesion", "bias_lesion"))
    assert list(t.index) == ["do nothing", "t"]                           # one row per reference ...
    assert t.loc["do nothing", "psnr_lesion"] == 9.5 and t.loc["do nothing", "bias_lesion"] == 0.3   # ... the latest
    assert "seed" not in t.columns                                       # one trial: nothing varies
    (tmp_path / "antgan.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, trial | {"name": "t-s1", "seed": 1}]))
    t = E.recipe_trials("antgan")
    assert t.loc["t", "seed"] == 0 and t.loc["t-s1", "seed"] == 1            # a trial's training seed, when trials differ


def test_check_floors_says_no_to_doing_nothing_and_yes_to_a_good_model():
    nothing = {"psnr_lesion": 10.0, "ssim_lesion": 0.25, "psnr_tissue": float("inf"), "dice_max": 0.07,
               "healthiness": 0.02}
    t = E.check_floors({**nothing, "references": {"do nothing": nothing}})
    assert list(t.index) == list(E.FLOORS)
    assert t.loc["psnr_tissue", "met"] and not t.loc["psnr_lesion", "met"] and not t.loc["healthiness", "met"]
    good = {"psnr_lesion": 14.0, "ssim_lesion": 0.25, "psnr_tissue": 30.0, "dice_max": 0.75, "healthiness": 0.8}
    assert E.check_floors(good, nothing)["met"].all()                      # every floor met exactly at its edge
    almost = {**good, "psnr_lesion": 13.99}
    assert list(E.check_floors(almost, nothing).query("not met").index) == ["psnr_lesion"]


def test_one_untouched_slice_does_not_make_the_mean_psnr_infinite():
    # two lesion slices: the output leaves the first one's tissue exactly as it was and adds 0.1
    # to the second's. Uncapped, the first slice's PSNR is inf and so would be the mean; capped,
    # the mean is (ceiling + 20 dB) / 2, and a worse second slice lowers it.
    x = np.zeros((2, 32, 32), np.float32)
    x[:, 4:28, 4:28] = np.random.default_rng(0).uniform(0.3, 0.7, (2, 24, 24))
    masks = np.zeros_like(x)
    masks[:, 10:14, 10:14] = 1
    y = x.copy()
    y[1][x[1] > 0] += 0.1                                           # MSE 0.01 on tissue: 20 dB
    r = E.score_translation(x, y, masks, subjects=np.array(["a", "a"]), labels=np.array([1, 1]), truth=x)
    assert np.isfinite(r["psnr_tissue"])
    assert r["psnr_tissue"] == pytest.approx((E.PSNR_CEILING + 20.0) / 2, abs=1e-3)
    assert r.per_slice["psnr_tissue"][0] == E.PSNR_CEILING
    y[1][x[1] > 0] += 0.2                                           # a worse second slice: a lower mean
    assert E.score_translation(x, y, masks, np.array(["a", "a"]), np.array([1, 1]), truth=x)["psnr_tissue"] < r["psnr_tissue"]
    lesion = r.per_slice["psnr_lesion"]                             # the first slice's lesion equals the truth
    assert lesion[0] == E.PSNR_CEILING and np.isfinite(lesion[1]) and lesion[1] < 40
    assert r["psnr_lesion"] == pytest.approx(lesion.mean())


class _WithCritic(torch.nn.Module):
    """A translator with a hand-made critic: ``score(x)`` (images in [-1, 1]) -> a score map."""

    def __init__(self, score, translate=lambda x: x):
        super().__init__()
        self.score, self._translate, self.name = score, translate, "hand-made"
        self.critic = lambda x: score(x)

    def translate(self, x):
        return self._translate(x)


def test_critic_scores_tell_a_lesion_critic_from_an_anatomy_critic(tiny_prepared):
    data = load_prepared(tiny_prepared)
    # a critic that only looks at the lesion: every pixel brighter than healthy FLAIR tissue costs it
    lesion_critic = _WithCritic(lambda x: 1 - ((pp.from_tanh_range(x) - 0.75) * 4).clamp(0, 1))
    r = E.critic_scores(lesion_critic, data, "all")
    assert r["inputs"] < r["healthy"] and r["inputs_on_lesion"] < r["inputs_off_lesion"]
    assert r["removal_share"] > 0.8                  # a perfect removal closes (almost) the whole gap
    assert r["output_share"] == pytest.approx(0.0)   # handing the input back closes none of it
    # a critic that only looks at how much of the slice is head (the slice's level): removing
    # the lesion changes nothing for it, however well it is done
    anatomy_critic = _WithCritic(lambda x: (x > -0.98).float().mean((1, 2, 3), keepdim=True))
    r = E.critic_scores(anatomy_critic, data, "all")
    assert abs(r["healthy"] - r["inputs"]) > 0.01    # lesion slices lie at other levels
    assert r["removal_share"] == pytest.approx(0.0, abs=0.05) and "inputs_on_lesion" in r
    # a brightness-capping translator closes part of the lesion critic's gap, as scored
    capped = _WithCritic(lesion_critic.score, translate=lambda x: x.clamp(max=pp.to_tanh_range(torch.tensor(0.75))))
    assert E.critic_scores(capped, data, "all")["output_share"] > 0.8


def test_critic_scores_need_a_trained_critic_and_both_kinds_of_slice(tiny_prepared):
    from pseudohealthy_lib import presets
    from pseudohealthy_lib.methods import get_method

    cfg = presets.config("antgan", "fast", size=32, options={"n_blocks": 1})
    m = get_method("antgan")(cfg)
    assert m.critic is m.nets["D_B"]                 # a model still in training has its critic
    m.manifest = {"name": "from the zoo"}            # a zoo model keeps only its generators
    with pytest.raises(OptionError, match="no trained critic.*run folder"):
        E.critic_scores(m, tiny_prepared, "test")
    mask_cfg = presets.config("cyclegan", "fast", size=32, options={"domain_b": "mask", "n_blocks": 1})
    assert get_method("cyclegan")(mask_cfg).critic is None       # its D_B judges masks, not healthy images
    data = load_prepared(tiny_prepared)
    healthy_only = data.subset(data.select(None, 0))
    with pytest.raises(OptionError, match="needs slices with and without lesions"):
        E.critic_scores(_WithCritic(lambda x: x), healthy_only, "all")


def test_recipe_search_records_references_of_the_contrast_it_is_asked_for(monkeypatch):
    """``scripts/recipe_search.py --references METHOD t2``: doing nothing on the T2 selection phantom,
    judged by the T2 judge, recorded as T2's (so :func:`recipe_trials` never mixes it with FLAIR's)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("recipe_search", Path(__file__).parents[1] / "scripts" / "recipe_search.py")
    rs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rs)
    asked, rows = {}, []
    monkeypatch.setattr(rs, "selection_data", lambda lesion="glioma", modality="flair":
                        asked.setdefault("data", modality) and asked.setdefault("lesion", lesion) and _tiny_refs_data(modality))
    monkeypatch.setattr(rs, "load_model", lambda name: asked.setdefault("judge", name) and None)
    monkeypatch.setattr(rs, "append", lambda method, row: rows.append((method, row)))
    rs.references("smile", "t2")
    assert asked == {"data": "t2", "lesion": "glioma", "judge": "segmentor-phantom-t2"}
    assert [(m, r["name"], r["modality"]) for m, r in rows] == [("smile", "reference: do nothing", "t2"),
                                                                 ("smile", "reference: inpainting", "t2")]
    assert rows[0][1]["psnr_lesion"] < rows[1][1]["psnr_lesion"]          # inpainting beats doing nothing
    rows.clear()
    asked.clear()
    rs.references("antgan")                                               # FLAIR: no modality field, FLAIR's judge
    assert asked["judge"] == "segmentor-phantom" and all("modality" not in r for _, r in rows)
    assert all("lesion" not in r for _, r in rows)                        # the glioma phantom: no lesion field
    rows.clear()
    asked.clear()
    rs.references("phsgan", "flair", "stroke")                            # another phantom: its own data, judge and field
    assert asked == {"data": "flair", "lesion": "stroke", "judge": "segmentor-stroke"}
    assert all(r["lesion"] == "stroke" for _, r in rows) and len(rows) == 2


def _tiny_refs_data(modality):
    from pseudohealthy_lib.data import default, load_prepared
    return load_prepared(default.phantom_dataset(2, "glioma", seed=3, size=64, modality=modality))
