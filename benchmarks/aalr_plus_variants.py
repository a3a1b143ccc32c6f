"""AALR+ rule variants side by side: how the default of ``aalr-plus`` was chosen.

Runs the harness's ``aalr-plus`` with each variant's tuner options (``--method-option`` in the CLI) on
MNIST-1D (15, 30, 50, 60 epochs) and Fashion-MNIST (fmnist-cnn at width 0.5, 5000 images; 8, 16, 32 epochs),
on seeds that the ``budget`` suite does not use (100-104 by default), and prints final test accuracy
(%) as "mean (worst seed)" per variant and task. Runs go under ``--out`` and are skipped when finished,
so an interrupted comparison continues.

    .venv/bin/python benchmarks/aalr_plus_variants.py [--out runs/aalr-plus-variants] [--tasks m30,m60]

Variants (all with rollback in phase 2; each names its finish, so a run keeps its meaning when the
default changes):
- ``cosine``: AALR+ as it is (a phase-1 failure restores the last stable epoch, halves, goes to phase 2;
  the cosine finish from half the budget).
- ``steps``: the same with the ``steps`` finish (x0.1 at 75 % and 90 %): AALR+ before the cosine finish.
- ``restart``: ``steps`` with the paper's phase 1 (a failure restarts from the initial weights).
- ``restart-short``: the same with phase-1 patience scaled to the budget (epochs // 10, 1 to 10).
- ``restart-short-linear``: the same with the ``linear`` finish.
- ``collapse``: ``steps`` but a phase-2 halving restores only a collapse (``rollback_on="collapse"``).
- ``ceiling``: ``steps`` with ``ceiling=True`` (an LR that failed again is retried ever less often).
- ``collapse-ceiling``: both.
- ``short4``, ``short10``: ``steps`` with phase-1 patience tied to the budget (epochs // 4 or // 10, 1 to
  10), so that a short run leaves phase 1 and explores; ``short4-ceiling``: ``short4`` and ``ceiling``.
- ``rounds4``: ``cosine`` in step mode, a decision every quarter epoch (the same optimizer steps as the
  epoch-mode run, ``ceil(train / batch)`` a epoch, in 4 rounds of a quarter each): not a rule but a way to use
  the tuner, measured for short budgets, where 10 stable epochs leave no room to explore.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from aalr.harness.train import run

FMNIST: dict[str, Any] = {
    "dataset": "fashion-mnist",
    "model": "fmnist-cnn",
    "model_options": {"width": 0.5},
    "train_subset": 5000,
}
MNIST1D: dict[str, Any] = {"dataset": "mnist1d", "model": "mnist1d-cnn"}
TASKS: dict[str, dict[str, Any]] = {
    "m15": {**MNIST1D, "epochs": 15},
    "m30": {**MNIST1D, "epochs": 30},
    "m50": {**MNIST1D, "epochs": 50},
    "m60": {**MNIST1D, "epochs": 60},
    "f8": {**FMNIST, "epochs": 8},
    "f16": {**FMNIST, "epochs": 16},
    "f32": {**FMNIST, "epochs": 32},
}
STEPS = {"phase1_failure": "rollback", "finish": "steps"}  # AALR+ before the cosine finish
VARIANTS: dict[str, dict[str, Any]] = {
    "cosine": {"phase1_failure": "rollback", "finish": "cosine"},  # AALR+ (the default)
    "steps": STEPS,
    "restart": {**STEPS, "phase1_failure": "restart"},
    "restart-short": {**STEPS, "phase1_failure": "restart", "phase1_patience": "budget/10"},
    "restart-short-linear": {"phase1_failure": "restart", "phase1_patience": "budget/10", "finish": "linear"},
    "collapse": {**STEPS, "rollback_on": "collapse"},
    "ceiling": {**STEPS, "ceiling": True},
    "collapse-ceiling": {**STEPS, "rollback_on": "collapse", "ceiling": True},
    "short4": {**STEPS, "phase1_patience": "budget/4"},
    "short10": {**STEPS, "phase1_patience": "budget/10"},
    "short4-ceiling": {**STEPS, "phase1_patience": "budget/4", "ceiling": True},
    "rounds4": {"phase1_failure": "rollback", "finish": "cosine", "rounds_per_epoch": 4},
}
TRAIN_SIZE = {"mnist1d": 4000, "fashion-mnist": 5000}  # the tasks' training samples (train_subset for FMNIST)
BATCH_SIZE = 128


def mode_for(variant: str, task: dict[str, Any]) -> dict[str, Any]:
    """A task's length: ``epochs``, or in step mode the same optimizer steps in rounds
    (``rounds_per_epoch`` of them an epoch)."""
    per_epoch = VARIANTS[variant].get("rounds_per_epoch")
    if per_epoch is None:
        return {"epochs": task["epochs"]}
    steps = -(-TRAIN_SIZE[task["dataset"]] // BATCH_SIZE)  # an epoch's steps, the last batch partial
    if steps % per_epoch:
        raise ValueError(f"{steps} steps an epoch do not split into {per_epoch} rounds")
    return {"train_steps": task["epochs"] * steps, "round_steps": steps // per_epoch}


def options_for(variant: str, epochs: int) -> dict[str, Any]:
    options = {k: v for k, v in VARIANTS[variant].items() if k != "rounds_per_epoch"}
    share = options.get("phase1_patience")
    if isinstance(share, str):  # "budget/N": a patience of epochs // N, 1 to 10
        options["phase1_patience"] = max(1, min(10, epochs // int(share.removeprefix("budget/"))))
    return options


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/aalr-plus-variants")
    parser.add_argument(
        "--tasks", default="m15,m30,m60,f8,f16,f32", help=f"comma-separated, of {list(TASKS)}"
    )
    parser.add_argument("--variants", default="cosine,steps", help=f"of {list(VARIANTS)}")
    parser.add_argument("--seeds", default="100,101,102,103,104")
    args = parser.parse_args()
    tasks, variants = args.tasks.split(","), args.variants.split(",")
    for name, known in (("task", TASKS), ("variant", VARIANTS)):
        unknown = [x for x in (tasks if name == "task" else variants) if x not in known]
        if unknown:
            parser.error(f"unknown {name}(s) {unknown}; choose from {list(known)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    commits: dict[str, int] = {}
    print("| variant | " + " | ".join(tasks) + " |")
    print("| --- |" + " --- |" * len(tasks))
    for variant in variants:
        cells = []
        for task in tasks:
            accs = []
            for seed in seeds:
                config = {
                    **{k: v for k, v in TASKS[task].items() if k != "epochs"},
                    **mode_for(variant, TASKS[task]),
                    "method": "aalr-plus",
                    "seed": seed,
                    "batch_size": BATCH_SIZE,
                    "progress": False,
                    "device": "cpu",
                    "method_args": options_for(variant, TASKS[task]["epochs"]),
                }
                run_dir = Path(args.out) / variant / task / f"seed{seed}"
                summary = run(config, run_dir, resume=True)
                accs.append(100 * float(summary["final_test_acc"]))
                commit = json.loads((run_dir / "config.json").read_text()).get("git_commit") or "unknown"
                commits[commit[:7]] = commits.get(commit[:7], 0) + 1
            cells.append(f"{statistics.fmean(accs):.2f} ({min(accs):.1f})")
        print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)
    # Finished runs are reused, whatever code made them: say which commits the numbers come from, so a
    # table is never quietly made of runs from before a change to the rules.
    made = ", ".join(f"{commit} ({count} runs)" for commit, count in commits.items())
    print(f"\nruns made at commit(s): {made}" + ("" if len(commits) == 1 else "  <- more than one: re-run?"))


if __name__ == "__main__":
    main()
