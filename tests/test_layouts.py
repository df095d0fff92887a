"""Loaders on tiny volumes written in each dataset's real release layout."""
import numpy as np
import pytest

from pseudohealthy_lib.data import detect_layout, list_cases, region_mask
from pseudohealthy_lib.data.layouts import LABELS


def test_brats2018_layout(brats2018):
    assert detect_layout(brats2018) == "brats2018"
    cases = list_cases(brats2018)
    assert [c.case_id for c in cases] == ["Brats18_2013_2_1", "Brats18_TCIA01_150_1"]
    c = cases[0]
    assert c.modalities == ["flair", "t1", "t1ce", "t2"]
    assert c.load("flair").data.shape == (24, 24, 12)
    seg = c.load_seg()
    assert set(np.unique(seg)) == {0, 1, 2, 4}
    # sub-regions: whole tumour = 1+2+4, tumour core = 1+4, enhancing = 4
    assert c.lesion_mask("wt").sum() == 12 * 12 * 4
    assert c.lesion_mask("tc").sum() == 8 * 8 * 4
    assert c.lesion_mask("et").sum() == 4 * 4 * 4
    assert c.load_healthy("flair") is None


def test_brats2023_layout_maps_modalities_and_labels(brats2023):
    assert detect_layout(brats2023) == "brats2023"
    c = list_cases(brats2023)[0]
    assert c.case_id == "BraTS-GLI-00000-000"
    assert c.files["flair"].name.endswith("-t2f.nii.gz")
    assert c.files["t1ce"].name.endswith("-t1c.nii.gz")
    assert c.modalities == ["flair", "t1", "t1ce", "t2"]
    seg = c.load_seg()
    assert set(np.unique(seg)) == {0, 1, 2, 3}
    assert c.lesion_mask("et").sum() == 4 * 4 * 4        # label 3 is enhancing tumour in 2023+
    assert c.lesion_mask("tc").sum() == 8 * 8 * 4


def test_same_regions_in_both_brats_conventions(brats2018, brats2023):
    a, b = list_cases(brats2018)[0], list_cases(brats2023)[0]
    for r in ("wt", "tc", "et"):
        assert np.array_equal(a.lesion_mask(r), b.lesion_mask(r))


def test_isles2015_layout(isles2015):
    assert detect_layout(isles2015) == "isles2015"
    cases = list_cases(isles2015)
    assert [c.case_id for c in cases] == ["1", "2"]
    c = cases[0]
    assert c.modalities == ["dwi", "flair", "t1", "t2"]
    assert c.seg.name.startswith("VSD.Brain.XX.O.OT.") and c.seg.suffix == ".nii"
    assert c.lesion_mask().sum() == 12 * 12 * 4


def test_lits_layout_in_batches(lits):
    assert detect_layout(lits) == "lits"
    cases = list_cases(lits)
    assert [c.case_id for c in cases] == ["0", "28"]
    c = cases[1]
    ct = c.load("ct").data
    assert ct.min() == -1000                                       # Hounsfield units kept
    assert c.lesion_mask().sum() == 4 * 4 * 4                      # tumour = label 2
    assert c.lesion_mask("liver").sum() == 12 * 12 * 12            # liver = 1 + 2


def test_region_mask_rejects_unknown_region():
    with pytest.raises(ValueError, match="not defined for brats2018"):
        region_mask(np.zeros((2, 2, 2)), "brats2018", "tumour")


def test_label_conventions_are_the_released_ones():
    assert LABELS["brats2018"]["labels"] == (0, 1, 2, 4)
    assert LABELS["brats2023"]["labels"] == (0, 1, 2, 3)
    assert LABELS["lits"]["regions"]["tumour"] == (2,)


def test_data_root_from_environment(brats2018, monkeypatch):
    monkeypatch.setenv("PH_DATA_ROOT", str(brats2018))
    assert detect_layout() == "brats2018" and len(list_cases()) == 2
    monkeypatch.delenv("PH_DATA_ROOT")
    with pytest.raises(ValueError, match="PH_DATA_ROOT"):
        list_cases()


def test_cli_prepare_uses_ph_data_root(brats2018, tmp_path, monkeypatch, capsys):
    from pseudohealthy_lib.__main__ import main
    from pseudohealthy_lib.data import load_prepared

    monkeypatch.setenv("PH_DATA_ROOT", str(brats2018))
    assert main(["prepare", "--out", str(tmp_path / "p.npz"), "--size", "16", "--slices", "12", "--min-area", "20"]) == 0
    assert len(load_prepared(tmp_path / "p.npz")) == 24
    assert "wrote" in capsys.readouterr().out
