"""A loss spike injected mid-run, with and without AALR's spike rollback; and the tuner's share of wall time.

The LM task of the ``lm`` suite in a plain loop with the library (the three lines of step mode): the
Shakespeare bytes, the ``byte-transformer``, AdamW (1e-3, weight decay 0.05), batch 32, AALR+ deciding
every 40 steps over a budget of ``--steps`` steps. The fault: for ``--spike-steps`` optimizer steps from
the middle of the run the LR is multiplied by ``--factor`` (30: what a schedule bug, a bad restart or a
mis-scaled loss does to a run). Per seed, three runs from the same initial weights and the same batches:

- ``clean``: no fault;
- ``rollback``: the fault, ``spike_rollback=True`` (the default): a spike ends the round at once,
  restores the best snapshot and halves the LR;
- ``no-rollback``: the fault, ``spike_rollback=False``: only the round's end judges the round's mean.

It prints, per run: final test bits per byte, the ratio to the clean run's, where the tuner acted on the
spike (steps after the fault began, and whether within the round it fell in), and the tuner's share of the
run's wall time (the time spent inside ``tuner.observe`` over the whole loop's, measured in the same run: a
ratio, not a bare time). ``--plot FILE`` draws the training loss of every run (and the fault's steps).

    .venv/bin/python benchmarks/spike.py [--seeds 0,1,2] [--steps 800] [--plot spike.png] [--snapshot-dir D]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import aalr
from aalr.harness.loop import evaluate
from aalr.harness.models import build_model
from aalr.harness.rundir import git_commit
from aalr.harness.text import bits_per_byte, load_byte_dataset
from aalr.snapshot import state_nbytes

ROUND = 40
BATCH = 32
LR = 1e-3
WEIGHT_DECAY = 0.05
VARIANTS = ("clean", "rollback", "no-rollback")


def one_run(ds: Any, seed: int, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(seed)
    model = build_model("byte-transformer", num_classes=256, input_shape=tuple(ds.x_train.shape[1:]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    order = torch.Generator().manual_seed(1000 + seed)  # the same batches in every variant
    batches = torch.randint(len(ds.x_train), (args.steps, BATCH), generator=order)
    start, end = args.steps // 2, args.steps // 2 + args.spike_steps

    def prepare(x: torch.Tensor) -> torch.Tensor:
        return x.long()

    with torch.no_grad():
        model.eval()
        initial = statistics.fmean(
            F.cross_entropy(model(prepare(ds.x_train[i])), ds.y_train[i]).item() for i in batches[:8]
        )
    tuner = aalr.AALR(
        model,
        optimizer,
        initial_loss=initial,
        every_n_steps=ROUND,
        total_steps=args.steps,
        spike_rollback=variant != "no-rollback",
        snapshot_dir=args.snapshot_dir,
    )
    losses, acted, tuner_seconds = [], [], 0.0
    began = time.perf_counter()
    model.train()
    for step in range(args.steps):
        faulty = variant != "clean" and start <= step < end
        if faulty:  # the fault: this step at factor x the LR the tuner set
            for group in optimizer.param_groups:
                group["lr"] *= args.factor
        index = batches[step]
        loss = F.cross_entropy(model(prepare(ds.x_train[index])), ds.y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if faulty:
            for group in optimizer.param_groups:
                group["lr"] /= args.factor
        losses.append(float(loss.detach()))
        t0 = time.perf_counter()
        record = tuner.observe(loss)
        tuner_seconds += time.perf_counter() - t0
        if record is not None and record["action"].startswith("restore") and step >= start:
            acted.append({"step": step, "action": record["action"], "spike": record["spike"]})
    wall = time.perf_counter() - began
    test_loss, _ = evaluate(model, ds.x_test, ds.y_test, prepare, torch.device("cpu"))
    first = acted[0]["step"] if acted else None
    return {
        "variant": variant,
        "seed": seed,
        "final_test_bpb": bits_per_byte(test_loss),
        "acted_at": first,
        # "within one round": acted on before the round in which the fault began had ended
        "within_round": first is not None and first < (start // ROUND + 1) * ROUND,
        "restores": acted,
        "tuner_share": tuner_seconds / wall,
        "losses": losses,
        "fault": [start, end] if variant != "clean" else None,
        "snapshot_bytes": state_nbytes({"model": model.state_dict(), "optimizer": optimizer.state_dict()}),
        "model_bytes": state_nbytes(model.state_dict()),
        "decisions": tuner.policy.epoch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--spike-steps", type=int, default=4)
    parser.add_argument("--factor", type=float, default=30.0)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write every run's numbers (and losses) here")
    parser.add_argument(
        "--snapshot-dir", type=Path, default=None, help="the tuner keeps its snapshots as files under it"
    )
    args = parser.parse_args()
    if args.steps < 2 * ROUND or args.steps % ROUND:
        parser.error(f"--steps must be a multiple of {ROUND} and at least {2 * ROUND}, got {args.steps}")
    if not 1 <= args.spike_steps <= ROUND:
        parser.error(f"--spike-steps must be in [1, {ROUND}], got {args.spike_steps}")
    if not (math.isfinite(args.factor) and args.factor > 1):
        parser.error(f"--factor must be a finite number > 1, got {args.factor}")
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(1)
    ds = load_byte_dataset("shakespeare")
    runs = [one_run(ds, seed, variant, args) for seed in seeds for variant in VARIANTS]
    clean = {r["seed"]: r["final_test_bpb"] for r in runs if r["variant"] == "clean"}
    print(f"fault: {args.spike_steps} steps at {args.factor:g}x the LR from step {args.steps // 2} of "
          f"{args.steps}; rounds of {ROUND} steps; seeds {seeds}")  # fmt: skip
    print("| run | seed | final test bpb | vs clean | tuner acted at (steps after the fault) | tuner share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in runs:
        ratio = r["final_test_bpb"] / clean[r["seed"]]
        if r["variant"] == "clean":
            where = "-"
        elif r["acted_at"] is None:
            where = "never"
        else:
            after = r["acted_at"] - args.steps // 2
            where = f"{after} ({'within' if r['within_round'] else 'after'} its round)"
        print(f"| {r['variant']} | {r['seed']} | {r['final_test_bpb']:.4f} | {ratio:.4f} | {where} | "
              f"{100 * r['tuner_share']:.2f}% |")  # fmt: skip
    for variant in VARIANTS[1:]:
        ratios = [r["final_test_bpb"] / clean[r["seed"]] for r in runs if r["variant"] == variant]
        print(f"{variant}: final bpb / clean, mean {statistics.fmean(ratios):.4f}, worst {max(ratios):.4f}")
    shares = [r["tuner_share"] for r in runs]
    median, most = 100 * statistics.median(shares), 100 * max(shares)
    print(f"tuner share of wall time: median {median:.2f}%, max {most:.2f}%")
    where = f"files under {args.snapshot_dir}" if args.snapshot_dir else "CPU memory (the default)"
    one, weights = runs[0]["snapshot_bytes"], runs[0]["model_bytes"]
    print(
        f"snapshots in {where}: one is {one / 2**20:.2f} MiB ({one / weights:.1f}x the weights: the weights "
        "and AdamW's two moments)"
    )
    print(f"code: {git_commit() or 'unknown'}")
    if args.json is not None:
        args.json.write_text(json.dumps(runs))
    if args.plot is not None:
        plot(runs, args)


def plot(runs: list[dict[str, Any]], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seeds = sorted({r["seed"] for r in runs})
    fig, axes = plt.subplots(1, len(seeds), figsize=(5 * len(seeds), 3.6), squeeze=False, sharey=True)
    for ax, seed in zip(axes[0], seeds, strict=True):
        for r in (r for r in runs if r["seed"] == seed):
            smooth = [statistics.fmean(r["losses"][max(0, i - 9) : i + 1]) for i in range(len(r["losses"]))]
            ax.plot(smooth, label=r["variant"], linewidth=1)
        ax.axvspan(args.steps // 2, args.steps // 2 + args.spike_steps, color="red", alpha=0.2, label="fault")
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    axes[0][0].set_ylabel("training loss (mean of 10 steps)")
    axes[0][0].legend()
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
