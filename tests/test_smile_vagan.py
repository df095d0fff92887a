"""SMILE (with its GVS setting) and VA-GAN: the hidden labels of the semi-supervised setting,
the four training stages, the confidence enhancer's threshold, the gradient penalty and the
critic schedule, each on cases where the answer is known."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pseudohealthy_lib import losses as L
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data.prepared import UnpairedDataset
from pseudohealthy_lib.engine import TrainConfig, Trainer, read_history
from pseudohealthy_lib.methods import SMILE, VAGAN
from pseudohealthy_lib.methods.smile import HiddenLabels
from pseudohealthy_lib.utils import OptionError

TINY_SMILE = {"ngf": 8, "s_ngf": 8, "unet_downs": 5}


def smile_cfg(data, steps=8, **options):
    return TrainConfig(method="smile", steps=steps, batch_size=2, size=32, data=str(data), log_every=1, ckpt_every=100,
                       options={**TINY_SMILE, **options})


def weights(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("labelled", [0.0, 0.5, 0.75, 1.0])
def test_hidden_labels_keep_exactly_the_asked_fraction_of_the_slices(tiny_prepared, labelled):
    base = UnpairedDataset(load_prepared(tiny_prepared), "train", with_index=True)
    pool = set(base.path.tolist()) | set(base.other.tolist())
    ds = HiddenLabels(base, labelled, seed=0)
    assert ds.keep.sum() == round(labelled * len(pool)) and set(ds.keep.nonzero()[0].tolist()) <= pool
    again, other = HiddenLabels(base, labelled, seed=0), HiddenLabels(base, labelled, seed=1)
    assert (again.keep == ds.keep).all()                                   # a function of the seed
    if 0 < labelled < 1:
        assert (other.keep != ds.keep).any()
    item = ds[3]
    assert {"A_index", "B_index"}.isdisjoint(item) and item["A_labelled"] in (0.0, 1.0)
    raw = base[3]
    assert item["A_labelled"] == float(ds.keep[raw["A_index"]]) and item["B_labelled"] == float(ds.keep[raw["B_index"]])


def test_smile_trains_in_four_stages_each_updating_its_own_networks(tiny_prepared, tmp_path):
    """Sec. 3.5: G with S; R with G and S fixed; R with S; all together (two steps each here)."""
    t = Trainer(smile_cfg(tiny_prepared), tmp_path, method=SMILE, progress=False)
    n = t.method.nets
    seen = []
    for stage in range(4):
        before = {k: weights(n[k]) for k in ("G", "S", "R")}
        t.fit(steps=2 * stage + 2)
        changed = {k for k in before if not same(before[k], weights(n[k]))}
        seen.append(changed)
    assert seen == [{"G", "S"}, {"R"}, {"R", "S"}, {"G", "S", "R"}]
    names = [set(row) - {"step"} for row in read_history(tmp_path)]
    assert names[0] == {"G", "pix", "fool_S", "S", "seg_Pn"}                   # Eqs. (1), (2) without R
    assert names[2] == {"G", "recons", "R_found"}                             # Eq. (3); S fixed
    assert names[4] == {"G", "recons", "R_found", "S", "seg_Pn", "seg_Pab"}
    assert names[6] == {"G", "pix", "fool_S", "recons", "R_found", "S", "seg_Pn", "seg_Pab"}


def test_gvs_is_g_against_s_alone_and_supervised(tiny_prepared, tmp_path):
    t = Trainer(smile_cfg(tiny_prepared, steps=3, setting="gvs"), tmp_path, method=SMILE, progress=False)
    assert set(t.method.nets) == {"G", "S"} and t.method.stages == (("gs", 1.0),)
    rows = t.fit()
    assert all(set(r) - {"step"} == {"G", "pix", "fool_S", "S", "seg_Pn"} for r in rows)
    with pytest.raises(OptionError, match="GVS .* is supervised"):
        SMILE(smile_cfg(tiny_prepared, setting="gvs", labelled=0.5))


def test_semi_supervised_smile_resumes_exactly_with_its_threshold(tiny_prepared, tmp_path):
    """Unlabelled slices add Eq. (5); eps, updated after each pass, is part of the saved state."""
    cfg = smile_cfg(tiny_prepared, steps=6, labelled=0.5, eps_update=True, lambda_dice=1.0)
    straight = Trainer(cfg, tmp_path / "a", method=SMILE, progress=False)
    straight.method._pass_steps = 2                                         # a "pass" of two steps, to see updates
    straight.fit()
    assert any("semi" in r for r in read_history(tmp_path / "a"))
    cut = TrainConfig(**{**cfg.to_dict(), "ckpt_every": 3})
    first = Trainer(cut, tmp_path / "b", method=SMILE, progress=False)
    first.method._pass_steps = 2
    first.fit(steps=3)
    resumed = Trainer(cut, tmp_path / "b", method=SMILE, progress=False)
    resumed.method._pass_steps = 2
    assert resumed.method.eps == first.method.eps
    resumed.fit()
    assert read_history(tmp_path / "a") == read_history(tmp_path / "b")
    assert resumed.method.eps == straight.method.eps


def test_s_history_pool_holds_image_mask_pairs_and_resumes_exactly(tiny_prepared, tmp_path):
    """pool_size: S's term on G(I) sees past (G(I), M) pairs; the pool is part of the saved state,
    so a run cut at step 3 and resumed writes the same history as a straight one."""
    cfg = smile_cfg(tiny_prepared, steps=6, pool_size=8)   # 4 images a step: full after two
    straight = Trainer(cfg, tmp_path / "a", method=SMILE, progress=False)
    rows = straight.fit()
    pool = straight.method.pool.images
    assert len(pool) == 8 and all(p.shape[1] == 2 for p in pool)               # image and mask, together
    masks = torch.cat([p[:, 1] for p in pool])
    assert set(masks.unique().tolist()) <= {0.0, 1.0} and masks.sum() > 0      # real masks travel with their images
    plain = Trainer(smile_cfg(tiny_prepared, steps=6), tmp_path / "c", method=SMILE, progress=False).fit()
    assert rows[:2] == plain[:2] and rows[-1]["seg_Pn"] != plain[-1]["seg_Pn"]  # same until the pool is full
    cut = TrainConfig(**{**cfg.to_dict(), "ckpt_every": 3})
    Trainer(cut, tmp_path / "b", method=SMILE, progress=False).fit(steps=3)
    resumed = Trainer(cut, tmp_path / "b", method=SMILE, progress=False)
    assert len(resumed.method.pool.images) == 8
    resumed.fit()
    assert read_history(tmp_path / "a") == read_history(tmp_path / "b")


def test_the_threshold_update_is_the_mean_confidence_of_lesion_pixels(tiny_prepared):
    m = SMILE(smile_cfg(tiny_prepared, eps_update=True))
    p = torch.tensor([[[[0.2, 0.7], [0.95, 0.4]]], [[[0.99, 0.6], [0.1, 0.3]]]])
    m._track_confidence(p, torch.tensor([1.0, 0.0]))                        # image 1 is labelled: ignored
    m._end_pass()
    assert m.eps == pytest.approx((0.7 + 0.95) / 2)
    m._end_pass()                                                           # a pass with no lesion pixel keeps it
    assert m.eps == pytest.approx(0.825)


def test_pseudo_labels_replace_the_mask_of_unlabelled_slices_only(tiny_prepared, tmp_path):
    """With every label hidden, G's masked MSE (Eq. 1) uses S's confident pixels: at the start S
    is unsure everywhere (p ~ 0.5 < eps), so the mask is empty and the MSE covers the lesion too."""
    cfg = TrainConfig(**{**smile_cfg(tiny_prepared, steps=1, labelled=0.0).to_dict(), "amp": "off"})   # exact sums
    t = Trainer(cfg, tmp_path, method=SMILE, progress=False)
    batch = t._batch(0)
    with torch.no_grad():
        p = t.method.segment(torch.cat([batch["A"], batch["B"]]))
    assert p.max() < 0.9                                                    # nothing confident yet
    image = torch.cat([batch["A"], batch["B"]])
    g = t.method.nets["G"]
    with torch.no_grad():
        expected = L.anomaly_mask_loss(g(image), image, torch.zeros_like(image))
        masked = L.anomaly_mask_loss(g(image), image, torch.cat([batch["A_mask"], torch.zeros_like(batch["A_mask"])]))
    assert masked < expected                                                # the lesion counts when the mask is empty
    row = t.fit()[0]
    assert row["pix"] == pytest.approx(expected.item(), abs=1e-6) and "semi" in row
    assert abs(row["pix"] - masked.item()) > 100 * 1e-6                     # and the test can tell the two apart


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x> has gradient w everywhere: the penalty is (|w| - 1)^2 wherever it is taken."""
    for norm in (0.5, 1.0, 3.0):
        w = torch.randn(1, 1, 4, 4)
        w = w / w.norm() * norm
        critic = lambda x: (x * w).flatten(1).sum(1, keepdim=True)        # noqa: E731
        gp = L.gradient_penalty(critic, torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4))
        assert gp.item() == pytest.approx((norm - 1) ** 2, abs=1e-5)
    conv = nn.Conv2d(1, 1, 3, padding=1)                                   # a map of patch scores: their mean is D
    gp = L.gradient_penalty(conv, torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8))
    gp.backward()                                                          # it trains the critic
    assert conv.weight.grad is not None and gp.item() > 0


def test_vagan_critic_schedule_and_losses(tiny_prepared, tmp_path):
    cfg = TrainConfig(method="vagan", steps=4, batch_size=2, size=32, data=str(tiny_prepared), log_every=1,
                      beta1=0.0, beta2=0.9, options={"ngf": 8, "ndf": 8, "unet_downs": 5, "n_critic": 2,
                                                     "n_critic_long": 3, "long_first": 1, "long_every": 3})
    t = Trainer(cfg, tmp_path, method=VAGAN, progress=False)
    assert [t.method.critic_steps(s) for s in range(7)] == [3, 2, 2, 3, 2, 2, 3]
    calls = []
    update = t.method.nets["D"].forward
    t.method.nets["D"].forward = lambda x: calls.append(len(x)) or update(x)     # count critic evaluations
    rows = t.fit(steps=2)
    assert all({"M", "fool", "map_l1", "D", "wasserstein", "gp"} <= set(r) for r in rows)
    # per critic update: fake, real and the penalty's point; then one for the generator
    assert len(calls) == (3 + 2) * 3 + 2
    m = t.method.eval()
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    y, mp = m.pseudo_healthy_image(x)
    assert torch.allclose(y, x + mp) and torch.equal(m.translate(x), y.clamp(-1, 1))    # Eq. (V1)
    with pytest.raises(ValueError, match="direction 'AB'"):
        m.translate(x, "BA")


def test_vagan_map_penalty_keeps_healthy_images_nearly_unchanged(tiny_prepared, tmp_path):
    """With a large L1 weight the generator's best answer is no change at all: M(x) shrinks to 0."""
    cfg = TrainConfig(method="vagan", steps=30, batch_size=2, size=32, data=str(tiny_prepared), lr=1e-3, log_every=1,
                      beta1=0.0, beta2=0.9, options={"ngf": 8, "ndf": 8, "unet_downs": 5, "n_critic": 1,
                                                     "long_first": 0, "long_every": 0, "lambda_map": 1000.0})
    rows = Trainer(cfg, tmp_path, method=VAGAN, progress=False).fit()
    assert rows[-1]["map_l1"] < 0.25 * rows[0]["map_l1"]


def test_am_dilate_frees_the_lesion_border_in_the_pixel_term(tiny_prepared, tmp_path):
    """am_dilate=2: Eq. (1)'s MSE skips the lesion mask grown by 2 pixels, not the mask itself."""
    cfg = TrainConfig(**{**smile_cfg(tiny_prepared, steps=1, am_dilate=2).to_dict(), "amp": "off"})
    t = Trainer(cfg, tmp_path, method=SMILE, progress=False)
    batch = t._batch(0)
    image = torch.cat([batch["A"], batch["B"]])
    mask = torch.cat([batch["A_mask"], torch.zeros_like(batch["A_mask"])])
    assert batch["A_mask"].sum() > 0
    with torch.no_grad():
        out = t.method.nets["G"](image)
        grown = L.anomaly_mask_loss(out, image, L.dilate(mask, 2))
        plain = L.anomaly_mask_loss(out, image, mask)
    row = t.fit()[0]
    assert row["pix"] == pytest.approx(grown.item(), abs=1e-6) and abs(plain.item() - grown.item()) > 1e-4



def test_paste_task_asks_g_for_the_healthy_slice_under_a_pasted_lesion(tiny_prepared, tmp_path):
    """lambda_paste: |G(paste(I_a, M grown by paste_dilate, I_h)) - I_h|_1, weighted; refused without the term."""
    cfg = TrainConfig(**{**smile_cfg(tiny_prepared, steps=1, lambda_paste=10.0, paste_dilate=1).to_dict(), "amp": "off"})
    t = Trainer(cfg, tmp_path, method=SMILE, progress=False)
    batch = t._batch(0)
    pasted, _ = L.paste_lesion(batch["A"], batch["A_mask"], batch["B"], 1)
    assert not torch.equal(pasted, batch["B"])                               # a lesion was pasted
    with torch.no_grad():
        expected = 10.0 * (t.method.nets["G"](pasted) - batch["B"]).abs().mean()
    row = t.fit()[0]
    assert row["paste"] == pytest.approx(expected.item(), rel=1e-5)
    assert row["G"] == pytest.approx(row["pix"] + row["fool_S"] + row["paste"], rel=1e-5)
    with pytest.raises(OptionError, match="paste_dilate=2 .* lambda_paste, which is off"):
        SMILE(smile_cfg(tiny_prepared, paste_dilate=2))


def test_fool_weight_and_resize_upsampling_of_g_and_r(tiny_prepared, tmp_path):
    """lambda_fool weighs Eq. (1)'s cross-entropy; upsample='resize' rebuilds G and R (not S) without transposed convs."""
    cfg = TrainConfig(**{**smile_cfg(tiny_prepared, steps=1, lambda_fool=0.25, upsample="resize").to_dict(), "amp": "off"})
    t = Trainer(cfg, tmp_path, method=SMILE, progress=False)
    kinds = {k: {type(m) for m in net.modules()} for k, net in t.method.nets.items()}
    assert nn.ConvTranspose2d not in kinds["G"] | kinds["R"] and nn.Upsample in kinds["G"] & kinds["R"]
    assert nn.ConvTranspose2d in kinds["S"]
    batch = t._batch(0)
    image = torch.cat([batch["A"], batch["B"]])
    with torch.no_grad():
        logits = t.method.nets["S"](t.method.nets["G"](image))
        unweighted = L.segmentation_loss(logits.float(), torch.zeros_like(logits[:, :1]), 0.0)
    row = t.fit()[0]
    assert row["fool_S"] == pytest.approx(0.25 * unweighted.item(), rel=1e-5)
    assert row["G"] == pytest.approx(row["pix"] + row["fool_S"], rel=1e-5)
