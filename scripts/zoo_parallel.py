"""Train many zoo models at once on one machine with many cores and one GPU.

    python scripts/zoo_parallel.py NAME [NAME ...] [--cores 16] [--jobs 8] [--deadline 480] [--log-dir logs/zoo]

The teaching recipes are small: on a GPU one of them keeps a CPU core busy launching kernels and
leaves the GPU mostly idle, so a machine with 16 cores trains a dozen of them side by side in
about two and a half times the time of one (measured on an H200; see below), four to five times
the throughput of training them one after another. It trains and exports like
``python -m pseudohealthy_lib zoo --train NAME ...``, except that it retrains every named model,
even one already in the zoo, and trains a judge only if it is named; and it works in parallel,
with every step's dependencies explicit:

1. each phantom the recipes train on is generated once, with as many subjects as the recipe
   that needs most (its subject workers share the cores), then each prepared ``.npz`` (one per
   contrast and subject count) is made once, before any model reads it, so no two of its
   processes write the same cache file;
2. each model is trained by the library's own command, ``python -m pseudohealthy_lib train
   <recipe> --out runs/NAME --export NAME``, as soon as its data exists, one core each, in the
   order the names are given;
3. a translator whose judge (:func:`pseudohealthy_lib.zoo.judge_name`) is trained in the same
   call is re-evaluated (``zoo --reevaluate``) once both are done, so its manifest holds the
   healthiness the judge gives.

Side by side the runs share the GPU: on an H200 one ANT-GAN recipe ran at 23 steps/s alone and
at about 9 steps/s each with 14 running (``pseudohealthy_lib/records/gpu.jsonl``). ``--jobs``
caps how many train at once, so that under a deadline fewer models finish rather than none.
Runs resume (``runs/NAME`` keeps checkpoints), so a call stopped at ``--deadline`` seconds can be
continued by the same command, here or on another machine. Each task's output goes to
``--log-dir/TASK.log``; a summary of what finished, failed or was stopped is printed at the end
and written to ``--log-dir/summary.json``. Exit status 0 when every model was exported.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pseudohealthy_lib import recipes, zoo                                 # noqa: E402
from pseudohealthy_lib.data.default import default_subjects               # noqa: E402


@dataclass
class Task:
    name: str
    argv: list[str]
    cores: int = 1
    needs: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    state: str = "waiting"            # waiting, running, done, failed, stopped, skipped
    seconds: float = 0.0


def data_tasks(cfg, cores: int, volumes: int) -> tuple[list[Task], str]:
    """The tasks that make ``cfg``'s training data (the phantom's first ``volumes`` subjects, as
    many as any recipe of the call needs from that phantom, then the prepared file), and the
    name of the last one."""
    subjects = cfg.subjects or default_subjects()
    vol = f"volumes-{cfg.lesion}-seed{cfg.data_seed}-n{volumes}"
    modality = "ct" if cfg.lesion == "liver" else cfg.modality
    prep = f"prepare-{cfg.lesion}-seed{cfg.data_seed}-n{subjects}-{modality}-{cfg.size}"
    make = (f"from pseudohealthy_lib.data import default; "
            f"default.phantom_volumes({volumes}, '{cfg.lesion}', {cfg.data_seed}, workers={cores}, progress=False)")
    prepare = (f"from pseudohealthy_lib.data import default; print(default.phantom_dataset({subjects}, '{cfg.lesion}', "
               f"{cfg.data_seed}, modality='{cfg.modality}', size={cfg.size}, progress=False))")
    return [Task(vol, [sys.executable, "-c", make], cores=cores if cfg.lesion != "liver" else 1),   # CT: one process
            Task(prep, [sys.executable, "-c", prepare], needs=[vol])], prep


def plan(names: list[str], cores: int, steps: int | None = None) -> list[Task]:
    """Every task of training ``names``, in the order they may start (``steps``: override the
    recipes' step counts, for a smoke test)."""
    data, train, after = {}, [], []
    cfgs = {name: recipes.recipe_config(name) for name in names}
    for name, cfg in cfgs.items():
        if cfg.data:
            raise SystemExit(f"{name}: its recipe reads {cfg.data}; this script makes phantom data only")
    most = {}                                                # (lesion, seed) -> the most subjects any recipe needs
    for cfg in cfgs.values():
        key = (cfg.lesion, cfg.data_seed)
        most[key] = max(most.get(key, 0), cfg.subjects or default_subjects())
    for name, cfg in cfgs.items():
        made, prep = data_tasks(cfg, max(1, min(8, cores // 2)), most[(cfg.lesion, cfg.data_seed)])
        for t in made:
            data.setdefault(t.name, t)
        more = ["--steps", str(steps)] if steps else []
        train.append(Task(name, [sys.executable, "-m", "pseudohealthy_lib", *recipes.train_args(name), *more], needs=[prep]))
        judge = zoo.judge_name(cfg.lesion, cfg.modality) if not name.startswith("segmentor") else None
        if judge in names:
            after.append(Task(f"reevaluate-{name}", [sys.executable, "-m", "pseudohealthy_lib", "zoo",
                                                     "--reevaluate", name], needs=[name, judge]))
    return [*data.values(), *train, *after]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", help="zoo names (see pseudohealthy_lib.recipes.RECIPES)")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores the tasks may keep busy together")
    p.add_argument("--jobs", type=int, default=0, help="at most this many trainings at once (0: as many as --cores allows)")
    p.add_argument("--deadline", type=float, default=0, help="stop what still runs after this many seconds (0: none)")
    p.add_argument("--steps", type=int, default=None, help="override every recipe's steps (a smoke test of this script)")
    p.add_argument("--log-dir", default="logs/zoo", help="one log per task, and summary.json")
    a = p.parse_args(argv)
    unknown = [n for n in a.names if n not in recipes.RECIPES]
    if unknown:
        p.error(f"no recipe for {', '.join(unknown)}; known: {', '.join(recipes.RECIPES)}")
    logs = Path(a.log_dir)
    logs.mkdir(parents=True, exist_ok=True)
    tasks = plan(a.names, a.cores, a.steps)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    t0 = time.monotonic()
    by_name = {t.name: t for t in tasks}
    while True:
        now = time.monotonic() - t0
        for t in tasks:                                      # collect what finished
            if t.state == "running" and t.proc.poll() is not None:
                t.state = "done" if t.proc.returncode == 0 else "failed"
                t.seconds = now - t.seconds
                print(f"[{now:6.0f} s] {t.state}: {t.name} ({t.seconds:.0f} s)", flush=True)
        for t in tasks:                                      # a task whose input failed cannot run
            if t.state == "waiting" and any(by_name[n].state in ("failed", "stopped", "skipped") for n in t.needs):
                t.state = "skipped"
        running = [t for t in tasks if t.state == "running"]
        if a.deadline and now > a.deadline:
            for t in running:
                t.proc.terminate()
                t.proc.wait()
                t.state, t.seconds = "stopped", now - t.seconds
                print(f"[{now:6.0f} s] stopped at the deadline: {t.name}", flush=True)
            break
        busy = sum(t.cores for t in running)
        training = sum(t.name in a.names for t in running)
        for t in tasks:                                      # start what may start, in order
            if a.jobs and t.name in a.names and training >= a.jobs:
                continue
            if t.state == "waiting" and all(by_name[n].state == "done" for n in t.needs) and busy + t.cores <= max(a.cores, t.cores):
                t.proc = subprocess.Popen(t.argv, cwd=REPO, env=env, stdout=open(logs / f"{t.name}.log", "w"),
                                          stderr=subprocess.STDOUT)
                t.state, t.seconds = "running", now
                busy += t.cores
                training += t.name in a.names
                print(f"[{now:6.0f} s] start: {t.name}", flush=True)
        if all(t.state not in ("waiting", "running") for t in tasks):
            break
        time.sleep(1)
    summary = {t.name: {"state": t.state, "seconds": round(t.seconds, 1)} for t in tasks}
    (logs / "summary.json").write_text(json.dumps(summary, indent=1))
    for state in ("done", "failed", "stopped", "skipped", "waiting"):
        names = [t.name for t in tasks if t.state == state]
        if names:
            print(f"{state}: {', '.join(names)}", flush=True)
    return 0 if all(summary[n]["state"] == "done" for n in a.names) else 1


if __name__ == "__main__":
    sys.exit(main())
