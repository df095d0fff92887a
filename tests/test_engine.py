"""The training engine: exact resume, loss decrease, schedule, image pool, DDP, zoo, CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pseudohealthy_lib import presets, recipes, zoo
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.engine import TrainConfig, read_history
from pseudohealthy_lib.methods.base import ImagePool
from cli_helpers import trainer

TINY = {"ngf": 8, "n_blocks": 1, "ndf": 8, "unet_downs": 5}


def tiny_cfg(data, **kw):
    opts = {**TINY, **kw.pop("options", {})}
    return TrainConfig(method=kw.pop("method", "antgan"), steps=kw.pop("steps", 6), batch_size=2, size=32,
                       data=str(data), ckpt_every=kw.pop("ckpt_every", 100), log_every=1, options=opts, **kw)


@pytest.mark.parametrize("method,options", [("antgan", {}), ("cyclegan", {"generator": "unet", "domain_b": "mask"})])
def test_resume_gives_exactly_the_same_losses(tiny_prepared, tmp_path, method, options):
    straight = trainer(tiny_cfg(tiny_prepared, method=method, options=options), tmp_path / "a", progress=False).fit()
    first = trainer(tiny_cfg(tiny_prepared, method=method, options=options, ckpt_every=3), tmp_path / "b", progress=False)
    first.fit(steps=3)                                    # "interrupted" after step 3
    resumed = trainer(tiny_cfg(tiny_prepared, method=method, options=options, ckpt_every=3), tmp_path / "b", progress=False)
    assert resumed.step == 3
    assert resumed.fit() == straight                      # same losses at every step, bit for bit


def test_weight_average_is_the_moving_average_and_resumes_exactly(tiny_prepared, tmp_path):
    """``ema``: after every step avg <- d avg + (1 - d) w with d = min(ema, (1 + step) / (10 + step));
    the training weights are untouched by it, and an interrupted run resumes to the same average."""
    cfg = tiny_cfg(tiny_prepared, ema=0.9, ckpt_every=3, lr=1e-2)
    t = trainer(cfg, tmp_path / "a", progress=False)
    name = t.method.exported()[0]
    weights = lambda: {p: v.clone() for p, v in t.method.nets[name].state_dict().items()}   # noqa: E731
    expected = weights()
    for step in range(6):
        t.fit(steps=step + 1)
        d = min(0.9, (1 + step) / (10 + step))
        live = weights()
        expected = {p: d * expected[p] + (1 - d) * live[p] for p in live}
        assert all(torch.allclose(t.average[name][p], expected[p], atol=1e-6) for p in live)
    assert any(not torch.allclose(expected[p], live[p], atol=1e-3) for p in live)   # an average, not the weights
    with t.averaged() as m:                                # the average inside, the training weights after
        inside = {p: v.clone() for p, v in m.nets[name].state_dict().items()}
    assert all(torch.allclose(inside[p], expected[p], atol=1e-6) for p in inside)
    assert all(torch.equal(v, live[p]) for p, v in weights().items())
    resumed = trainer(cfg, tmp_path / "b", progress=False)
    resumed.fit(steps=3)
    resumed = trainer(cfg, tmp_path / "b", progress=False)
    resumed.fit()
    assert all(torch.equal(resumed.average[name][p], t.average[name][p]) for p in live)
    model = zoo.load_model(tmp_path / "b")                 # a run folder loads as its average
    assert all(torch.allclose(v, expected[p], atol=1e-6) for p, v in model.nets[name].state_dict().items())
    with pytest.raises(ValueError, match=r"ema must be a decay in \[0, 1\)"):
        tiny_cfg(tiny_prepared, ema=1.0).check()


def test_training_reduces_the_loss(tiny_prepared, tmp_path):
    cfg = tiny_cfg(tiny_prepared, steps=40, options={"ngf": 16})
    h = trainer(cfg, tmp_path, progress=False).fit()
    cyc = [s["cycle_A"] + s["cycle_B"] for s in h]
    am = [s["am"] for s in h]
    assert sum(cyc[-8:]) / 8 < 0.6 * sum(cyc[:4]) / 4
    assert sum(am[-8:]) / 8 < 0.6 * sum(am[:4]) / 4


def test_linear_decay_schedule(tiny_prepared, tmp_path):
    t = trainer(tiny_cfg(tiny_prepared, steps=8, decay_from=0.5), tmp_path, progress=False)
    lrs = []
    for _ in range(8):
        t.fit(steps=t.step + 1)
        lrs.append(t.optimizers["G"].param_groups[0]["lr"])
    # lr for the next step after each of the 8 steps: constant for the first half, then linear to 0
    assert lrs[:4] == [2e-4] * 4
    assert lrs[4:] == pytest.approx([1.5e-4, 1e-4, 5e-5, 0.0])


def test_image_pool():
    pool = ImagePool(size=3, seed=0)
    batches = [torch.full((1, 1, 2, 2), float(i)) for i in range(10)]
    first = [pool.query(b) for b in batches[:3]]
    assert all(torch.equal(a, b) for a, b in zip(first, batches[:3]))          # filling: unchanged
    out = torch.cat([pool.query(b) for b in batches[3:]]).flatten(1)[:, 0]
    assert (out < torch.arange(3, 10)).any()                                   # some come from history
    assert ImagePool(0).query(batches[0]) is batches[0]
    again = ImagePool(size=3, seed=0)
    for b in batches[:3]:
        again.query(b)
    assert torch.equal(torch.cat([again.query(b) for b in batches[3:]]).flatten(1)[:, 0], out)


def test_resume_refuses_a_checkpoint_with_other_settings(tiny_prepared, tmp_path):
    trainer(tiny_cfg(tiny_prepared, steps=1), tmp_path, progress=False).fit()
    with pytest.raises(ValueError, match="checkpoint.pt: checkpoint was trained with other settings \\(options\\)"):
        trainer(tiny_cfg(tiny_prepared, options={"ngf": 4}), tmp_path, progress=False)


def test_unknown_option_is_an_error(tiny_prepared, tmp_path):
    with pytest.raises(ValueError, match="unknown options for antgan: \\['lamda_am'\\]"):
        trainer(tiny_cfg(tiny_prepared, options={"lamda_am": 1}), tmp_path, progress=False)


def test_presets():
    cpu = presets.config("cyclegan", "cpu")
    assert cpu.size == 128 and cpu.options["ngf"] == 32
    paper = presets.config("antgan", "paper")
    assert (paper.size, paper.batch_size, paper.steps, paper.lr) == (240, 1, 300000, 2e-4)  # ANT-GAN Sec. III-B
    lee = presets.config("cyclegan", "paper")                 # 20 epochs of 765 images, batch 1 (Lee et al.)
    assert (lee.options["unet_downs"], lee.size, lee.steps, lee.batch_size) == (8, 256, 15300, 1)
    searched = presets.config("antgan", "cpu", options={"lambda_am": 1.0})      # the method's recipe, options merged
    assert (searched.steps, searched.lr, searched.options["ngf"], searched.options["ndf"]) == (3600, 1e-3, 16, 32)
    assert searched.options["lambda_am"] == 1.0 and presets.config("antgan", "cpu").options["lambda_am"] == 1000.0
    with pytest.raises(ValueError, match="unknown preset"):
        presets.config("antgan", "huge")


def test_cli_train_export_and_load_pretrained(tiny_prepared, tmp_path, monkeypatch):
    from pseudohealthy_lib.__main__ import main

    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    args = ["train", "cyclegan", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "4",
            "--out", str(tmp_path / "run"), "--set", "generator=resnet", "--set", "domain_b=mask",
            "--set", "n_blocks=1", "--export", "tiny-cyclegan"]
    assert main(args) == 0
    assert zoo.available() == ["tiny-cyclegan"]
    info = zoo.manifest("tiny-cyclegan")
    assert info["steps"] == 4 and info["method"] == "cyclegan" and info["config"]["options"]["domain_b"] == "mask"
    assert info["command"] == "python -m pseudohealthy_lib " + " ".join(args)      # the command, not pytest's argv
    assert {"dice_AB", "psnr_BA", "ssim_BA", "slices", "kind"} <= set(info["metrics"]) and info["hardware"]["torch"]
    assert info["metrics"]["kind"] == "mask translator"
    model = zoo.load_pretrained("tiny-cyclegan")
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    w = ckpt["nets"]["G_AB"]["body.1.weight"]
    assert torch.equal(model.nets["G_AB"].body[1].weight, w.half().float())     # fp16 weights shipped
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    assert model.translate(x).shape == (1, 1, 32, 32)
    assert main(args[:-2]) == 0                                                  # again: resumes, nothing to do


def test_a_run_with_ema_ships_its_weight_average(tiny_prepared, tmp_path, monkeypatch):
    from pseudohealthy_lib.__main__ import main

    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    args = ["train", "antgan", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "4", "--lr", "0.01",
            "--ema", "0.5", "--out", str(tmp_path / "run"), "--set", "n_blocks=1", "--export", "tiny-ema"]
    assert main(args) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["config"]["ema"] == 0.5
    shipped = zoo.load_pretrained("tiny-ema").nets["G_AB"].state_dict()
    for p, w in shipped.items():
        if w.is_floating_point():
            assert torch.equal(w, ckpt["average"]["G_AB"][p].half().float()), p
    assert any(not torch.allclose(ckpt["average"]["G_AB"][p], ckpt["nets"]["G_AB"][p], atol=1e-3) for p in shipped)
    assert main(args[:6] + ["--ema", "1", "--out", str(tmp_path / "other")]) == 2     # a decay must be below 1


def test_select_exports_the_best_validation_step_not_the_last(tiny_prepared, tmp_path, monkeypatch):
    """--select SCORE with --val-every: a pseudo-healthy translator is scored on the validation
    split at each validation (the truth-based scores included on a phantom), best.pt holds the
    step with the highest SCORE, and the zoo ships those weights, saying which step they are."""
    from pseudohealthy_lib.__main__ import main

    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    args = ["train", "antgan", "--preset", "fast", "--data", str(tiny_prepared), "--steps", "6", "--lr", "0.01",
            "--val-every", "2", "--select", "psnr_lesion", "--out", str(tmp_path / "run"), "--set", "n_blocks=1",
            "--export", "tiny-best"]
    assert main(args) == 0
    val = [r for r in read_history(tmp_path / "run") if "val_psnr_lesion" in r]
    assert [r["step"] for r in val] == [2, 4, 6]
    assert {"val_identity", "val_psnr_tissue", "val_ssim_lesion", "val_dice_max"} <= set(val[0])
    top = max(val, key=lambda r: r["val_psnr_lesion"])
    info = zoo.manifest("tiny-best")
    assert info["best"] == {"step": top["step"], "score": top["val_psnr_lesion"], "metric": "psnr_lesion"}
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["nets"]["G_AB"]
    shipped = zoo.load_pretrained("tiny-best").nets["G_AB"].state_dict()
    assert all(torch.equal(w, best[p].half().float()) for p, w in shipped.items() if w.is_floating_point())
    if top["step"] != 6:                                   # then the last weights differ from the shipped ones
        last = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["nets"]["G_AB"]
        assert any(not torch.equal(w, last[p].half().float()) for p, w in shipped.items() if w.is_floating_point())
    assert main(args[:6] + ["--select", "psnr_lesion", "--out", str(tmp_path / "other")]) == 2   # without --val-every


#: shipped models trained before ANT-GAN's recipe search changed the cpu preset (chapter 4 says so):
#: their recipes now mean another config; `python -m pseudohealthy_lib zoo --train NAME` (after
#: deleting the entry) brings one up to date, and then it must leave this list
STALE = {"antgan-cyclegan", "antgan-cyclegan-shortcut", "antgan-gan+ac", "antgan-gan+nc"}
SETTINGS = ("steps", "batch_size", "lr", "size", "seed", "subjects", "data_seed", "lesion")


def test_every_shipped_model_was_made_by_its_recipe():
    """The zoo's recipes are the commands that really made the shipped models (their manifests),
    and, read by today's library, mean the configs the models were trained with."""
    shipped = zoo.available()
    assert zoo.SEGMENTOR in shipped and "antgan" in shipped
    for name in shipped:
        assert name in recipes.RECIPES, f"{name} is shipped without a recipe"
        assert zoo.manifest(name)["command"] == "python -m pseudohealthy_lib " + " ".join(recipes.train_args(name)), name
        cfg, made = recipes.recipe_config(name), TrainConfig.from_dict(zoo.manifest(name)["config"])
        resolve = zoo.load_pretrained(name).resolve_options
        same = (resolve(cfg.options, cfg.version) == resolve(made.options, made.version)
                and all(getattr(cfg, k) == getattr(made, k) for k in SETTINGS))
        assert same != (name in STALE), f"{name}: {'stale, retrain it' if not same else 'up to date: remove it from STALE'}"
    with pytest.raises(KeyError, match="no recipe"):
        recipes.train_args("not-a-model")


def test_recipe_seeds_and_methods_without_recipe(monkeypatch):
    assert recipes.seeds("antgan") == ["antgan", "antgan-s1", "antgan-s2"]
    assert recipes.seeds("antgan-t1") == ["antgan-t1"]                       # not antgan-t1ce
    monkeypatch.setitem(recipes.RECIPES, "antgan-s10", "antgan --preset cpu --seed 10")
    assert recipes.seeds("antgan")[-1] == "antgan-s10"                        # by number, not as text
    assert "antgan-s10" not in recipes.seeds("antgan-s1")
    with pytest.raises(KeyError, match="no recipe for 'gvs'"):
        recipes.seeds("gvs")
    missing = recipes.methods_without_recipe()
    assert "antgan" not in missing and "segmentor" not in missing            # trained; not a translator
    monkeypatch.setitem(recipes.RECIPES, "smile", "smile --preset cpu")
    monkeypatch.setitem(recipes.RECIPES, "vagan", "vagan --preset cpu")
    assert recipes.methods_without_recipe() == []


def test_zoo_ensure_trains_only_what_is_missing_and_only_when_asked(tiny_prepared, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    monkeypatch.delenv("PH_TRAIN_MISSING", raising=False)
    monkeypatch.setitem(recipes.RECIPES, zoo.SEGMENTOR, f"segmentor --preset fast --data {tiny_prepared} --steps 2 --set unet_downs=5")
    monkeypatch.setitem(recipes.RECIPES, "tiny", f"antgan --preset fast --data {tiny_prepared} --steps 2")
    monkeypatch.setattr(recipes, "runs_dir", lambda: tmp_path / "runs")
    with pytest.raises(zoo.ZooMissing, match=rf"the model zoo lacks tiny: looked in {tmp_path / 'zoo'}"):
        recipes.ensure("tiny")                                      # not asked to train: refuses
    assert not (tmp_path / "runs").exists()
    monkeypatch.setenv("PH_TRAIN_MISSING", "1")
    recipes.ensure("tiny")                                          # asked; needs the segmentor first
    assert "training it now into" in capsys.readouterr().out
    assert zoo.available() == sorted(["tiny", zoo.SEGMENTOR])
    assert zoo.manifest("tiny")["metrics"]["judge"]["name"] == zoo.SEGMENTOR
    before = zoo.manifest("tiny")
    before["metrics"] = {"stale": 1.0}
    (tmp_path / "zoo" / "tiny" / "manifest.json").write_text(json.dumps(before))
    fresh = recipes.reevaluate("tiny", load_prepared(tiny_prepared))         # metrics refreshed, record kept
    after = zoo.manifest("tiny")
    assert "stale" not in after["metrics"] and after["metrics"]["identity"] == fresh["identity"]
    assert after["command"] == before["command"] and after["steps"] == before["steps"]
    assert (tmp_path / "runs" / "tiny" / "checkpoint.pt").is_file()
    capsys.readouterr()
    recipes.ensure("tiny", zoo.SEGMENTOR)                           # both shipped now: nothing to do
    assert capsys.readouterr().out == ""


def test_zoo_ensure_judges_each_translator_by_its_own_phantoms_judge(tiny_prepared, tmp_path, monkeypatch):
    """A translator brings the judge of its phantom's lesion first (here a stand-in judge for the
    glioma lesion of the tiny data, not segmentor-phantom), and its manifest's healthiness is measured by it."""
    monkeypatch.setenv("PH_ZOO", str(tmp_path / "zoo"))
    monkeypatch.setattr(recipes, "runs_dir", lambda: tmp_path / "runs")
    monkeypatch.setitem(zoo.JUDGES, "glioma", "judge-x")
    fast = f"--preset fast --data {tiny_prepared} --steps 2"
    monkeypatch.setitem(recipes.RECIPES, "judge-x", f"segmentor {fast} --set unet_downs=5")
    monkeypatch.setitem(recipes.RECIPES, "tiny", f"antgan {fast}")
    recipes.ensure("tiny", train=True)
    assert zoo.available() == ["judge-x", "tiny"]
    assert zoo.manifest("tiny")["metrics"]["judge"]["name"] == "judge-x"
    assert zoo.judge_name("stroke") == "segmentor-stroke" and "segmentor-stroke" in recipes.RECIPES
    with pytest.raises(ValueError, match="no healthiness judge for lesion 'ms'; known: glioma, stroke"):
        zoo.judge_name("ms")


def test_a_contrast_other_than_flair_has_its_own_data_and_its_own_judge(monkeypatch):
    """``modality`` picks the default phantom's contrast (SMILE trains on T2) and the judge that reads it."""
    from pseudohealthy_lib.data import default

    asked = {}
    monkeypatch.setattr(default, "phantom_dataset", lambda *a, **kw: asked.update(kw) or "x.npz")
    monkeypatch.setattr("pseudohealthy_lib.data.prepared.load_prepared", lambda path: path)
    assert default.training_data(TrainConfig(method="smile", modality="t2")) == "x.npz" and asked["modality"] == "t2"
    assert default.training_data(TrainConfig(method="smile")) == "x.npz" and asked["modality"] == "flair"
    assert zoo.judge_name("glioma", "t2") == "segmentor-phantom-t2" and zoo.judge_name("glioma") == zoo.SEGMENTOR
    with pytest.raises(ValueError, match="modality must be one of flair, t1, t1ce, t2, got 'dwi'"):
        TrainConfig(method="smile", modality="dwi").check()


def test_ddp_two_processes_stay_in_sync(tiny_prepared, tmp_path):
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                        str(worker), str(tiny_prepared), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sums = [json.loads((tmp_path / f"rank{k}.json").read_text()) for k in (0, 1)]
    assert sums[0]["world"] == sums[1]["world"] == 2
    assert sums[0]["params"] == sums[1]["params"]                  # identical weights after training
    assert sums[0]["batch"] != sums[1]["batch"]                    # but each saw its own half of the batch
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_auto_precision_on_gpus_uses_bf16_only_where_the_gpu_has_it_natively(monkeypatch):
    """A T4 (compute capability 7.5) answers torch.cuda.is_bf16_supported() with True by default,
    because torch can emulate bf16 there; the engine must pick fp16 with a scaler instead."""
    from pseudohealthy_lib.engine import pick_precision

    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)   # a T4
    assert pick_precision(cuda, "auto") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)                  # an A100
    assert pick_precision(cuda, "auto") == torch.bfloat16
    assert pick_precision(cuda, "off") is None and pick_precision(cuda, "bf16") == torch.bfloat16
