"""Bad input on the data side: ``prepare``, ``phantom`` and the data API (issue 11).

Every bad input gets exit code 2 and one ``error:`` line naming the file or option and the
problem (through the API: a ``DataError``), or the result is checked to be right. The fault
tests kill ``phantom`` and ``prepare`` at a random moment and check that no process or
temporary file survives and that a rerun gives the same data as an uninterrupted run.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import AFFINE, SHAPE

from pseudohealthy_lib import DataError
from pseudohealthy_lib.__main__ import main
from pseudohealthy_lib.data import list_cases, load_prepared, phantom, phantom_ct, prepare
from pseudohealthy_lib.data import preprocess as pp
from pseudohealthy_lib.data.nifti import save_volume
from pseudohealthy_lib.utils import OptionError, atomic_path
from cli_helpers import assert_error, group_members, run_cli, temps

KW = dict(size=16, n_slices=None, min_area=4, fractions=(0.5, 0.0, 0.5), progress=False)
CASES = ("Brats18_A_1", "Brats18_B_1")
ARRAYS = ("images", "healthy", "masks", "seg", "labels", "subjects", "slice_index", "split")


# ----------------------------------------------------------------------------- helpers and fixtures

def lesion(shift: int = 0) -> np.ndarray:
    """An off-centre lesion (not symmetric under any flip), BraTS labels 2 around 1 around 4."""
    seg = np.zeros(SHAPE, np.uint8)
    seg[3 + shift:11 + shift, 12:20, 3:7] = 2
    seg[5 + shift:9 + shift, 14:18, 4:6] = 1
    seg[6 + shift:8 + shift, 15:17, 4:6] = 4
    return seg


def brain(seed: int) -> np.ndarray:
    img = np.zeros(SHAPE, np.float32)
    img[2:22, 1:20, :] = 100 + 10 * np.random.default_rng(seed).random((20, 19, SHAPE[2]))
    return img


def write_case(root: Path, case: str, k: int, affine=AFFINE) -> None:
    """One BraTS 2018 case with FLAIR, its healthy ground truth and the segmentation."""
    seg, healthy = lesion(k), brain(k)
    image = healthy.copy()
    image[seg > 0] = 300
    save_volume(image, affine, root / case / f"{case}_flair.nii.gz")
    save_volume(healthy, affine, root / case / f"{case}_flair_healthy.nii.gz")
    save_volume(seg, affine, root / case / f"{case}_seg.nii.gz")


@pytest.fixture
def gt_data(tmp_path) -> Path:
    """Two BraTS 2018 cases with a healthy ground truth, the way the phantom writes them."""
    root = tmp_path / "data"
    for k, case in enumerate(CASES):
        write_case(root, case, k)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The prepared arrays of the untouched ``gt_data`` dataset."""
    root = tmp_path_factory.mktemp("ref") / "data"
    for k, case in enumerate(CASES):
        write_case(root, case, k)
    return load_prepared(prepare(root, root.parent / "ref.npz", **KW))


def files(root: Path, case: str = CASES[0]) -> dict[str, Path]:
    d = root / case
    return {"image": d / f"{case}_flair.nii.gz", "healthy": d / f"{case}_flair_healthy.nii.gz",
            "seg": d / f"{case}_seg.nii.gz"}


def rewrite(path: Path, edit) -> None:
    """Rewrite a NIfTI file as ``edit(data, affine) -> (data, affine)``."""
    img = nib.load(str(path))
    data, affine = edit(np.asarray(img.dataobj), img.affine)
    save_volume(data, affine, path)


def reorient(codes: str):
    """Edit: store the same voxels in another orientation (same world space)."""
    def edit(data, affine):
        t = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(nib.aff2axcodes(affine)),
                                            nib.orientations.axcodes2ornt(tuple(codes)))
        return nib.orientations.apply_orientation(data, t), affine @ nib.orientations.inv_ornt_aff(t, data.shape)
    return edit


def same_arrays(p, q, keys=ARRAYS) -> None:
    for k in keys:
        a, b = getattr(p, k), getattr(q, k)
        assert (a is None) == (b is None), k
        if a is not None:
            np.testing.assert_array_equal(a, b, err_msg=k)


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, *args)


# ----------------------------------------------------------------------------- alignment

@pytest.mark.parametrize("which", ["seg", "healthy", "image"])
@pytest.mark.parametrize("codes", ["LPS", "RAI", "SRA", "PIL"])
def test_each_file_is_reoriented_by_its_own_affine(gt_data, reference, tmp_path, which, codes):
    rewrite(files(gt_data)[which], reorient(codes))
    same_arrays(load_prepared(prepare(gt_data, tmp_path / "p.npz", **KW)), reference)


def test_reoriented_segmentation_gives_the_true_masks_on_the_cli(gt_data, reference, tmp_path, cli):
    rewrite(files(gt_data)["seg"], reorient("LPS"))
    assert cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz", "--size", 16,
               "--slices", 12, "--min-area", 4)[0] == 0
    p = load_prepared(tmp_path / "p.npz")
    dice = 2 * (p.masks & reference.masks).sum() / (p.masks.sum() + reference.masks.sum())
    assert dice == 1.0


MOVES = {
    "shifted 5 mm": lambda d, a: (d, a + np.array([[0, 0, 0, 5], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])),
    "2 mm voxels": lambda d, a: (d, np.diag([2.0, 2.0, 2.0, 1.0]) @ a),
    "mirrored": lambda d, a: (d, np.diag([-1.0, 1.0, 1.0, 1.0]) @ a),
}


@pytest.mark.parametrize("which, what", [("seg", "segmentation"), ("healthy", "healthy ground truth")])
@pytest.mark.parametrize("move", sorted(MOVES))
def test_file_elsewhere_in_world_space_is_refused(gt_data, tmp_path, which, what, move):
    f = files(gt_data)
    rewrite(f[which], MOVES[move])
    with pytest.raises(DataError, match=rf"{re.escape(str(f[which]))}: {what} is not in the world space "
                                        rf"of the image {re.escape(str(f['image']))}"):
        prepare(gt_data, tmp_path / "p.npz", **KW)
    assert not (tmp_path / "p.npz").exists() and not temps(tmp_path)


def test_misplaced_segmentation_on_the_cli(gt_data, tmp_path, cli):
    rewrite(files(gt_data)["seg"], MOVES["shifted 5 mm"])
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz"),
                 r"error: .*_seg\.nii\.gz: segmentation is not in the world space of the image .*_flair\.nii\.gz",
                 r"5 mm apart")
    assert not (tmp_path / "p.npz").exists()


def test_rounding_noise_in_an_affine_is_accepted(gt_data, reference, tmp_path):
    rewrite(files(gt_data)["seg"], lambda d, a: (d, a + 1e-4))
    same_arrays(load_prepared(prepare(gt_data, tmp_path / "p.npz", **KW)), reference)


def test_ground_truth_of_another_shape_is_refused(gt_data, tmp_path):
    f = files(gt_data)
    rewrite(f["healthy"], lambda d, a: (d[:, :, :10], a))
    with pytest.raises(DataError, match=r"_flair_healthy\.nii\.gz: healthy ground truth shape \(24, 24, 10\) "
                                        r"differs from image shape \(24, 24, 12\) of .*_flair\.nii\.gz"):
        prepare(gt_data, tmp_path / "p.npz", **KW)


# ----------------------------------------------------------------------------- labels

@pytest.mark.parametrize("value", [0, -3])
def test_min_area_below_one_is_refused_on_the_cli(gt_data, tmp_path, cli, value):
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz", "--min-area", value),
                 rf"argument --min-area: must be at least 1, got {value}")
    assert not (tmp_path / "p.npz").exists()


@pytest.mark.parametrize("value", [0, -1])
def test_min_area_below_one_is_refused_by_the_api(gt_data, tmp_path, value):
    with pytest.raises(OptionError, match=rf"min_area .* must be a whole number of at least 1, got {value}"):
        prepare(gt_data, tmp_path / "p.npz", **{**KW, "min_area": value})
    with pytest.raises(OptionError, match="min_area"):
        pp.label_slices(np.zeros((3, 4, 4)), value)


def test_min_area_one_labels_only_lesion_slices_pathological(gt_data, tmp_path):
    p = load_prepared(prepare(gt_data, tmp_path / "p.npz", **{**KW, "min_area": 1}))
    lesion_slices = {3, 4, 5, 6}
    assert all((lab == 1) == (z in lesion_slices) for lab, z in zip(p.labels, p.slice_index))
    assert (p.masks.reshape(len(p), -1).any(1) == (p.labels == 1)).all()


# ----------------------------------------------------------------------------- output paths

def test_out_with_any_suffix_holds_the_data(gt_data, reference, tmp_path, cli):
    out = tmp_path / "out" / "slices.dat"
    assert cli("prepare", "--data", gt_data, "--out", out, "--size", 16, "--slices", 12, "--min-area", 4)[0] == 0
    assert out.stat().st_size > 1000 and sorted(out.parent.iterdir()) == [out]
    same_arrays(load_prepared(out), reference, ("images", "masks", "seg", "labels", "slice_index"))


def test_api_out_with_any_suffix(gt_data, reference, tmp_path):
    out = prepare(gt_data, tmp_path / "o" / "slices", **KW)
    assert out == tmp_path / "o" / "slices" and sorted(out.parent.iterdir()) == [out]
    same_arrays(load_prepared(out), reference)


def test_out_naming_a_folder_is_refused(gt_data, tmp_path, cli):
    (tmp_path / "folder").mkdir()
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "folder"),
                 r"error: .*folder: is a folder; the output must be a file name")
    assert list((tmp_path / "folder").iterdir()) == []
    with pytest.raises(DataError, match="is a folder"):
        prepare(gt_data, tmp_path / "folder", **KW)


def test_out_below_a_file_is_refused(gt_data, tmp_path, cli):
    (tmp_path / "f").write_text("a file")
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "f" / "p.npz"),
                 r"error: .*/f: is a file, so .*p\.npz cannot be written")


def test_phantom_out_naming_a_file_is_refused(tmp_path, cli):
    (tmp_path / "f").write_text("a file")
    assert_error(cli("phantom", "--out", tmp_path / "f", "--subjects", 1), r"error: .*/f: is a file; the output must be a folder")
    assert (tmp_path / "f").read_text() == "a file"


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_killed_writers_temporary_file_is_removed(gt_data, tmp_path):
    stale = tmp_path / f".p.npz.{dead_pid()}-abcd1234.tmp.npz"
    stale.write_bytes(b"half a file")
    live = tmp_path / f".p.npz.{os.getpid()}-0123abcd.tmp.npz"      # a writer still running
    live.write_bytes(b"being written")
    prepare(gt_data, tmp_path / "p.npz", **KW)
    assert not stale.exists() and live.exists()


def test_phantom_output_folder_is_cleaned_of_a_killed_runs_temporary_files(tmp_path):
    stale = tmp_path / "PHG_0000_0000" / f".PHG_0000_0000_flair.nii.gz.{dead_pid()}-abcd.tmp.nii.gz"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    kept = stale.with_name("notes.tmp.txt")                    # not one of ours: left alone
    kept.write_text("mine")
    phantom.output_folder(tmp_path)
    assert not stale.exists() and kept.exists()


def test_interrupted_prepare_leaves_no_file(gt_data, tmp_path, monkeypatch):
    def interrupted(f, **arrays):
        f.write(b"PK half a zip")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare(gt_data, tmp_path / "o" / "p.npz", **KW)
    assert list((tmp_path / "o").iterdir()) == []


def test_writer_that_ignores_the_temporary_path_is_a_bug(tmp_path):
    with pytest.raises(RuntimeError, match="did not create its temporary file"):
        with atomic_path(tmp_path / "x.npz"):
            pass
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- prepared files

@pytest.fixture(scope="module")
def good_arrays(reference):
    arrays = {k: getattr(reference, k) for k in ARRAYS}
    return arrays | {"meta": np.array(json.dumps(reference.meta))}


def _nan(a):
    a = a.astype(np.float32)
    a[0, 3, 3] = np.nan
    return a


def _inf(a):
    a = a.astype(np.float32)
    a[1, 2, 2] = np.inf
    return a


BROKEN = {   # key, how to break it, what the message says
    "NaN image": ("images", _nan, r"holds 1 NaN or infinite values"),
    "inf image": ("images", _inf, r"holds 1 NaN or infinite values"),
    "int16 image 0..1000": ("images", lambda a: (a * 1000).astype(np.int16), r"has dtype int16; expected floating"),
    "image above 1": ("images", lambda a: a.astype(np.float32) * 2, r"has values in \[0, 2\]; expected .* \[0, 1\]"),
    "negative image": ("images", lambda a: a.astype(np.float32) - 0.5, r"has values in \[-0.5, 0.5\]"),
    "4-D images": ("images", lambda a: a[:, None], r"has shape \(\d+, 1, 16, 16\); expected \(N, S, S\)"),
    "non-square images": ("images", lambda a: a[:, :, :8], r"has shape \(\d+, 16, 8\); expected \(N, S, S\)"),
    "no slices": ("images", lambda a: a[:0], r"has shape \(0, 16, 16\); expected \(N, S, S\) with N >= 1"),
    "NaN ground truth": ("healthy", _nan, r"holds 1 NaN"),
    "ground truth of another size": ("healthy", lambda a: a[:, :8, :8], r"has shape \(\d+, 8, 8\); expected"),
    "masks of another size": ("masks", lambda a: a[:, :8, :8], r"has shape \(\d+, 8, 8\); expected \(\d+, 16, 16\)"),
    "masks with label 4": ("masks", lambda a: a * 4, r"has values \[4\]; expected only \[0, 1\]"),
    "float masks": ("masks", lambda a: a.astype(np.float32) * 0.5, r"has dtype float32; expected integers"),
    "4-D masks": ("masks", lambda a: a[..., None], r"has shape \(\d+, 16, 16, 1\)"),
    "seg of another size": ("seg", lambda a: a[:-1], r"has shape \(\d+, 16, 16\); expected"),
    "float seg": ("seg", lambda a: a.astype(np.float64), r"has dtype float64; expected integers"),
    "labels 0..2": ("labels", lambda a: (a + 1).astype(np.int8), r"has values \[2\]; expected only \[0, 1\]"),
    "labels per pixel": ("labels", lambda a: np.repeat(a[:, None], 2, 1), r"has shape \(\d+, 2\); expected \(\d+,\)"),
    "too few labels": ("labels", lambda a: a[1:], r"has shape"),
    "numbers as subjects": ("subjects", lambda a: np.arange(len(a)), r"has dtype int64; expected strings"),
    "too many subjects": ("subjects", lambda a: np.concatenate([a, a[:1]]), r"has shape"),
    "float slice index": ("slice_index", lambda a: a + 0.5, r"has dtype float64; expected integers"),
    "negative slice index": ("slice_index", lambda a: a - 100, r"has negative values"),
    "unknown split": ("split", lambda a: np.where(a == "train", "training", a), r"has values \['training'\]"),
    "split per pixel": ("split", lambda a: np.repeat(a[:, None], 3, 1), r"has shape"),
    "meta not JSON": ("meta", lambda a: np.array("{size: 16"), r"'meta' is not valid JSON"),
    "meta a list": ("meta", lambda a: np.array("[16]"), r"'meta' must be a JSON object"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_prepared_file_is_refused(good_arrays, tmp_path, case):
    key, damage, problem = BROKEN[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **(good_arrays | {key: damage(good_arrays[key])}))
    pattern = rf"bad\.npz: '{key}' {problem}" if key != "meta" else rf"bad\.npz: {problem}"
    with pytest.raises(DataError, match=pattern):
        load_prepared(path)


def test_unknown_key_in_prepared_file(good_arrays, tmp_path):
    np.savez(tmp_path / "x.npz", **good_arrays, weights=np.zeros(3))
    with pytest.raises(DataError, match=r"x\.npz: unknown keys \['weights'\]"):
        load_prepared(tmp_path / "x.npz")


def test_pickled_arrays_are_refused_with_the_file_name(good_arrays, tmp_path):
    subjects = np.array(list(good_arrays["subjects"]), dtype=object)
    np.savez(tmp_path / "x.npz", **(good_arrays | {"subjects": subjects}))
    with pytest.raises(DataError, match=r"x\.npz: cannot read prepared file"):
        load_prepared(tmp_path / "x.npz")


def test_a_good_prepared_file_loads(good_arrays, tmp_path):
    np.savez(tmp_path / "ok.npz", **good_arrays)
    p = load_prepared(tmp_path / "ok.npz")
    assert len(p) == len(good_arrays["images"]) and p.has_ground_truth and p.meta["size"] == 16


# ----------------------------------------------------------------------------- options

@pytest.mark.parametrize("args, message", [
    (["--subjects", "-1"], r"argument --subjects: must be at least 1, got -1"),
    (["--subjects", "0"], r"argument --subjects: must be at least 1, got 0"),
    (["--subjects", "abc"], r"argument --subjects: expected a whole number, got 'abc'"),
    (["--seed", "-2"], r"argument --seed: must be at least 0, got -2"),
    (["--workers", "0"], r"argument --workers: must be at least 1, got 0"),
    (["--modalities", "flair,dwi"], r"error: unknown modality 'dwi'"),
    (["--modalities", ""], r"error: unknown modality ''"),
    (["--organ", "liver", "--lesion", "stroke"], r"error: --lesion and --modalities are options of --organ brain"),
])
def test_bad_phantom_options(tmp_path, cli, args, message):
    assert_error(cli("phantom", "--out", tmp_path / "ph", *args), message)
    assert not (tmp_path / "ph").exists()


@pytest.mark.parametrize("call", [
    lambda out: phantom.generate(out, 0, progress=False),
    lambda out: phantom.generate(out, -1, progress=False),
    lambda out: phantom.generate(out, 1, seed=-1, progress=False),
    lambda out: phantom.generate(out, 1, modalities="flair", progress=False),
    lambda out: phantom_ct.generate(out, 0, progress=False),
])
def test_bad_phantom_arguments_in_the_api(tmp_path, call):
    with pytest.raises(OptionError, match=r"subjects|seed|modalities|cases"):
        call(tmp_path / "ph")
    assert not (tmp_path / "ph").exists()


@pytest.mark.parametrize("args, message", [
    (["--size", "0"], r"argument --size: must be at least 1, got 0"),
    (["--size", "-64"], r"argument --size: must be at least 1, got -64"),
    (["--slices", "0"], r"argument --slices: must be at least 1, got 0"),
    (["--slices", "-5"], r"argument --slices: must be at least 1, got -5"),
    (["--slice-range", "5:2"], r"argument --slice-range: '5:2' is empty or negative"),
    (["--slice-range", "5:5"], r"argument --slice-range: '5:5' is empty or negative"),
    (["--slice-range=-1:4"], r"argument --slice-range: '-1:4' is empty or negative"),
    (["--slice-range", "abc"], r"argument --slice-range: expected START:STOP such as 40:100, got 'abc'"),
    (["--slice-range", "7"], r"argument --slice-range: expected START:STOP"),
    (["--slice-range", "1:2:3"], r"argument --slice-range: expected START:STOP"),
    (["--seed", "-1"], r"argument --seed: must be at least 0"),
    (["--slice-range", "0:500"], r"error: .*_flair\.nii\.gz: slice range 0:500 is empty or outside a volume of 12"),
    (["--region", "liver"], r"error: region 'liver' is not defined for brats2018"),
])
def test_bad_prepare_options(gt_data, tmp_path, cli, args, message):
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz", *args), message)
    assert not (tmp_path / "p.npz").exists()


def test_open_ended_slice_range(gt_data, tmp_path, cli):
    assert cli("prepare", "--data", gt_data, "--out", tmp_path / "a.npz", "--slice-range", "4:", "--size", 16)[0] == 0
    assert cli("prepare", "--data", gt_data, "--out", tmp_path / "b.npz", "--slice-range", "4:12", "--size", 16)[0] == 0
    a, b = load_prepared(tmp_path / "a.npz"), load_prepared(tmp_path / "b.npz")
    same_arrays(a, b)
    assert set(a.slice_index.tolist()) <= set(range(4, 12))


@pytest.mark.parametrize("option, message", [
    ({"size": 0}, r"size must be a whole number of at least 1, got 0"),
    ({"n_slices": 0}, r"n_slices must be a whole number of at least 1, got 0"),
    ({"n_slices": -4}, r"n_slices must be"),
    ({"slice_range": (5, 2)}, r"slice range 5:2 is empty"),
    ({"slice_range": (-1, 4)}, r"slice range must be \(start, stop\) with 0 <= start < stop, got \(-1, 4\)"),
    ({"slice_range": "4:8"}, r"slice range must be \(start, stop\)"),
    ({"max_cases": -1}, r"max_cases must be a whole number of at least 1, got -1"),
    ({"fractions": (0.5, 0.6, -0.1)}, r"split fractions \(0.5, 0.6, -0.1\) must sum to 1 and be 3 non-negative"),
    ({"seed": -1}, r"seed must be"),
    ({"region": "tumour"}, r"region 'tumour' is not defined for brats2018"),
])
def test_bad_prepare_arguments_in_the_api(gt_data, tmp_path, option, message):
    with pytest.raises(OptionError, match=message):
        prepare(gt_data, tmp_path / "p.npz", **{**KW, **option})
    assert not (tmp_path / "p.npz").exists()


def test_ct_window_of_zero_width_is_refused(lits, tmp_path):
    with pytest.raises(OptionError, match="CT window width must be positive, got 0"):
        prepare(lits, tmp_path / "p.npz", window=(40, 0), **KW)


def test_no_data_folder_names_the_option(tmp_path, cli, monkeypatch):
    monkeypatch.delenv("PH_DATA_ROOT", raising=False)
    assert_error(cli("prepare", "--out", tmp_path / "p.npz"), r"error: no data folder given: .*--data.*PH_DATA_ROOT")


def test_data_that_is_a_file(tmp_path, cli):
    (tmp_path / "scan.nii.gz").write_bytes(b"x")
    assert_error(cli("prepare", "--data", tmp_path / "scan.nii.gz", "--out", tmp_path / "p.npz"),
                 r"error: .*scan\.nii\.gz: is a file; give the dataset's folder")


# ----------------------------------------------------------------------------- data folders

@pytest.mark.parametrize("which", ["image", "healthy"])
def test_blank_volume_is_refused(gt_data, tmp_path, cli, which):
    f = files(gt_data)[which]
    rewrite(f, lambda d, a: (np.zeros_like(d), a))
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz"),
                 rf"error: {re.escape(str(f))}: every voxel is 0; the volume is blank")


def test_blank_ct_volume_is_refused(lits, tmp_path):
    vol = list_cases(lits)[0].files["ct"]
    rewrite(vol, lambda d, a: (np.full_like(d, -1000), a))
    with pytest.raises(DataError, match=rf"{re.escape(str(vol))}: every voxel is -1000"):
        prepare(lits, tmp_path / "p.npz", **KW)


@pytest.mark.parametrize("which", ["image", "healthy"])
@pytest.mark.parametrize("background", ["negative", "zero"])
def test_z_scored_image_is_refused(gt_data, tmp_path, background, which):
    f = files(gt_data)[which]

    def zscore(d, a):
        brain_ = d > 0
        z = (d - d[brain_].mean()) / d[brain_].std()
        return (z if background == "negative" else np.where(brain_, z, 0)).astype(np.float32), a

    rewrite(f, zscore)
    with pytest.raises(DataError, match=rf"{re.escape(str(f))}: intensities go down to -\d.*background of 0, "
                                        r"not z-scored"):
        prepare(gt_data, tmp_path / "p.npz", **KW)


def test_slight_negative_ringing_is_clipped_as_before(gt_data, reference, tmp_path):
    def ringing(d, a):
        d = d.copy()
        d[0, 0, :] = -0.5                      # interpolation ringing in the background
        return d, a

    rewrite(files(gt_data)["image"], ringing)
    same_arrays(load_prepared(prepare(gt_data, tmp_path / "p.npz", **KW)), reference)


def test_nii_and_nii_gz_of_one_image_are_refused(gt_data, tmp_path, cli):
    f = files(gt_data)["image"]
    img = nib.load(str(f))
    save_volume(np.asarray(img.dataobj), img.affine, f.with_name(f.name[:-3]))
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz"),
                 r"error: Brats18_A_1_flair is there 2 times: .*_flair\.nii\.gz, .*_flair\.nii; keep one")


@pytest.mark.parametrize("stem", ["volume-0", "segmentation-0"])
def test_lits_file_in_two_formats_is_refused(lits, tmp_path, stem):
    f = next(lits.rglob(f"{stem}.nii"))
    img = nib.load(str(f))
    save_volume(np.asarray(img.dataobj), img.affine, f.with_name(f"{stem}.nii.gz"))
    with pytest.raises(DataError, match=rf"{stem} is there 2 times: .*{stem}\.nii.*, .*{stem}\.nii"):
        prepare(lits, tmp_path / "p.npz", **KW)


def test_lits_case_in_two_batches_is_refused(lits, tmp_path):
    for f in (lits / "Training Batch 1").iterdir():
        (lits / "Training Batch 2" / f.name).write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=r"volume-0 is there 2 times: .*Batch 1/volume-0\.nii, .*Batch 2/volume-0\.nii"):
        prepare(lits, tmp_path / "p.npz", **KW)


def test_isles_folder_with_two_images_is_refused(isles2015, tmp_path):
    f = list_cases(isles2015)[0].files["flair"]
    (f.parent / "copy.nii").write_bytes(f.read_bytes())
    with pytest.raises(DataError, match=r"a \.nii image is there 2 times: .*MR_Flair.*\.nii, .*copy\.nii"):
        prepare(isles2015, tmp_path / "p.npz", **KW)


def test_isles_case_id_twice_is_refused(isles2015, tmp_path):
    import shutil

    shutil.copytree(isles2015 / "1", isles2015 / "extra" / "1")
    with pytest.raises(DataError, match=r"case id '1' is there twice \(.*/1/VSD.*\.nii and .*/extra/1/VSD.*\.nii\)"):
        prepare(isles2015, tmp_path / "p.npz", **KW)


APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4000)


def test_hidden_and_backup_files_are_ignored_brats(gt_data, reference, tmp_path):
    for p in list(files(gt_data).values()):
        p.with_name("._" + p.name).write_bytes(APPLE_DOUBLE)
        p.with_name(p.name + ".orig").write_bytes(p.read_bytes())
    (gt_data / ".ipynb_checkpoints").mkdir()
    same_arrays(load_prepared(prepare(gt_data, tmp_path / "p.npz", **KW)), reference)


def test_hidden_and_backup_files_are_ignored_lits(lits, tmp_path):
    clean = load_prepared(prepare(lits, tmp_path / "clean.npz", **KW))
    batch = lits / "Training Batch 1"
    for name in ("segmentation-0.nii.orig", "segmentation-0.nii~", "segmentation-0.nii.bak", "._segmentation-0.nii",
                 "._volume-0.nii", "volume-0.nii.orig"):
        (batch / name).write_bytes(APPLE_DOUBLE)
    hidden = lits / ".Trash-1000" / "files"
    hidden.mkdir(parents=True)
    (hidden / "volume-5.nii").write_bytes((batch / "volume-0.nii").read_bytes())
    (lits / "__MACOSX" / "Training Batch 1").mkdir(parents=True)
    (lits / "__MACOSX" / "Training Batch 1" / "volume-0.nii").write_bytes(APPLE_DOUBLE)
    assert [c.case_id for c in list_cases(lits)] == ["0", "28"]
    same_arrays(load_prepared(prepare(lits, tmp_path / "p.npz", **KW)), clean)


def test_hidden_files_are_ignored_isles(isles2015, tmp_path):
    clean = load_prepared(prepare(isles2015, tmp_path / "clean.npz", **KW))
    for case in list_cases(isles2015):
        for f in [*case.files.values(), case.seg]:
            (f.parent / f"._{f.name}").write_bytes(APPLE_DOUBLE)
            mac = isles2015 / "__MACOSX" / f.relative_to(isles2015)
            mac.parent.mkdir(parents=True, exist_ok=True)
            mac.with_name(f"._{f.name}").write_bytes(APPLE_DOUBLE)
    assert [c.case_id for c in list_cases(isles2015)] == ["1", "2"]
    same_arrays(load_prepared(prepare(isles2015, tmp_path / "p.npz", **KW)), clean)


# ----------------------------------------------------------------------------- the command line's error policy

def test_a_bug_keeps_its_traceback(gt_data, tmp_path, monkeypatch):
    from pseudohealthy_lib.data import prepared

    def bug(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr(prepared, "prepare", bug)
    with pytest.raises(KeyError, match="internal"):
        main(["prepare", "--data", str(gt_data), "--out", str(tmp_path / "p.npz")])


@pytest.mark.parametrize("error", [PermissionError, IsADirectoryError, FileNotFoundError, DataError, OptionError],
                         ids=lambda e: e.__name__)
def test_user_errors_get_one_line(gt_data, tmp_path, monkeypatch, cli, error):
    from pseudohealthy_lib.data import prepared

    def refuse(*args, **kwargs):
        raise error(f"{tmp_path}/x: not allowed")

    monkeypatch.setattr(prepared, "prepare", refuse)
    assert_error(cli("prepare", "--data", gt_data, "--out", tmp_path / "p.npz"), r"^error: .*/x: not allowed\n$")


# ----------------------------------------------------------------------------- fault tests: kill and rerun

SEED = 4
PHANTOM = ["--subjects", "3", "--seed", str(SEED), "--modalities", "flair"]


def run_and_kill(cmd: list, sig: int, started, delay: float) -> int:
    """Start ``cmd`` in its own process group, send ``sig`` to its main process ``delay`` seconds
    after ``started()`` turns true, and wait until no process of the group is left."""
    proc = subprocess.Popen([sys.executable, "-m", "pseudohealthy_lib", *map(str, cmd)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, sig)                  # the main process only, as `kill PID` does
    proc.wait(60)
    deadline = time.monotonic() + 20
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert group_members(proc.pid) == [], f"processes left after {signal.Signals(sig).name} at {delay:.2f} s"
    return proc.returncode


def rerun(cmd: list) -> None:
    subprocess.run([sys.executable, "-m", "pseudohealthy_lib", *map(str, cmd)], check=True, timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def phantom_reference(tmp_path_factory):
    """An uninterrupted run: 3 FLAIR subjects, written in this process."""
    out = tmp_path_factory.mktemp("phref") / "ph"
    phantom.generate(out, 3, seed=SEED, modalities=("flair",), workers=1, progress=False)
    return out


def same_volumes(a: Path, b: Path) -> None:
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for n in names:
        x, y = nib.load(str(a / n)), nib.load(str(b / n))
        np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj), err_msg=str(n))
        np.testing.assert_array_equal(x.affine, y.affine, err_msg=str(n))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
@pytest.mark.parametrize("delay", [0.0, 1.5], ids=["starting", "working"])
def test_killed_phantom_leaves_no_workers_and_a_rerun_completes_it(phantom_reference, tmp_path, sig, delay):
    # the delay counts from the moment the output folder appears: at 0 the workers are being
    # started, and a stop then must not leave the parent waiting for them
    out = tmp_path / "ph"
    cmd = ["phantom", "--out", out, *PHANTOM, "--workers", "2"]
    code = run_and_kill(cmd, sig, out.exists, delay)
    if sig == signal.SIGTERM and code != 0:
        assert code == 128 + signal.SIGTERM and not temps(out), f"killed at {delay:.2f} s"
    rerun(cmd)
    assert not temps(out), f"killed at {delay:.2f} s"
    same_volumes(phantom_reference, out)


@pytest.fixture(scope="module")
def prepare_reference(phantom_reference):
    """An uninterrupted ``prepare`` of the phantom, run as a command, with its wall time."""
    out = phantom_reference.parent / "ref.npz"
    t0 = time.perf_counter()
    rerun(["prepare", "--data", phantom_reference, "--out", out, "--size", 32])
    return load_prepared(out), time.perf_counter() - t0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_prepare_leaves_nothing_and_a_rerun_gives_the_same_file(phantom_reference, prepare_reference,
                                                                      tmp_path, sig):
    ref, seconds = prepare_reference
    out = tmp_path / "p.npz"
    cmd = ["prepare", "--data", phantom_reference, "--out", out, "--size", 32]
    delay = random.uniform(0.3, 1.0) * seconds
    run_and_kill(cmd, sig, lambda: True, delay)
    if sig == signal.SIGTERM:                  # clean-up ran: no temporary file, no half file
        assert list(tmp_path.iterdir()) in ([], [out]), f"killed at {delay:.2f} s"
    if out.exists():                           # finished before the signal: a whole file
        same_arrays(load_prepared(out), ref)
    rerun(cmd)
    assert list(tmp_path.iterdir()) == [out], f"killed at {delay:.2f} s"
    same_arrays(load_prepared(out), ref)
    assert load_prepared(out).meta == ref.meta


def test_a_failing_phantom_worker_stops_the_run_with_its_error(tmp_path):
    # the worker's own error reaches the parent (which then stops the other worker), instead of
    # a run that waits for a subject that will never come
    from tqdm.auto import tqdm
    jobs = [(SEED, 0, "glioma", ("flair",), tmp_path), (SEED, 1, "no-such-lesion", ("flair",), tmp_path)]
    with pytest.raises(RuntimeError, match="phantom worker .* failed: OptionError: .*no-such-lesion"):
        phantom._run_workers(jobs, 2, tqdm(disable=True))
    assert multiprocessing.active_children() == []
