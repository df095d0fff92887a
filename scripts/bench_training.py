"""Training speed of the engine against a reference-style CycleGAN step, on this machine.

The *reference* step is written the way pytorch-CycleGAN-and-pix2pix writes it: fp32, NCHW,
batch 1, image pools, generators updated first and then each discriminator with its own
backward pass. The *engine* step is ``pseudohealthy_lib``'s ANT-GAN training step (same losses;
here lambda_AM = 0 and no shortcut, so both optimise the same CycleGAN objective) with the
engine's precision and memory-format choices. Both train the reference's networks: ANT-GAN's
Tables I and III are a little wider (Deconv1 4 ngf instead of 2 ngf, Conv4 4 ndf instead of
8 ndf), so the bench builds the library's ResnetGenerator and PatchGAN at the reference's widths;
the parameter counts are printed beside the timings.

With ``--reference-repo PATH`` the table also times the reference implementation *itself*: an
unmodified clone of https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix (measured at commit
00d5574, November 2021), imported from PATH at run time and never copied into this repository.
Its own option parser builds a ``cycle_gan`` model (``--netG resnet_9blocks`` or
``resnet_6blocks``, ``--input_nc 1 --output_nc 1``, ``--lambda_identity 0`` so that both optimise
the same objective, ``--gpu_ids -1`` on a CPU), and each step is what its ``train.py`` does per
batch: ``set_input`` then ``optimize_parameters``. Data loading is timed by neither side, so its
``data`` package (which needs torchvision) is replaced by a stand-in that adds no options.

Each configuration runs in its own process (so that peak memory is its own) and prints
images/s and peak memory. "Equal results" is checked by computing one step's losses in fp32
and in the mixed precision used, from the same weights and batch.

Usage: python scripts/bench_training.py [--sizes 128 240] [--steps 6] [--reference-repo PATH]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))      # the library, also when not installed

CONFIGS = [  # name, batch, amp, channels_last
    ("reference (fp32, NCHW, batch 1)", 1, "off", "off"),
    ("engine fp32, batch 1", 1, "off", "off"),
    ("engine mixed precision, batch 1", 1, "auto", "auto"),
    ("engine mixed precision, channels_last, batch 1", 1, "auto", "on"),
    ("engine mixed precision, batch 4", 4, "auto", "auto"),
]
REPO_CONFIGS = [  # the reference implementation itself, at the batches the engine rows use
    ("pytorch-CycleGAN-and-pix2pix itself, batch 1", 1, "off", "off"),
    ("pytorch-CycleGAN-and-pix2pix itself, batch 4", 4, "off", "off"),
]


def reference_repo_model(repo: str, size: int, ngf: int, blocks: int, batch: int, workdir: str):
    """The reference implementation's own CycleGAN model, built by its own option parser."""
    import types

    if not (Path(repo) / "models" / "cycle_gan_model.py").is_file():
        raise SystemExit(f"--reference-repo {repo}: no models/cycle_gan_model.py there; clone "
                         "https://github.com/junyanz/pytorch-CycleGAN-and-pix2pix and give its folder")
    if blocks not in (6, 9):
        raise SystemExit(f"--blocks {blocks}: the reference implementation has ResNet generators of 6 or 9 blocks only")
    sys.path.insert(0, str(Path(repo).resolve()))
    stand_in = types.ModuleType("data")             # its data loaders are not timed (and need torchvision)
    stand_in.get_option_setter = lambda name: (lambda parser, is_train: parser)
    sys.modules["data"] = stand_in
    import models
    from options.train_options import TrainOptions

    sys.argv = ["train.py", "--dataroot", workdir, "--checkpoints_dir", workdir, "--name", "bench",
                "--model", "cycle_gan", "--input_nc", "1", "--output_nc", "1", "--ngf", str(ngf), "--ndf", "64",
                "--netG", f"resnet_{blocks}blocks", "--lambda_identity", "0", "--batch_size", str(batch),
                "--crop_size", str(size), "--load_size", str(size), "--display_id", "0",
                "--gpu_ids", "0" if torch.cuda.is_available() else "-1"]
    opt = TrainOptions().parse()
    model = models.create_model(opt)
    model.setup(opt)
    return model


def reference_step(nets, opts, pools, real_a, real_b, lam=10.0):
    """One CycleGAN iteration in the style of the reference implementation (fp32, NCHW)."""
    from pseudohealthy_lib.methods.base import set_requires_grad

    g_ab, g_ba, d_a, d_b = nets["G_AB"], nets["G_BA"], nets["D_A"], nets["D_B"]
    fake_b = g_ab(real_a)
    rec_a = g_ba(fake_b)
    fake_a = g_ba(real_b)
    rec_b = g_ab(fake_a)
    set_requires_grad([d_a, d_b], False)
    opts["G"].zero_grad()
    p1, p2 = d_b(fake_b), d_a(fake_a)
    loss_g = (F.mse_loss(p1, torch.ones_like(p1)) + F.mse_loss(p2, torch.ones_like(p2))
              + lam * F.l1_loss(rec_a, real_a) + lam * F.l1_loss(rec_b, real_b))
    loss_g.backward()
    opts["G"].step()
    set_requires_grad([d_a, d_b], True)
    opts["D"].zero_grad()
    for d, real, fake in ((d_b, real_b, pools["B"].query(fake_b)), (d_a, real_a, pools["A"].query(fake_a))):
        pr, pf = d(real), d(fake.detach())
        loss_d = 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
        loss_d.backward()
    opts["D"].step()
    return loss_g


def run_one(size: int, ngf: int, blocks: int, config: int, steps: int, repo: str | None = None) -> dict:
    import tempfile

    from pseudohealthy_lib.engine import StepContext, TrainConfig, pick_device, pick_precision
    from pseudohealthy_lib.methods import ANTGAN
    from pseudohealthy_lib.networks import PatchGAN, ResnetGenerator, init_weights

    name, batch, amp, cl = (CONFIGS + REPO_CONFIGS)[config]
    torch.manual_seed(0)
    dev = pick_device()
    cfg = TrainConfig(method="antgan", batch_size=batch, size=size, amp=amp,
                      options={"ngf": ngf, "n_blocks": blocks, "ndf": 64, "lambda_am": 0.0, "shortcut": False})
    m = ANTGAN(cfg)
    for k in m.nets:                            # the reference's widths (see the module docstring)
        net = (ResnetGenerator(1, 1, ngf, blocks, upsample="transpose", deconv1_width=2 * ngf) if k.startswith("G")
               else PatchGAN(1, 64, conv4_width=8 * 64))
        m.nets[k] = init_weights(net, "normal", 0.02)
    m.to(dev)
    use_cl = cl == "on" or (cl == "auto" and dev.type == "cuda")
    fmt = torch.channels_last if use_cl else torch.contiguous_format
    m.to(memory_format=fmt)
    dtype = pick_precision(dev, amp)
    opts = m.optimizers()
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    ctx = StepContext(dev, dtype, opts, scaler, 1)
    batch_t = {k: (torch.rand(batch, 1, size, size, device=dev) * 2 - 1).to(memory_format=fmt) for k in ("A", "B")}
    batch_t["A_mask"] = torch.zeros(batch, 1, size, size, device=dev)

    params = sum(p.numel() for p in m.parameters())
    if config >= len(CONFIGS):                  # the reference implementation itself
        model = reference_repo_model(repo, size, ngf, blocks, batch, tempfile.mkdtemp())
        inputs = {"A": batch_t["A"], "B": batch_t["B"], "A_paths": ["a"] * batch, "B_paths": ["b"] * batch}
        params = sum(p.numel() for k in ("G_A", "G_B", "D_A", "D_B") for p in getattr(model, "net" + k).parameters())

    def step():
        if config >= len(CONFIGS):
            model.set_input(inputs)
            model.optimize_parameters()
        elif name.startswith("reference"):
            reference_step(m.nets, opts, m.pools, batch_t["A"], batch_t["B"])
        else:
            m.training_step(batch_t, ctx)
            if scaler:
                scaler.update()

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    dt = time.perf_counter() - t0
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"size": size, "config": name, "images_per_s": batch * steps / dt, "peak_mb": peak,
           "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else f"CPU x{torch.get_num_threads()}",
           "precision": str(dtype).replace("torch.", "") if dtype else "fp32", "channels_last": use_cl,
           "params": params}
    if config == 2:    # equal results: the same step's losses in fp32 and in mixed precision
        torch.manual_seed(1)
        m2 = ANTGAN(cfg).to(dev).eval()
        with torch.no_grad():
            full = {k: float(v) for k, v in m2.generator_losses(batch_t, m2(batch_t)).items()}
            with StepContext(dev, dtype, {}, None, 1).autocast():
                mixed = {k: float(v) for k, v in m2.generator_losses(batch_t, m2(batch_t)).items()}
        out["loss_rel_diff"] = max(abs(full[k] - mixed[k]) / max(abs(full[k]), 1e-8) for k in full)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 240])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=9)
    ap.add_argument("--reference-repo", metavar="PATH",
                    help="a clone of junyanz/pytorch-CycleGAN-and-pix2pix, to time the reference itself")
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(run_one(a.one[0], a.ngf, a.blocks, a.one[1], a.steps, a.reference_repo)))
        return
    rows = []
    n_configs = len(CONFIGS) + (len(REPO_CONFIGS) if a.reference_repo else 0)
    extra = ["--reference-repo", a.reference_repo] if a.reference_repo else []
    for size in a.sizes:
        for k in range(n_configs):
            r = subprocess.run([sys.executable, __file__, "--one", str(size), str(k), "--steps", str(a.steps),
                                "--ngf", str(a.ngf), "--blocks", str(a.blocks), *extra], capture_output=True, text=True)
            if r.returncode:
                raise SystemExit(f"configuration '{(CONFIGS + REPO_CONFIGS)[k][0]}' at {size} px failed:\n{r.stderr[-2000:]}")
            rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(f"  {rows[-1]['size']} {rows[-1]['config']}: {rows[-1]['images_per_s']:.2f} img/s", file=sys.stderr)
    print(f"\nANT-GAN-size model (ngf {a.ngf}, {a.blocks} residual blocks), device: {rows[0]['device']}\n")
    print("| size | configuration | parameters | precision | channels_last | images/s | peak memory (MB) | speed-up vs "
          "re-created reference, batch 1 | speed-up vs the reference itself, same batch |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = next(x for x in rows if x["size"] == r["size"] and x["config"].startswith("reference"))
        batch = r["config"].rsplit("batch ", 1)[1]
        itself = next((x for x in rows if x["size"] == r["size"] and x["config"].startswith("pytorch-CycleGAN")
                       and x["config"].endswith(f"batch {batch}")), None)
        vs_itself = f"{r['images_per_s'] / itself['images_per_s']:.2f}x" if itself else "-"
        print(f"| {r['size']} | {r['config']} | {r['params'] / 1e6:.2f} M | {r['precision']} | {r['channels_last']} | {r['images_per_s']:.2f} "
              f"| {r['peak_mb']:.0f} | {r['images_per_s'] / ref['images_per_s']:.2f}x | {vs_itself} |")
    for r in rows:
        if "loss_rel_diff" in r:
            print(f"\nsize {r['size']}: largest relative difference of the generator losses, fp32 vs "
                  f"{r['precision']}, same weights and batch: {r['loss_rel_diff']:.2e}")


if __name__ == "__main__":
    main()
