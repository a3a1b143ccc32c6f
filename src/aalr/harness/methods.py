"""Every LR method the harness compares, by name, with the literature's defaults and no tuning.

The AALR paper (Sec. 5) compares AALR with the LR-tuned step schedules published for each model and
with SGDR, CLR, Adam and hypergradient descent, "without tuning the parameters of any other adaptive
approach"; where a paper gives no setting it used PyTorch's schedulers with their defaults. This
module builds each method the same way, plus four later parameter-free optimizers (the ``peers``).

=============  ===========================  ========================================  ====================
name           optimizer                    LR schedule / tuner                       source of defaults
=============  ===========================  ========================================  ====================
aalr           SGD lr 0.1, momentum 0.9,    AALR, rollback=False, stepped per epoch   AALR paper, Alg. 1
               weight decay 5e-4                                                      and Sec. 5.1
aalr-rollback  same                         AALR, rollback=True (halving in phase 2   AALR paper + this
                                            also restores the best weights)           package
aalr-adam      Adam lr 1e-3, betas (0.9,    AALR, rollback=False                      Kingma & Ba 2015
               0.999), weight decay 0                                                 (Adam defaults)
step           SGD as above, lr from        MultiStepLR per epoch, milestones scaled  see STEP_SCHEDULES
               :func:`step_schedule`        to ``epochs`` (published fraction)
const          SGD as above, lr 0.1         none                                      --
sgdr           SGD as above, lr 0.1         CosineAnnealingWarmRestarts T_0=10        Loshchilov & Hutter
                                            epochs, T_mult=2, eta_min=0, stepped      2017 (their CIFAR
                                            per batch at the fractional epoch         runs)
clr            SGD as above (cycle_         CyclicLR triangular, base_lr 0.001,       Smith 2017, Sec. 4.1
               momentum off)                max_lr 0.006, step_size_up = 4 epochs     (CIFAR-10)
                                            of batches, stepped per batch
adam           Adam lr 1e-3, betas (0.9,    none                                      Kingma & Ba 2015
               0.999), weight decay 0
hypergrad      SGDN-HD: alpha0 1e-3,        the LR itself learns by hypergradient     Baydin et al. 2018
               beta 1e-3, momentum 0.9,     descent every batch                       (VGG/CIFAR-10 run)
               Nesterov, weight decay 5e-4
prodigy        prodigyopt.Prodigy lr 1.0,   none (README: "no scheduler or cosine")   Mishchenko &
               weight decay 0 (decoupled),                                            Defazio 2024, README
               no bias correction, no
               safeguard_warmup
dadapt         dadaptation.DAdaptSGD lr     none                                      Defazio & Mishchenko
               1.0, momentum 0.9, weight                                              2023, README
               decay 5e-4
schedulefree   schedulefree.SGDSchedule-    linear warmup over 5% of the steps        Defazio et al. 2024,
               Free lr 1.0, momentum 0.9,   (README: warmup recommended)              README
               weight decay 5e-4
dog            dog.DoG reps_rel 1e-6 (1e-4  none; no iterate averaging               Ivgi et al. 2023,
               with batch norm), lr 1.0,                                              README/docstring
               weight decay 5e-4
=============  ===========================  ========================================  ====================

The methods a practitioner reaches for today without tuning (issues 16 and 18; :data:`PRACTITIONER_METHODS`;
``quick`` runs them all; ``budget``, ``heldout``, ``fmnist``, ``fmnist-adversarial`` and ``batchsize`` those
issue 16 names). "The budget" is ``epochs * steps_per_epoch`` optimizer steps (in step mode: rounds times
steps per round); each schedule below is stepped per batch over it.

==================  ======================  =========================================  =================
name                optimizer               LR schedule / tuner                        source of defaults
==================  ======================  =========================================  =================
sgd-cosine          SGD lr 0.1, momentum    LambdaLR: linear warmup 0 -> lr over 5%    Loshchilov &
                    0.9, wd 5e-4            of the budget, cosine to 0 at its end      Hutter 2017;
                                            (transformers' get_cosine_schedule_with_   Goyal et al. 2017
                                            warmup); a list of LRs: best of a grid     (warmup)
adamw-cosine        AdamW lr 1e-3, betas    as sgd-cosine                              Loshchilov &
                    0.9/0.999, wd 0.05                                                 Hutter 2019
onecycle            SGD as sgd-cosine       torch's OneCycleLR, max_lr 0.1, its        Smith & Topin
                                            defaults: pct_start 0.3, cos, div 25,      2019; torch
                                            final_div 1e4, momentum 0.95-0.85
lr-range-onecycle   SGD as sgd-cosine       fastai's lr_find (1e-7 -> 10, 100 steps,   fastai 2
                                            at most 1/4 of the budget, stop at 4x the  (lr_find,
                                            smoothed minimum, suggestion "valley"),    valley), Smith
                                            weights and optimizer restored, then       2017
                                            OneCycleLR to it over the rest
wsd                 AdamW as adamw-cosine   LambdaLR: 5% linear warmup, constant,      Hu et al. 2024;
                                            1-sqrt decay to 0 over the last 20%        Hagele et al. 2024
greedy              SGD as sgd-cosine       GreedyLR on each epoch's training loss:    transformers'
                                            factor 0.95, patience 10, LR in            GreedyLR
                                            [lr/100, 10 lr] (= 1e-3..1.0 at 0.1)       (arXiv 2512.14527)
greedy-adamw        AdamW as adamw-cosine   as greedy: LR in [1e-5, 1e-2]              same
aalr-plus-adamw     AdamW as adamw-cosine   AALR+ as aalr-plus                         this package
schedulefree-adamw  AdamWScheduleFree lr    5% linear warmup, evaluated at the         Defazio et al.
                    2.5e-3 (its default),   averaged weights                           2024, package
                    wd 0.05                                                            defaults
==================  ======================  =========================================  =================

Choices worth knowing:

* SGD-based methods share one optimizer setting (momentum 0.9, weight decay 5e-4, no Nesterov: the
  CIFAR setting of the codes the paper cites) so that only the LR method differs between them. The
  Cutout code (ResNet-18/WRN) uses Nesterov, and He et al. use weight decay 1e-4; the step schedule
  keeps their LR milestones, not these details. ``hypergrad`` is the exception: it is SGDN-HD, the
  Nesterov variant Baydin et al. ran on VGG/CIFAR-10 (their ``run.sh`` and ``train.py``: alpha0 =
  beta = 1e-3, momentum 0.9; their weight decay 1e-4 is replaced by the shared 5e-4); their
  optimizer's ``hypergrad_lr`` default (1e-6) is not what they ran.
* SGDR: T_0=10, T_mult=2 is one of Loshchilov & Hutter's CIFAR settings; their eta_max for
  WRN-28-10 was, as I recall, 0.05 (not checked against the paper); 0.1 here, as for every SGD method.
* Adam-family optimizers (``adam``, ``aalr-adam``, ``prodigy``) take weight decay 0 unless given, as
  their packages default; SGD-family peers (``dadapt``, ``schedulefree``, ``dog``) take the SGD 5e-4.
* CLR: Smith 2017's CIFAR-10 run (Caffe "full" model, batch 100, from memory) used base_lr 0.001,
  max_lr 0.006 and stepsize 2000 iterations = 4 epochs, inside his advice of 2-10 epochs. ``lr``
  sets ``max_lr`` and ``base_lr`` keeps the 1:6 ratio unless given. Momentum stays 0.9 as in that
  paper (torch's ``cycle_momentum`` comes from the later 1cycle paper).
* dadapt: DAdaptSGD, not DAdaptAdam, because the baselines it stands next to are SGD and (from
  memory) the D-Adaptation paper's CIFAR experiments ran its SGD variant with momentum 0.9.
* schedulefree: the SGD variant, because every baseline here is SGD; lr 1.0 is the package default
  and the low end of the README's "10x-50x the classical SGD rate" (0.1). I am not sure which
  value the paper used for CIFAR-10. Evaluate in :meth:`Method.eval_mode` (averaged weights ``x``);
  with batch norm the running statistics were gathered at ``y``, which the README says to refresh
  on a few training batches before evaluating (the training loop does it: ``refresh_batchnorm``).
* dog: plain DoG (one step size for the whole model, the paper's main variant). The authors stress
  that iterate averaging matters for DoG's final accuracy; it is a separate model copy, so it is
  left out here (the comparison is of LR methods on the trained weights).
* Peer constructors get ``lr`` and ``weight_decay``; other ``**options`` go to their constructors.
* AdamW methods share one setting too: lr 1e-3 (Adam's default, torch's AdamW default), weight decay
  0.05 (:data:`aalr.harness.optimizers.ADAMW_WEIGHT_DECAY`: DeiT/Swin/ConvNeXt and timm's AdamW
  recipes; torch's default is 0.01). ``schedulefree-adamw`` keeps its package's lr 2.5e-3 and takes
  the shared 0.05, as ``schedulefree`` takes the SGD 5e-4 rather than its package's 0.
* Warmup is transformers' (the first step at LR 0, linear to the peak at step ``warmup_steps`` =
  ``round(0.05 * budget)``); schedules that end at 0 leave ``lr`` at 0.0 after the last step.
* WSD's decay: 1-sqrt, not linear, since Hagele et al. 2024 ("Scaling Laws and Compute-Optimal
  Training Beyond Fixed Training Durations") found the 1-sqrt cooldown better than linear and 20% of
  the run enough to match cosine; ``decay=linear`` and ``decay_fraction`` are options.
* lr-range-onecycle: the range test uses the loop's own first batches, so its steps come out of
  the budget (the one-cycle gets the rest) and its losses are in the first epoch's mean training
  loss; ``settings["range_test_steps"]`` and the end's ``reason`` (action ``restore_initial``) say
  how many it took. fastai's current default suggestion is ``valley`` (since fastai 2.5; the
  older "LR at the minimum / 10" is ``suggestion=minimum``). torch's OneCycleLR defaults, not
  fastai's fit_one_cycle's (pct_start 0.25, final div 1e5). The test also stops at a non-finite loss
  (fastai 2 does not; a NaN would end the harness's run).
* greedy: transformers' Trainer steps GreedyLR with the evaluation loss at each evaluation; here
  it gets the epoch's (or round's) mean training loss once per epoch (or round), since no LR here
  is chosen on the test set and a validation split would take training data. Its bounds are
  transformers' 1e-3 and 1.0 as ratios to SGD's 0.1, so that AdamW at 1e-3 can move both ways
  (with transformers' absolute 1e-3 floor it could only go up).
* spike_rollback (AALR methods, off by default): the tuner in step mode with a round of one
  epoch's steps (``every_n_steps`` = ``steps_per_epoch``), fed every step's loss; see
  :class:`aalr.harness.method_types.AALRMethod`. ``spike_skip=N`` (with it) leaves out the N batches
  that follow a spike, within the epoch (round) it fell in: the harness owns the data order.

The registry: one :class:`MethodSpec` per method in :data:`REGISTRY` (at the end of this module)
holds its name, its one-line description, its default LR and weight decay, its optimizer family,
the options it accepts, the optional package it needs, an AALR method's tuner settings, and a small
build function. Adding a method is adding one spec there (and, if the training loop must drive it
differently, a :class:`Method` subclass in :mod:`aalr.harness.method_types`).

``Method.lr`` is "the LR the next batch uses" of param group 0; for the peers it is the effective
step, see each class's docstring. Every ``Method.state_dict()`` holds plain values and tensors only
and loads with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, CyclicLR, LambdaLR, MultiStepLR, OneCycleLR

from aalr.harness.method_types import (
    AALRMethod,
    BudgetScheduleMethod,
    CyclicMethod,
    DAdaptMethod,
    DoGMethod,
    GreedyMethod,
    HypergradMethod,
    Method,
    ProdigyMethod,
    RangeTestOneCycleMethod,
    ScheduleFreeMethod,
    SGDRMethod,
    StepScheduleMethod,
)
from aalr.harness.optimizers import (
    ADAM_BETAS,
    ADAM_OPTIONS,
    ADAMW_WEIGHT_DECAY,
    HYPERGRAD_BETA,
    SGD_MOMENTUM,
    SGD_OPTIONS,
    SGDHD,
    adam,
    adamw,
    check_flag,
    check_momentum,
    nonnegative_float,
    positive_float,
    positive_int,
    sgd,
)
from aalr.harness.schedules import (
    DECAY_SHAPES,
    SUGGESTIONS,
    GreedyLR,
    LRRangeTest,
    WarmupCosine,
    WarmupStableDecay,
)

__all__ = [
    "AALR_METHODS",
    "ADAM_BETAS",
    "HYPERGRAD_BETA",
    "METHODS",
    "PEER_METHODS",
    "PRACTITIONER_METHODS",
    "REGISTRY",
    "SGDHD",
    "SGD_MOMENTUM",
    "STEP_SCHEDULES",
    "SUITE_DEFAULTS",
    "Build",
    "Method",
    "MethodSpec",
    "MissingPackageError",
    "Requirement",
    "TunerSettings",
    "build_method",
    "default_lr",
    "describe",
    "method_spec",
    "missing_packages",
    "require_installed",
    "step_schedule",
]

logger = logging.getLogger(__name__)

SGD_WEIGHT_DECAY = 5e-4
SGDR_T0_EPOCHS = 10
SGDR_T_MULT = 2
CLR_BASE_LR = 0.001
CLR_MAX_LR = 0.006
CLR_STEP_SIZE_EPOCHS = 4
SCHEDULEFREE_WARMUP_FRACTION = 0.05
DOG_REPS_REL = 1e-6
DOG_REPS_REL_BATCHNORM = 1e-4
WARMUP_FRACTION = 0.05  # of the budget: the linear warmup of the cosine and WSD schedules
WSD_DECAY_FRACTION = 0.2  # of the budget: WSD's final decay (Hagele et al. 2024: 20% matches cosine)
ONECYCLE_MAX_LR = 0.1
# torch.optim.lr_scheduler.OneCycleLR's own defaults, recorded with every run that uses it
ONECYCLE_DEFAULTS: dict[str, Any] = {
    "pct_start": 0.3,
    "anneal_strategy": "cos",
    "cycle_momentum": True,
    "base_momentum": 0.85,
    "max_momentum": 0.95,
    "div_factor": 25.0,
    "final_div_factor": 1e4,
    "three_phase": False,
}
RANGE_TEST_MAX_SHARE = 4  # the range test takes at most a quarter of the budget's steps
# transformers' GreedyLR bounds (min_lr 1e-3, max_lr 1.0) as ratios to the LR they were set beside in
# its docstring's example (SGD at 0.1), so that they mean the same for AdamW at 1e-3
GREEDY_MIN_LR_RATIO = 0.01
GREEDY_MAX_LR_RATIO = 10.0

# name prefix -> (lr, published milestones, published length, gamma, source). Milestones and length
# share a unit (epochs, or iterations for He et al.); only their ratio is used.
STEP_SCHEDULES: dict[str, tuple[float, tuple[int, ...], int, float, str]] = {
    "resnet18": (
        0.1,
        (60, 120, 160),
        200,
        0.2,
        "DeVries & Taylor 2017 (Cutout code, cited by the AALR paper)",
    ),
    "resnet20": (
        0.1,
        (32000, 48000),
        64000,
        0.1,
        "He et al. 2016, CIFAR-10: /10 at 32k and 48k of 64k iterations",
    ),
    "wrn": (0.1, (60, 120, 160), 200, 0.2, "Zagoruyko & Komodakis 2016"),
    "vgg16": (
        0.05,
        (30, 60, 90, 120, 150, 180, 210, 240, 270),
        300,
        0.5,
        "chengyangfu/pytorch-vgg-cifar10 (cited)",
    ),
    "simplenetv1": (
        0.1,
        (100, 190, 306, 390, 440),
        540,
        0.1,
        "HasanPour et al. 2016 (SimpleNet_Pytorch: milestones of its 540-epoch run; SGD, not its Adadelta)",
    ),
    "small": (0.1, (2, 3), 4, 0.1, "harness rule for small CPU models: /10 at 50% and 75%"),
}
SMALL_MODELS: tuple[str, ...] = ("mnist1d-cnn", "fmnist-cnn", "mlp")


# --------------------------------------------------------------------------------------------
# the spec of a method
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    """An optional package a method needs: the module it imports, the name pip installs, aalr's extra."""

    module: str
    package: str
    extra: str

    def installed(self) -> bool:
        """Whether the module can be imported, found without importing it (the packages are heavy)."""
        return importlib.util.find_spec(self.module) is not None


@dataclass(frozen=True)
class TunerSettings:
    """How an AALR method sets up the library's tuner (:class:`aalr.AALR`), as data.

    Attributes:
        rollback: passed to the tuner; it is what tells ``aalr`` from ``aalr-rollback``, so a run's
            options cannot change it.
        options: further keyword arguments of the tuner; a run's options replace them.
        total_epochs: whether the tuner gets ``total_epochs`` = the run's epochs (AALR+'s budget-aware
            finish); a run's options replace it too.
        rules: the tuner's ``rules``: ``"plus"`` for aalr-plus (the library's default), ``"paper"`` for
            the others, whose committed results are the paper's Algorithm 1.
    """

    rollback: bool
    options: Mapping[str, Any] = field(default_factory=dict)
    total_epochs: bool = False
    rules: str = "paper"

    def keywords(self, epochs: int) -> dict[str, Any]:
        """The tuner's keyword arguments, ``rollback`` aside, that this method sets for ``epochs``."""
        return {**({"total_epochs": epochs} if self.total_epochs else {}), **self.options}


@dataclass(frozen=True)
class MethodSpec:
    """One method of the registry: what it is, its defaults, what it needs, and how it is built.

    Attributes:
        name: what users type (``--method``, a suite's ``methods``).
        description: one line for ``aalr list``: optimizer, schedule, their defaults, the source.
        build: makes the method from a checked :class:`Build`.
        default_lr: the LR ``build_method``'s ``lr`` replaces; None where the model decides (step).
        optimizer: ``"SGD"`` or ``"Adam"`` (built by :mod:`aalr.harness.optimizers`, whose options the
            method then accepts), else the method's own: ``"SGDHD"``, a peer's ``"module.Class"``.
        weight_decay: the default weight decay: 5e-4 for the SGD family, 0 for Adam's (as their
            packages default).
        options: the method's own options, besides its optimizer family's; an AALR method also takes
            the tuner's keyword arguments, a peer its optimizer's.
        requires: the optional package it needs, if any.
        tuner: an AALR method's tuner settings; None for the others.
    """

    name: str
    description: str
    build: Callable[[Build], Method]
    default_lr: float | None
    optimizer: str
    weight_decay: float = SGD_WEIGHT_DECAY
    options: tuple[str, ...] = ()
    requires: Requirement | None = None
    tuner: TunerSettings | None = None


# The optimizer families a spec can name, and the options each takes.
_FAMILIES: dict[str, tuple[Callable[..., tuple[Optimizer, dict[str, Any]]], tuple[str, ...]]] = {
    "SGD": (sgd, SGD_OPTIONS),
    "Adam": (adam, ADAM_OPTIONS),
    "AdamW": (adamw, ADAM_OPTIONS),
}


@dataclass
class Build:
    """One ``build_method`` call, its arguments checked: what a spec's build function works from."""

    spec: MethodSpec
    model: nn.Module
    params: list[nn.Parameter]
    epochs: int
    steps_per_epoch: int
    model_name: str
    lr: float | None  # the caller's, else the spec's default_lr
    weight_decay: float  # the caller's, else the spec's
    initial_loss: float | None
    options: dict[str, Any]  # the caller's (a copy): build functions add defaults and pop what they use

    def check_options(self, *more: str) -> None:
        """An unknown option is a ValueError listing those allowed: the optimizer family's, the
        spec's and ``more``."""
        family = _FAMILIES.get(self.spec.optimizer)
        allowed = (*(family[1] if family else ()), *self.spec.options, *more)
        _check_options(self.spec.name, self.options, allowed)

    def family_optimizer(self, lr: float) -> tuple[Optimizer, dict[str, Any]]:
        """The spec's SGD or Adam at ``lr``, with this build's weight decay and options."""
        make, _ = _FAMILIES[self.spec.optimizer]
        return make(self.params, lr, self.weight_decay, self.options)

    def settings(self) -> dict[str, Any]:
        """The start of the method's ``settings``; build functions add every value they use."""
        return {"method": self.spec.name}


# --------------------------------------------------------------------------------------------
# looking methods up
# --------------------------------------------------------------------------------------------
def method_spec(name: object) -> MethodSpec:
    """The spec of method ``name``; an unknown name is a ValueError that lists the methods."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; the methods are: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def default_lr(name: str) -> float | None:
    """The value ``build_method``'s ``lr`` replaces; ``None`` for ``step`` (it depends on the model)."""
    return method_spec(name).default_lr


def describe(name: str) -> str:
    """One line for the README: the optimizer, the schedule and its defaults, and the paper."""
    return f"{name}: {method_spec(name).description}"


class MissingPackageError(ImportError, ValueError):
    """A method needs an optional package that is not installed.

    An ImportError, which it is; also a ValueError, because asking for such a method is a setting this
    installation cannot run: the harness reports it as bad input (exit code 2) before any run starts.
    """


def missing_packages(names: Iterable[str]) -> dict[str, Requirement]:
    """The methods among ``names`` whose optional package is not installed, each with what it needs.

    Names that are not methods are left out: validation reports them.
    """
    if isinstance(names, str):
        names = [names]
    missing: dict[str, Requirement] = {}
    for name in dict.fromkeys(names):
        spec = REGISTRY.get(name) if isinstance(name, str) else None
        if spec is not None and spec.requires is not None and not spec.requires.installed():
            missing[name] = spec.requires
    return missing


def require_installed(names: Iterable[str]) -> None:
    """Raise :class:`MissingPackageError` naming every method among ``names`` whose package is not
    installed, that package, and the ``pip install`` that brings it; in one line."""
    missing = missing_packages(names)
    if not missing:
        return
    by_package: dict[str, list[str]] = {}  # one package, said once: schedulefree and schedulefree-adamw
    for name, req in missing.items():
        by_package.setdefault(req.package, []).append(repr(name))

    def need(package: str, methods: list[str]) -> str:
        if len(methods) == 1:
            return f"method {methods[0]} needs the package {package!r}"
        return f"methods {', '.join(methods[:-1])} and {methods[-1]} need the package {package!r}"

    needs = ", ".join(need(package, methods) for package, methods in by_package.items())
    which = "which is" if len(by_package) == 1 else "which are"
    extras = ",".join(sorted({req.extra for req in missing.values()}))
    raise MissingPackageError(f"{needs}, {which} not installed: pip install 'aalr[{extras}]'")


# --------------------------------------------------------------------------------------------
# checks and step schedules
# --------------------------------------------------------------------------------------------
def _check_options(name: str, options: dict[str, Any], allowed: Iterable[str]) -> None:
    allowed_sorted = sorted(set(allowed))
    unknown = sorted(set(options) - set(allowed_sorted))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for method {name!r}; "
            f"allowed: {', '.join(allowed_sorted) or 'none'}"
        )


def _scaled_milestones(published: tuple[int, ...], total: int, epochs: int) -> list[int]:
    # Round half up in integers (no float error); a milestone never falls before epoch 1, and
    # milestones that land on the same epoch stay repeated so that the total decay is kept.
    return [max(1, (2 * milestone * epochs + total) // (2 * total)) for milestone in published]


def step_schedule(model_name: str, epochs: int) -> tuple[float, list[int], float]:
    """The model's published step schedule scaled to ``epochs``: ``(lr, milestones, gamma)``.

    Milestones keep their published fraction of the run (rounded half up to whole epochs). Unknown
    model names get the small-model rule (/10 at 50% and 75%) and a logged note.
    """
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    epochs = positive_int(epochs, "epochs")
    key = _step_schedule_key(model_name)
    lr, published, total, gamma, _ = STEP_SCHEDULES[key]
    return lr, _scaled_milestones(published, total, epochs), gamma


def _step_schedule_key(model_name: str) -> str:
    name = model_name.lower()
    if name.startswith("wrn"):
        return "wrn"
    if name.startswith("vgg16"):
        return "vgg16"
    if name in ("resnet18", "resnet20", "simplenetv1"):
        return name
    if name not in SMALL_MODELS:
        logger.warning(
            "no published step schedule for model %r; using the small-model rule (/10 at 50%% and 75%%)",
            model_name,
        )
    return "small"


def _constructor_options(cls: type, exclude: Iterable[str]) -> list[str]:
    skip = {"self", *exclude}
    return [p for p in inspect.signature(cls).parameters if p not in skip]


def _check_peer_option_types(name: str, cls: type, options: dict[str, Any]) -> None:
    """A peer's option must have the kind of its constructor's default: the packages check little
    themselves, so a string or NaN would otherwise fail (or train on garbage) only once training runs."""
    parameters = inspect.signature(cls).parameters
    for key, value in options.items():
        default = parameters[key].default
        if isinstance(default, bool):
            check_flag(value, f"{name} option {key}")
        elif isinstance(default, int | float):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or math.isnan(value)
                or (math.isinf(value) and not math.isinf(default))
            ):
                raise ValueError(f"{name} option {key} must be a finite number, got {value!r}")
            if default >= 0 and value < 0:
                raise ValueError(f"{name} option {key} must be >= 0, got {value!r}")


def _plain(options: dict[str, Any]) -> dict[str, Any]:
    """Options as JSON-friendly values for ``Method.settings`` (paths become strings)."""
    return {
        key: value if isinstance(value, (bool, int, float, str, list, tuple, type(None))) else str(value)
        for key, value in options.items()
    }


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


# --------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------
def build_method(
    name: str,
    model: nn.Module,
    *,
    epochs: int,
    steps_per_epoch: int,
    model_name: str,
    lr: float | None = None,
    weight_decay: float | None = None,
    initial_loss: float | None = None,
    **options: Any,
) -> Method:
    """Build method ``name`` for ``model`` with the literature's defaults (see the module docstring).

    Args:
        name: one of :data:`METHODS`.
        model: the module to train (its parameters that require grad go to the optimizer).
        epochs: the run's length (scales the step schedule, the schedule-free warmup).
        steps_per_epoch: optimizer steps per epoch (per-batch schedules count in these).
        model_name: the model's registry name (chooses the step schedule).
        lr: replaces :func:`default_lr` (for ``step`` the schedule's starting LR, for ``clr`` max_lr,
            for the peers the package's ``lr`` multiplier).
        weight_decay: replaces the method's default weight decay.
        initial_loss: the initial model's training loss, for the AALR methods (ignored by others).
        options: method-specific settings; an unknown one is a ValueError that lists those allowed.

    Raises:
        MissingPackageError: the method needs an optional package that is not installed.
    """
    spec = method_spec(name)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    epochs = positive_int(epochs, "epochs")
    steps_per_epoch = positive_int(steps_per_epoch, "steps_per_epoch")
    if not isinstance(model_name, str):
        raise TypeError(f"model_name must be a str, got {type(model_name).__name__}")
    if lr is not None:
        lr = positive_float(lr, "lr")
    if weight_decay is not None:
        weight_decay = nonnegative_float(weight_decay, "weight_decay")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no parameters that require grad; there is nothing to optimize")
    require_installed([spec.name])
    return spec.build(
        Build(
            spec=spec,
            model=model,
            params=params,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            model_name=model_name,
            lr=lr if lr is not None else spec.default_lr,
            weight_decay=weight_decay if weight_decay is not None else spec.weight_decay,
            initial_loss=initial_loss,
            options=dict(options),
        )
    )


def _given_lr(job: Build) -> float:
    # Every method but step has a default LR, so job.lr is set.
    assert job.lr is not None, f"method {job.spec.name!r} has no default LR"
    return job.lr


def _build_aalr(job: Build) -> Method:
    from aalr.tuner import AALR  # the library; imported here so the non-AALR methods never need it

    tuner = job.spec.tuner
    assert tuner is not None, f"method {job.spec.name!r} has no tuner settings"
    job.options = {**tuner.keywords(job.epochs), **job.options}
    # the harness's rounds are its epochs: the step mode's own settings are not a run's to set;
    # spike_rollback (off by default) puts the tuner in step mode with a round of one epoch's steps
    step_mode = ("every_n_steps", "total_rounds", "total_steps")
    job.check_options(
        *_constructor_options(AALR, ("model", "optimizer", "initial_loss", "rollback", "rules", *step_mode)),
        "spike_skip",
    )
    spike_rollback = check_flag(job.options.pop("spike_rollback", False), "spike_rollback")
    spike_skip = job.options.pop("spike_skip", 0)
    # no upper bound: a skip ends with the epoch (round) its spike fell in, which trained up to the spike
    if isinstance(spike_skip, bool) or not isinstance(spike_skip, int) or spike_skip < 0:
        raise ValueError(
            f"spike_skip must be an integer >= 0 (batches left out after a spike), got {spike_skip!r}"
        )
    if spike_skip and not spike_rollback:
        raise ValueError(f"spike_skip={spike_skip} needs spike_rollback=true (it acts after a spike)")
    optimizer, optimizer_settings = job.family_optimizer(_given_lr(job))
    tuner_options = dict(job.options)
    if spike_rollback:
        tuner_options.update(every_n_steps=job.steps_per_epoch, spike_rollback=True)
        if "total_epochs" in tuner_options:  # a budget of epochs is one of rounds: a round is an epoch
            tuner_options["total_rounds"] = tuner_options.pop("total_epochs")
    aalr = AALR(
        job.model,
        optimizer,
        initial_loss=job.initial_loss,
        rules=tuner.rules,
        rollback=tuner.rollback,
        **tuner_options,
    )
    settings = job.settings()
    settings.update(optimizer_settings, schedule="AALR", rollback=tuner.rollback, **_plain(job.options))
    if spike_rollback:
        settings.update(spike_rollback=True, every_n_steps=job.steps_per_epoch, spike_skip=spike_skip)
    settings["initial_loss"] = None if job.initial_loss is None else float(job.initial_loss)
    return AALRMethod(job.spec.name, optimizer, settings, aalr, spike_skip=spike_skip)


def _build_step(job: Build) -> Method:
    job.check_options()
    start_lr, milestones, gamma = step_schedule(job.model_name, job.epochs)
    optimizer, optimizer_settings = job.family_optimizer(job.lr if job.lr is not None else start_lr)
    scheduler = MultiStepLR(optimizer, milestones=milestones, gamma=gamma)
    source = STEP_SCHEDULES[_step_schedule_key(job.model_name)][4]
    settings = job.settings()
    settings.update(
        optimizer_settings, schedule="MultiStepLR", milestones=milestones, gamma=gamma, source=source
    )
    return StepScheduleMethod(job.spec.name, optimizer, settings, scheduler)


def _build_constant(job: Build) -> Method:
    job.check_options()
    optimizer, optimizer_settings = job.family_optimizer(_given_lr(job))
    settings = job.settings()
    settings.update(optimizer_settings, schedule="constant")
    return Method(job.spec.name, optimizer, settings)


def _build_sgdr(job: Build) -> Method:
    job.check_options()
    t0_epochs = positive_int(job.options.pop("t0_epochs", SGDR_T0_EPOCHS), "t0_epochs")
    t_mult = positive_int(job.options.pop("t_mult", SGDR_T_MULT), "t_mult")
    eta_min = nonnegative_float(job.options.pop("eta_min", 0.0), "eta_min")
    optimizer, optimizer_settings = job.family_optimizer(_given_lr(job))
    sgdr = CosineAnnealingWarmRestarts(optimizer, T_0=t0_epochs, T_mult=t_mult, eta_min=eta_min)
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule="CosineAnnealingWarmRestarts",
        t0_epochs=t0_epochs,
        t_mult=t_mult,
        eta_min=eta_min,
    )
    return SGDRMethod(job.spec.name, optimizer, settings, sgdr, job.steps_per_epoch)


def _build_clr(job: Build) -> Method:
    job.check_options()
    max_lr = _given_lr(job)
    base_lr = positive_float(job.options.pop("base_lr", max_lr * CLR_BASE_LR / CLR_MAX_LR), "base_lr")
    if base_lr >= max_lr:
        raise ValueError(f"clr needs base_lr < max_lr (lr), got base_lr {base_lr} and max_lr {max_lr}")
    step_size_epochs = positive_int(
        job.options.pop("step_size_epochs", CLR_STEP_SIZE_EPOCHS), "step_size_epochs"
    )
    mode = job.options.pop("mode", "triangular")
    if mode not in ("triangular", "triangular2"):
        raise ValueError(f"clr mode must be 'triangular' or 'triangular2', got {mode!r}")
    step_size_up = step_size_epochs * job.steps_per_epoch
    optimizer, optimizer_settings = job.family_optimizer(base_lr)
    cyclic = CyclicLR(
        optimizer,
        base_lr=base_lr,
        max_lr=max_lr,
        step_size_up=step_size_up,
        mode=mode,
        cycle_momentum=False,
    )
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule="CyclicLR",
        base_lr=base_lr,
        max_lr=max_lr,
        step_size_up=step_size_up,
        mode=mode,
    )
    return CyclicMethod(job.spec.name, optimizer, settings, cyclic)


def _fraction(value: object, what: str, *, zero: bool = True, one: bool = False) -> float:
    """A share of the budget: a number in [0, 1) (``zero``: 0 allowed; ``one``: 1 allowed)."""
    low, high = ("[" if zero else "("), ("]" if one else ")")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
        or value > 1
        or (value == 1 and not one)
    ):
        raise ValueError(f"{what} must be a number in {low}0, 1{high} (a share of the budget), got {value!r}")
    return float(value)


def _budget_steps(job: Build) -> int:
    """The run's budget in optimizer steps: epochs (or rounds) times their steps."""
    return job.epochs * job.steps_per_epoch


def _build_warmup_cosine(job: Build) -> Method:
    job.check_options("warmup_fraction")
    warmup_fraction = _fraction(job.options.pop("warmup_fraction", WARMUP_FRACTION), "warmup_fraction")
    total = _budget_steps(job)
    warmup = min(round(warmup_fraction * total), total - 1)
    optimizer, optimizer_settings = job.family_optimizer(_given_lr(job))
    scheduler = LambdaLR(optimizer, WarmupCosine(total, warmup))
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule="linear warmup + cosine to 0",
        total_steps=total,
        warmup_fraction=warmup_fraction,
        warmup_steps=warmup,
    )
    return BudgetScheduleMethod(job.spec.name, optimizer, settings, scheduler, total)


def _build_wsd(job: Build) -> Method:
    job.check_options("warmup_fraction", "decay_fraction", "decay")
    warmup_fraction = _fraction(job.options.pop("warmup_fraction", WARMUP_FRACTION), "warmup_fraction")
    decay_fraction = _fraction(
        job.options.pop("decay_fraction", WSD_DECAY_FRACTION), "decay_fraction", zero=False, one=True
    )
    decay = job.options.pop("decay", "1-sqrt")
    if decay not in DECAY_SHAPES:
        raise ValueError(f"wsd decay must be one of {', '.join(DECAY_SHAPES)}, got {decay!r}")
    if warmup_fraction + decay_fraction > 1:
        raise ValueError(
            f"wsd needs warmup_fraction + decay_fraction <= 1, got {warmup_fraction} + {decay_fraction}"
        )
    total = _budget_steps(job)
    decay_steps = max(1, round(decay_fraction * total))
    warmup = min(round(warmup_fraction * total), total - decay_steps)
    optimizer, optimizer_settings = job.family_optimizer(_given_lr(job))
    scheduler = LambdaLR(optimizer, WarmupStableDecay(total, warmup, decay_steps, decay))
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule=f"warmup-stable-decay ({decay})",
        total_steps=total,
        warmup_fraction=warmup_fraction,
        warmup_steps=warmup,
        decay_fraction=decay_fraction,
        decay_steps=decay_steps,
        decay=decay,
    )
    return BudgetScheduleMethod(job.spec.name, optimizer, settings, scheduler, total)


_ONECYCLE_OPTIONS = tuple(ONECYCLE_DEFAULTS)


def _onecycle_options(job: Build) -> dict[str, Any]:
    """OneCycleLR's settings from ``job.options`` (popped) over torch's defaults, each checked."""
    chosen = {key: job.options.pop(key, default) for key, default in ONECYCLE_DEFAULTS.items()}
    chosen["pct_start"] = _fraction(chosen["pct_start"], "pct_start", zero=False)
    if chosen["anneal_strategy"] not in ("cos", "linear"):
        raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {chosen['anneal_strategy']!r}")
    for key in ("cycle_momentum", "three_phase"):
        chosen[key] = check_flag(chosen[key], key)
    for key in ("base_momentum", "max_momentum"):
        chosen[key] = check_momentum(chosen[key])
    if chosen["base_momentum"] > chosen["max_momentum"]:
        raise ValueError(
            f"base_momentum ({chosen['base_momentum']}) must be at most max_momentum "
            f"({chosen['max_momentum']})"
        )
    for key in ("div_factor", "final_div_factor"):
        chosen[key] = positive_float(chosen[key], key)
    return chosen


def _build_onecycle(job: Build) -> Method:
    job.check_options(*_ONECYCLE_OPTIONS)
    onecycle = _onecycle_options(job)
    max_lr = _given_lr(job)
    total = _budget_steps(job)
    optimizer, optimizer_settings = job.family_optimizer(max_lr)
    scheduler = OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, **onecycle)
    settings = job.settings()
    settings.update(optimizer_settings, schedule="OneCycleLR", max_lr=max_lr, total_steps=total, **onecycle)
    return BudgetScheduleMethod(job.spec.name, optimizer, settings, scheduler, total)


def _build_range_onecycle(job: Build) -> Method:
    job.check_options(*_ONECYCLE_OPTIONS, "range_test_steps", "range_start_lr", "range_end_lr", "suggestion")
    if job.lr is not None:
        raise ValueError(
            f"lr-range-onecycle finds its max LR by the range test; give no lr (got {job.lr!r}); the test's "
            "bounds are the options range_start_lr and range_end_lr"
        )
    onecycle = _onecycle_options(job)
    total = _budget_steps(job)
    asked = positive_int(job.options.pop("range_test_steps", 100), "range_test_steps")
    planned = max(1, min(asked, total // RANGE_TEST_MAX_SHARE))
    suggestion = job.options.pop("suggestion", "valley")
    if suggestion not in SUGGESTIONS:
        raise ValueError(f"suggestion must be one of {', '.join(SUGGESTIONS)}, got {suggestion!r}")
    test = LRRangeTest(
        start_lr=positive_float(job.options.pop("range_start_lr", 1e-7), "range_start_lr"),
        end_lr=positive_float(job.options.pop("range_end_lr", 10.0), "range_end_lr"),
        num_it=planned,
        suggestion=suggestion,
    )
    optimizer, optimizer_settings = job.family_optimizer(test.lr)
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule="LR range test, then OneCycleLR",
        total_steps=total,
        range_test_steps_asked=asked,
        range_test_steps_planned=planned,
        range_start_lr=test.start_lr,
        range_end_lr=test.end_lr,
        suggestion=suggestion,
        **onecycle,
    )
    return RangeTestOneCycleMethod(job.spec.name, optimizer, settings, job.model, test, total, onecycle)


_GREEDY_OPTIONS = (
    "factor",
    "patience",
    "threshold",
    "threshold_mode",
    "cooldown",
    "warmup",
    "min_lr",
    "max_lr",
    "smooth",
    "window_size",
    "reset_start",
)  # not its eps (the least LR change it makes, 1e-8): Adam's eps has the name


def _build_greedy(job: Build) -> Method:
    job.check_options(*_GREEDY_OPTIONS)
    lr = _given_lr(job)
    chosen = {key: job.options.pop(key) for key in _GREEDY_OPTIONS if key in job.options}
    chosen.setdefault("min_lr", lr * GREEDY_MIN_LR_RATIO)
    chosen.setdefault("max_lr", lr * GREEDY_MAX_LR_RATIO)
    optimizer, optimizer_settings = job.family_optimizer(lr)
    greedy = GreedyLR(optimizer, **chosen)
    recorded = {key: getattr(greedy, key) for key in _GREEDY_OPTIONS if key != "reset_start"}
    settings = job.settings()
    settings.update(
        optimizer_settings,
        schedule="GreedyLR on the training loss, once per epoch",
        reset_start=greedy.reset_start_original,
        greedy_eps=greedy.eps,
        **recorded,
    )
    return GreedyMethod(job.spec.name, optimizer, settings, greedy)


def _build_hypergrad(job: Build) -> Method:
    job.check_options()
    alpha0 = _given_lr(job)
    beta = nonnegative_float(job.options.pop("hypergrad_lr", HYPERGRAD_BETA), "hypergrad_lr")
    momentum = check_momentum(job.options.pop("momentum", SGD_MOMENTUM))
    nesterov = check_flag(job.options.pop("nesterov", momentum != 0), "nesterov")
    wd = job.weight_decay
    hd = SGDHD(
        job.params, lr=alpha0, hypergrad_lr=beta, momentum=momentum, weight_decay=wd, nesterov=nesterov
    )
    settings = job.settings()
    settings.update(
        optimizer="SGDHD",
        lr=alpha0,
        hypergrad_lr=beta,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=wd,
        schedule="hypergradient",
    )
    return HypergradMethod(job.spec.name, hd, settings)


def _build_peer(job: Build, method_cls: type[Method], *, schedule: str, **recorded: Any) -> Method:
    """A peer: the spec's package optimizer at the ``lr`` multiplier, with ``job.options`` (its own
    defaults already added) as constructor arguments; ``schedule`` and ``recorded`` go to settings."""
    module_name, _, class_name = job.spec.optimizer.rpartition(".")
    peer_cls = getattr(importlib.import_module(module_name), class_name)
    job.check_options(*_constructor_options(peer_cls, ("params", "lr", "weight_decay")))
    _check_peer_option_types(job.spec.name, peer_cls, job.options)
    multiplier = _given_lr(job)
    optimizer = peer_cls(job.params, lr=multiplier, weight_decay=job.weight_decay, **job.options)
    settings = job.settings()
    settings.update(
        optimizer=job.spec.optimizer,
        lr=multiplier,
        weight_decay=job.weight_decay,
        schedule=schedule,
        **recorded,
        **_plain(job.options),
    )
    return method_cls(job.spec.name, optimizer, settings)


def _build_prodigy(job: Build) -> Method:
    return _build_peer(job, ProdigyMethod, schedule="constant")


def _build_dadapt(job: Build) -> Method:
    job.options.setdefault("momentum", SGD_MOMENTUM)
    return _build_peer(job, DAdaptMethod, schedule="constant")


def _build_schedulefree(job: Build) -> Method:
    job.options.setdefault(
        "warmup_steps", round(SCHEDULEFREE_WARMUP_FRACTION * job.epochs * job.steps_per_epoch)
    )
    if job.spec.optimizer == "schedulefree.SGDScheduleFree":
        job.options.setdefault("momentum", SGD_MOMENTUM)
    method = _build_peer(job, ScheduleFreeMethod, schedule="warmup only")
    method.optimizer.train()  # type: ignore[attr-defined]  # built in train mode: see ScheduleFreeMethod
    return method


def _build_dog(job: Build) -> Method:
    # the authors' rule: reps_rel 1e-6, or 1e-4 when the model uses batch normalization
    reps_rel = DOG_REPS_REL_BATCHNORM if _has_batchnorm(job.model) else DOG_REPS_REL
    job.options.setdefault("reps_rel", reps_rel)
    return _build_peer(job, DoGMethod, schedule="none", averaging=False)


# --------------------------------------------------------------------------------------------
# the registry
# --------------------------------------------------------------------------------------------
_SGD = "SGD (momentum 0.9, weight decay 5e-4)"
_PEERS_EXTRA = "peers"

REGISTRY: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "aalr",
            f"{_SGD} from LR 0.1; AALR sets the LR every epoch, no rollback (Algorithm 1 of "
            "'A Simple Dynamic Learning Rate Tuning Algorithm for Automated Training of DNNs', ICLR 2020 "
            "submission)",
            _build_aalr,
            default_lr=0.1,
            optimizer="SGD",
            tuner=TunerSettings(rollback=False),
        ),
        MethodSpec(
            "aalr-rollback",
            "as aalr, with rollback=True: when phase 2 halves the LR it also restores the best "
            "weights (this package's addition to the ICLR 2020 submission's Algorithm 1)",
            _build_aalr,
            default_lr=0.1,
            optimizer="SGD",
            tuner=TunerSettings(rollback=True),
        ),
        MethodSpec(
            "aalr-adam",
            "Adam (lr 1e-3, betas 0.9/0.999, no weight decay) with AALR setting its LR every epoch "
            "(AALR paper; Adam: Kingma & Ba, ICLR 2015)",
            _build_aalr,
            default_lr=1e-3,
            optimizer="Adam",
            weight_decay=0.0,
            tuner=TunerSettings(rollback=False),
        ),
        MethodSpec(
            "aalr-plus",
            "AALR+: as aalr-rollback, with phase1_failure='rollback' (a phase-1 failure restores the "
            "last stable epoch, halves the LR and goes to phase 2, instead of restarting from the initial "
            "weights) and the budget-aware finish over the run's epochs (total_epochs = --epochs; finish "
            "'cosine': at half the budget restore the best checkpoint and its LR unless the current loss is "
            "better, stop exploring, decay the LR along a cosine to zero; this package's additions to the "
            "ICLR 2020 AALR submission)",
            _build_aalr,
            default_lr=0.1,
            optimizer="SGD",
            tuner=TunerSettings(
                rollback=True, options={"phase1_failure": "rollback"}, total_epochs=True, rules="plus"
            ),
        ),
        MethodSpec(
            "step",
            f"{_SGD} with the model's published step schedule, scaled to the run: ResNet-18 and WRN 0.1, "
            "x0.2 at 30/60/80% (DeVries & Taylor 2017; Zagoruyko & Komodakis 2016), ResNet-20 0.1, x0.1 at "
            "50/75% (He et al. 2016), VGG16 0.05, x0.5 every 10% (chengyangfu/pytorch-vgg-cifar10), "
            "SimpleNetV1 0.1, x0.1 at 100/190/306/390/440 of 540 (HasanPour et al. 2016), others x0.1 at "
            "50/75%",
            _build_step,
            default_lr=None,  # the model's: see step_schedule()
            optimizer="SGD",
        ),
        MethodSpec(
            "const",
            f"{_SGD} at a constant LR 0.1",
            _build_constant,
            default_lr=0.1,
            optimizer="SGD",
        ),
        MethodSpec(
            "sgdr",
            f"{_SGD}, cosine annealing with warm restarts from 0.1, T_0 10 epochs, T_mult 2, "
            "stepped per batch (Loshchilov & Hutter, ICLR 2017)",
            _build_sgdr,
            default_lr=0.1,
            optimizer="SGD",
            options=("t0_epochs", "t_mult", "eta_min"),
        ),
        MethodSpec(
            "clr",
            f"{_SGD}, triangular cyclical LR 0.001-0.006, half cycle 4 epochs, stepped per batch "
            "(Smith, WACV 2017)",
            _build_clr,
            default_lr=CLR_MAX_LR,
            optimizer="SGD",
            options=("base_lr", "step_size_epochs", "mode"),
        ),
        MethodSpec(
            "adam",
            "Adam, lr 1e-3, betas 0.9/0.999, no weight decay, constant (Kingma & Ba, ICLR 2015)",
            _build_constant,
            default_lr=1e-3,
            optimizer="Adam",
            weight_decay=0.0,
        ),
        MethodSpec(
            "hypergrad",
            "SGDN-HD: Nesterov SGD (momentum 0.9, weight decay 5e-4) whose LR (from 1e-3) follows "
            "the hypergradient with beta 1e-3 (Baydin et al., ICLR 2018)",
            _build_hypergrad,
            default_lr=1e-3,
            optimizer="SGDHD",
            options=("hypergrad_lr", "momentum", "nesterov"),
        ),
        MethodSpec(
            "prodigy",
            "Prodigy, lr 1.0, no weight decay, no schedule (Mishchenko & Defazio, ICML 2024; pip prodigyopt)",
            _build_prodigy,
            default_lr=1.0,
            optimizer="prodigyopt.Prodigy",
            weight_decay=0.0,
            requires=Requirement("prodigyopt", "prodigyopt", _PEERS_EXTRA),
        ),
        MethodSpec(
            "dadapt",
            "D-Adapted SGD, lr 1.0, momentum 0.9, weight decay 5e-4, no schedule "
            "(Defazio & Mishchenko, ICML 2023; pip dadaptation)",
            _build_dadapt,
            default_lr=1.0,
            optimizer="dadaptation.DAdaptSGD",
            requires=Requirement("dadaptation", "dadaptation", _PEERS_EXTRA),
        ),
        MethodSpec(
            "schedulefree",
            "schedule-free SGD, lr 1.0, momentum 0.9, weight decay 5e-4, 5% linear warmup, "
            "evaluated at the averaged weights (Defazio et al., NeurIPS 2024; pip schedulefree)",
            _build_schedulefree,
            default_lr=1.0,
            optimizer="schedulefree.SGDScheduleFree",
            requires=Requirement("schedulefree", "schedulefree", _PEERS_EXTRA),
        ),
        MethodSpec(
            "dog",
            "DoG, reps_rel 1e-6 (1e-4 with batch norm), weight decay 5e-4, no iterate averaging "
            "(Ivgi, Hinder & Carmon, ICML 2023; pip dog-optimizer)",
            _build_dog,
            default_lr=1.0,
            optimizer="dog.DoG",
            requires=Requirement("dog", "dog-optimizer", _PEERS_EXTRA),
        ),
        # -- what a practitioner reaches for today without tuning (issues 16 and 18) --------------
        MethodSpec(
            "sgd-cosine",
            f"{_SGD} at 0.1, linear warmup over 5% of the budget's steps, then cosine to 0 at its end, "
            "per batch (Loshchilov & Hutter, ICLR 2017, without restarts; warmup: Goyal et al. 2017; "
            "the formula of transformers' get_cosine_schedule_with_warmup); a list of LRs: best of the grid",
            _build_warmup_cosine,
            default_lr=0.1,
            optimizer="SGD",
            options=("warmup_fraction",),
        ),
        MethodSpec(
            "adamw-cosine",
            "AdamW (lr 1e-3, betas 0.9/0.999, weight decay 0.05), 5% linear warmup, cosine to 0 over the "
            "budget, per batch (Loshchilov & Hutter, ICLR 2019; weight decay 0.05 as DeiT/ConvNeXt 2021-22); "
            "a list of LRs: best of the grid",
            _build_warmup_cosine,
            default_lr=1e-3,
            optimizer="AdamW",
            weight_decay=ADAMW_WEIGHT_DECAY,
            options=("warmup_fraction",),
        ),
        MethodSpec(
            "onecycle",
            f"{_SGD}, torch's OneCycleLR to max LR 0.1 over the budget, per batch, its defaults: 30% up "
            "from 0.1/25, cosine, down to 0.1/25/1e4, momentum cycled 0.95-0.85 (Smith & Topin 2019)",
            _build_onecycle,
            default_lr=ONECYCLE_MAX_LR,
            optimizer="SGD",
            options=_ONECYCLE_OPTIONS,
        ),
        MethodSpec(
            "lr-range-onecycle",
            f"fastai's recipe with {_SGD}: an LR range test on the first steps (1e-7 to 10 over 100 steps, "
            "at most a quarter of the budget; stops at 4x the smoothed loss's minimum; suggestion 'valley', "
            "fastai 2's default), weights and optimizer restored, then OneCycleLR to the suggested LR over "
            "the rest (Smith 2017; Howard & Gugger 2020, fastai lr_find)",
            _build_range_onecycle,
            default_lr=None,  # found by the range test
            optimizer="SGD",
            options=(*_ONECYCLE_OPTIONS, "range_test_steps", "range_start_lr", "range_end_lr", "suggestion"),
        ),
        MethodSpec(
            "wsd",
            "AdamW (lr 1e-3, weight decay 0.05), warmup-stable-decay: 5% linear warmup, constant, then "
            "1-sqrt decay to 0 over the last 20% of the budget, per batch (Hu et al. 2024, MiniCPM; "
            "Hagele et al. 2024 for the 1-sqrt shape and the 20%)",
            _build_wsd,
            default_lr=1e-3,
            optimizer="AdamW",
            weight_decay=ADAMW_WEIGHT_DECAY,
            options=("warmup_fraction", "decay_fraction", "decay"),
        ),
        MethodSpec(
            "greedy",
            f"{_SGD} from 0.1 with GreedyLR stepped on each epoch's training loss: x/0.95 after more than 10 "
            "better epochs, x0.95 after more than 10 worse, within 1e-3..1.0 (transformers' "
            "lr_scheduler_type='greedy' and its defaults; Subramanian et al. 2025, arXiv 2512.14527)",
            _build_greedy,
            default_lr=0.1,
            optimizer="SGD",
            options=_GREEDY_OPTIONS,
        ),
        MethodSpec(
            "greedy-adamw",
            "AdamW (lr 1e-3, weight decay 0.05) with GreedyLR as in greedy, its bounds at the same ratios to "
            "the LR: 1e-5..1e-2 (transformers' GreedyLR; Subramanian et al. 2025, arXiv 2512.14527)",
            _build_greedy,
            default_lr=1e-3,
            optimizer="AdamW",
            weight_decay=ADAMW_WEIGHT_DECAY,
            options=_GREEDY_OPTIONS,
        ),
        MethodSpec(
            "aalr-plus-adamw",
            "AALR+ (as aalr-plus: rollback, phase-1 rollback, budget-aware finish) over AdamW (lr 1e-3, "
            "betas 0.9/0.999, weight decay 0.05; Loshchilov & Hutter, ICLR 2019)",
            _build_aalr,
            default_lr=1e-3,
            optimizer="AdamW",
            weight_decay=ADAMW_WEIGHT_DECAY,
            tuner=TunerSettings(
                rollback=True, options={"phase1_failure": "rollback"}, total_epochs=True, rules="plus"
            ),
        ),
        MethodSpec(
            "schedulefree-adamw",
            "schedule-free AdamW, its default lr 2.5e-3, betas 0.9/0.999, weight decay 0.05, 5% linear "
            "warmup, evaluated at the averaged weights (Defazio et al., NeurIPS 2024; pip schedulefree)",
            _build_schedulefree,
            default_lr=2.5e-3,
            optimizer="schedulefree.AdamWScheduleFree",
            weight_decay=ADAMW_WEIGHT_DECAY,
            requires=Requirement("schedulefree", "schedulefree", _PEERS_EXTRA),
        ),
    )
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
# Added for issues 16 and 18: the schedules and tuners practitioners use today without tuning.
PRACTITIONER_METHODS: tuple[str, ...] = (
    "sgd-cosine",
    "adamw-cosine",
    "onecycle",
    "lr-range-onecycle",
    "wsd",
    "greedy",
    "greedy-adamw",
    "aalr-plus-adamw",
    "schedulefree-adamw",
)
# The six of them every suite that compares methods runs (issue 16); wsd, greedy-adamw, schedulefree-adamw
# are their AdamW and step-based relatives, run by quick and lm.
SUITE_DEFAULTS: tuple[str, ...] = (
    "sgd-cosine", "onecycle", "lr-range-onecycle", "adamw-cosine", "greedy", "aalr-plus-adamw",
)  # fmt: skip
AALR_METHODS: tuple[str, ...] = tuple(name for name, spec in REGISTRY.items() if spec.tuner is not None)
PEER_METHODS: tuple[str, ...] = tuple(
    name
    for name, spec in REGISTRY.items()
    if spec.requires is not None and spec.requires.extra == _PEERS_EXTRA
)
