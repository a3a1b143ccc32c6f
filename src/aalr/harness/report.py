"""Results of finished runs as tables in the paper's layout (Markdown, CSV) and plots (PNG).

The input is a folder of run folders as train.py writes them (``config.json``, ``metrics.jsonl``,
``summary.json``); a run counts only once its ``summary.json`` exists, its files can be read, and no
other run counted has its settings and seed (:func:`collect`). What is left out (runs that failed,
files that cannot be used and why, duplicates) is listed under every table made from it, and a row
is one experiment, method and whatever other setting tells its runs apart. Accuracies are fractions in
the files and percentages with two decimals in the tables, as in the paper. Spread over seeds is the
sample standard deviation (ddof=1). Diverged runs keep their measured accuracy (often chance level;
the paper prints 10.00 for them) and are marked with a dagger and counted.
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import json
import logging
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aalr.harness.rundir import is_finished, read_summary
from aalr.harness.suite import UnusableFile, read_json_object, read_text_file, run_settings

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
    "crashed",  # runs that raised and have no result (not in n)
    "settings",  # setting=value where runs of one method differ in more than the seed, ";"-separated
    # language-model runs (a byte data set): bits per byte on the held-out bytes, lower is better
    "bpb_final_mean",
    "bpb_final_std",
    "bpb_final_worst",  # the highest final bpb over the seeds
    "bpb_best_mean",
    "bpb_best_std",
    "train_steps",  # step mode: the optimizer steps of each run, in rounds of round_steps
    "round_steps",
)
DAGGER = "†"
DASH = "–"


# ---------------------------------------------------------------------------------------------
# Reading runs: which count, and what is left out and why
#
# One place decides what counts: :func:`collect`. A run counts when its summary.json is a finished
# run's summary (``read_summary``, the runner's test too), its config.json and metrics.jsonl can be
# read and hold what the tables need, and no run counted before it has the same settings and seed.
# Everything else it found is a :class:`Skipped` (a file and why, or a duplicate and of what) or a
# :class:`FailedRun` (a line of failures.jsonl whose run has not finished since), and every report
# lists them.

# What the tables need of each file: key -> (what it must be, the test).
_Need = tuple[str, Callable[[object], bool]]
_STRING: _Need = ("a string", lambda v: isinstance(v, str))
_INTEGER: _Need = ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
_NUMBER_OR_NULL: _Need = ("a number or null", lambda v: v is None or _is_real(v))
SUMMARY_NEEDS: dict[str, _Need] = {
    "status": _STRING,
    "epochs": _INTEGER,
    "final_test_acc": _NUMBER_OR_NULL,
    "peak_test_acc": _NUMBER_OR_NULL,
}
# keys a summary need not have, but which win over the config's in a row, so must be of the right type
SUMMARY_MAY_HAVE: dict[str, _Need] = {"seed": _INTEGER, "method": _STRING}
CONFIG_NEEDS: dict[str, _Need] = {"method": _STRING, "dataset": _STRING, "seed": _INTEGER}
FAILURE_NEEDS: dict[str, _Need] = {
    "experiment": _STRING,
    "method": _STRING,
    "seed": _INTEGER,
    "error": _STRING,
}


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Skipped:
    """Something the report found and left out: a file it cannot use (``reason`` says why; the run
    in ``run_dir`` is then left out), or a run folder that repeats the run ``duplicate_of``."""

    path: Path
    reason: str
    run_dir: Path | None = None
    duplicate_of: Path | None = None


@dataclass(frozen=True)
class FailedRun:
    """A run that raised (its last line in failures.jsonl) and has not finished since."""

    run_dir: Path
    experiment: str
    method: str
    seed: int
    error: str
    position: int = 0  # how many counted runs come before it, in the report's order


class Runs(list[dict[str, Any]]):
    """What :func:`collect` returns: the rows of the runs that count, in order (a plain list of dicts
    to everything that iterates it), with ``skipped`` and ``failed``: what the report leaves out."""

    def __init__(
        self,
        rows: Iterable[dict[str, Any]] = (),
        *,
        root: Path | None = None,
        skipped: Iterable[Skipped] = (),
        failed: Iterable[FailedRun] = (),
    ) -> None:
        super().__init__(rows)
        self.root = root
        self.skipped: list[Skipped] = list(skipped)
        self.failed: list[FailedRun] = list(failed)


def _lacks(
    data: dict[str, Any], needs: dict[str, _Need], may_have: dict[str, _Need] | None = None
) -> str | None:
    """Why ``data`` does not hold what ``needs`` asks (or has a key of ``may_have`` of another type),
    or None."""
    missing = [key for key in needs if key not in data]
    if missing:
        return "lacks " + ", ".join(map(repr, missing))
    for key, (kind, test) in {**needs, **(may_have or {})}.items():
        if key in data and not test(data[key]):
            shown = repr(data[key])
            return f"{key!r} is {shown if len(shown) <= 40 else shown[:37] + '...'}, not {kind}"
    return None


def _summary_of(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    summary = read_summary(run_dir)  # what is finished is the runner's to say, with the same reader
    problem = _lacks(read_json_object(path) if summary is None else summary, SUMMARY_NEEDS, SUMMARY_MAY_HAVE)
    if problem:
        raise UnusableFile(path, problem)
    if summary is None:  # read_summary refuses what these checks let through
        raise UnusableFile(path, "not a finished run's summary (read_summary refuses it)")
    return summary


def _config_of(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.json"
    config = read_json_object(path)
    problem = _lacks(config, CONFIG_NEEDS)
    if problem:
        raise UnusableFile(path, problem)
    return config


def _metrics_of(run_dir: Path, summary: dict[str, Any] | None) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(read_text_file(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            raise UnusableFile(path, f"line {number}: not valid JSON ({error})") from error
        if not isinstance(row, dict):
            raise UnusableFile(path, f"line {number}: {row!r:.40} is not a JSON object")
        rows.append(row)
    if summary is not None and len(rows) != summary["epochs"]:  # cut short at a line's end
        raise UnusableFile(
            path, f"{len(rows)} epoch line(s), but summary.json says {summary['epochs']} epochs"
        )
    return rows


def _read_run(run_dir: Path) -> tuple[dict[str, Any] | None, list[Skipped]]:
    """A finished run's row, or None and every file that made it unusable, each with why. A grid's
    run on a validation split is None with nothing to say: its choice is in its parent's summary."""
    problems: list[Skipped] = []

    def attempt(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except UnusableFile as error:
            problems.append(Skipped(error.path, error.reason, run_dir=run_dir))
            return None

    config = attempt(lambda: _config_of(run_dir))
    if config is not None and config.get("validation_split"):
        return None, []
    summary = attempt(lambda: _summary_of(run_dir))
    metrics = attempt(lambda: _metrics_of(run_dir, summary))
    if problems:
        return None, problems
    row: dict[str, Any] = {**config, **summary}
    row["config"] = config
    row["metrics"] = metrics
    row["run_dir"] = str(run_dir)
    if not row.get("experiment"):
        # A run made outside a suite: group it by what it trained.
        row["experiment"] = "-".join(str(row[k]) for k in ("dataset", "model") if row.get(k)) or "run"
    return row, []


def _suite_order(root: Path, skipped: list[Skipped]) -> dict[Path, tuple[int, int]]:
    """Run folder -> (which suite.json, position in it), from every suite.json the runner wrote."""
    order: dict[Path, tuple[int, int]] = {}
    for suite_index, suite_file in enumerate(sorted(root.rglob("suite.json"))):
        try:
            runs = read_json_object(suite_file).get("runs", [])
            if not isinstance(runs, list):
                raise UnusableFile(suite_file, f"'runs' is {type(runs).__name__}, not a list")
        except UnusableFile as error:
            skipped.append(Skipped(error.path, f"{error.reason}; its runs are ordered by folder"))
            continue
        for position, run in enumerate(runs):
            if isinstance(run, dict) and isinstance(run.get("run_dir"), str):
                order[(suite_file.parent / run["run_dir"]).resolve()] = (suite_index, position)
    return order


def _failed_runs(root: Path, skipped: list[Skipped]) -> list[FailedRun]:
    """The runs failures.jsonl files name (the last record of each) that have not finished since."""
    latest: dict[Path, FailedRun] = {}
    for path in sorted(root.rglob("failures.jsonl")):
        try:
            text = read_text_file(path, allow_empty=True)
        except UnusableFile as error:
            skipped.append(Skipped(error.path, error.reason))
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"{record!r:.40} is not a JSON object")
            except ValueError as error:
                skipped.append(Skipped(path, f"line {number}: not a failure record ({error})"))
                continue
            problem = _lacks(record, FAILURE_NEEDS)
            if problem:
                skipped.append(Skipped(path, f"line {number}: {problem}"))
                continue
            # where the runner put the run (RunSpec.run_dir), whatever folder the record was written from
            run_dir = path.parent / record["experiment"] / record["method"] / f"seed{record['seed']}"
            error_text = (
                record["error"].strip().splitlines()[0] if record["error"].strip() else "(no message)"
            )
            latest[run_dir] = FailedRun(
                run_dir, record["experiment"], record["method"], record["seed"], error_text
            )
    return [failure for run_dir, failure in latest.items() if not is_finished(run_dir)]


def _identity(row: dict[str, Any]) -> str:
    """Equal for two runs that trained the same thing with the same seed (paths and numerics aside)."""
    return json.dumps(run_settings(row.get("config") or {}), sort_keys=True, default=str)


def collect(root: Path | str) -> Runs:
    """Every run under ``root`` (searched recursively) that counts, as one flat dict each.

    A row holds the config's keys, then the summary's (which win where both have a key), plus
    ``config`` (the config as written), ``metrics`` (the metrics.jsonl rows) and ``run_dir``.
    Rows come in the order of the suite that made them (its suite.json), else sorted by folder.

    Runs without summary.json are unfinished and not looked at. Of the others, a run whose
    summary.json, config.json or metrics.jsonl cannot be used is left out, and each such file is in
    ``skipped`` with the reason; so is each run that repeats the settings and seed of a run before
    it (it would count one seed twice). ``failed`` holds the runs failures.jsonl records that have
    not finished since. Each thing left out is logged as a warning too.
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"results folder {root} does not exist")
    skipped: list[Skipped] = []
    order = _suite_order(root, skipped)
    unlisted = (len(order), 0)  # after every listed run: there are fewer suite files than runs
    found: list[tuple[tuple[tuple[int, int], str], dict[str, Any]]] = []
    for summary_path in sorted(root.rglob("summary.json")):
        run_dir = summary_path.parent
        row, problems = _read_run(run_dir)
        skipped += problems
        if row is not None:
            found.append(((order.get(run_dir.resolve(), unlisted), str(run_dir)), row))
    found.sort(key=lambda item: item[0])

    rows: list[dict[str, Any]] = []
    keys: list[tuple[tuple[int, int], str]] = []
    first: dict[str, Path] = {}
    for key, row in found:
        identity = _identity(row)
        if identity in first:
            reason = "the same settings and seed as a run counted already"
            skipped.append(Skipped(Path(row["run_dir"]), reason, duplicate_of=first[identity]))
            continue
        first[identity] = Path(row["run_dir"])
        rows.append(row)
        keys.append(key)

    failed = [
        dataclasses.replace(
            failure,
            position=bisect.bisect(
                keys, (order.get(failure.run_dir.resolve(), unlisted), str(failure.run_dir))
            ),
        )
        for failure in _failed_runs(root, skipped)
    ]
    for item in skipped:
        if item.duplicate_of is not None:
            log.warning("%s repeats %s (%s); it is counted once", item.path, item.duplicate_of, item.reason)
        elif item.run_dir is not None:
            log.warning(
                "%s is unreadable: %s; the run in %s is left out of the report",
                item.path,
                item.reason,
                item.run_dir,
            )
        else:
            log.warning("%s is unreadable: %s", item.path, item.reason)
    for failure in failed:
        log.warning("%s failed (%s) and has no result", failure.run_dir, failure.error)
    return Runs(rows, root=root, skipped=skipped, failed=failed)


# ---------------------------------------------------------------------------------------------
# Statistics


def _number(value: object) -> float | None:
    """A finite float, or None for missing/null/NaN values (which do not enter statistics)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _stats(values: Iterable[object], prefix: str, *, lower_is_better: bool = False) -> dict[str, Any]:
    """mean, sample std (None for fewer than two values) and worst (the minimum; the maximum where
    lower is better, as for bits per byte) under ``prefix_``."""
    numbers = [v for v in (_number(x) for x in values) if v is not None]
    worst = max if lower_is_better else min
    return {
        f"{prefix}_mean": statistics.fmean(numbers) if numbers else None,
        f"{prefix}_std": statistics.stdev(numbers) if len(numbers) >= 2 else None,
        f"{prefix}_worst": worst(numbers) if numbers else None,
    }


def training_cost(row: dict[str, Any]) -> float | None:
    """What a run cost to train, in epochs of its whole training set (a step-mode run: in optimizer
    steps), its grid's runs included: the epochs (steps) it trained, plus, per LR of its grid, a run of
    the planned epochs on the training data less the validation split (a language model's grid trains
    on all of it, scored on the text's own validation part; step mode: the planned steps). None when the
    summary does not say how long the run trained."""
    given_config, given_grid = row.get("config"), row.get("lr_grid")
    config: dict[str, Any] = given_config if isinstance(given_config, dict) else {}
    grid: dict[str, Any] = given_grid if isinstance(given_grid, dict) else {}
    steps = _number(row.get("steps"))
    if _number(row.get("train_steps")) is not None and steps is not None:  # step mode
        return steps + len(grid) * float(row["train_steps"])
    epochs = _number(row.get("epochs"))
    if epochs is None:
        return None
    planned = _number(row.get("epochs_planned")) or epochs
    fraction = _number(config.get("val_fraction"))
    share = 1.0 if "final_test_bpb" in row or fraction is None else 1.0 - fraction
    return epochs + len(grid) * planned * share


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


# A row of a table: experiment, method, and every other setting but the seed (run_settings, as JSON).
GroupKey = tuple[str, str, str]


def _group_key(row: dict[str, Any]) -> GroupKey:
    settings = run_settings(row.get("config") or {})
    settings.pop("seed", None)
    text = json.dumps(settings, sort_keys=True, default=str)
    return str(row.get("experiment")), str(row.get("method")), text


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as ``table.key`` (``method_args.finish``); empty tables say nothing."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _distinguishing(keys: Iterable[GroupKey]) -> dict[GroupKey, list[str]]:
    """For each row, ``setting=value`` for each setting in which it differs from another row of the
    same experiment and method (none where the method has one row): what its Method cell adds."""
    by_method: dict[tuple[str, str], list[GroupKey]] = {}
    for key in keys:
        by_method.setdefault(key[:2], []).append(key)
    labels: dict[GroupKey, list[str]] = {}
    for same in by_method.values():
        flats = {key: _flat(json.loads(key[2])) if key[2] else {} for key in same}
        names = sorted(set().union(*flats.values())) if len(same) > 1 else []
        differing = [
            name
            for name in names
            if len({json.dumps(flat.get(name, "\0unset"), sort_keys=True) for flat in flats.values()}) > 1
        ]
        for key, flat in flats.items():
            labels[key] = [
                f"{name}={flat[name] if isinstance(flat[name], str) else json.dumps(flat[name])}"
                for name in differing
                if name in flat
            ]
    return labels


class Summary(list[dict[str, Any]]):
    """What :func:`summarize` returns: one entry per table row (a plain list of dicts to everything
    that iterates it), with the ``skipped`` and ``failed`` of the :class:`Runs` it summarized, so
    that every table made from it says what was left out."""

    def __init__(
        self,
        entries: Iterable[dict[str, Any]] = (),
        *,
        root: Path | None = None,
        skipped: Iterable[Skipped] = (),
        failed: Iterable[FailedRun] = (),
    ) -> None:
        super().__init__(entries)
        self.root = root
        self.skipped: list[Skipped] = list(skipped)
        self.failed: list[FailedRun] = list(failed)


def summarize(rows: Sequence[dict[str, Any]]) -> Summary:
    """One dict per table row: per experiment and method, and, where runs of one method differ in any
    other setting than the seed (outside suites, e.g. two epoch counts), per such setting too; in order
    of first appearance in ``rows``.

    Keys: experiment, method, settings (``setting=value`` for each setting in which this row differs
    from another row of its experiment and method; usually none), dataset, model, batch_size, epochs
    (each the single value, or a list if runs differ), seeds, n, failed (runs whose status is not
    "finished"), final_mean / final_std / final_worst, peak_mean / peak_std (fractions; std is the
    sample std, ddof=1, None for one seed), for adversarial runs ``<attack>_n`` and
    ``<attack>_{final,peak}_{mean,std}`` for attack in fgsm, pgd, plus pgd_steps, adversarial (the
    training attack), chosen_lr_mean and chosen_lrs for grid runs, numerics (how the runs computed,
    e.g. "cpu bf16 channels_last", as their summaries recorded it) and numerics_unrecorded (runs with
    epochs made before it was recorded), wall_seconds_mean, and crashed / crashes: the runs of this
    experiment and method that raised and have no result (``Runs.failed``; not in ``n``), a row of
    their own (n = 0) where no run of the method counts.
    """
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    position: dict[GroupKey, float] = {}
    for index, row in enumerate(rows):
        group_key = _group_key(row)
        groups.setdefault(group_key, []).append(row)
        position.setdefault(group_key, index)
    failed = rows.failed if isinstance(rows, Runs) else []
    crashes: dict[GroupKey, list[FailedRun]] = {}
    for failure in sorted(failed, key=lambda f: f.position):
        where = (failure.experiment, failure.method)
        home = next((k for k in groups if k[:2] == where), (*where, ""))
        position.setdefault(home, failure.position - 0.5)  # just before the run counted after it
        crashes.setdefault(home, []).append(failure)
    labels = _distinguishing(groups)

    def single(values: list[Any]) -> Any:
        distinct = _first_seen(values)
        return distinct[0] if len(distinct) == 1 else (distinct or None)

    out = Summary(
        root=rows.root if isinstance(rows, Runs) else None,
        skipped=rows.skipped if isinstance(rows, Runs) else (),
        failed=failed,
    )
    for group in sorted(position, key=lambda k: position[k]):
        experiment, method, _ = group
        runs = groups.get(group, [])
        entry: dict[str, Any] = {
            "experiment": experiment,
            "method": method,
            "settings": labels.get(group, []),
        }
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
        if any("final_test_bpb" in r for r in runs):  # a language model: bits per byte, lower is better
            entry.update(_stats((r.get("final_test_bpb") for r in runs), "bpb_final", lower_is_better=True))
            best = _stats((r.get("best_test_bpb") for r in runs), "bpb_best", lower_is_better=True)
            entry.update({k: v for k, v in best.items() if not k.endswith("_worst")})
            entry["eval_bytes"] = single([r.get("eval_bytes") for r in runs])
        steps = single([r.get("train_steps") for r in runs])
        if steps is not None:
            entry["train_steps"] = steps
            entry["round_steps"] = single([r.get("round_steps") for r in runs])

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
        costs = [c for c in (training_cost(r) for r in runs) if c is not None]
        entry["cost_mean"] = statistics.fmean(costs) if costs else None
        walls = [v for v in (_number(r.get("wall_seconds")) for r in runs) if v is not None]
        entry["wall_seconds_mean"] = statistics.fmean(walls) if walls else None
        entry["crashes"] = [
            {"seed": f.seed, "run_dir": str(f.run_dir), "error": f.error} for f in crashes.get(group, [])
        ]
        entry["crashed"] = len(entry["crashes"])
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# Tables


def _pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def _bpb(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def _bpb_mean_std(mean: float | None, std: float | None) -> str:
    return DASH if mean is None else f"{_bpb(mean)} ± {_bpb(std)}"


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
    if any(e.get("train_steps") is not None for e in entries):
        steps, per_round = _setting_text(entries, "train_steps"), _setting_text(entries, "round_steps")
        length = f"{steps} steps in rounds of {per_round}"
    else:
        length = f"{_setting_text(entries, 'epochs')} epochs"
    text = (
        f"## {experiment}: {_setting_text(entries, 'dataset')} / {_setting_text(entries, 'model')}, "
        f"{length}, batch size {_setting_text(entries, 'batch_size')}"
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
    """Markdown: one table per experiment, a row per method, accuracies in % as in the paper; for a
    :class:`Summary`, then a section "Not counted" listing what its runs left out, where anything was."""
    by_experiment: dict[str, list[dict[str, Any]]] = {}
    for entry in summary_rows:
        by_experiment.setdefault(str(entry["experiment"]), []).append(entry)

    lines: list[str] = []
    if title:
        lines += [f"# {title}", ""]
    any_failed = any_grid = any_single = any_crashed = any_bpb = any_acc = False
    eval_bytes: list[Any] = []
    for experiment, entries in by_experiment.items():
        robust = any(f"{attack}_n" in e for e in entries for attack in ROBUST_ATTACKS)
        grid = any("chosen_lr_mean" in e for e in entries)
        bpb = any("bpb_final_mean" in e for e in entries)  # a language model's table
        any_bpb |= bpb
        any_acc |= not bpb
        eval_bytes += [e.get("eval_bytes") for e in entries if bpb]
        clean = "Clean " if robust else ""
        header = (
            ["Method", "Seeds", "Final bpb mean ± std", "Worst seed", "Best bpb mean ± std"]
            if bpb
            else [
                "Method",
                "Seeds",
                f"{clean}Final acc (%) mean ± std",
                "Worst seed",
                f"{clean}Peak acc (%) mean ± std",
            ]
        )
        pgd = _pgd_label(entries)
        if robust:
            header += ["FGSM final (%)", "FGSM peak (%)", f"{pgd} final (%)", f"{pgd} peak (%)"]
        if grid:
            header.append("Chosen LR (mean)")
        steps_unit = any("train_steps" in e for e in entries)
        header += ["Cost (steps)" if steps_unit else "Cost (epochs)", "Failed"]
        lines += [_experiment_heading(experiment, entries), ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for e in entries:
            mark = f" {DAGGER}" if e["failed"] else ""
            any_failed |= bool(e["failed"])
            any_single |= e["n"] < 2
            settings = e.get("settings") or []
            crashed = int(e.get("crashed") or 0)
            any_crashed |= bool(crashed)
            cells = [
                str(e["method"]) + (f" ({', '.join(settings)})" if settings else ""),
                f"{e['n']} of {e['n'] + crashed} ({crashed} crashed)" if crashed else str(e["n"]),
            ]
            if bpb:
                cells += [
                    _bpb_mean_std(e.get("bpb_final_mean"), e.get("bpb_final_std")) + mark,
                    _bpb(e.get("bpb_final_worst")) + mark,
                    _bpb_mean_std(e.get("bpb_best_mean"), e.get("bpb_best_std")) + mark,
                ]
            else:
                cells += [
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
            cost = e.get("cost_mean")
            cells.append(DASH if cost is None else f"{cost:.0f}" if steps_unit else f"{cost:.1f}")
            cells.append(f"{e['failed']}/{e['n']}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    notes = []
    if any_acc:
        notes += [
            "Accuracies are test accuracies in %, mean ± sample standard deviation (ddof=1) over seeds"
            + (f"; {DASH} where there is only one seed." if any_single else "."),
            "Final: after the last epoch. Worst seed: the lowest final accuracy over the seeds. "
            "Peak: the best epoch; the paper's Tables 1-4 report peak accuracy, so compare them with Peak.",
        ]
    if any_bpb:
        measured = ", ".join(str(b) for b in _first_seen(eval_bytes)) or "?"
        notes.append(
            "bpb: bits per byte (mean cross-entropy per predicted byte / ln 2) on a fixed set of "
            f"{measured} held-out test bytes, lower is better; mean ± sample standard deviation (ddof=1) "
            f"over seeds{f' ({DASH} for one seed)' if any_single else ''}. Final: after the last round "
            "(or epoch); Worst seed: the highest final bpb; Best: the lowest bpb of any round."
        )
    if any_failed:
        notes.append(
            f"{DAGGER} Some runs of this method diverged (count in Failed); their accuracy enters the "
            "mean as measured, as the paper prints 10.00 for such runs."
        )
    if any_grid:
        notes.append("Chosen LR: the grid learning rate picked on the validation split, averaged over seeds.")
    notes.append(
        "Cost: what one run of the row cost to train, mean over seeds, in epochs of the whole training set "
        "(step mode: optimizer steps), its grid's runs included (each on the training data less the "
        "validation split), so one run and a grid compare at their true price."
    )
    if any_crashed:
        notes.append(
            'Seeds "n of m (k crashed)": k of the m runs raised and have no result, so they are not in '
            "the statistics; Not counted below lists each with its error."
        )
    lines += [f"- {note}" for note in notes]
    if isinstance(summary_rows, Summary):
        lines += _not_counted(summary_rows)
    return "\n".join(lines) + "\n"


def _not_counted(summary: Summary) -> list[str]:
    """The section that lists what the report left out, and why; nothing where it left nothing out."""

    def where(path: Path) -> str:
        try:
            shown = path.relative_to(summary.root) if summary.root is not None else path
        except ValueError:
            shown = path
        return f"`{shown.as_posix()}`"

    def short(text: str) -> str:
        return text if len(text) <= 300 else text[:297] + "..."

    lines: list[str] = []
    if summary.failed:
        lines += [
            "",
            f"Runs that crashed ({len(summary.failed)}): they raised and left no summary.json "
            "(failures.jsonl holds each traceback); `aalr compare` runs them again:",
            "",
        ]
        lines += [f"- {where(f.run_dir)}: {short(f.error)}" for f in summary.failed]
    damaged = [item for item in summary.skipped if item.duplicate_of is None]
    if damaged:
        lines += [
            "",
            f"Files that could not be used ({len(damaged)}); the run each belongs to is left out:",
            "",
        ]
        lines += [f"- {where(item.path)}: {short(item.reason)}" for item in damaged]
    duplicates = [item for item in summary.skipped if item.duplicate_of is not None]
    if duplicates:
        lines += [
            "",
            f"Duplicates skipped ({len(duplicates)}): runs with the same settings and seed as a run "
            "counted (a copy, or a run made twice), which would count one seed twice:",
            "",
        ]
        lines += [
            f"- {where(item.path)}: the same as {where(item.duplicate_of)}"
            for item in duplicates
            if item.duplicate_of is not None
        ]
    return ["", "## Not counted", *lines] if lines else []


def to_csv(summary_rows: Sequence[dict[str, Any]]) -> str:
    """CSV, one line per table row (experiment, method and any setting that sets it apart); accuracies
    as fractions, empty where missing."""
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


def _label(row: dict[str, Any], several_experiments: bool, settings: Sequence[str] = ()) -> str:
    method = str(row.get("method")) + (f" ({', '.join(settings)})" if settings else "")
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
    firsts: dict[GroupKey, dict[str, Any]] = {}
    for row in chosen:
        key = _group_key(row)
        current = firsts.get(key)
        if current is None or (row.get("seed") or 0) < (current.get("seed") or 0):
            firsts[key] = row
    labels = _distinguishing(firsts)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        for index, (key, row) in enumerate(firsts.items()):
            lrs = _lr_trajectory(row)
            ax.plot(
                range(1, len(lrs) + 1),
                lrs,
                drawstyle="steps-mid",
                label=_label(row, several, labels[key]),
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
    groups: dict[GroupKey, list[dict[str, Any]]] = {}
    for row in chosen:
        groups.setdefault(_group_key(row), []).append(row)
    labels = _distinguishing(groups)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    try:
        bpb = any("final_test_bpb" in r for r in chosen)  # a language model: bits per byte instead
        for index, (group, runs) in enumerate(groups.items()):
            label = _label(runs[0], several, labels[group])
            epochs, mean = _mean_curve(runs, "test_bpb" if bpb else "test_acc")
            look = _style(index, str(runs[0].get("method")))
            shown = mean if bpb else [100 * v for v in mean]
            (line,) = ax.plot(epochs, shown, label=f"{label} (n={len(runs)})", **look)
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
        unit = "round" if any(r.get("train_steps") is not None for r in chosen) else "epoch"
        ax.set_xlabel(unit)
        what = "test bits per byte" if bpb else "test accuracy"
        ax.set_ylabel(f"{what}{'' if bpb else ' (%)'}, mean over seeds")
        ax.set_title(f"{what.capitalize()} per {unit}{': ' + experiment if experiment else ''}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", ncol=2)
        return _save(fig, path)
    finally:
        plt.close(fig)


# What makes experiments one family in the cost plot: the same data, model and batch size; the budget
# (epochs or steps) may differ, so one plot shows every budget of a suite's task, its "-tuned" grids
# (one run and a grid, each at what it cost) and its variants' experiments.
FAMILY_KEYS = ("dataset", "model", "model_options", "train_subset", "batch_size", "adversarial")


def family_of(row: dict[str, Any]) -> str:
    given = row.get("config")
    config: dict[str, Any] = given if isinstance(given, dict) else {}
    family = {key: config.get(key, row.get(key)) for key in FAMILY_KEYS}
    family["step_mode"] = row.get("train_steps") is not None
    return json.dumps(family, sort_keys=True, default=str)


def cost_families(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The experiments of ``rows`` grouped into families (same data, model and batch size; any budget),
    each in order of first appearance, the families in order of their first experiment."""
    groups: dict[str, list[str]] = {}
    for experiment in _first_seen(r.get("experiment") for r in rows):
        first = next(r for r in rows if r.get("experiment") == experiment)
        groups.setdefault(family_of(first), []).append(str(experiment))
    return list(groups.values())


def _role(experiment: str) -> str:
    # an experiment's part that is not its budget: "fmnist-8-tuned" -> "fmnist-#-tuned"
    return re.sub(r"\d+", "#", experiment)


def final_result(entry: dict[str, Any]) -> tuple[float, float | None, bool] | None:
    """A summary row's final result in the tables' units: ``(mean, worst seed, lower_is_better)``,
    accuracy in % or, for a language model, bits per byte (lower is better); None when unknown."""
    bpb = entry.get("bpb_final_mean") is not None
    scale, key = (1.0, "bpb_final") if bpb else (100.0, "final")
    mean, worst = _number(entry.get(f"{key}_mean")), _number(entry.get(f"{key}_worst"))
    if mean is None:
        return None
    return scale * mean, None if worst is None else scale * worst, bpb


CostSeries = dict[str, list[tuple[float, float, float | None]]]


def cost_series(summary_rows: Sequence[dict[str, Any]], experiments: Sequence[str]) -> CostSeries:
    """Per method of a family's ``experiments`` (one line in the cost plot): its points ``(mean total
    training cost, mean final result, worst seed's result)``, one per budget, by cost; results in the
    table's units (accuracy in %, a language model's bits per byte). A method's line runs through the
    experiments that differ only in their budget ("fmnist-8", "fmnist-16"); another experiment's runs of
    it are another line, named with the experiment's part that is not its budget ("aalr-plus
    [-linear]", "step [-tuned]"). Methods whose cost or result is not known are left out."""
    chosen = [x for x in experiments if any(e.get("experiment") == x for e in summary_rows)]
    roles = [_role(x) for x in chosen]
    base = min(roles, key=len) if roles else ""
    series: CostSeries = {}
    for entry in summary_rows:
        if entry.get("experiment") not in chosen or not entry.get("cost_mean"):
            continue
        result = final_result(entry)
        if result is None:
            continue
        mean, worst, _ = result
        role = _role(str(entry["experiment"]))
        part = role[len(base) :] if role.startswith(base) else role
        label = str(entry["method"]) + (f" ({', '.join(entry['settings'])})" if entry.get("settings") else "")
        label += f" [{part}]" if part else ""
        point = (float(entry["cost_mean"]), mean, worst)
        series.setdefault(label, []).append(point)
    return {label: sorted(points) for label, points in series.items()}


def plot_cost(
    summary_rows: Sequence[dict[str, Any]], path: Path | str, *, experiments: Sequence[str]
) -> Path:
    """Final test accuracy (a language model: bits per byte) against total training cost for one family
    of experiments (:func:`cost_families`): a line per method through its budgets (:func:`cost_series`),
    a marker at each mean over seeds and a thin line down to the worst seed. The cost is
    :func:`training_cost`'s, grid runs included, so one run and a grid meet at what they cost: a point
    left of another reached its result for less. Log cost axis."""
    series = cost_series(summary_rows, experiments)
    if not series:
        raise ValueError(f"no runs with a known cost and result in experiments {list(experiments)}")
    entries = [e for e in summary_rows if e.get("experiment") in experiments]
    bpb = any(e.get("bpb_final_mean") is not None for e in entries)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    try:
        for index, (label, points) in enumerate(series.items()):
            look = _style(index, label)
            costs, means = [p[0] for p in points], [p[1] for p in points]
            ax.plot(
                costs, means, marker="o", markersize=6 if label.startswith("aalr") else 4, label=label, **look
            )
            for cost, mean, worst in points:
                if worst is not None:
                    ax.plot([cost, cost], [mean, worst], color=look["color"], linewidth=0.8)
        # the axis shows the contest, not a diverged method: up to 15 pp below the best mean (a language
        # model: 25 % above the best bits per byte); what lies beyond runs off the edge, named in the legend
        values = [
            v
            for points in series.values()
            for _, mean, worst in points
            for v in (mean, worst)
            if v is not None
        ]
        best = min(values) if bpb else max(values)
        if bpb:
            ax.set_ylim(min(values) - 0.02 * best, min(max(values), 1.25 * best) + 0.02 * best)
        else:
            ax.set_ylim(max(min(values), best - 15.0) - 0.5, best + 0.5)
        unit = "steps" if any(e.get("train_steps") is not None for e in entries) else "epochs"
        ax.set_xscale("log")
        ax.set_xlabel(f"total training cost ({unit}, grid runs included; log scale)")
        what = "final test bits per byte" if bpb else "final test accuracy (%)"
        ax.set_ylabel(f"{what}: mean, thin line to the worst seed")
        first = next(e for e in entries)
        ax.set_title(
            f"{what.split(' (')[0].capitalize()} against training cost: {first.get('dataset')} / "
            f"{first.get('model')}"
        )
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="x-small", ncol=2)
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

    Plots: ``lr_<experiment>.png`` and ``acc_<experiment>.png`` (a language model's: ``bpb_<experiment>.png``)
    per experiment, ``cost_<dataset>_<model>.png`` per family of experiments (data, model and batch size
    shared, any budget: :func:`plot_cost`), and
    ``batchsize_<dataset>_<model>.png`` where AALR ran at several batch sizes on one dataset/model.
    report.md ends with what the runs left out (failed runs, files that could not be used,
    duplicates) when there is any. Returns the path of report.md.
    """
    root = Path(root)
    rows = collect(root) if rows is None else rows  # ``rows``: collect(root) made already
    left_out = isinstance(rows, Runs) and bool(rows.skipped or rows.failed)
    if not rows and not left_out:
        raise ValueError(f"no finished runs (folders with summary.json) under {root}")
    out_dir = Path(out) if out is not None else root
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)

    sections = [to_markdown(summary, title=f"Results: {root.resolve().name}"), "## Plots", ""]
    for experiment in _first_seen(r.get("experiment") for r in rows):
        # a language model's runs report bits per byte: its plot (and file) is named for what it shows
        in_bpb = any("final_test_bpb" in r for r in rows if r.get("experiment") == experiment)
        result = ("bpb", "test bits per byte") if in_bpb else ("acc", "test accuracy")
        for prefix, plot, caption in (
            ("lr", plot_lr_trajectories, "learning rate"),
            (result[0], plot_accuracy, result[1]),
        ):
            name = f"{prefix}_{_file_part(experiment)}.png"
            plot(rows, out_dir / name, experiment=experiment)
            sections.append(f"![{experiment}: {caption}]({name})")
    cost_names: set[str] = set()
    for experiments in cost_families(rows):
        if len(cost_series(summary, experiments)) > 1:  # one method alone is compared with nothing
            first = next(r for r in rows if r.get("experiment") == experiments[0])
            stem = f"cost_{_file_part(first.get('dataset'))}_{_file_part(first.get('model'))}"
            name, number = stem, 2  # two families of one data set and model (other options): -2, -3, ...
            while name in cost_names:
                name, number = f"{stem}-{number}", number + 1
            cost_names.add(name)
            plot_cost(summary, out_dir / f"{name}.png", experiments=experiments)
            sections.append(
                f"![{', '.join(experiments)}: final result against total training cost]({name}.png)"
            )
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
