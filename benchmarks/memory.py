"""Peak memory of training with and without AALR, on the CPU, as a ratio, with the snapshot bytes.

Each variant runs in a fresh child process (so one cannot inherit the other's allocations) that
trains a ~8.4M-parameter MLP with SGD + momentum for a few epochs; the parent reads each child's peak
resident set size (getrusage) and prints their ratio, next to the bytes AALR's snapshots hold and
the model's own. Expected: one extra copy of weights + momentum (the best checkpoint), plus the
initial weights while in phase 1, i.e. about 2-3 model sizes on top of a plain run.

    .venv/bin/python benchmarks/memory.py [--repeats 2] [--epochs 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys

from aalr.harness.rundir import git_commit


def child(variant: str, epochs: int) -> None:
    import torch
    import torch.nn.functional as F

    from aalr import AALR
    from aalr.snapshot import state_nbytes
    from overhead import big_mlp_task  # the same ~8.4M-parameter MLP as the overhead benchmark

    torch.manual_seed(0)
    model = big_mlp_task()[0]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    tuner = AALR(model, optimizer, initial_loss=10.0, phase1_patience=2) if variant == "aalr" else None
    x, y = torch.randn(1024, 1024), torch.randint(0, 10, (1024,))
    for _ in range(epochs):
        total = 0.0
        for index in torch.randperm(len(x)).split(128):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        if tuner is not None:
            tuner.step(total / len(x))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "peak_bytes": peak_kib * 1024,
                "model_bytes": state_nbytes(model.state_dict()),
                "snapshot_bytes": tuner.snapshot_nbytes() if tuner is not None else 0,
                "phase": tuner.phase if tuner is not None else None,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--child", choices=("plain", "aalr"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.epochs)
        return
    results: dict[str, list[dict[str, float]]] = {"plain": [], "aalr": []}
    for repeat in range(args.repeats):
        for variant in ("plain", "aalr") if repeat % 2 == 0 else ("aalr", "plain"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--epochs", str(args.epochs)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            results[variant].append(json.loads(out.strip().splitlines()[-1]))
    commit = git_commit()[:7]
    plain = statistics.median(r["peak_bytes"] for r in results["plain"])
    tuned = statistics.median(r["peak_bytes"] for r in results["aalr"])
    last = results["aalr"][-1]
    mib = 2**20
    print(
        f"aalr memory benchmark, commit {commit or 'unknown'}, {args.epochs} epochs, {args.repeats} repeats"
    )
    print(
        f"peak RSS ratio, with AALR / plain (medians): {tuned / plain:.3f} (+{(tuned - plain) / mib:.1f} MiB)"
    )
    print(
        f"model (weights): {last['model_bytes'] / mib:.1f} MiB; AALR snapshots at the end "
        f"(phase {last['phase']}): {last['snapshot_bytes'] / mib:.1f} MiB "
        f"= {last['snapshot_bytes'] / last['model_bytes']:.2f} x the model"
    )


if __name__ == "__main__":
    main()
