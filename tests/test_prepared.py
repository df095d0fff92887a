"""Prepared slice files and the torch Datasets that serve them."""
import dataclasses
import time

import numpy as np
import pytest
import torch

from pseudohealthy_lib.data import PairedDataset, UnpairedDataset, list_cases, load_prepared, phantom, prepare
from pseudohealthy_lib.utils import OptionError


def test_prepare_brats_tiny(brats2018, tmp_path):
    out = prepare(brats2018, tmp_path / "p.npz", size=16, n_slices=None, min_area=20,
                  fractions=(0.5, 0.0, 0.5), progress=False)
    p = load_prepared(out)
    # 12 axial slices per case; tumour on slices 4..7 (144 px >= 20): 4 pathological, 8 healthy
    assert len(p) == 24
    assert p.images.shape == (24, 16, 16) and p.images.dtype == np.float16
    assert (p.labels == 1).sum() == 8 and (p.labels == 0).sum() == 16
    assert sorted(p.slice_index[(p.labels == 1) & (p.subjects == p.subjects[0])].tolist()) == [4, 5, 6, 7]
    assert p.meta["layout"] == "brats2018" and p.meta["region"] == "wt"
    assert not p.has_ground_truth
    assert float(p.images.max()) == pytest.approx(1.0) and float(p.images.min()) == 0
    assert set(np.unique(p.seg)) <= {0, 1, 2, 4}
    assert np.array_equal(p.masks > 0, p.seg > 0)
    for s in set(p.subjects.tolist()):                                    # one split per patient
        assert len(set(p.split[p.subjects == s].tolist())) == 1


def test_ambiguous_slices_are_dropped(brats2018, tmp_path):
    p = load_prepared(prepare(brats2018, tmp_path / "p.npz", size=16, n_slices=None, min_area=1000,
                              progress=False))
    assert (p.labels == 1).sum() == 0 and len(p) == 16                   # 8 small-lesion slices left out


def test_prepare_lits_uses_ct_window(lits, tmp_path):
    p = load_prepared(prepare(lits, tmp_path / "l.npz", size=28, n_slices=None, min_area=4, progress=False))
    assert p.meta["modality"] == "ct" and p.meta["region"] == "tumour"
    # body box 20 px + 2x4 margin = 28: no resampling. Liver 100 HU, tumour 30 HU in W400/L40: (HU+160)/400
    liver = p.images[(p.seg == 1)].astype(np.float32)
    tumour = p.images[(p.seg == 2)].astype(np.float32)
    assert np.allclose(liver, 0.65, atol=2e-3) and np.allclose(tumour, 0.475, atol=2e-3)


def test_prepare_isles(isles2015, tmp_path):
    p = load_prepared(prepare(isles2015, tmp_path / "i.npz", size=16, n_slices=None, min_area=4, progress=False))
    assert p.meta["layout"] == "isles2015" and (p.labels == 1).sum() == 8


@pytest.fixture(scope="module")
def phantom_prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("ph")
    phantom.generate(root / "vol", 3, seed=11, modalities=("flair",), progress=False, workers=1)
    return load_prepared(prepare(root / "vol", root / "p.npz", size=64, progress=False)), root / "p.npz"


def test_phantom_prepared_has_ground_truth(phantom_prepared):
    p, path = phantom_prepared
    assert p.has_ground_truth and p.healthy.shape == p.images.shape
    # a healthy slice further than the lesion margin from the lesion is its own ground truth
    # (closer ones hold the lesion's soft, partial-volume border); a pathological one differs
    far = np.zeros(len(p), bool)
    for case in list_cases(path.parent / "vol"):
        z = np.nonzero(case.load_seg().any((0, 1)))[0]
        mine = p.subjects == case.case_id
        far |= mine & ((p.slice_index < z.min() - phantom.LESION_MARGIN) | (p.slice_index > z.max() + phantom.LESION_MARGIN))
    assert far.sum() > 10 and (p.labels[far] == 0).all()
    assert np.array_equal(p.images[far], p.healthy[far])
    path = p.labels == 1
    diff = np.abs(p.images[path].astype(np.float32) - p.healthy[path].astype(np.float32))
    assert diff[p.masks[path] > 0].mean() > 0.05


def test_prepared_file_loads_fast(phantom_prepared):
    _, path = phantom_prepared
    t = time.perf_counter()
    load_prepared(path)
    assert time.perf_counter() - t < 0.5


def test_unpaired_dataset(phantom_prepared):
    p, _ = phantom_prepared
    split = "train"
    ds = UnpairedDataset(p, split, value_range="tanh", seed=0)
    item = ds[0]
    assert set(item) == {"A", "B", "A_mask", "A_healthy"}
    assert item["A"].shape == item["B"].shape == item["A_mask"].shape == (1, 64, 64)
    assert item["A"].min() >= -1 and item["A"].max() <= 1 and item["A"].min() == -1
    assert item["A_mask"].sum() > 0                                      # A is pathological
    assert len(ds) == max(len(ds.path), len(ds.other))
    first = [ds[i]["B"] for i in range(3)]
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i]["B"]) for i, a in enumerate(first))   # reshuffled
    ds.set_epoch(0)
    assert all(torch.equal(a, ds[i]["B"]) for i, a in enumerate(first))       # and reproducible
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["A"].shape == (4, 1, 64, 64)


def test_unpaired_image_to_mask_domain(phantom_prepared):
    p, _ = phantom_prepared
    ds = UnpairedDataset(p, "train", domain_b="mask")
    b = ds[0]["B"]
    assert set(torch.unique(b).tolist()) <= {-1.0, 1.0} and (b == 1).any()   # a mask drawn in [-1, 1]
    with pytest.raises(ValueError, match="domain_b"):
        UnpairedDataset(p, "train", domain_b="t1")


def test_unpaired_matched_healthy_twins(phantom_prepared):
    """healthy='twins': domain B is the healthy truth of pathological slices of *other* subjects."""
    p, _ = phantom_prepared
    with pytest.raises(ValueError, match="at least 2 subjects"):            # the train split has one subject
        UnpairedDataset(p, "train", healthy="twins")
    ds = UnpairedDataset(p, None, healthy="twins", seed=3)                 # all three subjects
    truth = {p.healthy[j].tobytes(): j for j in ds.path}
    for i in range(len(ds)):
        item = ds[i]
        j = truth[((item["B"].numpy()[0] + 1) / 2).astype(np.float16).tobytes()]   # B is the truth of a lesion slice ...
        a = ds.path[ds._pa[i % len(ds.path)]]
        assert p.subjects[j] != p.subjects[a]                                  # ... of another subject
    plain = UnpairedDataset(p, None, seed=3)
    assert (p.labels[plain.other] == 0).all() and not set(plain.other) & set(ds.other)
    with pytest.raises(OptionError, match="twins"):
        UnpairedDataset(p, "train", healthy="twin")
    no_truth = dataclasses.replace(p, healthy=None)
    with pytest.raises(OptionError, match="ground truth"):
        UnpairedDataset(no_truth, "train", healthy="twins")


def test_unpaired_healthy_slices_matched_by_level(phantom_prepared):
    """healthy='level': each lesion slice meets a lesion-free slice of another subject at its level."""
    p, _ = phantom_prepared
    z, subj = p.slice_index.astype(int), p.subjects
    plain = UnpairedDataset(p, None, seed=3)
    for tol in (0, 2, 4):
        ds = UnpairedDataset(p, None, healthy="level", seed=3, level_tol=tol)
        images = {p.images[j].tobytes(): j for j in ds.other}
        for i in range(len(ds)):
            item = ds[i]
            a, b = ds._pair(i)
            assert images[((item["B"].numpy()[0] + 1) / 2).astype(np.float16).tobytes()] == b   # B is slice b
            assert p.labels[b] == 0 and subj[b] != subj[a]                  # lesion-free, another subject
            others = ds.other[subj[ds.other] != subj[a]]
            nearest = np.abs(z[others] - z[a]).min()
            assert abs(z[b] - z[a]) <= max(tol, nearest)                    # at a's level, or the nearest there is
        assert ds.level_gap() <= plain.level_gap()                        # the levels are closer than unmatched
    wide = UnpairedDataset(p, None, healthy="level", seed=3, level_tol=1000)
    assert all(set(pool) == set(wide.other[subj[wide.other] != subj[a]]) for a, pool in zip(wide.path, wide._level_pools))
    with pytest.raises(OptionError, match="'slices', 'twins' or 'level'"):
        UnpairedDataset(p, None, healthy="levels")


def test_paired_dataset(phantom_prepared):
    p, _ = phantom_prepared
    ds = PairedDataset(p, "train", label=1, value_range="unit")
    item = ds[0]
    assert item["label"] == 1 and item["image"].min() >= 0 and item["mask"].sum() > 0
    assert len(PairedDataset(p, "train")) == len(p.select("train"))
    with pytest.raises(ValueError, match="no split 'nope'"):
        PairedDataset(p, "nope")


def test_phantom_dataset_names_a_file_per_preparation(tmp_path, monkeypatch):
    """Other prepare() options (a CT window) must not be served the default's cached file."""
    from pseudohealthy_lib.data import default

    made = []
    monkeypatch.setattr(default, "phantom_volumes", lambda subjects, lesion, seed, progress=True: tmp_path / f"v-{lesion}")
    monkeypatch.setattr(default, "prepare", lambda vols, out, **kw: made.append((out.name, kw)) or out.touch())
    plain = default.phantom_dataset(4, "liver")
    narrow = default.phantom_dataset(4, "liver", window=(60, 150))
    assert plain.name == "v-liver-n4-ct-128.npz" and narrow.name == "v-liver-n4-ct-128-window60x150.npz"
    assert made[1][1]["window"] == (60, 150) and made[0][1]["n_slices"] is None
    assert default.phantom_dataset(4, "liver") == plain and len(made) == 2      # cached: not prepared again
