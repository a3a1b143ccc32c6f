"""The step-mode goal, checked on the ``lm`` suite's finished runs.

Goal (the step-mode issue): at both budgets, AALR+'s (``aalr-plus-adamw``) worst seed at or below (better
than) the mean bits per byte of every untuned method, and its mean within 1 % of the best-of-grid AdamW +
cosine (its LR chosen on the validation part of the text). Reads whatever runs of ``results/lm`` have
finished and prints one Markdown row per budget: each method's mean final test bpb (worst seed for the AALR
methods), the verdict, and by how much each half is met or missed.

    .venv/bin/python benchmarks/lm_goal.py [results/lm]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from aalr.harness.report import collect

PLUS = "aalr-plus-adamw"
UNTUNED = ("adamw-cosine", "wsd", "schedulefree-adamw", "prodigy", "greedy-adamw", "adam")
TOLERANCE = 0.01  # the mean may be at most 1 % above the tuned grid's


def finals(rows: list[dict[str, Any]], experiment: str, method: str) -> list[float]:
    return [
        float(r["final_test_bpb"])
        for r in rows
        if r.get("experiment") == experiment
        and r.get("method") == method
        and r.get("final_test_bpb") is not None
    ]


def cell(values: list[float], worst: bool = False) -> str:
    if not values:
        return "–"
    text = f"{statistics.fmean(values):.3f}"
    return f"{text} ({max(values):.3f})" if worst else text


def verdict(plus: list[float], untuned: dict[str, list[float]], tuned: list[float]) -> str:
    present = {m: v for m, v in untuned.items() if v}
    if not plus or not present or not tuned:
        return "–"
    worst, mean = max(plus), statistics.fmean(plus)
    best_untuned = min(present, key=lambda m: statistics.fmean(present[m]))
    margin = statistics.fmean(present[best_untuned]) - worst  # > 0: AALR+'s worst is better
    gap = mean / statistics.fmean(tuned) - 1  # <= 1 %: within
    met = margin >= 0 and gap <= TOLERANCE
    beats = "beats" if margin >= 0 else "misses"
    within = "within" if gap <= TOLERANCE else "outside"
    best_mean = statistics.fmean(present[best_untuned])
    return (
        f"{'yes' if met else 'no'}: worst {worst:.3f} {beats} the best untuned mean ({best_untuned}, "
        f"{best_mean:.3f}) by {abs(margin):.3f}; mean {100 * gap:+.1f} % vs the tuned grid, {within} 1 %"
    )


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "results/lm")
    rows = collect(root)
    budgets = sorted(
        {str(r["experiment"]) for r in rows if not str(r["experiment"]).endswith("-tuned")},
        key=lambda name: int("".join(c for c in name if c.isdigit()) or 0),
    )
    print(
        f"| budget | {PLUS} mean (worst) [n] | aalr-adam (paper) (worst) | "
        + " | ".join(UNTUNED)
        + " | adamw-cosine, best of grid | goal met? |"
    )
    print("| --- " * (len(UNTUNED) + 5) + "|")
    for experiment in budgets:
        plus = finals(rows, experiment, PLUS)
        untuned = {m: finals(rows, experiment, m) for m in UNTUNED}
        tuned = finals(rows, f"{experiment}-tuned", "adamw-cosine")
        paper = cell(finals(rows, experiment, "aalr-adam"), True)
        print(
            f"| {experiment} | {cell(plus, True)} [{len(plus)}] | {paper} | "
            + " | ".join(cell(untuned[m]) for m in UNTUNED)
            + f" | {cell(tuned)} | {verdict(plus, untuned, tuned)} |"
        )
    print("\nbits per byte on held-out text, lower is better; mean over seeds (worst seed: the highest)")


if __name__ == "__main__":
    main()
