"""The method contract (methods/base.py) and what the engine offers every method: each registered
method trains, resumes bit for bit and answers at inference; a method written outside the
library (a two-stage toy that draws two batches per step and logs other losses in its second
stage) trains and resumes too; k-fold, validation, gradient clipping, reference initialisation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pseudohealthy_lib import profiling
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data.prepared import UnpairedDataset
from pseudohealthy_lib.engine import BEST, CHECKPOINT, TrainConfig, Trainer, read_history
from pseudohealthy_lib.evaluate import evaluate
from pseudohealthy_lib.methods import KINDS, REGISTRY, CycleGAN, Translator, from_config, get_method, register
from pseudohealthy_lib.networks import UnetGenerator, init_weights
from pseudohealthy_lib.utils import OptionError

TINY = {"ngf": 8, "n_blocks": 1, "ndf": 8, "unet_downs": 5}


def cfg_for(name: str, data, **kw) -> TrainConfig:
    known = get_method(name).defaults
    opts = {**{k: v for k, v in TINY.items() if k in known}, **kw.pop("options", {})}
    return TrainConfig(method=name, steps=kw.pop("steps", 2), batch_size=2, size=32, data=str(data), ckpt_every=1,
                       log_every=1, options=opts, **kw)


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registered_method_fulfils_the_contract(name, tiny_prepared, tmp_path):
    cls = get_method(name)
    assert issubclass(cls, KINDS[cls.kind])
    cfg = cfg_for(name, tiny_prepared)
    straight = Trainer(cfg, tmp_path / "a", method=cls, progress=False)
    straight.fit()
    first = Trainer(cfg, tmp_path / "b", method=cls, progress=False)
    first.fit(steps=1)                                            # stopped after one step
    resumed = Trainer(cfg, tmp_path / "b", method=cls, progress=False)
    assert resumed.step == 1
    resumed.fit()
    assert read_history(tmp_path / "a") == read_history(tmp_path / "b")      # same losses, bit for bit
    assert same_weights(straight.method, resumed.method)

    model = resumed.method
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    model.eval()
    if cls.kind == "translator":
        y = model.translate(x, mask=(x > 0.5).float()) if getattr(model, "needs_mask", False) else model.translate(x)
        assert y.shape == x.shape and y.abs().max() <= 1
    elif cls.kind == "segmentor":
        p = model.predict(x)
        assert p.shape == x.shape and 0 <= p.min() and p.max() <= 1
    model.train()
    res = evaluate(model, load_prepared(tiny_prepared), "test")
    assert res["slices"] > 0
    assert all(m.training for m in model.modules())               # evaluation gave the mode back
    cost = profiling.training_cost(cfg_for(name, tiny_prepared), steps=1)   # any method, not only GANs
    assert cost["seconds_per_step"] > 0 and cost["activation_mb"] > 0 and cost["generator_params"] > 0


class TwoStage(Translator):
    """A toy written outside the library: a 'generator' learns from two batches per step; in its
    second stage a 'critic' with its own Adam setting and a constant schedule joins in."""

    name = "two-stage-toy"
    defaults = {"width": 4}
    stages = (("warmup", 0.5), ("joint", 1.0))

    def __init__(self, cfg):
        super().__init__(cfg)
        w = self.opt["width"]
        self.nets = nn.ModuleDict({"G": nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 1, 3, padding=1)),
                                   "D": nn.Conv2d(1, 1, 3, padding=1)})
        self.seen = []

    def dataset(self, data, split):
        return UnpairedDataset(data, split, seed=self.cfg.seed)

    def optimizers(self):
        return {"G": self.adam(self.nets["G"]), "D": self.adam(self.nets["D"], lr=1e-3, betas=(0.9, 0.99))}

    def schedulers(self, optimizers):
        out = super().schedulers({"G": optimizers["G"]})
        return out | {"D": torch.optim.lr_scheduler.LambdaLR(optimizers["D"], lambda s: 1.0)}

    def training_step(self, batch, ctx):
        extra = ctx.next_batch()
        self.seen.append((ctx.step, ctx.stage, ctx.total))
        with ctx.autocast():
            loss = (torch.tanh(self.nets["G"](batch["A"])) - extra["B"]).abs().mean()
        ctx.backward(loss)
        ctx.update("G")
        logs = {"g": loss.detach()}
        if ctx.stage == "joint":
            with ctx.autocast():
                d = self.nets["D"](batch["B"]).float().pow(2).mean()
            ctx.backward(d)
            ctx.update("D")
            logs["d"] = d.detach()
        return logs

    def translate(self, x, direction="AB"):
        return torch.tanh(self.nets["G"](x))


def test_a_two_stage_method_from_outside_trains_and_resumes(tiny_prepared, tmp_path):
    cfg = TrainConfig(method="two-stage-toy", steps=4, batch_size=2, size=32, data=str(tiny_prepared), ckpt_every=1,
                      log_every=1)
    straight = Trainer(cfg, tmp_path / "a", method=TwoStage, progress=False)
    rows = straight.fit()
    assert straight.method.seen == [(0, "warmup", 4), (1, "warmup", 4), (2, "joint", 4), (3, "joint", 4)]
    assert [sorted(r) for r in rows] == [["g", "step"]] * 2 + [["d", "g", "step"]] * 2   # keys change with the stage
    assert straight.optimizers["D"].param_groups[0]["betas"] == (0.9, 0.99)              # its own Adam setting
    assert straight.optimizers["D"].param_groups[0]["lr"] == 1e-3                        # its own (constant) schedule
    assert straight.optimizers["G"].param_groups[0]["lr"] < cfg.lr                       # CycleGAN's decay
    half = Trainer(cfg, tmp_path / "b", method=TwoStage, progress=False)
    half.fit(steps=2)
    again = Trainer(cfg, tmp_path / "b", method=TwoStage(cfg), progress=False)           # an instance works too
    again.fit()
    assert read_history(tmp_path / "a") == read_history(tmp_path / "b") == rows
    assert same_weights(straight.method, again.method)
    # the extra batch of a step is a function of (seed, step, draw): the same in another trainer
    assert all(torch.equal(a, b) for a, b in zip(straight._extra_batch(1, 1).values(), again._extra_batch(1, 1).values()))
    assert not torch.equal(straight._extra_batch(1, 1)["B"], straight._extra_batch(2, 1)["B"])


def test_the_trainer_checks_the_method_it_is_given(tiny_prepared, tmp_path):
    cfg = cfg_for("antgan", tiny_prepared)
    with pytest.raises(OptionError, match=r"the config is for method 'antgan', the method is 'cyclegan'"):
        Trainer(cfg, tmp_path, method=CycleGAN)
    with pytest.raises(OptionError, match="method must be a method class or instance"):
        Trainer(cfg, tmp_path, method="antgan")


def test_register_refuses_what_is_not_a_method_or_takes_a_name():
    with pytest.raises(TypeError, match="is not a Method subclass"):
        register(int)
    clash = type("CycleGAN2", (Translator,), {"name": "cyclegan"})
    with pytest.raises(ValueError, match="the name 'cyclegan' is taken"):
        register(clash)
    assert REGISTRY["cyclegan"] is CycleGAN


def test_a_subset_keeps_its_slices_and_every_array_in_step(tiny_prepared):
    data = load_prepared(tiny_prepared)
    idx = data.select("test")[::3]
    sub = data.subset(idx)
    assert len(sub) == len(idx) and sub.summary().keys() == {"test"}
    for name in ("images", "masks", "seg", "labels", "subjects", "slice_index", "split", "healthy"):
        assert np.array_equal(getattr(sub, name), getattr(data, name)[idx]), name
    assert np.array_equal(data.subset(data.labels == 1).labels, data.labels[data.labels == 1])
    with pytest.raises(OptionError, match="no slices selected"):
        data.subset([])
    with pytest.raises(OptionError, match="indices from 0 to"):
        data.subset([len(data)])
    with pytest.raises(OptionError, match="boolean selection needs"):
        data.subset(np.ones(3, bool))


def test_patient_level_folds(tiny_prepared, tmp_path):
    data = load_prepared(tiny_prepared)
    tests = []
    for fold in range(3):
        f = data.with_folds(3, fold)
        for s in ("train", "val", "test"):
            assert (f.split == s).any(), (fold, s)
        owners = {}
        for subj, split in zip(f.subjects, f.split):
            assert owners.setdefault(subj, split) == split              # a patient lies in one split only
        tests.append(set(f.subjects[f.split == "test"].tolist()))
    assert set.union(*tests) == set(data.subjects.tolist()) and sum(map(len, tests)) == len(set(data.subjects.tolist()))
    assert np.array_equal(data.with_folds(3, 1).split, data.with_folds(3, 1).split)     # reproducible
    with pytest.raises(OptionError, match="fold must be from 0 to 2"):
        data.with_folds(3, 3)
    with pytest.raises(OptionError, match="4 folds need at least 4 patients"):
        data.with_folds(4, 0)
    t = Trainer(cfg_for("segmentor", tiny_prepared, folds=3, fold=2), tmp_path, method=get_method("segmentor"),
                progress=False)
    train_subjects = set(t.data.subjects[t.dataset.index].tolist())
    assert train_subjects == set(data.with_folds(3, 2).subjects[data.with_folds(3, 2).split == "train"].tolist())
    with pytest.raises(OptionError, match="fold 1 needs folds"):
        cfg_for("segmentor", tiny_prepared, fold=1).check()


def test_validation_keeps_the_best_weights(tiny_prepared, tmp_path):
    t = Trainer(cfg_for("segmentor", tiny_prepared, steps=3, val_every=1), tmp_path, method=get_method("segmentor"),
                progress=False)
    t.fit()
    val = [r for r in read_history(tmp_path) if "val_dice" in r]
    assert [r["step"] for r in val] == [1, 2, 3] and all(0 <= r["val_dice"] <= 1 for r in val)
    best = torch.load(tmp_path / BEST, weights_only=True)
    assert best["best"]["score"] == max(r["val_dice"] for r in val)
    assert best["best"]["step"] == max(val, key=lambda r: r["val_dice"])["step"]
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["best"] == best["best"]     # kept across resumes
    # a best.pt that a killed run wrote after its last checkpoint is not this run's: dropped on resume
    torch.save({**best, "best": {**best["best"], "step": 99}}, tmp_path / BEST)
    again = Trainer(cfg_for("segmentor", tiny_prepared, steps=3, val_every=1), tmp_path, method=get_method("segmentor"),
                    progress=False)
    assert again.best is None and not (tmp_path / BEST).exists()
    with pytest.raises(NotImplementedError, match="has no validate"):
        Trainer(cfg_for("cyclegan", tiny_prepared, val_every=1), tmp_path / "g", method=get_method("cyclegan"),
                progress=False).fit()                      # CycleGAN is not a pseudo-healthy translator
    with pytest.raises(OptionError, match="validate.. returned no 'healthiness'"):      # the zoo's judge reads 128-px slices
        Trainer(cfg_for("antgan", tiny_prepared, val_every=1, select="healthiness"), tmp_path / "h",
                method=get_method("antgan"), progress=False).fit()


def test_gradient_clipping_bounds_the_update(tiny_prepared, tmp_path):
    """With clip_grad, the gradients the optimiser steps with have a norm of at most the bound."""
    cfg = cfg_for("segmentor", tiny_prepared, steps=1, clip_grad=1e-3)
    t = Trainer(cfg, tmp_path, method=get_method("segmentor"), progress=False)
    norms = []

    def before_step(opt, args, kwargs):
        norms.append(torch.norm(torch.stack([p.grad.norm() for g in opt.param_groups for p in g["params"]
                                             if p.grad is not None])).item())
    t.optimizers["S"].register_step_pre_hook(before_step)
    t.fit()
    assert norms and norms[0] <= 1e-3 * 1.001


def test_reference_initialisation_and_dropout():
    cfg = TrainConfig(method="cyclegan", options={"generator": "unet", "ngf": 8, "unet_downs": 7, "ndf": 8})
    m = CycleGAN(cfg)
    w = torch.cat([p.flatten() for n, p in m.nets["G_AB"].named_parameters() if n.endswith("weight")])
    assert abs(w.std().item() - 0.02) < 0.002                            # N(0, 0.02), as pix2pix / CycleGAN
    assert abs(m.nets["G_AB"].down[0][0].weight.std().item() - 0.02) < 0.01
    assert all((p == 0).all() for n, p in m.nets["D_A"].named_parameters() if n.endswith("bias"))
    assert not any(isinstance(x, nn.Dropout) for x in m.modules())         # the reference CycleGAN: no dropout
    old = CycleGAN(TrainConfig.from_dict({"method": "cyclegan", "options": {"generator": "unet", "ngf": 8, "ndf": 8}}))
    assert (old.cfg.version, old.opt["init"], old.opt["dropout"]) == (1, "pytorch", 0.5)   # a config saved before
    assert old.nets["G_AB"].down[0][0].weight.std().item() > 0.1          # PyTorch's: uniform, 1/sqrt(fan-in 16)
    for downs, n_dropout in ((8, 3), (7, 2), (6, 1), (5, 0)):              # pix2pix: num_downs - 5 blocks
        u = UnetGenerator(1, 1, 4, downs, dropout=0.5)
        assert sum(isinstance(x, nn.Dropout) for x in u.modules()) == n_dropout, downs
    with pytest.raises(ValueError, match="unknown initialisation 'zeros'"):
        init_weights(nn.Conv2d(1, 1, 3), "zeros")
    with pytest.raises(OptionError, match=r"cyclegan option init: expected one of"):
        CycleGAN(TrainConfig(method="cyclegan", options={"init": "zeros"}))


def test_a_config_without_a_version_is_read_as_version_one(tmp_path):
    m = from_config({"method": "segmentor", "options": {"ngf": 4}}, tmp_path / "old.json")
    assert m.cfg.version == 1 and m.opt["init"] == "pytorch"
    assert from_config({"method": "segmentor", "version": 2, "options": {"ngf": 4}}, "x").opt["init"] == "normal"


def test_an_optimiser_updated_twice_in_a_step_under_a_gradient_scaler():
    """A critic trained several times per step: each update unscales its own backward exactly."""
    from pseudohealthy_lib.engine import StepContext

    net = nn.Linear(2, 1)
    w0 = net.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ctx = StepContext(torch.device("cpu"), None, {"D": opt}, torch.amp.GradScaler("cpu", init_scale=2.0 ** 4))
    for _ in range(2):
        ctx.backward(net(torch.ones(1, 2)).sum())            # d/dw = 1 for each weight
        ctx.update("D")
    assert torch.allclose(net.weight, w0 - 0.2)                # two plain steps of lr * 1: the scale undone
