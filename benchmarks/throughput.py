"""Training throughput: the harness's loop against conventional DataLoader loops, as ratios.

All loops train the same model on the same data with the same augmentation, one after the other in
this process, alternating their order, several repeats; the script prints images/s of each and the
ratios (medians), with the git commit. Timings on a shared machine are noisy: read the ratios, not the
rates.

- ours: the data stay on the device as uint8 tensors; each batch is indexed from a shuffled order,
  becomes float there, and is augmented as a whole batch (aalr.harness.augment); in the harness's
  numerics: ``--precision`` (auto: bf16 autocast on CUDA, fp32 on the CPU; bf16: also on the CPU) and
  channels_last (always on CUDA; ``--channels-last`` also on the CPU), as the harness's options of those
  names.
- bound: the model step alone, on one batch made before the clock starts, as many steps as an epoch
  (same precision and memory format as ours). No loop that feeds data can beat it.
- bound-default: the same in the conventional loops' numerics (fp32, default memory format); it runs
  when ours' numerics differ from those. bound / bound-default is what ours' numerics buy on the model
  step; bound-default / conventional is the most any data pipeline could gain over the conventional one
  on this machine in the same numerics.
- conventional, tensor: a torch DataLoader over the uint8 data with per-sample transforms (to float,
  the same augmentation applied one sample at a time), ``--workers`` worker processes (default 2),
  pinned memory and a host-to-device copy per batch on CUDA, fp32, the model in PyTorch's default
  (contiguous) memory format, as such a loop is usually written.
- conventional, PIL: the same, but each sample makes the round trip torchvision's data sets make
  (``torchvision.datasets.FashionMNIST``/``CIFAR10`` with ``transforms.ToTensor()``): a PIL image from
  the uint8 array, then back to a float tensor in [0, 1]. Written here without torchvision, which this
  project does not install.

    .venv/bin/python benchmarks/throughput.py                       # fmnist-cnn on Fashion-MNIST, CPU
    .venv/bin/python benchmarks/throughput.py --model resnet18 --data cifar-random --device cuda
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from aalr.harness.augment import Augment, augment_for
from aalr.harness.models import build_model
from aalr.harness.numerics import PRECISIONS, autocast_for, resolve_channels_last, resolve_precision
from aalr.harness.rundir import git_commit
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


class PerSamplePIL(PerSample):
    """The conventional pipeline as torchvision's data sets run it: uint8 -> PIL image -> ToTensor."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, augment: Augment) -> None:
        super().__init__(x, y, augment)
        import numpy
        from PIL import Image  # Pillow comes with matplotlib, a dependency of the harness

        self.np, self.image = numpy, Image  # imported once here, not on every sample of the timed loop

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        np = self.np
        array = self.x[index].permute(1, 2, 0).numpy()  # (H, W, C), as torchvision stores images
        image = self.image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)
        back = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).view(array.shape)
        sample = back.permute(2, 0, 1).contiguous().float().div_(255).unsqueeze(0)
        return self.augment(sample)[0], self.y[index]


def _step(model: torch.nn.Module, optimizer: Any, xb: torch.Tensor, yb: torch.Tensor, bf16: bool) -> None:
    optimizer.zero_grad(set_to_none=True)
    with autocast_for(xb.device, "bf16" if bf16 else "fp32"):
        loss = F.cross_entropy(model(xb).float(), yb)
    loss.backward()
    optimizer.step()


def ours(
    model: torch.nn.Module,
    optimizer: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    augment: Augment,
    batch_size: int,
    generator: torch.Generator,
    bf16: bool,
    channels_last: bool,
) -> int:
    model.train()
    for index in torch.randperm(len(x), generator=generator).to(x.device).split(batch_size):
        xb = augment(x[index].float().div_(255))
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        _step(model, optimizer, xb, y[index], bf16)
    return len(x)


def bound(
    model: torch.nn.Module,
    optimizer: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    bf16: bool,
    channels_last: bool,
) -> int:
    model.train()
    xb, yb = x[:batch_size].float().div_(255), y[:batch_size]
    if channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    steps = len(x) // batch_size
    for _ in range(steps):
        _step(model, optimizer, xb, yb, bf16)
    return steps * batch_size


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


LOOPS = {
    "bound": "model step alone, no data work (the ceiling)",
    "bound-default": "model step alone, fp32 and default memory format (the conventional loops' numerics)",
    "ours": "ours (on-device uint8, batched augmentation)",
    "tensor": "conventional, tensor (DataLoader, per-sample transforms)",
    "pil": "conventional, PIL (DataLoader, per-sample transforms through PIL, as torchvision)",
}

NAMES = {"tensor": "tensor", "pil": "PIL"}


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
        "--random-erasing", type=float, default=0.0, help="probability, in all loops (section 5.5 uses 0.5)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="ours and the bound, as the harness's --precision: auto (bf16 autocast on CUDA, fp32 on the "
        "CPU), fp32, or bf16 (also on the CPU); the DataLoader loops stay fp32",
    )
    parser.add_argument(
        "--channels-last",
        action="store_true",
        help="on the CPU, run ours and the bound in channels_last memory format (the harness's "
        "--channels-last; on CUDA it is always on); the DataLoader loops keep the default format",
    )
    parser.add_argument(
        "--loops",
        default=None,
        help=f"comma-separated, from {', '.join(LOOPS)} (ours always runs; default: all, bound-default "
        "only when ours runs in other numerics than fp32 and the default format); the PIL loop needs Pillow",
    )
    parser.add_argument("--out", default=None, help="also write the result as a Markdown table here")
    args = parser.parse_args()
    chosen = (
        None if args.loops is None else {n.strip() for n in args.loops.split(",") if n.strip()} | {"ours"}
    )
    if unknown := sorted((chosen or set()) - set(LOOPS)):
        parser.error(f"--loops: unknown loop(s) {unknown}; choose from {', '.join(LOOPS)}")
    for name in ("samples", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    if args.samples < args.batch_size:
        parser.error(f"--samples ({args.samples}) must be at least --batch-size ({args.batch_size})")
    x, y, augment = load(args.data, args.samples, args.random_erasing)
    device = torch.device(args.device)
    # the harness's own rules, so that ours runs as `aalr train` with the same options would
    bf16 = resolve_precision(args.precision, device) == "bf16"
    channels_last = resolve_channels_last(args.channels_last or None, device, tuple(x.shape[1:]))
    if chosen is None:  # bound-default only where ours runs in other numerics than the DataLoader loops
        chosen = {name for name in LOOPS if name != "bound-default" or bf16 or channels_last}
    loops = [name for name in LOOPS if name in chosen]
    model = build_model(args.model, num_classes=10, input_shape=tuple(x.shape[1:]), mean=None, std=None).to(
        device
    )
    # the DataLoader loops train their own copy in the default memory format (same weights at the start)
    plain = copy.deepcopy(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    plain_optimizer = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
    x_dev, y_dev = x.to(device), y.to(device)
    loaders = {
        name: DataLoader(
            dataset(x, y, augment),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        for name, dataset in (("tensor", PerSample), ("pil", PerSamplePIL))
        if name in loops
    }
    generator = torch.Generator().manual_seed(0)
    warm = 2 * args.batch_size
    ours(
        model, optimizer, x_dev[:warm], y_dev[:warm], augment, args.batch_size, generator, bf16, channels_last
    )
    bound(plain, plain_optimizer, x_dev[:warm], y_dev[:warm], args.batch_size, False, False)
    for loader in loaders.values():  # start the (persistent) workers before the clock does
        for _ in zip(range(2), loader, strict=False):
            pass
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for repeat in range(args.repeats):
        order = loops if repeat % 2 == 0 else loops[::-1]
        for name in order:
            sync(device)
            start = time.perf_counter()
            if name == "ours":
                seen = ours(
                    model, optimizer, x_dev, y_dev, augment, args.batch_size, generator, bf16, channels_last
                )
            elif name == "bound":
                seen = bound(model, optimizer, x_dev, y_dev, args.batch_size, bf16, channels_last)
            elif name == "bound-default":
                seen = bound(plain, plain_optimizer, x_dev, y_dev, args.batch_size, False, False)
            else:
                seen = conventional(plain, plain_optimizer, loaders[name], device)
            sync(device)
            rates[name].append(seen / (time.perf_counter() - start))
    rate = {name: statistics.median(values) for name, values in rates.items()}
    commit = git_commit()[:7]
    precision = "bf16 autocast for ours and the bound, fp32 for the other loops" if bf16 else "fp32"
    if channels_last:
        precision += ", channels_last for ours and the bound, contiguous for the other loops"
    lines = [
        f"throughput, commit {commit or 'unknown'}, torch {torch.__version__}, device {device}, "
        f"model {args.model}, data {args.data}, random erasing {args.random_erasing:g}, "
        f"batch {args.batch_size}, {args.samples} images an epoch, {args.repeats} repeats, "
        f"{args.workers} workers, {precision}",
        "",
        "| loop | images/s (median) |",
        "| --- | --- |",
        *(f"| {LOOPS[name]} | {rate[name]:.0f} |" for name in loops),
        "",
    ]
    conventional_loops = [name for name in ("tensor", "pil") if name in rate]
    numerics = " and ".join(["bf16"] * bf16 + ["channels_last"] * channels_last)
    unlike = f" ({numerics} against fp32 in the default format)" if numerics else ""
    for top in ("ours", "bound"):
        if top in rate and conventional_loops:
            label = "ratio ours" if top == "ours" else "ceiling bound"
            ratios = ", ".join(f"{rate[top] / rate[name]:.2f} ({NAMES[name]})" for name in conventional_loops)
            lines.append(f"{label} / conventional{unlike}: {ratios}")
    if "bound" in rate:
        lines.append(f"ours reaches {rate['ours'] / rate['bound']:.2f} of the ceiling")
    if "bound" in rate and "bound-default" in rate:
        numerics = numerics or "fp32, default format"
        gain = rate["bound"] / rate["bound-default"]
        lines.append(f"model step alone, {numerics} / fp32 in the default format: {gain:.2f}")
    if "bound-default" in rate and conventional_loops:
        ratios = ", ".join(f"{rate['bound-default'] / rate[n]:.2f} ({NAMES[n]})" for n in conventional_loops)
        lines.append(f"ceiling in fp32, default format / conventional (a data pipeline's most): {ratios}")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "a") as handle:
            handle.write("\n".join(lines) + "\n\n")


if __name__ == "__main__":
    main()
