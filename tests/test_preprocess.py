"""Each preprocessing step on hand-made inputs whose answer is known."""
import numpy as np
import pytest

from pseudohealthy_lib.data import preprocess as pp


def test_clip_and_scale_uses_the_995_percentile():
    v = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    out, upper = pp.clip_and_scale(v)
    assert upper == pytest.approx(np.percentile(v, 99.5))
    assert out.min() == 0 and out.max() == 1
    assert (out == 1).sum() == 5                       # the top 0.5 % is clipped
    assert out[0, 0, 1] == pytest.approx(1 / upper)


def test_clip_and_scale_reuses_a_given_upper_value():
    v = np.array([0, 5, 10, 20], np.float32)
    out, upper = pp.clip_and_scale(v, upper=10)
    assert upper == 10 and out.tolist() == [0, 0.5, 1, 1]


def test_clip_and_scale_foreground_ignores_background():
    v = np.zeros(1000, np.float32)
    v[:100] = np.linspace(1, 100, 100)
    _, whole = pp.clip_and_scale(v)
    _, fg = pp.clip_and_scale(v, foreground=True)
    assert whole < fg == pytest.approx(np.percentile(np.linspace(1, 100, 100), 99.5))


def test_tanh_range_round_trip():
    x = np.array([0, 0.25, 1])
    assert pp.to_tanh_range(x).tolist() == [-1, -0.5, 1]
    assert np.allclose(pp.from_tanh_range(pp.to_tanh_range(x)), x)


def test_ct_window():
    hu = np.array([-1000, -160, 40, 240, 3000])
    assert pp.ct_window(hu, level=40, width=400).tolist() == [0, 0, 0.5, 1, 1]


def test_to_ras_flips_an_lps_volume():
    v = np.arange(24).reshape(2, 3, 4)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    out = pp.to_ras(v, lps)
    assert np.array_equal(out, v[::-1, ::-1, :])


def test_axial_slices_orientation():
    v = np.zeros((4, 5, 3))                          # RAS: x grows to the right, y to the front
    v[3, 4, 2] = 1                                   # right-most, most anterior voxel, top slice
    s = pp.axial_slices(v)
    assert s.shape == (3, 5, 4)                      # (Z, H, W)
    assert s[2, 0, 0] == 1                           # anterior is row 0, the right is column 0


def test_select_slices():
    assert pp.select_slices(155, 60).tolist() == list(range(47, 107))
    assert pp.select_slices(10, 60).tolist() == list(range(10))
    assert pp.select_slices(155, start=30, stop=35).tolist() == [30, 31, 32, 33, 34]
    with pytest.raises(ValueError, match="outside a volume of 155"):
        pp.select_slices(155, start=100, stop=200)


def test_label_slices_drops_ambiguous_ones():
    masks = np.zeros((3, 10, 10), bool)
    masks[1, :2, :2] = True                          # 4 pixels: ambiguous
    masks[2, :5, :5] = True                          # 25 pixels: pathological
    assert pp.label_slices(masks, min_area=10).tolist() == [pp.HEALTHY, pp.AMBIGUOUS, pp.PATHOLOGICAL]


def test_square_box_and_crop_resize():
    img = np.zeros((1, 20, 30), np.float32)
    img[0, 5:15, 10:14] = 1
    box = pp.square_box(img > 0, margin=1)
    t, b, l, r = box
    assert b - t == r - l == 12                      # square, around the 10x4 object plus margin
    out = pp.crop_resize(img, 12, box)
    assert out.shape == (1, 12, 12) and out.sum() == 40
    small = pp.crop_resize(img, 6, box)
    assert small.shape == (1, 6, 6) and small.sum() == pytest.approx(10, rel=0.05)   # area preserved


def test_crop_pads_outside_the_image():
    img = np.ones((1, 4, 4), np.float32)
    out = pp.crop_resize(img, 6, (-1, 5, -1, 5))
    assert out.shape == (1, 6, 6) and out.sum() == 16 and out[0, 0, 0] == 0


def test_nearest_resize_keeps_labels():
    seg = np.zeros((1, 40, 40), np.uint8)
    seg[0, 10:30, 10:30] = 2
    seg[0, 15:25, 15:25] = 4
    out = pp.crop_resize(seg, 16, mode="nearest")
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 2, 4}


def test_patient_split_is_seeded_and_disjoint():
    ids = [f"p{i}" for i in range(10)] * 3           # several slices per patient
    a = pp.patient_split(ids, (0.7, 0.1, 0.2), seed=1)
    assert a == pp.patient_split(ids, (0.7, 0.1, 0.2), seed=1)
    assert a != pp.patient_split(ids, (0.7, 0.1, 0.2), seed=2)
    assert sorted(a) == sorted(set(ids))             # every patient exactly once
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 7, "val": 1, "test": 2}


def test_patient_split_gives_small_splits_a_patient():
    a = pp.patient_split(["a", "b", "c"], (0.7, 0.1, 0.2), seed=0)
    assert sorted(a.values()) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="must sum to 1"):
        pp.patient_split(["a"], (0.5, 0.2))
