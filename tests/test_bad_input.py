"""Every bad input gets an error that names the file and the problem."""

import numpy as np
import pytest

from pseudohealthy_lib import DataError
from pseudohealthy_lib.data import detect_layout, list_cases, load_prepared, load_volume, prepare
from pseudohealthy_lib.data.nifti import save_volume


def _case(root):
    return list_cases(root)[0]


def test_corrupt_gzip(brats2018):
    c = _case(brats2018)
    c.files["flair"].write_bytes(b"this is not a gzip file at all")
    with pytest.raises(DataError, match=r"_flair\.nii\.gz: cannot read NIfTI volume"):
        c.load("flair")


def test_truncated_gzip(brats2018):
    c = _case(brats2018)
    raw = c.files["t2"].read_bytes()
    c.files["t2"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"_t2\.nii\.gz: cannot read NIfTI volume.*(corrupt|truncated)"):
        c.load("t2")


def test_truncated_uncompressed(isles2015):
    c = _case(isles2015)
    raw = c.files["flair"].read_bytes()
    c.files["flair"].write_bytes(raw[: len(raw) - 500])
    with pytest.raises(DataError, match=r"MR_Flair.*\.nii: cannot read"):
        c.load("flair")


def test_wrong_number_of_dimensions(tmp_path):
    p = save_volume(np.zeros((4, 4), np.float32), np.eye(4), tmp_path / "flat.nii.gz")
    with pytest.raises(DataError, match=r"flat\.nii\.gz: expected a 3-D volume, got 2 dimensions"):
        load_volume(p)
    p = save_volume(np.zeros((4, 4, 4, 3), np.float32), np.eye(4), tmp_path / "fourd.nii.gz")
    with pytest.raises(DataError, match=r"fourd\.nii\.gz: expected a 3-D volume, got 4 dimensions"):
        load_volume(p)


def test_trailing_singleton_axis_is_fine(tmp_path):
    p = save_volume(np.ones((4, 4, 4, 1), np.float32), np.eye(4), tmp_path / "v.nii.gz")
    assert load_volume(p).data.shape == (4, 4, 4)


def test_missing_modality(brats2018):
    c = _case(brats2018)
    c.files["t1ce"].unlink()
    c = _case(brats2018)
    with pytest.raises(DataError, match=r"Brats18_2013_2_1: case Brats18_2013_2_1 has no 't1ce' image"):
        c.load("t1ce")


def test_unknown_labels(brats2018):
    c = _case(brats2018)
    seg = c.load_seg()
    seg[0, 0, 0] = 3                       # label 3 does not exist in BraTS 2018-2021
    save_volume(seg, np.eye(4), c.seg)
    with pytest.raises(DataError, match=r"_seg\.nii\.gz: segmentation has unknown labels \[3\]"):
        c.load_seg()


def test_non_integer_labels(brats2023):
    c = _case(brats2023)
    save_volume(np.full((24, 24, 12), 0.5, np.float32), np.eye(4), c.seg)
    with pytest.raises(DataError, match=r"-seg\.nii\.gz: segmentation has non-integer values"):
        c.load_seg()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_voxels(brats2018, bad):
    c = _case(brats2018)
    img = c.load("flair").data
    img[1, 2, 3] = bad
    img[2, 2, 3] = bad
    save_volume(img, np.eye(4), c.files["flair"])
    with pytest.raises(DataError, match=r"_flair\.nii\.gz: 2 voxels are NaN or infinite"):
        c.load("flair")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: the data folder is empty"):
        detect_layout(tmp_path / "empty")


def test_unknown_layout(tmp_path):
    (tmp_path / "x" / "patient1").mkdir(parents=True)
    (tmp_path / "x" / "patient1" / "scan.dcm").write_bytes(b"")
    with pytest.raises(DataError, match=r"x: unknown folder layout \(first entries: patient1\)"):
        detect_layout(tmp_path / "x")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: data folder not found"):
        list_cases(tmp_path / "nowhere")


def test_segmentation_shape_mismatch(brats2018, tmp_path):
    c = _case(brats2018)
    save_volume(np.zeros((24, 24, 10), np.uint8), np.eye(4), c.seg)
    with pytest.raises(DataError, match=r"_seg\.nii\.gz: segmentation shape \(24, 24, 10\) differs"):
        prepare(brats2018, tmp_path / "p.npz", progress=False)
    assert not (tmp_path / "p.npz").exists()


def test_corrupt_prepared_file(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(DataError, match=r"bad\.npz: cannot read prepared file"):
        load_prepared(p)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(DataError, match=r"other\.npz: not a prepared slice file, missing"):
        load_prepared(tmp_path / "other.npz")


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    from pseudohealthy_lib.__main__ import main

    (tmp_path / "empty").mkdir()
    assert main(["prepare", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "p.npz")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "the data folder is empty" in err


def test_interrupted_write_leaves_nothing(tmp_path):
    from pseudohealthy_lib.utils import atomic_path

    target = tmp_path / "cache.npz"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [target]
