"""The training loop of one run over its epochs (or rounds), the passes that only evaluate, and the summary.

:func:`train_epochs` reads top to bottom: load the data and build the model and the method, restore
them from the checkpoint when resuming, then each epoch: shuffle (a seeded generator of our own),
augment whole batches, optionally attack, step; the epoch's training loss (sample-weighted mean of the
minibatch losses, no extra pass) goes to the method's ``end_epoch`` (AALR may restore weights there);
then test loss/accuracy (and robust accuracies for adversarial runs), a metrics line and a checkpoint
(through :mod:`aalr.harness.rundir`). It returns the summary; the caller writes it.

In step mode (``train_steps``, ``round_steps``) a *round* of ``round_steps`` optimizer steps plays the
epoch's part in all of this (the method sees ``epochs`` = rounds and ``steps_per_epoch`` =
``round_steps``), and the batches flow across passes over the data: :class:`BatchStream` starts a
fresh seeded permutation whenever a pass runs out, and its state (the generator's state where the
current pass began, and how far into it the run is) is checkpointed, so that a resumed run draws the
same batches as one never interrupted. An epoch is one whole pass of the same stream.

For a byte data set (a language model) every row also has ``test_bpb``, bits per byte on the fixed
held-out windows (``test_loss`` / ln 2), and ``test_acc`` is next-byte accuracy.

Under ``torchrun`` (``WORLD_SIZE`` > 1; see :mod:`aalr.harness.distributed`) the loop trains with
DistributedDataParallel: ``batch_size`` stays the global batch (each rank takes ``batch_size /
world_size``), each epoch's permutation is sharded across ranks, the epoch loss is averaged over all
ranks' samples, so the method (AALR) takes the same decision on every rank. Every rank evaluates the
whole test set (the ranks hold one model, so they get the same numbers, in the time rank 0 alone
would take); only rank 0 writes files and shows progress.
"""

from __future__ import annotations

import dataclasses
import logging
import math
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
from aalr.harness.config import RunError, TrainConfig, evaluation_attacks, training_attack
from aalr.harness.numerics import autocast_for, resolve_precision
from aalr.harness.rng import global_state, seed_everything, set_global_state
from aalr.harness.tensorboard import TensorBoardLog
from aalr.harness.text import bits_per_byte
from aalr.rounds import in_rounds

log = logging.getLogger("aalr.harness")

STATUS_FINISHED = rundir.STATUS_FINISHED
STATUS_DIVERGED = rundir.STATUS_DIVERGED
BN_REFRESH_BATCHES = 50  # schedule-free's README refreshes BatchNorm statistics on "a few" (its example: 50)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass
class Context:
    """What a run trains with and where it writes."""

    config: TrainConfig
    device: torch.device
    out: Path
    dataset: Any = None  # loaded before the output directory is touched; None: train_epochs loads it
    tensorboard: Path | None = None  # where to write the run's TensorBoard events, if anywhere


def load_data(config: TrainConfig) -> Any:
    """The run's data set, before anything is written: a missing or malformed file fails here."""
    from aalr.harness.data import load_dataset

    with distributed.local_main_first():  # one download or cache write per node
        return load_dataset(config.dataset, config.data_dir, context=config.context)


def training_data(config: TrainConfig, ds: Any, validation: bool = False) -> Any:
    """What the run trains on: its ``train_subset`` of ``ds``, and for a grid's validation run, the
    split whose 'test' set is held-out training data."""
    from aalr.harness.data import split_validation

    if config.train_subset is not None and config.train_subset < len(ds.x_train):
        ds = dataclasses.replace(
            ds, x_train=ds.x_train[: config.train_subset], y_train=ds.y_train[: config.train_subset]
        )
    if validation:
        try:
            _, ds = split_validation(ds, config.val_fraction, config.seed)
        except ValueError as error:
            raise RunError(f"val_fraction {config.val_fraction!r} cannot split the data: {error}") from None
    return ds


def check_trainable(config: TrainConfig, ds: Any) -> None:
    """What only the loaded data can tell, checked before anything is written: a grid's validation
    split and the size of every run's last batch (:func:`check_last_batch`)."""
    from aalr.harness.models import default_model_for

    model_name = config.model or default_model_for(config.dataset)
    check_last_batch(config, training_data(config, ds), model_name)
    if isinstance(config.lr, list) and len(config.lr) > 1:
        check_last_batch(config, training_data(config, ds, validation=True), model_name, validation=True)


def train_epochs(
    context: Context, lr: float | int | None, *, resume: bool, validation: bool = False
) -> dict[str, Any]:
    """Train ``context``'s run to its last epoch (from its checkpoint when ``resume``); its summary."""
    from aalr.harness.attacks import attack, robust_accuracy
    from aalr.harness.augment import augment_for
    from aalr.harness.methods import build_method
    from aalr.harness.models import build_model, default_model_for

    config, device, out = context.config, context.device, context.out
    seed_everything(config.seed)
    ds = training_data(
        config, context.dataset if context.dataset is not None else load_data(config), validation
    )
    model_name = config.model or default_model_for(config.dataset)
    check_last_batch(config, ds, model_name, validation=validation)
    ds = ds.to(device)
    try:
        model = build_model(
            model_name,
            num_classes=ds.num_classes,
            input_shape=ds.input_shape,
            mean=ds.mean,
            std=ds.std,
            **config.model_options,
        ).to(device)
    except RuntimeError as error:  # torch.OutOfMemoryError is one; so is the CPU allocator's refusal
        if "alloc" not in str(error).lower() and "out of memory" not in str(error).lower():
            raise
        raise RunError(
            f"model {model_name!r} with options {config.model_options} does not fit in the memory of "
            f"{device} ({rundir.short_error(error)}); use a smaller model"
        ) from None
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
    # in step mode the method's "epoch" is a round: per-batch schedules and AALR count in rounds
    steps_per_epoch = (
        config.round_steps if config.round_steps is not None else math.ceil(n_local / batch_size)
    )
    stream = BatchStream(n_train, batch_size, generator, device)
    is_bytes = ds.kind == "bytes"

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
        rows, start_epoch, wall_before, status = _restore(
            checkpoint, context, model, method, generator, device_generator, stream
        )
        initial_loss = checkpoint.get("initial_loss")
        log.info("resuming %s at epoch %d", out, start_epoch)
        if distributed.is_main():  # metrics.jsonl is the checkpoint's rows again, whatever a kill left
            rundir.write_metrics(out, rows)
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
    # every row goes to TensorBoard as it is written (flushed at once: a crash loses nothing written)
    board = TensorBoardLog(context.tensorboard) if context.tensorboard and distributed.is_main() else None
    started = time.perf_counter()
    epoch = start_epoch
    steps_done = int(checkpoint.get("steps", 0)) if checkpoint is not None else 0
    while epoch < config.epochs and status == STATUS_FINISHED:
        epoch += 1
        epoch_start = time.perf_counter()
        if distributed.active():
            distributed.seed_epoch(config.seed, epoch, device_generator)
        lr_used = method.lr
        method.train_mode()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        samples = 0  # this rank's, this epoch or round
        skipped = 0  # batches the method left out (spike_skip): drawn, not trained on
        # an epoch: a fresh pass; a round: round_steps batches, across passes
        for index in stream.take(config.round_steps):
            if method.skip_next_batch():
                skipped += 1
                continue
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
            try:
                method.optimizer.step()
            except Exception as error:
                if _step_diverged(error, loss, config, lr_used, epoch):
                    loss_sum += loss.detach().double() * len(index)  # non-finite: the epoch's loss is too
                    samples += len(index)
                    break
                raise
            # the step's loss as a float only for a method that asks (a device sync each step)
            method.after_batch(float(loss.detach()) if method.wants_step_loss else None)
            loss_sum += loss.detach().double() * len(index)
            samples += len(index)
            steps_done += 1
        # over all ranks' samples; an epoch's count is its pass's (as the committed results were made)
        train_loss = distributed.sample_mean(loss_sum, samples if config.step_mode or skipped else n_local)
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
        row: dict[str, Any] = {"epoch": epoch}
        if config.step_mode:  # "epoch" counts rounds too, so that every reader of the rows works
            row.update({"round": epoch, "step": steps_done, "data_passes": stream.passes_done()})
        row.update(
            {
                "lr": lr_used,
                "next_lr": method.lr,
                "train_loss": train_loss,
                "test_loss": test_loss,
                "test_acc": test_acc,
                "action": decision.get("action", "none"),
                # step mode: a method's "epoch" is a round, and its reason says so
                "reason": (in_rounds if config.step_mode else str)(decision.get("reason", "")),
                "numerics": computed_in,
                # CPU threads of the epoch: they change results at rounding level, which the LR's
                # doublings can turn into points (docs/results.md, the quick suite)
                "threads": torch.get_num_threads(),
            }
        )
        if is_bytes:
            row["test_bpb"] = bits_per_byte(test_loss)
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
        if skipped:
            row["skipped_batches"] = skipped
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
        if board is not None:
            board.epoch(row)
        rundir.save_checkpoint(
            out,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "method": method.state_dict(),
                "generator": generator.get_state(),
                "stream": stream.state_dict(),
                "steps": steps_done,
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
            shown = {"bpb": f"{row['test_bpb']:.4f}"} if is_bytes else {"acc": f"{test_acc:.4f}"}
            bar.set_postfix(loss=f"{train_loss:.4f}", **shown, lr=f"{method.lr:.3g}")
    if bar is not None:
        bar.close()
    if board is not None:
        board.close()
    summary = _summary(
        config, model_name, rows, status, wall_before + time.perf_counter() - started, initial_loss
    )
    # every default the method used, and what it found as it ran (e.g. lr-range-onecycle's range test
    # steps: training cost beyond the epochs)
    summary["method_settings"] = dict(method.settings)
    if config.step_mode:
        summary.update(
            train_steps=config.train_steps, round_steps=config.round_steps, rounds=len(rows), steps=steps_done
        )
    if is_bytes:
        bpbs = [r["test_bpb"] for r in rows]
        summary.update(
            final_test_bpb=bpbs[-1] if bpbs else None,
            best_test_bpb=min(bpbs) if bpbs else None,
            eval_bytes=int(ds.y_test.numel()),
        )
    return summary


def check_last_batch(config: TrainConfig, ds: Any, model_name: str, *, validation: bool = False) -> None:
    """Refuse, before training, epochs whose last batch holds one sample where the model cannot train
    on one: a BatchNorm layer that would see one value per channel (BatchNorm1d, or 1x1 feature maps)
    fails in training mode. A forward pass of one sample on the meta device (no memory, no compute)
    tells, as the real one would.

    The last batch is not dropped (every sample is trained on, every epoch, as the committed results
    were made), so the batch size and the number of training samples (``ds``'s) decide it; under
    torchrun each rank's share counts."""
    from aalr.harness.models import build_model

    world_size = distributed.world_size()
    batch_size = max(config.batch_size // world_size, 1)
    n_train = len(ds.x_train)
    n_local = distributed.shard_size(n_train, world_size)
    if n_local == 0 or (n_local % batch_size or batch_size) != 1:
        return
    try:
        with torch.device("meta"):
            model = build_model(
                model_name, num_classes=ds.num_classes, input_shape=ds.input_shape, **config.model_options
            )
            model.train()
            model(torch.zeros(1, *ds.input_shape))
    except Exception as error:
        if "more than 1 value per channel" not in str(error):
            return  # something the meta device cannot run: the real pass will tell
    else:
        return
    samples = "training samples" + (" left after the validation split" if validation else "")
    ranks = f" shared among {world_size} ranks" if world_size > 1 else ""
    raise RunError(
        f"--batch-size {config.batch_size} with {n_train} {samples}{ranks} leaves a last batch of one "
        f"sample each epoch, and model {model_name!r} cannot train on one sample (its BatchNorm would see "
        "one value per channel); change --batch-size or --train-subset so that the last batch holds 2 "
        "or more"
    )


def _step_diverged(error: Exception, loss: torch.Tensor, config: TrainConfig, lr: float, epoch: int) -> bool:
    """An optimizer step that raised: True when the loss it stepped on was not finite (the run diverged,
    and the optimizer, e.g. DoG, says so by raising: the epoch ends there and the usual rule for a
    non-finite loss applies); a RunError naming the LR when a coefficient overflowed float32 (Adam's
    bias correction divides the LR by 1 - beta1^t, 0.1 at the first step); else False (re-raise)."""
    from aalr.harness.config import FLOAT32_MAX

    if not bool(torch.isfinite(loss.detach()).item()):
        log.warning(
            "%s: the optimizer's step failed on a non-finite loss at epoch %d (%s); the run diverged",
            config.method,
            epoch,
            rundir.short_error(error),
        )
        return True
    if isinstance(error, RuntimeError) and "without overflow" in str(error):
        raise RunError(
            f"the {config.method} optimizer's step overflowed float32 at epoch {epoch} with lr {lr:g} and "
            f"weight_decay {config.weight_decay}: the LR times the optimizer's own factors (e.g. Adam's "
            f"bias correction 1 / (1 - beta1^t)) exceeds {FLOAT32_MAX:.6g}; use a smaller --lr"
        ) from None
    return False


def _restore(
    checkpoint: dict[str, Any],
    context: Context,
    model: nn.Module,
    method: Any,
    generator: torch.Generator,
    device_generator: torch.Generator,
    stream: BatchStream,
) -> tuple[list[dict[str, Any]], int, float, str]:
    """Load the checkpoint into the run's model, method, generators, batch stream and the global RNGs;
    return its rows, epoch, wall-clock seconds so far and status. A checkpoint that does not fit is a
    RunError. One without a stream (made before there was one) is at the end of an epoch's pass."""
    config, out = context.config, context.out
    try:
        model.load_state_dict(checkpoint["model"])
        method.load_state_dict(checkpoint["method"])
        generator.set_state(checkpoint["generator"])
        if "stream" in checkpoint:
            stream.load_state_dict(checkpoint["stream"])
        if "device_generator" in checkpoint and context.device.type == "cpu":
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
    return rows, start_epoch, wall_before, status


class BatchStream:
    """This rank's minibatches (index tensors) over passes of the ``n`` training samples: each pass is
    a fresh permutation drawn from ``generator`` (sharded across ranks under torchrun), split into
    batches of ``batch_size`` (per rank; the last of a pass may be smaller, never dropped).

    :meth:`take` yields the rest of the current pass (an epoch) or a number of batches, starting new
    passes as needed (a round of step mode). ``generator`` draws nothing but the permutations, so the
    state where the current pass began and the batches taken of it say where the stream is:
    :meth:`state_dict` holds them, and :meth:`load_state_dict` draws that pass's permutation again.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        self.n, self.batch_size, self.generator, self.device = n, batch_size, generator, device
        self._pass_start: torch.Tensor | None = None  # the generator's state before this pass's draw
        self._batches: list[torch.Tensor] = []
        self._position = 0  # batches of the current pass taken
        self._passes = 0  # passes begun

    def _new_pass(self) -> None:
        self._pass_start = self.generator.get_state()
        order = torch.randperm(self.n, generator=self.generator).to(self.device)
        if distributed.active():
            order = distributed.shard(order, distributed.rank(), distributed.world_size())
        self._batches = list(order.split(self.batch_size))
        self._position = 0
        self._passes += 1

    def take(self, count: int | None = None) -> Iterator[torch.Tensor]:
        """``count`` batches, across passes; None: one whole fresh pass (an epoch; one cut short by a
        divergence is not finished later)."""
        if count is None:
            self._new_pass()
            count = len(self._batches)
        for _ in range(count):
            if self._position >= len(self._batches):
                self._new_pass()
            self._position += 1
            yield self._batches[self._position - 1]

    def passes_done(self) -> float:
        """Passes over the data so far, the current one counted by the fraction of its batches taken."""
        if not self._batches:
            return 0.0
        return self._passes - 1 + self._position / len(self._batches)

    def state_dict(self) -> dict[str, Any]:
        return {
            "pass_start": torch.empty(0, dtype=torch.uint8) if self._pass_start is None else self._pass_start,
            "position": self._position,
            "passes": self._passes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._batches, self._position, self._passes = [], 0, 0
        if state["pass_start"].numel() == 0:
            return  # no pass begun
        after = self.generator.get_state()
        self.generator.set_state(state["pass_start"])
        self._new_pass()
        if not torch.equal(self.generator.get_state(), after):
            raise ValueError("the stream's pass does not lead to the checkpoint's generator state")
        self._position, self._passes = int(state["position"]), int(state["passes"])
        if not 0 <= self._position <= len(self._batches):
            raise ValueError(f"the stream is at batch {self._position} of a pass of {len(self._batches)}")


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """The module the training forward pass goes through: DDP under torchrun, else ``model`` itself.

    Everything else (attacks, evaluation, the method and its tuner, checkpoints) uses ``model``, the
    same parameters without DDP's gradient hooks.
    """
    if not distributed.active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


# -- passes that only evaluate -------------------------------------------------------------------
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
    """Mean cross-entropy and accuracy per target of ``model`` (eval mode) over all of (x, y), in the run's
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
    n = max(y.numel(), 1)  # targets: one per sample, or one per byte of a window
    return float(total_loss.item()) / n, int(correct.item()) / n


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

    For adversarial runs it is the loss on adversarial examples, the quantity AALR then watches. For a
    byte data set it is the mean loss per byte over :data:`~aalr.harness.text.EVAL_WINDOWS` training
    windows spread evenly over the text (all of them would cost hundreds of training steps).
    """
    from aalr.harness.attacks import attack
    from aalr.harness.text import EVAL_WINDOWS, evenly_spaced

    x_all, y_all = ds.x_train, ds.y_train
    if ds.kind == "bytes":
        keep = evenly_spaced(len(x_all), EVAL_WINDOWS).to(x_all.device)
        x_all, y_all = x_all[keep], y_all[keep]
    model.eval()
    total = 0.0
    for start in range(0, len(x_all), 1024):
        xb = prepare(x_all[start : start + 1024])
        yb = y_all[start : start + 1024]
        if train_attack is not None:
            xb = attack(model, xb, yb, train_attack, generator=generator)
        with torch.no_grad(), autocast_for(device, precision):
            total += float(F.cross_entropy(model(xb).float(), yb, reduction="sum").item())
    return total / y_all.numel()


# -- progress and the summary --------------------------------------------------------------------
def _progress(config: TrainConfig, start: int) -> Any:
    if not config.progress or not distributed.is_main():
        return None
    from tqdm import tqdm

    label = f"{config.dataset}/{config.model or 'default'}/{config.method}/seed{config.seed}"
    unit = "round" if config.step_mode else "epoch"
    return tqdm(total=config.epochs, initial=start, desc=label, unit=unit, leave=False)


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
        "threads": sorted({int(r["threads"]) for r in rows if "threads" in r}),  # []: made before it was kept
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
