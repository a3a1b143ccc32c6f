"""One training run: the loop, evaluation, metrics, an atomic per-epoch checkpoint, exact resume.

Read top to bottom: :func:`run` validates the settings and the output directory, resolves an LR
grid on a validation split when one is given, then :func:`_train` runs the epochs. Each epoch:
shuffle (a seeded generator of our own), augment whole batches, optionally attack, step; the
epoch's training loss (sample-weighted mean of the minibatch losses, no extra pass) goes to the
method's ``end_epoch`` (AALR may restore weights there); then test loss/accuracy (and robust
accuracies for adversarial runs), a metrics line and a checkpoint.

Files of a run (see DESIGN.md): ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` (and
``checkpoint.prev.pt``, the one before), ``summary.json`` written last: a run is finished iff
``summary.json`` exists.

Under ``torchrun`` (``WORLD_SIZE`` > 1; see :mod:`aalr.harness.distributed`) the run trains with
DistributedDataParallel: ``batch_size`` stays the global batch (each rank takes ``batch_size /
world_size``), each epoch's permutation is sharded across ranks, the epoch loss is averaged over all
ranks' samples, so the method (AALR) takes the same decision on every rank. Every rank evaluates the
whole test set (the ranks hold one model, so they get the same numbers, in the time rank 0 alone
would take); only rank 0 touches the output directory and prints.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aalr.harness import distributed, numerics, rundir
from aalr.harness.config import (
    RunError,
    TrainConfig,
    check_launch,
    evaluation_attacks,
    training_attack,
    validate,
)
from aalr.harness.numerics import autocast_for, resolve_device, resolve_precision
from aalr.harness.rng import global_state, seed_everything, set_global_state

log = logging.getLogger("aalr.harness")

STATUS_FINISHED = "finished"
STATUS_DIVERGED = "diverged"


# -- the loop ------------------------------------------------------------------------------------
@dataclass
class _Context:
    config: TrainConfig
    device: torch.device
    out: Path
    dataset: Any = None  # loaded before the output directory is touched; None: _train loads it


def _load_data(config: TrainConfig) -> Any:
    """The run's data set, before anything is written: a missing or malformed file fails here."""
    from aalr.harness.data import load_dataset

    with distributed.local_main_first():  # one download or cache write per node
        return load_dataset(config.dataset, config.data_dir)


def _batches(
    n: int, batch_size: int, generator: torch.Generator, device: torch.device
) -> Iterator[torch.Tensor]:
    """This rank's minibatches of one epoch: ``batch_size`` is per rank (the global batch / world size)."""
    order = torch.randperm(n, generator=generator).to(device)
    if distributed.active():
        order = distributed.shard(order, distributed.rank(), distributed.world_size())
    yield from order.split(batch_size)


BN_REFRESH_BATCHES = 50  # schedule-free's README refreshes BatchNorm statistics on "a few" (its example: 50)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def refresh_batchnorm(
    model: nn.Module,
    x: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int,
    batches: int = BN_REFRESH_BATCHES,
    precision: str = "auto",
) -> bool:
    """Recompute BatchNorm running statistics at the model's current weights from the first
    ``batches`` training batches, in a fixed order (no random numbers drawn), in the run's ``precision``.
    Only the BatchNorm layers run in train mode (dropout stays off). Returns False, doing nothing, without
    BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, _BATCH_NORMS) and m.track_running_stats]
    if not norms:
        return False
    was_training = model.training
    model.eval()
    for norm in norms:
        norm.train()
    with torch.no_grad(), autocast_for(device, resolve_precision(precision, device)):
        for start in range(0, min(len(x), batches * batch_size), batch_size):
            xb = prepare(x[start : start + batch_size])
            model(xb)
    model.train(was_training)
    return True


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int = 1024,
    precision: str = "auto",
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (eval mode) over all of (x, y), in the run's
    ``precision``; ``prepare`` makes a stored batch what the model takes (float, and channels_last where
    the run uses it)."""
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with torch.no_grad(), autocast_for(device, resolve_precision(precision, device)):
        for start in range(0, len(x), batch_size):
            xb = prepare(x[start : start + batch_size])
            yb = y[start : start + batch_size]
            logits = model(xb).float()
            total_loss += F.cross_entropy(logits, yb, reduction="sum").double()
            correct += (logits.argmax(1) == yb).sum()
    n = max(len(x), 1)
    return float(total_loss.item()) / n, int(correct.item()) / n


def run(
    config: TrainConfig | dict[str, Any],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Train one run into ``out`` and return its summary (also written as ``summary.json``)."""
    if isinstance(config, dict):
        config = TrainConfig.from_dict(config)
    validate(config)
    if resume and force:
        raise RunError(
            "resume and force contradict each other: --resume continues the run, --force replaces it"
        )
    if not str(out).strip():
        raise RunError("the output directory is an empty string; give a folder name")
    launch = check_launch(config)
    out = Path(out)
    if launch is not None:
        distributed.init_process_group(*launch)
    resuming, finished = _resume_state(out, config, resume=resume, force=force)
    if finished is not None:
        return finished  # a finished run costs no data load
    try:
        # loaded once for the run and its grid's validation runs; a missing or malformed file fails
        # here and the directory is put back as it was (below), even with --force
        dataset = _load_data(config)
        return _run_in(out, config, launch, dataset, resuming)
    except BaseException:
        if distributed.is_main():
            rundir.undo_failed_start(out, fresh=not resuming)
        raise
    finally:
        if distributed.is_main():
            rundir.drop_replaced(out)


def _run_in(
    out: Path,
    config: TrainConfig,
    launch: tuple[distributed.Launch, torch.device] | None,
    dataset: Any,
    resuming: bool,
) -> dict[str, Any]:
    from aalr import __version__

    saved_config = {
        **rundir.saved_settings(config),
        "version": __version__,
        "git_commit": rundir.git_commit(),
    }
    if not resuming and distributed.is_main():
        rundir.write_json(out / "config.json", saved_config)
    device = resolve_device(config.device) if launch is None else launch[1]
    context = _Context(config=config, device=device, out=out, dataset=dataset)
    grid: dict[str, float] = {}
    searched: list[dict[str, Any]] = []
    lr: float | None
    if isinstance(config.lr, list):
        grid, searched = _search_grid(context, config.lr) if len(config.lr) > 1 else ({}, [])
        # the best validation accuracy; on a tie, the first LR of the list
        lr = float(max(config.lr, key=lambda value: grid.get(f"{value:g}", 0.0)))
    else:
        lr = None if config.lr is None else float(config.lr)
    summary = _train(context, lr, resume=resuming)
    if grid:
        summary["lr_grid"] = grid
        summary["chosen_lr"] = lr
        # the LR was chosen by the grid's runs: how they computed is part of how this result was made
        made = [*searched, summary]
        summary["numerics"] = list(dict.fromkeys(way for part in made for way in part.get("numerics", [])))
        summary["numerics_unrecorded_epochs"] = sum(_unrecorded_epochs(part) for part in made)
        if len(summary["numerics"]) > 1 and distributed.is_main():
            log.warning("%s: the grid's runs and the final run computed in %s", out, summary["numerics"])
    if distributed.is_main():
        rundir.write_json(out / "summary.json", summary)
    distributed.barrier()  # when run() returns on any rank, summary.json is there
    return summary


def _resume_state(
    out: Path, config: TrainConfig, *, resume: bool, force: bool, validation: bool = False
) -> tuple[bool, dict[str, Any] | None]:
    """Rank 0 checks and prepares ``out``; every rank learns whether the run resumes and, when it has
    finished already, its summary."""

    def look() -> dict[str, Any]:
        return rundir.look_before_run(out, config, resume=resume, force=force, validation=validation)

    state = _rank0_decides(look)
    return bool(state["resuming"]), state["summary"]


def _rank0_decides(look: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``look()`` (which checks and prepares the output directory) on rank 0 only; its answer, or its
    error, on every rank. A single process just calls it."""
    if not distributed.active():
        return look()
    answer: dict[str, Any] = {}
    failure: Exception | None = None
    if distributed.is_main():
        try:
            answer = look()
        except Exception as error:  # the other ranks must hear of it, or they would wait for ever
            failure = error
            answer = {"error": str(error)}
    answer = distributed.broadcast_json(answer)
    if failure is not None:
        raise failure
    if "error" in answer:
        raise RunError(f"rank 0: {answer['error']}")
    return answer


def _search_grid(context: _Context, lrs: list[float]) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Train each LR on the training data less a validation split; score each by final validation
    accuracy. Returns the scores and the runs' summaries."""
    scores: dict[str, float] = {}
    summaries = []
    for lr in lrs:
        sub_config = dataclasses.replace(context.config, lr=lr, progress=False)
        sub_out = context.out / "grid" / f"lr{lr:g}"
        summary = run_validation(sub_config, sub_out, context.dataset)
        scores[f"{lr:g}"] = summary["final_test_acc"] if summary["status"] == STATUS_FINISHED else 0.0
        log.info("grid %s lr=%g: validation accuracy %.4f", context.config.method, lr, scores[f"{lr:g}"])
        summaries.append(summary)
    return scores, summaries


def _unrecorded_epochs(summary: dict[str, Any]) -> int:
    """Epochs of a run whose numerics were not recorded (all of them for a summary from before it was)."""
    if "numerics" not in summary:
        return int(summary.get("epochs") or 0)
    return int(summary.get("numerics_unrecorded_epochs") or 0)


def run_validation(config: TrainConfig, out: Path, dataset: Any = None) -> dict[str, Any]:
    """A run on the validation split (resumable on its own): its 'test' set is held-out training data."""

    resuming, finished = _resume_state(out, config, resume=True, force=False, validation=True)
    if finished is not None:
        return finished
    if not resuming and distributed.is_main():
        rundir.write_json(out / "config.json", rundir.saved_settings(config, validation=True))
    launch = check_launch(config)
    device = resolve_device(config.device) if launch is None else launch[1]
    context = _Context(config=config, device=device, out=out, dataset=dataset)
    summary = _train(
        context, config.lr if isinstance(config.lr, float | int) else None, resume=resuming, validation=True
    )
    if distributed.is_main():
        rundir.write_json(out / "summary.json", summary)
    return summary


def _train(
    context: _Context, lr: float | int | None, *, resume: bool, validation: bool = False
) -> dict[str, Any]:
    from aalr.harness.attacks import attack, robust_accuracy
    from aalr.harness.augment import augment_for
    from aalr.harness.data import split_validation
    from aalr.harness.methods import build_method
    from aalr.harness.models import build_model, default_model_for

    config, device, out = context.config, context.device, context.out
    seed_everything(config.seed)
    ds = context.dataset if context.dataset is not None else _load_data(config)
    if config.train_subset is not None and config.train_subset < len(ds.x_train):
        ds = dataclasses.replace(
            ds, x_train=ds.x_train[: config.train_subset], y_train=ds.y_train[: config.train_subset]
        )
    if validation:
        _, ds = split_validation(ds, config.val_fraction, config.seed)
    ds = ds.to(device)
    model_name = config.model or default_model_for(config.dataset)
    model = build_model(
        model_name,
        num_classes=ds.num_classes,
        input_shape=ds.input_shape,
        mean=ds.mean,
        std=ds.std,
        **config.model_options,
    ).to(device)
    channels_last = numerics.resolve_channels_last(config.channels_last, device, ds.input_shape)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    precision = resolve_precision(config.precision, device)
    numerics.warn_if_bf16_is_emulated(precision, device)
    # how this session computes, recorded with every epoch: a resumed run may compute otherwise
    computed_in = numerics.describe(device, precision, channels_last, distributed.world_size())
    augment = augment_for(config.dataset, random_erasing=config.random_erasing, cutout=config.cutout)
    train_attack = training_attack(config) if config.adversarial else None
    generator = torch.Generator().manual_seed(config.seed)  # data order, augmentation, attack starts
    device_generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    n_train = len(ds.x_train)
    world_size = distributed.world_size()
    batch_size = config.batch_size // world_size  # per rank; check_launch made it divide evenly
    n_local = distributed.shard_size(n_train, world_size)
    if n_local == 0:
        raise RunError(f"{n_train} training samples cannot be shared among {world_size} ranks")
    steps_per_epoch = math.ceil(n_local / batch_size)

    def layout(xb: torch.Tensor) -> torch.Tensor:
        if channels_last and xb.ndim == 4:
            return xb.contiguous(memory_format=torch.channels_last)
        return xb

    def prepare(xb: torch.Tensor) -> torch.Tensor:
        return layout(ds.as_float(xb))

    checkpoint = rundir.load_checkpoint_on_every_rank(out) if resume else None
    initial_loss = None
    if checkpoint is None:
        initial_loss = _initial_loss(model, ds, prepare, device, precision, train_attack, device_generator)
    method = build_method(
        config.method,
        model,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
        model_name=model_name,
        lr=lr,
        weight_decay=config.weight_decay,
        initial_loss=initial_loss,
        **config.method_args,
    )
    rows: list[dict[str, Any]] = []
    start_epoch = 0
    wall_before = 0.0
    status = STATUS_FINISHED
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            method.load_state_dict(checkpoint["method"])
            generator.set_state(checkpoint["generator"])
            if "device_generator" in checkpoint and device.type == "cpu":
                device_generator.set_state(checkpoint["device_generator"])
            set_global_state(checkpoint["rng"])
            rows = [dict(r) for r in checkpoint["rows"]]
            start_epoch = int(checkpoint["epoch"])
            wall_before = float(checkpoint["wall_seconds"])
            status = str(checkpoint["status"])
        except (KeyError, IndexError, RuntimeError, TypeError, ValueError) as error:
            raise RunError(
                f"the checkpoint in {str(out)!r} does not fit this run's model and method "
                f"({rundir.short_error(error)}); use --force to start the run over"
            ) from error
        if not 0 <= start_epoch <= config.epochs:
            raise RunError(f"the checkpoint in {str(out)!r} is at epoch {start_epoch} of {config.epochs}")
        initial_loss = checkpoint.get("initial_loss")
        log.info("resuming %s at epoch %d", out, start_epoch)
        before = rows[-1].get("numerics") if rows else None
        will_train = start_epoch < config.epochs and status == STATUS_FINISHED
        if will_train and before is not None and before != computed_in:  # allowed, but never unnoticed
            log.warning(
                "resuming %s at epoch %d in %s; its epochs so far were computed in %s (give the same "
                "--device, --precision, --channels-last and number of ranks to keep that)",
                out,
                start_epoch,
                computed_in,
                before,
            )
    train_model = _data_parallel(model, device)
    eval_attacks = evaluation_attacks(config) if config.adversarial else []

    def evaluation_weights() -> None:
        method.eval_mode()
        if method.refresh_batchnorm:
            refresh_batchnorm(model, ds.x_train, prepare, device, batch_size, precision=precision)

    bar = _progress(config, start_epoch)
    started = time.perf_counter()
    epoch = start_epoch
    while epoch < config.epochs and status == STATUS_FINISHED:
        epoch += 1
        epoch_start = time.perf_counter()
        if distributed.active():
            distributed.seed_epoch(config.seed, epoch, device_generator)
        lr_used = method.lr
        method.train_mode()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        for index in _batches(n_train, batch_size, generator, device):
            xb = ds.as_float(ds.x_train[index])
            yb = ds.y_train[index]
            if augment is not None:
                xb = augment(xb, generator=device_generator)
            xb = layout(xb)  # after augmenting: crop, cutout and erasing return the default layout
            if train_attack is not None:
                xb = attack(model, xb, yb, train_attack, generator=device_generator)
            method.optimizer.zero_grad(set_to_none=True)
            with autocast_for(device, precision):
                loss = F.cross_entropy(train_model(xb).float(), yb)
            loss.backward()
            method.optimizer.step()
            method.after_batch()
            loss_sum += loss.detach().double() * len(index)
        train_loss = distributed.sample_mean(loss_sum, n_local)  # over all ranks' samples
        distributed.sync_buffers(model)
        if config.loss_pass == "full":
            evaluation_weights()
            train_loss, _ = evaluate(model, ds.x_train, ds.y_train, prepare, device, precision=precision)
        decision = method.end_epoch(train_loss)
        if config.loss_pass == "full":  # BatchNorm was refreshed for the full pass; a method that refreshes
            method.eval_mode()  # it (schedule-free) does not move the weights at end_epoch
        else:
            evaluation_weights()
        test_loss, test_acc = evaluate(model, ds.x_test, ds.y_test, prepare, device, precision=precision)
        row: dict[str, Any] = {
            "epoch": epoch,
            "lr": lr_used,
            "next_lr": method.lr,
            "train_loss": train_loss,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "action": decision.get("action", "none"),
            "reason": decision.get("reason", ""),
            "numerics": computed_in,
        }
        if eval_attacks and (epoch % config.robust_every == 0 or epoch == config.epochs):
            n_eval = (
                len(ds.x_test)
                if config.robust_samples is None
                else min(config.robust_samples, len(ds.x_test))
            )
            xr, yr = prepare(ds.x_test[:n_eval]), ds.y_test[:n_eval]
            eval_generator = torch.Generator(device=device).manual_seed(config.seed + 2)
            for key, attack_config in eval_attacks:
                row[key] = robust_accuracy(model, xr, yr, attack_config, generator=eval_generator)
        method.train_mode()
        row["seconds"] = time.perf_counter() - epoch_start
        rows.append(row)
        if not math.isfinite(train_loss) and not config.method.startswith("aalr"):
            status = STATUS_DIVERGED
            log.warning(
                "%s: training loss is %s at epoch %d; the run diverged", config.method, train_loss, epoch
            )
        wall = wall_before + time.perf_counter() - started
        if not distributed.is_main():
            continue  # rank 0 alone writes the files (and has the progress bar)
        rundir.write_metrics(out, rows)
        rundir.save_checkpoint(
            out,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "method": method.state_dict(),
                "generator": generator.get_state(),
                "device_generator": device_generator.get_state() if device.type == "cpu" else torch.empty(0),
                "rng": global_state(),
                "rows": rows,
                "wall_seconds": wall,
                "status": status,
                "initial_loss": initial_loss,
            },
        )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{test_acc:.4f}", lr=f"{method.lr:.3g}")
    if bar is not None:
        bar.close()
    return _summary(
        config, model_name, rows, status, wall_before + time.perf_counter() - started, initial_loss
    )


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training forward pass goes through: DDP under torchrun, else ``model`` itself.

    Everything else (attacks, evaluation, the method and its tuner, checkpoints) uses ``model``, the
    same parameters without DDP's gradient hooks.
    """
    if not distributed.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _initial_loss(
    model: nn.Module,
    ds: Any,
    prepare: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    precision: str,
    train_attack: Any,
    generator: torch.Generator,
) -> float:
    """The training loss of the initial model: one forward pass over the training set (eval mode).

    For adversarial runs it is the loss on adversarial examples, the quantity AALR then watches.
    """
    from aalr.harness.attacks import attack

    model.eval()
    total = 0.0
    for start in range(0, len(ds.x_train), 1024):
        xb = prepare(ds.x_train[start : start + 1024])
        yb = ds.y_train[start : start + 1024]
        if train_attack is not None:
            xb = attack(model, xb, yb, train_attack, generator=generator)
        with torch.no_grad(), autocast_for(device, precision):
            total += float(F.cross_entropy(model(xb).float(), yb, reduction="sum").item())
    return total / len(ds.x_train)


def _progress(config: TrainConfig, start: int) -> Any:
    if not config.progress or not distributed.is_main():
        return None
    from tqdm import tqdm

    label = f"{config.dataset}/{config.model or 'default'}/{config.method}/seed{config.seed}"
    return tqdm(total=config.epochs, initial=start, desc=label, unit="epoch", leave=False)


def _summary(
    config: TrainConfig,
    model_name: str,
    rows: list[dict[str, Any]],
    status: str,
    wall: float,
    initial_loss: float | None,
) -> dict[str, Any]:
    accs = [r["test_acc"] for r in rows]
    peak_index = int(np.argmax(accs)) if accs else 0
    summary: dict[str, Any] = {
        "status": status,
        "method": config.method,
        "dataset": config.dataset,
        "model": model_name,
        "seed": config.seed,
        "epochs": len(rows),
        "epochs_planned": config.epochs,
        "final_test_acc": accs[-1] if accs else None,
        "peak_test_acc": accs[peak_index] if accs else None,
        "peak_epoch": rows[peak_index]["epoch"] if rows else None,
        "final_train_loss": rows[-1]["train_loss"] if rows else None,
        "initial_loss": initial_loss,
        "lr_trajectory": [r["lr"] for r in rows],
        # e.g. ["cpu bf16 channels_last"]: one entry per way the run's epochs were computed
        "numerics": list(dict.fromkeys(r["numerics"] for r in rows if "numerics" in r)),
        "numerics_unrecorded_epochs": sum(1 for r in rows if "numerics" not in r),  # from older checkpoints
        "wall_seconds": wall,
        "experiment": config.experiment,
        "suite": config.suite,
    }
    robust: dict[str, dict[str, float]] = {}
    for key, name in (("fgsm_acc", "fgsm"), ("pgd_acc", "pgd")):
        values = [(r["epoch"], r[key]) for r in rows if key in r]
        if values:
            robust[name] = {"final": values[-1][1], "peak": max(v for _, v in values)}
    if "pgd" in robust:
        robust["pgd"]["steps"] = config.eval_pgd_steps
    if robust:
        summary["robust"] = robust
    if config.adversarial:
        # the training attack, as the report's headings show it
        summary["adversarial"] = training_attack(config).to_dict()
    return summary
