"""One training engine for every method in the book.

A *method* (``pseudohealthy_lib.methods``) declares its networks, its optimisers, the dataset it
trains on and one training step. The engine does everything else, the same way for all:

* seeding, device choice (CUDA, Apple MPS, CPU) and mixed precision (bf16 where the hardware
  has it, fp16 with gradient scaling on GPUs without bf16 such as Colab's T4);
* a data order that is a pure function of (seed, step), so that training can stop anywhere
  and resume *exactly*: a resumed run computes the same losses as an uninterrupted one;
* Adam (lr 2e-4, beta1 0.5) with the CycleGAN schedule: constant, then linear decay to zero;
* a progress bar with live losses, a loss history, sample images, atomic checkpoints;
* data-parallel training on several GPUs (or CPU processes) launched with ``torchrun``: every
  process trains on its share of each batch and gradients are averaged before each step.

Typical use (the CLI ``python -m pseudohealthy_lib train`` does exactly this)::

    cfg = presets.config("antgan", "cpu")
    trainer = Trainer(cfg, out="runs/antgan")
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
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import REPO_DIR
from .utils import DataError, OptionError, at_least, atomic_path, remove_stale_temps, seed_everything

CHECKPOINT = "checkpoint.pt"
MANIFEST = "manifest.json"
#: settings a resumed run must share with its checkpoint (``steps`` may change: a run can be extended)
RESUME_KEYS = ("size", "batch_size", "seed", "lr", "data", "data_seed", "subjects", "amp", "options")


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
    amp: str = "auto"              # auto | bf16 | fp16 | off
    channels_last: str = "auto"    # auto (on for CUDA) | on | off
    compile: bool = False
    log_every: int = 10
    sample_every: int = 0          # 0: never
    ckpt_every: int = 200
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """:class:`~pseudohealthy_lib.utils.OptionError` naming the first setting that cannot work (a count below 1, ...)."""
        for k in ("steps", "batch_size", "size", "log_every", "ckpt_every"):
            at_least(getattr(self, k), k)
        for k in ("sample_every", "seed", "data_seed"):
            at_least(getattr(self, k), k, 0)
        if self.subjects is not None:
            at_least(self.subjects, "subjects")
        for k, ok, what in (("lr", lambda v: v > 0, "a positive number"),
                            ("beta1", lambda v: 0 <= v < 1, "a number in [0, 1)"),
                            ("beta2", lambda v: 0 <= v < 1, "a number in [0, 1)"),
                            ("decay_from", lambda v: 0 <= v <= 1, "a number in [0, 1]")):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not ok(v):
                raise OptionError(f"{k} must be {what}, got {v!r}")
        for k, allowed in (("amp", ("auto", "bf16", "fp16", "off")), ("channels_last", ("auto", "on", "off"))):
            if getattr(self, k) not in allowed:
                raise OptionError(f"{k} must be one of {', '.join(allowed)}, got {getattr(self, k)!r}")
        if not isinstance(self.options, dict):
            raise OptionError(f"options must be a dict of method options, got {self.options!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------------
# pieces every GAN method uses


class ImagePool:
    """History of generated images for discriminator updates (Shrivastava et al.; CycleGAN).

    Until the pool is full, images go in and come back unchanged. Then each image, with
    probability 1/2, is swapped with a random stored one: the discriminator sees the
    current fake or one from up to ``size`` updates ago. Its own random generator makes it
    reproducible and its state is saved in checkpoints.
    """

    def __init__(self, size: int = 50, seed: int = 0):
        self.size, self.images = size, []
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif torch.rand(1, generator=self.gen).item() < 0.5:
                k = int(torch.randint(len(self.images), (1,), generator=self.gen))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.cat(out)

    def state_dict(self) -> dict:
        return {"images": [i.cpu() for i in self.images], "gen": self.gen.get_state()}

    def load_state_dict(self, s: dict, device) -> None:
        self.images = [i.to(device) for i in s["images"]]
        self.gen.set_state(s["gen"])


def set_requires_grad(nets, flag: bool) -> None:
    for n in nets:
        for p in n.parameters():
            p.requires_grad_(flag)


def _check_option(method: str, key: str, value, default, choices, bounds) -> None:
    """:class:`~pseudohealthy_lib.utils.OptionError` unless ``value`` has the type of ``default`` (a bool for a bool, a whole
    number for an int, any finite number for a float, a string for a string; anything for None),
    is one of ``choices`` (if given) and lies in the inclusive ``bounds`` (low, high) (if given)."""
    if choices is not None:
        if not any(value is c or (type(value) is type(c) and value == c) for c in choices):
            raise OptionError(f"{method} option {key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, what = isinstance(value, (int, np.integer)) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok = (isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
              and math.isfinite(value))
        what = "a finite number"
    elif isinstance(default, str):
        ok, what = isinstance(value, str), "a string"
    else:
        return                                   # None (or another type): anything goes
    lo, hi = bounds or (None, None)
    if lo is not None and hi is not None:
        what += f" from {lo} to {hi}"
    elif lo is not None:
        what += f" of at least {lo}"
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OptionError(f"{method} option {key}: expected {what}, got {value!r}")


class Method(nn.Module):
    """Base class of a method. Subclasses set ``self.nets`` (a ModuleDict) and implement
    :meth:`dataset`, :meth:`optimizers` and :meth:`training_step`.

    Options (``cfg.options``) are checked against ``defaults``: each must have its default's type
    (see ``_check_option``), be one of ``choices[key]`` where a method lists them, and lie in
    ``ranges[key]`` = (low, high), inclusive, None for no bound. ``variants`` are named sets of
    options (``train --variant``), for methods that have them (ANT-GAN's ablation study).
    """

    name = "method"
    defaults: dict = {}
    choices: dict = {}
    ranges: dict = {}
    variants: dict = {}

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.check_options(cfg.options)
        self.opt = {**self.defaults, **cfg.options}

    @classmethod
    def check_options(cls, options: dict) -> None:
        """:class:`~pseudohealthy_lib.utils.OptionError` naming the first unknown or bad option in ``options``."""
        if not isinstance(options, dict):
            raise OptionError(f"{cls.name} options must be a dict (name -> value), got {options!r}")
        unknown = set(options) - set(cls.defaults)
        if unknown:
            raise OptionError(f"unknown options for {cls.name}: {sorted(unknown)}; known: {sorted(cls.defaults)}")
        for k, v in options.items():
            _check_option(cls.name, k, v, cls.defaults[k], cls.choices.get(k), cls.ranges.get(k))

    def check_side(self, side: int) -> None:
        """:class:`~pseudohealthy_lib.utils.OptionError` if images of ``side`` x ``side`` pixels do not suit the networks."""

    def dataset(self, data, split: str):
        """The torch dataset this method trains on, built from prepared slices ``data``."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by name (the names :meth:`StepContext.step` is called with)."""
        raise NotImplementedError

    def training_step(self, batch: dict, ctx: "StepContext") -> dict[str, float]:
        """One optimisation step on ``batch``; returns the losses to log, by name."""
        raise NotImplementedError

    def samples(self, batch: dict) -> dict[str, torch.Tensor]:
        """Images to show at sample intervals (name -> (B, 1, H, W) in [-1, 1])."""
        return {}

    def exported(self) -> list[str]:
        """Names of the networks a trained model needs at inference (what the zoo ships)."""
        return list(self.nets)

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def adam(self, *nets) -> torch.optim.Adam:
        params = [p for n in nets for p in n.parameters()]
        return torch.optim.Adam(params, lr=self.cfg.lr, betas=(self.cfg.beta1, self.cfg.beta2))


# ---------------------------------------------------------------------------------------------
# device, precision, distribution


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_precision(device: torch.device, amp: str) -> torch.dtype | None:
    """Autocast dtype: bf16 on CPUs and on GPUs that support it, fp16 on older GPUs, else None."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu":
        return torch.bfloat16        # measured ~1.9x faster than fp32 on the book's 2-core CPUs
    return None


class StepContext:
    """What a method's training step uses: autocast, backward and optimiser steps."""

    def __init__(self, device, dtype, optimizers, scaler, world: int):
        self.device, self.dtype, self.optimizers, self.scaler, self.world = device, dtype, optimizers, scaler, world

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler else loss).backward()

    def step(self, name: str) -> None:
        """Average gradients over processes (if distributed), step optimiser ``name``, zero it."""
        opt = self.optimizers[name]
        if self.world > 1:
            grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= self.world
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
        if self.scaler:
            self.scaler.step(opt)
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


def method_from_config(config: dict, source: str | Path) -> "Method":
    """The method a saved ``config`` (a checkpoint's or a manifest's) describes, untrained; a
    :class:`~pseudohealthy_lib.utils.DataError` naming ``source`` if the config is not one this library can build."""
    from .methods import get_method

    try:
        if not isinstance(config, dict):
            raise OptionError(f"config is a {type(config).__name__}, not a dict")
        return get_method(config.get("method"))(TrainConfig.from_dict(config))
    except OptionError as e:
        raise DataError(f"{source}: its config cannot be used: {e}") from None
    except TypeError as e:              # a missing or unexpected field of TrainConfig
        raise DataError(f"{source}: its config cannot be used ({e})") from None


def load_nets(method: "Method", nets, source: str | Path, names=None) -> None:
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
    """Train ``cfg.method`` into the folder ``out`` (checkpoint, history, samples, manifest)."""

    def __init__(self, cfg: TrainConfig, out: str | Path, data=None, progress: bool = True):
        from .methods import get_method

        cfg.check()
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
        self.method = get_method(cfg.method)(cfg).to(self.device)
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
        try:
            self.dataset = self.method.dataset(self.data, "train")
        except DataError as e:
            raise type(e)(f"{source}: {e}") from e
        except ValueError as e:                         # the datasets' checks: a split without the slices needed
            raise DataError(f"{source}: {e}") from e
        if len(self.dataset) == 0:
            raise DataError(f"{source}: no training slices for {cfg.method}")
        self.optimizers = self.method.optimizers()
        decay_start = int(cfg.decay_from * cfg.steps)
        lam = lambda s: 1.0 if s < decay_start else max(0.0, 1 - (s - decay_start) / max(1, cfg.steps - decay_start))  # noqa: E731
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lam) for k, o in self.optimizers.items()}
        use_scaler = self.dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.step, self.history, self.wall = 0, [], 0.0
        self.saved_step = None                           # step of the last checkpoint written or loaded
        self._perm = (-1, None)                          # (epoch, permutation) of the data order
        if self.rank == 0:
            remove_stale_temps(self.out)                 # what a killed run was writing
        if (self.out / CHECKPOINT).is_file():
            self._load(self.out / CHECKPOINT)

    # -- data
    def _check_side(self, side: int, source: str) -> None:
        try:
            self.method.check_side(int(side))
        except OptionError as e:
            raise OptionError(f"{source}: {e}") from None

    def _load_data(self):
        from .data import default, load_prepared

        path = self.cfg.data or default.phantom_dataset(self.cfg.subjects, seed=self.cfg.data_seed, size=self.cfg.size,
                                                                progress=self.progress)
        return load_prepared(path)

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

    def _batch(self, step: int) -> dict:
        items = [self.dataset[i] for i in self._batch_indices(step)]
        batch = {k: torch.stack([it[k] for it in items]) if torch.is_tensor(items[0][k]) else torch.tensor([it[k] for it in items])
                 for k in items[0]}
        return {k: (v.to(self.device, memory_format=self.memory_format) if v.dim() == 4 else v.to(self.device))
                for k, v in batch.items()}

    # -- training
    def fit(self, steps: int | None = None) -> list[dict]:
        """Train until ``steps`` (default ``cfg.steps``), resuming where the checkpoint left off."""
        from tqdm.auto import tqdm

        end = min(steps or self.cfg.steps, self.cfg.steps)
        ctx = StepContext(self.device, self.dtype, self.optimizers, self.scaler, self.world)
        self.method.train()
        pending: list = []
        bar = tqdm(total=end, initial=self.step, desc=self.cfg.method, unit="step",
                   disable=not self.progress or self.rank != 0, dynamic_ncols=True)
        t0 = time.perf_counter()
        try:
            while self.step < end:
                batch = self._batch(self.step)
                losses = self.method.training_step(batch, ctx)
                if self.scaler:
                    self.scaler.update()
                for s in self.schedulers.values():
                    s.step()
                self.step += 1
                pending.append((self.step, losses))          # tensors: no device sync in the hot loop
                save = self.step % self.cfg.ckpt_every == 0 or self.step == end
                if save or self.step % self.cfg.log_every == 0:   # every checkpoint follows a (finite) flush
                    self._flush(pending)
                    recent = self.history[-self.cfg.log_every:]
                    bar.set_postfix({k: f"{np.mean([h[k] for h in recent]):.3f}" for k in losses}, refresh=False)
                bar.update()
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0 and self.rank == 0:
                    self.save_samples(batch)
                if save:
                    self.wall += time.perf_counter() - t0
                    t0 = time.perf_counter()
                    self.save()
        finally:
            bar.close()
        return self.history

    def _flush(self, pending: list) -> None:
        """Move the pending losses into the history as floats (one device sync for all).

        Raises :class:`TrainingDiverged` (and keeps them out of the history) if any is NaN or
        infinite, on this process or, in distributed training, on any other.
        """
        if pending:
            keys = list(pending[0][1])
            values = torch.stack([torch.stack([torch.as_tensor(l[k], dtype=torch.float32, device=self.device)
                                               for k in keys]) for _, l in pending])
            rows = [{"step": st, **dict(zip(keys, v))} for (st, _), v in zip(pending, values.tolist())]
            steps = (pending[0][0], pending[-1][0])
            pending.clear()
            bad = [r for r in rows if not all(math.isfinite(r[k]) for k in keys)]
            diverged = bool(bad)
            if self.world > 1:                           # every process stops, or none
                flag = torch.tensor([float(diverged)], device=self.device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                diverged = bool(flag.item())
            if diverged:
                self._diverged(bad, keys, steps)
            self.history += rows

    def _diverged(self, bad: list[dict], keys: list[str], steps: tuple[int, int]):
        where = f"at step {bad[0]['step']}" if bad else "on another process"
        if steps[0] != steps[1] or not bad:
            where += f" (steps {steps[0]}-{steps[1]} were logged together)"
        names = sorted({k for r in bad for k in keys if not math.isfinite(r[k])})
        kept = (f"the last good checkpoint, step {self.saved_step}, is kept in {self.out / CHECKPOINT}"
                if self.saved_step is not None else f"no checkpoint was written to {self.out}")
        raise TrainingDiverged(
            f"{self.out}: training diverged: non-finite loss {where}"
            + (f" in {', '.join(names)}" if names else "") + f"; {kept}. "
            "Train again into another --out folder with a lower --lr or other options")

    # -- checkpoints
    def save(self) -> None:
        """Write the checkpoint atomically (rank 0 only)."""
        if self.rank != 0:
            return
        state = {
            "config": self.cfg.to_dict(), "step": self.step, "wall_seconds": self.wall,
            "nets": {k: v.state_dict() for k, v in self.method.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedulers": {k: v.state_dict() for k, v in self.schedulers.items()},
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "extra": self.method.extra_state(),
            "rng": {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            "history": self.history, "precision": str(self.dtype),
        }
        # the history first: a run killed between the two files resumes from the older checkpoint
        # and writes both again, so a finished run's history.json is never behind its checkpoint
        with atomic_path(self.out / "history.json") as tmp:
            tmp.write_text(json.dumps(self.history))
        with atomic_path(self.out / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        self.saved_step = self.step

    def _differences(self, theirs: dict, precision) -> tuple[list[str], list[str]]:
        """The settings (of :data:`RESUME_KEYS`) in which a checkpoint's config differs from ours,
        and for each a line with both values."""
        mine = self.cfg.to_dict()
        theirs = {**TrainConfig(method=self.cfg.method).to_dict(), **theirs}   # fields added since: defaults
        defaults = self.method.defaults
        keys, out = [], []
        for k in RESUME_KEYS:
            a, b = theirs.get(k), mine[k]
            if k == "options":
                a, b = {**defaults, **(a if isinstance(a, dict) else {})}, {**defaults, **b}
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
        return keys, out

    def _load(self, path: Path) -> None:
        s = read_checkpoint(path, keys=("config", "step", "nets", "optimizers", "schedulers", "extra", "rng", "history"),
                            map_location=self.device)
        if s["config"]["method"] != self.cfg.method:
            raise OptionError(f"{path}: checkpoint is a '{s['config']['method']}' run, not '{self.cfg.method}'; "
                              "use another --out folder")
        keys, differ = self._differences(s["config"], s.get("precision"))
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
            self.method.load_extra_state(s["extra"])
            torch.set_rng_state(s["rng"]["torch"].cpu())
            random.setstate((3, tuple(s["rng"]["python"]), None))
            if s["rng"]["cuda"]:
                torch.cuda.set_rng_state_all([r.cpu() for r in s["rng"]["cuda"]])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise DataError(f"{path}: damaged checkpoint: cannot restore the training state ({_reason(e)})") from None
        self.step, self.wall, self.history = s["step"], float(s.get("wall_seconds", 0.0)), s["history"]
        self.saved_step = self.step

    def save_samples(self, batch: dict) -> Path:
        import matplotlib.pyplot as plt

        self.method.eval()
        with torch.no_grad(), StepContext(self.device, self.dtype, {}, None, 1).autocast():
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


def hardware() -> dict:
    """A short description of the machine, for manifests."""
    info = {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True,
                              text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
