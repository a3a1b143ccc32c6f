"""The goal of "AALR+ that beats a tuned schedule with one run", checked on a suite's finished runs.

Goal: on every task and budget, AALR+'s mean at least the best-of-grid (step or cosine; their LR chosen on
a validation split) mean minus 0.2 pp, and its worst seed at or above the mean of every untuned method; at
equal total cost, above the grid. Works on any suite whose experiments follow the suites' naming
(``budget``, ``heldout``, ``lm``): a task is the experiments of one data set, model and budget (the
main experiment, its "-tuned" grids); a grid is a method whose runs chose an LR from a grid.

- "untuned": every method of the task's main experiment that is neither a grid nor one of this project's
  AALR methods (the goal compares AALR+ with the peers a user would pick).
- "equal cost": for each grid, the AALR+ run of the same data and model (any budget of the suite) with the
  largest total training cost not above the grid's (its runs included); the grid's mean against that run's.
  Where AALR+ ran at no such budget, the cell says so.
- A language model's bits per byte (lower is better): "0.2 pp" reads as 1 % of the grid's bpb (the step-mode
  issue's tolerance for this task).

    .venv/bin/python benchmarks/tuned_goal.py results/heldout [--method aalr-plus]

The AALR+ method is ``aalr-plus`` where a task has it, else ``aalr-plus-adamw``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aalr.harness.report import collect, family_of, final_result, summarize

TOLERANCE_PP = 0.2
TOLERANCE_BPB = 0.01  # relative, for bits per byte


def _result(entry: dict[str, Any]) -> tuple[float, float, bool] | None:
    """(mean, worst, lower_is_better) of a summary row, in table units (% or bpb); None without both."""
    result = final_result(entry)
    return None if result is None or result[1] is None else (result[0], result[1], result[2])


def tasks(rows: Sequence[dict[str, Any]]) -> list[tuple[str, list[str], str]]:
    """(task name, its experiments, its family) per data set, model and budget, in order of appearance;
    the name is the shortest experiment name (the main experiment)."""
    groups: dict[tuple[str, Any], list[str]] = {}
    for row in rows:
        key = (family_of(row), row.get("train_steps") or row.get("epochs_planned", row.get("epochs")))
        names = groups.setdefault(key, [])
        if row["experiment"] not in names:
            names.append(str(row["experiment"]))
    return [(min(names, key=len), names, key[0]) for key, names in groups.items()]


def judge(rows: Sequence[dict[str, Any]], method: str | None = None) -> list[dict[str, Any]]:
    """One verdict per task: the numbers of the three halves and whether each is met (None: no runs)."""
    summary = summarize(rows)
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for entry in summary:
        by_experiment.setdefault(str(entry["experiment"]), []).append(entry)
    all_tasks = tasks(rows)
    verdicts = []
    for name, experiments, family in all_tasks:
        entries = [e for x in experiments for e in by_experiment.get(x, []) if _result(e)]
        main = [e for e in by_experiment.get(name, []) if _result(e)]
        names = {e["method"] for e in main}
        plus_name = method or ("aalr-plus" if "aalr-plus" in names else "aalr-plus-adamw")
        plus = next((e for e in main if e["method"] == plus_name and not e.get("settings")), None)
        grids = [e for e in entries if e.get("chosen_lr_mean") is not None]
        untuned = [
            e for e in main if e.get("chosen_lr_mean") is None and not str(e["method"]).startswith("aalr")
        ]
        if not grids and not untuned:  # an equal-cost experiment (AALR+ alone): a part of another task's row
            continue
        row: dict[str, Any] = {"task": name, "method": plus_name, "plus": None, "verdict": "–"}
        verdicts.append(row)
        if plus is None:
            continue
        mean, worst, lower = _result(plus)  # type: ignore[misc]
        sign = -1.0 if lower else 1.0  # sign * (a - b) > 0: a is better
        row["plus"], row["lower"] = (mean, worst, float(plus["cost_mean"] or 0)), lower
        if grids:
            best = max(grids, key=lambda e: sign * _result(e)[0])  # type: ignore[index]
            grid_mean = _result(best)[0]  # type: ignore[index]
            tolerance = TOLERANCE_BPB * grid_mean if lower else TOLERANCE_PP
            row["grid"] = (
                best["method"],
                grid_mean,
                sign * (mean - grid_mean),
                sign * (mean - grid_mean) >= -tolerance,
            )
        if untuned:
            best = max(untuned, key=lambda e: sign * _result(e)[0])  # type: ignore[index]
            best_mean = _result(best)[0]  # type: ignore[index]
            row["untuned"] = (
                best["method"],
                best_mean,
                sign * (worst - best_mean),
                sign * (worst - best_mean) >= 0,
            )
        matched = []
        for grid in grids:
            cost = float(grid["cost_mean"] or 0)
            candidates = [
                e
                for other, other_experiments, other_family in all_tasks
                if other_family == family
                for x in other_experiments
                for e in by_experiment.get(x, [])
                if e["method"] == plus_name
                and not e.get("settings")
                and _result(e)
                and float(e["cost_mean"] or 0) <= cost
            ]
            if not candidates:
                matched.append((grid["method"], cost, None, None, None))
                continue
            chosen = max(candidates, key=lambda e: float(e["cost_mean"]))
            plus_mean = _result(chosen)[0]  # type: ignore[index]
            grid_mean = _result(grid)[0]  # type: ignore[index]
            matched.append(
                (grid["method"], cost, chosen["experiment"], plus_mean, sign * (plus_mean - grid_mean) > 0)
            )
        row["matched"] = matched
        halves = [row.get("grid", (0, 0, 0, None))[3], row.get("untuned", (0, 0, 0, None))[3]]
        halves += [m[4] for m in matched]
        row["verdict"] = "–" if None in halves[:2] else ("yes" if all(h is True for h in halves) else "no")
    return verdicts


def _number(value: float, lower: bool) -> str:
    return f"{value:.3f}" if lower else f"{value:.2f}"


def markdown(verdicts: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| task | AALR+ mean (worst), cost | best grid: mean, AALR+ mean minus it "
        "| best untuned: mean, AALR+ worst minus it | equal cost: AALR+ (run) vs each grid | goal met? |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        if v["plus"] is None:
            lines.append(f"| {v['task']} | no {v['method']} run | – | – | – | – |")
            continue
        mean, worst, cost = v["plus"]
        lower = v["lower"]
        unit = " bpb" if lower else " pp"
        cells = [f"{_number(mean, lower)} ({_number(worst, lower)}), {cost:g}"]
        for key, missing in (("grid", "no grid"), ("untuned", "no untuned method")):
            if key in v:
                method, other, margin, met = v[key]
                verdict = "ok" if met else "MISSED"
                cells.append(f"{method} {_number(other, lower)}, {margin:+.2f}{unit} {verdict}")
            else:
                cells.append(missing)
        parts = []
        for method, cost_grid, experiment, plus_mean, met in v.get("matched", []):
            if experiment is None:
                parts.append(f"{method} (cost {cost_grid:g}): no AALR+ run at that cost")
            else:
                verdict = "above" if met else "NOT above"
                parts.append(
                    f"{method} (cost {cost_grid:g}): {experiment} {_number(plus_mean, lower)} {verdict}"
                )
        cells.append("; ".join(parts) or "no grid")
        lines.append(f"| {v['task']} | " + " | ".join(cells) + f" | {v['verdict']} |")
    return "\n".join(lines)


def headline(verdicts: Sequence[dict[str, Any]], names: dict[str, str] | None = None) -> str:
    """The README's compact table: per task AALR+ (one run), the best untuned peer, the best grid at its
    cost, and AALR+ given the grid's cost."""
    lines = [
        "| task | AALR+, one run | best untuned peer | best of a tuned grid (its cost) "
        "| AALR+ at the grid's cost |",
        "| --- | --- | --- | --- | --- |",
    ]
    for v in verdicts:
        if v["plus"] is None:
            continue
        mean, worst, cost = v["plus"]
        lower = v["lower"]
        task = (names or {}).get(v["task"], v["task"])
        peer = f"{_number(v['untuned'][1], lower)} ({v['untuned'][0]})" if "untuned" in v else "–"
        grid = "–"
        matched = "–"
        if "grid" in v:
            method, grid_mean = v["grid"][0], v["grid"][1]
            grid_cost = next(m[1] for m in v["matched"] if m[0] == method)
            grid = f"{_number(grid_mean, lower)} ({method}, {grid_cost / cost:.1f}x)"
            at = next(m for m in v["matched"] if m[0] == method)
            if at[2] is not None:
                matched = f"{_number(at[3], lower)}" + ("" if at[2] != v["task"] else " (its own run)")
        lines.append(
            f"| {task} | {_number(mean, lower)} ({_number(worst, lower)}) | {peer} | {grid} | {matched} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="a suite's results folder, e.g. results/heldout")
    parser.add_argument("--method", help="the AALR+ method (default: aalr-plus, else aalr-plus-adamw)")
    parser.add_argument("--headline", action="store_true", help="the README's compact table instead")
    args = parser.parse_args()
    verdicts = judge(collect(args.root), args.method)
    print(headline(verdicts) if args.headline else markdown(verdicts))


if __name__ == "__main__":
    main()
