"""ANT-GAN's downstream studies: the classifiers, the guided segmentor, the augmented datasets
and the tables (pseudohealthy_lib.downstream)."""
import numpy as np
import pytest
import torch

from pseudohealthy_lib import downstream as D
from pseudohealthy_lib import presets
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data import preprocess as pp
from pseudohealthy_lib.data.layouts import region_mask
from pseudohealthy_lib.evaluate import evaluate
from pseudohealthy_lib.methods import LesionClassifier, Segmentor
from pseudohealthy_lib.networks import VGG, AlexNet
from pseudohealthy_lib.utils import OptionError


def n_params(net):
    return sum(p.numel() for p in net.parameters())


def test_classifiers_have_torchvisions_parameter_counts():
    # torchvision's published sizes: vgg11 132,863,336; vgg11_bn 132,868,840; alexnet 61,100,840
    assert n_params(VGG(3, 1000, 64, 4096)) == 132_863_336
    assert n_params(VGG(3, 1000, 64, 4096, batch_norm=True)) == 132_868_840
    assert n_params(AlexNet(3, 1000, 4096)) == 61_100_840
    assert VGG(2, 2, 8, 32)(torch.rand(3, 2, 64, 64)).shape == (3, 2)
    assert AlexNet(1, 2, 32)(torch.rand(3, 1, 64, 64)).shape == (3, 2)


def _method(cls, name, **options):
    return cls(presets.config(name, "fast", options=options))


def test_guide_builds_the_papers_inputs():
    x = torch.rand(2, 1, 64, 64) * 2 - 1
    assert _method(Segmentor, "segmentor").inputs(x) is x
    plain = _method(LesionClassifier, "classifier", guide="copy")
    assert torch.equal(plain.inputs(x), torch.cat([x, x], 1))
    ant = _method(Segmentor, "segmentor", guide="antgan", unet_downs=5)
    assert torch.allclose(ant.inputs(x)[:, 1:], ant.guide.translate(x), atol=1e-6)
    assert not ant.inputs(x)[:, 1:].equal(x)                     # G_A2N(x) is not x
    # Plain and ANT nets have the same parameters to train: only what they see differs
    assert n_params(ant.nets) == n_params(_method(Segmentor, "segmentor", guide="copy", unet_downs=5).nets)
    ant.train()
    assert not ant.guide.training and not any(p.requires_grad for p in ant.guide.parameters())


@pytest.mark.parametrize("options, words", [({"guide": "segmentor-phantom"}, "not a pseudo-healthy translator"),
                                            ({"regions": "wt,wt"}, "distinct region names"),
                                            ({"regions": "wt,,tc"}, "distinct region names")])
def test_bad_guide_or_regions_are_named(options, words):
    with pytest.raises(OptionError, match=words):
        _method(Segmentor, "segmentor", **options)


def test_regions_are_the_layouts_nested_masks(tiny_prepared):
    data = load_prepared(tiny_prepared)
    seg = _method(Segmentor, "segmentor", regions="wt,tc,et", unet_downs=5)
    ds = seg.dataset(data, "train")
    lesion = [i for i in range(len(ds)) if data.labels[ds.index[i]] == 1]
    item = ds[lesion[0]]
    wt, tc, et = item["mask"].numpy().astype(bool)
    assert item["mask"].shape == (3, 32, 32) and wt.any() and (et <= tc).all() and (tc <= wt).all()
    assert np.array_equal(wt, data.masks[ds.index[lesion[0]]] > 0)   # the whole tumour is the lesion mask
    assert seg.predict_regions(item["image"][None]).shape == (1, 3, 32, 32)
    with pytest.raises(OptionError, match="not defined for brats2018"):
        _method(Segmentor, "segmentor", regions="wt,liver").dataset(data, "train")


class _Regions(torch.nn.Module):
    """A 'segmentor' that answers each test slice with given region masks."""

    def __init__(self, answers, names):
        super().__init__()
        self.nets = torch.nn.ModuleDict({"S": torch.nn.Conv2d(1, 1, 1)})
        self.answers, self.region_names = answers, names

    def predict_regions(self, x):
        return torch.stack([self.answers[xi.numpy().tobytes()] for xi in x[:, 0]]).float()


def test_region_dice_perfect_empty_and_shifted(tiny_prepared):
    data = load_prepared(tiny_prepared)
    idx = data.select("test")
    key = lambda i: pp.to_tanh_range(torch.from_numpy(data.images[i].astype(np.float32))).numpy().tobytes()  # noqa: E731
    truth = {key(i): torch.from_numpy(np.stack([region_mask(data.seg[i], "brats2018", r) for r in ("wt", "et")]))
             for i in idx}
    perfect = D.region_dice(_Regions(truth, ["wt", "et"]), data)
    assert perfect["dice_wt"] == 1.0 and perfect["dice_et"] == 1.0
    empty = D.region_dice(_Regions({k: torch.zeros_like(v) for k, v in truth.items()}, ["wt", "et"]), data)
    assert empty["dice_wt"] == 0.0
    shifted = D.region_dice(_Regions({k: torch.roll(v, 3, -1) for k, v in truth.items()}, ["wt", "et"]), data)
    # by hand: the Dice of each patient's pooled masks against the shifted ones
    by_hand = []
    for s in sorted(set(data.subjects[idx])):
        t = np.stack([region_mask(data.seg[i], "brats2018", "wt") for i in idx if data.subjects[i] == s])
        p = np.roll(t, 3, -1)
        by_hand.append(2 * (t & p).sum() / (t.sum() + p.sum()))
    assert shifted["dice_wt"] == pytest.approx(np.mean(by_hand)) and 0 < shifted["dice_wt"] < 1


def test_classifier_evaluates_on_the_lesion_column(tiny_prepared):
    data = load_prepared(tiny_prepared)
    idx = data.select("test")
    label = {pp.to_tanh_range(torch.from_numpy(data.images[i].astype(np.float32))).numpy().tobytes(): int(data.labels[i])
             for i in idx}

    class Clf(torch.nn.Module):
        def __init__(self, flip):
            super().__init__()
            self.w, self.flip = torch.nn.Parameter(torch.zeros(1)), flip

        def classify(self, x):                      # (B, 2) probabilities; column 1 is "lesion"
            y = torch.tensor([label[xi.numpy().tobytes()] ^ self.flip for xi in x[:, 0]]).float()
            return torch.stack([1 - y, y], 1)

    assert D.classification_scores(Clf(0), data)["f1"] == 1.0
    wrong = evaluate(Clf(1), data, "test")
    assert wrong["f1"] == 0.0 and wrong["accuracy"] == 0.0


class _Negate(torch.nn.Module):
    """A 'translator' with known outputs: AB returns -x, BA returns x / 2."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def translate(self, x, direction="AB"):
        return -x if direction == "AB" else x / 2


def test_augmented_sets_add_the_translators_images_with_swapped_labels(tiny_prepared):
    data = load_prepared(tiny_prepared)
    n = 3
    a, b = D.augmented_sets(data, _Negate(), n=n, seed=1)
    ta, tb = a.select("train"), b.select("train")
    assert len(ta) == 2 * n and a.labels[ta].sum() == n and len(tb) == 4 * n
    assert np.array_equal(a.select("test"), b.select("test"))          # the same held-out slices
    assert set(a.subjects[a.split == "test"]).isdisjoint(a.subjects[ta])
    synth = tb[2 * n:]
    x = pp.to_tanh_range(torch.from_numpy(a.images[ta].astype(np.float32)))
    n2a = pp.from_tanh_range(x[n:] / 2).numpy()                 # A's healthy slices, made abnormal
    a2n = pp.from_tanh_range(-x[:n]).numpy()                    # A's lesion slices, made healthy
    assert np.allclose(b.images[synth], np.concatenate([n2a, a2n]), atol=2e-3)
    assert list(b.labels[synth]) == [1] * n + [0] * n
    assert D.augmented_sets(data, _Negate(), n=n, seed=1)[0].images.tobytes() == a.images.tobytes()
    with pytest.raises(OptionError, match="needs 1000 of each"):
        D.augmented_sets(data, _Negate(), n=1000)


def _rows(values):
    return [{"study": "classification", "arm": arm, "repeat": k, "f1": v, "precision": v, "recall": v}
            for arm, vals in values.items() for k, v in enumerate(vals)]


def test_study_table_and_paired_difference_by_hand():
    rows = _rows({"Plain VGG": [0.5, 0.6, 0.7], "ANT-VGG": [0.6, 0.8, 0.7]})
    t = D.study_table("classification", rows=rows)
    assert t.loc["ANT-VGG", ("f1", "mean")] == pytest.approx(0.7)
    assert t.loc["Plain VGG", ("f1", "sd")] == pytest.approx(0.1)
    with_paper = D.study_table("classification", rows=rows, paper={"ANT-VGG": {"f1": 0.917}})
    assert with_paper.loc["ANT-VGG", ("f1", "paper")] == 0.917 and np.isnan(with_paper.loc["Plain VGG", ("f1", "paper")])
    assert list(with_paper.columns[:4]) == [("repeats", ""), ("precision", "mean"), ("precision", "sd"), ("precision", "paper")]
    d = D.paired_difference("classification", "f1", "Plain VGG", "ANT-VGG", rows=rows)
    diffs = np.array([0.1, 0.2, 0.0])
    t_stat = diffs.mean() / (diffs.std(ddof=1) / np.sqrt(3))
    from scipy.stats import t as student
    assert d["mean_difference"] == pytest.approx(0.1) and d["wins"] == 2
    assert d["p"] == pytest.approx(2 * student.sf(t_stat, 2))
    same = D.paired_difference("classification", "f1", "Plain VGG", "Plain VGG", rows=rows)
    assert same["p"] == 1.0 and same["wins"] == 0


def test_claim_verdict_says_holds_reversed_or_undecided():
    won = {"mean_difference": 0.05, "wins": 5, "repeats": 5, "p": 0.01}
    lost = {"mean_difference": -0.05, "wins": 0, "repeats": 5, "p": 0.02}
    unsure = {"mean_difference": 0.02, "wins": 3, "repeats": 5, "p": 0.40}
    holds = D.claim_verdict({"wt": won, "et": unsure}, {"wt": "WT", "et": "ET"})
    assert holds.startswith("holds significantly (paired t-test over the folds, p < 0.05) for WT;")
    assert "for ET (3 of 5 folds in its favour, p = 0.400) the difference is not significant" in holds
    both = D.claim_verdict({"a": unsure, "b": unsure})
    assert both == ("is not borne out: no difference is significant at the 5 % level (a (3 of 5 folds in its favour, "
                    "p = 0.400) and b (3 of 5 folds in its favour, p = 0.400))")
    assert D.claim_verdict({"f1": lost}, over="draws").startswith("is reversed: the first arm is significantly better for f1")
    assert D.claim_verdict({"a": won, "b": lost}).startswith("holds for a but is reversed for b")
    assert D.claim_verdict({"f1": unsure}).startswith("is not borne out")


def test_study_configs_are_train_commands():
    cfg, command = D.study_config("segmentation", "ANT-UNet", 3)
    assert cfg.folds == 5 and cfg.fold == 3 and cfg.options["guide"] == "antgan" and cfg.data_seed == 1
    assert cfg.options["regions"] == "wt,tc,et" and "--fold 3" in command
    cfg, command = D.study_config("augmentation", "dataset B", 2)
    assert cfg.seed == 2 and cfg.options["arch"] == "alexnet" and cfg.folds == 0
    with pytest.raises(OptionError, match="no arm"):
        D.study_config("segmentation", "ANT-VGG", 0)
    with pytest.raises(OptionError, match="unknown study"):
        D.study_config("segmentations", "ANT-UNet", 0)


def test_a_smoke_study_trains_and_scores_each_fold(tiny_prepared, tmp_path, monkeypatch):
    monkeypatch.setenv("PH_CACHE", str(tmp_path))
    small = dict(steps=2, batch_size=2, size=32, data=str(tiny_prepared), subjects=None, data_seed=0, folds=3,
                 options={"regions": "wt,tc,et", "guide": "copy", "ngf": 4, "unet_downs": 5})
    rows = D.run_study("segmentation", repeats=2, arms=["Plain UNet"], **small)
    assert [r["repeat"] for r in rows] == [0, 1] and all(0 <= r["dice_wt"] <= 1 for r in rows)
    assert rows[0]["steps"] == 2 and rows[0]["config"]["fold"] == 0 and rows[1]["config"]["fold"] == 1


def test_difference_segmentation_perfect_random_and_inverted():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 16, 16), np.uint8)
    masks[:3, 4:9, 4:9] = 1                                    # three lesion slices, three lesion-free ones
    labels = np.array([1, 1, 1, 0, 0, 0])
    perfect = D.difference_segmentation(masks * 0.3, masks, labels)
    assert perfect["dice_slices"] == 1.0 and perfect["auprc"] == pytest.approx(1.0)
    assert np.all(perfect["dice"][perfect["thresholds"] < 0.3] == 1.0) and perfect["dice"][-1] == 0.0
    noise = D.difference_segmentation(rng.random(masks.shape), masks, labels)
    assert noise["auprc"] == pytest.approx(masks.mean(), abs=0.03)        # a random detector: the prevalence
    inverted = D.difference_segmentation(1 - masks * 0.8, masks, labels)
    assert inverted["auprc"] < masks.mean() + 0.01 and inverted["dice_slices"] < 0.2
    # a map with a false alarm on a lesion-free slice: the per-slice Dice (lesion slices) does not see
    # it, the pooled Dice does
    alarm = masks * 0.8
    alarm[4, :5, :5] = 0.8
    r = D.difference_segmentation(alarm, masks, labels)
    assert r["dice_slices"] == 1.0 and r["dice"][0] == pytest.approx(2 * 75 / (100 + 75))
