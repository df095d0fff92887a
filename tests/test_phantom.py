"""The brain phantom: determinism, BraTS layout, labels and healthy ground truth."""
import numpy as np
import pytest

from pseudohealthy_lib.data import list_cases, phantom


@pytest.fixture(scope="module")
def glioma():
    return phantom.make_subject(7, 3, "glioma")


def test_shape_dtype_and_labels(glioma):
    assert glioma.seg.shape == phantom.SHAPE == (240, 240, 155)
    assert set(np.unique(glioma.seg)) <= {0, 1, 2, 4}
    assert (glioma.seg > 0).sum() > 1000                            # there is a lesion
    for m in phantom.MODALITIES:
        assert glioma.images[m].dtype == np.int16 and glioma.images[m].shape == phantom.SHAPE
        assert glioma.images[m].min() == 0                           # skull-stripped background


def test_same_seed_same_voxels(glioma):
    again = phantom.make_subject(7, 3, "glioma", modalities=("flair",))
    assert np.array_equal(again.images["flair"], glioma.images["flair"])
    assert np.array_equal(again.seg, glioma.seg)
    other = phantom.make_subject(7, 4, "glioma", modalities=("flair",))
    assert not np.array_equal(other.seg, glioma.seg)


def test_healthy_ground_truth_equals_image_outside_the_lesion(glioma):
    support = phantom.lesion_support(glioma.seg)
    for m in phantom.MODALITIES:
        img, gt = glioma.images[m], glioma.healthy[m]
        assert np.array_equal(img[~support], gt[~support]), m
        lesion = glioma.seg > 0
        assert np.abs(img[lesion].astype(float) - gt[lesion]).mean() > 20, m


def test_lesion_contrast_follows_mri_physics(glioma):
    """Oedema is bright on FLAIR, enhancing tumour bright on T1ce, necrosis dark on T1."""
    seg, im = glioma.seg, glioma.images
    brain = im["flair"] > 0
    healthy_wm = brain & (seg == 0)
    for m, label, brighter in [("flair", 2, True), ("t1", 1, False)]:
        assert (np.median(im[m][seg == label]) > np.median(im[m][healthy_wm])) == brighter
    if (seg == 4).any():
        assert np.median(im["t1ce"][seg == 4]) > np.percentile(im["t1ce"][healthy_wm], 90)


def test_stroke_lesion_is_label_one():
    s = phantom.make_subject(0, 1, "stroke", modalities=("flair",))
    assert set(np.unique(s.seg)) == {0, 1}
    support = phantom.lesion_support(s.seg)
    assert np.array_equal(s.images["flair"][~support], s.healthy["flair"][~support])


def test_generate_writes_brats_layout_and_resumes(tmp_path):
    ids = phantom.generate(tmp_path, 1, seed=5, modalities=("flair",), progress=False)
    cases = list_cases(tmp_path)
    assert [c.case_id for c in cases] == ids == ["PHG_0005_0000"]
    c = cases[0]
    assert c.layout == "brats2018" and c.modalities == ["flair"]
    gt = c.load_healthy("flair")
    assert gt is not None and gt.data.shape == (240, 240, 155)
    assert gt.orientation == "RAS" and gt.spacing == (1.0, 1.0, 1.0)
    mtime = c.files["flair"].stat().st_mtime_ns
    phantom.generate(tmp_path, 1, seed=5, modalities=("flair",), progress=False)   # nothing to do
    assert c.files["flair"].stat().st_mtime_ns == mtime
    assert not list(tmp_path.glob("**/*.tmp*"))                                     # atomic writes


def test_cli_phantom(tmp_path):
    from pseudohealthy_lib.__main__ import main

    assert main(["phantom", "--out", str(tmp_path), "--subjects", "1", "--seed", "2",
                 "--lesion", "stroke", "--modalities", "flair", "--workers", "1"]) == 0
    assert (tmp_path / "PHS_0002_0000" / "PHS_0002_0000_flair_healthy.nii.gz").is_file()


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown lesion type"):
        phantom.make_subject(0, 0, "tumour")
    with pytest.raises(ValueError, match="unknown modality"):
        phantom.make_subject(0, 0, modalities=("dwi",))
