"""Bad input on the training side: ``train``, ``evaluate``, ``zoo`` and the training API (issue 11).

Every bad input gets exit code 2 and one ``error:`` line naming the file or option and the
problem (through the API: a ``DataError`` or ``OptionError``), or the result is checked to be
right. A loss that turns NaN or infinite stops training and keeps the last good checkpoint. The
fault tests kill ``train`` at a random moment and check that no process or temporary file
survives and that a rerun ends with the same weights and losses, bit for bit, as a run that was
never interrupted.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pseudohealthy_lib import DataError, presets, zoo
from pseudohealthy_lib.__main__ import main
from pseudohealthy_lib.presets import parse_value as _value
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.engine import CHECKPOINT, TrainConfig, Trainer, TrainingDiverged, pick_precision, read_history
from pseudohealthy_lib.methods import ANTGAN, get_method
from pseudohealthy_lib.utils import OptionError
from cli_helpers import assert_error, group_members, run_cli, temps, trainer

TINY = {"ngf": 8, "n_blocks": 1, "ndf": 8}
FAST = ["--preset", "fast", "--set", "n_blocks=1"]       # fast: ngf 8, ndf 8, log every 2, checkpoint every 3


# ----------------------------------------------------------------------------- helpers and fixtures

@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks train fastest on one thread (and do not fight other jobs for the cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg(data, **kw):
    opts = {**TINY, **kw.pop("options", {})}
    return TrainConfig(**{"method": "antgan", "steps": 4, "batch_size": 2, "size": 32, "data": str(data),
                          "log_every": 2, "ckpt_every": 3, "options": opts, **kw})


@pytest.fixture
def cli(capsys):
    return lambda *args: run_cli(capsys, *args)


def train_args(data, out, *extra):
    return [str(a) for a in ("train", "antgan", *FAST, "--data", data, "--out", out, *extra)]


@pytest.fixture(scope="module")
def run_dir(tiny_prepared, tmp_path_factory):
    """A 3-step ANT-GAN run (``train_args(tiny, DIR, '--steps', 3)``), with its checkpoint."""
    out = tmp_path_factory.mktemp("run") / "antgan"
    assert main(train_args(tiny_prepared, out, "--steps", 3)) == 0
    return out


@pytest.fixture
def run_copy(run_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    return out


@pytest.fixture(scope="module")
def segmentor_dir(tiny_prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("seg") / "seg"
    assert main([str(a) for a in ("train", "segmentor", "--preset", "fast", "--data", tiny_prepared, "--steps", 1,
                                  "--set", "unet_downs=5", "--out", out)]) == 0
    return out


def edited_data(tiny_prepared, path: Path, **changes) -> Path:
    """A copy of the tiny prepared file with some arrays changed (or dropped: value None)."""
    with np.load(tiny_prepared) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        arrays.pop(k) if v is None else arrays.__setitem__(k, v(arrays) if callable(v) else v)
    np.savez(path, **arrays)
    return path


# ----------------------------------------------------------------------------- options of train

@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], r"argument --steps: must be at least 1, got -5"),
    (["--steps", "0"], r"argument --steps: must be at least 1, got 0"),
    (["--batch-size", "0"], r"argument --batch-size: must be at least 1, got 0"),
    (["--lr", "0"], r"argument --lr: must be a positive number, got 0"),
    (["--lr=-1e-3"], r"argument --lr: must be a positive number, got -1e-3"),
    (["--lr", "nan"], r"argument --lr: must be a positive number, got nan"),
    (["--seed", "-1"], r"argument --seed: must be at least 0, got -1"),
    (["--set", "ngf=abc"], r"error: antgan option ngf: expected a whole number of at least 1, got 'abc'"),
    (["--set", "ngf=0"], r"error: antgan option ngf: expected a whole number of at least 1, got 0"),
    (["--set", "ngf=8.5"], r"error: antgan option ngf: expected a whole number of at least 1, got 8.5"),
    (["--set", "ndf=-8"], r"error: antgan option ndf: expected a whole number of at least 1, got -8"),
    (["--set", "n_blocks=-1"], r"error: antgan option n_blocks: expected a whole number of at least 0, got -1"),
    (["--set", "pool_size=-1"], r"error: antgan option pool_size: expected a whole number of at least 0, got -1"),
    (["--set", "lambda_am=-10"], r"error: antgan option lambda_am: expected a finite number of at least 0, got -10"),
    (["--set", "lambda_am=NaN"], r"error: antgan option lambda_am: expected a finite number .*, got nan"),
    (["--set", "lambda_cc=ten"], r"error: antgan option lambda_cc: expected a finite number .*, got 'ten'"),
    (["--set", "use_ac=maybe"], r"error: antgan option use_ac: expected true or false, got 'maybe'"),
    (["--set", "use_ac=1"], r"error: antgan option use_ac: expected true or false, got 1"),
    (["--set", "shortcut=0"], r"error: antgan option shortcut: expected true or false, got 0"),
    (["--set", "generator=vgg"], r"error: antgan option generator: expected one of 'resnet', 'unet', got 'vgg'"),
    (["--set", "gan_mode=wgan"], r"error: antgan option gan_mode: expected one of 'lsgan', 'vanilla', got 'wgan'"),
    (["--set", "upsample=bilinear"], r"error: antgan option upsample: expected one of 'transpose', 'resize'"),
    (["--set", "upsample=8"], r"error: antgan option upsample: expected one of .*, got 8"),
    (["--set", "bidirectional=sometimes"], r"error: antgan option bidirectional: expected one of None, True, False"),
    (["--set", "domain_b=mask"], r"error: ANT-GAN translates abnormal to normal slices: domain_b must be 'healthy'"),
    (["--set", "lamda_am=1"], r"error: unknown options for antgan: \['lamda_am'\]; known: "),
    (["--set", "ngf"], r"error: --set ngf: expected KEY=VALUE"),
    (["--set", "=3"], r"error: --set =3: expected KEY=VALUE"),
    (["--set", "generator=unet"], r"error: the global shortcut \(shortcut=true\) is defined for the ResNet generator only"),
    (["--set", "bidirectional=false"], r"error: cycle-consistency \(use_ac, use_nc\) needs both generators"),
    (["--variant", "gan+xyz"], r"error: --variant: unknown variant 'gan\+xyz' of antgan; choose from gan, gan\+ac"),
    (["--variant", ""], r"error: --variant: unknown variant '' of antgan"),
    (["--size", "64"], r"error: --size choose.* the default phantom data; with --data .*tiny\.npz the prepared file decides"),
    (["--subjects", "5", "--data-seed", "2"], r"error: --subjects, --data-seed choose the default phantom data"),
    (["--lesion", "stroke"], r"error: --lesion chooses the default phantom data; with --data"),
    (["--export", "../elsewhere"], r"error: --export '\.\./elsewhere': a zoo name is one plain folder name"),
    (["--export", ""], r"error: --export '': a zoo name is one plain folder name"),
])
def test_bad_train_options(tiny_prepared, tmp_path, cli, args, message):
    assert_error(cli(*train_args(tiny_prepared, tmp_path / "run", "--steps", 2, *args)), message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args, message", [
    (["--size", "0"], r"argument --size: must be at least 1, got 0"),
    (["--subjects", "0"], r"argument --subjects: must be at least 1, got 0"),
    (["--data-seed", "-3"], r"argument --data-seed: must be at least 0, got -3"),
    (["--lesion", "tumour"], r"argument --lesion: invalid choice: 'tumour' \(choose from '?glioma'?, '?stroke'?, '?liver'?\)"),
    (["--size", "30"], r"error: the default phantom data \(size 30\): images of 30x30 do not suit antgan: "
                       r"the ResNet generator needs sides divisible by 4"),
])
def test_bad_default_data_options_are_refused_before_any_phantom_is_made(tmp_path, cli, monkeypatch, args, message):
    from pseudohealthy_lib.data import default

    monkeypatch.setattr(default, "phantom_dataset", lambda *a, **k: pytest.fail("made a phantom"))
    assert_error(cli("train", "antgan", *FAST, "--steps", 1, "--out", tmp_path / "run", *args), message)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method, args, message", [
    ("cyclegan", ["--variant", "gan"], r"error: --variant: cyclegan has no variants \(only antgan, phsgan and smile have them\); use --set"),
    ("segmentor", ["--variant", "antgan"], r"error: --variant: segmentor has no variants"),
    ("segmentor", ["--set", "dropout=1.5"], r"error: segmentor option dropout: expected a finite number from 0 to 0.9, got 1.5"),
    ("segmentor", ["--set", "beta1=1"], r"error: segmentor option beta1: expected a finite number from 0 to 0.999, got 1"),
    ("segmentor", ["--set", "healthy_twins=yes"], r"error: segmentor option healthy_twins: expected true or false, got 'yes'"),
    ("segmentor", ["--set", "min_size=2.5"], r"error: segmentor option min_size: expected a whole number of at least 0"),
    ("cyclegan", ["--set", "generator=unet", "--set", "unet_downs=6"],
     r"error: .*tiny\.npz: images of 32x32 do not suit cyclegan: the U-Net generator with unet_downs=6 needs sides "
     r"divisible by 64"),
    ("cyclegan", ["--set", "d_downs=5"],
     r"error: .*tiny\.npz: images of 32x32 do not suit cyclegan: the ResNet generator needs sides divisible by 4 "
     r"and the discriminator with d_downs=5 needs at least 64"),
    ("antgan", ["--set", "d_downs=0"], r"error: antgan option d_downs: expected a whole number from 1 to 6, got 0"),
])
def test_bad_options_of_other_methods(tiny_prepared, tmp_path, cli, method, args, message):
    assert_error(cli("train", method, "--preset", "fast", "--data", tiny_prepared, "--steps", 1,
                     "--out", tmp_path / "run", *args), message)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def odd_prepared(tiny_prepared):
    """The tiny phantom prepared at 30x30: not a multiple of 4."""
    from pseudohealthy_lib.data import prepare

    return prepare(Path(tiny_prepared).parent / "vol", Path(tiny_prepared).parent / "odd.npz", size=30, n_slices=120,
                   progress=False, fractions=(0.34, 0.33, 0.33))


def test_image_size_that_does_not_suit_the_networks(odd_prepared, tmp_path, cli):
    assert_error(cli(*train_args(odd_prepared, tmp_path / "run", "--steps", 1)),
                 rf"error: {re.escape(str(odd_prepared))}: images of 30x30 do not suit antgan: the ResNet generator "
                 r"needs sides divisible by 4")


@pytest.mark.parametrize("text, value", [("False", False), ("TRUE", True), ("false", False), ("None", None),
                                         ("null", None), ("8", 8), ("0.5", 0.5), ("unet", "unet")])
def test_set_values_are_parsed(text, value):
    assert _value(text) is value if isinstance(value, bool) or value is None else _value(text) == value


def test_set_false_really_turns_an_option_off(tiny_prepared, tmp_path, cli):
    """``--set use_ac=False`` used to be the string 'False', which is true: the cycle term stayed on."""
    out = tmp_path / "run"
    assert cli(*train_args(tiny_prepared, out, "--steps", 2, "--set", "use_ac=False", "--set", "use_nc=FALSE",
                           "--set", "lambda_am=0"))[0] == 0
    s = torch.load(out / CHECKPOINT, weights_only=True)
    assert s["config"]["options"]["use_ac"] is False and s["config"]["options"]["use_nc"] is False
    assert set(s["nets"]) == {"G_AB", "D_B"}              # no cycle: one generator, one discriminator
    assert not {"cycle_A", "cycle_B", "am"} & set(read_history(out)[-1])


def test_variant_applies_its_table(tiny_prepared, tmp_path, cli):
    out = tmp_path / "run"
    assert cli(*train_args(tiny_prepared, out, "--steps", 1, "--variant", "gan+ac", "--set", "lambda_am=0.5"))[0] == 0
    opts = torch.load(out / CHECKPOINT, weights_only=True)["config"]["options"]
    assert {k: opts[k] for k in ("use_ac", "use_nc", "shortcut", "lambda_am")} == {
        "use_ac": True, "use_nc": False, "shortcut": False, "lambda_am": 0.5}    # --set wins over the variant


# ----------------------------------------------------------------------------- options in the API

@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, r"steps must be a whole number of at least 1, got 0"),
    ({"batch_size": -2}, r"batch_size must be a whole number of at least 1, got -2"),
    ({"log_every": 0}, r"log_every must be a whole number of at least 1, got 0"),
    ({"ckpt_every": 2.5}, r"ckpt_every must be a whole number of at least 1, got 2.5"),
    ({"lr": -1e-4}, r"lr must be a positive number, got -0.0001"),
    ({"lr": float("inf")}, r"lr must be a positive number, got inf"),
    ({"beta1": 1.0}, r"beta1 must be a number in \[0, 1\), got 1.0"),
    ({"decay_from": 1.5}, r"decay_from must be a number in \[0, 1\], got 1.5"),
    ({"amp": "fp8"}, r"amp must be one of auto, bf16, fp16, off, got 'fp8'"),
    ({"lesion": "tumour"}, r"lesion must be one of glioma, stroke, liver, got 'tumour'"),
    ({"seed": -1}, r"seed must be a whole number of at least 0, got -1"),
    ({"options": {"ngf": "8"}}, r"antgan option ngf: expected a whole number of at least 1, got '8'"),
    ({"options": {"use_nc": "False"}}, r"antgan option use_nc: expected true or false, got 'False'"),
    ({"options": {"lambda_am": True}}, r"antgan option lambda_am: expected a finite number of at least 0, got True"),
])
def test_bad_training_settings_in_the_api(tiny_prepared, tmp_path, change, message):
    opts = change.pop("options", {})
    with pytest.raises(OptionError, match=message):
        trainer(tiny_cfg(tiny_prepared, options=opts, **change), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_options_of_the_right_type_are_accepted():
    ANTGAN.check_options({"ngf": np.int64(8), "lambda_am": 1, "lambda_cc": 2.5, "bidirectional": None,
                          "use_ac": True, "generator": "unet", "n_blocks": 0, "pool_size": 0})


def test_every_shipped_model_has_valid_options():
    for name in zoo.available():
        cfg = zoo.manifest(name)["config"]
        get_method(cfg["method"]).check_options(cfg["options"])


@pytest.mark.parametrize("call, error, message", [
    (lambda: presets.config("antgan", "huge"), OptionError, r"unknown preset 'huge'; choose from"),
    (lambda: presets.config("antgan", "fast", stepz=3), OptionError, r"unknown settings \['stepz'\]; known: "),
    (lambda: get_method("pix2pix"), OptionError, r"unknown method 'pix2pix'; choose from"),
])
def test_unknown_names_in_the_api(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_unknown_split_is_an_option_error(tiny_prepared):
    with pytest.raises(OptionError, match=r"no split 'training' in this dataset \(have \['test', 'train', 'val'\]\)"):
        load_prepared(tiny_prepared).select("training")


def test_out_that_is_a_file_is_refused_before_training(tiny_prepared, tmp_path, cli):
    (tmp_path / "f").write_text("notes")
    assert_error(cli(*train_args(tiny_prepared, tmp_path / "f", "--steps", 1)),
                 r"error: .*/f: is a file; the run folder \(--out\) must be a folder")
    assert (tmp_path / "f").read_text() == "notes"


def test_healthy_twins_without_ground_truth_names_the_data(tiny_prepared, tmp_path, cli):
    data = edited_data(tiny_prepared, tmp_path / "real.npz", healthy=None)
    assert_error(cli("train", "segmentor", "--preset", "fast", "--data", data, "--steps", 1, "--set", "unet_downs=5",
                     "--set", "healthy_twins=true", "--out", tmp_path / "run"),
                 r"error: .*real\.npz: healthy_twins=true needs a phantom's healthy ground truth; this data has none")


def test_training_split_without_healthy_slices_names_the_data(tiny_prepared, tmp_path, cli):
    data = edited_data(tiny_prepared, tmp_path / "lesions.npz",
                       split=lambda a: np.where(a["labels"] == 0, "test", a["split"]))
    assert_error(cli(*train_args(data, tmp_path / "run", "--steps", 1)),
                 r"error: .*lesions\.npz: split 'train' needs pathological \(\d+\) and healthy \(0\) slices")


# ----------------------------------------------------------------------------- checkpoints: resume

def damage(kind: str, path: Path, other: Path | None = None) -> None:
    """Break the checkpoint ``path`` in one of the ways of :data:`BROKEN_CKPT`."""
    raw = path.read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"this is not a checkpoint\n" * 40)
    elif kind == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "tail cut":
        path.write_bytes(raw[:-200])
    elif kind == "a list":
        torch.save([1, 2, 3], path)
    elif kind == "zoo weights":
        s = torch.load(path, weights_only=True)
        torch.save(s["nets"], path)
    elif kind == "no optimizers":
        s = torch.load(path, weights_only=True)
        del s["optimizers"]
        torch.save(s, path)
    elif kind == "nets of another size":
        s = torch.load(path, weights_only=True)
        s["nets"]["G_AB"]["body.1.weight"] = s["nets"]["G_AB"]["body.1.weight"][:4]
        torch.save(s, path)


BROKEN_CKPT = {   # kind: what the message says after "<path>: "
    "empty": r"cannot read the training checkpoint: the file is empty",
    "garbage": r"cannot read the training checkpoint: truncated, corrupt or not a PyTorch file",
    "truncated": r"cannot read the training checkpoint: truncated, corrupt or not a PyTorch file",
    "tail cut": r"cannot read the training checkpoint: truncated, corrupt",
    "a list": r"not a training checkpoint: it holds a list, not a dict",
    "zoo weights": r"not a training checkpoint: it has no 'config'.* \(it has 'D_A', 'D_B', 'G_AB', 'G_BA'\)",
    "no optimizers": r"not a training checkpoint: it has no 'optimizers'",
    "nets of another size": r"the weights of G_AB do not fit a antgan with this config",
}


@pytest.mark.parametrize("kind", list(BROKEN_CKPT))
def test_resuming_from_a_broken_checkpoint(tiny_prepared, run_copy, cli, kind):
    ckpt = run_copy / CHECKPOINT
    damage(kind, ckpt)
    before = ckpt.read_bytes()
    assert_error(cli(*train_args(tiny_prepared, run_copy, "--steps", 6)), rf"error: {re.escape(str(ckpt))}: {BROKEN_CKPT[kind]}")
    assert ckpt.read_bytes() == before and not temps(run_copy)       # left as it was, nothing half written


def test_resuming_another_methods_run(tiny_prepared, segmentor_dir, tmp_path, cli):
    out = tmp_path / "run"
    shutil.copytree(segmentor_dir, out)
    assert_error(cli(*train_args(tiny_prepared, out, "--steps", 6)),
                 r"error: .*checkpoint\.pt: checkpoint is a 'segmentor' run, not 'antgan'; use another --out folder")


@pytest.mark.parametrize("args, differ", [
    (["--amp", "bf16"], r"\(amp, precision\): amp: 'auto' there, 'bf16' now; precision: None there, torch.bfloat16 now"
     if pick_precision(torch.device("cpu"), "auto") is None else r"\(amp\): amp: 'auto' there, 'bf16' now"),
    (["--set", "ngf=4"], r"\(options\): option ngf: 8 there, 4 now"),
    (["--set", "use_ac=false"], r"\(options\): option use_ac: True there, False now"),
    (["--variant", "gan"], r"\(options\): option lambda_am: 10.0 there, 0.0 now; option shortcut: True there, False"),
    (["--seed", "1"], r"\(seed\): seed: 0 there, 1 now"),
    (["--batch-size", "3"], r"\(batch_size\): batch_size: 2 there, 3 now"),
    (["--lr", "1e-3"], r"\(lr\): lr: 0.0002 there, 0.001 now"),
])
def test_resuming_with_other_settings_is_refused(tiny_prepared, run_copy, cli, args, differ):
    assert_error(cli(*train_args(tiny_prepared, run_copy, "--steps", 6, *args)),
                 rf"error: .*checkpoint\.pt: checkpoint was trained with other settings {differ}",
                 r"resume with the same settings, or use another --out folder")
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["step"] == 3


def test_resuming_with_other_data_is_refused(tiny_prepared, run_copy, tmp_path, cli):
    other = tmp_path / "other.npz"
    shutil.copy(tiny_prepared, other)
    assert_error(cli(*train_args(other, run_copy, "--steps", 6)),
                 rf"other settings \(data\): data: '{re.escape(str(tiny_prepared))}' there, '{re.escape(str(other))}' now")


def test_resuming_with_the_same_data_by_another_path(tiny_prepared, run_copy, cli, monkeypatch):
    monkeypatch.chdir(Path(tiny_prepared).parent)
    assert cli(*train_args(Path(tiny_prepared).name, run_copy, "--steps", 4))[0] == 0
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["step"] == 4


def test_resuming_with_fewer_steps_than_done_is_refused(tiny_prepared, run_copy, cli):
    assert_error(cli(*train_args(tiny_prepared, run_copy, "--steps", 2)),
                 r"error: .*checkpoint\.pt: checkpoint is at step 3, beyond the 2 steps asked for")


def test_more_steps_extend_a_finished_run(tiny_prepared, run_dir, run_copy, cli):
    """``steps`` may grow: the run goes on from its checkpoint (its first 3 steps stay as they were)."""
    assert cli(*train_args(tiny_prepared, run_copy, "--steps", 4))[0] == 0
    a, b = (read_history(d) for d in (run_dir, run_copy))
    assert torch.load(run_copy / CHECKPOINT, weights_only=True)["step"] == 4
    assert b[:len(a)] == a and b[-1]["step"] == 4 and len(b) == len(a) + 1


# ----------------------------------------------------------------------------- checkpoints: evaluate

@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated", "a list", "zoo weights", "nets of another size"])
def test_evaluating_a_broken_checkpoint(tiny_prepared, run_copy, cli, kind):
    ckpt = run_copy / CHECKPOINT
    damage(kind, ckpt)
    assert_error(cli("evaluate", ckpt, "--data", tiny_prepared), rf"error: {re.escape(str(ckpt))}: {BROKEN_CKPT[kind]}")


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["config"].update(method="pix2pix"), r"its config cannot be used: unknown method 'pix2pix'"),
    (lambda s: s["config"]["options"].update(ngf="8"),
     r"its config cannot be used: antgan option ngf: expected a whole number of at least 1, got '8'"),
    (lambda s: s["config"].update(options="ngf=8"), r"its config cannot be used: antgan options must be a dict"),
    (lambda s: s.update(config="antgan"), r"not a training checkpoint: its 'config' names no method"),
    (lambda s: s["nets"].pop("D_A"), r"holds the networks \['D_B', 'G_AB', 'G_BA'\], but a antgan with this config needs"),
])
def test_evaluating_a_checkpoint_with_a_foreign_config(tiny_prepared, run_copy, cli, edit, message):
    ckpt = run_copy / CHECKPOINT
    s = torch.load(ckpt, weights_only=True)
    edit(s)
    torch.save(s, ckpt)
    assert_error(cli("evaluate", run_copy, "--data", tiny_prepared), rf"error: {re.escape(str(ckpt))}: {message}")


def test_a_translator_as_the_judge_is_refused(tiny_prepared, run_dir, cli):
    assert_error(cli("evaluate", run_dir, "--data", tiny_prepared, "--segmentor", run_dir),
                 rf"error: --segmentor {re.escape(str(run_dir))}: is a translator \(antgan\), not a segmentor")


def test_seeds_of_different_methods_are_refused(tiny_prepared, run_dir, segmentor_dir, cli):
    assert_error(cli("evaluate", run_dir, segmentor_dir, "--data", tiny_prepared),
                 r"error: several models are the seeds of one recipe: these are of different methods")


def test_evaluating_on_data_of_an_unsuitable_size(odd_prepared, run_dir, cli):
    assert_error(cli("evaluate", run_dir, "--data", odd_prepared),
                 r"error: model .* on --data .*odd\.npz: images of 30x30 do not suit antgan")


def test_evaluating_a_run_folder_without_checkpoint(tiny_prepared, tmp_path, cli):
    (tmp_path / "empty-run").mkdir()
    assert_error(cli("evaluate", tmp_path / "empty-run", "--data", tiny_prepared),
                 r"error: .*empty-run: neither a checkpoint, a run folder nor a zoo model")


# ----------------------------------------------------------------------------- the zoo

@pytest.fixture
def zoo_model(run_dir, tiny_prepared, tmp_path, monkeypatch):
    """An exported copy of ``run_dir`` as zoo model 'm' in a zoo under tmp_path."""
    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    t = trainer(presets.config("antgan", "fast", steps=3, data=str(tiny_prepared), options={"n_blocks": 1}),
                run, progress=False)
    return zoo.export_model(t, "m", {}, command="test")


def edit_manifest(d: Path, edit) -> None:
    info = json.loads((d / "manifest.json").read_text())
    edit(info)
    (d / "manifest.json").write_text(json.dumps(info))


BROKEN_ZOO = {   # how to break zoo model 'm', which file the message names, what it says
    "manifest not JSON": (lambda d: (d / "manifest.json").write_text('{"method": "antgan", '),
                          "manifest.json", r"zoo manifest is not valid JSON"),
    "manifest a list": (lambda d: (d / "manifest.json").write_text("[1, 2]"),
                        "manifest.json", r"zoo manifest must be a JSON object, got list"),
    "manifest without config": (lambda d: edit_manifest(d, lambda i: i.pop("config")),
                                "manifest.json", r"zoo manifest has no config"),
    "unknown method": (lambda d: edit_manifest(d, lambda i: (i.update(method="pix2pix"), i["config"].update(method="pix2pix"))),
                       "manifest.json", r"its config cannot be used: unknown method 'pix2pix'"),
    "method and config differ": (lambda d: edit_manifest(d, lambda i: i.update(method="segmentor")),
                                 "manifest.json", r"zoo manifest is for method 'segmentor', its config for 'antgan'"),
    "bad option": (lambda d: edit_manifest(d, lambda i: i["config"]["options"].update(use_ac="yes")),
                   "manifest.json", r"its config cannot be used: antgan option use_ac: expected true or false, got 'yes'"),
    "weights missing": (lambda d: (d / "weights.pt").unlink(),
                        "weights.pt", r"weights file not found; the zoo model 'm' has a manifest but no weights"),
    "weights truncated": (lambda d: (d / "weights.pt").write_bytes((d / "weights.pt").read_bytes()[:500]),
                          "weights.pt", r"cannot read the zoo weights: truncated, corrupt"),
    "weights of a segmentor": (lambda d: torch.save({"S": {"w": torch.zeros(2)}}, d / "weights.pt"),
                               "weights.pt", r"holds the networks \['S'\], but a antgan with this config needs \['G_AB', 'G_BA'\]"),
    "weights of another size": (lambda d: edit_manifest(d, lambda i: i["config"]["options"].update(ngf=4)),
                                "weights.pt", r"the weights of G_AB do not fit a antgan with this config"),
}


@pytest.mark.parametrize("case", list(BROKEN_ZOO))
def test_broken_zoo_model(zoo_model, case):
    brk, name, message = BROKEN_ZOO[case]
    brk(zoo_model)
    with pytest.raises(DataError, match=rf"{re.escape(str(zoo_model / name))}: {message}"):
        zoo.load_pretrained("m")


@pytest.mark.parametrize("case", ["manifest not JSON", "weights of a segmentor"])
def test_broken_zoo_model_on_the_cli(zoo_model, tiny_prepared, cli, case):
    brk, name, message = BROKEN_ZOO[case]
    brk(zoo_model)
    assert_error(cli("evaluate", "m", "--data", tiny_prepared), rf"error: {re.escape(str(zoo_model / name))}: {message}")


def test_zoo_listing_with_a_broken_manifest(zoo_model, cli):
    (zoo_model / "manifest.json").write_text("not json")
    assert_error(cli("zoo"), rf"error: {re.escape(str(zoo_model / 'manifest.json'))}: zoo manifest is not valid JSON")


def test_zoo_train_unknown_name(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    assert_error(cli("zoo", "--train", "antgan-typo"), r"error: --train: no recipe for antgan-typo; known: all, ")


def test_a_good_zoo_model_loads_with_the_trained_weights(zoo_model, run_dir):
    model = zoo.load_pretrained("m")
    w = torch.load(run_dir / CHECKPOINT, weights_only=True)["nets"]["G_AB"]["body.1.weight"]
    assert torch.equal(model.nets["G_AB"].body[1].weight, w.half().float())


# ----------------------------------------------------------------------------- a loss that diverges

def poison(monkeypatch, step: int, value: float) -> None:
    """Make the logged generator loss of training step ``step`` (1-based) ``value``."""
    original = ANTGAN.training_step
    calls = []

    def training_step(self, batch, ctx):
        losses = original(self, batch, ctx)
        calls.append(1)
        if len(calls) == step:
            losses["G"] = losses["G"] * value
        return losses

    monkeypatch.setattr(ANTGAN, "training_step", training_step)


@pytest.mark.parametrize("step, value, where, kept", [
    (5, float("nan"), r"at step 5 \(steps 5-6 were checked together\)", 3),
    (3, float("inf"), r"at step 3", None),
    (1, float("nan"), r"at step 1 \(steps 1-2 were checked together\)", None),
], ids=["nan after a checkpoint", "inf at a checkpoint step", "nan at the first step"])
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_prepared, tmp_path, monkeypatch, step, value,
                                                                 where, kept):
    poison(monkeypatch, step, value)
    out = tmp_path / "run"
    t = trainer(tiny_cfg(tiny_prepared, steps=8), out, progress=False)     # log every 2, checkpoint every 3
    with pytest.raises(TrainingDiverged, match=rf"{re.escape(str(out))}: training diverged: non-finite loss {where} in G; "
                                               + ("no checkpoint was written" if kept is None else
                                                  rf"the last good checkpoint, step {kept}, is kept")):
        t.fit()
    assert isinstance(TrainingDiverged("x"), DataError)
    if kept is None:
        assert not (out / CHECKPOINT).exists()
    else:
        s = torch.load(out / CHECKPOINT, weights_only=True)
        rows = read_history(out)[:s["history_rows"]]                  # what a resumed run keeps
        assert s["step"] == kept and [h["step"] for h in rows] == [2, 3] and all(np.isfinite(h["G"]) for h in rows)
    assert not temps(tmp_path)


def test_a_diverging_run_on_the_cli(tiny_prepared, tmp_path, monkeypatch, cli):
    poison(monkeypatch, 4, float("nan"))
    out = tmp_path / "run"
    assert_error(cli(*train_args(tiny_prepared, out, "--steps", 6)),
                 r"error: .*run: training diverged: non-finite loss at step 4 in G; "
                 r"the last good checkpoint, step 3, is kept in .*checkpoint\.pt\. Train again .* lower --lr")
    assert torch.load(out / CHECKPOINT, weights_only=True)["step"] == 3


# ----------------------------------------------------------------------------- the command line's error policy

def test_a_bug_in_training_keeps_its_traceback(tiny_prepared, tmp_path, monkeypatch):
    def bug(self, steps=None):
        raise ValueError("internal")

    monkeypatch.setattr(Trainer, "fit", bug)
    with pytest.raises(ValueError, match="internal"):
        main(train_args(str(tiny_prepared), str(tmp_path / "run"), "--steps", "1"))


def test_a_bug_in_evaluation_keeps_its_traceback(tiny_prepared, run_dir, monkeypatch):
    from pseudohealthy_lib import evaluate

    def bug(*args, **kwargs):
        raise ValueError("internal")

    monkeypatch.setattr(evaluate, "evaluate", bug)
    with pytest.raises(ValueError, match="internal"):
        main(["evaluate", str(run_dir), "--data", str(tiny_prepared)])


# ----------------------------------------------------------------------------- fault tests: kill and rerun

def test_a_rerun_removes_the_temporary_files_of_a_killed_run(tiny_prepared, run_copy, cli):
    """A run killed while writing leaves ``.NAME.PID-TOKEN.tmp`` files; rerunning it (even when it
    has nothing left to train) removes them, but never those of a writer that is still alive."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [run_copy / f".checkpoint.pt.{dead.pid}-abcd1234.tmp.pt", run_copy / f".history.jsonl.{dead.pid}-0123abcd.tmp.jsonl"]
    live = run_copy / f".checkpoint.pt.{os.getpid()}-feedbeef.tmp.pt"
    for f in (*stale, live):
        f.write_bytes(b"half a file")
    assert cli(*train_args(tiny_prepared, run_copy, "--steps", 3))[0] == 0
    assert temps(run_copy) == [live]


def command(data, out) -> list[str]:
    return [sys.executable, "-m", "pseudohealthy_lib", *map(str, train_args(data, out, "--steps", 12))]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def train_reference(tiny_prepared, tmp_path_factory):
    """An uninterrupted 12-step run (checkpoints at 3, 6, 9, 12), as a command; with its wall time."""
    out = tmp_path_factory.mktemp("ref") / "run"
    t0 = time.perf_counter()
    subprocess.run(command(tiny_prepared, out), check=True, timeout=300, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return out, time.perf_counter() - t0


@pytest.mark.parametrize("moment", ["any time", "after a checkpoint"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_training_resumes_to_the_same_weights(tiny_prepared, train_reference, tmp_path, sig, moment):
    ref, seconds = train_reference
    out = tmp_path / "run"
    if moment == "any time":
        started, delay = (lambda: True), random.uniform(0.3, 1.0) * seconds
    else:
        started, delay = (out / CHECKPOINT).exists, random.uniform(0.0, 0.8)
    proc = subprocess.Popen(command(tiny_prepared, out), start_new_session=True, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, sig)                  # the main process only, as `kill PID` does
    code = proc.wait(60)
    deadline = time.monotonic() + 20
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    where = f"{signal.Signals(sig).name} {moment}, {delay:.2f} s"
    assert group_members(proc.pid) == [], f"processes left after {where}"
    if sig == signal.SIGTERM:
        assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), where
        assert not temps(out) if out.exists() else True, where     # clean-up ran
    if (out / CHECKPOINT).exists():             # whatever was written is a whole checkpoint
        assert torch.load(out / CHECKPOINT, weights_only=True)["step"] in (3, 6, 9, 12), where
    subprocess.run(command(tiny_prepared, out), check=True, timeout=300, env=ENV,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert not temps(out), where
    a, b = (torch.load(d / CHECKPOINT, weights_only=True) for d in (ref, out))
    assert b["step"] == 12 and read_history(ref) == read_history(out), where    # same losses, bit for bit
    for n in a["nets"]:
        for k in a["nets"][n]:
            assert torch.equal(a["nets"][n][k], b["nets"][n][k]), f"{n}.{k} differs ({where})"
    assert b["history_rows"] == len(read_history(out)) == a["history_rows"]


def test_the_speed_benchmark_names_a_wrong_reference_folder(tmp_path):
    """scripts/bench_training.py --reference-repo: a folder without the reference's code, or a depth it lacks."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_training", Path(__file__).parents[1] / "scripts" / "bench_training.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    with pytest.raises(SystemExit, match=f"--reference-repo {tmp_path}: no models/cycle_gan_model.py there"):
        bench.reference_repo_model(str(tmp_path), 64, 8, 6, 1, str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "cycle_gan_model.py").write_text("")
    with pytest.raises(SystemExit, match="--blocks 4: the reference implementation has ResNet generators of 6 or 9 blocks"):
        bench.reference_repo_model(str(tmp_path), 64, 8, 4, 1, str(tmp_path))
