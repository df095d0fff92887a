"""Colab, simulated: the package installed (not editable) into a fresh folder, run from a working
directory outside the repository with an empty home. Without PH_ZOO nothing is trained: the
chapters' calls and ``evaluate`` refuse, saying where they looked and how to get the models. With
PH_ZOO pointing at a zoo (what the chapters' Colab cell sets after cloning), a shipped model
loads and no training starts."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``pip install`` of a copy of the package's sources (pyproject, README, package) into a
    folder of its own, without dependencies (they are this environment's) and without network."""
    root = tmp_path_factory.mktemp("colab")
    src = root / "src"
    shutil.copytree(REPO / "pseudohealthy_lib", src / "pseudohealthy_lib",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    site = root / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(site), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (site / "pseudohealthy_lib" / "records" / "antgan.jsonl").is_file()     # package data came along
    assert not (site / "data").exists()
    return root, site


def run_in_colab(installed, code: str, **env) -> subprocess.CompletedProcess:
    root, site = installed
    work, home = root / "work", root / "home"
    work.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PH_") and k not in ("PYTHONPATH", "XDG_CACHE_HOME")}
    full = {**clean, "PYTHONPATH": str(site), "HOME": str(home), "PH_FAST": "1", **env}
    prelude = textwrap.dedent(f"""
        import pseudohealthy_lib, sys
        assert pseudohealthy_lib.__file__.startswith({str(site)!r}), pseudohealthy_lib.__file__
        from pseudohealthy_lib import engine
        def no_training(*a, **k):
            raise SystemExit("TRAINING STARTED")
        engine.Trainer.__init__ = no_training
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=work, env=full,
                          capture_output=True, text=True, timeout=600)


def test_without_a_zoo_nothing_trains_and_the_error_says_what_to_do(installed, tiny_prepared):
    r = run_in_colab(installed, f"""
        from pseudohealthy_lib import config, presets, recipes, zoo
        from pseudohealthy_lib.evaluate import evaluate
        assert not config.in_checkout()
        for call in (lambda: recipes.ensure(zoo.SEGMENTOR, "antgan"),
                     lambda: recipes.load_or_train("antgan", presets.config("antgan", "cpu")),
                     lambda: zoo.load_pretrained("antgan"),
                     lambda: evaluate("antgan", {str(tiny_prepared)!r})):
            try:
                call()
            except zoo.ZooMissing as e:
                print("REFUSED:", e)
            else:
                raise SystemExit("no error")
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    refusals = [line for line in r.stdout.splitlines() if line.startswith("REFUSED:")]
    assert len(refusals) == 4
    for line in refusals:
        assert "looked in" in line and "PH_ZOO" in line and "zoo --train" in line and "PH_TRAIN_MISSING" in line
    home = installed[0] / "home"
    assert not (home / ".cache" / "pseudohealthy" / "runs").exists()       # no run folder made
    cli = subprocess.run([sys.executable, "-m", "pseudohealthy_lib", "evaluate", "antgan", "--data", str(tiny_prepared)],
                         cwd=installed[0] / "work", capture_output=True, text=True, timeout=300,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("PH_")},
                              "PYTHONPATH": str(installed[1]), "HOME": str(home)})
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert "the model zoo lacks antgan: looked in" in cli.stderr and str(home / ".cache" / "pseudohealthy" / "zoo") in cli.stderr


def test_with_ph_zoo_a_shipped_model_loads_and_nothing_trains(installed, tiny_prepared):
    r = run_in_colab(installed, f"""
        import torch
        from pseudohealthy_lib import presets, recipes, zoo
        from pseudohealthy_lib.data import load_prepared
        from pseudohealthy_lib.evaluate import recipe_trials
        recipes.ensure(zoo.SEGMENTOR, "antgan")                  # all there: nothing to do
        model = recipes.load_or_train("antgan", presets.config("antgan", "cpu"))
        x = torch.from_numpy(load_prepared({str(tiny_prepared)!r}).images[:2]).float().unsqueeze(1) * 2 - 1
        y = model.translate(x)
        assert y.shape == x.shape and model.manifest["name"] == "antgan"
        assert len(recipe_trials("antgan")) > 2                   # the recorded search ships with the package
        print("LOADED", zoo.zoo_dir())
    """, PH_ZOO=str(REPO / "data" / "zoo"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"LOADED {REPO / 'data' / 'zoo'}" in r.stdout and "TRAINING STARTED" not in r.stdout + r.stderr
