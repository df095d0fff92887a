"""The method contract: what every method declares, and the registry the command line uses.

A *method* is an ``nn.Module`` holding its networks in ``self.nets`` (a ``ModuleDict``). The
engine (:class:`~pseudohealthy_lib.engine.Trainer`) trains any object that fulfils this
contract; nothing in the engine knows a method by name. Data flows one way::

    data (PreparedSlices) -> method (networks, losses, one training step) -> Trainer (loop, checkpoints)

=============================  ==============================================================
every method declares          what the engine does with it
=============================  ==============================================================
``name``, ``kind``             names the run; ``kind`` says how it is evaluated
``defaults`` (+ ``choices``,   typed options: ``--set use_ac=false`` is checked against the
``ranges``, ``variants``)      type of the default (bool, int, float, str) before training
``dataset(data, split)``       a torch dataset of dicts of tensors, drawn in a resumable order
``optimizers()``               dict name -> optimiser (``ctx.update(name)`` steps one)
``schedulers(optimizers)``     dict name -> LR scheduler, stepped once per training step
                               (default: CycleGAN's constant-then-linear-decay schedule)
``training_step(batch, ctx)``  one optimisation step; returns the losses to log (name -> value);
                               the names may change from step to step and stage to stage
``stages``                     optional: named stages of a staged schedule, see ``ctx.stage``
``validate(data, split)``      optional: scores on the validation split (``val_every``); the
                               best ``val_metric`` keeps its own checkpoint (``best.pt``)
``exported()``                 the networks a trained model needs at inference (the zoo's)
``example_batch(b, size)``     a batch of random tensors of the right keys (for profiling)
=============================  ==============================================================

and the method of its kind used at inference:

* :class:`Translator` (``kind = 'translator'``): ``translate(x, direction='AB')``, images
  (B, 1, H, W) in [-1, 1] to images of the same shape; ``pseudo_healthy`` is true where
  direction ``'AB'`` removes lesions;
* :class:`Segmenter` (``'segmentor'``): ``predict(x)``, lesion probabilities (B, 1, H, W);
* :class:`Classifier` (``'classifier'``): ``classify(x)``, class probabilities (B, n_classes);
* :class:`Sampler` (``'sampler'``): ``sample(n, size)``, new images (n, 1, size, size).

A method is registered with :func:`register` (the built-in ones are, in their files) so that
``python -m pseudohealthy_lib train NAME`` and saved configs find it; a method written in a
notebook can be trained without registering it: ``Trainer(cfg, out, method=MyMethod)``.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..engine import TrainConfig, linear_decay
from ..utils import DataError, OptionError

#: registered methods, by name (filled by :func:`register`)
REGISTRY: dict[str, type["Method"]] = {}


def register(cls: type["Method"]) -> type["Method"]:
    """Class decorator: make ``cls`` known by its ``name`` to the CLI, presets and saved configs."""
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register: {cls!r} is not a Method subclass")
    if cls.kind not in KINDS:
        raise TypeError(f"register: {cls.__name__}.kind is {cls.kind!r}; a registered method is one of {', '.join(KINDS)}")
    other = REGISTRY.get(cls.name)
    if other is not None and other.__qualname__ != cls.__qualname__:
        raise ValueError(f"register: the name {cls.name!r} is taken by {other.__module__}.{other.__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type["Method"]:
    """The registered method class called ``name``."""
    if name not in REGISTRY:
        raise OptionError(f"unknown method {name!r}; choose from {sorted(REGISTRY)}")
    return REGISTRY[name]


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
    """Base class of every method (see the module's table for the contract).

    Options (``cfg.options``) are checked against ``defaults``: each must have its default's type
    (see ``_check_option``), be one of ``choices[key]`` where a method lists them, and lie in
    ``ranges[key]`` = (low, high), inclusive, None for no bound. ``variants`` are named sets of
    options (``train --variant``), for methods that have them (ANT-GAN's ablation study).
    ``before`` holds the values that options had before a library change made them options or
    changed their default; a config saved by an older version of the library (``cfg.version``
    lower than ``TrainConfig.version``) is read with them, so an old run means what it meant.
    """

    name = "method"
    kind = "method"
    defaults: dict = {}
    choices: dict = {}
    ranges: dict = {}
    variants: dict = {}
    before: dict = {}                  # version -> {option: the value it had in that version}
    stages: tuple = ()                 # ((name, end as a fraction of the steps), ...)
    val_metric: str | None = None      # a key of validate()'s result; higher is better
    pseudo_healthy = False

    def trained_with(self) -> tuple[str, ...]:
        """What training saw beyond the slices and their lesion / no-lesion labels (lesion masks, a
        phantom's healthy twins, ...): an advantage a benchmark shows beside the scores. None here."""
        return ()

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        if not isinstance(cfg, TrainConfig):
            raise OptionError(f"{self.name}: expected a TrainConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self.check_options(cfg.options)
        self.opt = self.resolve_options(cfg.options, cfg.version)

    @classmethod
    def resolve_options(cls, options: dict, version: int) -> dict:
        """Every option's value for a config of library ``version`` that sets ``options``."""
        old = {}                           # the oldest change at or after that version wins
        for ver, changed in sorted(cls.before.items(), reverse=True):
            if version <= ver:
                old.update(changed)
        return {**cls.defaults, **old, **options}

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

    # -- training (the engine calls these)
    def dataset(self, data, split: str):
        """The torch dataset this method trains on, built from prepared slices ``data``."""
        raise NotImplementedError(f"{type(self).__name__} must define dataset(data, split)")

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, by name (the names :meth:`~pseudohealthy_lib.engine.StepContext.update` is called with)."""
        raise NotImplementedError(f"{type(self).__name__} must define optimizers()")

    def schedulers(self, optimizers: dict) -> dict:
        """Learning-rate schedulers, by name, stepped once per training step. Default: the
        CycleGAN schedule for every optimiser (constant, then linear decay to zero)."""
        return {k: linear_decay(o, self.cfg.steps, self.cfg.decay_from) for k, o in optimizers.items()}

    def training_step(self, batch: dict, ctx) -> dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; returns the losses to log, by name."""
        raise NotImplementedError(f"{type(self).__name__} must define training_step(batch, ctx)")

    def validate(self, data, split: str = "val") -> dict[str, float]:
        """Scores on ``split`` of ``data`` (called in eval mode, without gradients)."""
        raise NotImplementedError(f"{type(self).__name__} has no validate(); train with val_every=0")

    def samples(self, batch: dict) -> dict[str, torch.Tensor]:
        """Images to show at sample intervals (name -> (B, 1, H, W) in [-1, 1])."""
        return {}

    def example_batch(self, batch_size: int, size: int, device="cpu") -> dict[str, torch.Tensor]:
        """Random tensors with the keys and shapes of a training batch (profiling, contract tests)."""
        raise NotImplementedError(f"{type(self).__name__} must define example_batch(batch_size, size)")

    def exported(self) -> list[str]:
        """Names of the networks a trained model needs at inference (what the zoo ships)."""
        return list(self.nets)

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def update_generators(self, batch: dict, ctx, critics) -> tuple[dict, dict, torch.Tensor]:
        """The generator half of a GAN step: with the ``critics`` frozen, run ``self(batch)``, sum
        ``self.generator_losses(batch, out)``, back-propagate and update optimiser ``'G'``; then
        unfreeze the critics. Returns the outputs, the loss terms and their sum."""
        set_requires_grad(critics, False)
        with ctx.autocast():
            out = self(batch)
            terms = self.generator_losses(batch, out)
            loss_g = sum(terms.values())
        ctx.backward(loss_g)
        ctx.update("G")
        set_requires_grad(critics, True)
        return out, terms, loss_g

    def adam(self, *nets, lr: float | None = None, betas: tuple[float, float] | None = None) -> torch.optim.Adam:
        """Adam over the parameters of ``nets``; by default at the config's lr and betas."""
        params = [p for n in nets for p in n.parameters()]
        return torch.optim.Adam(params, lr=self.cfg.lr if lr is None else lr,
                                betas=betas or (self.cfg.beta1, self.cfg.beta2))


class Translator(Method):
    """An image-to-image method; ``translate`` maps (B, 1, H, W) in [-1, 1] to the same shape."""

    kind = "translator"
    #: the network that tells real healthy slices from the translator's outputs, if it has one
    critic_key: str | None = None

    def translate(self, x: torch.Tensor, direction: str = "AB") -> torch.Tensor:
        raise NotImplementedError

    def validate(self, data, split: str = "val") -> dict[str, float]:
        """A pseudo-healthy translator's scores on ``split``: every number that
        :func:`~pseudohealthy_lib.evaluate.evaluate` reports, judged by the zoo's judge of the run's
        phantom (:func:`~pseudohealthy_lib.zoo.judge_name`) when the zoo has it and it reads slices of
        this size. Among them
        ``healthiness`` (with the judge), ``identity``, ``psnr_tissue``, ``dice_max`` and, on data
        with healthy twins (the phantoms), ``psnr_lesion`` and ``ssim_lesion`` against the truth.
        The judge and what it says of the inputs are computed once per run."""
        if not self.pseudo_healthy:
            return super().validate(data, split)
        from .. import zoo
        from ..evaluate import evaluate

        box = self.__dict__.setdefault("_validation", {})        # a plain dict: the judge is not one of our nets
        if "judge" not in box:
            name = zoo.judge_name(self.cfg.lesion, self.cfg.modality)
            device = next(self.parameters()).device
            judge = zoo.load_pretrained(name, device) if name in zoo.available() else None
            box["judge"] = judge if judge is not None and judge.cfg.size == data.images.shape[-1] else None
            box["cache"] = {}
        res = evaluate(self, data, split, segmentor=box["judge"], judge_cache=box["cache"])
        return {k: float(v) for k, v in res.items()
                if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) and math.isfinite(v)}

    @property
    def critic(self) -> nn.Module | None:
        """The trained healthy-image critic, (B, 1, H, W) in [-1, 1] -> score map (B, 1, h, w), or
        None: a zoo model keeps only its ``exported()`` networks, so its critic is untrained."""
        if self.critic_key not in self.nets or getattr(self, "manifest", None) is not None:
            return None
        return self.nets[self.critic_key]

    def example_batch(self, batch_size, size, device="cpu"):
        def img():
            return torch.rand(batch_size, 1, size, size, device=device) * 2 - 1
        mask = torch.zeros(batch_size, 1, size, size, device=device)
        mask[..., size // 4: size // 2, size // 4: size // 2] = 1
        return {"A": img(), "B": img(), "A_mask": mask}


class Segmenter(Method):
    """A lesion segmentation method; ``predict`` gives lesion probabilities (B, 1, H, W)."""

    kind = "segmentor"

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def example_batch(self, batch_size, size, device="cpu"):
        mask = torch.zeros(batch_size, 1, size, size, device=device)
        mask[: (batch_size + 1) // 2, :, size // 4: size // 2, size // 4: size // 2] = 1
        return {"image": torch.rand(batch_size, 1, size, size, device=device) * 2 - 1, "mask": mask,
                "label": mask.flatten(1).amax(1).long()}


class Classifier(Method):
    """An image classifier; ``classify`` gives class probabilities (B, n_classes)."""

    kind = "classifier"

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    example_batch = Segmenter.example_batch


class Sampler(Method):
    """A generative model of images; ``sample(n, size)`` draws n images (n, 1, size, size)."""

    kind = "sampler"

    def sample(self, n: int, size: int) -> torch.Tensor:
        raise NotImplementedError


KINDS = {"translator": Translator, "segmentor": Segmenter, "classifier": Classifier, "sampler": Sampler}


def from_config(config: dict, source: str | Path) -> Method:
    """The registered method a saved ``config`` (a checkpoint's or a manifest's) describes,
    untrained; a :class:`~pseudohealthy_lib.utils.DataError` naming ``source`` if the config is not one
    this library can build."""
    try:
        if not isinstance(config, dict):
            raise OptionError(f"config is a {type(config).__name__}, not a dict")
        return get_method(config.get("method"))(TrainConfig.from_dict(config))
    except OptionError as e:
        raise DataError(f"{source}: its config cannot be used: {e}") from None
    except TypeError as e:              # a missing or unexpected field of TrainConfig
        raise DataError(f"{source}: its config cannot be used ({e})") from None


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
