"""The ANT-GAN explorers: what they precompute, what a control change shows, and how fast."""
import numpy as np
import pytest
import torch

from pseudohealthy_lib import explore
from pseudohealthy_lib.data import load_prepared


class Scale(torch.nn.Module):
    """A 'generator' G(x) = a * x (in [-1, 1]), with G_AB and G_BA (the latter optional)."""

    def __init__(self, a: float, both: bool = True):
        super().__init__()
        self.a = a
        self.nets = torch.nn.ModuleDict({"G_AB": torch.nn.Identity()} | ({"G_BA": torch.nn.Identity()} if both else {}))
        self.w = torch.nn.Parameter(torch.zeros(1))

    def translate(self, x, direction="AB"):
        return x * self.a


@pytest.fixture(scope="module")
def data(tiny_prepared):
    return load_prepared(tiny_prepared)


def test_translate_and_panel(data):
    x = data.images[:3].astype(np.float32)
    np.testing.assert_allclose(explore.translate_slices(Scale(1.0), x), x, atol=1e-6)
    # a = 0 maps every image to mid-grey 0.5
    np.testing.assert_allclose(explore.translate_slices(Scale(0.0), x), 0.5, atol=1e-6)
    m = data.masks[0]
    p = explore.panel(x[0], x[0], m)
    h, w = x[0].shape
    assert p.shape == (h, 4 * w + 9, 3)
    diff = p[:, 2 * w + 6:3 * w + 6]
    np.testing.assert_allclose(diff, np.array(explore.plt.get_cmap("inferno")(0.0)[:3]) * np.ones_like(diff))
    png = explore.png_bytes(p, scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_spread_cases_one_per_subject_largest_first(data):
    cases = explore.spread_cases(data, "test", n=8)
    assert len(set(data.subjects[cases])) == len(cases)
    assert set(data.split[cases]) == {"test"} and data.labels[cases].all()
    area = data.masks[cases].reshape(len(cases), -1).sum(1)
    assert area[0] == data.masks[data.select("test", 1)].reshape(-1, data.masks.shape[-1] ** 2).sum(1).max()
    assert np.all(np.diff(area) <= 0)


def test_lambda_explorer_lookups_and_speed(data):
    models = {0.0: Scale(1.0), 1.0: Scale(0.5), 10.0: Scale(0.0)}
    metrics = {lam: {"psnr_tissue": 10 + lam, "identity": 1 / (1 + lam)} for lam in models}
    ex = explore.LambdaExplorer(models, data, metrics=metrics)
    assert ex.lams == [0.0, 1.0, 10.0] and ex.metric_names == ["psnr_tissue", "identity"]
    pos = ex._positions()
    assert pos[1.0] == 0 and pos[10.0] == 1 and pos[0.0] == -1        # 0 one decade left of 1
    box = ex.widget()
    lam_w, case_w, met_w, img, curve = ex._controls
    lam_w.value, case_w.value = 10.0, len(ex.cases) - 1
    # the image shown is exactly the panel of that lambda and case
    expect = explore.png_bytes(explore.panel(ex.x[-1], np.full_like(ex.x[-1], 0.5), ex.m[-1]))
    assert img.value == expect
    met_w.value = "identity"
    assert curve.value == ex._curves[("identity", 10.0)]
    before = (lam_w.value, case_w.value, met_w.value, img.value)
    assert ex.time_interaction(repeats=3) < 0.3
    assert (lam_w.value, case_w.value, met_w.value, img.value) == before     # left as it was
    assert len(box.children) == 4
    fig = ex.figure(lam=1.0, case=0)
    assert len(fig.axes) == 5 and fig.axes[1].get_title() == "G_A2N(x), λ_AM=1"
    # another setting in lambda's place, on a linear axis (the diffusion chapter's noise level)
    noise = explore.LambdaExplorer({0.1: Scale(1.0), 0.5: Scale(0.5)}, data, metrics=metrics | {0.1: metrics[0.0], 0.5: metrics[1.0]},
                                   label="noise level", output="x̂", log=False)
    assert noise._positions() == {0.1: 0.1, 0.5: 0.5}
    fig = noise.figure(lam=0.5, case=0)
    assert [fig.axes[i].get_title() for i in (1, 2)] == ["x̂, noise level=0.5", "|x̂ - x|"]
    assert fig.axes[4].get_xlabel() == "noise level"


def test_tsne_explorer_cache_vote_and_missing_generator(data, tmp_path):
    ex = explore.TSNEExplorer({"same": Scale(1.0), "one-way": Scale(1.0, both=False)}, data, n=10, cache=tmp_path)
    assert ex.n == 10
    assert set(ex.images["same"]) == set(explore.GROUPS)
    assert "pseudo_lesion" not in ex.images["one-way"]                # no G_N2A, no such points
    r = ex.embed("same", "pca", perplexity=5)
    assert r["xy"].shape == (40, 2) and r["groups"].count("pseudo_healthy") == 10
    files = list(tmp_path.glob("tsne-*.npz"))
    assert len(files) == 1
    ex2 = explore.TSNEExplorer({"same": Scale(1.0)}, data, n=10, cache=tmp_path)
    r2 = ex2.embed("same", "pca", perplexity=5)
    np.testing.assert_array_equal(r2["xy"], r["xy"])
    assert r2["seconds"] == pytest.approx(r["seconds"]) and len(list(tmp_path.glob("tsne-*.npz"))) == 1   # read back
    ex.embed("same", "pca", perplexity=8, n=5)
    assert len(list(tmp_path.glob("tsne-*.npz"))) == 2
    # G(x) = x: each translation sits on its input, so it gets the input's neighbours' vote
    vote = ex.healthy_vote("same", "pixels", k=1)
    assert vote["pseudo_healthy"] == 0.0 and vote["pseudo_lesion"] == 1.0
    with pytest.raises(ValueError, match="segmentor"):
        ex.embed("same", "segmentor")
    with pytest.raises(ValueError, match="unknown feature space"):
        ex.embed("same", "wavelets")


def test_plot_history_refuses_keys_it_does_not_have():
    from pseudohealthy_lib import viz

    hist = [{"step": s, "G": 1.0 / (s + 1), "D": 0.5} for s in range(10)]
    ax = viz.plot_history(hist, ["G", "D"])
    assert len(ax.lines) == 2
    with pytest.raises(KeyError, match="D_A"):
        viz.plot_history(hist, ["G", "D_A"])


def test_plot_history_panels_give_each_loss_its_own_scale():
    from pseudohealthy_lib import viz

    hist = [{"step": s, "G": 10.0 + s, "am": 0.01 * s, "D": 0.5} for s in range(20)]
    fig = viz.plot_history(hist, ["G", "am", "D"], smooth=1, panels=True)
    axes = [a for a in fig.axes if a.lines]
    assert [a.get_title() for a in axes] == ["G", "am", "D"]
    lo, hi = axes[1].get_ylim()
    assert hi - lo < 1                           # am is not flattened by G's scale of 10 to 29


def test_show_code_displays_the_library_source(capsys):
    from IPython.display import Code

    from pseudohealthy_lib import losses, notebook

    shown = []
    import IPython.display as D
    orig, D.display = D.display, lambda *objs: shown.extend(objs)
    try:
        notebook.show_code(losses.cycle_loss)
    finally:
        D.display = orig
    assert len(shown) == 1 and isinstance(shown[0], Code)
    assert "pseudohealthy_lib/losses.py" in shown[0].data and "def cycle_loss" in shown[0].data


def test_image_grid_colour_bars_and_column_ranges():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pseudohealthy_lib import viz

    img, diff = np.random.default_rng(0).random((16, 16)), np.full((16, 16), 0.2)
    fig = viz.image_grid([[img, diff], [img, diff]], ["image", "|difference|"], ranges={1: (0, 0.5)}, colorbar=(1,))
    panels = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(panels) == 4 and len(bars) == 2                  # one colour bar per row, column 1 only
    assert [ax.images[0].get_clim() for ax in panels] == [(0, 1), (0, 0.5)] * 2
    plt.close(fig)

    fig = viz.image_grid([[diff, diff], [diff, diff]], cmap="inferno", vmax=0.5, shared_colorbar="|change|")
    bars = [ax for ax in fig.axes if not ax.images]
    assert len(bars) == 1 and bars[0].get_ylabel() == "|change|"           # one bar for the grid, labelled
    assert bars[0].get_position().x0 > max(ax.get_position().x1 for ax in fig.axes if ax.images)  # at its right
    assert bars[0].get_ylim() == (0, 0.5)
    plt.close(fig)

    fig = viz.image_grid([[img, img], [diff, diff]])                     # a bar for the second row only
    panels = [ax for ax in fig.axes if ax.images]
    bar = viz.side_colorbar(fig, panels[2].images[0], "|change|", axes=panels[2:]).ax.get_position()
    assert bar.x0 > max(ax.get_position().x1 for ax in panels)          # it covers no panel of any row
    assert bar.y1 <= panels[2].get_position().y1 + 1e-6 and bar.y0 >= panels[2].get_position().y0 - 1e-6
    plt.close(fig)
