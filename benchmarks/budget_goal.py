"""The AALR+ goal, checked on the budget suite's finished runs.

Goal (the AALR+ issue): at every budget, aalr-plus's worst seed is at or above the mean of SGDR, of the
paper's step schedule and of Prodigy, and within 0.5 pp of the best-of-grid tuned step schedule (its LR
chosen on a validation split). Reads whatever runs of ``results/budget`` have finished and prints one
Markdown row per budget, with the verdict; a cell with no finished run shows "–".

    .venv/bin/python benchmarks/budget_goal.py [results/budget]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from aalr.harness.report import collect

TOLERANCE_PP = 0.5


def finals(rows: list[dict[str, Any]], experiment: str, method: str) -> list[float]:
    return [
        100 * float(r["final_test_acc"])
        for r in rows
        if r.get("experiment") == experiment
        and r.get("method") == method
        and r.get("final_test_acc") is not None
    ]


def cell(values: list[float], worst: bool = False) -> str:
    if not values:
        return "–"
    text = f"{statistics.fmean(values):.2f}"
    return f"{text} ({min(values):.2f})" if worst else text


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/budget")
    rows = collect(root)
    budgets = sorted(
        {str(r["experiment"]) for r in rows if not str(r["experiment"]).endswith(("-tuned", "-linear"))},
        key=lambda name: (name.split("-")[0], int(name.split("-")[-1])),
    )
    print(
        "| task, budget | aalr-plus mean (worst) [n] | aalr-plus linear (worst) | aalr (paper) (worst) | "
        "aalr-rollback (worst) | sgdr | step (paper LR) | prodigy | step, best of grid | goal met? |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for experiment in budgets:
        plus = finals(rows, experiment, "aalr-plus")
        references = {m: finals(rows, experiment, m) for m in ("sgdr", "step", "prodigy")}
        tuned = finals(rows, f"{experiment}-tuned", "step")
        verdict = "–"
        if plus and all(references.values()):
            worst = min(plus)
            beats = all(worst >= statistics.fmean(v) for v in references.values())
            if not tuned:  # half of the goal cannot be judged: only a miss on the other half decides
                verdict = "no (no tuned grid here)" if not beats else "cannot tell (no tuned grid here)"
            else:
                verdict = "yes" if beats and worst >= statistics.fmean(tuned) - TOLERANCE_PP else "no"
        print(
            f"| {experiment} | {cell(plus, True)} [{len(plus)}] | "
            f"{cell(finals(rows, f'{experiment}-linear', 'aalr-plus'), True)} | "
            f"{cell(finals(rows, experiment, 'aalr'), True)} | "
            f"{cell(finals(rows, experiment, 'aalr-rollback'), True)} | "
            f"{cell(references['sgdr'])} | {cell(references['step'])} | {cell(references['prodigy'])} | "
            f"{cell(tuned)} | {verdict} |"
        )


if __name__ == "__main__":
    main()
