"""PHS-GAN (methods/phsgan.py): the networks of its appendix tables, its losses and settings, and
the unpaired setting's masks from other volumes."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pseudohealthy_lib import losses as L
from pseudohealthy_lib.data import load_prepared
from pseudohealthy_lib.data.prepared import UnpairedDataset
from pseudohealthy_lib.engine import StepContext, TrainConfig
from pseudohealthy_lib.methods import PHSGAN
from pseudohealthy_lib.networks import PatchGAN, PHSCritic, ResnetGenerator, ResUnet
from pseudohealthy_lib.utils import OptionError


def phs(setting="paired", **opts) -> PHSGAN:
    return PHSGAN(TrainConfig(method="phsgan", options={"setting": setting, **opts}))


def test_networks_have_the_shapes_of_the_appendix_tables():
    m = phs()
    x = torch.zeros(1, 1, 208, 160)                     # the paper's slices
    g = m.nets["G"]
    widths = [c.out_channels for c in g.modules() if isinstance(c, torch.nn.Conv2d)]
    assert widths[:3] == [32, 64, 128] and widths[-3:] == [64, 32, 1]          # Table 2, first and last layers
    assert sum(isinstance(b, torch.nn.LeakyReLU) for b in g.modules()) == 6   # one per residual block
    assert g(x).shape == x.shape
    assert m.nets["R"].body[1].in_channels == 2 and m.reconstruct(x, x).shape == x.shape   # Table 3: image and map in
    assert m.nets["D_x"](x).shape == (1, 1, 13, 10)                            # Table 4: 13x10 scores
    assert [c.out_channels for c in m.nets["D_x"].modules() if isinstance(c, torch.nn.Conv2d)] == [32, 128, 256, 512, 1]
    assert m.nets["S"](torch.zeros(1, 1, 208, 160)).shape == x.shape
    with pytest.raises(ValueError, match="divisible by 16"):
        ResUnet(depth=4)(torch.zeros(1, 1, 200, 160))
    assert isinstance(m.nets["S"], ResUnet) and isinstance(m.nets["D_x"], PHSCritic) and isinstance(g, ResnetGenerator)


def test_each_setting_has_its_networks_terms_and_weights():
    batch = phs().example_batch(2, 32)
    expect = {"paired": ({"G", "S", "R", "D_x"}, {"gan_G", "gan_R", "cc_P", "cc_H", "cc_M", "seg"}, 1.0),
              "unpaired": ({"G", "S", "R", "D_x", "D_m"}, {"gan_G", "gan_R", "cc_P", "cc_H", "cc_M", "gan_S"}, 2.0),
              "gan": ({"G", "D_x"}, {"gan_G"}, 1.0)}
    for setting, (nets, terms, lam) in expect.items():
        m = phs(setting, ngf=4, n_blocks=1, s_ngf=4, ndf=4)
        assert set(m.nets) == nets and m.opt["lambda_gan"] == lam, setting        # Sec. 4.1: lambda_2 = 1 or 2
        assert set(m.generator_losses(batch, m(batch))) == terms, setting
    assert phs("unpaired", lambda_gan=0.5).opt["lambda_gan"] == 0.5
    with pytest.raises(OptionError, match="lambda_gan: expected a finite number of at least 0 or null, got 'x'"):
        phs(lambda_gan="x")
    with pytest.raises(OptionError, match=r"phsgan option setting: expected one of 'paired', 'unpaired', 'gan'"):
        phs("semi")


def test_the_identity_term_is_off_unless_asked_and_follows_eq_6():
    """Eq. (6), the library's addition: lambda_id |G(x_h) - x_h|_1, in every setting when asked."""
    batch = phs().example_batch(2, 32)
    assert "id" not in phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4).generator_losses(batch, phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4)(batch))
    for setting in ("paired", "gan"):
        m = phs(setting, ngf=4, n_blocks=1, s_ngf=4, ndf=4, lambda_id=5.0)
        out = m(batch)
        expected = 5.0 * (m.nets["G"](batch["B"]) - batch["B"]).abs().mean()
        assert m.generator_losses(batch, out)["id"].item() == pytest.approx(expected.item(), rel=1e-5), setting
        assert m.generator_losses(batch, out | {"x_h_id": batch["B"]})["id"] == 0            # G leaves x_h alone: free
    with pytest.raises(OptionError, match="phsgan option lambda_id: expected a finite number of at least 0"):
        phs(lambda_id=-1.0)


def test_the_shortcut_starts_g_at_the_identity_and_only_g():
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, shortcut=True)
    g = m.nets["G"]
    assert g.shortcut and not m.nets["R"].shortcut and not phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4).nets["G"].shortcut
    torch.nn.init.zeros_(g.body[-1].weight), torch.nn.init.zeros_(g.body[-1].bias)    # silence the branch
    x = torch.linspace(-0.9, 0.9, 32 * 32).reshape(1, 1, 32, 32)
    assert torch.allclose(g(x), torch.tanh(x))
    with pytest.raises(OptionError, match="phsgan option shortcut: expected true or false"):
        phs(shortcut="yes")


def test_the_cycle_terms_follow_eq_1():
    """A perfect G/S/R (identity image maps, black masks) pays nothing in L_CC; a segmentor that
    flags every pixel of a healthy slice pays lambda_CC for the third term."""
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4)
    batch = m.example_batch(2, 32)
    batch["B"] = batch["A"].clone()
    out = {"x_h_fake": batch["A"], "m_p_fake": batch["A_mask"], "x_p_rec": batch["A"], "x_h_lesioned": batch["B"],
           "x_h_rec": batch["B"], "m_h": torch.zeros_like(batch["B"]), "m_h_rec": torch.zeros_like(batch["B"])}
    t = m.generator_losses(batch, out)
    assert t["cc_P"] == t["cc_H"] == t["cc_M"] == 0 and t["seg"] < 1e-4
    t = m.generator_losses(batch, out | {"m_h_rec": torch.ones_like(batch["B"])})
    assert t["cc_M"] == pytest.approx(10.0)
    # why not Dice for that term: against a black target, one false pixel and a map that flags
    # everything both cost a Dice loss of about 1; the mean absolute error tells them apart
    black, speck = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    speck[..., 0, 0] = 1
    assert L.soft_dice_loss(speck, black).item() > 0.99 and L.soft_dice_loss(torch.ones_like(black), black).item() > 0.99
    assert speck.abs().mean() == 1 / 64 and torch.ones_like(black).abs().mean() == 1


def test_unpaired_masks_come_from_other_subjects(tiny_prepared):
    data = load_prepared(tiny_prepared)
    data = dataclasses.replace(data, split=np.full(len(data), "train"))       # all three subjects
    d = UnpairedDataset(data, "train", other_mask=True)
    for i in range(len(d)):
        item = d[i]
        a = d.path[d._pa[i % len(d.path)]]
        owners = {data.subjects[j] for j in d.path if np.array_equal(data.masks[j], item["M"][0].numpy())}
        assert owners - {data.subjects[a]}, i             # some other subject has exactly this mask
    one = dataclasses.replace(data, subjects=np.full(len(data), "same"))
    with pytest.raises(ValueError, match="other_mask=True draws each slice's mask from another subject"):
        UnpairedDataset(one, "train", other_mask=True)


def test_the_keep_term_asks_for_the_identity_outside_s_map_only():
    """Eq. (7), the library's addition: lambda_keep |(1 - S(x_p)) (G(x_p) - x_p)|_1, S not trained by it."""
    batch = phs().example_batch(2, 32)
    plain = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4)
    assert "keep" not in plain.generator_losses(batch, plain(batch))
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, lambda_keep=10.0)
    out = m(batch)
    inside = torch.zeros_like(batch["A"])
    inside[..., :16] = 1                                          # S marks the left half as diseased
    out["m_p_fake"] = inside
    changed = batch["A"].clone()
    changed[..., :16] = -1                                        # G rewrites the left half only: free
    assert m.generator_losses(batch, out | {"x_h_fake": changed})["keep"] == 0
    changed[..., 20] = batch["A"][..., 20] + 0.5                  # and one column outside: 0.5 on 2/32 of the pixels
    assert m.generator_losses(batch, out | {"x_h_fake": changed})["keep"].item() == pytest.approx(10 * 0.5 / 32)
    wider = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, lambda_keep=10.0, keep_dilate=5)   # the map grows to column 20
    assert wider.generator_losses(batch, out | {"x_h_fake": changed})["keep"] == 0
    out["m_p_fake"] = torch.sigmoid(m.nets["S"](batch["A"]))
    m.generator_losses(batch, out)["keep"].backward()
    assert all(p.grad is None for p in m.nets["S"].parameters()) and any(p.grad is not None for p in m.nets["G"].parameters())
    assert "keep" not in phs("gan", ngf=4, n_blocks=1, ndf=4, lambda_keep=10.0).generator_losses(batch, out)
    with pytest.raises(OptionError, match="phsgan option lambda_keep: expected a finite number of at least 0"):
        phs(lambda_keep=-1.0)


def test_blocking_hiding_stops_the_cycle_gradient_into_g_inside_the_map():
    """block_hiding: R still learns from G(x_p) inside S's map, but G gets no cycle gradient there."""
    batch = phs().example_batch(2, 32)

    def g_grad_of_cc_p(block, s_says):
        torch.manual_seed(0)
        m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, block_hiding=block)
        m.nets["S"].forward = lambda x: torch.full_like(x, 200.0 * s_says - 100)   # noqa: B023 (S's verdict: sigmoid 0 or 1)
        out = m(batch)
        m.generator_losses(batch, out)["cc_P"].backward()
        grads = [p.grad for p in m.nets["G"].parameters() if p.grad is not None]
        r_moves = any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.nets["R"].parameters())
        return (sum(g.abs().sum().item() for g in grads) if grads else 0.0), r_moves

    assert g_grad_of_cc_p(False, 1.0)[0] > 0                         # the paper: G is taught through R everywhere
    blocked, r_moves = g_grad_of_cc_p(True, 1.0)
    assert blocked == 0 and r_moves                                   # all lesion: nothing reaches G, R still learns
    assert g_grad_of_cc_p(True, 0.0)[0] == pytest.approx(g_grad_of_cc_p(False, 0.0)[0], rel=1e-4)   # no lesion: as the paper
    with pytest.raises(OptionError, match="phsgan option block_hiding: expected true or false"):
        phs(block_hiding="yes")


def test_map_grad_scales_the_cycle_gradient_into_g_inside_the_map_only():
    """map_grad: inside the map G's output gets map_grad times the P-H cycle's gradient; outside
    it gets all of it, and the images themselves do not change."""
    def grad_at_g_output(**o):
        torch.manual_seed(0)
        m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, keep_map="truth", **o)
        batch = m.example_batch(2, 32)
        out = m(batch)
        out["x_h_fake"].retain_grad()
        m.generator_losses(batch, out)["cc_P"].backward()
        return out["x_h_fake"].grad, batch["A_mask"] > 0, out["x_p_rec"].detach()
    full, inside, rec = grad_at_g_output()
    part, _, rec_part = grad_at_g_output(map_grad=0.3)
    none, _, _ = grad_at_g_output(block_hiding=True)
    assert full[inside].abs().sum() > 0 and none[inside].abs().sum() == 0
    assert torch.allclose(part[inside], 0.3 * full[inside], atol=1e-7)
    assert torch.allclose(part[~inside], full[~inside], atol=1e-7) and torch.allclose(rec, rec_part, atol=1e-6)
    with pytest.raises(OptionError, match="map_grad: expected a finite number from 0.0 to 1.0, got 1.5"):
        phs(map_grad=1.5)


def test_the_segmentor_can_have_its_own_learning_rate():
    cfg = TrainConfig(method="phsgan", lr=1e-3, options={"ngf": 4, "n_blocks": 1, "s_ngf": 4, "ndf": 4, "lr_s": 2e-4})
    m = PHSGAN(cfg)
    groups = m.optimizers()["G"].param_groups
    s_params = {id(p) for p in m.nets["S"].parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 2e-4]
    assert {id(p) for p in groups[1]["params"]} == s_params and not s_params & {id(p) for p in groups[0]["params"]}
    assert sum(len(g["params"]) for g in groups) == len([*m.nets["G"].parameters(), *m.nets["S"].parameters(), *m.nets["R"].parameters()])
    assert [g["lr"] for g in phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4).optimizers()["G"].param_groups] == [TrainConfig(method="phsgan").lr]
    for bad in (0, -1e-3, "fast", True):
        with pytest.raises(OptionError, match="phsgan option lr_s: expected a finite number above 0 or null"):
            phs(lr_s=bad)


def test_the_critic_can_be_the_patchgan_and_the_map_the_training_mask():
    """critic='patchgan' swaps Table 4 for the 70x70 PatchGAN; keep_map='truth' uses A_mask in Eq. (7) and block_hiding."""
    assert isinstance(phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4).nets["D_x"], PHSCritic)
    m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, critic="patchgan")
    assert all(isinstance(m.nets[k], PatchGAN) for k in ("D_x", "D_m"))
    assert m.nets["D_x"](torch.zeros(1, 1, 64, 64)).shape == (1, 1, 8, 8)
    batch = phs().example_batch(2, 32)
    batch["A_mask"] = torch.zeros_like(batch["A_mask"])
    batch["A_mask"][..., :16] = 1                                  # the truth: the left half is diseased
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, lambda_keep=10.0, keep_map="truth")
    out = m(batch)
    out["m_p_fake"] = 1 - batch["A_mask"]                          # S says the opposite: it must not matter
    changed = batch["A"].clone()
    changed[..., :16] = -1
    assert m.generator_losses(batch, out | {"x_h_fake": changed})["keep"] == 0
    assert m._lesion_map(batch, out).equal(batch["A_mask"])
    for setting in ("unpaired", "gan"):
        with pytest.raises(OptionError, match=f"keep_map='truth' needs the training masks of the paired setting, not setting='{setting}'"):
            phs(setting, keep_map="truth")
    with pytest.raises(OptionError, match="critic"):
        phs(critic="wgan")


def test_cycle_hh_can_start_from_another_subjects_lesion(tiny_prepared):
    """hh_mask='other': R paints another volume's lesion into x_h; G must remove it and S find it (Eq. 1')."""
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other")
    data = load_prepared(tiny_prepared)
    data = dataclasses.replace(data, split=np.full(len(data), "train"))       # all three subjects
    assert "M" in m.dataset(data, "train")[0] and "M" not in phs().dataset(data, "train")[0]
    batch = m.example_batch(2, 32)
    batch["M"] = torch.zeros_like(batch["A_mask"])
    batch["M"][..., 4:12, 4:12] = 1
    out = m(batch)
    assert out["m_h"].equal(batch["M"])
    terms = m.generator_losses(batch, out)
    assert "gan_R" not in terms and "gan_R" in phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4).generator_losses(batch, phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4)(batch))
    assert m.generator_losses(batch, out | {"m_h_rec": batch["M"]})["cc_M"] == 0           # S finds exactly the pasted lesion
    assert m.generator_losses(batch, out | {"m_h_rec": torch.zeros_like(batch["M"])})["cc_M"].item() == pytest.approx(10 * 64 / 1024)
    seen = []
    critic = m.nets["D_x"].forward
    m.nets["D_x"].forward = lambda x: seen.append(len(x)) or critic(x)
    m.training_step(batch, StepContext(torch.device("cpu"), None, m.optimizers(), None, 1))
    assert seen[-1] == 2 + 2                                       # real healthy + G(x_p) only: R's lesioned image is no fake
    with pytest.raises(OptionError, match="hh_mask='other' changes Cycle H-H, which setting='gan' does not have"):
        phs("gan", hh_mask="other")


def test_cycle_hh_can_start_from_a_pasted_real_lesion():
    """hh_mask='paste': x_p inside its mask (and inside x_h's head) over x_h, no painting by R (Eq. 1'')."""
    torch.manual_seed(0)
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="paste")
    batch = m.example_batch(2, 32)
    batch["A"] = torch.full_like(batch["A"], 0.8)               # a bright "lesion" slice
    batch["B"] = torch.full_like(batch["B"], -0.2)              # a grey healthy slice ...
    batch["B"][..., :, :6] = -1                                 # ... with background on its left
    batch["A_mask"] = torch.zeros_like(batch["A_mask"])
    batch["A_mask"][..., 2:10, 2:10] = 1
    out = m(batch)
    inside = torch.zeros_like(batch["A_mask"])
    inside[..., 2:10, 6:10] = 1                                 # the mask, less the background
    assert out["m_h"].equal(inside)
    assert out["x_h_lesioned"].equal(torch.where(inside.bool(), batch["A"], batch["B"]))
    terms = m.generator_losses(batch, out)
    assert "gan_R" not in terms
    (terms["cc_H"] + terms["cc_M"]).backward()                  # Cycle H-H trains G and S, not R
    grad = lambda k: sum(p.grad.abs().sum().item() for p in m.nets[k].parameters() if p.grad is not None)   # noqa: E731
    assert grad("G") > 0 and grad("S") > 0 and grad("R") == 0
    for setting in ("unpaired", "gan"):
        with pytest.raises(OptionError, match="hh_mask='paste'"):
            phs(setting, hh_mask="paste")
    grown = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="paste", paste_dilate=1)(batch)
    cut = torch.zeros_like(inside)
    cut[..., 1:11, 6:11] = 1                                    # widened by 1 pixel, still not into the background
    assert grown["m_h"].equal(inside)                           # S must find the lesion, not the cut
    assert grown["x_h_lesioned"].equal(torch.where(cut.bool(), batch["A"], batch["B"]))
    with pytest.raises(OptionError, match=r"paste_dilate=2 widens the pasted lesion of hh_mask='paste' or lambda_selfpaste, "
                       r"neither of which is on \(hh_mask='other'\)"):
        phs(hh_mask="other", paste_dilate=2)


def test_lambda_lesion_averages_the_paste_error_over_the_cut_alone():
    """Eq. (10): |G(x_h') - x_h| averaged over the (widened) cut, so a small lesion weighs as much as a large one."""
    torch.manual_seed(0)
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="paste", paste_dilate=1, lambda_lesion=2.0)
    batch = m.example_batch(1, 32)
    batch["B"] = torch.full_like(batch["B"], -0.2)
    batch["B"][..., :, :6] = -1                                 # background on the left
    batch["A_mask"] = torch.zeros_like(batch["A_mask"])
    batch["A_mask"][..., 2:10, 2:10] = 1
    out = m(batch)
    cut = torch.zeros_like(batch["B"])
    cut[..., 1:11, 6:11] = 1                                    # the pasted cut: widened, inside the head
    wrong = batch["B"] + 0.5 * cut                              # G leaves +0.5 on every pasted pixel
    terms = m.generator_losses(batch, out | {"x_h_rec": wrong})
    assert terms["lesion"].item() == pytest.approx(2.0 * 0.5)
    assert terms["cc_H"].item() == pytest.approx(10 * 0.5 * 50 / 1024)      # the whole-image term barely sees it
    assert m.generator_losses(batch, out | {"x_h_rec": batch["B"] + 0.5 * (1 - cut)})["lesion"] == 0   # errors elsewhere are (1')'s
    assert "lesion" not in phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="paste").generator_losses(batch, out)
    with pytest.raises(OptionError, match=r"lambda_lesion=1.0 weighs the pasted lesion of hh_mask='paste' or lambda_selfpaste, "
                       r"neither of which is on \(hh_mask='other'\)"):
        phs(hh_mask="other", lambda_lesion=1.0)
    # the unpaired Eq. (9): the same average over the cut of S's own map
    u = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", lambda_selfpaste=1.0, lambda_lesion=3.0)
    ub = u.example_batch(1, 32)
    ub["B"] = torch.full_like(ub["B"], -0.2)
    out = u(ub)
    found = torch.zeros_like(ub["B"])
    found[..., 4:8, 4:12] = 1                                   # pretend S found 32 pixels
    off = ub["B"] + 0.25 * found
    t = u.generator_losses(ub, out | {"m_self": found, "x_h_selfrec": off})
    assert t["self_lesion"].item() == pytest.approx(3.0 * 0.25) and "lesion" not in t


def test_selfpaste_cuts_real_lesions_out_with_s_own_map_and_trains_g_alone():
    """lambda_selfpaste (Eq. 9): x_p inside [S(x_p) > 0.5] pasted over x_h; |G(that) - x_h| trains G only."""
    torch.manual_seed(0)
    m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", lambda_selfpaste=3.0)
    batch = m.example_batch(2, 32)
    batch["A"] = torch.full_like(batch["A"], 0.8)
    batch["B"] = torch.full_like(batch["B"], -0.2)
    found = torch.zeros_like(batch["A_mask"])
    found[..., 4:12, 4:12] = 1
    m.nets["S"].forward = lambda x: (found[: len(x)] * 2 - 1) * 5     # S says "lesion" (p 0.99) on the square only
    out = m(batch)
    assert out["x_h_selfpasted"].equal(torch.where(found.bool(), batch["A"], batch["B"]))
    terms = m.generator_losses(batch, out)
    assert terms["self"].item() == pytest.approx(3.0 * (out["x_h_selfrec"] - batch["B"]).abs().mean().item(), rel=1e-5)
    del m.nets["S"].forward
    out = m(batch)
    terms = m.generator_losses(batch, out)
    terms["self"].backward()                                         # S's map is detached and R is not involved
    grad = lambda k: sum(p.grad.abs().sum().item() for p in m.nets[k].parameters() if p.grad is not None)   # noqa: E731
    assert grad("G") > 0 and grad("S") == 0 and grad("R") == 0
    m.nets["S"].forward = lambda x: torch.full_like(x, -5.0)          # S finds nothing: Eq. (9) is the identity term
    assert m(batch)["x_h_selfpasted"].equal(batch["B"])
    grown = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, lambda_selfpaste=1.0, paste_dilate=1)
    grown.nets["S"].forward = lambda x: (found[: len(x)] * 2 - 1) * 5
    cut = torch.zeros_like(found)
    cut[..., 3:13, 3:13] = 1
    assert grown(batch)["x_h_selfpasted"].equal(torch.where(cut.bool(), batch["A"], batch["B"]))
    assert "self" not in phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4).generator_losses(batch, m(batch))
    with pytest.raises(OptionError, match="lambda_selfpaste=1.0 cuts lesions out with S's map, which setting='gan' does not have"):
        phs("gan", lambda_selfpaste=1.0)


def test_the_paint_critic_judges_r_paintings_against_real_lesion_slices():
    """lambda_paint (Eq. 8): D_p sees real x_p as real and R(x_h, m) as fake; R is pushed to fool it."""
    torch.manual_seed(0)
    m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", lambda_paint=2.0)
    assert "D_p" in m.nets and "D_p" not in phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other").nets
    batch = m.example_batch(2, 32)
    out = m(batch)
    m.nets["D_p"].forward = lambda x: torch.full((len(x), 1, 2, 2), 0.25)      # a critic that scores 0.25 everywhere
    terms = m.generator_losses(batch, out)
    assert terms["gan_P"].item() == pytest.approx(2.0 * 0.5 * (0.25 - 1) ** 2)
    del m.nets["D_p"].forward
    terms = m.generator_losses(batch, out)
    terms["gan_P"].backward()                                    # the painting's realism trains R only
    grad = lambda k: sum(p.grad.abs().sum().item() for p in m.nets[k].parameters() if p.grad is not None)   # noqa: E731
    assert grad("R") > 0 and grad("G") == 0 and grad("S") == 0
    m.zero_grad()
    seen = []
    critic = m.nets["D_p"].forward
    m.nets["D_p"].forward = lambda x: seen.append(x.detach().clone()) or critic(x)
    logs = m.training_step(batch, StepContext(torch.device("cpu"), None, m.optimizers(), None, 1))
    assert "D_p" in logs and "gan_P" in logs
    real_and_fake = seen[-1]                                     # the critic's own update: x_p, then R's paintings
    assert real_and_fake[:2].equal(batch["A"]) and len(real_and_fake) == 4
    for hh in ("black", "paste"):
        with pytest.raises(OptionError, match=f"lambda_paint=2.0 judges R's paintings of another subject's mask, made only with hh_mask='other', not hh_mask='{hh}'"):
            phs(hh_mask=hh, lambda_paint=2.0)


def test_s_prior_sets_the_first_maps_probability():
    x = torch.randn(2, 1, 32, 32)
    for prior in (0.02, 0.3):
        m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, s_prior=prior)
        torch.nn.init.zeros_(m.nets["S"].out.weight)              # the bias alone decides
        assert m.segment(x).sub(prior).abs().max() < 1e-6
    assert phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4).nets["S"].out.bias.abs().max() < 0.5   # default: near 0.5
    for bad in (0, 1, 1.5, "x"):
        with pytest.raises(OptionError, match="s_prior: expected a finite number between 0 and 1 or null"):
            phs(s_prior=bad)


def test_the_mask_term_of_cycle_hh_can_be_a_dice_loss():
    m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", mask_loss="dice")
    batch = m.example_batch(2, 32)
    batch["M"] = torch.zeros_like(batch["A_mask"])
    batch["M"][..., 4:12, 4:12] = 1                              # 64 of 1024 pixels
    out = m(batch)
    assert m.generator_losses(batch, out | {"m_h_rec": batch["M"]})["cc_M"].item() == pytest.approx(0, abs=1e-6)
    assert m.generator_losses(batch, out | {"m_h_rec": torch.zeros_like(batch["M"])})["cc_M"].item() == pytest.approx(10)
    half = batch["M"].clone()
    half[..., 4:12, 8:12] = 0                                    # half the lesion found: Dice 2*32/(32+64)
    assert m.generator_losses(batch, out | {"m_h_rec": half})["cc_M"].item() == pytest.approx(10 * (1 - 64 / 96))
    with pytest.raises(OptionError, match="mask_loss='dice' needs a lesion in Cycle H-H's mask"):
        phs(mask_loss="dice")


def test_hh_detach_keeps_cycle_hh_from_training_the_painter():
    """hh_detach: Eq. (1') reaches G and S but not R, which then learns from Cycle P-H alone."""
    def grads(**o):
        torch.manual_seed(0)
        m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", **o)
        batch = m.example_batch(2, 32)
        out = m(batch)
        terms = m.generator_losses(batch, out)
        (terms["cc_H"] + terms["cc_M"]).backward()
        return {k: sum(p.grad.abs().sum().item() for p in m.nets[k].parameters() if p.grad is not None) for k in ("G", "S", "R")}
    free, fixed = grads(), grads(hh_detach=True)
    assert free["R"] > 0 and fixed["R"] == 0
    assert fixed["G"] > 0 and fixed["S"] > 0
    with pytest.raises(OptionError, match="hh_detach=true needs hh_mask='other'"):
        phs(hh_detach=True)


def test_lambda_hh_weighs_the_image_term_of_cycle_hh_alone():
    torch.manual_seed(0)
    m = phs(ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other")
    batch = m.example_batch(2, 32)
    out = m(batch)
    base = m.generator_losses(batch, out)
    assert m.opt["lambda_hh"] == m.opt["lambda_cc"] == 10                    # the paper's single weight
    m.opt["lambda_hh"] = 30.0
    heavier = m.generator_losses(batch, out)
    assert heavier["cc_H"].item() == pytest.approx(3 * base["cc_H"].item())
    assert heavier["cc_P"].item() == base["cc_P"].item() and heavier["cc_M"].item() == base["cc_M"].item()
    with pytest.raises(OptionError, match="lambda_hh: expected a finite number of at least 0 or null, got -1"):
        phs(lambda_hh=-1)



def test_term_gradients_say_which_term_moves_which_network():
    """explore.term_gradients: the critic's term reaches S and not R; the norms scale with the weights."""
    from pseudohealthy_lib.explore import term_gradients

    def grads(lam):
        torch.manual_seed(0)
        m = phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4, hh_mask="other", lambda_seg=lam)
        torch.manual_seed(1)
        return term_gradients(m, m.example_batch(2, 32))
    one, ten = grads(1.0), grads(10.0)
    assert set(one) == {"gan_G", "cc_P", "cc_H", "cc_M", "gan_S"} and set(one["gan_S"]) == {"G", "S", "R"}
    assert one["gan_S"]["S"] > 0 and one["gan_S"]["R"] == 0 and one["gan_S"]["G"] == 0     # Eq. (4) trains S alone
    assert one["cc_P"]["R"] > 0 and one["gan_G"]["S"] == 0
    assert ten["gan_S"]["S"] == pytest.approx(10 * one["gan_S"]["S"], rel=1e-4)            # linear in lambda_3
    assert ten["cc_P"]["S"] == pytest.approx(one["cc_P"]["S"], rel=1e-4)
    only = term_gradients(phs("unpaired", ngf=4, n_blocks=1, s_ngf=4, ndf=4), phs().example_batch(2, 32) | {"M": torch.zeros(2, 1, 32, 32)}, nets=["S"])
    assert all(set(v) == {"S"} for v in only.values())


def test_lr_s_and_lr_d_give_segmentor_and_critics_their_own_learning_rates():
    m = PHSGAN(TrainConfig(method="phsgan", lr=1e-3, options={"lr_s": 2e-4, "lr_d": 5e-4, "ngf": 4, "n_blocks": 1, "s_ngf": 4, "ndf": 4}))
    opts = m.optimizers()
    s_params = {id(p) for p in m.nets["S"].parameters()}
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in opts["G"].param_groups}
    assert by_lr[2e-4] == s_params and not (by_lr[1e-3] & s_params)            # G and R at the config's lr
    assert [g["lr"] for g in opts["D"].param_groups] == [5e-4]
    default = PHSGAN(TrainConfig(method="phsgan", lr=1e-3, options={"ngf": 4, "n_blocks": 1, "s_ngf": 4, "ndf": 4})).optimizers()
    assert [g["lr"] for g in default["D"].param_groups] == [1e-3]
    with pytest.raises(OptionError, match="lr_d: expected a finite number above 0 or null, got 0"):
        phs(lr_d=0)
