"""``mean_loss``: the number the tuner wants as ``initial_loss``, for a model and a data loader."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


def mean_loss(
    model: nn.Module,
    loader: Iterable[Any],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
    device: torch.device | str | None = None,
) -> float:
    """The mean of ``loss_fn`` over every sample of ``loader``, without gradients, in eval mode.

    Each batch is ``(inputs, targets, ...)`` (a tuple or list; further items are ignored) and
    ``loss_fn(model(inputs), targets)`` is the batch's mean loss, weighted by the batch's size
    (``len(targets)``), so a short last batch counts for what it holds. The model's train/eval mode
    is restored afterwards. ``device``: where to move the batches (default: the model's first
    parameter's device, or the CPU).

    Under ``torch.distributed`` give each rank's own value to :class:`aalr.AALR`: it averages the
    initial loss over ranks itself.

    Example::

        tuner = aalr.AALR(model, optimizer, initial_loss=aalr.mean_loss(model, train_loader))
    """
    if device is None:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        with torch.no_grad():
            for index, batch in enumerate(loader):
                if not isinstance(batch, tuple | list) or len(batch) < 2:
                    raise TypeError(
                        f"mean_loss: batch {index} must be a tuple or list (inputs, targets, ...), "
                        f"got {type(batch).__name__}"
                    )
                inputs, targets = batch[0].to(device), batch[1].to(device)
                if targets.ndim == 0:
                    raise TypeError(
                        f"mean_loss: batch {index}'s targets are one number, not a batch: give mean_loss a "
                        "DataLoader (batches of samples), not a Dataset"
                    )
                size = len(targets)
                total += float(loss_fn(model(inputs), targets)) * size
                count += size
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("mean_loss: the loader gave no samples")
    return total / count
