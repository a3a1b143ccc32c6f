"""Results of finished runs as tables in the paper's layout (Markdown, CSV) and plots (PNG).

The input is a folder of run folders as train.py writes them (``config.json``, ``metrics.jsonl``,
``summary.json``); a run counts only once its ``summary.json`` exists. Accuracies are fractions in
the files and percentages with two decimals in the tables, as in the paper. Spread over seeds is the
sample standard deviation (ddof=1). Diverged runs keep their measured accuracy (often chance level;
the paper prints 10.00 for them) and are marked with a dagger and counted.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from aalr.harness.rundir import read_summary

log = logging.getLogger("aalr.report")

__all__ = [
    "collect",
    "plot_accuracy",
    "plot_batchsize",
    "plot_lr_trajectories",
    "scaling_guides",
    "summarize",
    "to_csv",
    "to_markdown",
    "write_report",
]

ROBUST_ATTACKS = ("fgsm", "pgd")
CSV_COLUMNS = (
    "experiment",
    "method",
    "dataset",
    "model",
    "batch_size",
    "epochs",
    "n",
    "failed",
    "final_mean",
    "final_std",
    "final_worst",
    "peak_mean",
    "peak_std",
    "fgsm_n",
    "fgsm_final_mean",
    "fgsm_final_std",
    "fgsm_peak_mean",
    "fgsm_peak_std",
    "pgd_n",
    "pgd_final_mean",
    "pgd_final_std",
    "pgd_peak_mean",
    "pgd_peak_std",
    "chosen_lr_mean",
    "wall_seconds_mean",
    "numerics",  # how the runs computed ("cpu bf16 channels_last"), ";"-separated; empty: not recorded
    "numerics_unrecorded",  # how many runs have epochs that did not record it
)
DAGGER = "†"
DASH = "–"


# ---------------------------------------------------------------------------------------------
# Reading runs


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise ValueError(f"{path}, line {number}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: expected a JSON object")
        rows.append(row)
    return rows


def _suite_order(root: Path) -> dict[Path, tuple[int, int]]:
    """Run folder -> (which suite.json, position in it), from every suite.json the runner wrote."""
    order: dict[Path, tuple[int, int]] = {}
    for suite_index, suite_file in enumerate(sorted(root.rglob("suite.json"))):
        try:
            runs = json.loads(suite_file.read_text(encoding="utf-8")).get("runs", [])
        except (ValueError, AttributeError):
            continue
        for position, run in enumerate(runs):
            if isinstance(run, dict) and isinstance(run.get("run_dir"), str):
                order[(suite_file.parent / run["run_dir"]).resolve()] = (suite_index, position)
    return order


def collect(root: Path | str) -> list[dict[str, Any]]:
    """Every finished run under ``root`` (searched recursively) as one flat dict.

    A row holds the config's keys, then the summary's (which win where both have a key), plus
    ``config`` (the config as written), ``metrics`` (the metrics.jsonl rows) and ``run_dir``.
    Runs without a readable summary.json are unfinished and left out. Rows come in the order of
    the suite that made them (its suite.json), else sorted by folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"results folder {root} does not exist")
    order = _suite_order(root)
    unlisted = (len(order), 0)  # after every listed run: there are fewer suite files than runs
    found: list[tuple[tuple[int, int], str, dict[str, Any]]] = []
    for summary_path in root.rglob("summary.json"):
        run_dir = summary_path.parent
        summary = read_summary(run_dir)
        if summary is None:  # written last and atomically, so unreadable means damaged: say so
            log.warning(
                "%s is unreadable or not a JSON object; that run is left out of the report", summary_path
            )
            continue
        config = _read_json(run_dir / "config.json")
        if config.get("validation_split"):
            continue  # a grid run on a validation split: its choice is in the parent's summary
        row: dict[str, Any] = {**config, **summary}
        row["config"] = config
        row["metrics"] = _read_metrics(run_dir / "metrics.jsonl")
        row["run_dir"] = str(run_dir)
        if not row.get("experiment"):
            # A run made outside a suite: group it by what it trained.
            row["experiment"] = "-".join(str(row[k]) for k in ("dataset", "model") if row.get(k)) or "run"
        found.append((order.get(run_dir.resolve(), unlisted), str(run_dir), row))
    found.sort(key=lambda item: (item[0], item[1]))
    return [row for _, _, row in found]


# ---------------------------------------------------------------------------------------------
# Statistics


def _number(value: object) -> float | None:
    """A finite float, or None for missing/null/NaN values (which do not enter statistics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _stats(values: Iterable[object], prefix: str) -> dict[str, Any]:
    """mean, sample std (None for fewer than two values) and worst (minimum) under ``prefix_``."""
    numbers = [v for v in (_number(x) for x in values) if v is not None]
    return {
        f"{prefix}_mean": statistics.fmean(numbers) if numbers else None,
        f"{prefix}_std": statistics.stdev(numbers) if len(numbers) >= 2 else None,
        f"{prefix}_worst": min(numbers) if numbers else None,
    }


def _first_seen(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for value in values:
        if value is not None and value not in seen:
            seen.append(value)
    return seen


def _numerics_of(row: dict[str, Any]) -> list[str]:
    """How a run's epochs were computed, as its summary recorded it (a list; a lone string is taken too)."""
    value = row.get("numerics")
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return [str(way) for way in values if isinstance(way, str) and way]


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per (experiment, method), in order of first appearance in ``rows``.

    Keys: experiment, method, dataset, model, batch_size, epochs (each the single value, or a
    list if runs differ), seeds, n, failed (runs whose status is not "finished"), final_mean /
    final_std / final_worst, peak_mean / peak_std (fractions; std is the sample std, ddof=1, None
    for one seed), for adversarial runs ``<attack>_n`` and ``<attack>_{final,peak}_{mean,std}``
    for attack in fgsm, pgd, plus pgd_steps, adversarial (the training attack), chosen_lr_mean
    and chosen_lrs for grid runs, numerics (how the runs computed, e.g. "cpu bf16 channels_last", as
    their summaries recorded it) and numerics_unrecorded (runs with epochs made before it was recorded),
    and wall_seconds_mean.
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("experiment")), str(row.get("method"))), []).append(row)

    def single(values: list[Any]) -> Any:
        distinct = _first_seen(values)
        return distinct[0] if len(distinct) == 1 else (distinct or None)

    out: list[dict[str, Any]] = []
    for (experiment, method), runs in groups.items():
        entry: dict[str, Any] = {"experiment": experiment, "method": method}
        for key in ("dataset", "model", "batch_size"):
            entry[key] = single([r.get(key) for r in runs])
        # the planned length: a diverged run stops early and would otherwise split the heading
        entry["epochs"] = single([r.get("epochs_planned", r.get("epochs")) for r in runs])
        entry["seeds"] = [r.get("seed") for r in runs]
        entry["n"] = len(runs)
        entry["failed"] = sum(1 for r in runs if r.get("status", "finished") != "finished")
        final = _stats((r.get("final_test_acc") for r in runs), "final")
        peak = _stats((r.get("peak_test_acc") for r in runs), "peak")
        entry.update(final)
        entry.update({k: v for k, v in peak.items() if not k.endswith("_worst")})

        adversarial = single([json.dumps(r.get("adversarial"), sort_keys=True) for r in runs])
        entry["adversarial"] = json.loads(adversarial) if isinstance(adversarial, str) else None
        for attack in ROBUST_ATTACKS:
            results = [
                r["robust"][attack]
                for r in runs
                if isinstance(r.get("robust"), dict) and isinstance(r["robust"].get(attack), dict)
            ]
            if not results:
                continue
            entry[f"{attack}_n"] = len(results)
            for which in ("final", "peak"):
                stats = _stats((res.get(which) for res in results), f"{attack}_{which}")
                entry.update({k: v for k, v in stats.items() if not k.endswith("_worst")})
            if attack == "pgd":
                entry["pgd_steps"] = single([res.get("steps") for res in results])

        chosen = [v for v in (_number(r.get("chosen_lr")) for r in runs) if v is not None]
        if chosen:
            entry["chosen_lr_mean"] = statistics.fmean(chosen)
            entry["chosen_lrs"] = chosen
        ways = [_numerics_of(r) for r in runs]
        entry["numerics"] = _first_seen([way for run_ways in ways for way in run_ways])
        entry["numerics_unrecorded"] = sum(
            1
            for r, run_ways in zip(runs, ways, strict=True)
            if not run_ways or _number(r.get("numerics_unrecorded_epochs"))
        )
        walls = [v for v in (_number(r.get("wall_seconds")) for r in runs) if v is not None]
        entry["wall_seconds_mean"] = statistics.fmean(walls) if walls else None
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return DASH
    return f"{_pct(mean)} ± {_pct(std)}"


def _fraction_of_255(value: object) -> str:
    number = _number(value)
    if number is None:
        return str(value)
    scaled = number * 255
    return f"{round(scaled)}/255" if abs(scaled - round(scaled)) < 1e-6 else f"{number:g}"


def _pgd_label(entries: Sequence[dict[str, Any]]) -> str:
    for entry in entries:
        steps = entry.get("pgd_steps")
        if isinstance(steps, int):
            return f"PGD-{steps}"
        adversarial = entry.get("adversarial")
        if isinstance(adversarial, dict) and adversarial.get("kind") == "pgd" and adversarial.get("steps"):
            return f"PGD-{adversarial['steps']}"
    return "PGD"


def _setting_text(entries: Sequence[dict[str, Any]], key: str) -> str:
    flat: list[Any] = []
    for e in entries:
        value = e.get(key)
        flat.extend(value if isinstance(value, list) else [value])
    values = _first_seen(flat)
    return ", ".join(str(v) for v in values) if values else "?"


def _experiment_heading(experiment: str, entries: Sequence[dict[str, Any]]) -> str:
    text = (
        f"## {experiment}: {_setting_text(entries, 'dataset')} / {_setting_text(entries, 'model')}, "
        f"{_setting_text(entries, 'epochs')} epochs, batch size {_setting_text(entries, 'batch_size')}"
    )
    adversarial = next((e["adversarial"] for e in entries if isinstance(e.get("adversarial"), dict)), None)
    if adversarial:
        kind = str(adversarial.get("kind", "?")).upper()
        parts = [f"ε = {_fraction_of_255(adversarial.get('epsilon'))}"]
        if adversarial.get("alpha") is not None:
            parts.append(f"α = {_fraction_of_255(adversarial.get('alpha'))}")
        if adversarial.get("steps") is not None:
            parts.append(f"{adversarial['steps']} steps")
        text += f"; adversarial training with {kind} ({', '.join(parts)})"
    ways = _first_seen([way for e in entries for way in e.get("numerics") or []])
    if ways:  # runs made before summaries recorded it say nothing; say so only beside ones that do
        unrecorded = sum(int(e.get("numerics_unrecorded") or 0) for e in entries)
        text += f"; computed in {' and '.join(ways)}"
        if unrecorded:
            text += f" ({unrecorded} run(s) with epochs made before this was recorded)"
    return text


def to_markdown(summary_rows: Sequence[dict[str, Any]], *, title: str | None = None) -> str:
    """Markdown: one table per experiment, a row per method, accuracies in % as in the paper."""
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for entry in summary_rows:
        by_experiment.setdefault(str(entry["experiment"]), []).append(entry)

    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    any_failed = any_grid = any_single = False
    for experiment, entries in by_experiment.items():
        robust = any(f"{attack}_n" in e for e in entries for attack in ROBUST_ATTACKS)
        grid = any("chosen_lr_mean" in e for e in entries)
        clean = "Clean " if robust else ""
        header = [
            "Method",
            "Seeds",
            f"{clean}Final acc (%) mean ± std",
            "Worst seed",
            f"{clean}Peak acc (%) mean ± std",
        ]
        pgd = _pgd_label(entries)
        if robust:
            header += ["FGSM final (%)", "FGSM peak (%)", f"{pgd} final (%)", f"{pgd} peak (%)"]
        if grid:
            header.append("Chosen LR (mean)")
        header.append("Failed")
        lines += [_experiment_heading(experiment, entries), ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for e in entries:
            mark = f" {DAGGER}" if e["failed"] else ""
            any_failed |= bool(e["failed"])
            any_single |= e["n"] < 2
            cells = [
                str(e["method"]),
                str(e["n"]),
                _mean_std(e["final_mean"], e["final_std"]) + mark,
                _pct(e["final_worst"]) + mark,
                _mean_std(e["peak_mean"], e["peak_std"]) + mark,
            ]
            if robust:
                for attack in ROBUST_ATTACKS:
                    for which in ("final", "peak"):
                        cells.append(
                            _mean_std(e.get(f"{attack}_{which}_mean"), e.get(f"{attack}_{which}_std"))
                        )
            if grid:
                any_grid = True
                chosen = e.get("chosen_lr_mean")
                cells.append(DASH if chosen is None else f"{chosen:.3g}")
            cells.append(f"{e['failed']}/{e['n']}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    notes = [
        "Accuracies are test accuracies in %, mean ± sample standard deviation (ddof=1) over seeds"
        + (f"; {DASH} where there is only one seed." if any_single else "."),
        "Final: after the last epoch. Worst seed: the lowest final accuracy over the seeds. "
        "Peak: the best epoch; the paper's Tables 1-4 report peak accuracy, so compare them with Peak.",
    ]
    if any_failed:
        notes.append(
            f"{DAGGER} Some runs of this method diverged (count in Failed); their accuracy enters the "
            "mean as measured, as the paper prints 10.00 for such runs."
        )
    if any_grid:
        notes.append("Chosen LR: the grid learning rate picked on the validation split, averaged over seeds.")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def to_csv(summary_rows: Sequence[dict[str, Any]]) -> str:
    """CSV, one line per (experiment, method); accuracies as fractions, empty where missing."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for entry in summary_rows:
        writer.writerow(
            {
                key: ""
                if entry.get(key) is None
                else (";".join(map(str, entry[key])) if isinstance(entry[key], list) else entry[key])
                for key in CSV_COLUMNS
            }
        )
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _select_rows(rows: Sequence[dict[str, Any]], experiment: str | None) -> list[dict[str, Any]]:
    chosen = [r for r in rows if experiment is None or r.get("experiment") == experiment]
    if not chosen:
        known = ", ".join(_first_seen(r.get("experiment") for r in rows)) or "(none)"
        raise ValueError(f"no runs of experiment {experiment!r} to plot; experiments: {known}")
    return chosen


def _lr_trajectory(row: dict[str, Any]) -> list[float]:
    """One LR per epoch: the summary's trajectory, else the metrics' lr; NaN where not plottable on log."""
    raw = row.get("lr_trajectory")
    if not isinstance(raw, list):
        raw = [m.get("lr") for m in row.get("metrics", [])]
    values = [_number(v) for v in raw]
    return [v if v is not None and v > 0 else math.nan for v in values]


def _label(row: dict[str, Any], several_experiments: bool) -> str:
    method = str(row.get("method"))
    return f"{row.get('experiment')}/{method}" if several_experiments else method


def _style(index: int, method: str) -> dict[str, Any]:
    """A distinct look per line: 20 colours, and AALR methods drawn thicker so they stand out."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors  # type: ignore[attr-defined]
    return {
        "color": colours[(2 * index) % 20 if index < 10 else (2 * index + 1) % 20],
        "linewidth": 2.2 if method.startswith("aalr") else 1.2,
        "linestyle": "-" if index < 10 else "--",
    }


def _save(fig: Any, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def plot_lr_trajectories(
    rows: Sequence[dict[str, Any]], path: Path | str, *, experiment: str | None = None
) -> Path:
    """The LR of each epoch, one line per method (its first seed), log scale."""
    plt = _pyplot()
    chosen = _select_rows(rows, experiment)
    several = len(_first_seen(r.get("experiment") for r in chosen)) > 1
    firsts: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in chosen:
        key = (row.get("experiment"), row.get("method"))
        current = firsts.get(key)
        if current is None or (row.get("seed") or 0) < (current.get("seed") or 0):
            firsts[key] = row
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for index, row in enumerate(firsts.values()):
            lrs = _lr_trajectory(row)
            ax.plot(
                range(1, len(lrs) + 1),
                lrs,
                drawstyle="steps-mid",
                label=_label(row, several),
                **_style(index, str(row.get("method"))),
            )
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("learning rate")
        ax.set_title(f"Learning rate per epoch (first seed){': ' + experiment if experiment else ''}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
        return _save(fig, path)
    finally:
        plt.close(fig)


def _mean_curve(runs: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """Mean of metric ``key`` per epoch over the runs that have it at that epoch."""
    per_epoch: dict[int, list[float]] = {}
    for run in runs:
        for m in run.get("metrics", []):
            value, epoch = _number(m.get(key)), m.get("epoch")
            if value is not None and isinstance(epoch, int):
                per_epoch.setdefault(epoch, []).append(value)
    epochs = sorted(per_epoch)
    return epochs, [statistics.fmean(per_epoch[e]) for e in epochs]


def plot_accuracy(rows: Sequence[dict[str, Any]], path: Path | str, *, experiment: str | None = None) -> Path:
    """Test accuracy per epoch, one line per method (mean over seeds); robust accuracies dashed."""
    plt = _pyplot()
    chosen = _select_rows(rows, experiment)
    several = len(_first_seen(r.get("experiment") for r in chosen)) > 1
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in chosen:
        groups.setdefault((row.get("experiment"), row.get("method")), []).append(row)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for index, runs in enumerate(groups.values()):
            label = _label(runs[0], several)
            epochs, mean = _mean_curve(runs, "test_acc")
            look = _style(index, str(runs[0].get("method")))
            (line,) = ax.plot(epochs, [100 * v for v in mean], label=f"{label} (n={len(runs)})", **look)
            for key, style in (("fgsm_acc", "--"), ("pgd_acc", ":")):
                robust_epochs, robust_mean = _mean_curve(runs, key)
                if robust_epochs:
                    ax.plot(
                        robust_epochs,
                        [100 * v for v in robust_mean],
                        linestyle=style,
                        color=line.get_color(),
                        label=f"{label} {key.split('_')[0].upper()}",
                    )
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%), mean over seeds")
        ax.set_title(f"Test accuracy per epoch{': ' + experiment if experiment else ''}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
        return _save(fig, path)
    finally:
        plt.close(fig)


def scaling_guides(lr_b0: float, b0: int, batch_sizes: Iterable[int]) -> dict[int, tuple[float, float]]:
    """Batch size -> (square-root rule LR, linear rule LR), both anchored at ``lr_b0`` for batch ``b0``.

    guide_lr(b) = lr_b0 * sqrt(b / b0) (Hoffer et al. 2017) and lr_b0 * b / b0 (Goyal et al. 2017).
    """
    if b0 <= 0:
        raise ValueError(f"reference batch size must be positive, got {b0}")
    return {b: (lr_b0 * math.sqrt(b / b0), lr_b0 * b / b0) for b in batch_sizes}


def _uses_random_erasing(row: dict[str, Any]) -> bool:
    """Whether the run used random erasing: train.py's ``random_erasing`` probability > 0, or an
    ``augment`` table with a truthy key naming erasing."""
    probability = _number(row.get("random_erasing"))
    if probability is not None:
        return probability > 0
    augment = row.get("augment")
    if not isinstance(augment, dict):
        return False
    for key, value in augment.items():
        if "eras" in str(key).lower():
            if isinstance(value, dict):
                probability = _number(value.get("p", value.get("probability", 1.0)))
                return bool(value.get("enabled", True)) and (probability is None or probability > 0)
            return bool(value)
    return False


def _mean_lr_per_epoch(runs: Sequence[dict[str, Any]]) -> list[float]:
    trajectories = [_lr_trajectory(r) for r in runs]
    length = max((len(t) for t in trajectories), default=0)
    out: list[float] = []
    for epoch in range(length):
        values = [t[epoch] for t in trajectories if epoch < len(t) and not math.isnan(t[epoch])]
        out.append(statistics.fmean(values) if values else math.nan)
    return out


def plot_batchsize(rows: Sequence[dict[str, Any]], path: Path | str, *, method: str = "aalr") -> Path:
    """Section 5.5 / Figures 1-2: ``method``'s LR per epoch at each batch size, with scaling guides.

    One panel without and one with random erasing (only the panels that have runs). Each batch
    size's line is its mean LR over seeds; dashed (square-root rule) and dotted (linear rule)
    horizontal guides are anchored at the smallest batch size's mean LR over all its epochs. The
    erasing panel repeats the same batch sizes without erasing in thin grey, as in Figure 2.
    """
    plt = _pyplot()
    chosen = [r for r in rows if r.get("method") == method and isinstance(r.get("batch_size"), int)]
    if not chosen:
        known = ", ".join(map(str, _first_seen(r.get("method") for r in rows))) or "(none)"
        raise ValueError(f"no runs of method {method!r} with a batch size to plot; methods: {known}")
    panels = [
        (title, [r for r in chosen if _uses_random_erasing(r) == erasing])
        for title, erasing in (("without random erasing", False), ("with random erasing", True))
    ]
    panels = [(title, runs) for title, runs in panels if runs]
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 4.5), squeeze=False, sharey=True)
    try:
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        all_sizes = sorted({r["batch_size"] for r in chosen})
        plain = panels[0][1] if panels[0][0] == "without random erasing" else []
        for ax, (title, runs) in zip(axes[0], panels, strict=True):
            sizes = sorted({r["batch_size"] for r in runs})
            if runs is not plain:
                for b in sizes:
                    reference = _mean_lr_per_epoch([r for r in plain if r["batch_size"] == b])
                    if reference:
                        epochs = range(1, len(reference) + 1)
                        label = f"batch {b}, no erasing"
                        ax.plot(epochs, reference, color="gray", linewidth=0.8, label=label)
            curves = {b: _mean_lr_per_epoch([r for r in runs if r["batch_size"] == b]) for b in sizes}
            anchor = [v for v in curves[sizes[0]] if not math.isnan(v)]
            guides = scaling_guides(statistics.fmean(anchor), sizes[0], sizes) if anchor else {}
            for b in sizes:
                color = colors[all_sizes.index(b) % len(colors)]
                ax.plot(range(1, len(curves[b]) + 1), curves[b], color=color, label=f"batch {b}")
                if b in guides:
                    sqrt_lr, linear_lr = guides[b]
                    ax.axhline(sqrt_lr, color=color, linestyle="--", linewidth=1)
                    ax.axhline(linear_lr, color=color, linestyle=":", linewidth=1)
            ax.plot([], [], color="gray", linestyle="--", label=f"√(b/{sizes[0]}) rule")
            ax.plot([], [], color="gray", linestyle=":", label=f"b/{sizes[0]} (linear) rule")
            ax.set_yscale("log")
            ax.set_xlabel("epoch")
            ax.set_title(f"{method} LR per epoch, {title}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize="small")
        axes[0][0].set_ylabel("learning rate (mean over seeds)")
        return _save(fig, path)
    finally:
        plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Everything at once


def _file_part(text: object) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "run"


def write_report(
    root: Path | str, out: Path | str | None = None, rows: list[dict[str, Any]] | None = None
) -> Path:
    """Writes report.md, results.csv and the PNG plots for the runs under ``root`` into ``out``.

    Plots: ``lr_<experiment>.png`` and ``acc_<experiment>.png`` per experiment, and
    ``batchsize_<dataset>_<model>.png`` where AALR ran at several batch sizes on one dataset/model.
    Returns the path of report.md.
    """
    root = Path(root)
    rows = collect(root) if rows is None else rows  # ``rows``: collect(root) made already
    if not rows:
        raise ValueError(f"no finished runs (folders with summary.json) under {root}")
    out_dir = Path(out) if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)

    sections = [to_markdown(summary, title=f"Results: {root.resolve().name}"), "## Plots", ""]
    for experiment in _first_seen(r.get("experiment") for r in rows):
        for prefix, plot, caption in (
            ("lr", plot_lr_trajectories, "learning rate"),
            ("acc", plot_accuracy, "test accuracy"),
        ):
            name = f"{prefix}_{_file_part(experiment)}.png"
            plot(rows, out_dir / name, experiment=experiment)
            sections.append(f"![{experiment}: {caption}]({name})")
    aalr_rows = [r for r in rows if r.get("method") == "aalr" and isinstance(r.get("batch_size"), int)]
    for dataset, model in _first_seen((r.get("dataset"), r.get("model")) for r in aalr_rows):
        group = [r for r in aalr_rows if (r.get("dataset"), r.get("model")) == (dataset, model)]
        if len({r["batch_size"] for r in group}) > 1:
            name = f"batchsize_{_file_part(dataset)}_{_file_part(model)}.png"
            plot_batchsize(group, out_dir / name)
            sections.append(f"![AALR learning rate across batch sizes: {dataset} / {model}]({name})")

    (out_dir / "results.csv").write_text(to_csv(summary), encoding="utf-8")
    report_path = out_dir / "report.md"
    report_path.write_text("\n".join(sections) + "\n", encoding="utf-8")
    return report_path
