"""The tools for a GPU loan: scripts/zoo_parallel.py (many zoo recipes at once) and the GPU
appendix's timing tables (book/_ext/book_tables.py), on hand-made cases."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod                      # dataclasses look their module up while it loads
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def zp():
    return _load("zoo_parallel", ROOT / "scripts" / "zoo_parallel.py")


def test_each_phantom_is_made_once_and_each_model_waits_for_its_own_data(zp):
    n = zp.default_subjects()            # the translators' recipes use the default phantom (40; 4 in fast mode)
    tasks = {t.name: t for t in zp.plan(["segmentor-phantom-t1", "antgan-t1", "antgan-t2", "antgan-liver"], cores=16)}
    assert [k for k in tasks if k.startswith("volumes")] == ["volumes-glioma-seed1-n100", f"volumes-glioma-seed0-n{n}",
                                                            f"volumes-liver-seed0-n{n}"]
    assert tasks["volumes-glioma-seed1-n100"].cores == 8 and tasks[f"volumes-liver-seed0-n{n}"].cores == 1
    assert tasks[f"prepare-glioma-seed0-n{n}-t1-128"].needs == [f"volumes-glioma-seed0-n{n}"]
    assert tasks[f"prepare-glioma-seed0-n{n}-t2-128"].needs == [f"volumes-glioma-seed0-n{n}"]
    assert tasks["antgan-t1"].needs == [f"prepare-glioma-seed0-n{n}-t1-128"]
    assert tasks["segmentor-phantom-t1"].needs == ["prepare-glioma-seed1-n100-t1-128"]
    assert tasks["antgan-liver"].needs == [f"prepare-liver-seed0-n{n}-ct-128"]
    # the library's own command, with the recipe's arguments and the zoo export
    assert tasks["antgan-t1"].argv[1:] == ["-m", "pseudohealthy_lib", "train", "antgan", "--preset", "cpu", "--modality", "t1",
                                           "--out", "runs/antgan-t1", "--export", "antgan-t1"]
    # the T1 translator is judged again once its judge, trained in the same call, exists; T2's judge is not trained here
    assert tasks["reevaluate-antgan-t1"].needs == ["antgan-t1", "segmentor-phantom-t1"]
    assert "reevaluate-antgan-t2" not in tasks


def test_a_step_override_reaches_every_training_command(zp):
    train = [t for t in zp.plan(["antgan", "antgan-s1"], cores=4, steps=7) if t.name.startswith("antgan")]
    assert [t.argv[-2:] for t in train] == [["--steps", "7"], ["--steps", "7"]]
    assert "--seed" in train[1].argv and train[1].argv[train[1].argv.index("--seed") + 1] == "1"


def test_unknown_names_are_refused_with_the_known_ones(zp, capsys):
    with pytest.raises(SystemExit):
        zp.main(["antgan-nope"])
    assert "no recipe for antgan-nope; known:" in capsys.readouterr().err


def _fake_plan(zp, *tasks):
    return lambda names, cores, steps=None: [zp.Task(n, [sys.executable, "-c", code], needs=needs) for n, code, needs in tasks]


def test_the_scheduler_runs_in_order_skips_what_a_failure_blocks_and_stops_at_the_deadline(zp, tmp_path, monkeypatch):
    monkeypatch.setattr(zp, "plan", _fake_plan(zp, ("data", "pass", []), ("antgan", "import time; time.sleep(60)", ["data"]),
                                              ("broken", "raise SystemExit(3)", []), ("antgan-s1", "pass", ["broken"])))
    rc = zp.main(["antgan", "antgan-s1", "--cores", "4", "--deadline", "3", "--log-dir", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {k: v["state"] for k, v in summary.items()} == {"data": "done", "antgan": "stopped", "broken": "failed",
                                                           "antgan-s1": "skipped"}
    assert rc == 1 and summary["antgan"]["seconds"] >= 2
    assert (tmp_path / "broken.log").is_file()


def test_the_scheduler_exits_0_when_every_model_is_exported(zp, tmp_path, monkeypatch):
    monkeypatch.setattr(zp, "plan", _fake_plan(zp, ("data", "pass", []), ("antgan", "print('trained')", ["data"])))
    assert zp.main(["antgan", "--log-dir", str(tmp_path)]) == 0
    assert (tmp_path / "antgan.log").read_text().strip() == "trained"


def test_gpu_preset_estimates_divide_the_preset_steps_by_the_measured_rate():
    pytest.importorskip("sphinx")
    from pseudohealthy_lib.presets import PRESETS

    bt = _load("book_tables", ROOT / "book" / "_ext" / "book_tables.py")
    colab, paper = PRESETS["colab"], PRESETS["paper"]
    bench = [{"size": colab["size"], "batch": colab["batch_size"], "config": "engine mixed precision, batch 4", "steps_per_s": 10.0},
             {"size": colab["size"], "batch": colab["batch_size"], "config": "engine fp32, batch 4", "steps_per_s": 1000.0},
             {"size": paper["size"], "batch": paper["batch_size"], "config": "engine mixed precision, batch 1", "steps_per_s": 5.0}]
    rows = bt.preset_estimates(bench)
    assert rows[0][0] == "colab" and rows[0][-1] == f"{colab['steps'] / 10 / 60:.0f} min"      # not the fp32 row
    assert rows[1][0] == "paper" and rows[1][-1] == f"{paper['steps'] / 5 / 3600:.1f} h"
    assert bt.preset_estimates(bench[1:2]) == []                                                  # nothing measured: no guess
    recorded = [json.loads(line) for line in (ROOT / "pseudohealthy_lib" / "records" / "gpu.jsonl").read_text().splitlines()]
    assert [r[0] for r in bt.preset_estimates([r for r in recorded if r["kind"] == "bench"])] == ["colab", "paper"]


def test_jobs_caps_how_many_models_train_at_once(zp, tmp_path, monkeypatch):
    """Two models, --jobs 1: the second starts only when the first has finished (each writes its
    start and end time; the intervals must not overlap), while a data task still runs beside them."""
    code = "import time, sys; a = time.time(); time.sleep(1.5); print(a, time.time())"
    monkeypatch.setattr(zp, "plan", _fake_plan(zp, ("data", "import time; time.sleep(2)", []),
                                              ("antgan", code, []), ("antgan-s1", code, [])))
    assert zp.main(["antgan", "antgan-s1", "--jobs", "1", "--cores", "4", "--log-dir", str(tmp_path)]) == 0
    (a0, a1), (b0, b1) = ([float(v) for v in (tmp_path / f"{n}.log").read_text().split()] for n in ("antgan", "antgan-s1"))
    assert b0 >= a1 or a0 >= b1
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["data"]["seconds"] >= 1.5 and summary["antgan"]["state"] == summary["antgan-s1"]["state"] == "done"


def test_recipes_sharing_a_phantom_generate_it_once_with_the_most_subjects(zp, monkeypatch):
    from pseudohealthy_lib import recipes

    monkeypatch.setitem(recipes.RECIPES, "small-test", "antgan --preset cpu --data-seed 1 --subjects 7")
    tasks = {t.name: t for t in zp.plan(["small-test", "segmentor-phantom-t1"], cores=16)}
    assert [n for n in tasks if n.startswith("volumes")] == ["volumes-glioma-seed1-n100"]
    assert tasks["prepare-glioma-seed1-n7-flair-128"].needs == ["volumes-glioma-seed1-n100"]
    assert "phantom_dataset(7, 'glioma', 1, modality='flair'" in tasks["prepare-glioma-seed1-n7-flair-128"].argv[-1]
    assert "phantom_volumes(100, 'glioma', 1, workers=8" in tasks["volumes-glioma-seed1-n100"].argv[-1]
