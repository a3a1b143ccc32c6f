"""A run's settings: :class:`TrainConfig` (every setting and its default), and the checks made before
anything is loaded or written.

:func:`validate` checks each setting against what is allowed and raises :class:`RunError` naming the
value; it also builds the model (on the meta device) and the method (on a stand-in module) so that
their options fail here, and :func:`check_launch` checks the settings against a ``torchrun`` launch.
:func:`training_attack` and :func:`evaluation_attacks` turn the attack settings into the attacks. The
CLI and the suite runner call :func:`validate` before any run starts; so does :func:`aalr.harness.train.run`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aalr.harness import distributed
from aalr.harness.numerics import PRECISIONS

GRID_METHODS = ("step", "const", "sgd-cosine", "adamw-cosine")


class RunError(ValueError):
    """A bad setting or an output directory that cannot be used; the CLI exits with code 2."""


@dataclass
class TrainConfig:
    """Every setting of a run, with its default. Stored as ``config.json`` with each result."""

    dataset: str = "mnist1d"
    model: str | None = None  # None: the data set's default model
    method: str = "aalr"
    epochs: int = 30  # passes over the training data; in step mode the number of rounds (set for you)
    # step mode: train_steps optimizer steps in rounds of round_steps (both or neither). A round plays
    # the epoch's part: one decision of the method, one evaluation, one metrics line, one checkpoint;
    # the batches flow across passes over the data (a fresh shuffle each pass)
    train_steps: int | None = None
    round_steps: int | None = None
    batch_size: int = 128
    seed: int = 0
    lr: float | list[float] | None = None  # a list: a grid, chosen on a validation split (step/const)
    weight_decay: float | None = None  # None: the method's default
    val_fraction: float = 0.1  # held out of the training data to choose a grid's LR
    model_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"width": 0.5} for fmnist-cnn
    method_args: dict[str, Any] = field(default_factory=dict)  # passed to the method (optimizer, tuner)
    random_erasing: float = 0.0  # probability (the paper's section 5.5 uses 0.5)
    cutout: int = 0
    train_subset: int | None = None  # use only the first N training samples (CPU-sized suites)
    context: int | None = None  # bytes per window of a byte data set (shakespeare); None: 64
    loss_pass: str = "batches"  # "batches": mean minibatch loss; "full": an extra pass in eval mode
    adversarial: str | None = None  # None | "fgsm" | "pgd"
    epsilon: float = 8 / 255
    alpha: float | None = None
    steps: int = 1
    eval_pgd_steps: int = 10
    robust_every: int = 1  # evaluate robust accuracy every N epochs (and always at the last)
    robust_samples: int | None = 1000  # test samples used for robust accuracy (None: all)
    device: str = "auto"
    # "auto": bf16 autocast on CUDA, fp32 on the CPU; "bf16": bf16 autocast also on the CPU (weights,
    # optimizer state and the loss stay fp32), fast where the CPU has bf16 instructions (AVX512-BF16,
    # AMX) and an option, so that runs made before it keep their numbers; "fp32": never autocast
    precision: str = "auto"
    # image models in channels_last memory format: None (auto) on CUDA only; True also on the CPU, where
    # oneDNN's convolutions made the model step 1.12-1.31x faster for fmnist-cnn and 1.28x for resnet20 in
    # fp32 here (an option, so that runs made before it keep their numbers); False never
    channels_last: bool | None = None
    data_dir: str | None = None
    progress: bool = True
    suite: str | None = None
    experiment: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def step_mode(self) -> bool:
        """Whether the run counts optimizer steps (``train_steps``) rather than epochs."""
        return self.train_steps is not None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """The config of ``values``; in step mode ``epochs``, when not given, is the number of rounds
        (given, it must be that number: see :func:`check_step_mode`)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RunError(f"unknown settings {unknown}; allowed: {sorted(known)}")
        values = dict(values)
        if values.get("train_steps") is not None and values.get("epochs") is None:
            values.pop("epochs", None)
            check_step_mode(values.get("train_steps"), values.get("round_steps"), None)
            values["epochs"] = values["train_steps"] // values["round_steps"]
        return cls(**values)


# -- validation ----------------------------------------------------------------------------------
MAX_COUNT = 2**31 - 1  # torch indexes and sizes with 64-bit ints, but some kernels take 32-bit counts
MAX_SEED = 2**32 - 1
# The weights and the optimizers' state are float32 (bf16 autocast computes in bf16, stores float32):
# a coefficient beyond this overflows as torch converts it ("value cannot be converted to type float").
FLOAT32_MAX = float(torch.finfo(torch.float32).max)
# Bytes per parameter that training takes at the least: float32 weights, gradients, one optimizer state.
TRAIN_BYTES_PER_PARAMETER = 12
# Data sets whose inputs are in [0, 1], as the attacks need (MNIST-1D's are standardized floats).
IMAGE_DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100")
# Input shape and classes of each data set, so that settings can be checked before any data load.
_DATA_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "mnist1d": ((1, 40), 10),
    "digits": ((1, 8, 8), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}
BYTE_CLASSES = 256  # the classes of a byte data set (shakespeare): a window's shape is (context,)


def data_shape(config: TrainConfig) -> tuple[tuple[int, ...], int]:
    """The input shape and classes of the run's data, known before any data load."""
    from aalr.harness.data import BYTE_DATASETS
    from aalr.harness.text import DEFAULT_CONTEXT

    if config.dataset in BYTE_DATASETS:
        return (config.context or DEFAULT_CONTEXT,), BYTE_CLASSES
    return _DATA_SHAPES[config.dataset]


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RunError(f"{name} must be an integer >= 1, got {value!r}")
    if value > MAX_COUNT:
        raise RunError(f"{name} must be an integer in [1, {MAX_COUNT}], got {value!r}")


def check_step_mode(train_steps: object, round_steps: object, epochs: object) -> None:
    """Step mode's settings: ``train_steps`` and ``round_steps`` both or neither, integers >= 1, the
    budget a whole number of rounds, and ``epochs`` (when given) that number of rounds."""
    if train_steps is None and round_steps is None:
        return
    if train_steps is None:
        raise RunError(
            f"round_steps {round_steps!r} is for step mode: give train_steps too (the run's optimizer "
            "steps), or neither to train by epochs"
        )
    _positive_int("train_steps", train_steps)
    if round_steps is None:
        raise RunError(
            f"train_steps {train_steps} needs round_steps: the optimizer steps of one round (between two "
            "of the method's decisions, evaluations and checkpoints), e.g. 40"
        )
    _positive_int("round_steps", round_steps)
    assert isinstance(train_steps, int) and isinstance(round_steps, int)
    if round_steps > train_steps or train_steps % round_steps:
        below = train_steps - train_steps % round_steps
        nearest = f"{below} or {below + round_steps}" if below else str(round_steps)
        raise RunError(
            f"train_steps {train_steps} must be a whole number of rounds of round_steps {round_steps}; "
            f"use train_steps {nearest}, or a round_steps that divides {train_steps}"
        )
    rounds = train_steps // round_steps
    if epochs is not None and epochs != rounds:
        raise RunError(
            f"epochs {epochs!r} contradicts train_steps {train_steps} in rounds of {round_steps} "
            f"({rounds} rounds): in step mode the run's length is train_steps and epochs counts its "
            f"rounds; give epochs {rounds} or leave it out (a suite, the CLI and TrainConfig.from_dict "
            "then set it)"
        )


def _check_lr(value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise RunError(f"lr must be a finite number > 0 (or a list of them), got {value!r}")
    if value > FLOAT32_MAX:
        raise RunError(
            f"lr must be a finite number > 0 that float32 holds (at most {FLOAT32_MAX:.6g}: the weights "
            f"are float32), got {value!r}"
        )


def validate(config: TrainConfig) -> None:
    """Check every setting against what is allowed; raise :class:`RunError` naming the value."""
    from aalr.harness.data import DATASETS
    from aalr.harness.methods import METHODS
    from aalr.harness.models import MODELS

    if config.dataset not in DATASETS:
        raise RunError(f"unknown dataset {config.dataset!r}; choose from {', '.join(DATASETS)}")
    if config.model is not None and config.model not in MODELS:
        raise RunError(f"unknown model {config.model!r}; choose from {', '.join(MODELS)}")
    if config.method not in METHODS:
        raise RunError(f"unknown method {config.method!r}; choose from {', '.join(METHODS)}")
    _positive_int("epochs", config.epochs)
    check_step_mode(config.train_steps, config.round_steps, config.epochs)
    _positive_int("batch_size", config.batch_size)
    check_context(config)
    if (
        isinstance(config.seed, bool) or not isinstance(config.seed, int) or not 0 <= config.seed <= MAX_SEED
    ):  # NumPy's global generator takes seeds below 2**32 only
        raise RunError(f"seed must be an integer in [0, {MAX_SEED}], got {config.seed!r}")
    if isinstance(config.lr, list):
        if not config.lr:
            raise RunError("lr list is empty; give one or more LRs")
        for value in config.lr:
            _check_lr(value)
        if len(config.lr) > 1 and config.method not in GRID_METHODS:
            raise RunError(
                f"an LR grid ({config.lr}) is for methods {GRID_METHODS}, not {config.method!r}; give one LR"
            )
    elif config.lr is not None:
        _check_lr(config.lr)
    if config.weight_decay is not None and not (
        _is_real(config.weight_decay) and 0 <= config.weight_decay < math.inf
    ):
        raise RunError(f"weight_decay must be a finite number >= 0, got {config.weight_decay!r}")
    if config.weight_decay is not None and config.weight_decay > FLOAT32_MAX:
        raise RunError(
            f"weight_decay must be a number >= 0 that float32 holds (at most {FLOAT32_MAX:.6g}: the "
            f"weights are float32), got {config.weight_decay!r}"
        )
    if not _is_real(config.val_fraction) or not 0 < config.val_fraction < 1:
        raise RunError(f"val_fraction must be in (0, 1), got {config.val_fraction!r}")
    if not _is_real(config.random_erasing) or not 0 <= config.random_erasing <= 1:
        raise RunError(f"random_erasing is a probability in [0, 1], got {config.random_erasing!r}")
    for name in ("model_options", "method_args"):
        options = getattr(config, name)
        if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
            raise RunError(f"{name} must be a table of name = value settings, got {options!r}")
    # The attack settings are checked even when unused: a bad value is a mistake either way.
    if not _is_real(config.epsilon) or not 0 <= config.epsilon <= 1:
        raise RunError(f"epsilon is an L-inf radius in pixel units, in [0, 1]; got {config.epsilon!r}")
    if config.alpha is not None and not (_is_real(config.alpha) and 0 < config.alpha < math.inf):
        raise RunError(f"alpha (the attack step) must be a finite number > 0, got {config.alpha!r}")
    _positive_int("steps", config.steps)
    # a square centred on the border still overlaps; no square fits a window of bytes
    max_cutout = 2 * max(data_shape(config)[0][1:], default=0)
    if (
        isinstance(config.cutout, bool)
        or not isinstance(config.cutout, int)
        or not 0 <= config.cutout <= max_cutout
    ):
        raise RunError(
            f"cutout must be an integer in [0, {max_cutout}] (pixels) for {config.dataset}, "
            f"got {config.cutout!r}"
        )
    try:
        from aalr.harness.augment import augment_for

        augment_for(config.dataset, random_erasing=config.random_erasing, cutout=config.cutout)
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from error
    if config.train_subset is not None:
        _positive_int("train_subset", config.train_subset)
    if config.channels_last is not None and not isinstance(config.channels_last, bool):
        raise RunError(f"channels_last must be true, false or null (auto), got {config.channels_last!r}")
    if config.precision not in PRECISIONS:
        raise RunError(f"precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    if config.loss_pass not in ("batches", "full"):
        raise RunError(f"loss_pass must be 'batches' or 'full', got {config.loss_pass!r}")
    if config.loss_pass == "full" and config.method_args.get("spike_rollback") is True:
        raise RunError(
            "loss_pass 'full' and spike_rollback together: with spike_rollback the tuner decides on the "
            "steps' losses, so the extra pass would be computed and never used; drop one of them"
        )
    if not isinstance(config.device, str) or not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", config.device):
        raise RunError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    if str(config.device).startswith("cuda") and not torch.cuda.is_available():
        raise RunError(
            f"device {config.device!r} asked for, but CUDA is not available here; use --device cpu"
        )
    _positive_int("robust_every", config.robust_every)
    _positive_int("eval_pgd_steps", config.eval_pgd_steps)
    if config.robust_samples is not None:
        _positive_int("robust_samples", config.robust_samples)
    if config.adversarial is not None:
        try:
            training_attack(config)
        except (TypeError, ValueError) as error:
            raise RunError(str(error)) from error
        if config.dataset not in IMAGE_DATASETS:
            raise RunError(
                f"adversarial {config.adversarial!r} needs inputs in [0, 1], an image data set "
                f"({', '.join(IMAGE_DATASETS)}); {config.dataset!r} is not one"
            )
        if config.epsilon == 0:
            raise RunError("epsilon must be > 0 with --adversarial (0 would attack nothing), got 0.0")
        try:
            evaluation_attacks(config)
        except (TypeError, ValueError) as error:
            raise RunError(str(error)) from error
    _dry_build(config)


def check_context(config: TrainConfig) -> None:
    """``context`` (bytes per window) only with a byte data set, an integer in [1, MAX_CONTEXT]; and a
    byte data set with a model over bytes, a byte model with a byte data set."""
    from aalr.harness.data import BYTE_DATASETS
    from aalr.harness.models import TOKEN_MODELS, default_model_for
    from aalr.harness.text import MAX_CONTEXT

    is_bytes = config.dataset in BYTE_DATASETS
    if config.context is not None:
        if not is_bytes:
            raise RunError(
                f"context {config.context!r} is the window of a byte data set ({', '.join(BYTE_DATASETS)}), "
                f"not of {config.dataset!r}; leave it out"
            )
        if (
            isinstance(config.context, bool)
            or not isinstance(config.context, int)
            or not 1 <= config.context <= MAX_CONTEXT
        ):
            raise RunError(
                f"context must be an integer in [1, {MAX_CONTEXT}] (bytes), got {config.context!r}"
            )
    model = config.model or default_model_for(config.dataset)
    if is_bytes != (model in TOKEN_MODELS):
        if is_bytes:
            raise RunError(
                f"data set {config.dataset!r} is windows of bytes: it needs a model over bytes "
                f"({', '.join(TOKEN_MODELS)}), not {model!r}"
            )
        raise RunError(
            f"model {model!r} reads windows of bytes: it needs a byte data set ({', '.join(BYTE_DATASETS)}), "
            f"not {config.dataset!r}"
        )


def _is_real(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and not math.isnan(value)


def _dry_build(config: TrainConfig) -> None:
    """Build the model (on the meta device: no memory) and the method (on a stand-in module) to check
    their options before any file is touched."""
    from aalr.harness.methods import build_method
    from aalr.harness.models import build_model, default_model_for

    shape, classes = data_shape(config)
    model_name = config.model or default_model_for(config.dataset)
    first_lr = config.lr[0] if isinstance(config.lr, list) else config.lr
    try:
        with torch.device("meta"):
            model = build_model(model_name, num_classes=classes, input_shape=shape, **config.model_options)
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from error
    except RuntimeError as error:  # e.g. "Storage size calculation overflowed": no memory holds it
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        why = ": its tensors would be larger than any memory" if "overflow" in first.lower() else ""
        raise RunError(
            f"model {model_name!r} with options {config.model_options} cannot be built ({first}){why}; "
            "use other options"
        ) from None
    _check_model_fits(config, model_name, model)
    try:
        build_method(
            config.method,
            nn.Linear(1, 1),
            epochs=config.epochs,
            steps_per_epoch=config.round_steps or 1,
            model_name=model_name,
            lr=first_lr,
            weight_decay=config.weight_decay,
            initial_loss=None,
            **config.method_args,
        )
    except (TypeError, ValueError) as error:
        raise RunError(str(error)) from error


def memory_bytes(device: str) -> int | None:
    """The memory of the device a run trains on: the GPU's, or the host's (its cgroup limit where lower);
    None when it cannot be told."""
    from aalr.harness.numerics import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return int(torch.cuda.get_device_properties(resolved.index or 0).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    return min(total, int(limit)) if limit.isdigit() else int(total)


def _check_model_fits(config: TrainConfig, model_name: str, model: nn.Module) -> None:
    """A model whose weights, gradients and one optimizer state (float32) exceed the device's memory
    cannot train: say so now, not with an allocator's error once the directory is prepared."""
    parameters = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    need = parameters * TRAIN_BYTES_PER_PARAMETER
    have = memory_bytes(config.device)
    if have is not None and need > have:
        raise RunError(
            f"model {model_name!r} with options {config.model_options} has {parameters:.4g} parameters and "
            f"needs at least {need / 2**30:.4g} GiB to train ({TRAIN_BYTES_PER_PARAMETER} bytes each), "
            f"more than the {have / 2**30:.4g} GiB of memory here; use smaller options"
        )


def check_launch(config: TrainConfig) -> tuple[distributed.Launch, torch.device] | None:
    """Under torchrun: the launch and this rank's device, checked against the settings; else None.

    Reads the environment only, so a bad setting fails on every rank before any rank waits for another.
    """
    try:
        launch = distributed.launch_from_env()
        if launch is None:
            return None
        device = distributed.device_for(str(config.device), launch)
    except ValueError as error:
        raise RunError(str(error)) from error
    if config.batch_size % launch.world_size:
        raise RunError(
            f"batch_size {config.batch_size} is the global batch and must divide evenly among the "
            f"{launch.world_size} ranks (WORLD_SIZE); use a multiple of {launch.world_size}"
        )
    return launch, device


def training_attack(config: TrainConfig) -> Any:
    """The attack that makes the training examples. FGSM with an ``alpha`` is the "fast" FGSM of
    Wong et al. (2020): a uniform random start in the ball, then one step of ``alpha``."""
    from aalr.harness.attacks import AttackConfig

    random_start = True if config.adversarial == "fgsm" and config.alpha is not None else None
    return AttackConfig(
        kind=str(config.adversarial),
        epsilon=config.epsilon,
        alpha=config.alpha,
        steps=config.steps,
        random_start=random_start,
    )


def evaluation_attacks(config: TrainConfig) -> list[tuple[str, Any]]:
    """The attacks of robust evaluation (clean FGSM, and PGD with alpha epsilon / 4 unless given)."""
    from aalr.harness.attacks import AttackConfig

    return [
        ("fgsm_acc", AttackConfig(kind="fgsm", epsilon=config.epsilon)),
        (
            "pgd_acc",
            AttackConfig(
                kind="pgd",
                epsilon=config.epsilon,
                alpha=config.alpha or config.epsilon / 4,
                steps=config.eval_pgd_steps,
            ),
        ),
    ]
