"""One training engine for every method in the book.

A *method* (:mod:`pseudohealthy_lib.methods`; the contract is in ``methods/base.py``) declares
its networks, its optimisers and schedulers, the dataset it trains on and one training step.
The engine does everything else, the same way for all, and knows no method by name:

* seeding, device choice (CUDA, Apple MPS, CPU) and mixed precision (bf16 where the hardware
  has it, fp16 with gradient scaling on GPUs without bf16 such as Colab's T4);
* a data order that is a pure function of (seed, step), so that training can stop anywhere
  and resume *exactly*: a resumed run computes the same losses as an uninterrupted one;
* a :class:`StepContext` for the training step: the step number, the stage of a staged
  schedule, further batches within a step, autocast, backward (scaled under fp16), optimiser
  updates with optional gradient clipping;
* patient-level k-fold cross-validation chosen at training time (``folds``, ``fold``);
* an optional exponential moving average of the exported networks' weights (``ema``), which is
  what is validated, evaluated and shipped;
* a validation hook that keeps the best checkpoint; a progress bar with live losses; a loss
  history appended to ``history.jsonl`` (one row per ``log_every`` steps, the mean of each loss);
  sample images; atomic checkpoints;
* data-parallel training on several GPUs (or CPU processes) launched with ``torchrun``: every
  process trains on its share of each batch and gradients are averaged before each update.

Typical use (the CLI ``python -m pseudohealthy_lib train`` does exactly this)::

    cfg = presets.config("antgan", "cpu")
    trainer = Trainer(cfg, "runs/antgan", method=ANTGAN)   # data: the default phantom
    trainer.fit()                     # resumes from runs/antgan/checkpoint.pt if it exists
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import platform
import random
import subprocess
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .config import REPO_DIR
from .utils import DataError, OptionError, at_least, atomic_path, remove_stale_temps, seed_everything

CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
HISTORY = "history.jsonl"
MANIFEST = "manifest.json"
#: settings a resumed run must share with its checkpoint. ``steps`` may change: a run can be
#: extended (or cut short), and its schedule and stages then follow the new total from the
#: current step on (after a finished decay, extending starts the learning rate again from the new
#: schedule's value at that step)
RESUME_KEYS = ("size", "batch_size", "seed", "lr", "beta1", "beta2", "decay_from", "data", "data_seed", "lesion", "modality", "subjects",
               "amp", "folds", "fold", "clip_grad", "ema", "select", "options")
#: the version of saved configs; configs without one were saved by version 1 (before options
#: such as ``init`` existed; see ``Method.before``)
CONFIG_VERSION = 2


class TrainingDiverged(DataError):
    """A loss became NaN or infinite. The last good checkpoint is kept; the message names the steps."""


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``options`` holds the method's own settings."""

    method: str
    preset: str = "cpu"
    steps: int = 1000
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    decay_from: float = 0.5        # fraction of the steps after which the lr decays linearly to 0
    seed: int = 0
    size: int = 128                # image side; the default data is prepared at this size
    data: str | None = None        # prepared .npz; None = the default phantom dataset
    subjects: int | None = None    # phantom subjects for the default data (None: library default)
    data_seed: int = 0             # seed of the default phantom (another seed = other subjects)
    lesion: str = "glioma"         # default phantom: glioma (BraTS-like) | stroke (ISLES-like) | liver (LiTS-like CT)
    modality: str = "flair"        # MR contrast of the default phantom: flair | t1 | t1ce | t2
    amp: str = "auto"              # auto | bf16 | fp16 | off
    channels_last: str = "auto"    # auto (on for CUDA) | on | off
    compile: bool = False
    log_every: int = 10
    sample_every: int = 0          # 0: never
    ckpt_every: int = 200
    val_every: int = 0             # 0: never; else validate (method.validate) every so many steps
    select: str = ""               # a validate() score (higher is better) that picks best.pt and the exported
                                   # weights; "": the method's own val_metric, and the last weights are exported
    clip_grad: float = 0.0         # 0: off; else clip each optimiser's gradient norm to this
    ema: float = 0.0               # 0: off; else the decay of a moving average of the exported weights
    folds: int = 0                 # 0: the prepared file's split; k >= 2: patient-level k-fold ...
    fold: int = 0                  # ... and this fold is the test split (see PreparedSlices.with_folds)
    version: int = CONFIG_VERSION
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """:class:`~pseudohealthy_lib.utils.OptionError` naming the first setting that cannot work (a count below 1, ...)."""
        for k in ("steps", "batch_size", "size", "log_every", "ckpt_every"):
            at_least(getattr(self, k), k)
        for k in ("sample_every", "seed", "data_seed", "val_every", "fold"):
            at_least(getattr(self, k), k, 0)
        at_least(self.version, "version")
        if self.folds:
            at_least(self.folds, "folds", 2)
            if self.fold >= self.folds:
                raise OptionError(f"fold must be below folds ({self.folds}): folds are numbered 0 to {self.folds - 1}, "
                                  f"got {self.fold}")
        elif self.fold:
            raise OptionError(f"fold {self.fold} needs folds (the number of cross-validation folds, at least 2)")
        if self.subjects is not None:
            at_least(self.subjects, "subjects")
        if not isinstance(self.select, str):
            raise OptionError(f"select must be the name of a validation score, such as psnr_lesion, got {self.select!r}")
        if self.select and not self.val_every:
            raise OptionError(f"select={self.select}: the weights are chosen among validations; set val_every too")
        for k, ok, what in (("lr", lambda v: v > 0, "a positive number"),
                            ("beta1", lambda v: 0 <= v < 1, "a number in [0, 1)"),
                            ("beta2", lambda v: 0 <= v < 1, "a number in [0, 1)"),
                            ("decay_from", lambda v: 0 <= v <= 1, "a number in [0, 1]"),
                            ("clip_grad", lambda v: v >= 0, "a number of at least 0 (0: no clipping)"),
                            ("ema", lambda v: 0 <= v < 1, "a decay in [0, 1) (0: no weight average)")):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise OptionError(f"{k} must be {what}, got {v!r}")
        for k, allowed in (("amp", ("auto", "bf16", "fp16", "off")), ("channels_last", ("auto", "on", "off")),
                           ("lesion", ("glioma", "stroke", "liver")), ("modality", ("flair", "t1", "t1ce", "t2"))):
            if getattr(self, k) not in allowed:
                raise OptionError(f"{k} must be one of {', '.join(allowed)}, got {getattr(self, k)!r}")
        if self.lesion == "liver" and self.modality != "flair":
            raise OptionError(f"modality {self.modality!r} is an MR contrast of the brain phantom; the liver phantom "
                              "(lesion 'liver') is CT: leave modality unset")
        if not isinstance(self.options, dict):
            raise OptionError(f"options must be a dict of method options, got {self.options!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The config saved as ``d``; one saved before configs had a version is version 1."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{"version": 1, **{k: v for k, v in d.items() if k in names}})


def linear_decay(optimizer, steps: int, decay_from: float) -> torch.optim.lr_scheduler.LambdaLR:
    """CycleGAN's schedule: the learning rate stays constant for the first ``decay_from`` of the
    ``steps``, then falls linearly to zero."""
    start = int(decay_from * steps)

    def factor(s: int) -> float:
        return 1.0 if s < start else max(0.0, 1 - (s - start) / max(1, steps - start))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------------------------------
# device, precision, distribution


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(device: torch.device, amp: str) -> torch.dtype | None:
    """Autocast dtype: bf16 on GPUs with native bf16 (compute capability 8.0 on: A100, L4, H100) and
    on CPUs that support it (:func:`cpu_has_fast_bf16`), fp16 on older GPUs (Colab's T4, where
    torch would otherwise *emulate* bf16, slowly), else None (fp32)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return None


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (AVX-512 or AMX). With them bf16 autocast measured
    about 1.8x faster than fp32 on 2 cores (README); without them (AVX2 only) bf16 falls back to
    slow generic kernels, measured 8 to 20x *slower* than fp32, so the engine stays in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):         # a build without oneDNN
        return False


class StepContext:
    """What a method's training step sees and uses.

    * ``step`` (0-based, the step being computed), ``total`` (the run's steps) and ``stage`` (the
      name of the current stage where the method declares ``stages``, else None);
    * ``next_batch()``: another batch within the same step (e.g. a critic trained several
      times per generator step); which slices it holds is a function of (seed, step, draw);
    * ``autocast()``, ``backward()`` (scaled under fp16) and ``update()`` (one optimiser's
      update: averaged over processes, unscaled and clipped if ``clip_grad``, stepped, zeroed).
      Call them in pairs, ``backward`` of a loss then ``update`` of its optimiser, as often as a
      step needs (a critic may be updated several times): under fp16 the scale is adjusted
      after every update, so each backward is scaled with the scale its update unscales with;
    * ``scaler``: the fp16 gradient scaler or None, for terms such as a gradient penalty that
      take gradients themselves: compute them from ``ctx.scaler.scale(output)`` and divide them
      by ``ctx.scaler.get_scale()`` before using them (PyTorch's recipe for AMP penalties).
    """

    def __init__(self, device, dtype, optimizers, scaler=None, world: int = 1, clip_grad: float = 0.0,
                 total: int = 0, draw=None):
        self.device, self.dtype, self.optimizers, self.scaler, self.world = device, dtype, optimizers, scaler, world
        self.clip_grad, self.total, self._draw = clip_grad, total, draw
        self.step, self.stage, self.draws = 0, None, 0

    def next_batch(self) -> dict:
        """Another training batch for this step (the first is the ``batch`` argument)."""
        if self._draw is None:
            raise RuntimeError("next_batch: this StepContext has no data (it was not made by a Trainer)")
        self.draws += 1
        return self._draw(self.step, self.draws)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def update(self, name: str) -> None:
        """Average gradients over processes (if distributed), clip them (if ``clip_grad``), step
        optimiser ``name`` and zero its gradients."""
        opt = self.optimizers[name]
        params = [p for g in opt.param_groups for p in g["params"]]
        if self.world > 1:
            grads = [p.grad for p in params if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= self.world
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        if self.clip_grad:
            if self.scaler:
                self.scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, self.clip_grad)
        if self.scaler:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()
        opt.zero_grad(set_to_none=True)


def _dist_env() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


# ---------------------------------------------------------------------------------------------
# reading checkpoints and weights (user files: every problem is a DataError naming the file)


def _reason(e: BaseException) -> str:
    """The first sentence of an exception's message (torch's are long), or its type."""
    text = str(e).strip().split("\n")[0].split(". ")[0]
    return text[:200] or type(e).__name__


def read_checkpoint(path: str | Path, what: str = "training checkpoint", keys: tuple = ("config", "nets"),
                    map_location="cpu") -> dict:
    """The dict saved in ``path`` by ``torch.save``, with ``keys``; a :class:`~pseudohealthy_lib.utils.DataError` naming the
    file if it is truncated, garbage, not a PyTorch file or lacks one of ``keys``."""
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: cannot read the {what}: the file is empty")
    try:
        s = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, AttributeError,
            ImportError, IndexError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read the {what}: truncated, corrupt or not a PyTorch file "
                        f"({_reason(e)})") from None
    if not isinstance(s, dict):
        raise DataError(f"{path}: not a {what}: it holds a {type(s).__name__}, not a dict")
    missing = [k for k in keys if k not in s]
    if missing:
        raise DataError(f"{path}: not a {what}: it has no {', '.join(map(repr, missing))} "
                        f"(it has {', '.join(map(repr, sorted(map(str, s))[:6])) or 'nothing'})")
    if "config" in keys and not (isinstance(s["config"], dict) and isinstance(s["config"].get("method"), str)):
        raise DataError(f"{path}: not a {what}: its 'config' names no method")
    return s


def load_nets(method: torch.nn.Module, nets, source: str | Path, names=None) -> None:
    """Load the state dicts ``nets`` (name -> state dict) into ``method.nets`` (all of them, or
    ``names``); a :class:`~pseudohealthy_lib.utils.DataError` naming ``source`` if they are not the networks of that method."""
    names = list(method.nets) if names is None else list(names)
    if not isinstance(nets, dict) or set(nets) != set(names):
        have = sorted(map(str, nets)) if isinstance(nets, dict) else type(nets).__name__
        raise DataError(f"{source}: holds the networks {have}, but a {method.name} with this config needs {sorted(names)}")
    for k in names:
        sd = nets[k]
        try:
            if not isinstance(sd, dict):
                raise TypeError(f"{k} is a {type(sd).__name__}, not a state dict")
            method.nets[k].load_state_dict({p: t.float() if torch.is_tensor(t) and t.is_floating_point() else t
                                            for p, t in sd.items()})
        except (RuntimeError, TypeError, AttributeError) as e:
            raise DataError(f"{source}: the weights of {k} do not fit a {method.name} with this config "
                            f"({_reason(e)})") from None


# ---------------------------------------------------------------------------------------------
# the trainer


class Trainer:
    """Train a method into the folder ``out`` (checkpoint, history, samples, best checkpoint).

    ``method`` is a method class (built here from ``cfg`` after seeding, so that a run's initial
    weights depend on ``cfg.seed`` only) or an instance (its own ``cfg`` is used when ``cfg`` is
    None). ``data`` is prepared slices (:class:`~pseudohealthy_lib.data.prepared.PreparedSlices`);
    None means ``cfg.data``, or the default phantom when that is None too.
    """

    def __init__(self, cfg: TrainConfig | None, out: str | Path, *, method, data=None, progress: bool = True):
        if isinstance(method, type):
            if cfg is None:
                raise OptionError(f"Trainer: give a TrainConfig to build {method.__name__} from")
        elif isinstance(method, torch.nn.Module) and hasattr(method, "training_step"):
            if cfg is not None and cfg.to_dict() != method.cfg.to_dict():
                raise OptionError("Trainer: the method was built from another config than the one given; "
                                  "pass cfg=None to use the method's own")
            cfg = method.cfg
        else:
            raise OptionError(f"Trainer: method must be a method class or instance, got {method!r}")
        cfg.check()
        if method.name != cfg.method:
            raise OptionError(f"Trainer: the config is for method {cfg.method!r}, the method is {method.name!r}")
        self.cfg, self.out, self.progress = cfg, Path(out), progress
        if self.out.exists() and not self.out.is_dir():
            raise DataError(f"{self.out}: is a file; the run folder (--out) must be a folder")
        self.rank, self.world = _dist_env()
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        self.device = pick_device()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dtype = pick_precision(self.device, cfg.amp)
        seed_everything(cfg.seed)
        self.method = (method(cfg) if isinstance(method, type) else method).to(self.device)
        cl = cfg.channels_last == "on" or (cfg.channels_last == "auto" and self.device.type == "cuda")
        self.memory_format = torch.channels_last if cl else torch.contiguous_format
        self.method.to(memory_format=self.memory_format)
        if self.world > 1:                               # identical start on every process
            for p in self.method.parameters():
                torch.distributed.broadcast(p.data, 0)
        if cfg.compile:
            for net in self.method.nets.values():
                net.compile()
        source = "the given data" if data is not None else cfg.data or f"the default phantom data (size {cfg.size})"
        if data is None and cfg.data is None:
            self._check_side(cfg.size, source)          # before the phantom is made
        self.data = data if data is not None else self._load_data()
        self._check_side(self.data.images.shape[-1], source)
        if cfg.folds:
            self.data = self.data.with_folds(cfg.folds, cfg.fold)
        try:
            self.dataset = self.method.dataset(self.data, "train")
        except DataError as e:
            raise type(e)(f"{source}: {e}") from e
        except ValueError as e:                         # the datasets' checks: a split without the slices needed
            raise DataError(f"{source}: {e}") from e
        if len(self.dataset) == 0:
            raise DataError(f"{source}: no training slices for {cfg.method}")
        if cfg.val_every and "val" not in set(self.data.split.tolist()):
            raise OptionError(f"val_every={cfg.val_every}: {source} has no validation split")
        self.optimizers = self.method.optimizers()
        self.schedulers = self.method.schedulers(self.optimizers)
        use_scaler = self.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.step, self.history, self.wall = 0, [], 0.0
        self.best = None                                 # {"step", "score"} of best.pt
        self.saved_step = None                           # step of the last checkpoint written or loaded
        self.average = None                              # name -> state dict: the weight average (ema)
        if cfg.ema:
            self.average = {k: {p: t.detach().clone() for p, t in self.method.nets[k].state_dict().items()}
                            for k in self.method.exported()}
        self._perm = (-1, None)                          # (epoch, permutation) of the data order
        if self.rank == 0:
            remove_stale_temps(self.out)                 # what a killed run was writing
        if (self.out / CHECKPOINT).is_file():
            self._load(self.out / CHECKPOINT)
        elif self.rank == 0:
            (self.out / HISTORY).unlink(missing_ok=True)  # rows of a run killed before its first checkpoint

    # -- data
    def _check_side(self, side: int, source: str) -> None:
        try:
            self.method.check_side(int(side))
        except OptionError as e:
            raise OptionError(f"{source}: {e}") from None

    def _load_data(self):
        from .data.default import training_data

        return training_data(self.cfg, self.progress)

    def _batch_indices(self, step: int) -> list[int]:
        """Indices of this process's share of batch ``step``: a function of (seed, step) only."""
        n, b = len(self.dataset), self.cfg.batch_size * self.world
        out = []
        for k in range(step * b, (step + 1) * b):
            epoch, pos = divmod(k, n)
            if self._perm[0] != epoch:
                g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
                self._perm = (epoch, torch.randperm(n, generator=g))
                if hasattr(self.dataset, "set_epoch"):
                    self.dataset.set_epoch(epoch)
            out.append(int(self._perm[1][pos]))
        return out[self.rank::self.world]

    def _collate(self, indices: list[int]) -> dict:
        items = [self.dataset[i] for i in indices]
        batch = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else torch.tensor([it[k] for it in items])
                 for k in items[0]}
        return {k: (v.to(self.device, memory_format=self.memory_format) if v.dim() == 4 else v.to(self.device))
                for k, v in batch.items()}

    def _batch(self, step: int) -> dict:
        return self._collate(self._batch_indices(step))

    def _extra_batch(self, step: int, draw: int) -> dict:
        """Batch ``draw`` (1, 2, ...) within step ``step``: random slices, a function of (seed, step, draw)."""
        n, b = len(self.dataset), self.cfg.batch_size * self.world
        g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + step) * 1_009 + draw)
        idx = torch.randint(n, (b,), generator=g).tolist()
        return self._collate(idx[self.rank::self.world])

    def stage_of(self, step: int) -> str | None:
        """The stage of the method's staged schedule that step ``step`` (0-based) belongs to."""
        for name, end in self.method.stages:
            if step < end * self.cfg.steps:
                return name
        return self.method.stages[-1][0] if self.method.stages else None

    # -- training
    def fit(self, steps: int | None = None) -> list[dict]:
        """Train until ``steps`` (default ``cfg.steps``), resuming where the checkpoint left off."""
        from tqdm.auto import tqdm

        end = min(steps or self.cfg.steps, self.cfg.steps)
        ctx = StepContext(self.device, self.dtype, self.optimizers, self.scaler, self.world,
                          self.cfg.clip_grad, self.cfg.steps, self._extra_batch)
        self.method.train()
        pending: list = []
        bar = tqdm(total=end, initial=self.step, desc=self.cfg.method, unit="step",
                   disable=not self.progress or self.rank != 0, dynamic_ncols=True)
        t0 = time.perf_counter()
        with warnings.catch_warnings():                  # once, not per step: an optimiser idle in a stage
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)` before")   # keeps its schedule
            try:
                self._train_until(end, ctx, pending, bar, t0)
            finally:
                bar.close()
        return self.history

    def _train_until(self, end: int, ctx: StepContext, pending: list, bar, t0: float) -> None:
        """The training loop of :meth:`fit`."""
        while self.step < end:
            batch = self._batch(self.step)
            ctx.step, ctx.stage, ctx.draws = self.step, self.stage_of(self.step), 0
            losses = self.method.training_step(batch, ctx)
            for s in self.schedulers.values():
                s.step()
            if self.average is not None:
                self._update_average()
            self.step += 1
            pending.append((self.step, losses))          # tensors: no device sync in the hot loop
            save = self.step % self.cfg.ckpt_every == 0 or self.step == end
            if save or self.step % self.cfg.log_every == 0:   # every checkpoint follows a (finite) flush
                row = self._flush(pending)
                bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k != "step"}, refresh=False)
            if self.cfg.val_every and (self.step % self.cfg.val_every == 0 or self.step == self.cfg.steps):
                self._validate()
            bar.update()
            if self.cfg.sample_every and self.step % self.cfg.sample_every == 0 and self.rank == 0:
                self.save_samples(batch)
            if save:
                self.wall += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save()

    @torch.no_grad()
    def _update_average(self) -> None:
        """One step of the weight average: avg <- d avg + (1 - d) w, with d = ``ema``, lowered early on
        to (1 + step) / (10 + step) so that the random initial weights fade quickly."""
        d = min(self.cfg.ema, (1 + self.step) / (10 + self.step))
        for k, avg in self.average.items():
            for p, t in self.method.nets[k].state_dict().items():
                avg[p].lerp_(t, 1 - d) if t.is_floating_point() else avg[p].copy_(t)

    @torch.no_grad()
    def swap_average(self) -> None:
        """Exchange the exported networks' weights with their moving average (``ema``; nothing without
        it). Swapping twice restores the training weights; :meth:`averaged` does it around a block."""
        for k, avg in (self.average or {}).items():
            for p, t in self.method.nets[k].state_dict().items():      # tensors sharing the weights' storage
                live = t.clone()
                t.copy_(avg[p])
                avg[p].copy_(live)

    @contextlib.contextmanager
    def averaged(self):
        """Inside this block the method's exported networks hold the weight average (with ``ema``)."""
        self.swap_average()
        try:
            yield self.method
        finally:
            self.swap_average()

    def use_best(self) -> bool:
        """If the run selects its weights (``select``), put those of ``best.pt`` (the validation's
        best step; with ``ema``, the average as it was then) into the method's networks and drop the
        running average: True; False, and nothing changed, otherwise."""
        if not self.cfg.select or self.best is None or not (self.out / BEST).is_file():
            return False
        kept = read_checkpoint(self.out / BEST, "best weights", ("best", "nets"), map_location=self.device)
        load_nets(self.method, kept["nets"], self.out / BEST)
        self.average = None
        return True

    def _flush(self, pending: list) -> dict:
        """Turn the pending per-step losses into one history row (the mean of each loss over the
        steps since the last row), with one device sync for all; append it to ``history.jsonl``.

        Raises :class:`TrainingDiverged` (and keeps the row out of the history) if any loss is
        NaN or infinite, on this process or, in distributed training, on any other.
        """
        if not pending:
            return {}
        names = [(st, k) for st, losses in pending for k in losses]
        values = [torch.as_tensor(v, dtype=torch.float32, device=self.device).reshape(())
                  for _, losses in pending for v in losses.values()]
        flat = torch.stack(values).tolist() if values else []
        steps = (pending[0][0], pending[-1][0])
        pending.clear()
        bad = sorted({(st, k) for (st, k), v in zip(names, flat) if not math.isfinite(v)})
        diverged = bool(bad)
        if self.world > 1:                               # every process stops, or none
            flag = torch.tensor([float(diverged)], device=self.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            diverged = bool(flag.item())
        if diverged:
            self._diverged(bad, steps)
        sums: dict[str, list] = {}
        for (_, k), v in zip(names, flat):
            sums.setdefault(k, []).append(v)
        row = {"step": steps[1], **{k: sum(v) / len(v) for k, v in sums.items()}}
        self._append(row)
        return row

    def _append(self, row: dict) -> None:
        self.history.append(row)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / HISTORY, "a") as f:
                f.write(json.dumps(row) + "\n")

    def _diverged(self, bad: list[tuple[int, str]], steps: tuple[int, int]):
        where = f"at step {bad[0][0]}" if bad else "on another process"
        if steps[0] != steps[1] or not bad:
            where += f" (steps {steps[0]}-{steps[1]} were checked together)"
        names = sorted({k for _, k in bad})
        kept = (f"the last good checkpoint, step {self.saved_step}, is kept in {self.out / CHECKPOINT}"
                if self.saved_step is not None else f"no checkpoint was written to {self.out}")
        raise TrainingDiverged(
            f"{self.out}: training diverged: non-finite loss {where}"
            + (f" in {', '.join(names)}" if names else "") + f"; {kept}. "
            "Train again into another --out folder with a lower --lr, --set clip_grad or other options")

    def _validate(self) -> None:
        """Run the method's validation, log it (keys ``val_*``) and keep the best checkpoint."""
        self.method.eval()
        try:
            with torch.no_grad(), StepContext(self.device, self.dtype, {}).autocast(), self.averaged():
                scores = self.method.validate(self.data, "val")
        finally:
            self.method.train()
        self._append({"step": self.step, **{f"val_{k}": float(v) for k, v in scores.items()}})
        key = self.cfg.select or self.method.val_metric
        if key is None:
            return
        if key not in scores:
            raise OptionError(f"{self.method.name}.validate() returned no {key!r} (it has {sorted(scores)})")
        score = float(scores[key])
        if math.isfinite(score) and (self.best is None or score > self.best["score"]):
            self.best = {"step": self.step, "score": score, "metric": key}
            if self.rank == 0:
                with atomic_path(self.out / BEST) as tmp, self.averaged():
                    torch.save({"config": self.cfg.to_dict(), "best": self.best,
                                "nets": {k: v.state_dict() for k, v in self.method.nets.items()}}, tmp)

    # -- checkpoints
    def save(self) -> None:
        """Write the checkpoint atomically (rank 0; the other processes write their own method
        state, such as image pools, to ``extra_rank<N>.pt``). The history is appended as it is
        logged; the checkpoint records how many rows of it belong to this state."""
        if self.rank != 0:
            with atomic_path(self.out / f"extra_rank{self.rank}.pt") as tmp:
                torch.save({"step": self.step, "extra": self.method.extra_state()}, tmp)
            return
        state = {
            "config": self.cfg.to_dict(), "step": self.step, "wall_seconds": self.wall,
            "nets": {k: v.state_dict() for k, v in self.method.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "extra": self.method.extra_state(), "average": self.average,
            "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history_rows": len(self.history), "best": self.best, "precision": str(self.dtype),
            "world": self.world,
        }
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        self.saved_step = self.step

    def _read_history(self, path: Path, s: dict) -> list[dict]:
        """The history rows that belong to checkpoint ``s``: the first ``history_rows`` rows of
        ``history.jsonl`` (a run killed after its checkpoint may have appended more, and a kill
        mid-write may have left half a line); the file is cut back to them."""
        if "history_rows" not in s:                      # saved before history.jsonl (version 1)
            rows = s.get("history") or []
        else:
            lines = (self.out / HISTORY).read_text().splitlines() if (self.out / HISTORY).is_file() else []
            n = s["history_rows"]
            try:
                rows = [json.loads(line) for line in lines[:n]]
            except json.JSONDecodeError as e:
                raise DataError(f"{self.out / HISTORY}: damaged loss history ({e}); delete the run folder to start again") from None
            if len(rows) < n:
                raise DataError(f"{self.out / HISTORY}: has {len(rows)} rows, the checkpoint {path} expects {n}; "
                                "delete the run folder to start again")
        if self.rank == 0:
            with atomic_path(self.out / HISTORY) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rows

    def _differences(self, theirs: dict, precision, world=None) -> tuple[list[str], list[str]]:
        """The settings (of :data:`RESUME_KEYS`) in which a checkpoint's config differs from ours,
        and for each a line with both values."""
        mine = self.cfg.to_dict()
        theirs = TrainConfig.from_dict({"method": self.cfg.method, **theirs}).to_dict()   # fields added since: defaults
        keys, out = [], []
        for k in RESUME_KEYS:
            a, b = theirs.get(k), mine[k]
            if k == "options":
                resolve = self.method.resolve_options
                a = resolve(a if isinstance(a, dict) else {}, theirs["version"])
                b = resolve(b, mine["version"])
                if a != b:
                    keys.append(k)
                    out += [f"option {o}: {a.get(o)!r} there, {b.get(o)!r} now" for o in sorted(set(a) | set(b))
                            if a.get(o) != b.get(o)]
                continue
            same = a == b or (k == "data" and isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike))
                                  and Path(a).resolve() == Path(b).resolve())
            if not same:
                keys.append(k)
                out.append(f"{k}: {a!r} there, {b!r} now")
        if precision is not None and precision != str(self.dtype):
            keys.append("precision")
            out.append(f"precision: {precision} there, {self.dtype} now")
        if world is not None and world != self.world:
            keys.append("processes")
            out.append(f"processes: {world} there, {self.world} now (the data order depends on it)")
        return keys, out

    def _load(self, path: Path) -> None:
        s = read_checkpoint(path, keys=("config", "step", "nets", "optimizers", "schedulers", "extra", "rng"),
                            map_location=self.device)
        if s["config"]["method"] != self.cfg.method:
            raise OptionError(f"{path}: checkpoint is a '{s['config']['method']}' run, not '{self.cfg.method}'; "
                              "use another --out folder")
        keys, differ = self._differences(s["config"], s.get("precision"), s.get("world"))
        if keys:
            raise OptionError(f"{path}: checkpoint was trained with other settings ({', '.join(keys)}): {'; '.join(differ)}; "
                              "resume with the same settings, or use another --out folder or delete this one")
        if not isinstance(s["step"], int) or s["step"] < 0:
            raise DataError(f"{path}: damaged checkpoint: its step is {s['step']!r}")
        if s["step"] > self.cfg.steps:
            raise OptionError(f"{path}: checkpoint is at step {s['step']}, beyond the {self.cfg.steps} steps asked for; "
                              "use more --steps, or another --out folder")
        load_nets(self.method, s["nets"], path)
        try:
            for k, o in self.optimizers.items():
                o.load_state_dict(s["optimizers"][k])
            for k, sch in self.schedulers.items():
                sch.load_state_dict(s["schedulers"][k])
            if self.scaler and s.get("scaler"):
                self.scaler.load_state_dict(s["scaler"])
            extra = s["extra"]
            if self.rank:
                mine = read_checkpoint(self.out / f"extra_rank{self.rank}.pt", "process state", ("step", "extra"))
                if mine["step"] != s["step"]:
                    raise DataError(f"{self.out}: extra_rank{self.rank}.pt is at step {mine['step']}, the checkpoint "
                                    f"at {s['step']}")
                extra = mine["extra"]
            self.method.load_extra_state(extra)
            if self.average is not None:
                load_nets(self.method, s["average"], f"{path} (its weight average)", list(self.average))
                self.average = {k: {p: t.detach().clone() for p, t in self.method.nets[k].state_dict().items()}
                                for k in self.average}
                load_nets(self.method, s["nets"], path)
            torch.set_rng_state(s["rng"]["torch"].cpu())
            random.setstate((3, tuple(s["rng"]["python"]), None))
            if s["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([r.cpu() for r in s["rng"]["cuda"]])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{path}: damaged checkpoint: cannot restore the training state ({_reason(e)})") from None
        self.history = self._read_history(path, s)
        self.step, self.wall, self.best = s["step"], float(s.get("wall_seconds", 0.0)), s.get("best")
        self.saved_step = self.step
        if (self.out / BEST).is_file() and self.rank == 0:      # written after this checkpoint by a killed run?
            kept = read_checkpoint(self.out / BEST, "best weights", ("best", "nets")).get("best")
            if kept != self.best:
                (self.out / BEST).unlink()
                self.best = None

    def save_samples(self, batch: dict) -> Path:
        import matplotlib.pyplot as plt

        self.method.eval()
        with torch.no_grad(), StepContext(self.device, self.dtype, {}).autocast(), self.averaged():
            imgs = self.method.samples(batch)
        self.method.train()
        n = min(4, len(next(iter(imgs.values()))))
        fig, axes = plt.subplots(n, len(imgs), figsize=(2 * len(imgs), 2 * n), squeeze=False)
        for j, (name, t) in enumerate(imgs.items()):
            for i in range(n):
                axes[i, j].imshow(t[i, 0].float().cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
                axes[i, j].axis("off")
            axes[0, j].set_title(name, fontsize=8)
        path = self.out / "samples" / f"step_{self.step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80, bbox_inches="tight")
        plt.close(fig)
        return path


def read_history(out: str | Path) -> list[dict]:
    """The loss history of the run folder ``out`` (``history.jsonl``: one JSON object per line)."""
    path = Path(out) / HISTORY
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def hardware() -> dict:
    """A short description of the machine, for manifests."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability()}      # AVX2, AVX512, ...: see pick_precision
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
