"""Training throughput: the harness's loop against a conventional DataLoader loop, as a ratio.

Both loops train the same model on the same data with the same augmentation, one after the other in
this process, alternating, several repeats; the script prints images/s of each and their ratio
(medians), with the git commit. Timings on a shared machine are noisy: read the ratio, not the rates.

- ours: the data stay on the device as uint8 tensors; each batch is indexed from a shuffled order,
  becomes float there, and is augmented as a whole batch (aalr.harness.augment); on CUDA also bf16
  autocast and channels_last (what aalr.harness.train does).
- conventional: a torch DataLoader over the uint8 data with per-sample transforms (to float, the same
  augmentation applied one sample at a time), ``--workers`` worker processes (default 2), pinned memory
  and a host-to-device copy per batch on CUDA, fp32.

    .venv/bin/python benchmarks/throughput.py                       # fmnist-cnn on Fashion-MNIST, CPU
    .venv/bin/python benchmarks/throughput.py --model resnet18 --data cifar-random --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from aalr.harness.augment import Augment, augment_for
from aalr.harness.models import build_model
from aalr.harness.train import git_commit
from overhead import sync  # the benchmarks share their small helpers


def load(data: str, limit: int, random_erasing: float) -> tuple[torch.Tensor, torch.Tensor, Augment]:
    if data == "cifar-random":  # CIFAR-shaped random images: throughput does not depend on content
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (limit, 3, 32, 32), dtype=torch.uint8, generator=g)
        y = torch.randint(0, 10, (limit,), generator=g)
        return x, y, augment_for("cifar10", random_erasing=random_erasing)
    from aalr.harness.data import load_dataset

    ds = load_dataset(data)
    return ds.x_train[:limit], ds.y_train[:limit], augment_for(data, random_erasing=random_erasing)


class PerSample(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The conventional pipeline: one sample at a time, converted and augmented on the CPU."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: Augment) -> None:
        self.x, self.y, self.augment = x, y, augment

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.x[index].float().div_(255).unsqueeze(0)
        return self.augment(sample)[0], self.y[index]


def ours(
    model: torch.nn.Module,
    optimizer: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    augment: Augment,
    batch_size: int,
    device: torch.device,
    generator: torch.Generator,
) -> int:
    cuda = device.type == "cuda"
    model.train()
    for index in torch.randperm(len(x), generator=generator).to(device).split(batch_size):
        xb = x[index].float().div_(255)
        xb = augment(xb)
        if cuda:
            xb = xb.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            loss = F.cross_entropy(model(xb).float(), y[index])
        loss.backward()
        optimizer.step()
    return len(x)


def conventional(
    model: torch.nn.Module, optimizer: Any, loader: DataLoader[Any], device: torch.device
) -> int:
    model.train()
    seen = 0
    for xb, yb in loader:
        xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        optimizer.step()
        seen += len(xb)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="fmnist-cnn")
    parser.add_argument("--data", default="fashion-mnist", help="a data set name, or cifar-random")
    parser.add_argument("--samples", type=int, default=6144, help="images per timed epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--random-erasing", type=float, default=0.0, help="probability, in both loops (section 5.5 uses 0.5)"
    )
    parser.add_argument("--out", default=None, help="also write the result as a Markdown table here")
    args = parser.parse_args()
    device = torch.device(args.device)
    x, y, augment = load(args.data, args.samples, args.random_erasing)
    model = build_model(args.model, num_classes=10, input_shape=tuple(x.shape[1:]), mean=None, std=None).to(
        device
    )
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x_dev, y_dev = x.to(device), y.to(device)
    loader = DataLoader(
        PerSample(x, y, augment),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    generator = torch.Generator().manual_seed(0)
    rates: dict[str, list[float]] = {"ours": [], "conventional": []}
    ours(
        model,
        optimizer,
        x_dev[: 2 * args.batch_size],
        y_dev[: 2 * args.batch_size],
        augment,
        args.batch_size,
        device,
        generator,
    )  # warm-up
    for repeat in range(args.repeats):
        for name in ("ours", "conventional") if repeat % 2 == 0 else ("conventional", "ours"):
            sync(device)
            start = time.perf_counter()
            if name == "ours":
                seen = ours(model, optimizer, x_dev, y_dev, augment, args.batch_size, device, generator)
            else:
                seen = conventional(model, optimizer, loader, device)
            sync(device)
            rates[name].append(seen / (time.perf_counter() - start))
    ours_rate, conv_rate = statistics.median(rates["ours"]), statistics.median(rates["conventional"])
    commit = git_commit()[:7]
    lines = [
        f"throughput, commit {commit or 'unknown'}, torch {torch.__version__}, device {device}, "
        f"model {args.model}, "
        f"data {args.data}, random erasing {args.random_erasing:g}, batch {args.batch_size}, "
        f"{args.repeats} repeats, {args.workers} workers",
        "",
        "| loop | images/s (median) |",
        "| --- | --- |",
        f"| ours (on-device uint8, batched augmentation) | {ours_rate:.0f} |",
        f"| conventional (DataLoader, per-sample transforms) | {conv_rate:.0f} |",
        "",
        f"ratio ours / conventional: {ours_rate / conv_rate:.2f}",
    ]
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
