"""Tests of the LiTS-like liver CT phantom (pseudohealthy_lib.data.phantom_ct)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from pseudohealthy_lib.data import phantom_ct
from pseudohealthy_lib.data.layouts import list_cases
from pseudohealthy_lib.data.phantom_ct import (LESION_MARGIN, CTCase, generate, lesion_support, make_case,
                                               write_case)

# small grid covering the whole body (384 x 384 x 120 mm) so that the tests run fast
SMALL = dict(shape=(96, 96, 12), spacing=(4.0, 4.0, 10.0))


@pytest.fixture(scope="module")
def small_cases() -> list[CTCase]:
    return [make_case(0, i, **SMALL) for i in range(4)]


def test_types_shapes_and_orientation(small_cases):
    c = small_cases[2]
    assert isinstance(c, CTCase)
    assert c.case_id == "2"
    assert c.volume.shape == c.healthy.shape == c.seg.shape == SMALL["shape"]
    assert c.volume.dtype == np.int16 and c.healthy.dtype == np.int16 and c.seg.dtype == np.uint8
    assert nib.aff2axcodes(c.affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.diag(c.affine)[:3], SMALL["spacing"])
    assert set(np.unique(c.seg).tolist()) == {0, 1, 2}


def test_deterministic_per_seed_and_index(small_cases):
    again = make_case(0, 1, **SMALL)
    np.testing.assert_array_equal(again.volume, small_cases[1].volume)
    np.testing.assert_array_equal(again.healthy, small_cases[1].healthy)
    np.testing.assert_array_equal(again.seg, small_cases[1].seg)
    assert not np.array_equal(small_cases[0].volume, small_cases[1].volume)
    assert not np.array_equal(small_cases[0].seg, small_cases[1].seg)
    assert not np.array_equal(make_case(1, 1, **SMALL).volume, small_cases[1].volume)


def test_hu_values_are_plausible(small_cases):
    for c in small_cases:
        liver = np.median(c.volume[c.seg == 1])
        tumour = np.median(c.volume[c.seg == 2])
        assert 90 <= liver <= 115, (c.case_id, liver)            # portal venous phase, 95-110 HU
        assert tumour <= liver - 30, (c.case_id, liver, tumour)
        assert 5 <= tumour <= 75, (c.case_id, tumour)
        # air in the corners (in front of the patient, away from the table)
        corner = c.volume[:8, -8:, :]
        assert -1024 <= np.median(corner) <= -980
        # subcutaneous and visceral fat, and bone, are present
        body = c.volume[c.volume > -500]
        assert np.mean((body > -150) & (body < -50)) > 0.05
        assert c.volume.max() > 500
        assert c.volume.min() >= -1024


def test_tumours_are_inside_the_liver(small_cases):
    for c in small_cases:
        tumour = c.seg == 2
        comps = ndimage.label(tumour)[1]
        assert 1 <= comps <= 4
        # without the tumours these voxels are liver: the healthy scan shows liver HU there
        liver = np.median(c.healthy[c.seg == 1])
        assert abs(np.median(c.healthy[tumour]) - liver) < 15
        # each tumour borders liver tissue (label 1), not only other organs
        grown = ndimage.binary_dilation(tumour, np.ones((3, 3, 3), bool))
        assert (c.seg[grown & ~tumour] == 1).mean() > 0.3


def test_lesion_changes_nothing_outside_its_support(small_cases):
    for c in small_cases:
        support = lesion_support(c.seg)
        np.testing.assert_array_equal(c.volume[~support], c.healthy[~support])
        assert (c.volume[c.seg == 2] != c.healthy[c.seg == 2]).mean() > 0.95


def test_lesion_changes_nothing_outside_its_support_default_grid():
    c = make_case(3, 5)
    assert c.volume.shape == phantom_ct.SHAPE
    support = lesion_support(c.seg)
    assert (c.seg == 2).any()
    np.testing.assert_array_equal(c.volume[~support], c.healthy[~support])
    assert (c.volume[c.seg == 2] != c.healthy[c.seg == 2]).mean() > 0.95


def test_lesion_support_is_a_dilated_tumour_mask():
    seg = np.zeros((9, 9, 9), np.uint8)
    seg[2:7, 2:7, 2:7] = 1          # liver does not count
    seg[4, 4, 4] = 2
    support = lesion_support(seg)
    expected = np.zeros_like(support)
    m = LESION_MARGIN
    expected[4 - m:5 + m, 4 - m:5 + m, 4 - m:5 + m] = True
    np.testing.assert_array_equal(support, expected)
    assert max(phantom_ct.PV_RADIUS) <= LESION_MARGIN


def test_rejects_bad_shape():
    with pytest.raises(ValueError):
        make_case(0, 0, shape=(32, 32))


def test_generate_round_trip_and_resume(tmp_path):
    ids = generate(tmp_path, 2, progress=False)
    assert ids == ["0", "1"]
    cases = list_cases(tmp_path)
    assert [c.layout for c in cases] == ["lits", "lits"]
    assert [c.case_id for c in cases] == ["0", "1"]
    for case in cases:
        ref = make_case(0, int(case.case_id))
        vol = case.load("ct")
        assert vol.orientation == "RAS"
        np.testing.assert_allclose(vol.affine, ref.affine)
        np.testing.assert_array_equal(vol.data, ref.volume)
        np.testing.assert_array_equal(case.load_seg(), ref.seg)
        np.testing.assert_array_equal(case.load_healthy("ct").data, ref.healthy)

    # resume: complete cases are kept, a case with a missing file is written again
    files = sorted(tmp_path.glob("*.nii.gz"))
    assert len(files) == 6
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    (tmp_path / "healthy-1.nii.gz").unlink()
    generate(tmp_path, 2, progress=False)
    for p in files:
        assert p.is_file()
        if p.name.endswith("-0.nii.gz"):
            assert p.stat().st_mtime_ns == mtimes[p]
    np.testing.assert_array_equal(list_cases(tmp_path)[1].load_healthy("ct").data, make_case(0, 1).healthy)


def test_write_case_returns_volume_path(tmp_path):
    c = make_case(0, 7, **SMALL)
    path = write_case(c, tmp_path)
    assert path == tmp_path / "volume-7.nii.gz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["healthy-7.nii.gz", "segmentation-7.nii.gz",
                                                           "volume-7.nii.gz"]


def test_lesion_liver_trains_on_the_ct_phantom(tmp_path, monkeypatch):
    from pseudohealthy_lib import presets
    from pseudohealthy_lib.data import default
    from pseudohealthy_lib.utils import OptionError

    monkeypatch.setenv("PH_CACHE", str(tmp_path))
    cfg = presets.config("antgan", "fast", lesion="liver", subjects=3, size=64)
    data = default.training_data(cfg, progress=False)
    assert data.meta["layout"] == "lits" and data.meta["modality"] == "ct" and data.meta["n_slices"] is None
    assert len(set(data.subjects.tolist())) == 3 and data.has_ground_truth
    assert data.images.shape[1:] == (64, 64) and data.labels.any() and not data.labels.all()
    # every slice of the volume is kept: 48 per case, but for slices whose tumour is too small to count
    assert len(data) <= 3 * phantom_ct.SHAPE[2] and len(data) > 2 * phantom_ct.SHAPE[2]
    with pytest.raises(OptionError, match="the liver phantom"):
        presets.config("antgan", "fast", lesion="liver", modality="t2").check()
