"""The tuner's overhead: per-epoch wall time of a plain loop and of the same loop with AALR.

Both loops run alternately in this one process (plain, tuned, plain, tuned, ...), several repeats,
and the script prints the ratio of their median epoch times, never a bare time as a verdict
(timings on a shared machine are noisy). The tuned loop feeds the tuner the real epoch loss; with
``phase1_patience=1`` it reaches phase 2 at once, where an improving loss takes a checkpoint every
two epochs: the most frequent snapshotting the algorithm does.

Two models: the MNIST-1D CNN on MNIST-1D, and a ~8.4M-parameter MLP on random data, where snapshot
copies dominate the tuner's cost; for it the script also reports one snapshot's time and bytes next
to the model's.

    .venv/bin/python benchmarks/overhead.py [--repeats 5] [--epochs 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aalr import AALR
from aalr.harness.rundir import git_commit
from aalr.snapshot import cpu_copy, state_nbytes


def mnist1d_task() -> tuple[Callable[[], nn.Module], torch.Tensor, torch.Tensor, int]:
    from aalr.harness.data import load_dataset
    from aalr.harness.models import build_model

    ds = load_dataset("mnist1d")

    def make() -> nn.Module:
        return build_model(
            "mnist1d-cnn", num_classes=10, input_shape=ds.input_shape, mean=ds.mean, std=ds.std
        )

    return make, ds.x_train, ds.y_train, 128


def big_mlp_task() -> tuple[Callable[[], nn.Module], torch.Tensor, torch.Tensor, int]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 1024, generator=g)
    y = torch.randint(0, 10, (2048,), generator=g)

    def make() -> nn.Module:  # 1024*2048 + 2048*2048 + 2048*1024 + ... ~ 10.5M parameters
        return nn.Sequential(
            nn.Linear(1024, 2048),
            nn.ReLU(),
            nn.Linear(2048, 2048),
            nn.ReLU(),
            nn.Linear(2048, 1024),
            nn.ReLU(),
            nn.Linear(1024, 10),
        )

    return make, x, y, 256


def resnet18_task() -> tuple[Callable[[], nn.Module], torch.Tensor, torch.Tensor, int]:
    """ResNet-18 on CIFAR-shaped random data (for the GPU check): 11M parameters, BN buffers."""
    from aalr.harness.models import build_model

    g = torch.Generator().manual_seed(0)
    x = torch.rand(4096, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (4096,), generator=g)

    def make() -> nn.Module:
        return build_model("resnet18", num_classes=10, input_shape=(3, 32, 32))

    return make, x, y, 256


TASKS = {
    "mnist1d-cnn": ("MNIST-1D CNN", mnist1d_task),
    "mlp-10m": ("8.4M-parameter MLP", big_mlp_task),
    "resnet18": ("ResNet-18, CIFAR-shaped random data", resnet18_task),
}


def epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    model.train()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for index in torch.randperm(len(x), generator=generator).to(x.device).split(batch_size):
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x[index]), y[index])
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(index)
    return float(total.item()) / len(x)


def measure(
    name: str,
    task: Callable[[], tuple[Callable[[], nn.Module], torch.Tensor, torch.Tensor, int]],
    repeats: int,
    epochs: int,
    device: torch.device,
) -> None:
    make_cpu, x, y, batch_size = task()
    x, y = x.to(device), y.to(device)

    def make() -> nn.Module:
        return make_cpu().to(device)

    plain_times: list[float] = []
    tuned_times: list[float] = []
    tuner_only: list[float] = []
    for repeat in range(repeats):
        for tuned in (False, True) if repeat % 2 == 0 else (True, False):
            torch.manual_seed(repeat)
            model = make()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            tuner = AALR(model, optimizer, initial_loss=10.0, phase1_patience=1) if tuned else None
            generator = torch.Generator().manual_seed(repeat)
            for _ in range(epochs):
                sync(device)
                start = time.perf_counter()
                loss = epoch(model, optimizer, x, y, batch_size, generator)  # .item() syncs
                if tuner is not None:
                    before = time.perf_counter()
                    tuner.step(loss)
                    tuner_only.append(time.perf_counter() - before)
                (tuned_times if tuned else plain_times).append(time.perf_counter() - start)
    plain, tuned_median = statistics.median(plain_times), statistics.median(tuned_times)
    model = make()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    epoch(model, optimizer, x[:batch_size], y[:batch_size], batch_size, torch.Generator().manual_seed(0))
    sync(device)
    start = time.perf_counter()
    snapshot = {"model": cpu_copy(model.state_dict()), "optimizer": cpu_copy(optimizer.state_dict())}
    snapshot_seconds = time.perf_counter() - start
    model_bytes = state_nbytes(model.state_dict())
    params = sum(p.numel() for p in model.parameters())
    print(f"\n## {name}: {params / 1e6:.2f}M parameters, {epochs} epochs x {repeats} repeats per loop")
    print(f"epoch time ratio, with tuner / plain (medians): {tuned_median / plain:.4f}")
    print(f"tuner.step share of a tuned epoch (median): {statistics.median(tuner_only) / tuned_median:.4%}")
    print(
        f"one snapshot (model + SGD momentum, to CPU): {state_nbytes(snapshot) / 2**20:.1f} MiB "
        f"= {state_nbytes(snapshot) / model_bytes:.2f} x the model's {model_bytes / 2**20:.1f} MiB; "
        f"its copy takes {snapshot_seconds / plain:.4%} of a plain epoch"
    )
    print("held by the tuner: the best checkpoint (one snapshot), plus the initial one while in phase 1")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--tasks", nargs="+", default=["mnist1d-cnn", "mlp-10m"], choices=sorted(TASKS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    commit = git_commit()[:7]
    print(
        f"aalr overhead benchmark, commit {commit or 'unknown'}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    for key in args.tasks:
        title, task = TASKS[key]
        measure(f"{title} on {device}", task, args.repeats, args.epochs, device)
    print("\ntarget: ratio <= 1.01")


if __name__ == "__main__":
    main()
